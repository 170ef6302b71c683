//! Reading a version of the state for one run: the claim index entries of the run's claim ids
//! and reversal targets ([`lookup_claims`]: the keys first, searched in their pages where the
//! index is in key order, then only the rows selected),
//! then the pools and history of the run's persons, grouped by person with the index's
//! records ([`load_prior`]). None of it needs the registry: the run's persons are
//! known by key ([`PersonKeys`]), so a run held in memory reads its state while the registry
//! loads, and a spilled run reads one partition's persons at a time ([`SpilledPersons`]),
//! skipping the row groups whose `person_key` statistics lie outside the partition's keys. A
//! night's persons are in nearly every page of the per-person files, so those are decoded whole
//! and the persons' rows matched by key in one merge pass (texts as dictionary codes, no person
//! id read: `person_check` confirms a pools row's person). A row group is a rayon task
//! throughout.
//!
//! Names (pools, policy versions, benefits) are resolved against the current policies once per
//! distinct name. A name the current policies do not have stops the run: settling against state
//! the policies cannot interpret would be silently wrong.

use std::fs::File;
use std::path::Path;

use arrow::array::{Array, AsArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Date32Type, Int32Type, Int64Type, TimestampMillisecondType};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection};
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;

use super::store::Store;
use super::{
    claim_key, text_lists, ClaimRecord, EarlierClaim, EarlierRows, Layers, PoolState, Prior,
    INDEX_ONLY_TEXT,
};
use crate::domain::{year_of, Status, VisitType};
use crate::error::{Error, Result};
use crate::ingest::claims::NO_CODE;
use crate::ingest::registry::PersonIndex;
use crate::interner::Interner;
use crate::limits::MAX_CLAIM_FEN;
use crate::policy::{Policies, NONE};

/// Keys to look up, sorted, behind a blocked filter: a key sets three bits of one 64-bit word
/// (the word chosen by its top bits, the bits by three fields of its low bits), so a key that
/// is not in the set is turned away by one word read, and passes to a search about once in
/// a thousand at 32 bits a key. The keys are 64-bit hashes ([`claim_key`],
/// [`crate::partition::person_key`]): their bits are independent.
#[derive(Debug, Default)]
pub struct Keys {
    sorted: Vec<u64>,
    filter: Vec<u64>,
    /// A key's word is `key >> shift`.
    shift: u32,
}

impl Keys {
    pub fn new(mut keys: Vec<u64>) -> Keys {
        keys.par_sort_unstable();
        keys.dedup();
        Keys::from_sorted(keys)
    }

    /// `sorted` must be ascending and without repeats.
    fn from_sorted(sorted: Vec<u64>) -> Keys {
        if sorted.is_empty() {
            return Keys::default();
        }
        // About 32 bits a key, at most 64 MiB. A single bit a key at that size let 2% of the
        // claim index's keys through to binary searches, half of a night's key scan (profiled);
        // three bits of one word let about 0.1% through.
        let bits = (sorted.len() as u64 * 32)
            .next_power_of_two()
            .clamp(128, 1 << 29)
            .trailing_zeros();
        let mut filter = vec![0u64; 1 << (bits - 6)];
        let shift = 64 - (bits - 6);
        for &k in &sorted {
            filter[(k >> shift) as usize] |= Keys::mask(k);
        }
        Keys {
            sorted,
            filter,
            shift,
        }
    }

    /// Whether `key` may be one of the keys: false for most keys that are not, without a
    /// search.
    #[inline]
    pub fn may_contain(&self, key: u64) -> bool {
        if self.filter.is_empty() {
            return false;
        }
        let mask = Keys::mask(key);
        self.filter[(key >> self.shift) as usize] & mask == mask
    }

    /// The three bits `key` sets in its word.
    #[inline]
    fn mask(key: u64) -> u64 {
        (1 << (key & 63)) | (1 << ((key >> 6) & 63)) | (1 << ((key >> 12) & 63))
    }

    /// The position of `key` among the keys, if it is one.
    #[inline]
    pub fn position(&self, key: u64) -> Option<usize> {
        if !self.may_contain(key) {
            return None;
        }
        self.sorted.binary_search(&key).ok()
    }

    #[inline]
    pub fn contains(&self, key: u64) -> bool {
        self.position(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
}

/// The persons a run settles: their [`crate::partition::person_key`]s, sorted (a person's
/// position among them is its rank), with each one's [`super::person_check`].
#[derive(Debug, Default)]
pub struct PersonKeys {
    keys: Keys,
    /// By rank.
    checks: Vec<u64>,
}

/// Stops the run when two of `persons` (sorted by key, each person once) share a person key:
/// a 64-bit collision (never seen), and one state cannot hold both.
fn distinct_keys<T>(persons: &[T], key: impl Fn(&T) -> u64) -> Result<()> {
    match persons.windows(2).find(|w| key(&w[0]) == key(&w[1])) {
        Some(w) => Err(Error::Usage(format!(
            "two persons of the run share person key {:#018x} (a 64-bit collision): one state \
             cannot hold both",
            key(&w[0])
        ))),
        None => Ok(()),
    }
}

impl PersonKeys {
    /// `persons`: (key, check) of each person, repeats allowed. Two persons sharing a key (a
    /// 64-bit collision: never seen) cannot both be held by one state: the run stops.
    pub fn new(mut persons: Vec<(u64, u64)>) -> Result<PersonKeys> {
        persons.par_sort_unstable();
        persons.dedup();
        distinct_keys(&persons, |p| p.0)?;
        Ok(PersonKeys {
            keys: Keys::from_sorted(persons.iter().map(|p| p.0).collect()),
            checks: persons.into_iter().map(|p| p.1).collect(),
        })
    }

    /// How many persons.
    pub fn len(&self) -> usize {
        self.checks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// The rank of the person with key `key`, if it is one of them.
    #[inline]
    fn position(&self, key: u64) -> Option<usize> {
        self.keys.position(key)
    }

    /// The rows of `keys` (a `person_key` column) that are these persons', with each one's
    /// rank. State files hold rows in person-key order: a batch in that order is merged with
    /// the sorted keys in one pass, any other is looked up row by row.
    fn rows_of(&self, keys: &Int64Array) -> Vec<(usize, u32)> {
        let values = keys.values();
        let sorted =
            keys.null_count() == 0 && values.windows(2).all(|w| (w[0] as u64) <= (w[1] as u64));
        if !sorted {
            return (0..keys.len())
                .filter(|&i| keys.is_valid(i))
                .filter_map(|i| Some((i, self.position(values[i] as u64)? as u32)))
                .collect();
        }
        let wanted = &self.keys.sorted;
        let Some(&first) = values.first() else {
            return Vec::new();
        };
        let mut at = wanted.partition_point(|&w| w < first as u64);
        let mut rows = Vec::new();
        for (i, &k) in values.iter().enumerate() {
            let k = k as u64;
            while at < wanted.len() && wanted[at] < k {
                at += 1;
            }
            if at == wanted.len() {
                break;
            }
            if wanted[at] == k {
                rows.push((i, at as u32));
            }
        }
        rows
    }

    /// Each dense id's rank among these persons (`u32::MAX` for a person not `present`): what
    /// [`Prior`] finds a person's state by.
    pub fn ranks(&self, index: &PersonIndex, present: &[bool]) -> Vec<u32> {
        // The present persons' keys sorted, then walked beside the sorted keys: a search per
        // person among a night's 300,000 keys missed the caches at every step (90 ms of CPU
        // time, profiled).
        let mut keyed: Vec<(u64, u32)> = (0..index.len() as u32)
            .into_par_iter()
            .filter(|&p| present.get(p as usize) == Some(&true))
            .map(|p| (crate::partition::person_key(index.id(p)), p))
            .collect();
        keyed.par_sort_unstable();
        let mut rank_of = vec![u32::MAX; index.len()];
        let wanted = &self.keys.sorted;
        let mut at = 0;
        for (key, p) in keyed {
            while at < wanted.len() && wanted[at] < key {
                at += 1;
            }
            if wanted.get(at) == Some(&key) {
                rank_of[p as usize] = at as u32;
            }
        }
        rank_of
    }
}

/// Column `name` of `batch`, which was read with it.
pub(super) fn column<'b>(batch: &'b RecordBatch, name: &str) -> &'b arrow::array::ArrayRef {
    batch.column_by_name(name).expect("a projected column")
}

fn int64s<'b>(batch: &'b RecordBatch, name: &str) -> &'b Int64Array {
    column(batch, name).as_primitive::<Int64Type>()
}

fn int32s<'b>(batch: &'b RecordBatch, name: &str) -> &'b Int32Array {
    column(batch, name).as_primitive::<Int32Type>()
}

fn value_or_zero(a: &Int64Array, i: usize) -> i64 {
    if a.is_valid(i) {
        a.value(i)
    } else {
        0
    }
}

/// A text column as plain `Utf8`.
fn strings(path: &Path, batch: &RecordBatch, name: &str) -> Result<StringArray> {
    let c = column(batch, name);
    let c = if c.data_type() == &DataType::Utf8 {
        c.clone()
    } else {
        arrow::compute::cast(c, &DataType::Utf8)
            .map_err(|e| Error::schema(path, name, e.to_string()))?
    };
    Ok(c.as_string::<i32>().clone())
}

/// A name column resolved once per distinct name ([`names`]): a row's id is its dictionary
/// entry's, looked up when the row is.
pub(super) struct Names<'a, T> {
    path: &'a Path,
    name: &'a str,
    /// Each dictionary entry's id, or why it cannot be used.
    ids: Vec<std::result::Result<T, String>>,
    keys: NameKeys,
}

/// The dictionary keys of a name column, as read (the state's files write them 16-bit).
enum NameKeys {
    Int16(arrow::array::Int16Array),
    Int32(Int32Array),
}

impl<T: Copy> Names<'_, T> {
    /// Row `row`'s id, `None` for a null name; an error names the file and the column.
    #[inline]
    pub(super) fn get(&self, row: usize) -> Result<Option<T>> {
        let entry = match &self.keys {
            NameKeys::Int16(k) => k.is_valid(row).then(|| k.value(row) as usize),
            NameKeys::Int32(k) => k.is_valid(row).then(|| k.value(row) as usize),
        };
        match entry.map(|e| &self.ids[e]) {
            None => Ok(None),
            Some(Ok(id)) => Ok(Some(*id)),
            Some(Err(reason)) => Err(Error::schema(self.path, self.name, reason.clone())),
        }
    }
}

/// A name column resolved once per distinct name: `resolve` gives a name's id, or why it
/// cannot be used (a row naming it is an error that names the file and the column).
pub(super) fn names<'a, T: Copy>(
    path: &'a Path,
    batch: &RecordBatch,
    name: &'a str,
    mut resolve: impl FnMut(&str) -> std::result::Result<T, String>,
) -> Result<Names<'a, T>> {
    let c = column(batch, name);
    let (values, keys) = if let Some(d) = c.as_dictionary_opt::<arrow::datatypes::Int16Type>() {
        (d.values().clone(), NameKeys::Int16(d.keys().clone()))
    } else {
        let cast = match c.as_dictionary_opt::<Int32Type>() {
            Some(_) => c.clone(),
            None => arrow::compute::cast(
                c,
                &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            )
            .map_err(|e| Error::schema(path, name, e.to_string()))?,
        };
        let d = cast.as_dictionary::<Int32Type>();
        (d.values().clone(), NameKeys::Int32(d.keys().clone()))
    };
    let values = values
        .as_string_opt::<i32>()
        .ok_or_else(|| Error::schema(path, name, "not a text column"))?;
    let ids = (0..values.len())
        .map(|i| match values.is_null(i) {
            true => Err("a null name".to_string()),
            false => resolve(values.value(i)),
        })
        .collect();
    Ok(Names {
        path,
        name,
        ids,
        keys,
    })
}

/// Row `i`'s days of supply as an [`EarlierClaim`] holds them: a supply ingest would not accept
/// is not one yibao wrote.
pub(super) fn days_supply(path: &Path, supply: &Int32Array, i: usize) -> Result<Option<u16>> {
    if supply.is_null(i) {
        return Ok(None);
    }
    match super::supply_days(supply.value(i)) {
        Some(days) => Ok(Some(days)),
        None => Err(Error::schema(
            path,
            "days_supply",
            format!(
                "a supply of {} days, outside 0 to {}",
                supply.value(i),
                crate::limits::MAX_DAYS_SUPPLY
            ),
        )),
    }
}

/// The policy ids of the names a state file holds.
struct Resolver<'p> {
    policies: &'p Policies,
}

impl Resolver<'_> {
    fn pool(&self, name: &str) -> std::result::Result<u16, String> {
        self.policies
            .pools
            .id(name)
            .ok_or_else(|| format!("pool `{name}` is not in the current policies"))
    }

    fn version(&self, name: &str) -> std::result::Result<u16, String> {
        self.policies
            .version_id(name)
            .ok_or_else(|| format!("policy version `{name}` is not in the current policies"))
    }

    fn label(&self, name: &str) -> std::result::Result<u16, String> {
        self.policies
            .labels
            .id(name)
            .ok_or_else(|| format!("benefit `{name}` is not in the current policies"))
    }
}

pub(super) fn status(name: &str) -> std::result::Result<Status, String> {
    Status::parse(name).ok_or_else(|| format!("unknown status `{name}`"))
}

pub(super) fn visit(name: &str) -> std::result::Result<VisitType, String> {
    VisitType::parse(name).ok_or_else(|| format!("unknown visit type `{name}`"))
}

/// One state file opened for reading by key.
struct KeyedFile<'a> {
    path: &'a Path,
    file: File,
    /// The file's length, taken once: every row group read is mapped within it.
    file_len: u64,
    builder_schema: arrow::datatypes::SchemaRef,
    metadata: std::sync::Arc<parquet::file::metadata::ParquetMetaData>,
    parquet_schema: parquet::schema::types::SchemaDescPtr,
    /// Per row group, the key column its rows ascend by ("" for none), read once when the
    /// file is opened ([`row_group_orders`]).
    orders: Vec<String>,
}

/// A row group's bytes, mapped from its file, as the pages of a reader: each page is a slice of
/// the page cache, where reading it from the file took a seek and a read. A night's lookups in
/// the claim index touch a few pages of every row group, one system call each otherwise; and
/// only the pages touched become resident, while the row group is read.
struct MappedRowGroup {
    /// Where the mapping starts in the file.
    base: u64,
    bytes: bytes::Bytes,
    file_len: u64,
}

impl MappedRowGroup {
    /// Maps `range` of `file` (at `path`, `file_len` bytes long).
    fn map(
        file: &File,
        file_len: u64,
        path: &Path,
        range: std::ops::Range<u64>,
    ) -> Result<MappedRowGroup> {
        if range.end > file_len {
            return Err(Error::corrupt(
                path,
                format!("a column chunk ends at byte {} of {file_len}", range.end),
            ));
        }
        let len = usize::try_from(range.end - range.start).expect("a row group fits in memory");
        let bytes = if len == 0 {
            bytes::Bytes::new()
        } else {
            // SAFETY: the mapped bytes lie within the file. State files are written whole under
            // a temporary name, renamed into place and never written or truncated again; a
            // compaction that removes one leaves an existing mapping valid.
            let map = unsafe {
                memmap2::MmapOptions::new()
                    .offset(range.start)
                    .len(len)
                    .map(file)
            }
            .map_err(|e| Error::io(path, e))?;
            bytes::Bytes::from_owner(map)
        };
        Ok(MappedRowGroup {
            base: range.start,
            bytes,
            file_len,
        })
    }

    fn slice(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        let from = start
            .checked_sub(self.base)
            .map(|f| f as usize)
            .filter(|&f| {
                f.checked_add(length)
                    .is_some_and(|end| end <= self.bytes.len())
            });
        match from {
            Some(f) => Ok(self.bytes.slice(f..f + length)),
            None => Err(parquet::errors::ParquetError::EOF(format!(
                "bytes {start}+{length} lie outside the row group mapped at {}+{}",
                self.base,
                self.bytes.len()
            ))),
        }
    }
}

impl parquet::file::reader::Length for MappedRowGroup {
    fn len(&self) -> u64 {
        self.file_len
    }
}

impl parquet::file::reader::ChunkReader for MappedRowGroup {
    type T = bytes::buf::Reader<bytes::Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let rest = (self.base + self.bytes.len() as u64).saturating_sub(start);
        Ok(bytes::Buf::reader(self.slice(start, rest as usize)?))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        self.slice(start, length)
    }
}

impl<'a> KeyedFile<'a> {
    /// Opens `path` with its offset index, if it has one: a selection of rows
    /// ([`Self::read_matching`]) then skips the pages holding none of them undecoded.
    fn open(path: &'a Path) -> Result<KeyedFile<'a>> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
            .with_offset_index_policy(parquet::file::metadata::PageIndexPolicy::Optional);
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
            file.try_clone().map_err(|e| Error::io(path, e))?,
            options,
        )
        .map_err(|e| Error::parquet(path, e))?;
        let metadata = builder.metadata().clone();
        Ok(KeyedFile {
            path,
            file,
            file_len,
            builder_schema: builder.schema().clone(),
            orders: row_group_orders(path, &metadata)?,
            metadata,
            parquet_schema: builder.parquet_schema().clone().into(),
        })
    }

    fn root(&self, name: &str) -> Result<usize> {
        self.builder_schema
            .index_of(name)
            .map_err(|_| Error::schema(self.path, name, "missing from a state file"))
    }

    fn reader(
        &self,
        group: usize,
        roots: &[usize],
        selection: Option<RowSelection>,
    ) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
        self.reader_with(group, roots, selection, &[])
    }

    /// A reader of `roots` of row group `group`, the text columns `dictionaries` read as
    /// dictionary arrays (their codes, not a string per row).
    fn reader_with(
        &self,
        group: usize,
        roots: &[usize],
        selection: Option<RowSelection>,
        dictionaries: &[&str],
    ) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
        let path = self.path;
        let chunks = self.metadata.row_group(group).columns();
        let range = roots
            .iter()
            .filter_map(|&c| chunks.get(c))
            .map(|c| c.byte_range())
            .fold(None, |acc: Option<(u64, u64)>, (start, len)| {
                let end = start + len;
                Some(acc.map_or((start, end), |(a, b)| (a.min(start), b.max(end))))
            })
            .unwrap_or((0, 0));
        let file = MappedRowGroup::map(&self.file, self.file_len, path, range.0..range.1)?;
        let mut options = parquet::arrow::arrow_reader::ArrowReaderOptions::new();
        if !dictionaries.is_empty() {
            let fields: Vec<arrow::datatypes::Field> = self
                .builder_schema
                .fields()
                .iter()
                .map(|f| {
                    if dictionaries.contains(&f.name().as_str()) && f.data_type() == &DataType::Utf8
                    {
                        f.as_ref().clone().with_data_type(DataType::Dictionary(
                            Box::new(DataType::Int32),
                            Box::new(DataType::Utf8),
                        ))
                    } else {
                        f.as_ref().clone()
                    }
                })
                .collect();
            options =
                options.with_schema(std::sync::Arc::new(arrow::datatypes::Schema::new(fields)));
        }
        let metadata = parquet::arrow::arrow_reader::ArrowReaderMetadata::try_new(
            self.metadata.clone(),
            options,
        )
        .map_err(|e| Error::parquet(path, e))?;
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata)
            .with_row_groups(vec![group])
            .with_projection(ProjectionMask::roots(
                &self.parquet_schema,
                roots.iter().copied(),
            ))
            .with_batch_size(64 * 1024);
        if let Some(selection) = selection {
            builder = builder.with_row_selection(selection);
        }
        builder.build().map_err(|e| Error::parquet(path, e))
    }

    /// Whether row group `group` may hold rows of `persons`: false when its `person_key`
    /// statistics lie outside their range of keys (a spilled partition's persons are one range).
    fn may_hold(&self, group: usize, persons: &PersonKeys) -> bool {
        match (persons.keys.sorted.first(), persons.keys.sorted.last()) {
            (Some(&first), Some(&last)) => self.may_hold_keys(group, first..=last),
            _ => false,
        }
    }

    /// Whether row group `group` may hold rows with a `person_key` in `keys`, by its statistics.
    fn may_hold_keys(&self, group: usize, keys: std::ops::RangeInclusive<u64>) -> bool {
        let Ok(column) = self.root("person_key") else {
            return true;
        };
        let Some(parquet::file::statistics::Statistics::Int64(stats)) =
            self.metadata.row_group(group).column(column).statistics()
        else {
            return true;
        };
        let (Some(&min), Some(&max)) = (stats.min_opt(), stats.max_opt()) else {
            return true;
        };
        // Keys are u64 stored as Int64: statistics order them signed. A group holding keys on
        // both sides of 2^63 has a signed minimum above its signed maximum as u64: unknown.
        let (min, max) = (min as u64, max as u64);
        min > max || (min <= *keys.end() && *keys.start() <= max)
    }

    /// Compressed bytes of `roots` in row group `group`: what reading them costs.
    fn bytes(&self, group: usize, roots: &[usize]) -> u64 {
        let g = self.metadata.row_group(group);
        roots
            .iter()
            .map(|&c| g.column(c).compressed_size().max(0) as u64)
            .sum()
    }

    /// `columns` of every row of the row groups that may hold rows of `persons`
    /// ([`Self::may_hold`]), a row group a rayon task, each batch handed to `map` with the
    /// number of its first row in the file; `dictionaries` as in [`Self::reader_with`]. For the
    /// per-person tables, where a night's persons have rows in nearly every page: decoding the
    /// pages whole costs less than selecting rows in them. Returns what `map` made, and the bytes
    /// read.
    fn scan<T: Send>(
        &self,
        persons: &PersonKeys,
        columns: &[&str],
        dictionaries: &[&str],
        map: impl Fn(usize, RecordBatch) -> Result<T> + Sync,
    ) -> Result<(Vec<T>, u64)> {
        let roots = columns
            .iter()
            .map(|c| self.root(c))
            .collect::<Result<Vec<_>>>()?;
        let mut first_rows = Vec::with_capacity(self.metadata.num_row_groups());
        let mut at = 0usize;
        for g in self.metadata.row_groups() {
            first_rows.push(at);
            at += g.num_rows() as usize;
        }
        let per_group: Vec<(Vec<T>, u64)> = (0..self.metadata.num_row_groups())
            .into_par_iter()
            .filter(|&g| self.may_hold(g, persons))
            .map(|g| {
                let mut out = Vec::new();
                let mut at = first_rows[g];
                for batch in self.reader_with(g, &roots, None, dictionaries)? {
                    let batch = batch.map_err(|e| Error::corrupt(self.path, e))?;
                    let n = batch.num_rows();
                    out.push(map(at, batch)?);
                    at += n;
                }
                Ok((out, self.bytes(g, &roots)))
            })
            .collect::<Result<_>>()?;
        let bytes = per_group.iter().map(|(_, b)| b).sum();
        Ok((per_group.into_iter().flat_map(|(t, _)| t).collect(), bytes))
    }

    /// The rows of row group `group`, whose column `column` ascends (as unsigned keys), with a
    /// key `wanted`, and their keys. Each page's values are searched where
    /// they lie in the mapped file, for the wanted keys between its first and last
    /// ([`search_page`]): no page is decoded, and a page with few wanted keys is read only where
    /// they are searched for.
    /// `None` where a page is not plain values without nulls (for the scan to read instead).
    fn search(
        &self,
        group: usize,
        column: usize,
        wanted: &Wanted,
    ) -> Result<Option<Vec<(usize, u64)>>> {
        use parquet::column::page::{Page, PageReader};
        let path = self.path;
        let row_group = self.metadata.row_group(group);
        let chunk = row_group.column(column);
        if chunk.compression() != parquet::basic::Compression::UNCOMPRESSED {
            return Ok(None);
        }
        let (start, len) = chunk.byte_range();
        let mapped = MappedRowGroup::map(&self.file, self.file_len, path, start..start + len)?;
        let rows = row_group.num_rows() as usize;
        let mut pages = parquet::file::serialized_reader::SerializedPageReader::new(
            std::sync::Arc::new(mapped),
            chunk,
            rows,
            None,
        )
        .map_err(|e| Error::parquet(path, e))?;
        let nullable = self.parquet_schema.column(column).max_def_level() > 0;
        let name = chunk.column_path().string();
        let disorder = |what: &str| {
            Error::schema(
                path,
                &name,
                format!("row group {group} is named in order of the column, but {what}"),
            )
        };
        let (mut found, mut row, mut from, mut previous) = (Vec::new(), 0usize, 0usize, 0u64);
        while let Some(page) = pages.get_next_page().map_err(|e| Error::parquet(path, e))? {
            let values = match &page {
                Page::DataPage {
                    buf,
                    num_values,
                    encoding: parquet::basic::Encoding::PLAIN,
                    ..
                } => {
                    // Version 1 pages lead with their definition levels, after their length.
                    let levels = match (nullable, buf.get(..4)) {
                        (false, _) => 0,
                        (true, Some(len)) => {
                            4 + u32::from_le_bytes(len.try_into().unwrap()) as usize
                        }
                        (true, None) => return Ok(None),
                    };
                    match buf.get(levels..) {
                        Some(v) if v.len() == *num_values as usize * 8 => v,
                        _ => return Ok(None),
                    }
                }
                Page::DataPageV2 {
                    buf,
                    num_values,
                    num_nulls: 0,
                    def_levels_byte_len,
                    rep_levels_byte_len,
                    encoding: parquet::basic::Encoding::PLAIN,
                    ..
                } => match buf.get((*def_levels_byte_len + *rep_levels_byte_len) as usize..) {
                    Some(v) if v.len() == *num_values as usize * 8 => v,
                    _ => return Ok(None),
                },
                _ => return Ok(None),
            };
            // Exactly as many values as rows: a value short would be a null.
            let (keys, _) = values.as_chunks::<8>();
            let key = |i: usize| u64::from_le_bytes(keys[i]);
            let Some(last) = keys.len().checked_sub(1).map(key) else {
                continue;
            };
            let first = key(0);
            if first < previous || last < first {
                return Err(disorder("its values descend between or within pages"));
            }
            match wanted {
                Wanted::Keys(set) => from = search_page(keys, row, set, from, &mut found),
                Wanted::Range(range) if first <= *range.end() && *range.start() <= last => {
                    let start = first_at_least(keys, 0, *range.start());
                    let end = match range.end().checked_add(1) {
                        Some(after) => first_at_least(keys, start, after),
                        None => keys.len(),
                    };
                    found.extend((start..end).map(|i| (row + i, key(i))));
                }
                Wanted::Range(_) => {}
            }
            previous = last;
            row += keys.len();
        }
        if row != rows {
            return Err(disorder(&format!(
                "its pages hold {row} values of {rows} rows"
            )));
        }
        Ok(Some(found))
    }

    /// The rows of row group `group` whose `key_columns` (at `key_roots`) pass `select`, with
    /// the first key of each (0 for a null), found by reading the key columns whole: only rows
    /// with a key passing `maybe` are given to `select`, so that the loop over millions of keys
    /// is a tight one.
    fn scan_keys(
        &self,
        group: usize,
        key_columns: &[&str],
        key_roots: &[usize],
        maybe: &impl Fn(u64) -> bool,
        select: &impl Fn(&[Option<u64>]) -> bool,
    ) -> Result<(Vec<usize>, Vec<u64>)> {
        let (mut rows, mut keys, mut at) = (Vec::new(), Vec::new(), 0usize);
        let mut values = vec![None; key_columns.len()];
        let mut candidates: Vec<u32> = Vec::new();
        for batch in self.reader(group, key_roots, None)? {
            let batch =
                batch.map_err(|e| Error::schema(self.path, key_columns[0], e.to_string()))?;
            let arrays: Vec<&Int64Array> = key_columns.iter().map(|c| int64s(&batch, c)).collect();
            candidates.clear();
            for a in &arrays {
                let v = a.values();
                let passing = |i: &usize| maybe(v[*i] as u64);
                match a.nulls() {
                    None => candidates.extend((0..v.len()).filter(passing).map(|i| i as u32)),
                    Some(n) => {
                        candidates.extend(n.valid_indices().filter(passing).map(|i| i as u32))
                    }
                }
            }
            if arrays.len() > 1 {
                candidates.sort_unstable();
                candidates.dedup();
            }
            for &i in &candidates {
                let i = i as usize;
                for (v, a) in values.iter_mut().zip(&arrays) {
                    *v = a.is_valid(i).then(|| a.value(i) as u64);
                }
                if select(&values) {
                    rows.push(at + i);
                    keys.push(values[0].unwrap_or(0));
                }
            }
            at += batch.num_rows();
        }
        Ok((rows, keys))
    }

    /// The rows whose `key_columns` pass `select` (given each key column's value, null as
    /// `None`): the key columns of every row group passing `groups` are read, then `columns` of
    /// the selected rows only, each batch handed to `map` with the selected rows' first key.
    /// `maybe` is a cheap test that every key `select` may want passes ([`Self::scan_keys`]).
    /// A row group whose rows ascend by the first key column ([`row_group_orders`]) is searched
    /// for the keys `wanted` (all the keys `select` may want) instead, where `wanted` is given:
    /// only for a table whose rows in that order have the other key columns null, as the claim
    /// index's rows in order of `claim_key` have no `reverses_key`. Returns what `map` made,
    /// and the bytes read.
    #[allow(clippy::too_many_arguments)]
    fn read_matching<T: Send>(
        &self,
        key_columns: &[&str],
        groups: impl Fn(usize) -> bool + Sync,
        maybe: impl Fn(u64) -> bool + Sync,
        select: impl Fn(&[Option<u64>]) -> bool + Sync,
        wanted: Option<Wanted>,
        columns: &[&str],
        map: impl Fn(&[u64], RecordBatch) -> Result<T> + Sync,
    ) -> Result<(Vec<T>, u64)> {
        let key_roots = key_columns
            .iter()
            .map(|c| self.root(c))
            .collect::<Result<Vec<_>>>()?;
        let roots = columns
            .iter()
            .map(|c| self.root(c))
            .collect::<Result<Vec<_>>>()?;
        let groups: Vec<usize> = (0..self.metadata.num_row_groups())
            .filter(|&g| groups(g))
            .collect();
        let per_group: Vec<(Vec<T>, u64)> = groups
            .par_iter()
            .map(|&g| {
                let searched = match &wanted {
                    Some(wanted) if self.orders[g] == key_columns[0] => {
                        self.search(g, key_roots[0], wanted)?
                    }
                    _ => None,
                };
                let (rows, keys, mut bytes): (Vec<usize>, Vec<u64>, u64) = match searched {
                    Some(found) => {
                        // The other key columns of an ordered group are not read: `select`
                        // sees them null.
                        let mut values = vec![None; key_columns.len()];
                        let (rows, keys) = found
                            .into_iter()
                            .filter(|&(_, key)| {
                                values[0] = Some(key);
                                select(&values)
                            })
                            .unzip();
                        (rows, keys, self.bytes(g, &key_roots[..1]))
                    }
                    None => {
                        let (rows, keys) =
                            self.scan_keys(g, key_columns, &key_roots, &maybe, &select)?;
                        (rows, keys, self.bytes(g, &key_roots))
                    }
                };
                if rows.is_empty() {
                    return Ok((Vec::new(), bytes));
                }
                bytes += self.bytes(g, &roots);
                let group_rows = self.metadata.row_group(g).num_rows() as usize;
                let selection =
                    RowSelection::from_consecutive_ranges(runs(&rows).into_iter(), group_rows);
                let mut out = Vec::new();
                let mut first = 0;
                for batch in self.reader(g, &roots, Some(selection))? {
                    let batch = batch.map_err(|e| Error::corrupt(self.path, e))?;
                    let n = batch.num_rows();
                    out.push(map(&keys[first..first + n], batch)?);
                    first += n;
                }
                Ok((out, bytes))
            })
            .collect::<Result<_>>()?;
        let bytes = per_group.iter().map(|(_, b)| b).sum();
        Ok((per_group.into_iter().flat_map(|(t, _)| t).collect(), bytes))
    }
}

/// The key column each row group of a file's rows ascend by, as its metadata names it
/// ([`super::tables::ROW_GROUP_ORDER`]; "" where it names none).
fn row_group_orders(
    path: &Path,
    metadata: &parquet::file::metadata::ParquetMetaData,
) -> Result<Vec<String>> {
    let groups = metadata.num_row_groups();
    let named = metadata
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| {
            kv.iter()
                .find(|kv| kv.key == super::tables::ROW_GROUP_ORDER)
        })
        .and_then(|kv| kv.value.as_deref());
    match named {
        None => Ok(vec![String::new(); groups]),
        Some(list) => {
            let orders: Vec<String> = list.split(',').map(str::to_string).collect();
            if orders.len() != groups {
                return Err(Error::corrupt(
                    path,
                    format!(
                        "its metadata `{}` names the order of {} row groups of {groups}",
                        super::tables::ROW_GROUP_ORDER,
                        orders.len()
                    ),
                ));
            }
            Ok(orders)
        }
    }
}

/// The keys a search of an ordered row group looks for ([`KeyedFile::search`]).
enum Wanted<'a> {
    /// These.
    Keys(&'a Keys),
    /// Every key of this range.
    Range(std::ops::RangeInclusive<u64>),
}

/// Keys of a page between two wanted ones, on average, below which the page is walked with the
/// wanted keys side by side rather than searched for each: a walk reads the page in order, at
/// the memory's pace, where searches wait on it. A night's 331,753 keys among 32 Mi ordered
/// keys (`cargo bench --bench kernel -- ordered`; about 100 between two) took 17 ms walked and
/// 89 ms searched, and among 4 Mi, 4.3 and 5.7 ms; a night's keys among a year's
/// (about 120 M, 360 between two) are walked. Searches serve a small run over a large index.
const MERGE_GAP: usize = 1024;

/// Searches one page of an ordered key column (`keys`, little-endian, ascending; its first row
/// `row`) for the keys of `set`, from the `from`th of them (the wanted keys before it lie
/// before the page), pushing each row found with its key onto `found`. Returns where the next
/// page's search starts. A page with more wanted keys than keys has each of its keys probed
/// in the set's filter, one with many ([`MERGE_GAP`]) is walked beside them, and otherwise a
/// wanted key costs a search of growing steps from where the one before it was found: a page
/// costs the least of its keys and the wanted keys it spans.
pub fn search_page(
    keys: &[[u8; 8]],
    row: usize,
    set: &Keys,
    from: usize,
    found: &mut Vec<(usize, u64)>,
) -> usize {
    let key = |i: usize| u64::from_le_bytes(keys[i]);
    let (Some(&first), Some(&last)) = (keys.first(), keys.last()) else {
        return from;
    };
    let (first, last) = (u64::from_le_bytes(first), u64::from_le_bytes(last));
    let wanted = &set.sorted;
    let lo = from + wanted[from..].partition_point(|&w| w < first);
    let hi = lo + wanted[lo..].partition_point(|&w| w <= last);
    if hi - lo > keys.len() {
        // More wanted keys than the page holds (a small run: a window's, against a night's
        // keys): each of the page's keys is probed in the set's filter instead.
        found.extend(
            (0..keys.len())
                .map(|i| (row + i, key(i)))
                .filter(|&(_, k)| set.contains(k)),
        );
    } else if (hi - lo) * MERGE_GAP > keys.len() {
        // Two loops rather than one over a step function: with the step a closure, the walk
        // took 1.3-1.7x the time (`cargo bench --bench kernel -- ordered`).
        let mut at = 0;
        for &w in &wanted[lo..hi] {
            while at < keys.len() && key(at) < w {
                at += 1;
            }
            while at < keys.len() && key(at) == w {
                found.push((row + at, w));
                at += 1;
            }
        }
    } else {
        let mut at = 0;
        for &w in &wanted[lo..hi] {
            at = first_at_least(keys, at, w);
            while at < keys.len() && key(at) == w {
                found.push((row + at, w));
                at += 1;
            }
        }
    }
    // A key equal to the page's last may go on in the next page.
    lo + wanted[lo..hi].partition_point(|&w| w < last)
}

/// The first position at or after `from` of ascending `keys` (little-endian 64-bit values)
/// whose key is at least `wanted`: steps of 1, 2, 4, … from `from`, then a binary search
/// within the last step.
fn first_at_least(keys: &[[u8; 8]], from: usize, wanted: u64) -> usize {
    let below = |k: &[u8; 8]| u64::from_le_bytes(*k) < wanted;
    let (mut lo, mut hi, mut step) = (from, from, 1);
    while hi < keys.len() && below(&keys[hi]) {
        lo = hi + 1;
        hi = from + step;
        step *= 2;
    }
    let hi = hi.min(keys.len());
    lo + keys[lo..hi].partition_point(below)
}

/// `rows` (ascending) as ranges of consecutive rows.
fn runs(rows: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    for &r in rows {
        match ranges.last_mut() {
            Some(last) if last.end == r => last.end = r + 1,
            _ => ranges.push(r..r + 1),
        }
    }
    ranges
}

/// `columns` of the rows of a state file whose `person_key` is in `keys`, as stored: only the
/// row groups whose statistics overlap `keys` are read.
pub fn read_selected(
    path: &Path,
    keys: std::ops::RangeInclusive<u64>,
    columns: &[&str],
) -> Result<Vec<RecordBatch>> {
    let file = KeyedFile::open(path)?;
    let (batches, _) = file.read_matching(
        &["person_key"],
        |g| file.may_hold_keys(g, keys.clone()),
        |k| keys.contains(&k),
        |k| k[0].is_some_and(|k| keys.contains(&k)),
        None,
        columns,
        |_, batch| Ok(batch),
    )?;
    Ok(batches)
}

/// A claim index file opened once for the ranges of keys a merge reads from it
/// ([`Self::read_range`]): its footer and offset index are read when it is opened, not for
/// every range.
pub struct IndexFile<'a> {
    file: KeyedFile<'a>,
}

impl<'a> IndexFile<'a> {
    pub fn open(path: &'a Path) -> Result<IndexFile<'a>> {
        Ok(IndexFile {
            file: KeyedFile::open(path)?,
        })
    }

    /// Its row groups of claims in order of `claim_key`: a search of a range of keys reads a
    /// page of each.
    pub fn claim_row_groups(&self) -> usize {
        self.file
            .orders
            .iter()
            .filter(|o| *o == "claim_key")
            .count()
    }

    /// `columns` of the rows whose `key` is in `keys`, in file order: by `claim_key`, the
    /// claims (rows without a `reverses_key`); by `reverses_key`, the accepted refunds. The row
    /// groups in order of `key` ([`super::tables::ROW_GROUP_ORDER`]) are searched, those in
    /// order of the other key skipped, and any other scanned.
    pub fn read_range(
        &self,
        key: &'static str,
        keys: std::ops::RangeInclusive<u64>,
        columns: &[&str],
    ) -> Result<Vec<RecordBatch>> {
        let other = match key {
            "claim_key" => "reverses_key",
            _ => "claim_key",
        };
        let (batches, _) = self.file.read_matching(
            &[key, other],
            |g| self.file.orders[g] != other,
            |k| keys.contains(&k),
            |k| k[0].is_some_and(|k| keys.contains(&k)) && (key != "claim_key" || k[1].is_none()),
            Some(Wanted::Range(keys.clone())),
            columns,
            |_, batch| Ok(batch),
        )?;
        Ok(batches)
    }
}

/// The claim index columns of a settled claim.
const RECORD_COLUMNS: &[&str] = &[
    "person_id",
    "claim_id",
    "settled_at",
    "service_date",
    "status",
    "policy_id",
    "benefit",
    "pool",
    "ratio_bp",
    "total_fen",
    "in_scope_fen",
    "eligible_fen",
    "deductible_fen",
    "fund_paid_fen",
    "copay_fen",
    "over_cap_fen",
    "assisted",
    "visit_type",
    "medical_community_id",
    "critical_illness_pool",
    "critical_illness_deductible_fen",
    "critical_illness_paid_fen",
    "assistance_pool",
    "assistance_deductible_fen",
    "assistance_paid_fen",
    "reverses_claim_id",
];

/// A claim of the index, as read.
struct IndexRecord {
    person_id: String,
    claim_id: String,
    record: ClaimRecord,
    medical_community: Option<String>,
    reverses: Option<String>,
}

/// The claim index rows of `batch`.
fn index_records(
    path: &Path,
    batch: &RecordBatch,
    resolver: &Resolver,
) -> Result<Vec<IndexRecord>> {
    let text = |name| strings(path, batch, name);
    let (person_id, claim_id, community, reverses) = (
        text("person_id")?,
        text("claim_id")?,
        text("medical_community_id")?,
        text("reverses_claim_id")?,
    );
    let settled_at = column(batch, "settled_at").as_primitive::<TimestampMillisecondType>();
    let service = column(batch, "service_date").as_primitive::<Date32Type>();
    let status = names(path, batch, "status", status)?;
    let version = names(path, batch, "policy_id", |n| resolver.version(n))?;
    let label = names(path, batch, "benefit", |n| resolver.label(n))?;
    let pool = names(path, batch, "pool", |n| resolver.pool(n))?;
    let ci_pool = names(path, batch, "critical_illness_pool", |n| resolver.pool(n))?;
    let assistance_pool = names(path, batch, "assistance_pool", |n| resolver.pool(n))?;
    let visit = names(path, batch, "visit_type", visit)?;
    let ratio = int32s(batch, "ratio_bp");
    let fen = |name| int64s(batch, name);
    let assisted = column(batch, "assisted").as_boolean();
    let opt = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let (Some(person), Some(id), Some(status)) =
            (opt(&person_id, i), opt(&claim_id, i), status.get(i)?)
        else {
            return Err(Error::schema(
                path,
                "person_id, claim_id, status",
                "a claim index row without its person, id or status",
            ));
        };
        out.push(IndexRecord {
            person_id: person,
            claim_id: id,
            record: ClaimRecord {
                settled_at: settled_at.value(i),
                service_day: service.value(i),
                status,
                version: version.get(i)?.unwrap_or(NONE),
                label: label.get(i)?.unwrap_or(NONE),
                pool: pool.get(i)?.unwrap_or(NONE),
                ratio_bp: ratio.is_valid(i).then(|| ratio.value(i) as u32),
                total_fen: value_or_zero(fen("total_fen"), i),
                in_scope_fen: value_or_zero(fen("in_scope_fen"), i),
                eligible_fen: value_or_zero(fen("eligible_fen"), i),
                deductible_fen: value_or_zero(fen("deductible_fen"), i),
                fund_fen: value_or_zero(fen("fund_paid_fen"), i),
                copay_fen: value_or_zero(fen("copay_fen"), i),
                over_cap_fen: value_or_zero(fen("over_cap_fen"), i),
                assisted: assisted.is_valid(i) && assisted.value(i),
                reversed: false,
                visit: visit.get(i)?.unwrap_or(VisitType::Outpatient),
                institution: INDEX_ONLY_TEXT,
                drug: INDEX_ONLY_TEXT,
                days_supply: None,
                medical_community: NO_CODE,
                layers: Layers {
                    ci_pool: ci_pool.get(i)?.unwrap_or(NONE),
                    ci_deductible_fen: value_or_zero(fen("critical_illness_deductible_fen"), i),
                    ci_fen: value_or_zero(fen("critical_illness_paid_fen"), i),
                    assistance_pool: assistance_pool.get(i)?.unwrap_or(NONE),
                    assistance_deductible_fen: value_or_zero(fen("assistance_deductible_fen"), i),
                    assistance_fen: value_or_zero(fen("assistance_paid_fen"), i),
                },
            },
            medical_community: opt(&community, i),
            reverses: opt(&reverses, i),
        });
        let last = &out[out.len() - 1];
        if let Some(broken) = settlement_violation(&last.record) {
            return Err(Error::schema(
                path,
                "eligible_fen, deductible_fen, fund_paid_fen, copay_fen, over_cap_fen",
                format!(
                    "the row of claim {:?} is not a settlement yibao could have written: {broken}",
                    last.claim_id
                ),
            ));
        }
    }
    Ok(out)
}

/// What is wrong with an indexed settlement, if anything: a reversal gives its amounts back to
/// the pools, so they must be a settlement's — the contract's identity, every layer of one
/// sign (negative on a reversal row), none past a claim's bound.
fn settlement_violation(r: &ClaimRecord) -> Option<&'static str> {
    // A rejected row is kept as read (any amounts) and never given back.
    if r.status == Status::Rejected {
        return None;
    }
    let layers = [r.deductible_fen, r.fund_fen, r.copay_fen, r.over_cap_fen];
    let given_back = [
        r.eligible_fen,
        r.total_fen,
        r.in_scope_fen,
        r.layers.ci_deductible_fen,
        r.layers.ci_fen,
        r.layers.assistance_deductible_fen,
        r.layers.assistance_fen,
    ];
    let wrong_sign = |v: i64| match r.status {
        Status::Reversal => v > 0,
        _ => v < 0,
    };
    if r.eligible_fen as i128 != layers.iter().map(|&v| v as i128).sum::<i128>() {
        Some("eligible is not deductible + fund paid + copay + over cap")
    } else if layers.iter().chain(&given_back).any(|&v| wrong_sign(v)) {
        Some("an amount has the wrong sign")
    } else if given_back
        .iter()
        .any(|v| v.unsigned_abs() > MAX_CLAIM_FEN as u64)
    {
        Some("an amount is past any claim's")
    } else {
        None
    }
}

/// What the claim index holds of this run's claim ids.
#[derive(Default)]
pub struct IndexHits {
    /// Ids of indexed claims whose key is a run claim's: the candidates of `duplicate_claim_id`
    /// (confirmed on the text by ingest).
    pub known: Vec<String>,
    /// The indexed claims this run's reversals name.
    records: Vec<IndexRecord>,
    /// Ids the index records as reversed (by an accepted reversal) among those.
    reversed: Vec<String>,
    /// Bytes of the index files read.
    pub bytes_read: u64,
}

/// Looks this run's claim ids (`claim_keys`) and reversal targets (`target_keys`) up in the
/// claim index of `store`'s version: finds the rows whose key is one of them (searching the
/// row groups in key order, scanning the key columns of the others), then reads only those.
pub fn lookup_claims(
    store: &Store,
    claim_keys: &Keys,
    target_keys: &Keys,
    policies: &Policies,
) -> Result<IndexHits> {
    let first_year = store.manifest.first_year();
    let resolver = Resolver { policies };
    // One bitmap for both sets turns away nearly every key of the index in one probe.
    let either = Keys::new(
        claim_keys
            .sorted
            .iter()
            .chain(&target_keys.sorted)
            .copied()
            .collect(),
    );
    let found: Vec<IndexHits> = store
        .manifest
        .claims
        .par_iter()
        .filter(|p| p.max_year.is_some_and(|y| y >= first_year))
        .map(|piece| -> Result<IndexHits> {
            let path = store.path(&piece.file);
            let file = KeyedFile::open(&path)?;
            // One pass over the keys: the run's repeated ids (rare; confirmed on the text by
            // ingest), the originals its reversals name, and the reversals of them.
            let select = |k: &[Option<u64>]| {
                k[0].is_some_and(|k| claim_keys.contains(k) || target_keys.contains(k))
                    || k[1].is_some_and(|k| target_keys.contains(k))
            };
            // Row groups in order of `claim_key` (all but the accepted refunds', whose
            // `reverses_key` is null) are searched for the run's keys.
            let (batches, bytes_read) = file.read_matching(
                &["claim_key", "reverses_key"],
                |_| true,
                |k| either.may_contain(k),
                select,
                Some(Wanted::Keys(&either)),
                RECORD_COLUMNS,
                |_, b| index_records(&path, &b, &resolver),
            )?;
            let mut hits = IndexHits {
                bytes_read,
                ..IndexHits::default()
            };
            for r in batches.into_iter().flatten() {
                if year_of(r.record.service_day) < first_year {
                    continue;
                }
                let key = claim_key(&r.claim_id);
                if claim_keys.contains(key) {
                    hits.known.push(r.claim_id.clone());
                }
                if let (Status::Reversal, Some(target)) = (r.record.status, &r.reverses) {
                    if target_keys.contains(claim_key(target)) {
                        hits.reversed.push(target.clone());
                    }
                }
                if target_keys.contains(key) {
                    hits.records.push(r);
                }
            }
            Ok(hits)
        })
        .collect::<Result<_>>()?;
    let mut all = IndexHits::default();
    for h in found {
        all.known.extend(h.known);
        all.records.extend(h.records);
        all.reversed.extend(h.reversed);
        all.bytes_read += h.bytes_read;
    }
    Ok(all)
}

/// What [`load_prior`] read (summed over a spilled run's partitions).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ReadStats {
    pub pool_rows: u64,
    pub history_rows: u64,
    pub index_records: u64,
    /// Earlier claims held once the run's claims are known: of the history rows and index
    /// records read, those a claim of the run can reach ([`Prior::keep_reachable`]).
    pub earlier_claims_held: u64,
    /// Bytes of the column chunks read as stored (key columns of every file, other columns of
    /// the row groups holding selected rows).
    pub bytes_read: u64,
}

impl ReadStats {
    /// Adds what another read (another spilled partition's) read.
    pub fn add(&mut self, other: ReadStats) {
        self.pool_rows += other.pool_rows;
        self.history_rows += other.history_rows;
        self.index_records += other.index_records;
        self.earlier_claims_held += other.earlier_claims_held;
        self.bytes_read += other.bytes_read;
    }
}

/// The persons of a spilled run, in person-key order, whose state is read a partition at a
/// time: a partition's persons are one range of keys, and so a few row groups of each state
/// file (by their `person_key` statistics). What is held at once is one partition's state.
pub struct SpilledPersons {
    /// (key, dense id, check) of each person present.
    persons: Vec<(u64, u32, u64)>,
}

impl SpilledPersons {
    /// The persons `present` (by dense id) of `index`. Two sharing a key stop the run.
    pub fn of_present(index: &PersonIndex, present: &[bool]) -> Result<SpilledPersons> {
        let mut persons: Vec<(u64, u32, u64)> = (0..present.len() as u32)
            .into_par_iter()
            .filter(|&p| present[p as usize])
            .map(|p| {
                let id = index.id(p);
                (crate::partition::person_key(id), p, super::person_check(id))
            })
            .collect();
        persons.par_sort_unstable();
        distinct_keys(&persons, |p| p.0)?;
        Ok(SpilledPersons { persons })
    }

    /// The persons of partition `part` of `1 << bits`, and each dense id's rank among them in
    /// `rank_of` (sized to `dense_ids`, `u32::MAX` for every other person): a new vector, or
    /// one an earlier partition used and [`Self::release`] cleared.
    pub fn part(
        &self,
        part: usize,
        bits: u32,
        mut rank_of: Vec<u32>,
        dense_ids: usize,
    ) -> Result<(PersonKeys, Vec<u32>)> {
        let persons = self.of_part(part, bits);
        if rank_of.len() != dense_ids {
            rank_of.clear();
            rank_of.resize(dense_ids, u32::MAX);
        }
        debug_assert!(rank_of.iter().all(|&r| r == u32::MAX), "released");
        for (rank, &(_, dense, _)) in persons.iter().enumerate() {
            rank_of[dense as usize] = rank as u32;
        }
        let keys = PersonKeys::new(persons.iter().map(|p| (p.0, p.2)).collect())?;
        Ok((keys, rank_of))
    }

    /// The persons of partition `part` of `1 << bits` (in key order, so one range).
    fn of_part(&self, part: usize, bits: u32) -> &[(u64, u32, u64)] {
        let of = |p: &(u64, u32, u64)| crate::partition::part_of(p.0, bits);
        let from = self.persons.partition_point(|p| of(p) < part);
        let to = self.persons.partition_point(|p| of(p) <= part);
        &self.persons[from..to]
    }

    /// Clears the entries [`Self::part`] set in `rank_of` for part `part`, so that the buffer
    /// serves another part without being filled whole again.
    pub fn release(&self, part: usize, bits: u32, rank_of: &mut [u32]) {
        for &(_, dense, _) in self.of_part(part, bits) {
            if let Some(rank) = rank_of.get_mut(dense as usize) {
                *rank = u32::MAX;
            }
        }
    }
}

/// The texts the history's rows hold as codes (institutions, drugs, medical communities): a
/// list each, shared by the tasks reading row groups side by side, so that a text is copied
/// once for the run. A batch's dictionary is coded whole under one lock: interning each
/// batch's texts in lists of its own and merging them afterwards cost a night on a month of
/// state a twentieth of its CPU time (7,000 institutions a row group, profiled). Codes are in
/// the order the tasks met the texts, which varies from run to run: what holds them compares
/// them with the run's only by text ([`super::run_codes`]).
struct TextIndex {
    lists: [Interner; 3],
}

impl TextIndex {
    fn new(lists: [Vec<String>; 3]) -> TextIndex {
        TextIndex {
            lists: lists.map(Interner::of),
        }
    }

    /// The code of `text` in list `which`, added if new.
    fn intern(&mut self, which: usize, text: &str) -> u32 {
        self.lists[which].intern(text)
    }

    /// The lists, by code.
    fn into_lists(self) -> [Vec<String>; 3] {
        self.lists.map(Interner::into_texts)
    }

    /// The code of every entry of `values` (a dictionary's), in list `which`.
    fn codes(&mut self, which: usize, values: &StringArray) -> Vec<u32> {
        (0..values.len())
            .map(|i| self.intern(which, values.value(i)))
            .collect()
    }
}

/// A dictionary text column of a batch read with [`KeyedFile::reader_with`].
fn dictionary<'b>(
    path: &Path,
    batch: &'b RecordBatch,
    name: &str,
) -> Result<&'b arrow::array::DictionaryArray<Int32Type>> {
    column(batch, name)
        .as_dictionary_opt::<Int32Type>()
        .ok_or_else(|| Error::schema(path, name, "not a text column"))
}

/// The history's columns a night reads.
const HISTORY_COLUMNS: &[&str] = &[
    "person_key",
    "claim_id",
    "settled_at",
    "service_date",
    "status",
    "reversed",
    "total_fen",
    "visit_type",
    "medical_community_id",
    "institution_id",
    "drug_code",
    "days_supply",
    "reverses_key",
];

/// The history's text columns read as dictionary codes: the texts, then the names.
const HISTORY_CODED: [&str; 5] = [
    "institution_id",
    "drug_code",
    "medical_community_id",
    "status",
    "visit_type",
];

/// Institutions, drugs, medical communities: read as codes of the Prior's text lists.
const HISTORY_TEXTS: [&str; 3] = [HISTORY_CODED[0], HISTORY_CODED[1], HISTORY_CODED[2]];

/// The history rows of the wanted persons in one batch, texts as codes of `texts`' lists.
fn history_rows(
    path: &Path,
    batch: &RecordBatch,
    wanted: &PersonKeys,
    first_year: i32,
    texts: &std::sync::Mutex<TextIndex>,
) -> Result<EarlierRows> {
    let selected = wanted.rows_of(int64s(batch, "person_key"));
    let mut rows = EarlierRows::default();
    if selected.is_empty() {
        return Ok(rows);
    }
    let claim_ids = column(batch, "claim_id").as_string::<i32>();
    let settled_at = column(batch, "settled_at").as_primitive::<TimestampMillisecondType>();
    let service = column(batch, "service_date").as_primitive::<Date32Type>();
    let status = names(path, batch, "status", status)?;
    let visit = names(path, batch, "visit_type", visit)?;
    let reversed = column(batch, "reversed").as_boolean();
    let total = int64s(batch, "total_fen");
    let supply = int32s(batch, "days_supply");
    let reverses = int64s(batch, "reverses_key");
    let columns = [
        dictionary(path, batch, HISTORY_TEXTS[0])?,
        dictionary(path, batch, HISTORY_TEXTS[1])?,
        dictionary(path, batch, HISTORY_TEXTS[2])?,
    ];
    let entry_codes: Vec<Vec<u32>> = {
        let mut texts = texts.lock().expect("no task panicked holding the texts");
        columns
            .iter()
            .enumerate()
            .map(|(w, c)| texts.codes(w, c.values().as_string::<i32>()))
            .collect()
    };
    rows.person.reserve(selected.len());
    rows.claim.reserve(selected.len());
    // The selected rows' ids take about their share of the batch's id bytes.
    let id_bytes = claim_ids.value_data().len() / claim_ids.len().max(1) * selected.len();
    rows.claim_id = super::Ids::with_capacity(selected.len(), id_bytes + id_bytes / 8);
    let first_day = super::first_day_held(first_year);
    for (i, person) in selected {
        let day = service.value(i);
        if day < first_day {
            continue;
        }
        let (Some(status), true) = (status.get(i)?, claim_ids.is_valid(i)) else {
            return Err(Error::schema(
                path,
                "claim_id, status",
                "a history row without its claim id or status",
            ));
        };
        let code = |w: usize| {
            let keys = columns[w].keys();
            if keys.is_null(i) {
                NO_CODE
            } else {
                entry_codes[w][keys.value(i) as usize]
            }
        };
        let claim = EarlierClaim {
            settled_at: settled_at.value(i),
            total_fen: value_or_zero(total, i),
            service_day: day,
            institution: code(0),
            drug: code(1),
            medical_community: code(2),
            days_supply: days_supply(path, supply, i)?,
            status,
            visit: visit.get(i)?.unwrap_or(VisitType::Outpatient),
            reversed: reversed.is_valid(i) && reversed.value(i),
        };
        if status == Status::Reversal && reverses.is_valid(i) {
            rows.refunds
                .push((rows.person.len() as u32, reverses.value(i) as u64));
        }
        rows.person.push(person);
        rows.claim.push(claim);
        rows.claim_id.push(claim_ids.value(i));
    }
    Ok(rows)
}

/// The pools columns a night reads.
const POOL_COLUMNS: &[&str] = &[
    "person_key",
    "person_check",
    "year",
    "pool",
    "fund_paid_fen",
    "cost_fen",
    "deductible_fen",
    "claims",
];

/// What a batch of a pools file gives of the persons no newer file held ([`read_persons`]).
#[derive(Default)]
struct PoolRows {
    /// Each row's person (its position in the wanted keys).
    holders: Vec<u32>,
    /// The rows of the years the state holds.
    kept: Vec<(u32, PoolState)>,
    /// The batch's first row of another person under a wanted key.
    stranger: Option<u64>,
}

/// What [`read_persons`] read of the run's persons: their pools and history by rank, the
/// history's texts as codes of the lists the [`Prior`] will hold.
struct PersonsRead {
    pools: Vec<(u32, PoolState)>,
    pieces: Vec<EarlierRows>,
    texts: TextIndex,
    stats: ReadStats,
}

/// Reads the pools and history of the `wanted` persons from the version `store` holds, every
/// file decoded whole: the newest `pools` file holding a person gives its pools, every
/// `history` file its rows. Needs no registry: a run reads it while the registry loads.
fn read_persons(store: &Store, wanted: &PersonKeys, policies: &Policies) -> Result<PersonsRead> {
    let manifest = &store.manifest;
    let first_year = manifest.first_year();
    let resolver = Resolver { policies };
    let mut stats = ReadStats::default();
    let pool_files = manifest
        .pools
        .iter()
        .map(|p| store.path(&p.file))
        .collect::<Vec<_>>();
    let history_files = manifest
        .history
        .iter()
        .map(|p| store.path(&p.file))
        .collect::<Vec<_>>();
    // The pools files newest first, each decoded whole (nearly every page holds some of a
    // night's persons): a person's state is the rows of the newest file holding it, so an
    // older file's rows are taken only for persons no newer file held. On a state as the
    // nights leave it, most of a night's persons are in several files.
    let mut held = vec![false; wanted.len()];
    let mut pools: Vec<(u32, PoolState)> = Vec::new();
    // The first row (in file order) of another person under a wanted person's key.
    let mut stranger: Option<(usize, u64)> = None;
    for (n, path) in pool_files.iter().enumerate().rev() {
        let file = KeyedFile::open(path)?;
        let (batches, bytes) = file.scan(wanted, POOL_COLUMNS, &["pool"], |first_row, batch| {
            let keys = int64s(&batch, "person_key");
            let checks = int64s(&batch, "person_check");
            let pool = names(path, &batch, "pool", |name| resolver.pool(name))?;
            let year = int32s(&batch, "year");
            let claims = int32s(&batch, "claims");
            let (fund, cost, deductible) = (
                int64s(&batch, "fund_paid_fen"),
                int64s(&batch, "cost_fen"),
                int64s(&batch, "deductible_fen"),
            );
            let mut out = PoolRows::default();
            for (i, at) in wanted.rows_of(keys) {
                if held[at as usize] {
                    continue;
                }
                let state = match (pool.get(i)?, year.is_valid(i)) {
                    (Some(pool), true) => Some(PoolState {
                        year: year.value(i),
                        pool,
                        fund_fen: value_or_zero(fund, i),
                        cost_fen: value_or_zero(cost, i),
                        deductible_fen: value_or_zero(deductible, i),
                        claims: if claims.is_valid(i) {
                            claims.value(i)
                        } else {
                            0
                        },
                    }),
                    _ => None,
                };
                if let Some(broken) = state.as_ref().and_then(PoolState::violation) {
                    return Err(Error::Value {
                        path: path.clone(),
                        column: "fund_paid_fen, cost_fen, deductible_fen, claims".into(),
                        row: (first_row + i) as u64,
                        reason: format!("not a pool yibao could have written: {broken}"),
                    });
                }
                let checked =
                    checks.is_valid(i) && checks.value(i) as u64 == wanted.checks[at as usize];
                if !checked && out.stranger.is_none() {
                    out.stranger = Some((first_row + i) as u64);
                }
                out.holders.push(at);
                if let Some(state) = state.filter(|s| s.year >= first_year) {
                    out.kept.push((at, state));
                }
            }
            Ok(out)
        })?;
        stats.bytes_read += bytes;
        for b in &batches {
            for &at in &b.holders {
                held[at as usize] = true;
            }
        }
        if let Some(row) = batches.iter().find_map(|b| b.stranger) {
            stranger = Some((n, row));
        }
        // Newest first, each file's rows in file order: a person's rows are all of one file.
        pools.reserve(batches.iter().map(|b| b.kept.len()).sum());
        for b in batches {
            pools.extend(b.kept);
        }
    }
    if let Some((file, row)) = stranger {
        return Err(Error::Value {
            path: pool_files[file].clone(),
            column: "person_check".into(),
            row,
            reason: "another person's state is held under the key of a person of this run \
                     (a 64-bit key collision): one state cannot hold both"
                .into(),
        });
    }
    stats.pool_rows = pools.len() as u64;

    // History: every file's rows of the wanted persons (each run appends its own claims), a
    // row group a task, texts as codes of the lists the Prior will hold.
    let texts = std::sync::Mutex::new(TextIndex::new(text_lists()));
    let history: Vec<(Vec<EarlierRows>, u64)> = history_files
        .par_iter()
        .map(|path| {
            let file = KeyedFile::open(path)?;
            file.scan(wanted, HISTORY_COLUMNS, &HISTORY_CODED, |_, batch| {
                history_rows(path, &batch, wanted, first_year, &texts)
            })
        })
        .collect::<Result<_>>()?;
    let mut read = PersonsRead {
        pools,
        pieces: Vec::new(),
        texts: texts
            .into_inner()
            .expect("no task panicked holding the texts"),
        stats,
    };
    for (pieces, bytes) in history {
        read.stats.bytes_read += bytes;
        for rows in pieces.into_iter().filter(|r| !r.is_empty()) {
            read.stats.history_rows += rows.len() as u64;
            read.pieces.push(rows);
        }
    }
    Ok(read)
}

/// The [`Prior`] of the `wanted` persons: their pools and history, with the claim index's
/// records of the run's reversal targets (`hits`, whose bytes the caller counts once). It finds
/// persons by dense id once given their ranks ([`Prior::with_ranks`], [`PersonKeys::ranks`]).
pub fn load_prior(
    store: &Store,
    wanted: &PersonKeys,
    policies: &Policies,
    hits: &IndexHits,
) -> Result<(Prior, ReadStats)> {
    let mut read = read_persons(store, wanted, policies)?;
    let reversed: std::collections::HashSet<&str> =
        hits.reversed.iter().map(String::as_str).collect();
    let mut found = EarlierRows::default();
    for r in &hits.records {
        // A record of a person of the run (its id's check confirms it is the same person).
        let Some(p) = wanted
            .position(crate::partition::person_key(&r.person_id))
            .filter(|&p| wanted.checks[p] == super::person_check(&r.person_id))
        else {
            continue;
        };
        read.stats.index_records += 1;
        let mut record = r.record;
        record.medical_community = match &r.medical_community {
            Some(c) => read.texts.intern(2, c),
            None => NO_CODE,
        };
        record.reversed = reversed.contains(r.claim_id.as_str());
        found.person.push(p as u32);
        found.claim.push(EarlierClaim::of(&record));
        found.claim_id.push(&r.claim_id);
        found.settlements.push(record);
    }
    if !found.is_empty() {
        read.pieces.push(found);
    }
    let prior = Prior::new(
        wanted.len(),
        read.pools,
        read.pieces,
        read.texts.into_lists(),
    );
    Ok((prior, read.stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tables::tests::{keyed_batch, keyed_schema, write_keyed};

    #[test]
    fn a_search_of_growing_steps_finds_the_first_key_at_least_the_wanted() {
        let values: Vec<u64> = vec![1, 3, 3, 3, 8, 20, 20, 1 << 63, u64::MAX];
        let keys: Vec<[u8; 8]> = values.iter().map(|v| v.to_le_bytes()).collect();
        for from in 0..=keys.len() {
            for wanted in [0, 1, 2, 3, 4, 8, 19, 20, 21, 1 << 63, u64::MAX] {
                let expected = from + values[from..].iter().take_while(|&&v| v < wanted).count();
                assert_eq!(
                    first_at_least(&keys, from, wanted),
                    expected,
                    "from {from}, wanted {wanted}"
                );
            }
        }
    }

    /// 75,000 claims in two index runs, given out of order: 25,000 keys spread over the whole
    /// unsigned range, each on three rows (so that runs of one key cross the 20,000-row pages
    /// of the key column), and a refund every hundredth row.
    fn keyed_rows() -> Vec<(u64, Option<u64>)> {
        let step = u64::MAX / 25_000;
        (0..75_000u64)
            .map(|i| (i * 7919) % 75_000)
            .map(|i| (i / 3 * step, (i % 100 == 7).then(|| (i / 7) * step)))
            .collect()
    }

    fn numbers(batches: Vec<RecordBatch>) -> Vec<i64> {
        let mut n: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column_by_name("n")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        n.sort_unstable();
        n
    }

    #[test]
    fn an_ordered_row_group_is_searched_to_the_rows_a_scan_finds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let rows = keyed_rows();
        let (a, b) = rows.split_at(40_000);
        let path = write_keyed(
            &store,
            vec![vec![keyed_batch(a, 0)], vec![keyed_batch(b, 40_000)]],
        );
        let file = KeyedFile::open(&path).unwrap();
        assert_eq!(
            file.orders,
            ["claim_key", "reverses_key", "claim_key", "reverses_key"]
        );
        // Every key, with two beside each (more wanted keys than a page holds: each page key
        // probed); every 37th key, a key beside each, and both ends of the range (pages walked
        // beside them); then five keys (each searched for).
        let step = u64::MAX / 25_000;
        let dense: Vec<u64> = (0..25_000u64)
            .step_by(37)
            .flat_map(|k| [k * step, k * step + 1])
            .chain([0, u64::MAX])
            .collect();
        let sparse = vec![0, 6_666 * step, 6_667 * step + 1, 20_000 * step, u64::MAX];
        let every: Vec<u64> = (0..25_000u64)
            .flat_map(|k| [k * step, k * step + 1, k * step + 2])
            .collect();
        let sets = [
            (every, 75_000),
            (dense, 3 * 25_000_usize.div_ceil(37)),
            (sparse, 9),
        ];
        for (keys, hits) in sets {
            let wanted = Keys::new(keys);
            let read = |search: bool| {
                let (batches, bytes) = file
                    .read_matching(
                        &["claim_key", "reverses_key"],
                        |_| true,
                        |k| wanted.may_contain(k),
                        |k| k[0].is_some_and(|k| wanted.contains(k)),
                        search.then_some(Wanted::Keys(&wanted)),
                        &["n"],
                        |_, b| Ok(b),
                    )
                    .unwrap();
                (numbers(batches), bytes)
            };
            let ((searched, searched_bytes), (scanned, scanned_bytes)) = (read(true), read(false));
            let expected: Vec<i64> = (0..75_000)
                .filter(|&i| wanted.contains(rows[i].0))
                .map(|i| i as i64)
                .collect();
            assert_eq!(expected.len(), hits);
            assert_eq!(searched, expected);
            assert_eq!(scanned, expected);
            // The searched claim groups' `reverses_key` (all null) was not read.
            assert!(
                searched_bytes < scanned_bytes,
                "{searched_bytes} {scanned_bytes}"
            );
        }

        // A range of claim keys, and one of refunds' keys.
        let (lo, hi) = (6_000 * step, 9_000 * step);
        let in_range = |k: u64| (lo..=hi).contains(&k);
        let claims = IndexFile::open(&path)
            .unwrap()
            .read_range("claim_key", lo..=hi, &["n"])
            .unwrap();
        let expected: Vec<i64> = (0..75_000)
            .filter(|&i| rows[i].1.is_none() && in_range(rows[i].0))
            .map(|i| i as i64)
            .collect();
        assert_eq!(numbers(claims), expected);
        let refunds = IndexFile::open(&path)
            .unwrap()
            .read_range("reverses_key", lo..=hi, &["n"])
            .unwrap();
        let expected: Vec<i64> = (0..75_000)
            .filter(|&i| rows[i].1.is_some_and(in_range))
            .map(|i| i as i64)
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(numbers(refunds), expected);
    }

    #[test]
    fn a_row_group_named_in_order_that_is_not_stops_the_search() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let mut file = crate::state::tables::TableFile::for_tests(&store, keyed_schema());
        let batch = keyed_batch(&[(5, None), (3, None), (1, None)], 0);
        file.write(batch, std::iter::once(2024)).unwrap();
        file.end_row_group("claim_key").unwrap();
        let (piece, committed) = file.close().unwrap();
        committed.commit().unwrap();
        let path = store.path(&piece.file);
        let wanted = Keys::new(vec![3]);
        let err = KeyedFile::open(&path)
            .unwrap()
            .read_matching(
                &["claim_key", "reverses_key"],
                |_| true,
                |k| wanted.may_contain(k),
                |k| k[0].is_some_and(|k| wanted.contains(k)),
                Some(Wanted::Keys(&wanted)),
                &["n"],
                |_, b| Ok(b),
            )
            .expect_err("refused");
        assert!(err.to_string().contains("descend"), "{err}");
    }

    #[test]
    fn a_released_rank_buffer_ranks_the_next_part_as_a_new_one_would() {
        let mut index = PersonIndex::default();
        for i in 0..200 {
            index.intern(&format!("P{i}"));
        }
        // Every other person present; 4 parts.
        let present: Vec<bool> = (0..200).map(|i| i % 2 == 0).collect();
        let persons = SpilledPersons::of_present(&index, &present).unwrap();
        let (first, mut ranks) = persons.part(0, 2, Vec::new(), 200).unwrap();
        let held = ranks.iter().filter(|&&r| r != u32::MAX).count();
        assert!(held > 10 && held == first.len(), "{held} ranked in part 0");
        for part in 1..4 {
            persons.release(part - 1, 2, &mut ranks);
            assert!(
                ranks.iter().all(|&r| r == u32::MAX),
                "part {} cleared",
                part - 1
            );
            let (_, reused) = persons.part(part, 2, ranks, 200).unwrap();
            let (_, fresh) = persons.part(part, 2, Vec::new(), 200).unwrap();
            assert_eq!(reused, fresh, "part {part}");
            ranks = reused;
        }
    }

    #[test]
    fn persons_sharing_a_key_cannot_share_a_state() {
        // (key, check): a person named twice is one person.
        let keys = PersonKeys::new(vec![(9, 1), (3, 2), (7, 3), (3, 2)]).unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys.position(3).map(|at| keys.checks[at]), Some(2));
        assert_eq!(keys.position(9).map(|at| keys.checks[at]), Some(1));
        assert_eq!(keys.position(8), None);
        let err = PersonKeys::new(vec![(9, 1), (9, 2)]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("share person key"), "{err}");
    }

    #[test]
    fn a_present_person_of_the_run_is_found_by_its_rank_in_key_order() {
        // Registry: P0 … P999; the run's persons (with state to read): every third; present
        // in the run's claims: every second. Ranked: those both, by their place in key order.
        let mut index = PersonIndex::default();
        for i in 0..1_000 {
            index.intern(&format!("P{i}"));
        }
        let key = |i: u32| crate::partition::person_key(&format!("P{i}"));
        let run: Vec<u32> = (0..1_000).step_by(3).collect();
        let keys = PersonKeys::new(run.iter().map(|&i| (key(i), u64::from(i))).collect()).unwrap();
        let present: Vec<bool> = (0..1_000).map(|i| i % 2 == 0).collect();
        let ranks = keys.ranks(&index, &present);
        assert_eq!(ranks.len(), 1_000);
        let mut in_key_order = run.clone();
        in_key_order.sort_by_key(|&i| key(i));
        for p in 0..1_000u32 {
            let expected = match (p % 2, p % 3) {
                (0, 0) => in_key_order.iter().position(|&i| i == p).map(|r| r as u32),
                _ => None,
            };
            assert_eq!(
                ranks[p as usize],
                expected.unwrap_or(u32::MAX),
                "person P{p}"
            );
        }
        assert_eq!(ranks.iter().filter(|&&r| r != u32::MAX).count(), 167);
    }

    /// `n` hashed keys, as `claim_key` makes them, of the texts `prefix0`, `prefix1`, ….
    fn hashed(prefix: &str, n: u64) -> impl Iterator<Item = u64> + '_ {
        (0..n).map(move |i| crate::domain::stable_key(&format!("{prefix}{i}")))
    }

    #[test]
    fn keys_find_exactly_their_members() {
        let members: Vec<u64> = hashed("M", 5_000).collect();
        let keys = Keys::new(members.clone());
        assert_eq!(keys.len(), 5_000);
        for (i, &k) in members.iter().enumerate() {
            assert!(keys.contains(k), "member {i}");
        }
        let strangers = hashed("S", 50_000).filter(|k| keys.contains(*k)).count();
        assert_eq!(strangers, 0);
        assert!(Keys::new(Vec::new()).position(7).is_none());
    }

    #[test]
    fn the_filter_lets_few_strangers_through_to_a_search() {
        let members: Vec<u64> = hashed("M", 100_000).collect();
        let keys = Keys::new(members.clone());
        assert!(members.iter().all(|&k| keys.may_contain(k)));
        let passed = hashed("S", 1_000_000)
            .filter(|&k| keys.may_contain(k))
            .count();
        // 100,000 keys in 2^22 bits (42 a key): 1.5 keys a word on average, and a stranger
        // passes when its three bits are among the word's — about 1 in 1,000 (982 here), where
        // one bit a key in a bitmap of that size passes 2.4%.
        assert!(passed < 2_000, "{passed} of 1,000,000 strangers passed");
    }

    #[test]
    fn a_range_of_persons_reads_only_the_row_groups_that_may_hold_it() {
        use arrow::datatypes::{Field, Schema};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pools.parquet");
        let high = 1u64 << 63;
        // Row groups of two keys: [1, 2], [10, 11], [2^63 + 5, 2^63 + 6] and one holding keys
        // on both sides of 2^63, whose signed statistics say nothing of its u64 range.
        let keys: Vec<u64> = vec![1, 2, 10, 11, high + 5, high + 6, 5, high + 1];
        let schema = std::sync::Arc::new(Schema::new(vec![Field::new(
            "person_key",
            DataType::Int64,
            false,
        )]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![std::sync::Arc::new(Int64Array::from_iter_values(
                keys.iter().map(|&k| k as i64),
            ))],
        )
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(2))
            .build();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), schema, Some(props))
                .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let file = KeyedFile::open(&path).unwrap();
        let groups = |persons: &[u64]| -> Vec<usize> {
            let persons = PersonKeys::new(persons.iter().map(|&k| (k, 0)).collect()).unwrap();
            (0..4).filter(|&g| file.may_hold(g, &persons)).collect()
        };
        assert_eq!(groups(&[3, 9]), [3], "between the first two groups");
        assert_eq!(groups(&[2, 10]), [0, 1, 3]);
        assert_eq!(groups(&[high + 6]), [2, 3]);
        assert!(groups(&[]).is_empty(), "no person, no group");
    }

    #[test]
    fn a_mapped_row_group_serves_its_own_bytes_and_refuses_others() {
        use parquet::file::reader::{ChunkReader, Length};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bytes");
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let mapped = MappedRowGroup::map(&file, 10_000, &path, 4_000..6_000).unwrap();
        assert_eq!(
            mapped.len(),
            10_000,
            "a reader sees the whole file's length"
        );
        assert_eq!(mapped.get_bytes(4_100, 50).unwrap(), &data[4_100..4_150]);
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut mapped.get_read(5_990).unwrap(), &mut rest).unwrap();
        assert_eq!(rest, &data[5_990..6_000]);
        assert!(mapped.get_bytes(3_999, 10).is_err(), "before the row group");
        assert!(mapped.get_bytes(5_995, 10).is_err(), "past its end");
        assert!(
            MappedRowGroup::map(&file, 10_000, &path, 9_000..10_001).is_err(),
            "a chunk past the file's end is a corrupt file, not a fault"
        );
    }

    #[test]
    fn a_supply_ingest_would_refuse_is_not_read_from_a_state_file() {
        let supply = Int32Array::from(vec![Some(30), None, Some(366), Some(400), Some(-1)]);
        let path = Path::new("history.parquet");
        let read = |i| days_supply(path, &supply, i);
        assert_eq!(read(0).unwrap(), Some(30));
        assert_eq!(read(1).unwrap(), None);
        assert_eq!(read(2).unwrap(), Some(366));
        for i in [3, 4] {
            let message = read(i).unwrap_err().to_string();
            assert!(message.contains("days_supply"), "{message}");
            assert!(message.contains("outside 0 to 366"), "{message}");
        }
    }

    #[test]
    fn consecutive_rows_are_read_as_ranges() {
        assert_eq!(runs(&[0, 1, 2, 5, 7, 8]), vec![0..3, 5..6, 7..9]);
        assert!(runs(&[]).is_empty());
    }
}
