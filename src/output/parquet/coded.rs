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

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, UInt32Type};
use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::Result;

use crate::interner::Interner;

use super::pages::{bit_width, hybrid, take_rows, ChunkPages, ChunkSummary, HandChunk, Paged};

/// Marks a code of the current list not yet given an index in the chunk's dictionary.
const UNSEEN: u32 = u32::MAX;

/// Whether `array` can be written by a [`CodedChunk`]: codes (`UInt32`) into a list of text.
pub fn is_coded(array: &dyn Array) -> bool {
    matches!(array.data_type(), DataType::Dictionary(key, value)
        if key.as_ref() == &DataType::UInt32 && value.as_ref() == &DataType::Utf8)
}

/// One column of one row group, being written from codes.
pub struct CodedChunk {
    pages: ChunkPages,
    /// The chunk's dictionary, in first-use order, and where each name is in it.
    names: Interner,
    /// The list of names the last rows were coded into, and each code's index in `names`
    /// ([`UNSEEN`] until first used).
    list: Option<ArrayRef>,
    remap: Vec<u32>,
    /// The filling page's non-null rows' indices.
    indices: Vec<u32>,
}

impl CodedChunk {
    pub fn new(pages: ChunkPages) -> CodedChunk {
        CodedChunk {
            pages,
            names: Interner::default(),
            list: None,
            remap: Vec::new(),
            indices: Vec::new(),
        }
    }
}

impl HandChunk for CodedChunk {
    /// Appends `array`'s rows: codes into a list of text ([`is_coded`]), or plain text, whose
    /// values are looked up one by one.
    fn write(&mut self, array: &dyn Array) -> Result<()> {
        self.pages.admit(array)?;
        if is_coded(array) {
            let coded = array.as_dictionary::<UInt32Type>();
            self.use_list(coded.values());
            let keys = coded.keys().values();
            let nulls = coded.keys().nulls().filter(|n| n.null_count() > 0);
            return take_rows(self, keys.len(), nulls, |chunk, rows| match nulls {
                None => {
                    // Gathered through the map, then the codes first used here mapped.
                    let keys = &keys[rows];
                    let start = chunk.indices.len();
                    let remap = &chunk.remap;
                    chunk
                        .indices
                        .extend(keys.iter().map(|&key| remap[key as usize]));
                    if chunk.indices[start..].contains(&UNSEEN) {
                        for (k, &key) in keys.iter().enumerate() {
                            if chunk.indices[start + k] == UNSEEN {
                                chunk.indices[start + k] = chunk.index(key);
                            }
                        }
                    }
                }
                Some(nulls) => {
                    for i in rows.filter(|&i| nulls.is_valid(i)) {
                        let index = chunk.index(keys[i]);
                        chunk.indices.push(index);
                    }
                }
            });
        }
        let text = self.pages.text(array, "from codes")?;
        let nulls = text.nulls().filter(|n| n.null_count() > 0);
        take_rows(self, text.len(), nulls, |chunk, rows| {
            for i in rows.filter(|&i| nulls.is_none_or(|n| n.is_valid(i))) {
                let index = chunk.names.intern(text.value(i));
                chunk.indices.push(index);
            }
        })
    }

    /// The dictionary page (the names in first-use order), then the data pages.
    fn close(mut self: Box<Self>) -> Result<(Bytes, ColumnCloseResult)> {
        self.finish_page()?;
        let mut dictionary = Vec::new();
        for name in self.names.texts() {
            dictionary.extend_from_slice(&(name.len() as u32).to_le_bytes());
            dictionary.extend_from_slice(name.as_bytes());
        }
        let summary = ChunkSummary {
            dictionary: Some((dictionary, self.names.texts().len() as u32)),
            encodings: vec![Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY],
            statistics: None,
        };
        self.pages.close(Encoding::RLE_DICTIONARY, summary)
    }
}

impl CodedChunk {
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
        let index = self
            .names
            .intern(list.as_string::<i32>().value(code as usize));
        self.remap[code as usize] = index;
        index
    }
}

impl Paged for CodedChunk {
    fn pages(&mut self) -> &mut ChunkPages {
        &mut self.pages
    }

    /// Ends the filling page: the indices' bit width, then the indices.
    fn finish_page(&mut self) -> Result<()> {
        let indices = &self.indices;
        self.pages.finish_page(|page| {
            let width = bit_width(indices.iter().copied().max().unwrap_or(0));
            page.push(width);
            hybrid(indices, width, page);
        })?;
        self.indices.clear();
        Ok(())
    }
}
