//! A text column chunk written from its codes: the dictionary pages and `RLE_DICTIONARY` data
//! pages of a column whose rows arrive as codes into a short list of names (the outputs'
//! regions, statuses, rules, policy ids, … built by [`crate::output::coded`]).
//!
//! Parquet's Arrow writer takes such a column value by value: it hashes every row's text into
//! the chunk's dictionary to find the index it already has. Here the row's code is mapped to
//! the chunk's index through a table per list of names, so a row costs a table lookup and a few
//! bits; the text of a name is touched once per chunk. The file is what the Arrow writer makes
//! of the same column — a dictionary page of the names in first-use order, then data pages of
//! definition levels and indices, each a run-length/bit-packed hybrid — with pages cut every
//! `data_page_row_count_limit` rows from the row group's start, so that the bytes depend only
//! on the rows.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::{DataType, UInt32Type};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Marks a code of the current list not yet given an index in the chunk's dictionary.
const UNSEEN: u32 = u32::MAX;

/// Whether `array` can be written by a [`CodedChunk`]: codes (`UInt32`) into a list of text.
pub fn is_coded(array: &dyn Array) -> bool {
    matches!(array.data_type(), DataType::Dictionary(key, value)
        if key.as_ref() == &DataType::UInt32 && value.as_ref() == &DataType::Utf8)
}

/// One column of one row group, being written from codes.
pub struct CodedChunk {
    descr: ColumnDescPtr,
    compression: Compression,
    nullable: bool,
    page_rows: usize,
    /// The chunk's dictionary, in first-use order, and where each name is in it.
    names: Vec<String>,
    index_of: HashMap<String, u32>,
    /// The list of names the last rows were coded into, and each code's index in `names`
    /// ([`UNSEEN`] until first used).
    list: Option<ArrayRef>,
    remap: Vec<u32>,
    /// The page being filled: each row's definition level, and the non-null rows' indices.
    levels: Vec<u32>,
    indices: Vec<u32>,
    /// Finished data pages, compressed: (bytes, uncompressed size, rows).
    pages: Vec<(Bytes, usize, usize)>,
    /// Rows in the chunk, and in the page being filled.
    rows: usize,
    filled: usize,
}

impl CodedChunk {
    pub fn new(
        descr: ColumnDescPtr,
        compression: Compression,
        page_rows: usize,
    ) -> Result<CodedChunk> {
        if descr.max_rep_level() != 0 || descr.max_def_level() > 1 {
            return Err(ParquetError::General(format!(
                "column {} is not a top-level text column",
                descr.path()
            )));
        }
        if !matches!(compression, Compression::SNAPPY | Compression::UNCOMPRESSED) {
            return Err(ParquetError::General(format!(
                "coded columns are written with snappy or uncompressed, not {compression}"
            )));
        }
        Ok(CodedChunk {
            nullable: descr.max_def_level() == 1,
            descr,
            compression,
            page_rows: page_rows.max(1),
            names: Vec::new(),
            index_of: HashMap::new(),
            list: None,
            remap: Vec::new(),
            levels: Vec::new(),
            indices: Vec::new(),
            pages: Vec::new(),
            rows: 0,
            filled: 0,
        })
    }

    /// Appends `array`'s rows: codes into a list of text ([`is_coded`]), or plain text, whose
    /// values are looked up one by one.
    pub fn write(&mut self, array: &dyn Array) -> Result<()> {
        if !self.nullable && array.null_count() > 0 {
            return Err(ParquetError::General(format!(
                "column {} is not nullable but has {} nulls",
                self.descr.path(),
                array.null_count()
            )));
        }
        if is_coded(array) {
            let coded = array.as_dictionary::<UInt32Type>();
            self.use_list(coded.values());
            let keys = coded.keys().values();
            let nulls = coded.keys().nulls().filter(|n| n.null_count() > 0);
            // A page's share of the rows at a time, so that the loops are over codes only.
            let mut at = 0;
            while at < keys.len() {
                let take = (self.page_rows - self.filled).min(keys.len() - at);
                match nulls {
                    None => {
                        if self.nullable {
                            self.levels.resize(self.levels.len() + take, 1);
                        }
                        for &key in &keys[at..at + take] {
                            let index = self.index(key);
                            self.indices.push(index);
                        }
                    }
                    Some(nulls) => {
                        for (k, &key) in keys[at..at + take].iter().enumerate() {
                            let valid = nulls.is_valid(at + k);
                            self.levels.push(u32::from(valid));
                            if valid {
                                let index = self.index(key);
                                self.indices.push(index);
                            }
                        }
                    }
                }
                at += take;
                self.advance(take)?;
            }
            return Ok(());
        }
        let text: &StringArray = array.as_any().downcast_ref().ok_or_else(|| {
            ParquetError::General(format!(
                "column {} is written from codes, but a batch has {}",
                self.descr.path(),
                array.data_type()
            ))
        })?;
        for value in text.iter() {
            let index = value.map(|v| self.intern(v));
            self.push(index)?;
        }
        Ok(())
    }

    /// Makes `list` the list the next codes index, keeping the map of the last list when the
    /// names are the same (each batch brings its own copy of the same few names).
    fn use_list(&mut self, list: &ArrayRef) {
        if let Some(last) = &self.list {
            if std::sync::Arc::ptr_eq(last, list) || last.as_ref() == list.as_ref() {
                self.list = Some(list.clone());
                return;
            }
        }
        self.remap.clear();
        self.remap.resize(list.len(), UNSEEN);
        self.list = Some(list.clone());
    }

    /// The chunk's index of `code` in the current list.
    #[inline]
    fn index(&mut self, code: u32) -> u32 {
        match self.remap[code as usize] {
            UNSEEN => self.first_use(code),
            index => index,
        }
    }

    #[cold]
    fn first_use(&mut self, code: u32) -> u32 {
        let list = self.list.as_ref().expect("a list is set before codes");
        let name = list.as_string::<i32>().value(code as usize).to_owned();
        let index = self.intern(&name);
        self.remap[code as usize] = index;
        index
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&index) = self.index_of.get(name) {
            return index;
        }
        let index = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.index_of.insert(name.to_owned(), index);
        index
    }

    fn push(&mut self, index: Option<u32>) -> Result<()> {
        if self.nullable {
            self.levels.push(u32::from(index.is_some()));
        }
        if let Some(index) = index {
            self.indices.push(index);
        }
        self.advance(1)
    }

    /// Counts `rows` more rows, and finishes the page they fill.
    fn advance(&mut self, rows: usize) -> Result<()> {
        self.rows += rows;
        self.filled += rows;
        if self.filled == self.page_rows {
            self.finish_page()?;
        }
        Ok(())
    }

    /// Encodes the filling page: for a nullable column its definition levels (length-prefixed),
    /// then the indices' bit width and the indices.
    fn finish_page(&mut self) -> Result<()> {
        let rows = std::mem::take(&mut self.filled);
        if rows == 0 {
            return Ok(());
        }
        let mut page = Vec::with_capacity(rows / 2 + 16);
        if self.nullable {
            let start = page.len();
            page.extend_from_slice(&[0; 4]);
            hybrid(&self.levels, 1, &mut page);
            let length = (page.len() - start - 4) as u32;
            page[start..start + 4].copy_from_slice(&length.to_le_bytes());
        }
        let width = bit_width(self.indices.iter().copied().max().unwrap_or(0));
        page.push(width);
        hybrid(&self.indices, width, &mut page);
        let uncompressed = page.len();
        self.pages.push((self.compress(page)?, uncompressed, rows));
        self.levels.clear();
        self.indices.clear();
        Ok(())
    }

    fn compress(&self, page: Vec<u8>) -> Result<Bytes> {
        Ok(match self.compression {
            Compression::SNAPPY => snap::raw::Encoder::new()
                .compress_vec(&page)
                .map_err(|e| ParquetError::External(Box::new(e)))?
                .into(),
            _ => page.into(),
        })
    }

    /// Finishes the chunk: its bytes (the dictionary page, then the data pages) and its
    /// metadata and offset index, counted from the chunk's start, for
    /// `SerializedRowGroupWriter::append_column`.
    pub fn close(mut self) -> Result<(Bytes, ColumnCloseResult)> {
        self.finish_page()?;
        let mut dictionary = Vec::new();
        for name in &self.names {
            dictionary.extend_from_slice(&(name.len() as u32).to_le_bytes());
            dictionary.extend_from_slice(name.as_bytes());
        }
        let dictionary_size = dictionary.len();
        let dictionary_page = CompressedPage::new(
            Page::DictionaryPage {
                buf: self.compress(dictionary)?,
                num_values: self.names.len() as u32,
                encoding: Encoding::PLAIN,
                is_sorted: false,
            },
            dictionary_size,
        );
        let mut sink = TrackedWrite::new(Vec::new());
        let mut writer = SerializedPageWriter::new(&mut sink);
        let dictionary_spec = writer.write_page(dictionary_page)?;
        let (mut compressed, mut uncompressed) = (
            dictionary_spec.compressed_size as i64,
            dictionary_spec.uncompressed_size as i64,
        );
        let mut offsets = OffsetIndexBuilder::new();
        let mut first_data_page = None;
        for (buf, size, rows) in std::mem::take(&mut self.pages) {
            let spec = writer.write_page(CompressedPage::new(
                Page::DataPage {
                    buf,
                    num_values: rows as u32,
                    encoding: Encoding::RLE_DICTIONARY,
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
        let metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_encodings(vec![
                Encoding::PLAIN,
                Encoding::RLE,
                Encoding::RLE_DICTIONARY,
            ])
            .set_compression(self.compression)
            .set_num_values(self.rows as i64)
            .set_total_compressed_size(compressed)
            .set_total_uncompressed_size(uncompressed)
            .set_dictionary_page_offset(Some(dictionary_spec.offset as i64))
            .set_data_page_offset(first_data_page.unwrap_or(dictionary_spec.offset as i64))
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: self.rows as u64,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: Some(offsets.build()),
        };
        Ok((bytes, close))
    }
}

/// Bits to write indices up to `max` (at least one, which every reader takes).
fn bit_width(max: u32) -> u8 {
    (32 - max.leading_zeros()).max(1) as u8
}

/// Appends `values` (each below `2^width`) in Parquet's run-length / bit-packed hybrid: a run
/// of eight or more equal values as one repeated value, the rest bit-packed eight at a time
/// (the last group padded with zeros, which a reader knows to skip from the value count).
fn hybrid(values: &[u32], width: u8, out: &mut Vec<u8>) {
    let n = values.len();
    let run_at = |i: usize, at_least: usize| {
        let v = values[i];
        let end = (i + at_least).min(n);
        let mut j = i + 1;
        while j < end && values[j] == v {
            j += 1;
        }
        j - i
    };
    let mut i = 0;
    while i < n {
        let run = run_at(i, n - i);
        if run >= 8 {
            put_varint(out, (run as u64) << 1);
            let value = values[i].to_le_bytes();
            out.extend_from_slice(&value[..(width as usize).div_ceil(8)]);
            i += run;
            continue;
        }
        // Literal groups of eight until a group starts a run worth repeating.
        let start = i;
        let mut groups = 0u64;
        loop {
            i += 8;
            groups += 1;
            if i >= n || run_at(i, 8) >= 8 {
                break;
            }
        }
        put_varint(out, (groups << 1) | 1);
        bit_pack(&values[start..i.min(n)], width, groups as usize * 8, out);
        i = i.min(n);
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

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn bit_width_is_at_least_one() {
        assert_eq!(bit_width(0), 1);
        assert_eq!(bit_width(1), 1);
        assert_eq!(bit_width(2), 2);
        assert_eq!(bit_width(255), 8);
        assert_eq!(bit_width(256), 9);
    }
}
