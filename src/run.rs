//! The nightly job, stage by stage: policies → registry → ledger → claims (ingest) →
//! partitions → settlement → audit → outputs. The claims are settled, audited and written one
//! part of persons at a time (parts cut by person key, from memory or from spill files), so
//! only a part's results are held at once. Everything runs on one rayon pool sized by
//! `--threads`; no stage's result depends on the pool size.

use std::path::PathBuf;
use std::time::Instant;

use crate::audit::outlier::{AmountCounts, AmountStats};
use crate::audit::Auditor;
use crate::domain::Rule;
use crate::error::{Error, Result};
use crate::ingest::claims::Claims;
use crate::ingest::read::{list_parquet, row_count};
use crate::ingest::registry::Registry;
use crate::ledger::Ledger;
use crate::output::summary::Stage;
use crate::output::{self, summary, OutputFiles, RunView};
use crate::partition::{self, spill, Partitions};
use crate::policy::Policies;
use crate::settle::Engine;

/// What `yibao adjudicate` was asked to do.
#[derive(Debug, Clone)]
pub struct AdjudicateArgs {
    pub claims: PathBuf,
    pub persons: PathBuf,
    pub registrations: PathBuf,
    pub ledger: Option<PathBuf>,
    pub policies: PathBuf,
    pub out: PathBuf,
    /// Worker threads; `None` uses every core.
    pub threads: Option<usize>,
    /// Memory the claims may take, in bytes; above it they are spilled to disk by person
    /// partition. `None`: [`default_memory_limit`].
    pub memory_limit: Option<u64>,
    /// Claims per part of a run held in memory; `None`: [`PART_CLAIMS`]. Only speed and
    /// memory depend on it, never the output.
    pub part_claims: Option<u64>,
}

/// Resident memory a claim takes through a run held in memory, in bytes: used to decide whether
/// and how finely to spill. Conservative: a run held in memory keeps its claims' columns whole
/// but settles, audits and writes one part at a time, and measured about 250 bytes a claim
/// (2.3 GiB peak for 10 million claims, README "Performance"); the figure only picks partition
/// counts.
pub const MEMORY_PER_CLAIM: u64 = 600;

/// Half of the machine's physical memory (Linux `MemTotal`), or 8 GiB where it cannot be read:
/// the rest is left to the page cache that the Parquet reads and writes go through.
pub fn default_memory_limit() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    total.map_or(8 << 30, |t| t / 2)
}

/// A size in bytes from `4096`, `512MiB`, `2GiB`, `1.5G`, `800M`, `64K` (binary multiples;
/// `B`, `iB` and case are optional).
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let shift = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => {
            return Err(Error::Usage(format!(
                "memory size {text:?}: unknown unit {unit:?}"
            )))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| Error::Usage(format!("memory size {text:?}: not a number")))?;
    // A size, not money: f64 is exact enough for "1.5G".
    let bytes = value * (1u64 << shift) as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(Error::Usage(format!(
            "memory size {text:?} is out of range"
        )));
    }
    Ok(bytes as u64)
}

/// Key bits of the spill partitions for `rows` claims under `limit` bytes: 0 (no spill) when
/// they fit, else enough partitions of persons that one fits.
pub fn spill_bits(rows: u64, limit: u64) -> u32 {
    let need = rows.saturating_mul(MEMORY_PER_CLAIM);
    let mut bits = 0;
    while bits < crate::partition::BLOCK_BITS && need > limit.max(1) << bits {
        bits += 1;
    }
    bits
}

/// Claims in one part of a run held in memory: enough to keep both cores busy within a part,
/// few enough that a part's settlement, audit flags and output rows stay small beside the
/// claims themselves (README "Performance").
pub const PART_CLAIMS: u64 = 1 << 20;

/// Key bits of the parts a run of `rows` claims held in memory is settled in: parts of about
/// `part` claims at most, never finer than a key block.
pub fn held_bits(rows: u64, part: u64) -> u32 {
    let part = part.max(1);
    let mut bits = 0;
    while bits < crate::partition::BLOCK_BITS && rows > part << bits {
        bits += 1;
    }
    bits
}

/// The claim files of `args` and their rows (from the footers).
fn claim_files(args: &AdjudicateArgs) -> Result<(Vec<PathBuf>, u64)> {
    let files = list_parquet(&args.claims)?;
    let mut rows = 0;
    for file in &files {
        rows += row_count(file)?;
    }
    Ok((files, rows))
}

/// Whether the run of `args` will spill: its claims (counted from the files' footers) take more
/// than the memory limit. Lets the caller pick allocator settings before the run allocates.
pub fn spills(args: &AdjudicateArgs) -> Result<bool> {
    let (_, rows) = claim_files(args)?;
    let limit = args.memory_limit.unwrap_or_else(default_memory_limit);
    Ok(spill_bits(rows, limit) > 0)
}

/// Runs the whole job and returns the summary that was written to `summary.json`.
pub fn adjudicate(args: &AdjudicateArgs) -> Result<summary::Summary> {
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        if n == 0 {
            return Err(Error::Usage("--threads must be at least 1".into()));
        }
        pool = pool.num_threads(n);
    }
    let pool = pool
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {:?} threads: {e}", args.threads)))?;
    pool.install(|| run(args))
}

/// Wall time and peak memory per stage, added up over partitions.
struct Laps {
    stages: summary::StageTimes,
    peaks: summary::Stages<u64>,
    lap: Instant,
}

impl Laps {
    fn mark(&mut self, stage: Stage) {
        *self.stages.at(stage) += self.lap.elapsed().as_secs_f64();
        *self.peaks.at(stage) = summary::peak_rss_bytes().unwrap_or(0);
        self.lap = Instant::now();
    }
}

/// What every partition is settled against.
struct Context<'a> {
    policies: &'a Policies,
    ledger: &'a Ledger,
}

/// One partition of claims (or a whole run's) grouped and settled.
struct Settled {
    claims: Claims,
    partitions: Partitions,
    settled: crate::settle::Settled,
}

/// Settles `claims`, grouped by person in `partitions` (claims already in output order).
fn settle_part(
    ctx: &Context,
    registry: &Registry,
    claims: Claims,
    partitions: Partitions,
    laps: &mut Laps,
) -> Settled {
    let settled = Engine::new(ctx.policies, registry, &claims, ctx.ledger).settle(&partitions);
    laps.mark(Stage::Settle);
    Settled {
        claims,
        partitions,
        settled,
    }
}

impl Settled {
    fn auditor<'s>(&'s self, ctx: &'s Context, registry: &'s Registry) -> Auditor<'s> {
        Auditor {
            policies: ctx.policies,
            registry,
            claims: &self.claims,
            ledger: ctx.ledger,
            partitions: &self.partitions,
            settled: &self.settled,
        }
    }
}

fn run(args: &AdjudicateArgs) -> Result<summary::Summary> {
    let started = Instant::now();
    let mut laps = Laps {
        stages: summary::StageTimes::default(),
        peaks: summary::Stages::default(),
        lap: Instant::now(),
    };
    let policies = Policies::load_dir(&args.policies)?;
    let (files, rows) = claim_files(args)?;
    let limit = args.memory_limit.unwrap_or_else(default_memory_limit);
    let bits = spill_bits(rows, limit);
    // A spilled run's first read, before the registry takes its memory.
    let repeated = if bits > 0 {
        spill::repeated_ids(&files, rows)?
    } else {
        Vec::new()
    };
    let mut registry = Registry::load(&args.persons, &args.registrations, &policies)?;
    let ledger = match &args.ledger {
        Some(path) => Ledger::load(path, &mut registry.index, &policies)?,
        None => Ledger::default(),
    };
    let ctx = Context {
        policies: &policies,
        ledger: &ledger,
    };
    let mut outputs = OutputFiles::create(&args.out, &ledger)?;
    let mut tally = summary::Tally::default();
    let mut anomalies = [0u64; Rule::COUNT];
    // One part of persons, held in memory or read back from a spill, grouped in output order:
    // settled, audited against the month's amount statistics, written. Returns its rows.
    let mut settle_and_write = |claims: Claims,
                                partitions: Partitions,
                                stats: &AmountStats,
                                registry: &Registry,
                                laps: &mut Laps| {
        let part = settle_part(&ctx, registry, claims, partitions, laps);
        let audited = part.auditor(&ctx, registry).run_with(stats);
        laps.mark(Stage::Audit);
        let view = RunView::new(
            &policies,
            registry,
            &part.claims,
            &ledger,
            &part.partitions,
            &part.settled,
            &audited,
        );
        outputs.append(&view)?;
        tally.add(&view);
        for (n, m) in anomalies.iter_mut().zip(audited.counts()) {
            *n += m;
        }
        laps.mark(Stage::Output);
        Result::Ok(part.claims.len() as u64)
    };

    let (sources, claims, spill, parts) = if bits == 0 {
        let known = ledger.claim_ids();
        let whole = Claims::load(&args.claims, &mut registry.index, &known)?;
        drop(known);
        laps.mark(Stage::Ingest);
        let held = held_bits(whole.len() as u64, args.part_claims.unwrap_or(PART_CLAIMS));
        let with_state = partition::ledger_persons_by_part(&ledger, &registry.index, 0);
        let month = Partitions::build(&whole, &registry.index, &with_state[0]);
        drop(with_state);
        laps.mark(Stage::Partition);
        let mut counts = AmountCounts::default();
        counts.add_claims(&policies, &registry, &whole);
        let stats = counts.stats();
        laps.mark(Stage::Audit);
        let mut count = 0;
        for (rows, partitions) in month.cut(held) {
            let claims = whole.select(&rows)?;
            drop(rows);
            laps.mark(Stage::Partition);
            settle_and_write(claims, partitions, &stats, &registry, &mut laps)?;
            count += 1;
        }
        (whole.sources.clone(), whole.len() as u64, None, count)
    } else {
        let known = ledger.claim_ids();
        let spill_dir = args.out.join(format!(".spill-{}", std::process::id()));
        // The amount statistics of the whole month, which the outlier rule judges every claim
        // against: the judged claims are known before settlement, so they are counted as the
        // scatter converts them, and each partition is read back once, to be settled. A row
        // whose claim id may repeat another's is counted once the repeats are known.
        let mut counts = AmountCounts::default();
        let mut suspect_amounts = Vec::new();
        let spilled = spill::scatter(
            &files,
            bits,
            &spill_dir,
            &mut registry,
            &known,
            &repeated,
            |registry, window, suspects| {
                let rows: Vec<u32> = suspects.iter().map(|s| s.row).collect();
                counts.add_claims_except(&policies, registry, window, &rows);
                suspect_amounts.extend(suspects.iter().filter_map(|s| {
                    AmountCounts::amount_of(&policies, registry, window, s.row as usize)
                        .map(|amount| (s.input_row, amount))
                }));
            },
        )?;
        drop(known);
        for (input_row, amount) in suspect_amounts {
            if spilled.repeats.binary_search(&input_row).is_err() {
                counts.add_amount(amount);
            }
        }
        laps.mark(Stage::Ingest);
        let parts = spilled.person_parts() + 1;
        let stats = counts.stats();
        let with_state = partition::ledger_persons_by_part(&ledger, &registry.index, bits);
        let mut count = 0;
        for part in 0..parts {
            let mut claims = spilled.read(part)?;
            laps.mark(Stage::Ingest);
            let ledger_persons = with_state.get(part).map_or(&[][..], Vec::as_slice);
            let mut partitions = Partitions::build(&claims, &registry.index, ledger_persons);
            partitions.gather(&mut claims)?;
            laps.mark(Stage::Partition);
            count += settle_and_write(claims, partitions, &stats, &registry, &mut laps)?;
        }
        let spill = summary::Spill {
            partitions: spilled.person_parts() as u64,
            bytes: spilled.bytes(),
        };
        (spilled.sources.clone(), count, Some(spill), parts as u64)
    };
    let (written, pending) = outputs.close(&policies, &registry.index)?;
    let (totals, reasons, rejected) = tally.finish(&policies);
    laps.mark(Stage::Output);
    let wall = started.elapsed().as_secs_f64();
    let summary = summary::Summary {
        engine: "yibao",
        version: env!("CARGO_PKG_VERSION"),
        threads: rayon::current_num_threads(),
        inputs: summary::Inputs {
            claims: sources,
            persons: args.persons.display().to_string(),
            registrations: args.registrations.display().to_string(),
            ledger: args.ledger.as_ref().map(|p| p.display().to_string()),
            ledger_pools: ledger.pool_count() as u64,
            ledger_claims: ledger.claims.len() as u64,
            registry: registry.stats.clone(),
        },
        policies: summary::policy_entries(&policies),
        outputs: written,
        claims,
        rejected,
        totals,
        reasons,
        anomalies: Rule::ALL
            .iter()
            .zip(anomalies)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.as_str().to_string(), n))
            .collect(),
        wall_seconds: wall,
        stage_seconds: laps.stages,
        rows_per_second: if wall > 0.0 {
            claims as f64 / wall
        } else {
            0.0
        },
        memory_limit_bytes: limit,
        spill,
        parts,
        peak_rss_bytes: summary::peak_rss_bytes(),
        stage_peak_rss_bytes: laps.peaks,
    };
    let json =
        serde_json::to_vec_pretty(&summary).map_err(|e| Error::Usage(format!("summary: {e}")))?;
    // Parquet files first, summary last: a summary.json present means the run completed.
    for file in pending {
        file.commit()?;
    }
    output::parquet::write_atomic(&args.out.join("summary.json"), &json)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_read_as_binary_multiples() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size(" 800 MB ").unwrap(), 800 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("2PB").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn a_month_held_in_memory_is_settled_in_parts_of_at_most_the_part_size() {
        let part = 1 << 20;
        assert_eq!(held_bits(0, part), 0);
        assert_eq!(held_bits(1 << 20, part), 0);
        assert_eq!(held_bits((1 << 20) + 1, part), 1);
        // 10 million claims: 16 parts of ~625 000.
        assert_eq!(held_bits(10_000_000, part), 4);
        assert_eq!(held_bits(u64::MAX >> 1, part), crate::partition::BLOCK_BITS);
        assert_eq!(held_bits(5, 0), 3, "a part of zero claims is a part of one");
    }

    #[test]
    fn a_month_is_cut_into_just_enough_partitions() {
        let limit = 1 << 30;
        // 1 GiB holds 1 789 569 claims at 600 bytes each.
        assert_eq!(spill_bits(1_789_569, limit), 0);
        assert_eq!(spill_bits(1_789_570, limit), 1);
        assert_eq!(spill_bits(10_000_000, limit), 3);
        // Never finer than a key block.
        assert_eq!(spill_bits(u64::MAX, 1), crate::partition::BLOCK_BITS);
    }
}
