//! What the column chunks yibao writes by hand ([`super::coded`], [`super::packed`],
//! [`super::prefixed`]) share: data pages of version 1 cut every `page_rows` rows from the row
//! group's start, each with its rows' definition levels when the column is nullable, compressed
//! on their own; then the chunk's pages behind their headers, with the chunk's metadata and
//! offset index, as `SerializedRowGroupWriter::append_column` takes them.

use arrow::array::BooleanBufferBuilder;
use bytes::Bytes;
use parquet::basic::{Compression, Encoding};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, LevelHistogram, OffsetIndexBuilder};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// A column chunk written by hand: rows in, then its bytes and metadata.
pub trait HandChunk: Send {
    /// Appends `array`'s rows.
    fn write(&mut self, array: &dyn arrow::array::Array) -> Result<()>;

    /// Finishes the chunk: its bytes, metadata and offset index, counted from the chunk's
    /// start, for `SerializedRowGroupWriter::append_column`.
    fn close(self: Box<Self>) -> Result<(Bytes, ColumnCloseResult)>;
}

/// A hand-written chunk that fills pages of rows ([`take_rows`]).
pub trait Paged {
    fn pages(&mut self) -> &mut ChunkPages;

    /// Ends the filling page with the values taken for it.
    fn finish_page(&mut self) -> Result<()>;
}

/// Takes `rows` rows into `chunk` a page's share at a time: writes each share's definition
/// levels (from `nulls`; every row present without them), has `values` take the values of the
/// share's rows that `nulls` says are valid (the range is of the batch's rows), and ends each
/// page the rows fill. The loops over a share are over values only.
pub fn take_rows<C: Paged>(
    chunk: &mut C,
    rows: usize,
    nulls: Option<&arrow::buffer::NullBuffer>,
    mut values: impl FnMut(&mut C, std::ops::Range<usize>),
) -> Result<()> {
    let mut at = 0;
    while at < rows {
        let pages = chunk.pages();
        let take = pages.room().min(rows - at);
        match nulls {
            None => pages.present(take),
            Some(nulls) => pages.levels_of(&nulls.slice(at, take)),
        }
        values(chunk, at..at + take);
        at += take;
        if chunk.pages().advance(take) {
            chunk.finish_page()?;
        }
    }
    Ok(())
}

/// A chunk asked for snappy keeps it when its first data pages, [`SNAPPY_SAMPLE_BYTES`] of
/// them or all it has, compress to at most `.0 / .1` of their size; otherwise the whole chunk
/// (dictionary page included) is written uncompressed, as Parquet names the codec per column
/// chunk.
const SNAPPY_KEPT: (usize, usize) = (7, 8);

/// The bytes of data pages snappy is judged on: a first page of a few bytes (a column all
/// null there, a short row group) says nothing of the pages after it.
const SNAPPY_SAMPLE_BYTES: usize = 4096;

/// The pages of one column chunk being written.
pub struct ChunkPages {
    descr: ColumnDescPtr,
    /// Snappy or uncompressed; snappy until the first data pages show it saves too little
    /// ([`SNAPPY_KEPT`]).
    compression: Compression,
    /// The bytes of the data pages held uncompressed until the codec is judged.
    sampled: usize,
    nullable: bool,
    page_rows: usize,
    /// The filling page's definition levels (nullable columns only), a bit a row as Arrow's
    /// validity holds them, and its row count.
    levels: BooleanBufferBuilder,
    filled: usize,
    /// Finished data pages, compressed: (bytes, uncompressed size, rows).
    pages: Vec<(Bytes, usize, usize)>,
    rows: usize,
    nulls: u64,
}

/// What a chunk's metadata says beyond its pages.
pub struct ChunkSummary {
    /// The dictionary page's values (`PLAIN`) and their count, written before the data pages.
    pub dictionary: Option<(Vec<u8>, u32)>,
    /// Every encoding the chunk's pages use.
    pub encodings: Vec<Encoding>,
    /// The chunk's statistics, with its definition level histogram, when the file has them.
    pub statistics: Option<Statistics>,
}

impl ChunkPages {
    pub fn new(descr: ColumnDescPtr, compression: Compression, page_rows: usize) -> Result<Self> {
        if descr.max_rep_level() != 0 || descr.max_def_level() > 1 {
            return Err(ParquetError::General(format!(
                "column {} is not a top-level column",
                descr.path()
            )));
        }
        if !matches!(compression, Compression::SNAPPY | Compression::UNCOMPRESSED) {
            return Err(ParquetError::General(format!(
                "column {} is written by hand with snappy or uncompressed, not {compression}",
                descr.path()
            )));
        }
        Ok(ChunkPages {
            nullable: descr.max_def_level() == 1,
            descr,
            sampled: 0,
            compression,
            page_rows: page_rows.max(1),
            levels: BooleanBufferBuilder::new(0),
            filled: 0,
            pages: Vec::new(),
            rows: 0,
            nulls: 0,
        })
    }

    pub fn descr(&self) -> &ColumnDescPtr {
        &self.descr
    }

    /// Null rows so far.
    pub fn nulls(&self) -> u64 {
        self.nulls
    }

    /// An error when `array` brings nulls to a column that holds none.
    pub fn admit(&self, array: &dyn arrow::array::Array) -> Result<()> {
        if !self.nullable && array.null_count() > 0 {
            return Err(ParquetError::General(format!(
                "column {} is not nullable but has {} nulls",
                self.descr.path(),
                array.null_count()
            )));
        }
        Ok(())
    }

    /// `array` as the text a chunk writes it from, or an error naming the column and what
    /// `written` says it is written from.
    pub fn text<'a>(
        &self,
        array: &'a dyn arrow::array::Array,
        written: &str,
    ) -> Result<&'a arrow::array::StringArray> {
        array.as_any().downcast_ref().ok_or_else(|| {
            ParquetError::General(format!(
                "column {} is written {written}, but a batch has {}",
                self.descr.path(),
                array.data_type()
            ))
        })
    }

    /// Rows the filling page still takes.
    pub fn room(&self) -> usize {
        self.page_rows - self.filled
    }

    /// `rows` rows more, all of them non-null, for the filling page.
    #[inline]
    pub fn present(&mut self, rows: usize) {
        if self.nullable {
            self.levels.append_n(rows, true);
        }
    }

    /// Rows more for the filling page, null or not as `validity` says (nullable columns only):
    /// copied a word at a time.
    pub fn levels_of(&mut self, validity: &arrow::buffer::NullBuffer) {
        self.levels.append_buffer(validity.inner());
        self.nulls += validity.null_count() as u64;
    }

    /// Counts `rows` more rows (their levels given); `true` when they fill the page.
    pub fn advance(&mut self, rows: usize) -> bool {
        self.rows += rows;
        self.filled += rows;
        self.filled == self.page_rows
    }

    /// Ends the filling page: its levels, then its values as `values` appends them.
    pub fn finish_page(&mut self, values: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        let rows = std::mem::take(&mut self.filled);
        if rows == 0 {
            return Ok(());
        }
        let mut page = Vec::with_capacity(rows + 64);
        if self.nullable {
            page.extend_from_slice(&[0; 4]);
            hybrid_bits(self.levels.as_slice(), self.levels.len(), &mut page);
            let length = (page.len() - 4) as u32;
            page[..4].copy_from_slice(&length.to_le_bytes());
            self.levels.truncate(0);
        }
        values(&mut page);
        let uncompressed = page.len();
        if self.judged() {
            self.pages.push((self.compress(page)?, uncompressed, rows));
        } else {
            self.sampled += uncompressed;
            self.pages.push((page.into(), uncompressed, rows));
            if self.sampled >= SNAPPY_SAMPLE_BYTES {
                self.judge()?;
            }
        }
        Ok(())
    }

    /// Decides the chunk's codec from the data pages held: snappy is kept only where it earns
    /// its time. Amounts and times delta-packed to their range, and dictionary indices of a
    /// few-valued column, leave snappy little to find (README "Outputs"), and a reader then
    /// takes their pages as they lie.
    fn judge(&mut self) -> Result<()> {
        let packed: Vec<Vec<u8>> = self
            .pages
            .iter()
            .map(|(page, _, _)| self.compress_snappy(page))
            .collect::<Result<_>>()?;
        let packed_bytes: usize = packed.iter().map(Vec::len).sum();
        if packed_bytes * SNAPPY_KEPT.1 <= self.sampled * SNAPPY_KEPT.0 {
            for ((page, _, _), packed) in self.pages.iter_mut().zip(packed) {
                *page = packed.into();
            }
        } else {
            self.compression = Compression::UNCOMPRESSED;
        }
        Ok(())
    }

    /// Whether the codec is settled: not snappy (asked for so, or judged so), or snappy kept
    /// once judged on [`SNAPPY_SAMPLE_BYTES`] of pages ([`Self::judge`]).
    fn judged(&self) -> bool {
        self.compression != Compression::SNAPPY || self.sampled >= SNAPPY_SAMPLE_BYTES
    }

    fn compress_snappy(&self, page: &[u8]) -> Result<Vec<u8>> {
        snap::raw::Encoder::new()
            .compress_vec(page)
            .map_err(|e| ParquetError::External(Box::new(e)))
    }

    fn compress(&self, page: Vec<u8>) -> Result<Bytes> {
        Ok(match self.compression {
            Compression::SNAPPY => self.compress_snappy(&page)?.into(),
            _ => page.into(),
        })
    }

    /// The chunk's bytes (the dictionary page if any, then the data pages, each behind its
    /// header) and its metadata and offset index, counted from the chunk's start. The caller
    /// has finished the last page.
    pub fn close(
        mut self,
        value_encoding: Encoding,
        summary: ChunkSummary,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        debug_assert_eq!(self.filled, 0, "the last page is finished before close");
        if !self.judged() {
            self.judge()?;
        }
        let mut sink = TrackedWrite::new(Vec::new());
        let mut writer = SerializedPageWriter::new(&mut sink);
        let (mut compressed, mut uncompressed) = (0i64, 0i64);
        let mut dictionary_page = None;
        if let Some((values, count)) = summary.dictionary {
            let size = values.len();
            let spec = writer.write_page(CompressedPage::new(
                Page::DictionaryPage {
                    buf: self.compress(values)?,
                    num_values: count,
                    encoding: Encoding::PLAIN,
                    is_sorted: false,
                },
                size,
            ))?;
            compressed += spec.compressed_size as i64;
            uncompressed += spec.uncompressed_size as i64;
            dictionary_page = Some(spec.offset as i64);
        }
        let mut offsets = OffsetIndexBuilder::new();
        let mut first_data_page = None;
        for (buf, size, rows) in self.pages {
            let spec = writer.write_page(CompressedPage::new(
                Page::DataPage {
                    buf,
                    num_values: rows as u32,
                    encoding: value_encoding,
                    def_level_encoding: Encoding::RLE,
                    rep_level_encoding: Encoding::RLE,
                    statistics: None,
                },
                size,
            ))?;
            first_data_page.get_or_insert(spec.offset as i64);
            compressed += spec.compressed_size as i64;
            uncompressed += spec.uncompressed_size as i64;
            offsets.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
            offsets.append_row_count(rows as i64);
        }
        writer.close()?;
        let bytes: Bytes = sink.into_inner()?.into();
        let mut metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_encodings(summary.encodings)
            .set_compression(self.compression)
            .set_num_values(self.rows as i64)
            .set_total_compressed_size(compressed)
            .set_total_uncompressed_size(uncompressed)
            .set_dictionary_page_offset(dictionary_page)
            .set_data_page_offset(first_data_page.or(dictionary_page).unwrap_or(0));
        if let Some(statistics) = summary.statistics {
            metadata = metadata.set_statistics(statistics);
            if self.nullable {
                let present = self.rows as i64 - self.nulls as i64;
                metadata =
                    metadata.set_definition_level_histogram(Some(LevelHistogram::from(vec![
                        self.nulls as i64,
                        present,
                    ])));
            }
        }
        let close = ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: self.rows as u64,
            metadata: metadata.build()?,
            bloom_filter: None,
            column_index: None,
            offset_index: Some(offsets.build()),
        };
        Ok((bytes, close))
    }
}

/// Bits to write indices up to `max` (at least one, which every reader takes).
pub fn bit_width(max: u32) -> u8 {
    (32 - max.leading_zeros()).max(1) as u8
}

/// Values as [`hybrid_of`] encodes them.
trait HybridValues {
    fn len(&self) -> usize;
    /// The length of the run of equal values from `i`, to the end at most.
    fn run_from(&self, i: usize) -> usize;
    /// Whether the eight values from `i` are there and equal.
    fn eight_equal(&self, i: usize) -> bool;
    /// Appends value `i` in the bytes its width takes.
    fn put_value(&self, i: usize, out: &mut Vec<u8>);
    /// Appends `groups` groups of eight values from `start`, bit-packed, padded with zeros.
    fn put_groups(&self, start: usize, groups: usize, out: &mut Vec<u8>);
}

/// Appends `values` in Parquet's run-length / bit-packed hybrid: a run of eight or more equal
/// values as one repeated value, the rest bit-packed eight at a time (the last group padded
/// with zeros, which a reader knows to skip from the value count), literal groups running on
/// until a group starts a run worth repeating.
fn hybrid_of(values: &impl HybridValues, out: &mut Vec<u8>) {
    let n = values.len();
    let mut i = 0;
    while i < n {
        let run = values.run_from(i);
        if run >= 8 {
            put_varint(out, (run as u64) << 1);
            values.put_value(i, out);
            i += run;
            continue;
        }
        let start = i;
        let mut groups = 0usize;
        loop {
            i += 8;
            groups += 1;
            if i >= n || values.eight_equal(i) {
                break;
            }
        }
        put_varint(out, ((groups as u64) << 1) | 1);
        values.put_groups(start, groups, out);
        i = i.min(n);
    }
}

/// [`hybrid_of`] `values`, each below `2^width`.
pub fn hybrid(values: &[u32], width: u8, out: &mut Vec<u8>) {
    hybrid_of(&Wide { values, width }, out);
}

/// [`hybrid_of`] `n` one-bit values given as bits (least significant first, as Arrow's
/// validity and Parquet's bit-packing both hold them): runs are found a word at a time and
/// each group of eight taken as a byte, rather than value by value.
pub fn hybrid_bits(bits: &[u8], n: usize, out: &mut Vec<u8>) {
    hybrid_of(&Bits { bits, n }, out);
}

/// Values of `width` bits, one to a `u32`.
struct Wide<'a> {
    values: &'a [u32],
    width: u8,
}

impl HybridValues for Wide<'_> {
    fn len(&self) -> usize {
        self.values.len()
    }

    fn run_from(&self, i: usize) -> usize {
        let v = self.values[i];
        1 + self.values[i + 1..].iter().take_while(|&&x| x == v).count()
    }

    fn eight_equal(&self, i: usize) -> bool {
        self.values
            .get(i..i + 8)
            .is_some_and(|eight| eight.iter().all(|&x| x == eight[0]))
    }

    fn put_value(&self, i: usize, out: &mut Vec<u8>) {
        let value = self.values[i].to_le_bytes();
        out.extend_from_slice(&value[..(self.width as usize).div_ceil(8)]);
    }

    fn put_groups(&self, start: usize, groups: usize, out: &mut Vec<u8>) {
        let end = (start + groups * 8).min(self.values.len());
        bit_pack(&self.values[start..end], self.width, groups * 8, out);
    }
}

/// `n` one-bit values as bits.
struct Bits<'a> {
    bits: &'a [u8],
    n: usize,
}

impl Bits<'_> {
    /// The 64 values from `i` on, zeros past `n`.
    fn word_at(&self, i: usize) -> u64 {
        let (byte, shift) = (i / 8, i % 8);
        let (low, high) = match self.bits.get(byte..byte + 9) {
            Some(nine) => (
                u64::from_le_bytes(nine[..8].try_into().expect("eight bytes")),
                nine[8],
            ),
            None => {
                let mut buf = [0u8; 9];
                let tail = self.bits.get(byte..).unwrap_or_default();
                buf[..tail.len()].copy_from_slice(tail);
                (
                    u64::from_le_bytes(buf[..8].try_into().expect("eight bytes")),
                    buf[8],
                )
            }
        };
        let word = match shift {
            0 => low,
            s => (low >> s) | (u64::from(high) << (64 - s)),
        };
        match self.n.saturating_sub(i) {
            left if left >= 64 => word,
            left => word & ((1u64 << left) - 1),
        }
    }
}

impl HybridValues for Bits<'_> {
    fn len(&self) -> usize {
        self.n
    }

    fn run_from(&self, i: usize) -> usize {
        let flip = if self.word_at(i) & 1 == 1 { !0u64 } else { 0 };
        let mut j = i;
        while j < self.n {
            let mut differs = self.word_at(j) ^ flip;
            if self.n - j < 64 {
                differs |= !0u64 << (self.n - j);
            }
            if differs != 0 {
                return (j + differs.trailing_zeros() as usize).min(self.n) - i;
            }
            j += 64;
        }
        self.n - i
    }

    fn eight_equal(&self, i: usize) -> bool {
        i + 8 <= self.n && matches!(self.word_at(i) as u8, 0 | 0xff)
    }

    fn put_value(&self, i: usize, out: &mut Vec<u8>) {
        out.push((self.word_at(i) & 1) as u8);
    }

    fn put_groups(&self, start: usize, groups: usize, out: &mut Vec<u8>) {
        out.extend((0..groups).map(|g| self.word_at(start + 8 * g) as u8));
    }
}

/// Packs `values` `width` bits each, least significant first, padded with zeros to `count`.
fn bit_pack(values: &[u32], width: u8, count: usize, out: &mut Vec<u8>) {
    let mut acc = 0u64;
    let mut bits = 0u32;
    for k in 0..count {
        let v = values.get(k).copied().unwrap_or(0);
        acc |= u64::from(v) << bits;
        bits += u32::from(width);
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    // `count` is a multiple of eight, so eight values fill `width` whole bytes.
    debug_assert_eq!(bits, 0);
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::rng::SplitMix64;

    /// Decodes the hybrid encoding of `count` values of `width` bits (the reader's side).
    fn unhybrid(mut bytes: &[u8], width: u8, count: usize) -> Vec<u32> {
        let varint = |bytes: &mut &[u8]| {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let b = bytes[0];
                *bytes = &bytes[1..];
                v |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b < 0x80 {
                    return v;
                }
            }
        };
        let mut out = Vec::new();
        while out.len() < count {
            let header = varint(&mut bytes);
            if header & 1 == 0 {
                let n = (width as usize).div_ceil(8);
                let mut value = [0u8; 4];
                value[..n].copy_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                out.extend(std::iter::repeat_n(
                    u32::from_le_bytes(value),
                    (header >> 1) as usize,
                ));
            } else {
                let values = (header >> 1) as usize * 8;
                let (mut acc, mut bits) = (0u64, 0u32);
                for _ in 0..values {
                    while bits < u32::from(width) {
                        acc |= u64::from(bytes[0]) << bits;
                        bytes = &bytes[1..];
                        bits += 8;
                    }
                    out.push((acc & ((1u64 << width) - 1)) as u32);
                    acc >>= width;
                    bits -= u32::from(width);
                }
            }
        }
        assert!(bytes.is_empty(), "{} bytes left over", bytes.len());
        out.truncate(count);
        out
    }

    #[test]
    fn hybrid_repeats_runs_and_packs_the_rest() {
        // Literals around a run shorter than two groups: packed whole.
        let mut values = vec![1, 2, 3];
        values.extend([7; 10]);
        values.extend([4, 5, 6, 0, 1]);
        let mut out = Vec::new();
        hybrid(&values, 3, &mut out);
        assert_eq!(unhybrid(&out, 3, values.len()), values);
        // A run of 20 zeros with width 1: header 40, one value byte.
        let mut out = Vec::new();
        hybrid(&[0; 20], 1, &mut out);
        assert_eq!(out, vec![40, 0]);
        // Eight distinct values of width 4 are one packed group: header 3, then 4 bytes.
        let mut out = Vec::new();
        hybrid(&[1, 2, 3, 4, 5, 6, 7, 8], 4, &mut out);
        assert_eq!(out, vec![3, 0x21, 0x43, 0x65, 0x87]);
    }

    #[test]
    fn hybrid_round_trips_any_values() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for width in [1u8, 2, 5, 8, 9, 17, 32] {
            for n in [0usize, 1, 7, 8, 9, 63, 1000] {
                let values: Vec<u32> = (0..n)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        // Runs half of the time.
                        let v = if seed.is_multiple_of(2) {
                            3
                        } else {
                            (seed >> 8) as u32
                        };
                        (u64::from(v) & ((1u64 << width) - 1)) as u32
                    })
                    .collect();
                let mut out = Vec::new();
                hybrid(&values, width, &mut out);
                assert_eq!(
                    unhybrid(&out, width, n),
                    values,
                    "width {width}, {n} values"
                );
            }
        }
    }

    #[test]
    fn hybrid_of_bits_is_the_hybrid_of_their_values() {
        let mut rng = SplitMix64::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next_u64();
        // Nulls rare, half, common; runs of random lengths; all one value; alternating.
        type Pattern<'a> = &'a dyn Fn(&mut dyn FnMut() -> u64, usize) -> bool;
        let patterns: [Pattern; 6] = [
            &|r, _| r() % 100 != 0,
            &|r, _| r() % 2 == 0,
            &|r, _| r() % 100 == 0,
            &|_, i| (i / 13 + i / 97) % 2 == 0,
            &|_, _| true,
            &|_, i| i % 2 == 0,
        ];
        for (p, pattern) in patterns.iter().enumerate() {
            for n in [
                0usize, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 200, 1000, 20_000,
            ] {
                let values: Vec<bool> = (0..n).map(|i| pattern(&mut next, i)).collect();
                let mut bits = BooleanBufferBuilder::new(n);
                values.iter().for_each(|&v| bits.append(v));
                let mut of_bits = Vec::new();
                hybrid_bits(bits.as_slice(), n, &mut of_bits);
                let as_values: Vec<u32> = values.iter().map(|&v| u32::from(v)).collect();
                let mut of_values = Vec::new();
                hybrid(&as_values, 1, &mut of_values);
                assert_eq!(of_bits, of_values, "pattern {p}, {n} values");
                assert_eq!(unhybrid(&of_bits, 1, n), as_values);
            }
        }
    }

    #[test]
    fn bit_width_is_at_least_one() {
        assert_eq!(bit_width(0), 1);
        assert_eq!(bit_width(1), 1);
        assert_eq!(bit_width(2), 2);
        assert_eq!(bit_width(255), 8);
        assert_eq!(bit_width(256), 9);
    }
}
