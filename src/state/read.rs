//! Reading a version of the state for one run: the claim index entries of the run's claim ids
//! and reversal targets ([`lookup_claims`]), then the pools and history of the run's persons
//! ([`load_prior`]) — each by its key column first, then the selected rows only, a row group a
//! rayon task. A file's rows of other persons and claims are never decoded past their key.
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
    claim_key, text_lists, ClaimRecord, EarlierClaim, Layers, PoolState, Prior, PriorClaim,
    INDEX_ONLY_TEXT,
};
use crate::domain::{year_of, Status, VisitType};
use crate::error::{Error, Result};
use crate::ingest::claims::NO_CODE;
use crate::ingest::registry::PersonIndex;
use crate::ingest::FastMap;
use crate::policy::{Policies, NONE};

/// Keys to look up, sorted, behind a bitmap of their top bits: most keys that are not in the
/// set are turned away by one bit, without a search.
#[derive(Debug, Default)]
pub struct Keys {
    sorted: Vec<u64>,
    filter: Vec<u64>,
    /// A key's bit is `key >> shift`.
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
        // About 32 bits a key, at most 64 MiB.
        let bits = (sorted.len() as u64 * 32)
            .next_power_of_two()
            .clamp(64, 1 << 29)
            .trailing_zeros();
        let mut filter = vec![0u64; 1 << (bits - 6)];
        let shift = 64 - bits;
        for &k in &sorted {
            let bit = (k >> shift) as usize;
            filter[bit >> 6] |= 1 << (bit & 63);
        }
        Keys {
            sorted,
            filter,
            shift,
        }
    }

    /// The position of `key` among the keys, if it is one.
    #[inline]
    pub fn position(&self, key: u64) -> Option<usize> {
        if self.sorted.is_empty() {
            return None;
        }
        let bit = (key >> self.shift) as usize;
        if self.filter[bit >> 6] & (1 << (bit & 63)) == 0 {
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

/// The persons a run settles: their [`crate::partition::person_key`]s with their dense ids.
#[derive(Debug, Default)]
pub struct PersonKeys {
    keys: Keys,
    /// `(key, dense id)`, ascending: a key two persons share (never seen, but possible) names both.
    persons: Vec<(u64, u32)>,
}

impl PersonKeys {
    pub fn new(mut persons: Vec<(u64, u32)>) -> PersonKeys {
        persons.par_sort_unstable();
        let mut keys: Vec<u64> = persons.iter().map(|p| p.0).collect();
        keys.dedup();
        PersonKeys {
            keys: Keys::from_sorted(keys),
            persons,
        }
    }

    /// The dense ids of the persons with key `key`.
    fn with_key(&self, key: u64) -> impl Iterator<Item = u32> + '_ {
        let from = self.persons.partition_point(|p| p.0 < key);
        self.persons[from..]
            .iter()
            .take_while(move |p| p.0 == key)
            .map(|p| p.1)
    }
}

fn column<'b>(batch: &'b RecordBatch, name: &str) -> &'b arrow::array::ArrayRef {
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

/// A name column resolved once per distinct name: `resolve` gives a name's id, or why it
/// cannot be used (the error names the file and the column).
pub(super) fn names<T: Copy>(
    path: &Path,
    batch: &RecordBatch,
    name: &str,
    mut resolve: impl FnMut(&str) -> std::result::Result<T, String>,
) -> Result<Vec<Option<T>>> {
    let dictionary = arrow::compute::cast(
        column(batch, name),
        &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
    )
    .map_err(|e| Error::schema(path, name, e.to_string()))?;
    let dictionary = dictionary.as_dictionary::<Int32Type>();
    let values = dictionary.values().as_string::<i32>();
    let ids: Vec<std::result::Result<T, String>> = (0..values.len())
        .map(|i| match values.is_null(i) {
            true => Err("a null name".to_string()),
            false => resolve(values.value(i)),
        })
        .collect();
    let keys = dictionary.keys();
    (0..keys.len())
        .map(|row| match keys.is_valid(row) {
            false => Ok(None),
            true => match &ids[keys.value(row) as usize] {
                Ok(id) => Ok(Some(*id)),
                Err(reason) => Err(Error::schema(path, name, reason.clone())),
            },
        })
        .collect()
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
    builder_schema: arrow::datatypes::SchemaRef,
    metadata: std::sync::Arc<parquet::file::metadata::ParquetMetaData>,
    parquet_schema: parquet::schema::types::SchemaDescPtr,
}

impl<'a> KeyedFile<'a> {
    fn open(path: &'a Path) -> Result<KeyedFile<'a>> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::parquet(path, e))?;
        Ok(KeyedFile {
            path,
            builder_schema: builder.schema().clone(),
            metadata: builder.metadata().clone(),
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
        let path = self.path;
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new();
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

    /// Compressed bytes of `roots` in row group `group`: what reading them costs.
    fn bytes(&self, group: usize, roots: &[usize]) -> u64 {
        let g = self.metadata.row_group(group);
        roots
            .iter()
            .map(|&c| g.column(c).compressed_size().max(0) as u64)
            .sum()
    }

    /// The rows whose `key_columns` pass `select` (given each key column's value, null as
    /// `None`): the key columns of every row group are read, then `columns` of the selected
    /// rows only, each batch handed to `map` with the selected rows' first key. Returns what
    /// `map` made, and the bytes read.
    fn read_matching<T: Send>(
        &self,
        key_columns: &[&str],
        select: impl Fn(&[Option<u64>]) -> bool + Sync,
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
        let groups: Vec<usize> = (0..self.metadata.num_row_groups()).collect();
        let per_group: Vec<(Vec<T>, u64)> = groups
            .par_iter()
            .map(|&g| {
                let mut bytes = self.bytes(g, &key_roots);
                let (mut rows, mut keys, mut at) = (Vec::new(), Vec::new(), 0usize);
                let mut values = vec![None; key_columns.len()];
                for batch in self.reader(g, &key_roots, None)? {
                    let batch = batch
                        .map_err(|e| Error::schema(self.path, key_columns[0], e.to_string()))?;
                    let arrays: Vec<&Int64Array> =
                        key_columns.iter().map(|c| int64s(&batch, c)).collect();
                    for i in 0..batch.num_rows() {
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
                if rows.is_empty() {
                    return Ok((Vec::new(), bytes));
                }
                bytes += self.bytes(g, &roots);
                let selection = RowSelection::from_consecutive_ranges(runs(&rows).into_iter(), at);
                let mut out = Vec::new();
                let mut first = 0;
                for batch in self.reader(g, &roots, Some(selection))? {
                    let batch = batch.map_err(|e| Error::schema(self.path, "*", e.to_string()))?;
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

/// `columns` of the rows of a state file whose `person_key` passes `select`, as stored.
pub fn read_selected(
    path: &Path,
    select: impl Fn(u64) -> bool + Sync,
    columns: &[&str],
) -> Result<Vec<RecordBatch>> {
    let file = KeyedFile::open(path)?;
    let (batches, _) = file.read_matching(
        &["person_key"],
        |k| k[0].is_some_and(&select),
        columns,
        |_, batch| Ok(batch),
    )?;
    Ok(batches)
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
            (opt(&person_id, i), opt(&claim_id, i), status[i])
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
                version: version[i].unwrap_or(NONE),
                label: label[i].unwrap_or(NONE),
                pool: pool[i].unwrap_or(NONE),
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
                visit: visit[i].unwrap_or(VisitType::Outpatient),
                institution: INDEX_ONLY_TEXT,
                drug: INDEX_ONLY_TEXT,
                days_supply: None,
                medical_community: NO_CODE,
                layers: Layers {
                    ci_pool: ci_pool[i].unwrap_or(NONE),
                    ci_deductible_fen: value_or_zero(fen("critical_illness_deductible_fen"), i),
                    ci_fen: value_or_zero(fen("critical_illness_paid_fen"), i),
                    assistance_pool: assistance_pool[i].unwrap_or(NONE),
                    assistance_deductible_fen: value_or_zero(fen("assistance_deductible_fen"), i),
                    assistance_fen: value_or_zero(fen("assistance_paid_fen"), i),
                },
            },
            medical_community: opt(&community, i),
            reverses: opt(&reverses, i),
        });
    }
    Ok(out)
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
/// claim index of `store`'s version: reads each file's two key columns, then only the rows
/// whose key is one of them.
pub fn lookup_claims(
    store: &Store,
    claim_keys: &Keys,
    target_keys: &Keys,
    policies: &Policies,
) -> Result<IndexHits> {
    let first_year = store.manifest.first_year();
    let resolver = Resolver { policies };
    let found: Vec<IndexHits> = store
        .manifest
        .claims
        .par_iter()
        .filter(|p| p.max_year.is_some_and(|y| y >= first_year))
        .map(|piece| -> Result<IndexHits> {
            let path = store.path(&piece.file);
            let file = KeyedFile::open(&path)?;
            // One scan of the two key columns: the run's repeated ids (rare; confirmed on the
            // text by ingest), the originals its reversals name, and the reversals of them.
            let select = |k: &[Option<u64>]| {
                k[0].is_some_and(|k| claim_keys.contains(k) || target_keys.contains(k))
                    || k[1].is_some_and(|k| target_keys.contains(k))
            };
            let (batches, bytes_read) = file.read_matching(
                &["claim_key", "reverses_key"],
                select,
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

/// What [`load_prior`] read.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ReadStats {
    pub pool_rows: u64,
    pub history_rows: u64,
    pub index_records: u64,
    /// Bytes of the column chunks read as stored (key columns of every file, other columns of
    /// the row groups holding selected rows).
    pub bytes_read: u64,
}

/// A pools row of a wanted person, as read.
struct PoolRow {
    person: u32,
    /// `None` for a row marking a person settled with no pool.
    state: Option<PoolState>,
}

/// A history row, its texts as codes of its batch's own lists.
struct HistoryRow {
    person: u32,
    claim_id: Box<str>,
    claim_key: u64,
    claim: EarlierClaim,
    /// A refund's original.
    reverses: Option<u64>,
}

/// A batch of history rows with the texts its codes index.
struct HistoryBatch {
    rows: Vec<HistoryRow>,
    /// Institutions, drugs, medical communities.
    texts: [Vec<String>; 3],
}

/// The distinct texts of a column of `rows`, each row's as a code into them ([`NO_CODE`] for a
/// null).
fn local_codes(array: &StringArray, rows: &[usize]) -> (Vec<u32>, Vec<String>) {
    let mut index: FastMap<&str, u32> = FastMap::default();
    let mut texts = Vec::new();
    let codes = rows
        .iter()
        .map(|&i| {
            if array.is_null(i) {
                return NO_CODE;
            }
            let v = array.value(i);
            *index.entry(v).or_insert_with(|| {
                texts.push(v.to_string());
                texts.len() as u32 - 1
            })
        })
        .collect();
    (codes, texts)
}

/// Reads the pools and history of the persons `wanted` from `store`'s version, and joins the
/// index records `hits` found for this run's reversals. For each pools file (newest first
/// wins) its key column is scanned for the wanted persons; only the newest file's rows of each
/// are then decoded, and the history rows of the same pair.
pub fn load_prior(
    store: &Store,
    wanted: &PersonKeys,
    persons: &PersonIndex,
    policies: &Policies,
    hits: IndexHits,
) -> Result<(Prior, ReadStats)> {
    let manifest = &store.manifest;
    let first_year = manifest.first_year();
    let resolver = Resolver { policies };
    let mut stats = ReadStats {
        bytes_read: hits.bytes_read,
        ..ReadStats::default()
    };
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
    // The newest pools file holding each wanted key (by position in `wanted.keys`).
    const NOBODY: u32 = u32::MAX;
    let opened: Vec<KeyedFile> = pool_files
        .iter()
        .map(|p| KeyedFile::open(p))
        .collect::<Result<_>>()?;
    let held: Vec<(Vec<usize>, u64)> = opened
        .par_iter()
        .map(|file| {
            let (positions, bytes) = file.read_matching(
                &["person_key"],
                |k| k[0].is_some_and(|k| wanted.keys.contains(k)),
                &[],
                |keys, _| {
                    Ok(keys
                        .iter()
                        .filter_map(|&k| wanted.keys.position(k))
                        .collect::<Vec<_>>())
                },
            )?;
            Ok((positions.into_iter().flatten().collect(), bytes))
        })
        .collect::<Result<_>>()?;
    let mut holder = vec![NOBODY; wanted.keys.len()];
    for (n, (positions, bytes)) in held.iter().enumerate() {
        stats.bytes_read += bytes;
        for &at in positions {
            holder[at] = n as u32;
        }
    }
    let held_by = |key: u64, n: usize| {
        wanted
            .keys
            .position(key)
            .is_some_and(|at| holder[at] == n as u32)
    };
    // The person of a selected row: the wanted person with its key and id.
    let person_of = |key: u64, ids: &StringArray, i: usize| -> Option<u32> {
        let id = ids.is_valid(i).then(|| ids.value(i))?;
        wanted.with_key(key).find(|&p| persons.id(p) == id)
    };

    let pool_rows: Vec<(Vec<Vec<PoolRow>>, u64)> = opened
        .par_iter()
        .enumerate()
        .map(|(n, file)| {
            file.read_matching(
                &["person_key"],
                |k| k[0].is_some_and(|k| held_by(k, n)),
                &[
                    "person_id",
                    "year",
                    "pool",
                    "fund_paid_fen",
                    "cost_fen",
                    "deductible_fen",
                    "claims",
                ],
                |keys, batch| {
                    let path = file.path;
                    let ids = strings(path, &batch, "person_id")?;
                    let pool = names(path, &batch, "pool", |name| resolver.pool(name))?;
                    let year = int32s(&batch, "year");
                    let claims = int32s(&batch, "claims");
                    let (fund, cost, deductible) = (
                        int64s(&batch, "fund_paid_fen"),
                        int64s(&batch, "cost_fen"),
                        int64s(&batch, "deductible_fen"),
                    );
                    Ok((0..batch.num_rows())
                        .filter_map(|i| {
                            let person = person_of(keys[i], &ids, i)?;
                            let state = match (pool[i], year.is_valid(i)) {
                                (Some(pool), true) if year.value(i) >= first_year => {
                                    Some(PoolState {
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
                                    })
                                }
                                _ => None,
                            };
                            Some(PoolRow { person, state })
                        })
                        .collect())
                },
            )
        })
        .collect::<Result<_>>()?;
    let mut pools = Vec::new();
    for (batches, bytes) in pool_rows {
        stats.bytes_read += bytes;
        pools.extend(
            batches
                .into_iter()
                .flatten()
                .filter_map(|r| r.state.map(|s| (r.person, s))),
        );
    }
    stats.pool_rows = pools.len() as u64;

    // History: every file's rows of the wanted persons (each run appends its own claims).
    let history: Vec<(Vec<HistoryBatch>, u64)> = history_files
        .par_iter()
        .map(|path| {
            let file = KeyedFile::open(path)?;
            file.read_matching(
                &["person_key"],
                |k| k[0].is_some_and(|k| wanted.keys.contains(k)),
                &[
                    "person_id",
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
                    "claim_key",
                    "reverses_key",
                ],
                |keys, batch| {
                    let ids = strings(path, &batch, "person_id")?;
                    let claim_ids = strings(path, &batch, "claim_id")?;
                    let settled_at =
                        column(&batch, "settled_at").as_primitive::<TimestampMillisecondType>();
                    let service = column(&batch, "service_date").as_primitive::<Date32Type>();
                    let status = names(path, &batch, "status", status)?;
                    let visit = names(path, &batch, "visit_type", visit)?;
                    let reversed = column(&batch, "reversed").as_boolean();
                    let total = int64s(&batch, "total_fen");
                    let supply = int32s(&batch, "days_supply");
                    let claim_keys = int64s(&batch, "claim_key");
                    let reverses = int64s(&batch, "reverses_key");
                    let rows: Vec<(usize, u32)> = (0..batch.num_rows())
                        .filter(|&i| year_of(service.value(i)) >= first_year)
                        .filter_map(|i| person_of(keys[i], &ids, i).map(|p| (i, p)))
                        .collect();
                    let at: Vec<usize> = rows.iter().map(|r| r.0).collect();
                    let text = |name| -> Result<(Vec<u32>, Vec<String>)> {
                        Ok(local_codes(&strings(path, &batch, name)?, &at))
                    };
                    let (institution, institutions) = text("institution_id")?;
                    let (drug, drugs) = text("drug_code")?;
                    let (community, communities) = text("medical_community_id")?;
                    let mut out = Vec::with_capacity(rows.len());
                    for (k, &(i, person)) in rows.iter().enumerate() {
                        let (Some(status), true, true) =
                            (status[i], claim_ids.is_valid(i), claim_keys.is_valid(i))
                        else {
                            return Err(Error::schema(
                                path,
                                "claim_id, claim_key, status",
                                "a history row without its claim id, key or status",
                            ));
                        };
                        out.push(HistoryRow {
                            person,
                            claim_id: claim_ids.value(i).into(),
                            claim_key: claim_keys.value(i) as u64,
                            claim: EarlierClaim {
                                settled_at: settled_at.value(i),
                                total_fen: value_or_zero(total, i),
                                service_day: service.value(i),
                                institution: institution[k],
                                drug: drug[k],
                                medical_community: community[k],
                                days_supply: supply.is_valid(i).then(|| supply.value(i)),
                                status,
                                visit: visit[i].unwrap_or(VisitType::Outpatient),
                                reversed: reversed.is_valid(i) && reversed.value(i),
                            },
                            reverses: (status == Status::Reversal && reverses.is_valid(i))
                                .then(|| reverses.value(i) as u64),
                        });
                    }
                    Ok(HistoryBatch {
                        rows: out,
                        texts: [institutions, drugs, communities],
                    })
                },
            )
        })
        .collect::<Result<_>>()?;

    // Texts as codes of the Prior's own lists: each batch's lists merged in file order.
    let mut lists = text_lists();
    let mut index: [FastMap<String, u32>; 3] = Default::default();
    for (list, map) in lists.iter().zip(index.iter_mut()) {
        for (i, t) in list.iter().enumerate() {
            map.insert(t.clone(), i as u32);
        }
    }
    let mut intern = |which: usize, text: &str| -> u32 {
        if let Some(&c) = index[which].get(text) {
            return c;
        }
        let c = lists[which].len() as u32;
        lists[which].push(text.to_string());
        index[which].insert(text.to_string(), c);
        c
    };
    let rows: usize = history
        .iter()
        .flat_map(|(batches, _)| batches.iter().map(|b| b.rows.len()))
        .sum();
    let mut claims = Vec::with_capacity(rows + hits.records.len());
    for (batches, bytes) in history {
        stats.bytes_read += bytes;
        for batch in batches {
            let remap: Vec<Vec<u32>> = (0..3)
                .map(|w| batch.texts[w].iter().map(|t| intern(w, t)).collect())
                .collect();
            let code = |w: usize, c: u32| {
                if c == NO_CODE {
                    NO_CODE
                } else {
                    remap[w][c as usize]
                }
            };
            for mut row in batch.rows {
                row.claim.institution = code(0, row.claim.institution);
                row.claim.drug = code(1, row.claim.drug);
                row.claim.medical_community = code(2, row.claim.medical_community);
                stats.history_rows += 1;
                claims.push(PriorClaim {
                    person: row.person,
                    claim_id: row.claim_id,
                    claim_key: row.claim_key,
                    claim: row.claim,
                    settlement: None,
                    in_history: true,
                    reverses: row.reverses,
                });
            }
        }
    }
    let reversed: std::collections::HashSet<&str> =
        hits.reversed.iter().map(String::as_str).collect();
    for r in &hits.records {
        let Some(p) = persons.get(&r.person_id) else {
            continue;
        };
        stats.index_records += 1;
        let mut record = r.record;
        record.medical_community = match &r.medical_community {
            Some(c) => intern(2, c),
            None => NO_CODE,
        };
        record.reversed = reversed.contains(r.claim_id.as_str());
        claims.push(PriorClaim {
            person: p,
            claim_id: r.claim_id.as_str().into(),
            claim_key: claim_key(&r.claim_id),
            claim: EarlierClaim::of(&record),
            settlement: Some(Box::new(record)),
            in_history: false,
            reverses: None,
        });
    }
    Ok((Prior::new(persons.len(), pools, claims, lists), stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_find_exactly_their_members() {
        let members: Vec<u64> = (0..5_000u64)
            .map(|i| crate::domain::stable_key(&format!("M{i}")))
            .collect();
        let keys = Keys::new(members.clone());
        assert_eq!(keys.len(), 5_000);
        for (i, &k) in members.iter().enumerate() {
            assert!(keys.contains(k), "member {i}");
        }
        let strangers = (0..50_000u64)
            .map(|i| crate::domain::stable_key(&format!("S{i}")))
            .filter(|k| keys.contains(*k))
            .count();
        assert_eq!(strangers, 0);
        assert!(Keys::new(Vec::new()).position(7).is_none());
    }

    #[test]
    fn consecutive_rows_are_read_as_ranges() {
        assert_eq!(runs(&[0, 1, 2, 5, 7, 8]), vec![0..3, 5..6, 7..9]);
        assert!(runs(&[]).is_empty());
    }
}
