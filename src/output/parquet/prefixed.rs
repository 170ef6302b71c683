//! A text column of (nearly) distinct values written by hand, without a dictionary: the ids
//! (`claim_id`, `person_id`, `related_claim_id`).
//!
//! `DELTA_BYTE_ARRAY` writes each value as the length of the prefix it shares with the value
//! before it and the rest: a page holds its values' prefix lengths and suffix lengths, each
//! `DELTA_BINARY_PACKED` ([`super::packed`]), then the suffixes end to end. Prefixes start
//! afresh on each page, which a reader decodes on its own. `DELTA_LENGTH_BYTE_ARRAY` is the
//! same without the prefixes: the lengths, then the values end to end. Pages are cut every
//! `page_rows` rows from the row group's start.

use arrow::array::Array;
use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::Result;

use super::packed::delta_binary_packed;
use super::pages::{take_rows, ChunkPages, ChunkSummary, HandChunk, Paged};

/// One text column of one row group, being written as prefixes and suffixes, or as lengths
/// and values.
pub struct PrefixedChunk {
    pages: ChunkPages,
    /// `DELTA_BYTE_ARRAY` (prefixes shared with the value before), else
    /// `DELTA_LENGTH_BYTE_ARRAY` (every prefix empty, and not written).
    prefixed: bool,
    /// The filling page's last value, the next value's prefix is counted against, when it
    /// came in an earlier batch ([`HandChunk::write`] compares values within a batch where
    /// they lie).
    previous: Vec<u8>,
    prefix_lengths: Vec<i64>,
    suffix_lengths: Vec<i64>,
    suffixes: Vec<u8>,
}

impl PrefixedChunk {
    /// A `DELTA_BYTE_ARRAY` chunk when `prefixed`, else a `DELTA_LENGTH_BYTE_ARRAY` one.
    pub fn new(pages: ChunkPages, prefixed: bool) -> PrefixedChunk {
        PrefixedChunk {
            pages,
            prefixed,
            previous: Vec::new(),
            prefix_lengths: Vec::new(),
            suffix_lengths: Vec::new(),
            suffixes: Vec::new(),
        }
    }

    /// Takes `value` as the filling page's next value, after `previous`.
    fn push(&mut self, previous: &[u8], value: &[u8]) {
        let prefix = common_prefix(previous, value);
        self.prefix_lengths.push(prefix as i64);
        self.suffix_lengths.push((value.len() - prefix) as i64);
        self.suffixes.extend_from_slice(&value[prefix..]);
    }

    /// Whether the filling page has a value yet (`DELTA_BYTE_ARRAY` only).
    fn started(&self) -> bool {
        !self.prefix_lengths.is_empty()
    }

    /// The encoding of the chunk's data pages.
    fn encoding(&self) -> Encoding {
        match self.prefixed {
            true => Encoding::DELTA_BYTE_ARRAY,
            false => Encoding::DELTA_LENGTH_BYTE_ARRAY,
        }
    }

    /// Appends `text`'s rows as lengths and values: a run of rows without nulls at once.
    fn write_lengths(&mut self, text: &arrow::array::StringArray) -> Result<()> {
        let nulls = text.nulls().filter(|n| n.null_count() > 0);
        let (offsets, bytes) = (text.value_offsets(), text.values().as_slice());
        take_rows(self, text.len(), nulls, |chunk, rows| match nulls {
            None => {
                let ends = &offsets[rows.start..=rows.end];
                chunk
                    .suffix_lengths
                    .extend(ends.windows(2).map(|w| i64::from(w[1] - w[0])));
                chunk
                    .suffixes
                    .extend_from_slice(&bytes[ends[0] as usize..ends[ends.len() - 1] as usize]);
            }
            Some(nulls) => {
                for i in rows.filter(|&i| nulls.is_valid(i)) {
                    let value = &bytes[offsets[i] as usize..offsets[i + 1] as usize];
                    chunk.suffix_lengths.push(value.len() as i64);
                    chunk.suffixes.extend_from_slice(value);
                }
            }
        })
    }
}

impl Paged for PrefixedChunk {
    fn pages(&mut self) -> &mut ChunkPages {
        &mut self.pages
    }

    /// Ends the filling page: prefix lengths (`DELTA_BYTE_ARRAY`), suffix lengths, suffixes.
    fn finish_page(&mut self) -> Result<()> {
        let (prefixes, lengths, suffixes) =
            (&self.prefix_lengths, &self.suffix_lengths, &self.suffixes);
        let prefixed = self.prefixed;
        self.pages.finish_page(|page| {
            if prefixed {
                delta_binary_packed::<true>(prefixes, page);
            }
            delta_binary_packed::<true>(lengths, page);
            page.extend_from_slice(suffixes);
        })?;
        self.prefix_lengths.clear();
        self.suffix_lengths.clear();
        self.suffixes.clear();
        self.previous.clear();
        Ok(())
    }
}

impl HandChunk for PrefixedChunk {
    /// Appends `array`'s rows (text).
    fn write(&mut self, array: &dyn Array) -> Result<()> {
        let text = self.pages.text(array, "as text")?;
        self.pages.admit(text)?;
        if !self.prefixed {
            return self.write_lengths(text);
        }
        let nulls = text.nulls().filter(|n| n.null_count() > 0);
        let (offsets, bytes) = (text.value_offsets(), text.values().as_slice());
        let value = |i: usize| &bytes[offsets[i] as usize..offsets[i + 1] as usize];
        // The last value taken from this batch, while the filling page has one.
        let mut last: Option<usize> = None;
        take_rows(self, text.len(), nulls, |chunk, rows| {
            if !chunk.started() {
                last = None;
            }
            for i in rows {
                if nulls.is_none_or(|n| n.is_valid(i)) {
                    match last {
                        Some(j) => chunk.push(value(j), value(i)),
                        None => {
                            let previous = std::mem::take(&mut chunk.previous);
                            chunk.push(&previous, value(i));
                        }
                    }
                    last = Some(i);
                }
            }
        })?;
        // The next batch's first value is compared with this one's last.
        if let (Some(j), true) = (last, self.started()) {
            self.previous.clear();
            self.previous.extend_from_slice(value(j));
        }
        Ok(())
    }

    fn close(mut self: Box<Self>) -> Result<(Bytes, ColumnCloseResult)> {
        self.finish_page()?;
        let encoding = self.encoding();
        let summary = ChunkSummary {
            dictionary: None,
            encodings: vec![Encoding::RLE, encoding],
            statistics: None,
        };
        self.pages.close(encoding, summary)
    }
}

/// The length of the prefix `a` and `b` share, compared eight bytes at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("eight bytes"));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().expect("eight bytes"));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_counts_shared_bytes() {
        assert_eq!(common_prefix(b"", b"abc"), 0);
        assert_eq!(common_prefix(b"C202400001234", b"C202400001299"), 11);
        assert_eq!(common_prefix(b"C2024000", b"C2024000"), 8);
        assert_eq!(common_prefix(b"C2024000X", b"C2024000"), 8);
        assert_eq!(common_prefix(b"abcdefghij", b"abcdefghiJ"), 9);
        assert_eq!(common_prefix(b"xbcdefghij", b"abcdefghij"), 0);
    }
}
