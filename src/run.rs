//! The nightly job, stage by stage: policies → registry → claims (ingest) → the state of the
//! claims' persons and ids → partitions → settlement → audit → outputs and the state's new
//! files → commit. The claims are settled, audited and written one part of persons at a time
//! (parts cut by person key, from memory or from spill files), so only a part's results are held
//! at once — two parts' at most, as each part is written while the next is settled. Everything
//! runs on one rayon pool sized by `--threads`; no stage's result depends on the pool size, and
//! the parts are written in key order whatever overlaps.
//!
//! The run's last step commits the state's next version: outputs and state files are complete,
//! fsynced and in place before it, so a run killed at any moment leaves the state as it was,
//! and running it again gives the same bytes. An input the state has already absorbed (same
//! content hash) is not settled again.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::audit::outlier::{AmountCounts, AmountStats};
use crate::audit::{Audited, Auditor};
use crate::domain::Rule;
use crate::error::{Error, Result};
use crate::ingest::claims::Claims;
use crate::ingest::read::{list_parquet, row_count};
use crate::ingest::registry::Registry;
use crate::limits::MAX_RUN_ROWS;
use crate::output::summary::Stage;
use crate::output::{self, summary, OutputFiles, RunView};
use crate::partition::{spill, Partitions, SlotTable};
use crate::policy::Policies;
use crate::settle::Engine;
use crate::state::read::{self, IndexHits, Keys, PersonKeys, ReadStats, SpilledPersons};
use crate::state::store::{self, Input, Manifest, RunRecord, Store};
use crate::state::tables::{NewFiles, StateWriter, TextLists};
use crate::state::Prior;

/// What `yibao adjudicate` was asked to do.
#[derive(Debug, Clone)]
pub struct AdjudicateArgs {
    pub claims: PathBuf,
    pub persons: PathBuf,
    pub registrations: PathBuf,
    /// The state directory read and advanced (`--state`); `None`: empty state, none kept.
    pub state: Option<PathBuf>,
    /// Settle against this older version of the state, read-only (`--state-version`).
    pub state_version: Option<u64>,
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
    /// Whether spill files are LZ4-compressed; `None`: when raw they would not sit in the page
    /// cache ([`spill::compress_spill`]). Only speed depends on it, never the output.
    pub compress_spill: Option<bool>,
    /// Whether spill files are written around the page cache; `None`: when raw they would pass
    /// the kernel's background writeback ([`spill::spill_around_page_cache`]). Only speed
    /// depends on it, never the output.
    pub spill_around_page_cache: Option<bool>,
}

/// Resident memory a claim takes through a run held in memory, in bytes: used to decide whether
/// and how finely to spill. Conservative: a run held in memory keeps its claims' columns whole
/// but settles, audits and writes one part at a time, and measured about 250 bytes a claim
/// (2.3 GiB peak for 10 million claims, README "Performance"); the figure only picks partition
/// counts.
pub const MEMORY_PER_CLAIM: u64 = 600;

/// Resident memory a row of the state (a pool, a history row) takes once read, in bytes:
/// measured about 70 (a night on the 10M month's compacted state held 270 MB more than on an
/// empty one for 4 million rows of its persons); kept on the safe side, as the claims' figure.
pub const MEMORY_PER_STATE_ROW: u64 = 100;

/// The machine's physical memory (Linux `MemTotal`), or 16 GiB where it cannot be read.
pub fn physical_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    total.unwrap_or(16 << 30)
}

/// `--memory-limit` when none is given: [`DEFAULT_MEMORY_LIMIT`], or half of physical memory on
/// a machine with less than twice that (the rest is left to the page cache that the Parquet
/// reads, the spill files and the writes go through).
pub fn default_memory_limit() -> u64 {
    DEFAULT_MEMORY_LIMIT.min(physical_memory() / 2)
}

/// 1 GiB: a month of 10 million claims is spilled in 64 partitions ([`SPILL_PART_CLAIMS`])
/// and peaks at about 0.8 GiB, where a run held whole takes 1.9–2.0 GiB; at 100 million claims a run
/// under it is faster than one held in a few partitions of many gigabytes (README "Spilling").
/// A night's claims and a province's year-to-date state of a few million persons stay held in
/// memory.
pub const DEFAULT_MEMORY_LIMIT: u64 = 1 << 30;

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

/// Rows of a state of `state_rows` per-person rows ([`Manifest::person_rows`]) that a run of
/// `rows` claims is taken to bring into memory, for a registry of `insured` persons: the state's
/// rows in the share of the insured that `rows` claims can at most belong to. A night's 330,000
/// claims of a 2-million-person province bring a sixth of its state, not all of it (measured:
/// a night on the 10M month's state of 30 nights peaks at 0.85 GiB held in memory).
pub fn state_rows_for(rows: u64, state_rows: u64, insured: u64) -> u64 {
    if insured == 0 || rows >= insured {
        return state_rows;
    }
    (u128::from(state_rows) * u128::from(rows) / u128::from(insured)) as u64
}

/// Key bits of the spill partitions for `rows` claims and a state of `state_rows` per-person
/// rows ([`Manifest::person_rows`]) under `limit` bytes: 0 (no spill) when they fit, else
/// enough partitions of persons that [`PARTITIONS_HELD`] of them fit, and of at most
/// [`SPILL_PART_CLAIMS`] claims each. The whole state bounds what the run's persons bring of it.
pub fn spill_bits(rows: u64, state_rows: u64, limit: u64) -> u32 {
    let need = rows
        .saturating_mul(MEMORY_PER_CLAIM)
        .saturating_add(state_rows.saturating_mul(MEMORY_PER_STATE_ROW));
    if need <= limit {
        return 0;
    }
    let need = need.saturating_mul(PARTITIONS_HELD);
    let mut bits = held_bits(rows, SPILL_PART_CLAIMS);
    while bits < crate::partition::BLOCK_BITS && need > limit.max(1) << bits {
        bits += 1;
    }
    bits
}

/// Claims in a spilled partition at most, whatever the memory allows: a partition is grouped,
/// put in order, settled and audited column by column, and with a quarter of a million claims
/// its columns (a few megabytes each) stay in the cores' caches while they are walked at
/// random. The 10M month in 64 partitions instead of the 16 its memory needs: 0.96x and
/// 0.98x the time (clean, skewed) and 0.82 and 0.83 GiB peak instead of 1.01 and 1.11; in 128,
/// 1.03x the time of 64 (README "Spilling").
pub const SPILL_PART_CLAIMS: u64 = 1 << 18;

/// A rank buffer of every dense id ([`read::SpilledPersons::part`]) and the part that filled it.
type PartRanks = (usize, Vec<u32>);

/// Claims in one part of a run held in memory: enough to keep both cores busy within a part,
/// few enough that a part's settlement, audit flags and output rows stay small beside the
/// claims themselves (README "Performance").
pub const PART_CLAIMS: u64 = 1 << 20;

/// Parts a run holds at once: one being written while the next is read and settled
/// ([`settle_parts`]).
pub const PARTITIONS_HELD: u64 = 2;

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
    files_and_rows(&args.claims)
}

/// The claim files under `claims` (a file or a directory) and their rows, from the footers.
pub(crate) fn files_and_rows(claims: &Path) -> Result<(Vec<PathBuf>, u64)> {
    let files = list_parquet(claims)?;
    let mut rows = 0;
    for file in &files {
        // Saturating: footers summing past u64 are past the limit too.
        rows = row_count(file)?.saturating_add(rows);
    }
    within_run_limit(claims, rows)?;
    Ok((files, rows))
}

/// Refuses a run of more claim rows than it can number ([`MAX_RUN_ROWS`]), before anything is
/// read.
fn within_run_limit(claims: &Path, rows: u64) -> Result<()> {
    if rows > MAX_RUN_ROWS {
        return Err(Error::Usage(format!(
            "{}: {rows} claim rows, past the limit of {MAX_RUN_ROWS} a run (rows are numbered \
             in 32 bits): settle them in several runs on one state",
            claims.display()
        )));
    }
    Ok(())
}

/// Whether the run of `args` will spill: its claims (counted from the files' footers) take more
/// than the memory limit. Lets the caller pick allocator settings before the run allocates.
pub fn spills(args: &AdjudicateArgs) -> Result<bool> {
    let (_, rows) = claim_files(args)?;
    let limit = args.memory_limit.unwrap_or_else(default_memory_limit);
    let manifest = match &args.state {
        Some(dir) => Manifest::peek(dir, args.state_version)?,
        None => None,
    };
    Ok(run_spill_bits(rows, manifest.as_ref(), &args.persons, limit)? > 0)
}

/// [`spill_bits`] of a run of `rows` claims on the state of `manifest` (if any), with the
/// registry of `persons`, under `limit`: the one decision [`spills`] and the run both take.
fn run_spill_bits(
    rows: u64,
    manifest: Option<&Manifest>,
    persons: &Path,
    limit: u64,
) -> Result<u32> {
    let state_rows = match manifest {
        Some(m) => state_rows_for(rows, m.person_rows(), row_count(persons)?),
        None => 0,
    };
    Ok(spill_bits(rows, state_rows, limit))
}

/// What `yibao adjudicate` did.
#[derive(Debug)]
pub enum Adjudicated {
    /// Settled; the summary written to `summary.json`.
    Settled(Box<summary::Summary>),
    /// Every claims file was absorbed by the state already (same content): nothing was settled
    /// or written.
    AlreadyAbsorbed {
        /// The version whose run absorbed them.
        version: u64,
    },
}

impl Adjudicated {
    /// The summary of a run that settled; panics on a run that did nothing (for tests).
    pub fn summary(self) -> summary::Summary {
        match self {
            Adjudicated::Settled(s) => *s,
            Adjudicated::AlreadyAbsorbed { version } => {
                panic!("the input was absorbed already, by version {version}")
            }
        }
    }
}

/// Runs the whole job.
pub fn adjudicate(args: &AdjudicateArgs) -> Result<Adjudicated> {
    on_threads(args.threads, || run(args))
}

/// Runs `job` on a rayon pool of `threads` workers (`None`: every core).
pub(crate) fn on_threads<T: Send>(
    threads: Option<usize>,
    job: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = threads {
        if n == 0 {
            return Err(Error::Usage("--threads must be at least 1".into()));
        }
        pool = pool.num_threads(n);
    }
    let pool = pool
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {threads:?} threads: {e}")))?;
    pool.install(job)
}

/// Wall time and peak memory per stage, added up over partitions.
pub(crate) struct Laps {
    pub stages: summary::StageTimes,
    pub peaks: summary::Stages<u64>,
    lap: Instant,
    /// What the terminal shows of the run.
    pub progress: crate::progress::Progress,
}

impl Laps {
    pub fn start() -> Laps {
        Laps {
            stages: summary::StageTimes::default(),
            peaks: summary::Stages::default(),
            lap: Instant::now(),
            progress: crate::progress::Progress::new(),
        }
    }

    pub fn mark(&mut self, stage: Stage) {
        *self.stages.at(stage) += self.lap.elapsed().as_secs_f64();
        *self.peaks.at(stage) = summary::peak_rss_bytes().unwrap_or(0);
        self.lap = Instant::now();
    }

    /// Starts the next lap now: time spent waiting is no stage's.
    pub fn restart(&mut self) {
        self.lap = Instant::now();
    }

    /// Counts a part's writing (its rows and wall seconds, from [`written`]) as output: it ran
    /// beside the next part's settlement, timed on its own.
    pub fn wrote(&mut self, wrote: Option<(u64, f64)>) {
        if let Some((rows, seconds)) = wrote {
            *self.stages.at(Stage::Output) += seconds;
            *self.peaks.at(Stage::Output) = summary::peak_rss_bytes().unwrap_or(0);
            self.progress.settled(rows);
        }
    }
}

/// Writes `part` (if any) and returns its rows and the wall seconds writing took.
fn written<P>(
    write: &mut WriteFn<P>,
    part: Option<P>,
    first_year: i32,
    registry: &Registry,
) -> Result<Option<(u64, f64)>> {
    let Some(part) = part else {
        return Ok(None);
    };
    let started = Instant::now();
    let rows = write(part, first_year, registry)?;
    Ok(Some((rows, started.elapsed().as_secs_f64())))
}

/// What every partition is settled against.
pub(crate) struct Context<'a> {
    pub policies: &'a Policies,
    pub prior: &'a Prior,
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
    let settled = Engine::new(ctx.policies, registry, &claims, ctx.prior).settle(&partitions);
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
            prior: ctx.prior,
            partitions: &self.partitions,
            settled: &self.settled,
        }
    }
}

/// The state directory of a run, as opened.
fn open_state(args: &AdjudicateArgs) -> Result<Option<Store>> {
    match (&args.state, args.state_version) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(Error::Usage("--state-version needs --state".into())),
        (Some(dir), None) => Store::open(dir).map(Some),
        (Some(dir), Some(v)) => Store::open_version(dir, v).map(Some),
    }
}

/// The content hashes of the claim files, and whether the state absorbed them already: `Some`
/// version when every file was, an error naming the file when only some were (settling the rest
/// would reject the absorbed files' claims as repeats, not skip them).
pub(crate) fn absorbed(
    files: &[PathBuf],
    manifest: &Manifest,
) -> Result<(Vec<String>, Option<u64>)> {
    let hashes: Vec<String> = files
        .iter()
        .map(|f| store::content_hash(f))
        .collect::<Result<_>>()?;
    let seen: Vec<Option<&Input>> = hashes.iter().map(|h| manifest.input(h)).collect();
    if seen.iter().all(Option::is_some) {
        let version = seen.iter().flatten().map(|i| i.version).max().unwrap_or(0);
        return Ok((hashes, Some(version)));
    }
    if let Some((file, Some(input))) = files.iter().zip(&seen).find(|(_, s)| s.is_some()) {
        return Err(Error::Usage(format!(
            "{}: this content was absorbed by the state's version {} (as {}); settle the other \
             files without it",
            file.display(),
            input.version,
            input.path
        )));
    }
    Ok((hashes, None))
}

/// Removes what a killed run left in `out`: spill directories of processes no longer running.
pub(crate) fn remove_leftovers(out: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(".spill-") {
            let alive = std::path::Path::new("/proc").join(pid).exists();
            if !alive || pid == std::process::id().to_string() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Refuses policies whose text of a version differs from the text that settled claims into the
/// state ([`Manifest::policy_versions`]), naming the file and the version.
fn same_versions_as_settled(manifest: &Manifest, policies: &Policies) -> Result<()> {
    for (id, hash) in &manifest.policy_versions {
        let Some(v) = policies.version_id(id) else {
            continue;
        };
        let version = &policies.versions[v as usize];
        if &version.text_hash != hash {
            let region = &policies.regions[version.region as usize];
            let nth = region.versions.iter().position(|&x| x == v).unwrap_or(0);
            return Err(Error::policy(
                &region.file,
                format!("versions[{nth}]"),
                format!(
                    "version `{id}` differs from the text that settled claims into the state \
                     (state version {}): a change to a version in use is a new version, with \
                     its own id and effective_from; a what-if reads the state read-only \
                     (--state-version, or yibao compare)",
                    manifest.version
                ),
            ));
        }
    }
    Ok(())
}

/// The state's next manifest: `read` with the tiers the run merged in place of their files,
/// this run's files, inputs and run added, and the files holding only years before the new
/// first year dropped.
fn next_manifest(
    read: &Manifest,
    tiers: crate::state::compact::Tiers,
    latest_year: Option<i32>,
    files: (store::Piece, store::Piece, store::Piece),
    inputs: Vec<Input>,
    run: RunRecord,
) -> Manifest {
    let (pools, history, claims) = files;
    let mut next = Manifest {
        latest_year,
        history_days: crate::state::HISTORY_DAYS,
        ..read.clone()
    };
    tiers.apply(&mut next);
    let first_year = next.first_year();
    // A file of years no longer held, or of no year at all (a pools file holding only persons
    // with no pool, a history file of a run that settled nothing): what it holds is not read.
    let held = |p: &store::Piece| p.max_year.is_some_and(|y| y >= first_year);
    next.pools.retain(held);
    next.history.retain(held);
    next.claims.retain(held);
    next.pools.push(pools);
    next.history.push(history);
    next.claims.push(claims);
    next.inputs.extend(inputs);
    next.runs.push(run);
    next
}

fn run(args: &AdjudicateArgs) -> Result<Adjudicated> {
    let started = Instant::now();
    let mut laps = Laps::start();
    let policies = Policies::load_dir(&args.policies)?;
    let (files, rows) = claim_files(args)?;
    let store = open_state(args)?;
    if let Some(store) = store.as_ref().filter(|s| !s.read_only()) {
        same_versions_as_settled(&store.manifest, &policies)?;
    }
    let hashes = match &store {
        Some(store) => match absorbed(&files, &store.manifest)? {
            (_, Some(version)) => return Ok(Adjudicated::AlreadyAbsorbed { version }),
            (hashes, None) => hashes,
        },
        None => Vec::new(),
    };
    remove_leftovers(&args.out);
    let limit = args.memory_limit.unwrap_or_else(default_memory_limit);
    let mut outputs = OutputFiles::create(&args.out)?;
    let mut state_writer = match &store {
        Some(store) if !store.read_only() => Some(StateWriter::create(store, &policies)?),
        _ => None,
    };
    let mut tally = summary::Tally::default();
    // The versions that settled a claim of this run, recorded in the state it commits.
    let mut settled_under = vec![false; policies.versions.len()];
    let mut anomalies = [0u64; Rule::COUNT];
    // One part of persons, held in memory or read back from a spill, grouped in output order:
    // settled and audited against the month's amount statistics, then written with the state's
    // changes beside the outputs while the next part is settled.
    let settle = |ctx: &Context,
                  claims: Claims,
                  partitions: Partitions,
                  stats: &AmountStats,
                  registry: &Registry,
                  laps: &mut Laps| {
        let part = settle_part(ctx, registry, claims, partitions, laps);
        let audited = part.auditor(ctx, registry).run_with(stats);
        laps.mark(Stage::Audit);
        Result::Ok((part, audited))
    };
    let mut write = |(part, audited): (Settled, Audited), first_year: i32, registry: &Registry| {
        let view = RunView::new(
            &policies,
            registry,
            &part.claims,
            &part.partitions,
            &part.settled,
            &audited,
        );
        // The state's rows beside the outputs: a file's few heavy columns leave a thread idle
        // at its end, two writers at once keep both busy.
        let (written, changed) = rayon::join(
            || outputs.append(&view),
            || match state_writer.as_mut() {
                Some(writer) => write_changes(writer, &part, &registry.index, first_year),
                None => Ok(()),
            },
        );
        written?;
        changed?;
        tally.add(&view);
        for o in &view.settled.outcomes {
            if o.version != crate::policy::NONE {
                settled_under[o.version as usize] = true;
            }
        }
        for (n, m) in anomalies.iter_mut().zip(audited.counts()) {
            *n += m;
        }
        Result::Ok(part.claims.len() as u64)
    };

    let plan = Plan {
        claims: &args.claims,
        persons: &args.persons,
        registrations: &args.registrations,
        out: &args.out,
        files: &files,
        rows,
        store: store.as_ref(),
        policies: &policies,
        limit,
        part_claims: args.part_claims.unwrap_or(PART_CLAIMS),
        compress_spill: args.compress_spill,
        spill_around_page_cache: args.spill_around_page_cache,
        audits: true,
    };
    let steps = PartSteps {
        settle: &settle,
        write: &mut write,
    };
    let settled = settle_parts(&plan, &mut laps, steps)?;
    let Parts {
        registry,
        sources,
        claims,
        spill,
        parts,
        read,
        known_claim_ids,
        run_year,
    } = settled;
    laps.progress
        .stage("finishing the outputs and the state's files");
    let (written, pending) = outputs.close()?;
    let new_files: Option<NewFiles> = state_writer.map(StateWriter::close).transpose()?;
    // A full tier of earlier runs' per-person files merged into one, so that nights read few
    // files (placed now, named by the manifest this run commits).
    let tiers = match (&store, &new_files) {
        (Some(store), Some(_)) => crate::state::compact::merge_tiers(store)?,
        _ => crate::state::compact::Tiers::default(),
    };
    let (totals, reasons, rejected) = tally.finish(&policies);
    let audit_trail = summary::AuditTrail::of_run(
        &files,
        &hashes,
        &args.persons,
        &args.registrations,
        &[("policy", &policies)],
    )?;
    laps.mark(Stage::Output);
    let wall = started.elapsed().as_secs_f64();
    let bytes_read = read.bytes_read;
    let state = store.as_ref().map(|store| summary::StateSummary {
        dir: store.dir.display().to_string(),
        read_version: store.manifest.version,
        commits_version: (!store.read_only()).then_some(store.manifest.version + 1),
        read,
        known_claim_ids,
        written_rows: new_files
            .as_ref()
            .map_or(0, |f| f.pools.rows + f.history.rows + f.claims.rows),
        written_bytes: new_files.as_ref().map_or(0, NewFiles::bytes),
        merged_files: tiers.files().count() as u64,
        merged_rows: tiers.files().map(|p| p.rows).sum(),
        merged_bytes: tiers.files().map(|p| p.bytes).sum(),
    });
    let summary = summary::Summary {
        engine: "yibao",
        version: env!("CARGO_PKG_VERSION"),
        audit_trail,
        threads: rayon::current_num_threads(),
        inputs: summary::Inputs {
            claims: sources,
            persons: args.persons.display().to_string(),
            registrations: args.registrations.display().to_string(),
            registry: registry.stats.clone(),
        },
        state,
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
    // Parquet files first, summary next: a summary.json present means the outputs are whole.
    for file in pending {
        file.commit()?;
    }
    output::parquet::write_atomic(&args.out.join("summary.json"), &json)?;
    output::parquet::sync_dir(&args.out)?;
    // The state's version last, once everything it stands for is in place.
    if let (Some(store), Some(new_files)) = (&store, new_files) {
        let bytes_written = new_files.bytes();
        let placed = new_files.place(store)?;
        let inputs = files
            .iter()
            .zip(&summary.inputs.claims)
            .zip(hashes)
            .map(|((path, source), blake3)| Input {
                blake3,
                path: path.display().to_string(),
                bytes: source.bytes,
                rows: source.rows,
                version: store.manifest.version + 1,
            })
            .collect();
        let run = RunRecord {
            version: store.manifest.version + 1,
            read_version: store.manifest.version,
            engine: format!("yibao {}", env!("CARGO_PKG_VERSION")),
            committed_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            claims,
            out: args.out.display().to_string(),
            bytes_read,
            bytes_written,
            audit_trail: Some(summary.audit_trail.clone()),
        };
        let mut next = next_manifest(
            &store.manifest,
            tiers,
            latest_year(Some(store), run_year),
            placed,
            inputs,
            run,
        );
        for (v, _) in settled_under.iter().enumerate().filter(|(_, used)| **used) {
            let version = &policies.versions[v];
            next.policy_versions
                .insert(version.id.clone(), version.text_hash.clone());
        }
        store.commit(next)?;
    }
    Ok(Adjudicated::Settled(Box::new(summary)))
}

/// The claims, registry and state a run settles, and its limits: what `yibao adjudicate` and
/// `yibao compare` share.
pub(crate) struct Plan<'a> {
    pub claims: &'a Path,
    pub persons: &'a Path,
    pub registrations: &'a Path,
    /// Where spill files go (`OUT/.spill-PID`).
    pub out: &'a Path,
    pub files: &'a [PathBuf],
    /// Rows of `files`, from their footers.
    pub rows: u64,
    pub store: Option<&'a Store>,
    /// The policies names (regions, conditions, pools, versions) are resolved against.
    pub policies: &'a Policies,
    pub limit: u64,
    pub part_claims: u64,
    /// [`AdjudicateArgs::compress_spill`].
    pub compress_spill: Option<bool>,
    /// [`AdjudicateArgs::spill_around_page_cache`].
    pub spill_around_page_cache: Option<bool>,
    /// The parts are audited: the month's amount statistics (`amount_outlier`) are counted.
    pub audits: bool,
}

/// What settling every part of a run gave.
pub(crate) struct Parts {
    pub registry: Registry,
    pub sources: Vec<crate::ingest::claims::SourceFile>,
    pub claims: u64,
    pub spill: Option<summary::Spill>,
    pub parts: u64,
    pub read: ReadStats,
    pub known_claim_ids: u64,
    /// The year of the latest settlement time among the run's valid claims.
    pub run_year: Option<i32>,
}

/// How a run settles one part of persons, held in memory or read back from a spill, grouped in
/// output order: `(context, claims, partitions, the month's amount statistics, registry, laps)`.
/// Returns the settled part, for [`WriteFn`].
pub(crate) type SettleFn<'f, P> = dyn Fn(&Context, Claims, Partitions, &AmountStats, &Registry, &mut Laps) -> Result<P>
    + Sync
    + 'f;

/// How a run writes a settled part: `(part, first year held, registry)`. Parts come in
/// person-key order, each once; returns the part's rows. A settled part needs nothing of the
/// state read for it ([`Context::prior`]), which a run lets go once it has settled the parts
/// that need it.
pub(crate) type WriteFn<'f, P> = dyn FnMut(P, i32, &Registry) -> Result<u64> + Send + 'f;

/// A run's two steps for each part. A part is written while the next one is settled
/// ([`settle_parts`]): the writers' tails and the settlement's leave a core idle at different
/// moments.
pub(crate) struct PartSteps<'s, 'f, P> {
    pub settle: &'s SettleFn<'f, P>,
    pub write: &'s mut WriteFn<'f, P>,
}

/// The state's latest year once a run commits: the year of the latest settlement time among its
/// valid claims, or the state's. Rows of years before the one preceding it are not written
/// again (the commit drops them).
fn latest_year(store: Option<&Store>, run_year: Option<i32>) -> Option<i32> {
    let read = store.and_then(|s| s.manifest.latest_year);
    [read, run_year].into_iter().flatten().max()
}

/// Reads the registry, the claims and their persons' state, cuts the run into parts of persons
/// (in memory, or spilled under `plan.limit`) and hands each to `steps.settle`, then to
/// `steps.write` in person-key order; a part is written while the next one is settled.
pub(crate) fn settle_parts<P: Send>(
    plan: &Plan,
    laps: &mut Laps,
    steps: PartSteps<'_, '_, P>,
) -> Result<Parts> {
    let PartSteps { settle, write } = steps;
    let Plan {
        files,
        rows,
        store,
        policies,
        ..
    } = *plan;
    let manifest = store.map(|s| &s.manifest);
    let bits = run_spill_bits(rows, manifest, plan.persons, plan.limit)?;
    laps.progress.claims(rows);
    laps.progress.stage(match (bits, store.is_some()) {
        (0, false) => "reading the registry and the claims",
        (0, true) => "reading the registry, the claims and their persons' state",
        _ => "reading the registry and spilling the claims by person",
    });
    let lookup = |claim_keys: Vec<u64>, target_keys: Vec<u64>| -> Result<IndexHits> {
        match store {
            Some(store) => read::lookup_claims(
                store,
                &Keys::new(claim_keys),
                &Keys::new(target_keys),
                policies,
            ),
            None => Ok(IndexHits::default()),
        }
    };
    // The run's claim ids are looked up (and keyed) only when the state has a claim index. A
    // spilled run does it with its first read, before the registry takes its memory.
    let indexed = store.is_some_and(|s| !s.manifest.claims.is_empty());
    let (repeated, spill_hits) = if bits > 0 {
        let (repeated, keys) = spill::repeated_ids(files, rows, indexed)?;
        let hits = match keys {
            Some((claim_keys, target_keys)) => lookup(claim_keys, target_keys)?,
            None => IndexHits::default(),
        };
        (repeated, hits)
    } else {
        (Vec::new(), IndexHits::default())
    };
    // A run held in memory reads its persons' state (found by the key columns of its claims)
    // while the registry loads: the registry's interning of person ids leaves a core free. A
    // spilled run knows its persons once it has scattered them, and reads their state then.
    let load_registry = || Registry::load(plan.persons, plan.registrations, policies);
    let (registry, early) = match store {
        Some(store) if bits == 0 => {
            let (registry, early) = rayon::join(load_registry, || -> Result<_> {
                let keys = crate::ingest::claims::state_keys(files, indexed)?;
                let wanted = PersonKeys::new(keys.persons)?;
                let hits = match indexed {
                    true => lookup(keys.claim_keys, keys.target_keys)?,
                    false => IndexHits::default(),
                };
                let (prior, mut read) = read::load_prior(store, &wanted, policies, &hits)?;
                read.bytes_read += hits.bytes_read;
                Ok((wanted, prior, read, hits))
            });
            (registry, Some(early))
        }
        _ => (load_registry(), None),
    };
    let mut registry = registry?;
    let parts = if bits == 0 {
        let mut whole = Claims::load(plan.claims, &mut registry.index)?;
        // A bad claims file is reported as such before anything the state read met.
        let (early, hits) = match early.transpose()? {
            Some((wanted, prior, read, hits)) => (Some((wanted, prior, read)), hits),
            None => (None, IndexHits::default()),
        };
        let known: Vec<&str> = hits.known.iter().map(String::as_str).collect();
        whole.reject_duplicate_ids(&known);
        let known_ids = known.len() as u64;
        drop(known);
        let mut present = vec![false; registry.index.len()];
        mark_present(&mut present, &whole.person);
        let (prior, read) = match early {
            Some((wanted, prior, mut read)) => {
                let mut prior = prior.with_ranks(wanted.ranks(&registry.index, &present));
                prior.keep_reachable(&whole);
                read.earlier_claims_held = prior.claims_held() as u64;
                (prior, read)
            }
            None => (Prior::default(), ReadStats::default()),
        };
        drop(present);
        let run_year = latest_settlement_year(&whole, 0..whole.len());
        laps.mark(Stage::Ingest);
        let first_year = latest_year(store, run_year).map_or(i32::MIN, |y| y - 1);
        let held = held_bits(whole.len() as u64, plan.part_claims);
        // Counted before grouping, as a spilled run counts them while it scatters: a crowded
        // person's claims, rejected by grouping, count in both.
        let mut counts = AmountCounts::default();
        if plan.audits {
            counts.add_claims(policies, &registry, &whole);
        }
        let stats = counts.stats();
        laps.mark(Stage::Audit);
        let month = Partitions::build(&mut whole, &registry.index);
        laps.mark(Stage::Partition);
        let mut count = 0;
        // `cut` gives the parts of persons, then one of the rows with no person.
        let parts = (1usize << held) + 1;
        let mut pending: Option<P> = None;
        let mut prior = Some(prior);
        let no_prior = Prior::default();
        for (rows, partitions) in month.cut(held) {
            count += 1;
            if count == parts as u64 {
                // The rows with no person come last and read nothing of the state: what it gave
                // the parts before is let go before the last of those is written beside them.
                prior = None;
            }
            let ctx = Context {
                policies,
                prior: prior.as_ref().unwrap_or(&no_prior),
            };
            laps.restart();
            let (wrote, next) = rayon::join(
                || written(write, pending.take(), first_year, &registry),
                || -> Result<P> {
                    // On one thread this starts once the part before is written.
                    laps.restart();
                    let claims = whole.select(&rows)?;
                    drop(rows);
                    laps.mark(Stage::Partition);
                    laps.progress
                        .stage(format!("settling part {count} of {parts}"));
                    settle(&ctx, claims, partitions, &stats, &registry, laps)
                },
            );
            laps.wrote(wrote?);
            pending = Some(next?);
        }
        laps.restart();
        let last = written(write, pending.take(), first_year, &registry);
        laps.wrote(last?);
        Parts {
            sources: whole.sources.clone(),
            claims: whole.len() as u64,
            spill: None,
            parts: count,
            read,
            known_claim_ids: known_ids,
            run_year,
            registry: Registry::default(),
        }
    } else {
        let hits = spill_hits;
        let known: Vec<&str> = hits.known.iter().map(String::as_str).collect();
        let spill_dir = plan.out.join(format!(".spill-{}", std::process::id()));
        // The amount statistics of the whole month, which the outlier rule judges every claim
        // against: the judged claims are known before settlement, so they are counted as the
        // scatter converts them, and each partition is read back once, to be settled. A row
        // whose claim id may repeat another's is counted once the repeats are known.
        let mut counts = AmountCounts::default();
        let mut suspect_amounts = Vec::new();
        let mut present: Vec<bool> = Vec::new();
        let mut run_year = None;
        let to = spill::SpillTo {
            dir: &spill_dir,
            bits,
            compress: plan
                .compress_spill
                .unwrap_or_else(|| spill::compress_spill(rows, physical_memory())),
            around_page_cache: plan
                .spill_around_page_cache
                .unwrap_or_else(|| spill::spill_around_page_cache(rows, physical_memory())),
        };
        let spilled = spill::scatter(
            files,
            to,
            &mut registry,
            &known,
            &repeated,
            |registry, window, suspects| {
                if plan.audits {
                    let rows: Vec<u32> = suspects.iter().map(|s| s.row).collect();
                    counts.add_claims_except(policies, registry, window, &rows);
                    suspect_amounts.extend(suspects.iter().filter_map(|s| {
                        AmountCounts::amount_of(policies, registry, window, s.row as usize)
                            .map(|amount| (s.input_row, amount))
                    }));
                }
                run_year = run_year.max(latest_settlement_year(window, 0..window.len()));
                present.resize(registry.index.len(), false);
                mark_present(&mut present, &window.person);
            },
        )?;
        let known_ids = known.len() as u64;
        drop(known);
        for (input_row, amount) in suspect_amounts {
            if spilled.repeats.binary_search(&input_row).is_err() {
                counts.add_amount(amount);
            }
        }
        // The state is read a partition at a time, each partition's persons' alone: what is
        // held at once is one partition's state, as it is one partition's claims.
        let spilled_persons = match store {
            Some(_) => Some(SpilledPersons::of_present(&registry.index, &present)?),
            None => None,
        };
        drop(present);
        laps.mark(Stage::Ingest);
        let first_year = latest_year(store, run_year).map_or(i32::MIN, |y| y - 1);
        let parts = spilled.person_parts() + 1;
        let stats = counts.stats();
        let mut count = 0;
        let mut read = ReadStats::default();
        // Each part's persons' state is let go once the part is settled. Its rank buffer comes
        // back, with the part it was filled for, once the part is written; a later part clears
        // those entries and fills its own: a buffer of every dense id is filled once, not per part.
        let mut pending: Option<(P, PartRanks)> = None;
        let mut spare_ranks: Vec<PartRanks> = Vec::new();
        let mut slots = SlotTable::default();
        for part in 0..parts {
            laps.progress.stage(format!(
                "reading back part {} of {parts} and its persons' state",
                part + 1
            ));
            let spare = spare_ranks.pop();
            laps.restart();
            let (wrote, next) = rayon::join(
                || -> Result<Option<(u64, f64, PartRanks)>> {
                    let Some((settled, ranks)) = pending.take() else {
                        return Ok(None);
                    };
                    let wrote = written(write, Some(settled), first_year, &registry)?;
                    Ok(wrote.map(|(rows, seconds)| (rows, seconds, ranks)))
                },
                || -> Result<(P, PartRanks, ReadStats)> {
                    laps.restart();
                    let mut claims = spilled.read(part)?;
                    let (prior, part_read) = match (store, &spilled_persons) {
                        (Some(store), Some(persons)) => {
                            let dense_ids = registry.index.len();
                            let rank_of = match spare {
                                Some((used_by, mut ranks)) => {
                                    persons.release(used_by, bits, &mut ranks);
                                    ranks
                                }
                                None => Vec::new(),
                            };
                            let (wanted, ranks) = persons.part(part, bits, rank_of, dense_ids)?;
                            let (prior, mut part_read) =
                                read::load_prior(store, &wanted, policies, &hits)?;
                            let mut prior = prior.with_ranks(ranks);
                            prior.keep_reachable(&claims);
                            part_read.earlier_claims_held = prior.claims_held() as u64;
                            (prior, part_read)
                        }
                        _ => (Prior::default(), ReadStats::default()),
                    };
                    laps.mark(Stage::Ingest);
                    let ctx = Context {
                        policies,
                        prior: &prior,
                    };
                    let mut partitions =
                        Partitions::build_reusing(&mut claims, &registry.index, &mut slots);
                    partitions.gather(&mut claims)?;
                    laps.mark(Stage::Partition);
                    laps.progress
                        .stage(format!("settling part {} of {parts}", part + 1));
                    let settled = settle(&ctx, claims, partitions, &stats, &registry, laps)?;
                    Ok((settled, (part, prior.into_ranks()), part_read))
                },
            );
            if let Some((rows, seconds, ranks)) = wrote? {
                count += rows;
                laps.wrote(Some((rows, seconds)));
                spare_ranks.push(ranks);
            }
            let (settled, ranks, part_read) = next?;
            read.add(part_read);
            pending = Some((settled, ranks));
        }
        if let Some((settled, _)) = pending.take() {
            laps.restart();
            let wrote = written(write, Some(settled), first_year, &registry)?;
            count += wrote.map_or(0, |w| w.0);
            laps.wrote(wrote);
        }
        read.bytes_read += hits.bytes_read;
        let spill = summary::Spill {
            partitions: spilled.person_parts() as u64,
            bytes: spilled.bytes(),
        };
        Parts {
            sources: spilled.sources.clone(),
            claims: count,
            spill: Some(spill),
            parts: parts as u64,
            read,
            known_claim_ids: known_ids,
            run_year,
            registry: Registry::default(),
        }
    };
    Ok(Parts { registry, ..parts })
}

/// The year of the latest settlement time among the valid claims of `rows`.
fn latest_settlement_year(claims: &Claims, rows: std::ops::Range<usize>) -> Option<i32> {
    rows.filter(|&r| claims.rejected[r].is_none())
        .map(|r| claims.settled_at[r])
        .max()
        .map(|ms| crate::domain::year_of(ms.div_euclid(crate::domain::MILLIS_PER_DAY) as i32))
}

/// Marks the persons of `person` (dense ids) present.
fn mark_present(present: &mut [bool], person: &[u32]) {
    for &p in person {
        if p != crate::ingest::claims::NO_PERSON {
            present[p as usize] = true;
        }
    }
}

/// Persons per batch of state changes built in parallel (by claim count, as settlement cuts).
const CHANGE_CLAIMS: usize = 16 * 1024;

/// Chunks of [`CHANGE_CLAIMS`] whose changes are built side by side and written together: the
/// window's claims are one run of the claim index in key order. Fixed, so that the state's
/// files are the same bytes for any number of threads; a run a window keeps the memory of one
/// (compaction merges the index into one run).
const CHANGE_WINDOW: usize = 4;

/// Writes the state's changes of a settled part, a window of person chunks at a time: pools
/// and history, and the window's claims as one run of the index in key order.
fn write_changes(
    writer: &mut StateWriter,
    part: &Settled,
    persons: &crate::ingest::registry::PersonIndex,
    first_year: i32,
) -> Result<()> {
    let chunks = part.partitions.chunks(CHANGE_CLAIMS);
    let texts = TextLists::of(&part.claims);
    for group in chunks.chunks(CHANGE_WINDOW) {
        let changes: Vec<_> = group
            .par_iter()
            .map(|&range| {
                part.settled
                    .changes(&part.claims, &part.partitions, persons, first_year, range)
            })
            .collect();
        for c in &changes {
            writer.append(c, &texts)?;
        }
        writer.append_index(&changes, &texts)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_past_the_rows_it_can_number_is_refused_before_reading() {
        let claims = Path::new("claims/");
        assert!(within_run_limit(claims, u32::MAX as u64 - 1).is_ok());
        let err = within_run_limit(claims, u32::MAX as u64).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.to_string(),
            "claims/: 4294967295 claim rows, past the limit of 4294967294 a run (rows are \
             numbered in 32 bits): settle them in several runs on one state"
        );
    }

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
        assert_eq!(spill_bits(1_789_569, 0, limit), 0);
        // Past it, a partition is written while the next is settled: two must fit.
        // Two must fit, and a partition holds at most 262,144 claims: 8 of them here.
        assert_eq!(spill_bits(1_789_570, 0, limit), 3);
        // Past 8 x 262,144 claims, 16 partitions.
        assert_eq!(spill_bits(2_097_152, 0, limit), 3);
        assert_eq!(spill_bits(2_097_153, 0, limit), 4);
        assert_eq!(spill_bits(10_000_000, 0, limit), 6);
        // Where memory needs more partitions than the claims do, memory decides: 3.6 million
        // claims of 600 bytes in 1/8 GiB, two at a time.
        assert_eq!(spill_bits(3_579_140, 0, limit >> 3), 6);
        assert_eq!(spill_bits(3_579_139, 0, limit >> 3), 5);
        // Never finer than a key block.
        assert_eq!(spill_bits(u64::MAX, 0, 1), crate::partition::BLOCK_BITS);
        // The state counts too: a night of 300,000 claims (180 MB) fits alone, but not beside
        // a state of 12.5 million rows (1.25 GB).
        assert_eq!(spill_bits(300_000, 0, limit), 0);
        assert_eq!(spill_bits(300_000, 12_500_000, limit), 2);
        // A small run over a tiny limit: memory alone decides.
        assert_eq!(spill_bits(30_000, 0, 8 << 20), 3);
    }

    #[test]
    fn a_run_brings_the_state_of_the_share_of_the_insured_its_claims_can_belong_to() {
        // 300,000 claims of 2 million insured: at most 15% of them, so 15% of 12.5 million rows.
        assert_eq!(state_rows_for(300_000, 12_500_000, 2_000_000), 1_875_000);
        // Then the night fits beside its share of the state.
        assert_eq!(spill_bits(300_000, 1_875_000, 1 << 30), 0);
        // A month with as many claims as persons or more may bring all of it.
        assert_eq!(state_rows_for(2_000_000, 12_500_000, 2_000_000), 12_500_000);
        assert_eq!(
            state_rows_for(10_000_000, 12_500_000, 2_000_000),
            12_500_000
        );
        // No registry rows to go by: the whole state.
        assert_eq!(state_rows_for(300_000, 12_500_000, 0), 12_500_000);
    }
}
