//! Output: `settlements.parquet`, `rejected.parquet`, `ledger.parquet` and `summary.json` in
//! `--out`. Every file is written under a temporary name and renamed only once all of them are
//! complete: outputs appear whole or not at all.

pub mod anomalies;
pub mod parquet;
pub mod rejected;
pub mod settlements;
pub mod summary;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use rayon::prelude::*;

use crate::audit::Audited;
use crate::domain::{Reason, Status, VisitType};
use crate::error::{Error, Result};
use crate::ingest::claims::{Claims, NO_CODE};
use crate::ingest::registry::Registry;
use crate::ledger::{ClaimRecord, Ledger, LedgerClaim, List, PoolState};
use crate::partition::Partitions;
use crate::policy::Policies;
use crate::settle::{Outcome, Settled};
use parquet::{FileSettings, PendingFile, ROW_GROUP_ROWS};

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
    let mut file = PendingFile::create_with(
        &out.join("settlements.parquet"),
        schema.clone(),
        &FileSettings::PER_CLAIM,
    )?;
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
    let mut file = PendingFile::create_with(
        &out.join("rejected.parquet"),
        rejected::schema(),
        &FileSettings::PER_CLAIM,
    )?;
    for chunk in rows.chunks(ROW_GROUP_ROWS) {
        file.write(&rejected::batch(view, chunk)?)?;
    }
    written.rejected = file.rows;
    pending.push(file.close()?);
    took(&mut written.seconds.rejected);

    let mut file = PendingFile::create_with(
        &out.join("anomalies.parquet"),
        anomalies::schema(),
        &FileSettings::PER_CLAIM,
    )?;
    for chunk in view.audited.anomalies.chunks(ROW_GROUP_ROWS) {
        file.write(&anomalies::batch(view, chunk)?)?;
    }
    written.anomalies = file.rows;
    pending.push(file.close()?);
    took(&mut written.seconds.anomalies);

    let mut file = PendingFile::create_with(
        &out.join("ledger.parquet"),
        Arc::new(crate::ledger::schema()),
        &FileSettings::PER_CLAIM,
    )?;
    write_ledger(view, &mut file)?;
    written.ledger = file.rows;
    pending.push(file.close()?);
    took(&mut written.seconds.ledger);
    Ok((written, pending))
}

/// Persons per ledger batch: batches are built in parallel and written in person order.
const LEDGER_PERSONS_PER_BATCH: usize = 64 * 1024;

/// One of the ledger's text lists after this run: the previous ledger's entries (their codes
/// unchanged), then this run's new texts; `from_run` maps a run dictionary code to its entry.
struct MergedTexts<'a> {
    values: Vec<&'a str>,
    from_run: Vec<u32>,
}

impl<'a> MergedTexts<'a> {
    fn new(ledger: &'a [String], run: &'a [String]) -> MergedTexts<'a> {
        let mut values: Vec<&str> = ledger.iter().map(String::as_str).collect();
        let mut index: std::collections::HashMap<&str, u32> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (*v, i as u32))
            .collect();
        let from_run = run
            .iter()
            .map(|v| {
                *index.entry(v.as_str()).or_insert_with(|| {
                    values.push(v.as_str());
                    values.len() as u32 - 1
                })
            })
            .collect();
        MergedTexts { values, from_run }
    }

    fn code(&self, run_code: u32) -> u32 {
        match run_code {
            NO_CODE => NO_CODE,
            c => self.from_run[c as usize],
        }
    }
}

/// The texts of the ledger after this run.
struct LedgerTexts<'a> {
    institutions: MergedTexts<'a>,
    drugs: MergedTexts<'a>,
    medical_communities: MergedTexts<'a>,
}

/// The ledger after this run: its name lists, then for each person (dense id order) the pool
/// states, the claims of earlier runs (with this run's reversals marked), and this run's claims
/// (all that passed ingest).
fn write_ledger(view: &RunView, file: &mut PendingFile) -> Result<()> {
    let (claims, ledger, policies) = (view.claims, view.ledger, view.policies);
    let texts = LedgerTexts {
        institutions: MergedTexts::new(&ledger.institutions, &claims.institutions),
        drugs: MergedTexts::new(&ledger.drugs, &claims.drugs),
        medical_communities: MergedTexts::new(
            &ledger.medical_communities,
            &claims.medical_communities,
        ),
    };
    let persons = view.partitions.persons();
    let person_ids: Vec<&str> = (0..persons as u32)
        .map(|p| view.registry.index.id(p))
        .collect();
    let policy_ids: Vec<&str> = policies.versions.iter().map(|v| v.id.as_str()).collect();
    fn str_of(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let lists: [(List, Vec<&str>); 9] = [
        (List::Person, person_ids),
        (List::Pool, str_of(&policies.pools)),
        (List::Policy, policy_ids),
        (List::Benefit, str_of(&policies.labels)),
        (
            List::Status,
            Status::ALL.iter().map(|s| s.as_str()).collect(),
        ),
        (
            List::Visit,
            VisitType::ALL.iter().map(|v| v.as_str()).collect(),
        ),
        (List::Institution, texts.institutions.values.clone()),
        (List::Drug, texts.drugs.values.clone()),
        (
            List::MedicalCommunity,
            texts.medical_communities.values.clone(),
        ),
    ];
    let names: Vec<(List, &str)> = lists
        .iter()
        .flat_map(|(list, values)| values.iter().map(move |v| (*list, *v)))
        .collect();
    for chunk in names.chunks(ROW_GROUP_ROWS) {
        file.write(&crate::ledger::name_batch(chunk)?)?;
    }

    let mut reversed_ledger = vec![false; ledger.claims.len()];
    for &i in &view.settled.reversed_ledger {
        reversed_ledger[i] = true;
    }
    let ranges: Vec<(usize, usize)> = (0..persons)
        .step_by(LEDGER_PERSONS_PER_BATCH)
        .map(|a| (a, (a + LEDGER_PERSONS_PER_BATCH).min(persons)))
        .collect();
    let window = rayon::current_num_threads().max(1) * 2;
    for group in ranges.chunks(window) {
        let batches: Vec<Vec<RecordBatch>> = group
            .par_iter()
            .map(|&(a, b)| ledger_batches(view, &texts, a, b, &reversed_ledger))
            .collect::<Result<_>>()?;
        for batch in batches.iter().flatten().filter(|b| b.num_rows() > 0) {
            file.write(batch)?;
        }
    }
    Ok(())
}

/// The rows of persons `a..b`: their pool states, their claims of earlier runs (with this run's
/// reversals marked), then their claims of this run. A person's claims stay in settlement
/// order, which is all the reader needs.
fn ledger_batches(
    view: &RunView,
    texts: &LedgerTexts,
    a: usize,
    b: usize,
    reversed_ledger: &[bool],
) -> Result<Vec<RecordBatch>> {
    let (claims, ledger) = (view.claims, view.ledger);
    let all_pools = &view.settled.pools;
    let from = all_pools.partition_point(|(q, _)| (*q as usize) < a);
    let mut settled_pools = all_pools[from..].iter().peekable();
    let mut pools: Vec<(u32, &PoolState)> = Vec::new();
    let mut earlier: Vec<LedgerClaim> = Vec::new();
    for p in a..b {
        let person = p as u32;
        // A person settled in this run has the whole state in the run's pools.
        if view.partitions.rows_of(p).is_empty() {
            pools.extend(ledger.pools_of(person).iter().map(|s| (person, s)));
        }
        while let Some((_, s)) = settled_pools.next_if(|(q, _)| *q as usize == p) {
            pools.push((person, s));
        }
        let (start, records) = ledger.claims_of(person);
        earlier.extend(records.iter().enumerate().map(|(i, r)| LedgerClaim {
            person,
            claim_id: &r.claim_id,
            record: Cow::Borrowed(r),
            reversed: r.reversed || reversed_ledger[start + i],
        }));
    }
    let (first, last) = (
        view.partitions.offsets[a] as usize,
        view.partitions.offsets[b] as usize,
    );
    let mut person = a;
    let current: Vec<LedgerClaim> = (first..last)
        .map(|pos| {
            while view.partitions.offsets[person + 1] as usize <= pos {
                person += 1;
            }
            // Rows rejected in settlement (a reversal without a valid original) stay in the
            // ledger as `rejected`: their ids still count as seen, as in a single run.
            let o = &view.settled.outcomes[pos];
            let row = view.partitions.order[pos] as usize;
            LedgerClaim {
                person: person as u32,
                claim_id: claims.claim_id(row).unwrap_or_default(),
                record: Cow::Owned(ClaimRecord {
                    claim_id: Box::default(),
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
                    medical_community: texts
                        .medical_communities
                        .code(claims.medical_community[row]),
                    layers: o.layers,
                    institution: texts.institutions.code(claims.institution[row]),
                    drug: texts.drugs.code(claims.drug[row]),
                    days_supply: claims.days_supply[row],
                }),
                reversed: o.reversed,
            }
        })
        .collect();
    // Columns are built one at a time over a slice of rows: slices small enough to stay in
    // cache keep that one pass per column, not one trip to memory per column.
    let mut batches = Vec::new();
    for chunk in pools.chunks(CACHED_ROWS) {
        batches.push(crate::ledger::pool_batch(chunk)?);
    }
    for chunk in earlier
        .chunks(CACHED_ROWS)
        .chain(current.chunks(CACHED_ROWS))
    {
        batches.push(crate::ledger::claim_batch(chunk)?);
    }
    Ok(batches)
}

/// Rows per ledger batch: a slice of claim records that fits in a core's cache.
const CACHED_ROWS: usize = 4096;
