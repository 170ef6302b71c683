//! Output: `settlements.parquet`, `rejected.parquet`, `ledger.parquet` and `summary.json` in
//! `--out`. Every file is written under a temporary name and renamed only once all of them are
//! complete: outputs appear whole or not at all.

pub mod anomalies;
pub mod parquet;
pub mod rejected;
pub mod settlements;
pub mod summary;

use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;

use crate::audit::Audited;
use crate::domain::{Reason, Status};
use crate::error::{Error, Result};
use crate::ingest::claims::{Claims, NO_CODE};
use crate::ingest::registry::Registry;
use crate::ledger::{ClaimRecord, Ledger, LedgerWriter};
use crate::partition::Partitions;
use crate::policy::Policies;
use crate::settle::{Outcome, Settled};
use parquet::{PendingFile, ROW_GROUP_ROWS};

/// Marks a row that was never partitioned (rejected at ingest).
const NOT_SETTLED: u32 = u32::MAX;

/// Read-only view of a finished run, for the writers.
pub struct RunView<'a> {
    pub policies: &'a Policies,
    pub registry: &'a Registry,
    pub claims: &'a Claims,
    pub ledger: &'a Ledger,
    pub partitions: &'a Partitions,
    pub settled: &'a Settled,
    pub audited: &'a Audited,
    /// Global row → position in `partitions.order`.
    position: Vec<u32>,
}

impl<'a> RunView<'a> {
    pub fn new(
        policies: &'a Policies,
        registry: &'a Registry,
        claims: &'a Claims,
        ledger: &'a Ledger,
        partitions: &'a Partitions,
        settled: &'a Settled,
        audited: &'a Audited,
    ) -> RunView<'a> {
        let mut position = vec![NOT_SETTLED; claims.len()];
        for (pos, &row) in partitions.order.iter().enumerate() {
            position[row as usize] = pos as u32;
        }
        RunView {
            policies,
            registry,
            claims,
            ledger,
            partitions,
            settled,
            audited,
            position,
        }
    }

    /// The audit flags of global row `row` (none for rows rejected at ingest).
    pub fn flags(&self, row: usize) -> u16 {
        match self.position[row] {
            NOT_SETTLED => 0,
            pos => self.audited.flags[pos as usize],
        }
    }

    /// The settlement of global row `row`.
    pub fn outcome(&self, row: usize) -> Outcome {
        match self.position[row] {
            NOT_SETTLED => Outcome::unsettled(
                Status::Rejected,
                self.claims.rejected[row].unwrap_or(Reason::NullKey),
            ),
            pos => self.settled.outcomes[pos as usize],
        }
    }
}

/// Row counts of what was written, for the summary.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Written {
    pub settlements: u64,
    pub rejected: u64,
    pub ledger: u64,
    pub anomalies: u64,
    /// Wall seconds spent building and writing each file: where the output stage goes.
    pub seconds: FileSeconds,
}

/// Wall seconds per output file.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FileSeconds {
    pub settlements: f64,
    pub rejected: f64,
    pub anomalies: f64,
    pub ledger: f64,
}

/// Writes the three Parquet outputs to temporary files and returns them with their counts; the
/// caller commits them after `summary.json` is ready.
pub fn write_parquet(view: &RunView, out: &Path) -> Result<(Written, Vec<parquet::Committed>)> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut written = Written::default();
    let mut pending = Vec::new();
    let mut lap = std::time::Instant::now();
    let mut took = |slot: &mut f64| {
        *slot = lap.elapsed().as_secs_f64();
        lap = std::time::Instant::now();
    };

    // Settlement batches are built in parallel, a window at a time to bound memory, and written
    // in input order.
    let schema = settlements::schema();
    let mut file = PendingFile::create(&out.join("settlements.parquet"), schema.clone())?;
    let window = rayon::current_num_threads().max(1) * 2;
    for start in (0..view.claims.batches.len()).step_by(window) {
        let end = (start + window).min(view.claims.batches.len());
        let batches: Vec<_> = (start..end)
            .into_par_iter()
            .map(|b| settlements::batch(view, b, &schema))
            .collect::<Result<_>>()?;
        for batch in &batches {
            file.write(batch)?;
        }
    }
    written.settlements = file.rows;
    pending.push(file.close()?);
    took(&mut written.seconds.settlements);

    let rows = rejected::rows(view);
    let mut file = PendingFile::create(&out.join("rejected.parquet"), rejected::schema())?;
    for chunk in rows.chunks(ROW_GROUP_ROWS) {
        file.write(&rejected::batch(view, chunk)?)?;
    }
    written.rejected = file.rows;
    pending.push(file.close()?);
    took(&mut written.seconds.rejected);

    let mut file = PendingFile::create(&out.join("anomalies.parquet"), anomalies::schema())?;
    for chunk in view.audited.anomalies.chunks(ROW_GROUP_ROWS) {
        file.write(&anomalies::batch(view, chunk)?)?;
    }
    written.anomalies = file.rows;
    pending.push(file.close()?);
    took(&mut written.seconds.anomalies);

    let mut file = PendingFile::create(
        &out.join("ledger.parquet"),
        Arc::new(crate::ledger::schema()),
    )?;
    write_ledger(view, &mut file)?;
    written.ledger = file.rows;
    pending.push(file.close()?);
    took(&mut written.seconds.ledger);
    Ok((written, pending))
}

/// Persons per ledger batch: batches are built in parallel and written in person order.
const LEDGER_PERSONS_PER_BATCH: usize = 64 * 1024;

/// The ledger after this run: for each person (dense id order), the pool states, then the
/// claims of earlier runs (with this run's reversals marked), then this run's claims (all that
/// passed ingest).
fn write_ledger(view: &RunView, file: &mut PendingFile) -> Result<()> {
    let mut reversed_ledger = vec![false; view.ledger.claims.len()];
    for &i in &view.settled.reversed_ledger {
        reversed_ledger[i] = true;
    }
    let persons = view.partitions.persons();
    let ranges: Vec<(usize, usize)> = (0..persons)
        .step_by(LEDGER_PERSONS_PER_BATCH)
        .map(|a| (a, (a + LEDGER_PERSONS_PER_BATCH).min(persons)))
        .collect();
    let window = rayon::current_num_threads().max(1) * 2;
    for group in ranges.chunks(window) {
        let batches: Vec<_> = group
            .par_iter()
            .map(|&(a, b)| ledger_batch(view, a, b, &reversed_ledger))
            .collect::<Result<_>>()?;
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            file.write(batch)?;
        }
    }
    Ok(())
}

/// An interned value as the ledger keeps it.
fn code(values: &[String], code: u32) -> Option<Box<str>> {
    (code != NO_CODE).then(|| values[code as usize].as_str().into())
}

/// The ledger rows of persons `a..b`.
fn ledger_batch(
    view: &RunView,
    a: usize,
    b: usize,
    reversed_ledger: &[bool],
) -> Result<arrow::array::RecordBatch> {
    let (policies, claims, ledger) = (view.policies, view.claims, view.ledger);
    let all_pools = &view.settled.pools;
    let from = all_pools.partition_point(|(q, _)| (*q as usize) < a);
    let mut pools = all_pools[from..].iter().peekable();
    let mut writer = LedgerWriter::default();
    for p in a..b {
        let person_id = view.registry.index.id(p as u32);
        let rows = view.partitions.rows_of(p);
        if rows.is_empty() {
            for s in ledger.pools_of(p as u32) {
                writer.push_pool(person_id, s, policies);
            }
        }
        while let Some((_, s)) = pools.next_if(|(q, _)| *q as usize == p) {
            writer.push_pool(person_id, s, policies);
        }
        let (start, records) = ledger.claims_of(p as u32);
        for (i, r) in records.iter().enumerate() {
            if reversed_ledger[start + i] {
                let mut r = r.clone();
                r.reversed = true;
                writer.push_claim(person_id, &r, policies);
            } else {
                writer.push_claim(person_id, r, policies);
            }
        }
        let base = view.partitions.offsets[p] as usize;
        for (k, &row) in rows.iter().enumerate() {
            // Rows rejected in settlement (a reversal without a valid original) stay in the
            // ledger as `rejected`: their ids still count as seen, as in a single run.
            let o = &view.settled.outcomes[base + k];
            let row = row as usize;
            let record = ClaimRecord {
                claim_id: claims.claim_id(row).unwrap_or_default().into(),
                settled_at: claims.settled_at[row],
                service_day: claims.service_day[row],
                status: o.status,
                version: o.version,
                label: o.label,
                pool: o.pool,
                ratio_bp: o.ratio_bp,
                total_fen: claims.total_fen[row],
                in_scope_fen: claims.in_scope_fen[row],
                eligible_fen: o.eligible_fen,
                deductible_fen: o.deductible_fen,
                fund_fen: o.fund_fen,
                copay_fen: o.copay_fen,
                over_cap_fen: o.over_cap_fen,
                assisted: o.assisted,
                reversed: o.reversed,
                visit: claims.visit[row],
                medical_community: code(&claims.medical_communities, claims.medical_community[row]),
                layers: o.layers,
                institution_id: code(&claims.institutions, claims.institution[row]),
                drug_code: code(&claims.drugs, claims.drug[row]),
                days_supply: claims.days_supply[row],
            };
            writer.push_claim(person_id, &record, policies);
        }
    }
    writer.finish()
}
