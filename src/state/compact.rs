//! `yibao state compact`: merges a state's appended files into one of each table and drops old
//! versions.
//!
//! Each nightly run adds a pools, a history and a claims file. A person's rows in older pools
//! files are superseded by the newest file holding the person; the history files hold every
//! run's own claims. Compaction keeps only the rows that still count — the holder's pools, and
//! of each person's history what the rules' windows reach ([`super::retained`]) with refunds
//! applied — of the years held, and writes them as one new version, so later runs read one file
//! per table. It works on the rows as stored, a range of person keys at a time (bounded memory),
//! and needs no policies. Versions older than the newest `keep` are then removed with the files
//! only they named.

use arrow::array::{Array, AsArray, BooleanArray, Int64Array, RecordBatch};
use arrow::datatypes::{Date32Type, Int32Type, Int64Type, SchemaRef, TimestampMillisecondType};

use rayon::prelude::*;

use super::read::{column, IndexFile};
use super::store::{read_manifest, versions, Manifest, Piece, Store};
use super::tables::TableFile;
use super::EarlierClaim;
use crate::domain::{Status, VisitType};
use crate::error::{Error, Result};
use crate::ingest::claims::NO_CODE;
use crate::ingest::FastMap;

/// What a compaction did.
#[derive(Debug)]
pub struct Compacted {
    /// The version written, or `None` when there was nothing to merge.
    pub version: Option<u64>,
    /// Rows and bytes before and after, all tables.
    pub rows: (u64, u64),
    pub bytes: (u64, u64),
    /// Versions removed.
    pub removed: Vec<u64>,
}

/// Rows of the history merged at once (shared by the ranges merged side by side): a range of
/// person keys holding about this many, read whole, then copied in person order. A night that
/// completes a tier merges beside the registry: at 2 Mi rows the night that merges the tier of
/// 16 nights of the 10M month peaks where the other nights do (0.84 GiB; 1.16 GiB at 4 Mi).
const ROWS_PER_RANGE: u64 = 2 << 20;

/// The same for `pools`, whose range is held whole to be put in person-key order (about 70
/// bytes a row as read, twice over while sorted): a night that completes a tier merges its
/// pools after its outputs are written, beside the registry.
const POOL_ROWS_PER_RANGE: u64 = 1 << 20;

/// Compacts `dir` and keeps its newest `keep` versions (at least 1).
pub fn compact(dir: &std::path::Path, keep: usize) -> Result<Compacted> {
    let store = Store::open(dir)?;
    let m = &store.manifest;
    let total = |m: &Manifest| -> (u64, u64) {
        (
            m.files().map(|p| p.rows).sum(),
            m.files().map(|p| p.bytes).sum(),
        )
    };
    let (rows_before, bytes_before) = total(m);
    // A history file a run wrote holds every claim it settled: compaction keeps what counts.
    // Each table is rewritten only when it must be: the per-person files of a state one run
    // wrote are as a merge would leave them, while its claim index is a run a partition.
    let people = m.pools.len() > 1
        || m.history.len() > 1
        || m.history.iter().any(|p| !p.retained)
        || stale_years(m.pools.iter().chain(&m.history), m.first_year());
    let index = index_to_merge(m) || stale_years(m.claims.iter(), m.first_year());
    let version = if people || index {
        let mut next = m.clone();
        if people {
            let (pools, history) = merge_people(&store)?;
            next.pools = vec![pools];
            next.history = vec![history];
        }
        if index {
            next.claims = vec![merge_claims(&store)?];
        }
        Some(store.commit(next)?)
    } else {
        None
    };
    let latest = read_manifest(dir, versions(dir)?.last().copied().unwrap_or(0))
        .unwrap_or_else(|_| m.clone());
    let (rows_after, bytes_after) = total(&latest);
    let removed = drop_versions(&store, keep.max(1))?;
    Ok(Compacted {
        version,
        rows: (rows_before, rows_after),
        bytes: (bytes_before, bytes_after),
        removed,
    })
}

/// Whether the claim index is more than one ordered run: more than one file, or a file a run
/// wrote (an ordered run a part of its claims).
fn index_to_merge(m: &Manifest) -> bool {
    m.claims.len() > 1 || m.claims.iter().any(|p| !p.ordered && p.rows > 0)
}

/// Whether one of `files` holds years before `first_year`, which the state no longer keeps.
fn stale_years<'m>(mut files: impl Iterator<Item = &'m Piece>, first_year: i32) -> bool {
    files.any(|p| p.min_year.is_some_and(|y| y < first_year))
}

/// Merges all the pools and history files, a range of person keys at a time: each person's
/// pools from the newest file holding it, and the history the person's rules still reach.
fn merge_people(store: &Store) -> Result<(Piece, Piece)> {
    let m = &store.manifest;
    Ok((
        merge_pieces(store, Table::Pools, &m.pools)?,
        merge_pieces(store, Table::History, &m.history)?,
    ))
}

/// The per-person tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Pools,
    History,
}

/// Merges `pieces`, the newest files of `table` (all of them, or a run of the newest), into one
/// new file, placed under its name (no manifest names it yet). Pools keep each person's rows
/// from the newest of the pieces holding it; the history keeps what the rules still reach of
/// each person's rows in the pieces, refunds applied ([`merge_history`]). Either is what a
/// reader finds in the pieces themselves, given the older files beside.
pub fn merge_pieces(store: &Store, table: Table, pieces: &[Piece]) -> Result<Piece> {
    let first_year = store.manifest.first_year();
    let rows: u64 = pieces.iter().map(|p| p.rows).sum();
    // Ranges are merged as many at once as there are threads, each with its share of the
    // rows one range may hold, then written in order.
    let at_once = rayon::current_num_threads().max(1);
    let per_range = match table {
        Table::Pools => POOL_ROWS_PER_RANGE,
        Table::History => ROWS_PER_RANGE,
    } / at_once as u64;
    let mut bits = 0;
    while bits < crate::partition::BLOCK_BITS && rows > per_range << bits {
        bits += 1;
    }
    let mut file = match table {
        Table::Pools => TableFile::pools(store)?,
        Table::History => TableFile::history(store)?,
    };
    let schema = file.schema();
    let ranges: Vec<usize> = (0..1usize << bits).collect();
    for window in ranges.chunks(at_once) {
        let merged: Vec<Option<RecordBatch>> = window
            .par_iter()
            .map(|&range| {
                let in_range = crate::partition::keys_of(range, bits);
                match table {
                    Table::Pools => merge_pools(store, pieces, in_range, first_year, &schema),
                    Table::History => merge_history(store, pieces, in_range, first_year, &schema),
                }
            })
            .collect::<Result<_>>()?;
        for batch in merged.into_iter().flatten() {
            write_as(&mut file, &batch, year_values(&batch))?;
        }
    }
    let (mut piece, committed) = file.close()?;
    piece.runs = pieces.iter().map(|p| p.runs).sum();
    piece.retained = table == Table::History;
    committed.commit()?;
    crate::output::parquet::sync_dir(&store.dir)?;
    Ok(piece)
}

/// Files of a tier merged by a nightly run: when the newest `TIER` files of a per-person table
/// each merge as many runs, they are merged into one. A night thus reads at most about
/// `3 · log4(nights)` files of each, and each row is written again about `log4(nights)` times.
pub const TIER: usize = 4;

/// The per-person files of a version after a nightly run merged its full tiers.
#[derive(Debug, Default)]
pub struct Tiers {
    /// The tables' new file lists, for the tables with a tier merged.
    pub pools: Option<Vec<Piece>>,
    pub history: Option<Vec<Piece>>,
    /// The files the merges wrote that the lists name.
    pub merged: Vec<Piece>,
}

impl Tiers {
    pub fn files(&self) -> impl Iterator<Item = &Piece> {
        self.merged.iter()
    }

    /// `next` (the manifest read, with whatever else the run changes) with the merged files
    /// in place of theirs.
    pub fn apply(self, next: &mut Manifest) {
        if let Some(pools) = self.pools {
            next.pools = pools;
        }
        if let Some(history) = self.history {
            next.history = history;
        }
    }
}

/// Merges the full tiers of each per-person table of `store`'s version: the newest `TIER`
/// files when they merge as many runs each, then again while the merge completes a tier of
/// the next size (a file merged on the way and merged again is removed at once).
pub fn merge_tiers(store: &Store) -> Result<Tiers> {
    let m = &store.manifest;
    let merge = |table, pieces: &[Piece]| -> Result<Option<(Vec<Piece>, Vec<Piece>)>> {
        let mut list = pieces.to_vec();
        let mut written: Vec<Piece> = Vec::new();
        while let Some(range) = tier_to_merge(&list) {
            let piece = merge_pieces(store, table, &list[range.clone()])?;
            for gone in list.splice(range, [piece.clone()]) {
                if let Some(at) = written.iter().position(|w| w.file == gone.file) {
                    let path = store.path(&written.remove(at).file);
                    std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                }
            }
            written.push(piece);
        }
        Ok((!written.is_empty()).then_some((list, written)))
    };
    let (pools, history) = rayon::join(
        || merge(Table::Pools, &m.pools),
        || merge(Table::History, &m.history),
    );
    let mut tiers = Tiers::default();
    if let Some((list, written)) = pools? {
        tiers.pools = Some(list);
        tiers.merged.extend(written);
    }
    if let Some((list, written)) = history? {
        tiers.history = Some(list);
        tiers.merged.extend(written);
    }
    Ok(tiers)
}

/// The newest files of `pieces` a nightly run merges, if they make a full tier.
pub fn tier_to_merge(pieces: &[Piece]) -> Option<std::ops::Range<usize>> {
    let n = pieces.len();
    let tier = pieces.get(n.checked_sub(TIER)?..)?;
    tier.iter()
        .all(|p| p.runs == tier[0].runs)
        .then_some(n - TIER..n)
}

/// The pools rows of the persons `in_range` from the newest file holding each, of the years
/// held, in person-key order.
fn merge_pools(
    store: &Store,
    pieces: &[Piece],
    in_range: std::ops::RangeInclusive<u64>,
    first_year: i32,
    schema: &SchemaRef,
) -> Result<Option<RecordBatch>> {
    let columns = column_names(schema);
    // Oldest piece first, each in its own order.
    let mut batches: Vec<(usize, RecordBatch)> = Vec::new();
    for (n, piece) in pieces.iter().enumerate() {
        for batch in
            super::read::read_selected(&store.path(&piece.file), in_range.clone(), &columns)?
        {
            batches.push((n, batch));
        }
    }
    if batches.is_empty() {
        return Ok(None);
    }
    let int64 = |b: &RecordBatch, name: &str| column(b, name).as_primitive::<Int64Type>().clone();
    let keys: Vec<Int64Array> = batches
        .iter()
        .map(|(_, b)| int64(b, "person_key"))
        .collect();
    let checks: Vec<Int64Array> = batches
        .iter()
        .map(|(_, b)| int64(b, "person_check"))
        .collect();
    let ids: Vec<_> = batches
        .iter()
        .map(|(_, b)| column(b, "person_id").clone())
        .collect();
    let years: Vec<_> = batches
        .iter()
        .map(|(_, b)| column(b, "year").as_primitive::<Int32Type>().clone())
        .collect();
    // Every row in person-key order (keys in their unsigned order, as every pools file holds
    // them), a key's rows in piece order and each piece's in its own: sorted by key, batch and
    // row (a stable sort, which merges the pieces' sorted runs).
    let mut sorted: Vec<(u64, u32, u32)> = keys
        .iter()
        .enumerate()
        .flat_map(|(b, k)| {
            let keys = k.values().iter().enumerate();
            keys.map(move |(r, &key)| (key as u64, b as u32, r as u32))
        })
        .collect();
    sorted.sort();
    // A person is its key and check (the first bytes of its id's hash): of the rows under one
    // key, each person's come from the newest piece holding it.
    let check = |(b, r): (usize, usize)| {
        (checks[b].is_valid(r) && ids[b].is_valid(r)).then(|| checks[b].value(r))
    };
    let mut kept: Vec<(usize, usize)> = Vec::with_capacity(sorted.len());
    // Each person under the key with its newest piece: that of its last row.
    let mut holders: Vec<(Option<i64>, usize)> = Vec::new();
    for under_key in sorted.chunk_by(|x, y| x.0 == y.0) {
        let rows = under_key.iter().map(|&(_, b, r)| (b as usize, r as usize));
        holders.clear();
        for row in rows.clone().rev() {
            let person = check(row);
            if !holders.iter().any(|&(p, _)| p == person) {
                holders.push((person, batches[row.0].0));
            }
        }
        for (b, r) in rows {
            let person = check((b, r));
            // A row with no year marks a person settled with no pool: kept.
            if person.is_some()
                && holders.contains(&(person, batches[b].0))
                && (years[b].is_null(r) || years[b].value(r) >= first_year)
            {
                kept.push((b, r));
            }
        }
    }
    drop(sorted);
    if kept.is_empty() {
        return Ok(None);
    }
    let refs: Vec<&RecordBatch> = batches.iter().map(|(_, b)| b).collect();
    let sorted = arrow::compute::interleave_record_batch(&refs, &kept)
        .map_err(|e| Error::arrow("state compaction", e))?;
    Ok(Some(sorted))
}

fn string_column<'b>(batch: &'b RecordBatch, name: &str) -> &'b arrow::array::StringArray {
    batch
        .column_by_name(name)
        .expect("projected")
        .as_string::<i32>()
}

/// The history rows of the persons `in_range` that the rules still reach: every file's rows of
/// each person in settlement order, refunds marking their originals reversed (the refunds
/// themselves dropped), then [`super::retained`].
fn merge_history(
    store: &Store,
    pieces: &[Piece],
    in_range: std::ops::RangeInclusive<u64>,
    first_year: i32,
    schema: &SchemaRef,
) -> Result<Option<RecordBatch>> {
    let columns = column_names(schema);
    let mut batches = Vec::new();
    for piece in pieces {
        let path = store.path(&piece.file);
        for batch in super::read::read_selected(&path, in_range.clone(), &columns)? {
            // As the file's own schema: dictionary columns are read back as such.
            batches.push(
                RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                    .map_err(|e| Error::arrow("state compaction", e))?,
            );
        }
    }
    let batch = arrow::compute::concat_batches(schema, &batches)
        .map_err(|e| Error::arrow("state compaction", e))?;
    drop(batches);
    let n = batch.num_rows();
    if n == 0 {
        return Ok(None);
    }
    let path = store.dir.as_path();
    let ids = string_column(&batch, "person_id");
    let claim_ids = string_column(&batch, "claim_id");
    let drugs = string_column(&batch, "drug_code");
    let person_keys = column(&batch, "person_key").as_primitive::<Int64Type>();
    let claim_keys = column(&batch, "claim_key").as_primitive::<Int64Type>();
    let reverses = column(&batch, "reverses_key").as_primitive::<Int64Type>();
    let settled_at = column(&batch, "settled_at").as_primitive::<TimestampMillisecondType>();
    let service = column(&batch, "service_date").as_primitive::<Date32Type>();
    let supply = column(&batch, "days_supply").as_primitive::<Int32Type>();
    let reversed = column(&batch, "reversed").as_boolean();
    let status = super::read::names(path, &batch, "status", super::read::status)?;
    let visit = super::read::names(path, &batch, "visit_type", super::read::visit)?;
    // Drugs as codes of one list, so that retention compares integers.
    let mut drug_codes: FastMap<&str, u32> = FastMap::default();
    let mut claims: Vec<EarlierClaim> = Vec::with_capacity(n);
    for i in 0..n {
        let drug = if drugs.is_valid(i) {
            let next = drug_codes.len() as u32;
            *drug_codes.entry(drugs.value(i)).or_insert(next)
        } else {
            NO_CODE
        };
        claims.push(EarlierClaim {
            settled_at: settled_at.value(i),
            total_fen: 0,
            service_day: service.value(i),
            institution: NO_CODE,
            drug,
            medical_community: NO_CODE,
            days_supply: super::read::days_supply(path, supply, i)?,
            status: status.get(i)?.unwrap_or(Status::Rejected),
            visit: visit.get(i)?.unwrap_or(VisitType::Outpatient),
            reversed: reversed.is_valid(i) && reversed.value(i),
        });
    }
    // Rows in person order (keys in their unsigned order, as every state file holds them, then
    // ids), each person's in settlement order (time, then claim id), ties in row order: sorted
    // by key, time and row first (a stable sort, which merges the pieces' runs in that order);
    // a key's rows are sorted again by the whole order only where
    // two persons share the key or two of its rows the time.
    let person = |i: usize| {
        let key = person_keys.value(i) as u64;
        (key, ids.is_valid(i).then(|| ids.value(i)))
    };
    let whole_order = |&a: &u32, &b: &u32| {
        let (a, b) = (a as usize, b as usize);
        (person(a), settled_at.value(a), claim_ids.value(a), a).cmp(&(
            person(b),
            settled_at.value(b),
            claim_ids.value(b),
            b,
        ))
    };
    let mut by_time: Vec<(u64, i64, u32)> = (0..n)
        .map(|i| (person_keys.value(i) as u64, settled_at.value(i), i as u32))
        .collect();
    by_time.sort();
    let mut order: Vec<u32> = Vec::with_capacity(n);
    for under_key in by_time.chunk_by(|x, y| x.0 == y.0) {
        let start = order.len();
        order.extend(under_key.iter().map(|&(_, _, i)| i));
        let first = person(under_key[0].2 as usize);
        let again = under_key.windows(2).any(|w| w[0].1 == w[1].1)
            || under_key.iter().any(|r| person(r.2 as usize) != first);
        if again {
            order[start..].sort_unstable_by(whole_order);
        }
    }
    drop(by_time);
    // Merging every file: a refund whose original is not here has nothing left to cancel.
    let whole = pieces.len() == store.manifest.history.len();
    // Per person: positions (in `rows`) of refunds whose original is not here, and the rows
    // by claim key, built at the person's first refund.
    let mut unmatched: Vec<usize> = Vec::new();
    let mut by_key: Vec<(i64, u32)> = Vec::new();
    let mut kept: Vec<u32> = Vec::new();
    let mut group: Vec<EarlierClaim> = Vec::new();
    let mut keep = Vec::new();
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && person(order[end] as usize) == person(order[start] as usize) {
            end += 1;
        }
        let rows = &order[start..end];
        // Refunds whose original is among the rows: applied, then dropped. Others are kept
        // for the older files that hold their originals.
        unmatched.clear();
        by_key.clear();
        for (at, &r) in rows.iter().enumerate() {
            let refund = claims[r as usize].status == Status::Reversal;
            if !refund || !reverses.is_valid(r as usize) {
                continue;
            }
            if by_key.is_empty() {
                by_key.extend(rows.iter().map(|&o| (claim_keys.value(o as usize), o)));
                by_key.sort_unstable();
            }
            let target = reverses.value(r as usize);
            let from = by_key.partition_point(|&(key, _)| key < target);
            let originals = by_key[from..].iter().take_while(|&&(key, _)| key == target);
            let mut found = false;
            for &(_, o) in originals {
                claims[o as usize].reversed = true;
                found = true;
            }
            if !found && !whole {
                unmatched.push(at);
            }
        }
        group.clear();
        group.extend(rows.iter().map(|&r| claims[r as usize]));
        super::retained(&group, first_year, &mut keep);
        for &at in &unmatched {
            keep[at] = true;
        }
        kept.extend(rows.iter().zip(&keep).filter(|(_, &k)| k).map(|(&r, _)| r));
        start = end;
    }
    let indices = arrow::array::UInt32Array::from(kept);
    let mut columns = arrow::compute::take_record_batch(&batch, &indices)
        .map_err(|e| Error::arrow("state compaction", e))?
        .columns()
        .to_vec();
    let at = schema.index_of("reversed").expect("history has reversed");
    columns[at] = std::sync::Arc::new(BooleanArray::from_iter(
        indices
            .values()
            .iter()
            .map(|&r| Some(claims[r as usize].reversed)),
    ));
    let kept = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::arrow("state compaction", e))?;
    Ok(Some(kept))
}

/// Claim index rows merged at once: a range of keys holding about this many of every file's,
/// read, put in order and written. Compacting the 30-night bench state (9.7 M index rows) took
/// 12.5 s and 1.34 GiB peak at 256 Ki rows, 14.3 s and 1.52 GiB at 1 Mi, 20.3 s and 1.11 GiB
/// at 64 Ki (when every range opened every file again, and freed memory was kept).
const INDEX_ROWS_PER_RANGE: u64 = 1 << 18;

/// The most claim index rows merged at once, however many row groups they come from: the 100M
/// month's state, whose index one run wrote in 1,536 row groups of claims, compacted in 286 s
/// at 1.76 GiB in ranges of 1.5 Mi rows, against 472 s at 0.79 GiB in ranges of 256 Ki (one
/// run each).
const MAX_INDEX_ROWS_PER_RANGE: u64 = 1 << 21;

/// Index files a merge holds open from its first range to its last; any more are opened again
/// for each range. A state whose nights have not been compacted holds an index file a night,
/// and a process may hold only so many files open (1,024 by default on Linux).
const OPEN_INDEX_FILES: usize = 256;

/// An index file a merge reads a range at a time: held open, or opened for each range.
enum MergeInput<'a> {
    Open(IndexFile<'a>),
    Closed(&'a std::path::Path),
}

impl MergeInput<'_> {
    fn read_range(
        &self,
        key: &'static str,
        keys: std::ops::RangeInclusive<u64>,
        columns: &[&str],
    ) -> Result<Vec<RecordBatch>> {
        match self {
            MergeInput::Open(file) => file.read_range(key, keys, columns),
            MergeInput::Closed(path) => IndexFile::open(path)?.read_range(key, keys, columns),
        }
    }
}

/// Merges the claim index files, rows of the years held, into one ordered run of claims by
/// `claim_key` and one of accepted refunds by `reverses_key`
/// ([`super::tables::ROW_GROUP_ORDER`]), a range of keys at a time: a night then searches one
/// run for its keys, at a cost that does not grow with the index.
fn merge_claims(store: &Store) -> Result<Piece> {
    // A range reads a page of every row group of claims, whole: with many row groups (a state
    // a run of many partitions wrote holds one a partition) a range of INDEX_ROWS_PER_RANGE
    // keys takes a few rows of each page it decodes.
    let rows_per_range = |groups: u64| {
        (groups * super::tables::INDEX_PAGE_ROWS as u64)
            .clamp(INDEX_ROWS_PER_RANGE, MAX_INDEX_ROWS_PER_RANGE)
    };
    merge_claims_by(store, rows_per_range, OPEN_INDEX_FILES)
}

/// [`merge_claims`], a range of about `rows_per_range(row groups of claims)` keys at a time,
/// holding the first `open_files` files open throughout.
fn merge_claims_by(
    store: &Store,
    rows_per_range: impl Fn(u64) -> u64,
    open_files: usize,
) -> Result<Piece> {
    let m = &store.manifest;
    let first_year = m.first_year();
    let pieces: Vec<&Piece> = m
        .claims
        .iter()
        .filter(|p| p.max_year.is_some_and(|y| y >= first_year))
        .collect();
    let paths: Vec<std::path::PathBuf> = pieces.iter().map(|p| store.path(&p.file)).collect();
    let rows: u64 = pieces.iter().map(|p| p.rows).sum();
    let mut file = TableFile::index(store)?;
    let schema = file.schema();
    let columns = column_names(&schema);
    let inputs = paths
        .iter()
        .enumerate()
        .map(|(n, p)| match n < open_files {
            true => IndexFile::open(p).map(MergeInput::Open),
            false => Ok(MergeInput::Closed(p)),
        })
        .collect::<Result<Vec<_>>>()?;
    let mut groups = 0u64;
    for input in &inputs {
        groups += match input {
            MergeInput::Open(file) => file.claim_row_groups(),
            MergeInput::Closed(path) => IndexFile::open(path)?.claim_row_groups(),
        } as u64;
    }
    let ranges = key_ranges(rows.div_ceil(rows_per_range(groups).max(1)).max(1));
    for key in ["claim_key", "reverses_key"] {
        file.end_row_group("")?;
        for range in &ranges {
            // The files side by side: a night's file is a few row groups, too few to keep
            // both cores busy alone. Batches stay in file order.
            let read = inputs
                .par_iter()
                .map(|f| f.read_range(key, range.clone(), &columns))
                .collect::<Result<Vec<_>>>()?;
            let batches: Vec<RecordBatch> = read
                .into_iter()
                .flatten()
                .filter(|b| b.num_rows() > 0)
                .collect();
            let mut order: Vec<(u64, (u32, u32))> = Vec::new();
            for (b, batch) in batches.iter().enumerate() {
                let keys = batch
                    .column_by_name(key)
                    .expect("projected")
                    .as_primitive::<Int64Type>();
                let years = batch
                    .column_by_name("year")
                    .expect("projected")
                    .as_primitive::<Int32Type>();
                let held = || {
                    (0..batch.num_rows())
                        .filter(|&i| years.is_valid(i) && years.value(i) >= first_year)
                };
                file.note_years(held().map(|i| years.value(i)));
                order.extend(held().map(|i| (keys.value(i) as u64, (b as u32, i as u32))));
            }
            // Rows of one key stay in file order, older files first.
            order.par_sort_unstable();
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            super::tables::write_in_order(&mut file, &refs, order.iter().map(|&(_, at)| at))?;
        }
        file.end_row_group(key)?;
    }
    let (mut piece, committed) = file.close()?;
    piece.ordered = true;
    committed.commit()?;
    crate::output::parquet::sync_dir(&store.dir)?;
    Ok(piece)
}

/// The unsigned 64-bit keys cut into `n` ranges of equal width, ascending.
fn key_ranges(n: u64) -> Vec<std::ops::RangeInclusive<u64>> {
    let start = |i: u64| ((i as u128) << 64).div_ceil(n as u128) as u64;
    (0..n)
        .map(|i| {
            start(i)..=if i + 1 == n {
                u64::MAX
            } else {
                start(i + 1) - 1
            }
        })
        .collect()
}

/// Every column of a table, by name.
fn column_names(schema: &SchemaRef) -> Vec<&str> {
    schema.fields().iter().map(|f| f.name().as_str()).collect()
}

fn year_values(batch: &RecordBatch) -> Vec<i32> {
    batch
        .column_by_name("year")
        .expect("projected")
        .as_primitive::<Int32Type>()
        .iter()
        .flatten()
        .collect()
}

/// Writes `batch` (read back with the file's own schema) as a row of `file`'s table.
fn write_as(file: &mut TableFile, batch: &RecordBatch, years: Vec<i32>) -> Result<()> {
    let schema: SchemaRef = file.schema();
    let batch = RecordBatch::try_new(schema, batch.columns().to_vec())
        .map_err(|e| Error::arrow("state compaction", e))?;
    file.write(batch, years.into_iter())
}

/// Removes every version but the newest `keep`, then the files no remaining version names.
fn drop_versions(store: &Store, keep: usize) -> Result<Vec<u64>> {
    let all = versions(&store.dir)?;
    let cut = all.len().saturating_sub(keep);
    let (old, kept) = all.split_at(cut);
    // Manifests first, oldest first: a run killed here leaves readable versions and files
    // that the next opener removes.
    for &v in old {
        let path = store.dir.join(super::store::manifest_name(v));
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    }
    crate::output::parquet::sync_dir(&store.dir)?;
    store.remove_unnamed(kept)?;
    Ok(old.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int32Array, StringArray};
    use arrow::datatypes::Int16Type;
    use std::sync::Arc;

    /// A pools file of `(person id, person key, person check, fund paid)` rows, one pool each.
    fn pools_file(store: &Store, rows: &[(&str, i64, i64, i64)]) -> Piece {
        let n = rows.len();
        let pool: DictionaryArray<Int16Type> = rows.iter().map(|_| "employee:general").collect();
        let batch = RecordBatch::try_new(
            crate::state::tables::pools_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(Int32Array::from(vec![2024; n])),
                Arc::new(pool),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
                Arc::new(Int64Array::from(vec![0; n])),
                Arc::new(Int64Array::from(vec![0; n])),
                Arc::new(Int32Array::from(vec![1; n])),
            ],
        )
        .unwrap();
        let mut file = TableFile::pools(store).unwrap();
        file.write(batch, std::iter::once(2024)).unwrap();
        let (piece, committed) = file.close().unwrap();
        committed.commit().unwrap();
        piece
    }

    #[test]
    fn a_merge_keeps_each_persons_pools_from_the_newest_file_holding_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        // A and B share key 7 (a collision), told apart by their checks; C has a key of its own
        // above 2^63, where keys are ordered unsigned.
        let c = -5;
        let older = pools_file(
            &store,
            &[("A", 7, 1, 100), ("B", 7, 2, 200), ("C", c, 3, 300)],
        );
        let newer = pools_file(&store, &[("A", 7, 1, 150), ("C", c, 3, 350)]);
        let merged = merge_pieces(&store, Table::Pools, &[older, newer]).unwrap();
        let rows: Vec<(String, i64)> = super::super::read::read_selected(
            &store.path(&merged.file),
            0..=u64::MAX,
            &["person_id", "fund_paid_fen"],
        )
        .unwrap()
        .iter()
        .flat_map(|b| {
            let ids = b.column(0).as_string::<i32>().clone();
            let fund = b.column(1).as_primitive::<Int64Type>().clone();
            (0..b.num_rows()).map(move |i| (ids.value(i).to_string(), fund.value(i)))
        })
        .collect();
        // Key 7's rows in file order (B's from the older file, A's from the newer), then C's.
        let expected = [("B", 200), ("A", 150), ("C", 350)].map(|(p, f)| (p.to_string(), f));
        assert_eq!(rows, expected);
        assert_eq!((merged.rows, merged.runs), (3, 2));
    }

    fn pieces(runs: &[u32]) -> Vec<Piece> {
        runs.iter()
            .enumerate()
            .map(|(i, &runs)| Piece {
                file: format!("f{i}"),
                rows: 1,
                bytes: 1,
                min_year: Some(2024),
                max_year: Some(2024),
                runs,
                retained: false,
                ordered: false,
            })
            .collect()
    }

    /// Three runs' claim index files of 1,500 claims each (every tenth of a later run a refund
    /// of a claim, not a refund, of the run before), as one version's index.
    fn three_index_files(store: &mut Store) {
        use crate::state::tables::{tests::written_claim, tests::written_texts, StateWriter};
        use crate::state::Changes;
        let policies = crate::policy::Policies::default();
        let ids: Vec<Vec<String>> = (0..3)
            .map(|run| (0..1500).map(|i| format!("C{run}-{i}")).collect())
            .collect();
        let mut pieces = Vec::new();
        for run in 0..3 {
            let claims: Vec<_> = (0..1500)
                .map(|i| {
                    let refund = run > 0 && i % 10 == 0;
                    let original = refund.then(|| ids[run - 1][i + 1].as_str());
                    written_claim("P", &ids[run][i], original)
                })
                .collect();
            let changes = Changes {
                pools: Vec::new(),
                history: vec![false; claims.len()],
                claims,
            };
            let mut writer = StateWriter::create(store, &policies).unwrap();
            writer.append_index(&[changes], &written_texts()).unwrap();
            let (_, _, claims) = writer.close().unwrap().place(store).unwrap();
            pieces.push(claims);
        }
        store.manifest.claims = pieces;
    }

    #[test]
    fn the_claim_index_merged_a_range_of_keys_at_a_time_is_the_index_merged_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("state")).unwrap();
        three_index_files(&mut store);
        let whole = merge_claims_by(&store, |_| u64::MAX, 3).unwrap();
        // About 45 ranges of 100 keys, every file holding rows of every range; the first file
        // held open throughout, the others opened for each range.
        let cut = merge_claims_by(&store, |_| 100, 1).unwrap();
        assert_eq!(whole.rows, 4500);
        assert_eq!(cut.rows, 4500);
        let bytes = |p: &Piece| std::fs::read(store.path(&p.file)).unwrap();
        assert!(bytes(&whole) == bytes(&cut), "the merges' files differ");
        // One ordered run: the claims by claim key, then the refunds by the key they cancel.
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(store.path(&cut.file)).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        let (mut claims, mut refunds) = (Vec::new(), Vec::new());
        for batch in reader {
            let batch = batch.unwrap();
            let key = |name| {
                batch
                    .column_by_name(name)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .clone()
            };
            let (claim, target) = (key("claim_key"), key("reverses_key"));
            for i in 0..batch.num_rows() {
                match target.is_valid(i) {
                    true => refunds.push(target.value(i) as u64),
                    false => claims.push(claim.value(i) as u64),
                }
            }
        }
        assert_eq!((claims.len(), refunds.len()), (4200, 300));
        assert!(claims.is_sorted() && refunds.is_sorted());
        assert!(refunds.iter().all(|k| claims.binary_search(k).is_ok()));
    }

    #[test]
    fn key_ranges_cut_every_key_once_in_ascending_ranges() {
        assert_eq!(key_ranges(1), [0..=u64::MAX]);
        for n in [2, 3, 7, 38] {
            let ranges = key_ranges(n);
            assert_eq!(ranges.len() as u64, n);
            assert_eq!(*ranges[0].start(), 0);
            assert_eq!(*ranges[n as usize - 1].end(), u64::MAX);
            for w in ranges.windows(2) {
                assert!(w[0].start() <= w[0].end());
                assert_eq!(*w[0].end() + 1, *w[1].start(), "{n} ranges");
            }
        }
        assert_eq!(key_ranges(2)[1], (1 << 63)..=u64::MAX);
    }

    #[test]
    fn a_tier_is_the_newest_four_files_of_as_many_runs() {
        assert_eq!(tier_to_merge(&pieces(&[1, 1, 1])), None);
        assert_eq!(tier_to_merge(&pieces(&[1, 1, 1, 1])), Some(0..4));
        assert_eq!(tier_to_merge(&pieces(&[16, 4, 1, 1, 1, 1])), Some(2..6));
        assert_eq!(tier_to_merge(&pieces(&[4, 4, 4, 1])), None);
        assert_eq!(tier_to_merge(&pieces(&[16, 4, 4, 4, 4])), Some(1..5));
    }
}
