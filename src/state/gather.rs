//! The values of chosen rows of a state file's column chunk: a night wants the rows of its
//! persons, a sixth of the province's, spread over every page.
//!
//! Columns whose pages let a row's value be found without the page's other rows are read from
//! the mapped pages, without building an array: `PLAIN` integers (the key columns: a row's value
//! at its offset), names as dictionary codes (the RLE/bit-packed hybrid: a run at a time, a code
//! at its bit offset) and flags, each page's definition levels read once to map rows to values.
//! The rest (delta-packed integers, distinct texts) is decoded whole through the Arrow reader and
//! read the same way ([`Column`]). Writing the per-person tables' integers `PLAIN` as well was
//! measured: a night read no faster (0.98–1.01× on one thread) from pools and history files
//! 77% and 37% larger.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int16Type, Int32Type, Int64Type};
use bytes::Bytes;
use parquet::basic::{Encoding, Type as PhysicalType};
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::reader::ChunkReader;
use parquet::file::serialized_reader::SerializedPageReader;

use crate::error::{Error, Result};

/// One column chunk of a row group, its values found by row.
pub(super) enum Column {
    /// Read from its pages ([`Pages`]).
    Pages(Pages),
    /// Decoded whole: a chunk whose encoding [`Pages`] does not read.
    Decoded(arrow::array::ArrayRef),
}

impl Column {
    /// Column chunk `meta` (of a row group of `rows` rows, mapped by `group`) as [`Pages`]; or
    /// `None` when it is written in an encoding they do not read.
    pub fn pages<R: ChunkReader + 'static>(
        path: &Path,
        group: Arc<R>,
        meta: &ColumnChunkMetaData,
        rows: usize,
    ) -> Result<Option<Column>> {
        Ok(Pages::read(path, group, meta, rows)?.map(Column::Pages))
    }

    /// The 64-bit integer of each of `rows` (ascending, counted from the row group's start),
    /// `None` for a null.
    pub fn i64s_at(&self, path: &Path, rows: &[u32]) -> Result<Vec<Option<i64>>> {
        match self {
            Column::Pages(p) => p.gather(path, rows, |v| v),
            Column::Decoded(a) => primitives_at::<Int64Type>(path, a, rows, "a 64-bit integer"),
        }
    }

    /// The 32-bit integer of each of `rows`, as [`Self::i64s_at`].
    pub fn i32s_at(&self, path: &Path, rows: &[u32]) -> Result<Vec<Option<i32>>> {
        match self {
            Column::Pages(p) => p.gather(path, rows, |v| v as i32),
            Column::Decoded(a) => primitives_at::<Int32Type>(path, a, rows, "a 32-bit integer"),
        }
    }

    /// The dictionary entry of each of `rows` (`None` for a null), with the texts the entries
    /// name.
    pub fn codes_at(
        &self,
        path: &Path,
        rows: &[u32],
    ) -> Result<(Vec<Option<u32>>, Cow<'_, Dictionary>)> {
        match self {
            Column::Pages(p) => {
                let texts = p.dictionary.as_ref().ok_or_else(|| {
                    Error::corrupt(path, "dictionary codes without their dictionary")
                })?;
                let codes = p.gather(path, rows, |v| v as u32)?;
                if let Some(c) = codes.iter().flatten().find(|&&c| c as usize >= texts.len()) {
                    return Err(Error::corrupt(
                        path,
                        format!("dictionary code {c} of {} entries", texts.len()),
                    ));
                }
                Ok((codes, Cow::Borrowed(texts)))
            }
            Column::Decoded(a) => {
                let cast;
                let a = if a.data_type() == &DataType::Utf8 {
                    let codes =
                        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                    cast = arrow::compute::cast(a, &codes).map_err(|e| Error::corrupt(path, e))?;
                    &cast
                } else {
                    a
                };
                let (keys, values): (Vec<Option<u32>>, _) =
                    if let Some(d) = a.as_dictionary_opt::<Int32Type>() {
                        let keys = primitives_at::<Int32Type>(path, d.keys(), rows, "a text")?;
                        let keys = keys.into_iter().map(|k| k.map(|k| k as u32)).collect();
                        (keys, d.values().clone())
                    } else if let Some(d) = a.as_dictionary_opt::<Int16Type>() {
                        let keys = primitives_at::<Int16Type>(path, d.keys(), rows, "a text")?;
                        let keys = keys.into_iter().map(|k| k.map(|k| k as u32)).collect();
                        (keys, d.values().clone())
                    } else {
                        return Err(Error::corrupt(path, "not a text column"));
                    };
                let values = values
                    .as_string_opt::<i32>()
                    .ok_or_else(|| Error::corrupt(path, "not a text column"))?;
                let mut texts = Dictionary::default();
                for t in values.iter() {
                    texts.push(t.unwrap_or(""));
                }
                Ok((keys, Cow::Owned(texts)))
            }
        }
    }

    /// The flag of each of `rows`, as [`Self::i64s_at`].
    pub fn bools_at(&self, path: &Path, rows: &[u32]) -> Result<Vec<Option<bool>>> {
        match self {
            Column::Pages(p) => p.gather(path, rows, |v| v != 0),
            Column::Decoded(a) => {
                let a = a
                    .as_boolean_opt()
                    .ok_or_else(|| Error::corrupt(path, "not a boolean column"))?;
                Ok(rows
                    .iter()
                    .map(|&r| a.is_valid(r as usize).then(|| a.value(r as usize)))
                    .collect())
            }
        }
    }

    /// Calls `f` with the text of each of `rows` in turn (`None` for a null). Texts other than
    /// names are decoded whole ([`Pages`] reads no text but dictionary codes).
    pub fn texts_at<'c>(
        &'c self,
        path: &Path,
        rows: &[u32],
        mut f: impl FnMut(Option<&'c str>),
    ) -> Result<()> {
        let Column::Decoded(a) = self else {
            return Err(Error::corrupt(path, "not a text column"));
        };
        let a = a
            .as_string_opt::<i32>()
            .ok_or_else(|| Error::corrupt(path, "not a text column"))?;
        for &r in rows {
            f(a.is_valid(r as usize).then(|| a.value(r as usize)));
        }
        Ok(())
    }

    /// Calls `f` with the row and the value of every present row of a 64-bit integer column, in
    /// row order.
    pub fn for_each_i64(&self, path: &Path, mut f: impl FnMut(usize, i64)) -> Result<()> {
        match self {
            Column::Pages(p) => {
                for page in &p.pages {
                    let Values::Plain { bytes, width: 8 } = &page.values else {
                        return Err(Error::corrupt(path, "not a 64-bit integer column"));
                    };
                    let values = bytes
                        .chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().expect("chunks of 8 bytes")));
                    match &page.present {
                        Presence::All => {
                            for (i, v) in values.enumerate().take(page.rows) {
                                f(page.first_row + i, v);
                            }
                        }
                        Presence::Some { bits, .. } => {
                            let mut values = values;
                            for r in 0..page.rows {
                                if bits[r / 64] & (1 << (r % 64)) != 0 {
                                    let v = values.next().ok_or_else(|| {
                                        Error::corrupt(path, "a page with fewer values than rows")
                                    })?;
                                    f(page.first_row + r, v);
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
            Column::Decoded(a) => {
                let a = a
                    .as_primitive_opt::<Int64Type>()
                    .ok_or_else(|| Error::corrupt(path, "not a 64-bit integer column"))?;
                for (r, v) in a.iter().enumerate() {
                    if let Some(v) = v {
                        f(r, v);
                    }
                }
                Ok(())
            }
        }
    }
}

/// The value of each of `rows` of `array` if it is of type `T` (`what` names it otherwise),
/// `None` for a null.
fn primitives_at<T: arrow::datatypes::ArrowPrimitiveType>(
    path: &Path,
    array: &dyn Array,
    rows: &[u32],
    what: &str,
) -> Result<Vec<Option<T::Native>>> {
    let a = array
        .as_primitive_opt::<T>()
        .ok_or_else(|| Error::corrupt(path, format!("not {what} column")))?;
    Ok(rows
        .iter()
        .map(|&r| a.is_valid(r as usize).then(|| a.value(r as usize)))
        .collect())
}

/// The column `name` of `batches` (one row group's, in order) as one array.
pub(super) fn decoded(path: &Path, batches: &[RecordBatch], name: &str) -> Result<Column> {
    let arrays: Vec<&dyn Array> = batches
        .iter()
        .map(|b| b.column_by_name(name).map(|c| c.as_ref()))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::schema(path, name, "missing from a state file"))?;
    let array = match arrays.as_slice() {
        [one] => arrow::array::make_array(one.to_data()),
        _ => {
            arrow::compute::concat(&arrays).map_err(|e| Error::schema(path, name, e.to_string()))?
        }
    };
    // Dates and times are read as the integers they are stored as, as from the pages.
    let integers = match array.data_type() {
        DataType::Date32 => Some(DataType::Int32),
        DataType::Timestamp(..) => Some(DataType::Int64),
        _ => None,
    };
    let array = match integers {
        Some(t) => arrow::compute::cast(&array, &t)
            .map_err(|e| Error::schema(path, name, e.to_string()))?,
        None => array,
    };
    Ok(Column::Decoded(array))
}

/// A chunk's data pages, each as which of its rows hold a value and where the values are.
pub(super) struct Pages {
    pages: Vec<PageRows>,
    /// The texts of a dictionary-encoded chunk's entries.
    dictionary: Option<Dictionary>,
}

/// The texts of a dictionary's entries, side by side.
#[derive(Debug, Clone, Default)]
pub(super) struct Dictionary {
    text: Vec<u8>,
    ends: Vec<u32>,
}

impl Dictionary {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Entry `i`'s text.
    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        std::str::from_utf8(&self.text[start..self.ends[i] as usize]).expect("checked when pushed")
    }

    fn push(&mut self, text: &str) {
        self.text.extend_from_slice(text.as_bytes());
        self.ends.push(self.text.len() as u32);
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i))
    }
}

struct PageRows {
    first_row: usize,
    rows: usize,
    present: Presence,
    values: Values,
}

/// Which rows of a page hold a value.
enum Presence {
    All,
    /// A bit per row, and the number of values before each 64 rows.
    Some {
        bits: Vec<u64>,
        before: Vec<u32>,
    },
}

impl Presence {
    /// The number of the value of row `r` among the page's values, if it has one.
    #[inline]
    fn value_of(&self, r: usize) -> Option<usize> {
        match self {
            Presence::All => Some(r),
            Presence::Some { bits, before } => {
                let word = bits[r / 64];
                let bit = 1u64 << (r % 64);
                (word & bit != 0)
                    .then(|| before[r / 64] as usize + (word & (bit - 1)).count_ones() as usize)
            }
        }
    }
}

/// A page's values.
enum Values {
    /// Little-endian, `width` bytes each.
    Plain { bytes: Bytes, width: usize },
    /// Dictionary codes in the RLE/bit-packed hybrid.
    Codes {
        runs: Vec<Run>,
        bytes: Bytes,
        bit_width: u8,
    },
    /// Flags, a bit each from the lowest bit of each byte on.
    Bits(Bytes),
}

/// The `width`-bit value at bit `shift` of byte `at` of `bytes`, if the bytes hold it.
#[inline]
fn packed(bytes: &[u8], at: usize, shift: usize, width: u8) -> Option<u32> {
    let mut word = [0u8; 8];
    let end = (at + 8).min(bytes.len());
    let need = (shift + width as usize).div_ceil(8);
    if at + need > bytes.len() {
        return None;
    }
    word[..end - at].copy_from_slice(&bytes[at..end]);
    let mask = if width >= 32 {
        u32::MAX as u64
    } else {
        (1u64 << width) - 1
    };
    Some(((u64::from_le_bytes(word) >> shift) & mask) as u32)
}

/// A run of the RLE/bit-packed hybrid: `first` is the number of its first value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    first: u32,
    kind: RunKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunKind {
    /// One value repeated.
    Repeated(u32),
    /// Values packed from byte `byte` on.
    Packed { byte: usize },
}

/// The runs of `count` values of width `bit_width` in the hybrid encoding `bytes`, each with
/// the number of its first value, and the run lengths.
fn runs(bytes: &[u8], bit_width: u8, count: usize) -> Option<Vec<(Run, usize)>> {
    if bit_width > 32 {
        return None;
    }
    let mut out = Vec::new();
    let (mut at, mut pos) = (0usize, 0usize);
    while at < count {
        let header = uleb128(bytes, &mut pos)?;
        if header & 1 == 1 {
            let values = (header >> 1) as usize * 8;
            out.push((
                Run {
                    first: at as u32,
                    kind: RunKind::Packed { byte: pos },
                },
                values.min(count - at),
            ));
            pos += (header >> 1) as usize * bit_width as usize;
            at += values;
        } else {
            let len = (header >> 1) as usize;
            let width = (bit_width as usize).div_ceil(8);
            let mut value = [0u8; 4];
            value[..width].copy_from_slice(bytes.get(pos..pos + width)?);
            out.push((
                Run {
                    first: at as u32,
                    kind: RunKind::Repeated(u32::from_le_bytes(value)),
                },
                len.min(count - at),
            ));
            pos += width;
            if len == 0 {
                return None;
            }
            at += len;
        }
    }
    Some(out)
}

fn uleb128(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        value |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Sets the bits of `range`.
fn set_range(bits: &mut [u64], range: std::ops::Range<usize>) {
    let mut r = range.start;
    while r < range.end {
        let (word, bit) = (r / 64, r % 64);
        let n = (64 - bit).min(range.end - r);
        let mask = if n == 64 {
            u64::MAX
        } else {
            ((1u64 << n) - 1) << bit
        };
        bits[word] |= mask;
        r += n;
    }
}

/// Which of `rows` rows hold a value, from their definition levels (bit width 1).
fn presence(levels: &[u8], rows: usize) -> Option<(Presence, usize)> {
    let runs = runs(levels, 1, rows)?;
    if let [(
        Run {
            kind: RunKind::Repeated(1),
            ..
        },
        _,
    )] = runs.as_slice()
    {
        return Some((Presence::All, rows));
    }
    let mut bits = vec![0u64; rows.div_ceil(64) + 1];
    for &(run, len) in &runs {
        let first = run.first as usize;
        match run.kind {
            RunKind::Repeated(0) => {}
            RunKind::Repeated(_) => set_range(&mut bits, first..first + len),
            RunKind::Packed { byte } => {
                // Eight rows a byte, shifted to the run's first row.
                let bytes = levels.get(byte..byte + len.div_ceil(8))?;
                for (k, &b) in bytes.iter().enumerate() {
                    let mut b = b as u64;
                    if k * 8 + 8 > len {
                        b &= (1 << (len - k * 8)) - 1;
                    }
                    let r = first + k * 8;
                    bits[r / 64] |= b << (r % 64);
                    if r % 64 > 56 {
                        bits[r / 64 + 1] |= b >> (64 - r % 64);
                    }
                }
            }
        }
    }
    bits.truncate(rows.div_ceil(64));
    let mut before = Vec::with_capacity(bits.len());
    let mut values = 0u32;
    for w in &bits {
        before.push(values);
        values += w.count_ones();
    }
    Some((Presence::Some { bits, before }, values as usize))
}

impl Pages {
    fn read<R: ChunkReader + 'static>(
        path: &Path,
        group: Arc<R>,
        meta: &ColumnChunkMetaData,
        rows: usize,
    ) -> Result<Option<Pages>> {
        let width = match meta.column_type() {
            PhysicalType::INT64 => 8,
            PhysicalType::INT32 => 4,
            PhysicalType::BYTE_ARRAY => 0,
            PhysicalType::BOOLEAN => 1,
            _ => return Ok(None),
        };
        let descr = meta.column_descr();
        if descr.max_rep_level() > 0 || descr.max_def_level() > 1 {
            return Ok(None);
        }
        let nullable = descr.max_def_level() == 1;
        let corrupt = |e: parquet::errors::ParquetError| Error::corrupt(path, e);
        let mut reader = SerializedPageReader::new(group, meta, rows, None).map_err(corrupt)?;
        let mut pages = Vec::new();
        let mut dictionary = None;
        let mut first_row = 0;
        while let Some(page) = reader.get_next_page().map_err(corrupt)? {
            let (buf, levels, page_rows, encoding) = match page {
                Page::DictionaryPage {
                    buf, num_values, ..
                } => {
                    if width != 0 {
                        return Ok(None);
                    }
                    dictionary = Some(
                        plain_texts(&buf, num_values as usize)
                            .ok_or_else(|| Error::corrupt(path, "a broken dictionary page"))?,
                    );
                    continue;
                }
                Page::DataPage {
                    buf,
                    num_values,
                    encoding,
                    def_level_encoding,
                    ..
                } => {
                    let rows = num_values as usize;
                    if !nullable {
                        (buf, None, rows, encoding)
                    } else if def_level_encoding != Encoding::RLE {
                        return Ok(None);
                    } else {
                        let length = buf
                            .get(..4)
                            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
                            .filter(|&l| 4 + l <= buf.len())
                            .ok_or_else(|| Error::corrupt(path, "a page's levels are cut off"))?;
                        let levels = buf.slice(4..4 + length);
                        (buf.slice(4 + length..), Some(levels), rows, encoding)
                    }
                }
                Page::DataPageV2 {
                    buf,
                    num_rows,
                    encoding,
                    def_levels_byte_len,
                    rep_levels_byte_len,
                    ..
                } => {
                    let (rep, def) = (rep_levels_byte_len as usize, def_levels_byte_len as usize);
                    if rep + def > buf.len() {
                        return Err(Error::corrupt(path, "a page's levels are cut off"));
                    }
                    let levels = nullable.then(|| buf.slice(rep..rep + def));
                    (buf.slice(rep + def..), levels, num_rows as usize, encoding)
                }
            };
            let (present, values) = match levels {
                None => (Presence::All, page_rows),
                Some(levels) => presence(&levels, page_rows)
                    .ok_or_else(|| Error::corrupt(path, "broken definition levels"))?,
            };
            let values = match (encoding, width) {
                (Encoding::PLAIN, 4 | 8) => {
                    if buf.len() < values * width {
                        return Err(Error::corrupt(path, "a page with fewer values than rows"));
                    }
                    Values::Plain { bytes: buf, width }
                }
                (Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY, 0) => {
                    let bit_width = *buf.first().unwrap_or(&0);
                    let bytes = buf.slice(buf.len().min(1)..);
                    let runs = runs(&bytes, bit_width, values)
                        .ok_or_else(|| Error::corrupt(path, "broken dictionary codes"))?
                        .into_iter()
                        .map(|(r, _)| r)
                        .collect();
                    Values::Codes {
                        runs,
                        bytes,
                        bit_width,
                    }
                }
                (Encoding::PLAIN, 1) => {
                    if buf.len() < values.div_ceil(8) {
                        return Err(Error::corrupt(path, "a page with fewer values than rows"));
                    }
                    Values::Bits(buf)
                }
                _ => return Ok(None),
            };
            pages.push(PageRows {
                first_row,
                rows: page_rows,
                present,
                values,
            });
            first_row += page_rows;
        }
        if first_row != rows {
            return Err(Error::corrupt(
                path,
                format!("a column chunk of {first_row} rows in a row group of {rows}"),
            ));
        }
        Ok(Some(Pages { pages, dictionary }))
    }

    /// `value(v)` of the integer (or code) of each of `rows` (ascending) that holds one.
    fn gather<T>(
        &self,
        path: &Path,
        rows: &[u32],
        value: impl Fn(i64) -> T,
    ) -> Result<Vec<Option<T>>> {
        let mut out = Vec::with_capacity(rows.len());
        let mut rest = rows;
        for p in &self.pages {
            let end = p.first_row + p.rows;
            let n = rest.partition_point(|&r| (r as usize) < end);
            let (here, next) = rest.split_at(n);
            rest = next;
            if here.is_empty() {
                continue;
            }
            if (here[0] as usize) < p.first_row {
                return Err(Error::corrupt(path, "rows asked for out of order"));
            }
            p.values.ints(
                path,
                here.iter()
                    .map(|&r| p.present.value_of(r as usize - p.first_row)),
                |v| out.push(v.map(&value)),
            )?;
        }
        if let Some(r) = rest.first() {
            return Err(Error::corrupt(
                path,
                format!("row {r} past the column chunk"),
            ));
        }
        Ok(out)
    }
}

impl Values {
    /// Each of `values` (ascending value numbers, `None` for a row without one) as an integer
    /// (a code for [`Values::Codes`]), handed to `out` in turn.
    fn ints(
        &self,
        path: &Path,
        values: impl Iterator<Item = Option<usize>>,
        mut out: impl FnMut(Option<i64>),
    ) -> Result<()> {
        let short = || Error::corrupt(path, "a page with fewer values than rows");
        match self {
            Values::Plain { bytes, width } if *width == 8 || *width == 4 => {
                for i in values {
                    out(match i {
                        Some(i) => {
                            let b = bytes.get(i * width..(i + 1) * width).ok_or_else(short)?;
                            Some(match b.try_into() {
                                Ok(b8) => i64::from_le_bytes(b8),
                                Err(_) => i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64,
                            })
                        }
                        None => None,
                    });
                }
            }
            Values::Plain { .. } => return Err(Error::corrupt(path, "not an integer column")),
            Values::Bits(bytes) => {
                for i in values {
                    out(match i {
                        Some(i) => {
                            Some(((*bytes.get(i / 8).ok_or_else(short)? >> (i % 8)) & 1) as i64)
                        }
                        None => None,
                    });
                }
            }
            Values::Codes {
                runs,
                bytes,
                bit_width,
            } => {
                // Values come in order: the run holding one is at or after the last one's.
                let mut run = 0;
                for i in values {
                    let Some(i) = i else {
                        out(None);
                        continue;
                    };
                    while runs.get(run + 1).is_some_and(|r| r.first as usize <= i) {
                        run += 1;
                    }
                    let r = runs
                        .get(run)
                        .filter(|r| r.first as usize <= i)
                        .ok_or_else(short)?;
                    out(Some(match r.kind {
                        RunKind::Repeated(v) => v as i64,
                        RunKind::Packed { byte } => {
                            let bit = (i - r.first as usize) * *bit_width as usize;
                            packed(bytes, byte + bit / 8, bit % 8, *bit_width).ok_or_else(short)?
                                as i64
                        }
                    }));
                }
            }
        }
        Ok(())
    }
}

/// `count` texts of a `PLAIN` byte array page (each its length, 4 bytes, then its bytes).
fn plain_texts(buf: &[u8], count: usize) -> Option<Dictionary> {
    let mut texts = Dictionary {
        text: Vec::with_capacity(buf.len()),
        ends: Vec::with_capacity(count),
    };
    let mut pos = 0;
    for _ in 0..count {
        let len = u32::from_le_bytes(buf.get(pos..pos + 4)?.try_into().ok()?) as usize;
        pos += 4;
        texts.push(std::str::from_utf8(buf.get(pos..pos + len)?).ok()?);
        pos += len;
    }
    Some(texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_runs_are_found_with_their_first_values() {
        // An RLE run of 5 threes (header 5 << 1), then one bit-packed group of 8 values of
        // width 2 (header 1 << 1 | 1): 0, 1, 2, 3, 0, 1, 2, 3.
        let bytes = [10u8, 3, 3, 0b1110_0100, 0b1110_0100];
        let runs = runs(&bytes, 2, 11).unwrap();
        assert_eq!(
            runs,
            vec![
                (
                    Run {
                        first: 0,
                        kind: RunKind::Repeated(3)
                    },
                    5
                ),
                (
                    Run {
                        first: 5,
                        kind: RunKind::Packed { byte: 3 }
                    },
                    6
                ),
            ]
        );
        let values = Values::Codes {
            runs: runs.iter().map(|r| r.0).collect(),
            bytes: Bytes::copy_from_slice(&bytes),
            bit_width: 2,
        };
        let mut got = Vec::new();
        values
            .ints(Path::new("t"), (0..11).map(Some), |v| got.push(v.unwrap()))
            .unwrap();
        assert_eq!(got, vec![3, 3, 3, 3, 3, 0, 1, 2, 3, 0, 1]);
    }

    /// A file of one row group: an amount with nulls, a date, a name (dictionary) with nulls,
    /// a flag, and a delta-packed integer, in pages of 7 rows; written as the state's tables
    /// write them.
    fn file(rows: usize) -> (Bytes, RecordBatch) {
        use arrow::array::{BooleanArray, Date32Array, DictionaryArray, Int64Array, StringArray};
        use parquet::arrow::ArrowWriter;
        use parquet::file::properties::WriterProperties;
        use parquet::schema::types::ColumnPath;
        let amount: Int64Array = (0..rows)
            .map(|i| (i % 3 != 1).then_some(i as i64 * 1_000_003 - 50))
            .collect();
        let day = Date32Array::from_iter_values((0..rows).map(|i| 19_000 + (i * 7 % 31) as i32));
        let keys: arrow::array::Int16Array = (0..rows)
            .map(|i| (i % 5 != 0).then_some((i % 4) as i16))
            .collect();
        let name = DictionaryArray::try_new(
            keys,
            Arc::new(StringArray::from(vec!["甲", "b", "cc", "ddd"])),
        )
        .unwrap();
        let flag = BooleanArray::from_iter((0..rows).map(|i| Some(i % 7 < 3)));
        let packed = Int64Array::from_iter_values((0..rows).map(|i| i as i64));
        let batch = RecordBatch::try_from_iter([
            ("amount", Arc::new(amount) as arrow::array::ArrayRef),
            ("day", Arc::new(day) as _),
            ("name", Arc::new(name) as _),
            ("flag", Arc::new(flag) as _),
            ("packed", Arc::new(packed) as _),
        ])
        .unwrap();
        let plain = |b: parquet::file::properties::WriterPropertiesBuilder, c: &str| {
            b.set_column_dictionary_enabled(ColumnPath::from(c), false)
                .set_column_encoding(ColumnPath::from(c), Encoding::PLAIN)
        };
        let mut props = WriterProperties::builder()
            .set_data_page_row_count_limit(7)
            .set_write_batch_size(7);
        for c in ["amount", "day", "flag"] {
            props = plain(props, c);
        }
        let props = props
            .set_column_dictionary_enabled(ColumnPath::from("packed"), false)
            .set_column_encoding(ColumnPath::from("packed"), Encoding::DELTA_BINARY_PACKED)
            .build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        (Bytes::from(out), batch)
    }

    fn columns(bytes: &Bytes, rows: usize) -> Vec<Option<Column>> {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        let group = reader.metadata().row_group(0);
        assert!(group.column(0).compressed_size() > 0);
        (0..5)
            .map(|c| {
                Column::pages(
                    Path::new("t"),
                    Arc::new(bytes.clone()),
                    group.column(c),
                    rows,
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn chosen_rows_are_read_from_the_pages_as_the_arrow_reader_reads_them() {
        let rows = 100;
        let (bytes, batch) = file(rows);
        let columns = columns(&bytes, rows);
        let path = Path::new("t");
        let chosen: Vec<u32> = vec![0, 1, 2, 6, 7, 13, 14, 15, 50, 64, 65, 98, 99];
        let amount = batch.column(0).as_primitive::<Int64Type>();
        let expected: Vec<Option<i64>> = chosen
            .iter()
            .map(|&r| {
                amount
                    .is_valid(r as usize)
                    .then(|| amount.value(r as usize))
            })
            .collect();
        let c = columns[0]
            .as_ref()
            .expect("PLAIN amounts are read from their pages");
        assert_eq!(c.i64s_at(path, &chosen).unwrap(), expected);
        assert_eq!(expected[1], None);
        assert_eq!(expected[3], Some(6 * 1_000_003 - 50));
        let mut present = Vec::new();
        c.for_each_i64(path, |r, v| present.push((r, v))).unwrap();
        assert_eq!(present.len(), rows - rows / 3);
        assert_eq!(present[2], (3, 3 * 1_000_003 - 50));

        let day = columns[1]
            .as_ref()
            .expect("PLAIN dates are read from their pages");
        let days = day.i32s_at(path, &chosen).unwrap();
        assert_eq!(days[3], Some(19_000 + 42 % 31));

        let name = columns[2]
            .as_ref()
            .expect("dictionary codes are read from their pages");
        let (codes, texts) = name.codes_at(path, &chosen).unwrap();
        let got: Vec<Option<&str>> = codes
            .iter()
            .map(|c| c.map(|c| texts.get(c as usize)))
            .collect();
        let want: Vec<Option<&str>> = chosen
            .iter()
            .map(|&r| (r % 5 != 0).then(|| ["甲", "b", "cc", "ddd"][r as usize % 4]))
            .collect();
        assert_eq!(got, want);

        let flag = columns[3]
            .as_ref()
            .expect("PLAIN flags are read from their pages");
        let flags = flag.bools_at(path, &chosen).unwrap();
        let want: Vec<Option<bool>> = chosen.iter().map(|&r| Some(r % 7 < 3)).collect();
        assert_eq!(flags, want);

        // A delta-packed column is not read from its pages: it is decoded whole instead, and
        // read the same way.
        assert!(columns[4].is_none());
        let whole = |name| decoded(path, std::slice::from_ref(&batch), name).unwrap();
        assert_eq!(
            whole("packed").i64s_at(path, &[0, 5, 99]).unwrap(),
            vec![Some(0), Some(5), Some(99)]
        );
        assert_eq!(whole("day").i32s_at(path, &chosen).unwrap(), days);
        assert_eq!(whole("amount").i64s_at(path, &chosen).unwrap(), expected);
        let names = whole("name");
        let (codes, texts) = names.codes_at(path, &chosen).unwrap();
        let decoded_names: Vec<Option<&str>> = codes
            .iter()
            .map(|c| c.map(|c| texts.get(c as usize)))
            .collect();
        assert_eq!(decoded_names, got);
        // Rows past the chunk are refused.
        assert!(c.i64s_at(path, &[rows as u32]).is_err());
    }

    #[test]
    fn definition_levels_map_rows_to_values() {
        // One bit-packed group: rows 0, 2, 3 and 7 present.
        let (present, values) = presence(&[3, 0b1000_1101], 8).unwrap();
        assert_eq!(values, 4);
        let got: Vec<Option<usize>> = (0..8).map(|r| present.value_of(r)).collect();
        assert_eq!(
            got,
            vec![Some(0), None, Some(1), Some(2), None, None, None, Some(3)]
        );
        // One RLE run of ones: every row present.
        assert!(matches!(presence(&[16, 1], 8).unwrap().0, Presence::All));
        // Levels cut off before the rows end.
        assert!(presence(&[3], 8).is_none());
    }
}
