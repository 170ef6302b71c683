//! The nightly job, stage by stage: policies → registry → ledger → claims (ingest) →
//! partitions → settlement → audit → outputs. Everything runs on one rayon pool sized by `--threads`;
//! no stage's result depends on the pool size.

use std::path::PathBuf;
use std::time::Instant;

use crate::audit::Auditor;
use crate::domain::Rule;
use crate::error::{Error, Result};
use crate::ingest::claims::Claims;
use crate::ingest::registry::Registry;
use crate::ledger::Ledger;
use crate::output::{self, summary, OutputFiles, RunView};
use crate::partition::Partitions;
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

fn run(args: &AdjudicateArgs) -> Result<summary::Summary> {
    let started = Instant::now();
    let mut stages = summary::StageTimes::default();
    let mut lap = Instant::now();
    let mut mark = |slot: &mut f64| {
        *slot = lap.elapsed().as_secs_f64();
        lap = Instant::now();
    };
    let policies = Policies::load_dir(&args.policies)?;
    let mut registry = Registry::load(&args.persons, &args.registrations, &policies)?;
    let ledger = match &args.ledger {
        Some(path) => Ledger::load(path, &mut registry.index, &policies)?,
        None => Ledger::default(),
    };
    let known_ids = ledger.claim_ids();
    let claims = Claims::load(&args.claims, &mut registry.index, &known_ids)?;
    drop(known_ids);
    mark(&mut stages.ingest);
    let partitions = Partitions::build(&claims, &registry.index, &ledger, |_| true);
    mark(&mut stages.partition);
    let engine = Engine::new(&policies, &registry, &claims, &ledger);
    let settled = engine.settle(&partitions);
    mark(&mut stages.settle);
    let audited = Auditor {
        policies: &policies,
        registry: &registry,
        claims: &claims,
        ledger: &ledger,
        partitions: &partitions,
        settled: &settled,
    }
    .run();
    mark(&mut stages.audit);

    let view = RunView::new(
        &policies,
        &registry,
        &claims,
        &ledger,
        &partitions,
        &settled,
        &audited,
    );
    let mut files = OutputFiles::create(&args.out, &ledger)?;
    files.append(&view)?;
    let (written, pending) = files.close(&policies)?;
    let (totals, reasons, rejected) = summary::totals(&view);
    mark(&mut stages.output);
    let wall = started.elapsed().as_secs_f64();
    let summary = summary::Summary {
        engine: "yibao",
        version: env!("CARGO_PKG_VERSION"),
        threads: rayon::current_num_threads(),
        inputs: summary::Inputs {
            claims: claims.sources.clone(),
            persons: args.persons.display().to_string(),
            registrations: args.registrations.display().to_string(),
            ledger: args.ledger.as_ref().map(|p| p.display().to_string()),
            ledger_pools: ledger.pool_count() as u64,
            ledger_claims: ledger.claims.len() as u64,
            registry: registry.stats.clone(),
        },
        policies: summary::policy_entries(&view),
        outputs: written,
        claims: claims.len() as u64,
        rejected,
        totals,
        reasons,
        anomalies: Rule::ALL
            .iter()
            .zip(audited.counts())
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.as_str().to_string(), n))
            .collect(),
        wall_seconds: wall,
        stage_seconds: stages,
        rows_per_second: if wall > 0.0 {
            claims.len() as f64 / wall
        } else {
            0.0
        },
        peak_rss_bytes: summary::peak_rss_bytes(),
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
