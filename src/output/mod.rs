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
use crate::ingest::registry::{PersonIndex, Registry};
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
    /// Wall seconds spent building and writing each file: where the output stage goes. The
    /// ledger is written beside the other three, so its seconds overlap theirs.
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

/// The four Parquet outputs being written, under temporary names until committed. A run
/// writes one partition after another, in key order ([`crate::partition`]); each file grows by
/// appending, so a whole run and a spilled run write the same bytes.
pub struct OutputFiles {
    settlements: PendingFile,
    rejected: PendingFile,
    anomalies: PendingFile,
    ledger: PendingFile,
    ledger_names: LedgerNames,
    pub written: Written,
}

/// Settlement rows per batch built in parallel.
const SETTLEMENT_BATCH_ROWS: usize = 64 * 1024;

impl OutputFiles {
    /// Opens the files in `out`; `ledger` is the ledger read at the start (its text lists keep
    /// their codes).
    pub fn create(out: &Path, ledger: &Ledger) -> Result<OutputFiles> {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let open = |name: &str, schema, settings: &FileSettings| {
            PendingFile::create_with(&out.join(name), schema, settings)
        };
        let output = &FileSettings::OUTPUT;
        Ok(OutputFiles {
            settlements: open("settlements.parquet", settlements::schema(), output)?,
            rejected: open("rejected.parquet", rejected::schema(), output)?,
            anomalies: open("anomalies.parquet", anomalies::schema(), output)?,
            ledger: open(
                "ledger.parquet",
                Arc::new(crate::ledger::schema()),
                &FileSettings::LEDGER,
            )?,
            ledger_names: LedgerNames::new(ledger),
            written: Written::default(),
        })
    }

    /// Appends the rows of one settled partition (or of a whole run).
    pub fn append(&mut self, view: &RunView) -> Result<()> {
        let rows = view.partitions.output_rows();
        // The ledger beside the other three files: each file's columns are encoded in parallel,
        // but a file's few heavy columns (ids, text) leave a thread idle at its end; two files
        // at once keep both busy. Each file's own time is summed into `written.seconds`.
        let Self {
            settlements: settlements_file,
            rejected: rejected_file,
            anomalies: anomalies_file,
            ledger,
            ledger_names,
            written,
        } = self;
        let seconds = &mut written.seconds;
        let (per_claim, ledger_seconds) = rayon::join(
            || -> Result<[f64; 3]> {
                let mut lap = std::time::Instant::now();
                let mut took = || {
                    let t = lap.elapsed().as_secs_f64();
                    lap = std::time::Instant::now();
                    t
                };
                // Settlement batches are built in parallel, a window at a time to bound memory.
                let schema = settlements::schema();
                let chunks: Vec<&[u32]> = rows.chunks(SETTLEMENT_BATCH_ROWS).collect();
                let window = rayon::current_num_threads().max(1) * 2;
                for group in chunks.chunks(window) {
                    let batches: Vec<_> = group
                        .par_iter()
                        .map(|rows| settlements::batch(view, rows, &schema))
                        .collect::<Result<_>>()?;
                    for batch in &batches {
                        settlements_file.write(batch)?;
                    }
                }
                let settlements_seconds = took();
                let rejected_rows = rejected::rows(view, &rows);
                for chunk in rejected_rows.chunks(ROW_GROUP_ROWS) {
                    rejected_file.write(&rejected::batch(view, chunk)?)?;
                }
                let rejected_seconds = took();
                for chunk in view.audited.anomalies.chunks(ROW_GROUP_ROWS) {
                    anomalies_file.write(&anomalies::batch(view, chunk)?)?;
                }
                Ok([settlements_seconds, rejected_seconds, took()])
            },
            || -> Result<f64> {
                let lap = std::time::Instant::now();
                write_ledger(view, ledger_names, ledger)?;
                Ok(lap.elapsed().as_secs_f64())
            },
        );
        let [s, r, a] = per_claim?;
        seconds.settlements += s;
        seconds.rejected += r;
        seconds.anomalies += a;
        seconds.ledger += ledger_seconds?;
        written.settlements = settlements_file.rows;
        written.rejected = rejected_file.rows;
        written.anomalies = anomalies_file.rows;
        written.ledger = ledger.rows;
        Ok(())
    }

    /// Finishes every file (the ledger's name lists last) and returns them with their counts;
    /// the caller commits them after `summary.json` is ready.
    pub fn close(
        mut self,
        policies: &Policies,
        persons: &PersonIndex,
    ) -> Result<(Written, Vec<parquet::Committed>)> {
        let lap = std::time::Instant::now();
        self.ledger_names
            .write(policies, persons, &mut self.ledger)?;
        self.written.ledger = self.ledger.rows;
        self.written.seconds.ledger += lap.elapsed().as_secs_f64();
        let pending = vec![
            self.settlements.close()?,
            self.rejected.close()?,
            self.anomalies.close()?,
            self.ledger.close()?,
        ];
        Ok((self.written, pending))
    }
}

/// One of the ledger's text lists as written: the previous ledger's entries (their codes
/// unchanged), then each new text in the order the written rows first use it — an order that
/// depends on the rows alone, not on how a run was cut into partitions.
struct TextList {
    values: Vec<String>,
    index: crate::ingest::FastMap<String, u32>,
}

impl TextList {
    fn new(ledger: &[String]) -> TextList {
        TextList {
            values: ledger.to_vec(),
            index: ledger
                .iter()
                .enumerate()
                .map(|(i, v)| (v.clone(), i as u32))
                .collect(),
        }
    }

    /// Ledger codes for a run dictionary, assigned in the order `used` (run codes in write
    /// order) first mentions them; unmentioned entries stay [`NO_CODE`].
    fn codes_for(&mut self, run: &[String], used: impl Iterator<Item = u32>) -> Vec<u32> {
        let mut codes = vec![NO_CODE; run.len()];
        for c in used {
            if c == NO_CODE || codes[c as usize] != NO_CODE {
                continue;
            }
            let next = self.values.len() as u32;
            let text = &run[c as usize];
            codes[c as usize] = *self.index.entry(text.clone()).or_insert_with(|| {
                self.values.push(text.clone());
                next
            });
        }
        codes
    }
}

/// The ledger's name lists as they grow while partitions are written: persons get codes in
/// write order (kept as dense ids, their names looked up when written); texts as [`TextList`].
struct LedgerNames {
    persons: Vec<u32>,
    institutions: TextList,
    drugs: TextList,
    medical_communities: TextList,
}

impl LedgerNames {
    fn new(ledger: &Ledger) -> LedgerNames {
        LedgerNames {
            persons: Vec::new(),
            institutions: TextList::new(&ledger.institutions),
            drugs: TextList::new(&ledger.drugs),
            medical_communities: TextList::new(&ledger.medical_communities),
        }
    }

    /// The name rows, after every pool and claim row: the reader collects names first. Streamed
    /// a slice at a time: at a province's tens of millions of persons, the list as one vector of
    /// names would be a gigabyte.
    fn write(
        &self,
        policies: &Policies,
        index: &PersonIndex,
        file: &mut PendingFile,
    ) -> Result<()> {
        type Names<'a> = Box<dyn Iterator<Item = &'a str> + 'a>;
        fn str_of(v: &[String]) -> Names<'_> {
            Box::new(v.iter().map(String::as_str))
        }
        let lists: [(List, Names); 9] = [
            (
                List::Person,
                Box::new(self.persons.iter().map(|&p| index.id(p))),
            ),
            (List::Pool, str_of(&policies.pools)),
            (
                List::Policy,
                Box::new(policies.versions.iter().map(|v| v.id.as_str())),
            ),
            (List::Benefit, str_of(&policies.labels)),
            (
                List::Status,
                Box::new(Status::ALL.iter().map(|s| s.as_str())),
            ),
            (
                List::Visit,
                Box::new(VisitType::ALL.iter().map(|v| v.as_str())),
            ),
            (List::Institution, str_of(&self.institutions.values)),
            (List::Drug, str_of(&self.drugs.values)),
            (
                List::MedicalCommunity,
                str_of(&self.medical_communities.values),
            ),
        ];
        let mut names = lists
            .into_iter()
            .flat_map(|(list, values)| values.map(move |v| (list, v)));
        loop {
            let chunk: Vec<(List, &str)> = names.by_ref().take(NAME_ROWS).collect();
            if chunk.is_empty() {
                return Ok(());
            }
            file.write(&crate::ledger::name_batch(&chunk)?)?;
        }
    }
}

/// Name rows per batch written.
const NAME_ROWS: usize = 64 * 1024;

/// This partition's ledger codes: person code per slot, text codes per run dictionary code.
struct UnitCodes {
    person: Vec<u32>,
    institutions: Vec<u32>,
    drugs: Vec<u32>,
    medical_communities: Vec<u32>,
}

impl UnitCodes {
    fn text(codes: &[u32], run_code: u32) -> u32 {
        match run_code {
            NO_CODE => NO_CODE,
            c => codes[c as usize],
        }
    }
}

/// Appends the ledger rows of one partition: for each slot in order, the person's pool
/// states, the claims of earlier runs (with this run's reversals marked), and this run's claims
/// (all that passed ingest). A person with none of these gets no rows and no code.
fn write_ledger(view: &RunView, names: &mut LedgerNames, file: &mut PendingFile) -> Result<()> {
    let (claims, ledger, partitions) = (view.claims, view.ledger, view.partitions);
    let slots = partitions.slots();
    let mut person = vec![NO_CODE; slots];
    for (slot, code) in person.iter_mut().enumerate() {
        let p = partitions.persons[slot];
        if !partitions.rows_of(slot).is_empty() || ledger.has_state(p) {
            *code = names.persons.len() as u32;
            names.persons.push(p);
        }
    }
    let order = &partitions.order;
    let codes = UnitCodes {
        person,
        institutions: names.institutions.codes_for(
            &claims.institutions,
            order.iter().map(|&r| claims.institution[r as usize]),
        ),
        drugs: names.drugs.codes_for(
            &claims.drugs,
            order.iter().map(|&r| claims.drug[r as usize]),
        ),
        medical_communities: names.medical_communities.codes_for(
            &claims.medical_communities,
            order.iter().map(|&r| claims.medical_community[r as usize]),
        ),
    };

    let mut reversed_ledger = vec![false; ledger.claims.len()];
    for &i in &view.settled.reversed_ledger {
        reversed_ledger[i] = true;
    }
    // Rows are grouped by kind within a block, never across blocks, so the file reads the
    // same however the run was partitioned.
    let ranges = partitions.blocks();
    let window = rayon::current_num_threads().max(1) * 2;
    for group in ranges.chunks(window) {
        let batches: Vec<Vec<RecordBatch>> = group
            .par_iter()
            .map(|&(a, b)| ledger_batches(view, &codes, a, b, &reversed_ledger))
            .collect::<Result<_>>()?;
        for batch in batches.iter().flatten().filter(|b| b.num_rows() > 0) {
            file.write(batch)?;
        }
    }
    Ok(())
}

/// The rows of slots `a..b` (a block): their pool states, their claims of earlier runs (with this run's
/// reversals marked), then their claims of this run. A person's claims stay in settlement
/// order, which is all the reader needs.
fn ledger_batches(
    view: &RunView,
    codes: &UnitCodes,
    a: usize,
    b: usize,
    reversed_ledger: &[bool],
) -> Result<Vec<RecordBatch>> {
    let (claims, ledger, partitions) = (view.claims, view.ledger, view.partitions);
    let all_pools = &view.settled.pools;
    let from = all_pools.partition_point(|(q, _)| (*q as usize) < a);
    let mut settled_pools = all_pools[from..].iter().peekable();
    let mut pools: Vec<(u32, &PoolState)> = Vec::new();
    let mut earlier: Vec<LedgerClaim> = Vec::new();
    for slot in a..b {
        let (person, code) = (partitions.persons[slot], codes.person[slot]);
        // A person settled in this run has the whole state in the run's pools.
        if partitions.rows_of(slot).is_empty() {
            pools.extend(ledger.pools_of(person).iter().map(|s| (code, s)));
        }
        while let Some((_, s)) = settled_pools.next_if(|(q, _)| *q as usize == slot) {
            pools.push((code, s));
        }
        let (start, records) = ledger.claims_of(person);
        earlier.extend(records.iter().enumerate().map(|(i, r)| LedgerClaim {
            person: code,
            claim_id: &r.claim_id,
            record: Cow::Borrowed(r),
            reversed: r.reversed || reversed_ledger[start + i],
        }));
    }
    let (first, last) = (
        partitions.offsets[a] as usize,
        partitions.offsets[b] as usize,
    );
    let mut slot = a;
    let current: Vec<LedgerClaim> = (first..last)
        .map(|pos| {
            while partitions.offsets[slot + 1] as usize <= pos {
                slot += 1;
            }
            // Rows rejected in settlement (a reversal without a valid original) stay in the
            // ledger as `rejected`: their ids still count as seen, as in a single run.
            let o = &view.settled.outcomes[pos];
            let row = partitions.order[pos] as usize;
            LedgerClaim {
                person: codes.person[slot],
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
                    medical_community: UnitCodes::text(
                        &codes.medical_communities,
                        claims.medical_community[row],
                    ),
                    layers: o.layers,
                    institution: UnitCodes::text(&codes.institutions, claims.institution[row]),
                    drug: UnitCodes::text(&codes.drugs, claims.drug[row]),
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
