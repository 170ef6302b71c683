//! `yibao state compact`: merges a state's appended files into one of each table and drops old
//! versions.
//!
//! Each nightly run adds a pools, a history and a claims file; a person's rows in older pools
//! and history files are superseded by the newest file holding the person. Compaction keeps only
//! the rows that still count (the holder's rows, of the years held) and writes them as one new
//! version, so later runs read one file per table. It works on the rows as stored, a range of
//! person keys at a time (bounded memory), and needs no policies. Versions older than the newest
//! `keep` are then removed with the files only they named.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{Int32Type, SchemaRef};

use super::store::{read_manifest, versions, Manifest, Piece, Store};
use super::tables::{self, TableFile};
use crate::error::{Error, Result};
use crate::partition::part_of;

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

/// Rows of the per-person tables merged at once: a range of person keys holding about this many.
const ROWS_PER_RANGE: u64 = 4 << 20;

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
    let merge = m.pools.len() > 1 || m.claims.len() > 1 || stale_years(m);
    let version = if merge {
        let (pools, history) = merge_people(&store)?;
        let claims = merge_claims(&store)?;
        let mut next = m.clone();
        next.pools = vec![pools];
        next.history = vec![history];
        next.claims = vec![claims];
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

/// Whether some file holds years the state no longer keeps.
fn stale_years(m: &Manifest) -> bool {
    let first = m.first_year();
    m.files().any(|p| p.min_year.is_some_and(|y| y < first))
}

/// Merges the pools and history files: for each range of person keys, each person's rows from
/// the newest pair holding it, of the years held.
fn merge_people(store: &Store) -> Result<(Piece, Piece)> {
    let m = &store.manifest;
    let first_year = m.first_year();
    let rows: u64 = m.pools.iter().chain(&m.history).map(|p| p.rows).sum();
    let mut bits = 0;
    while bits < crate::partition::BLOCK_BITS && rows > ROWS_PER_RANGE << bits {
        bits += 1;
    }
    let mut pools = TableFile::create(store, "pools", tables::pools_schema())?;
    let mut history = TableFile::create(store, "history", tables::history_schema())?;
    for range in 0..1usize << bits {
        let in_range = |key: u64| part_of(key, bits) == range;
        // The newest pair holding each person of the range.
        let mut holder: HashMap<String, usize> = HashMap::new();
        for (n, piece) in m.pools.iter().enumerate() {
            for ids in
                super::read::read_selected(&store.path(&piece.file), in_range, &["person_id"])?
            {
                let ids = ids.column(0).as_string::<i32>();
                for id in ids.iter().flatten() {
                    holder.insert(id.to_string(), n);
                }
            }
        }
        for (pieces, file) in [(&m.pools, &mut pools), (&m.history, &mut history)] {
            let schema = file.schema();
            let columns = column_names(&schema);
            for (n, piece) in pieces.iter().enumerate() {
                let path = store.path(&piece.file);
                for batch in super::read::read_selected(&path, in_range, &columns)? {
                    let ids = batch
                        .column_by_name("person_id")
                        .expect("projected")
                        .as_string::<i32>();
                    let year = batch
                        .column_by_name("year")
                        .expect("projected")
                        .as_primitive::<Int32Type>();
                    // A pools row with no year marks a person settled with no pool: kept.
                    let keep: BooleanArray = (0..batch.num_rows())
                        .map(|i| {
                            Some(
                                ids.is_valid(i)
                                    && holder.get(ids.value(i)) == Some(&n)
                                    && (year.is_null(i) || year.value(i) >= first_year),
                            )
                        })
                        .collect();
                    let kept = arrow::compute::filter_record_batch(&batch, &keep)
                        .map_err(|e| Error::arrow("state compaction", e))?;
                    write_as(file, &kept, year_values(&kept))?;
                }
            }
        }
    }
    let (pools, a) = pools.close()?;
    let (history, b) = history.close()?;
    for f in [a, b] {
        f.commit()?;
    }
    crate::output::parquet::sync_dir(&store.dir)?;
    Ok((pools, history))
}

/// Concatenates the claim index files, rows of the years held.
fn merge_claims(store: &Store) -> Result<Piece> {
    let m = &store.manifest;
    let first_year = m.first_year();
    let mut file = TableFile::create(store, "claims", tables::claims_schema())?;
    let schema = file.schema();
    let columns = column_names(&schema);
    for piece in m
        .claims
        .iter()
        .filter(|p| p.max_year.is_some_and(|y| y >= first_year))
    {
        let path = store.path(&piece.file);
        for batch in super::read::read_selected(&path, |_| true, &columns)? {
            let year = batch
                .column_by_name("year")
                .expect("projected")
                .as_primitive::<Int32Type>();
            let keep: BooleanArray = year
                .iter()
                .map(|y| Some(y.is_some_and(|y| y >= first_year)))
                .collect();
            let kept = arrow::compute::filter_record_batch(&batch, &keep)
                .map_err(|e| Error::arrow("state compaction", e))?;
            write_as(&mut file, &kept, year_values(&kept))?;
        }
    }
    let (piece, committed) = file.close()?;
    committed.commit()?;
    crate::output::parquet::sync_dir(&store.dir)?;
    Ok(piece)
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
