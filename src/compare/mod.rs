//! `yibao compare`: what a policy change would cost, and who would pay more. The same claims are
//! settled under a baseline and a proposal policy directory in one pass: the claims and the
//! registry are read once, the state (`--state`) is read and never advanced, and each part of
//! persons is settled under both policy sets before the next part is read. Outputs, whole or not
//! at all: `compare.parquet` (every settlement row in both worlds, [`rows`]), `summary.json`
//! (both worlds' totals, their differences, the persons who pay more or less and who newly
//! reach a cap, the policy numbers that differ) and `compare.html` ([`page`]).
//!
//! Both directories must name the same regions, conditions, benefits, cap pools and policy
//! versions ([`Policies::name_difference`]): the registry, the state and the claims are read
//! once, against those names, so the proposal may change numbers and rules — ratios, caps,
//! deductibles, lists, dates — but not what things are called.

pub mod page;
pub mod rows;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::audit::Audited;
use crate::domain::{Coverage, Status};
use crate::error::{Error, Result};
use crate::ingest::registry::{Person, Registry};
use crate::money::Yuan;
use crate::output::parquet::{FileSettings, PendingFile};
use crate::output::summary::{self, PolicyEntry, Stage};
use crate::output::{self as out, RunView};
use crate::policy::{Policies, NONE};
use crate::run::{self, Laps, Parts, Plan};
use crate::settle::Engine;
use crate::state::store::Store;

/// What `yibao compare` was asked to do.
#[derive(Debug, Clone)]
pub struct CompareArgs {
    pub claims: PathBuf,
    pub persons: PathBuf,
    pub registrations: PathBuf,
    /// The state both worlds settle against, read-only; `None`: empty state.
    pub state: Option<PathBuf>,
    /// Settle against this version of the state (default: the latest committed).
    pub state_version: Option<u64>,
    pub baseline: PathBuf,
    pub proposal: PathBuf,
    pub out: PathBuf,
    pub threads: Option<usize>,
    /// As `yibao adjudicate --memory-limit`.
    pub memory_limit: Option<u64>,
}

/// Compares the two policy directories on the claims of `args` and writes the outputs.
pub fn compare(args: &CompareArgs) -> Result<CompareSummary> {
    run::on_threads(args.threads, || compare_on_pool(args))
}

/// Money of a world, summed over claims.
#[derive(Debug, Default, Clone, Copy)]
struct Money {
    claims: u64,
    fund: i128,
    critical_illness: i128,
    assistance: i128,
    patient: i128,
    over_cap: i128,
}

impl Money {
    fn add(&mut self, o: &Money) {
        self.claims += o.claims;
        self.fund += o.fund;
        self.critical_illness += o.critical_illness;
        self.assistance += o.assistance;
        self.patient += o.patient;
        self.over_cap += o.over_cap;
    }

    fn amounts(&self) -> Amounts {
        Amounts {
            fund_paid: Yuan(self.fund).to_string(),
            critical_illness_paid: Yuan(self.critical_illness).to_string(),
            assistance_paid: Yuan(self.assistance).to_string(),
            patient_pays: Yuan(self.patient).to_string(),
            over_cap_amount: Yuan(self.over_cap).to_string(),
        }
    }

    fn minus(&self, o: &Money) -> Money {
        Money {
            claims: self.claims.abs_diff(o.claims),
            fund: self.fund - o.fund,
            critical_illness: self.critical_illness - o.critical_illness,
            assistance: self.assistance - o.assistance,
            patient: self.patient - o.patient,
            over_cap: self.over_cap - o.over_cap,
        }
    }
}

/// A world's money by region, scheme, institution level and benefit: what the charts of an
/// outlay are drawn from.
type OutlayKey = (u16, u8, String, u16);

/// One world's sums.
#[derive(Default)]
struct World {
    tally: summary::Tally,
    outlay: BTreeMap<OutlayKey, Money>,
}

impl World {
    fn add(&mut self, view: &RunView) {
        self.tally.add(view);
        let claims = view.claims;
        // Per thread by the claims' own level codes, merged by level text: the codes are a
        // part's, the texts the month's.
        let groups = (0..claims.len())
            .into_par_iter()
            .filter(|&r| claims.keys_complete(r))
            .fold(
                HashMap::<(u16, u8, u32, u16), Money>::new,
                |mut groups, r| {
                    let o = view.outcome(r);
                    // A rejected row pays nothing in either world: it is not money of either.
                    if o.status == Status::Rejected {
                        return groups;
                    }
                    let person = person_of(view.registry, claims.person[r]);
                    let key = (
                        person.region,
                        person.coverage as u8,
                        claims.level_text[r],
                        o.label,
                    );
                    groups.entry(key).or_default().add(&Money {
                        claims: 1,
                        fund: o.fund_fen.into(),
                        critical_illness: o.layers.ci_fen.into(),
                        assistance: o.layers.assistance_fen.into(),
                        patient: o.patient_pays_fen(claims.total_fen[r]).into(),
                        over_cap: o.over_cap_fen.into(),
                    });
                    groups
                },
            )
            .reduce(HashMap::new, |mut a, b| {
                for (k, v) in b {
                    a.entry(k).or_default().add(&v);
                }
                a
            });
        for ((region, coverage, level, label), money) in groups {
            let level = claims
                .level_texts
                .get(level as usize)
                .cloned()
                .unwrap_or_default();
            self.outlay
                .entry((region, coverage, level, label))
                .or_default()
                .add(&money);
        }
    }

    fn total(&self) -> Money {
        let mut all = Money::default();
        for m in self.outlay.values() {
            all.add(m);
        }
        all
    }
}

fn person_of(registry: &Registry, person: u32) -> Person {
    if person == crate::ingest::claims::NO_PERSON {
        Person::UNKNOWN
    } else {
        registry.person(person)
    }
}

/// Upper edges, in fen, of the sizes of a person's change in what they pay, either way: up to
/// 10 yuan, up to 100, up to 1000, over 1000.
const CHANGE_EDGES_FEN: [u64; 4] = [1_000, 10_000, 100_000, u64::MAX];

/// Bucket labels of [`CHANGE_EDGES_FEN`], in order from the largest saving.
const CHANGE_BUCKETS: [&str; 9] = [
    "saves over 1000",
    "saves 100 to 1000",
    "saves 10 to 100",
    "saves up to 10",
    "the same",
    "pays up to 10 more",
    "pays 10 to 100 more",
    "pays 100 to 1000 more",
    "pays over 1000 more",
];

fn change_bucket(change_fen: i64) -> usize {
    let size = change_fen.unsigned_abs();
    let step = CHANGE_EDGES_FEN
        .iter()
        .position(|&edge| size <= edge)
        .unwrap_or(3);
    match change_fen.signum() {
        0 => 4,
        1 => 5 + step,
        _ => 3 - step,
    }
}

/// How the persons of the run fare under the proposal.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PersonChanges {
    /// Persons with a settled claim.
    pub persons: u64,
    pub pay_more: u64,
    pub pay_less: u64,
    pub pay_the_same: u64,
    /// Persons with a `capped` claim under the proposal and none under the baseline.
    pub newly_capped: u64,
    /// Persons with a `capped` claim under the baseline and none under the proposal.
    pub no_longer_capped: u64,
    /// Persons by the change in what they pay (`patient_pays`, proposal − baseline, yuan).
    pub change_in_patient_pays: Vec<Bucket>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub change: &'static str,
    pub persons: u64,
}

#[derive(Default, Clone, Copy)]
struct PersonCounts {
    persons: u64,
    more: u64,
    less: u64,
    newly_capped: u64,
    no_longer_capped: u64,
    buckets: [u64; 9],
}

impl PersonCounts {
    fn add(&mut self, o: &PersonCounts) {
        self.persons += o.persons;
        self.more += o.more;
        self.less += o.less;
        self.newly_capped += o.newly_capped;
        self.no_longer_capped += o.no_longer_capped;
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
    }

    /// Each person of a part (a slot of its partitions) in both worlds.
    fn of_part(views: &[RunView; 2]) -> PersonCounts {
        let partitions = views[0].partitions;
        let claims = views[0].claims;
        (0..partitions.slots())
            .into_par_iter()
            .filter(|&s| !partitions.rows_of(s).is_empty())
            .fold(PersonCounts::default, |mut n, s| {
                let mut pays = [0i64; 2];
                let mut capped = [false; 2];
                for &row in partitions.rows_of(s) {
                    let r = row as usize;
                    for (w, view) in views.iter().enumerate() {
                        let o = view.outcome(r);
                        if o.status != Status::Rejected {
                            pays[w] += o.patient_pays_fen(claims.total_fen[r]);
                        }
                        capped[w] |= o.status == Status::Capped;
                    }
                }
                let change = pays[1] - pays[0];
                n.persons += 1;
                n.more += u64::from(change > 0);
                n.less += u64::from(change < 0);
                n.newly_capped += u64::from(capped[1] && !capped[0]);
                n.no_longer_capped += u64::from(capped[0] && !capped[1]);
                n.buckets[change_bucket(change)] += 1;
                n
            })
            .reduce(PersonCounts::default, |mut a, b| {
                a.add(&b);
                a
            })
    }

    fn changes(&self) -> PersonChanges {
        PersonChanges {
            persons: self.persons,
            pay_more: self.more,
            pay_less: self.less,
            pay_the_same: self.persons - self.more - self.less,
            newly_capped: self.newly_capped,
            no_longer_capped: self.no_longer_capped,
            change_in_patient_pays: CHANGE_BUCKETS
                .iter()
                .zip(self.buckets)
                .map(|(&change, persons)| Bucket { change, persons })
                .collect(),
        }
    }
}

/// Settlement rows whose benefit, status, fund payment or patient share differ between the
/// worlds.
fn changed_rows(views: &[RunView; 2]) -> u64 {
    let claims = views[0].claims;
    (0..claims.len())
        .into_par_iter()
        .filter(|&r| claims.keys_complete(r))
        .filter(|&r| {
            let (a, b) = (views[0].outcome(r), views[1].outcome(r));
            (
                a.label,
                a.status,
                a.fund_fen,
                a.layers.ci_fen,
                a.layers.assistance_fen,
            ) != (
                b.label,
                b.status,
                b.fund_fen,
                b.layers.ci_fen,
                b.layers.assistance_fen,
            )
        })
        .count() as u64
}

/// Money in yuan, exact decimal strings.
#[derive(Debug, Clone, Serialize)]
pub struct Amounts {
    pub fund_paid: String,
    pub critical_illness_paid: String,
    pub assistance_paid: String,
    pub patient_pays: String,
    pub over_cap_amount: String,
}

/// One world of the comparison.
#[derive(Debug, Serialize)]
pub struct WorldSummary {
    pub policies_dir: String,
    pub policies: Vec<PolicyEntry>,
    /// Settlement rows the amounts add up (every row but the rejected ones).
    pub claims_settled: u64,
    pub amounts: Amounts,
    /// As `summary.json` of `yibao adjudicate`: per region, scheme, benefit and status.
    pub totals: Vec<summary::Total>,
}

/// Both worlds' money in one group of region, scheme, institution level and benefit.
#[derive(Debug, Serialize)]
pub struct OutlayRow {
    pub region: String,
    pub scheme: &'static str,
    pub institution_level: String,
    pub benefit: Option<String>,
    pub claims_baseline: u64,
    pub claims_proposal: u64,
    pub fund_paid_baseline: String,
    pub fund_paid_proposal: String,
    pub patient_pays_baseline: String,
    pub patient_pays_proposal: String,
}

/// What the state gave both worlds.
#[derive(Debug, Serialize)]
pub struct StateRead {
    pub dir: String,
    pub read_version: u64,
    pub read: crate::state::read::ReadStats,
    pub known_claim_ids: u64,
}

/// `summary.json` of `yibao compare`.
#[derive(Debug, Serialize)]
pub struct CompareSummary {
    pub engine: &'static str,
    pub version: &'static str,
    pub command: &'static str,
    /// The command line, and every input and both directories' policy files with their hashes.
    pub audit_trail: summary::AuditTrail,
    pub threads: usize,
    pub inputs: summary::Inputs,
    pub state: Option<StateRead>,
    /// Input rows, rejected ones included.
    pub claims: u64,
    /// Rows rejected (at ingest or in settlement: the same in both worlds), in no world's money.
    pub rejected: u64,
    /// Settlement rows whose benefit, status or payments differ between the worlds.
    pub claims_changed: u64,
    pub baseline: WorldSummary,
    pub proposal: WorldSummary,
    /// Proposal − baseline.
    pub difference: Amounts,
    pub persons: PersonChanges,
    pub outlay: Vec<OutlayRow>,
    /// The values that differ between the two directories' files, each with its clause.
    pub policy_changes: Vec<crate::policy::diff::Change>,
    pub wall_seconds: f64,
    pub stage_seconds: summary::StageTimes,
    pub parts: u64,
    pub spill: Option<summary::Spill>,
    pub peak_rss_bytes: Option<u64>,
}

/// Compare rows per batch built in parallel.
const BATCH_ROWS: usize = 64 * 1024;

/// The state both worlds read: the version asked for, or the latest, never locked or advanced.
fn open_state(args: &CompareArgs) -> Result<Option<Store>> {
    let Some(dir) = &args.state else {
        return Ok(None);
    };
    let version = match args.state_version {
        Some(v) => v,
        None => crate::state::store::versions(dir)?
            .last()
            .copied()
            .unwrap_or(0),
    };
    Store::open_version(dir, version).map(Some)
}

fn compare_on_pool(args: &CompareArgs) -> Result<CompareSummary> {
    let started = Instant::now();
    let mut laps = Laps::start();
    let baseline = Policies::load_dir(&args.baseline)?;
    let proposal = Policies::load_dir(&args.proposal)?;
    if let Some(difference) = baseline.name_difference(&proposal) {
        return Err(Error::Usage(format!(
            "{} (first) and {} (second) do not name the same things — {difference}. A \
             comparison reads the registry and the state once for both, so the proposal may \
             change numbers and rules but not names; settle each with `yibao adjudicate` instead",
            args.baseline.display(),
            args.proposal.display()
        )));
    }
    let policy_changes = crate::policy::diff::differences(&args.baseline, &args.proposal)?;
    let (files, rows) = run::files_and_rows(&args.claims)?;
    let store = open_state(args)?;
    if let Some(store) = &store {
        if let (_, Some(version)) = run::absorbed(&files, &store.manifest)? {
            return Err(Error::Usage(format!(
                "{}: version {} of the state has absorbed these claims already (version {version} \
                 settled them), so both worlds would reject them as repeats; compare against the \
                 version before: --state-version {}",
                store.dir.display(),
                store.manifest.version,
                version - 1
            )));
        }
    }
    run::remove_leftovers(&args.out);
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let schema = rows::schema();
    let mut file = PendingFile::create_with(
        &args.out.join("compare.parquet"),
        schema.clone(),
        &FileSettings::OUTPUT,
    )?;
    let mut worlds = [World::default(), World::default()];
    let mut persons = PersonCounts::default();
    let mut claims_changed = 0;
    let settle_both = |ctx: &run::Context,
                       claims: crate::ingest::claims::Claims,
                       partitions: crate::partition::Partitions,
                       _stats: &crate::audit::outlier::AmountStats,
                       registry: &Registry,
                       laps: &mut Laps| {
        let settle = |policies: &Policies| {
            Engine::new(policies, registry, &claims, ctx.prior).settle(&partitions)
        };
        let (settled_baseline, settled_proposal) =
            rayon::join(|| settle(&baseline), || settle(&proposal));
        laps.mark(Stage::Settle);
        Result::Ok((claims, partitions, [settled_baseline, settled_proposal]))
    };
    let mut write_both = |(claims, partitions, [settled_baseline, settled_proposal]): (
        crate::ingest::claims::Claims,
        crate::partition::Partitions,
        [crate::settle::Settled; 2],
    ),
                          _first_year: i32,
                          registry: &Registry| {
        // Compare has no audit: every position unflagged.
        let unflagged = Audited {
            flags: vec![0; partitions.order.len()],
            ..Audited::default()
        };
        let view = |policies, settled| {
            RunView::new(
                policies,
                registry,
                &claims,
                &partitions,
                settled,
                &unflagged,
            )
        };
        let views = [
            view(&baseline, &settled_baseline),
            view(&proposal, &settled_proposal),
        ];
        let output_rows = partitions.output_rows();
        let chunks: Vec<&[u32]> = output_rows.chunks(BATCH_ROWS).collect();
        let window = rayon::current_num_threads().max(1) * 2;
        for group in chunks.chunks(window) {
            let batches: Vec<_> = group
                .par_iter()
                .map(|rows| rows::batch(&views[0], &views[1], rows, &schema))
                .collect::<Result<_>>()?;
            for batch in &batches {
                file.write(batch)?;
            }
        }
        for (world, view) in worlds.iter_mut().zip(&views) {
            world.add(view);
        }
        persons.add(&PersonCounts::of_part(&views));
        claims_changed += changed_rows(&views);
        Result::Ok(claims.len() as u64)
    };
    let plan = Plan {
        claims: &args.claims,
        persons: &args.persons,
        registrations: &args.registrations,
        out: &args.out,
        files: &files,
        rows,
        store: store.as_ref(),
        policies: &baseline,
        limit: args
            .memory_limit
            .unwrap_or_else(run::default_memory_limit)
            // Two worlds' results of a part are held at once: the claims get half.
            / 2,
        part_claims: run::PART_CLAIMS,
        compress_spill: None,
        spill_around_page_cache: None,
        // A comparison settles without audit: no amount statistics to count.
        audits: false,
    };
    let Parts {
        registry,
        sources,
        claims,
        spill,
        parts,
        read,
        known_claim_ids,
        run_year: _,
    } = run::settle_parts(
        &plan,
        &mut laps,
        run::PartSteps {
            settle: &settle_both,
            write: &mut write_both,
        },
    )?;
    let committed = file.close()?;
    let [base, prop] = worlds;
    let (base_total, prop_total) = (base.total(), prop.total());
    let audit_trail = summary::AuditTrail::of_run(
        &files,
        &[],
        &args.persons,
        &args.registrations,
        &[
            ("baseline policy", &baseline),
            ("proposal policy", &proposal),
        ],
    )?;
    let outlay = outlay_rows(&baseline, &base.outlay, &prop.outlay);
    let world = |dir: &PathBuf, policies: &Policies, world: World, total: &Money| {
        let (totals, _, rejected) = world.tally.finish(policies);
        let summary = WorldSummary {
            policies_dir: dir.display().to_string(),
            policies: summary::policy_entries(policies),
            claims_settled: total.claims,
            amounts: total.amounts(),
            totals,
        };
        (summary, rejected)
    };
    let (baseline_world, rejected) = world(&args.baseline, &baseline, base, &base_total);
    let (proposal_world, _) = world(&args.proposal, &proposal, prop, &prop_total);
    laps.mark(Stage::Output);
    let summary = CompareSummary {
        engine: "yibao",
        version: env!("CARGO_PKG_VERSION"),
        command: "compare",
        audit_trail,
        threads: rayon::current_num_threads(),
        inputs: summary::Inputs {
            claims: sources,
            persons: args.persons.display().to_string(),
            registrations: args.registrations.display().to_string(),
            registry: registry.stats.clone(),
        },
        state: store.as_ref().map(|s| StateRead {
            dir: s.dir.display().to_string(),
            read_version: s.manifest.version,
            read,
            known_claim_ids,
        }),
        claims,
        rejected,
        claims_changed,
        difference: prop_total.minus(&base_total).amounts(),
        baseline: baseline_world,
        proposal: proposal_world,
        persons: persons.changes(),
        outlay,
        policy_changes,
        wall_seconds: started.elapsed().as_secs_f64(),
        stage_seconds: laps.stages.clone(),
        parts,
        spill,
        peak_rss_bytes: summary::peak_rss_bytes(),
    };
    let json =
        serde_json::to_vec_pretty(&summary).map_err(|e| Error::Usage(format!("summary: {e}")))?;
    laps.progress.stage("drawing the page");
    let html = page::render(&summary)?;
    // The Parquet file and the page first, the summary last: a summary.json present means the
    // outputs are whole.
    committed.commit()?;
    out::parquet::write_atomic(&args.out.join("compare.html"), html.as_bytes())?;
    out::parquet::write_atomic(&args.out.join("summary.json"), &json)?;
    out::parquet::sync_dir(&args.out)?;
    Ok(summary)
}

/// Both worlds' outlay side by side, in key order.
fn outlay_rows(
    policies: &Policies,
    baseline: &BTreeMap<OutlayKey, Money>,
    proposal: &BTreeMap<OutlayKey, Money>,
) -> Vec<OutlayRow> {
    let keys: std::collections::BTreeSet<&OutlayKey> =
        baseline.keys().chain(proposal.keys()).collect();
    keys.into_iter()
        .map(|key| {
            let (region, coverage, level, label) = key;
            let zero = Money::default();
            let b = baseline.get(key).unwrap_or(&zero);
            let p = proposal.get(key).unwrap_or(&zero);
            OutlayRow {
                region: if *region == NONE {
                    "-".into()
                } else {
                    policies.regions[*region as usize].code.clone()
                },
                scheme: Coverage::ALL[*coverage as usize].as_str(),
                institution_level: level.clone(),
                benefit: (*label != NONE).then(|| policies.labels[*label as usize].clone()),
                claims_baseline: b.claims,
                claims_proposal: p.claims,
                fund_paid_baseline: Yuan(b.fund).to_string(),
                fund_paid_proposal: Yuan(p.fund).to_string(),
                patient_pays_baseline: Yuan(b.patient).to_string(),
                patient_pays_proposal: Yuan(p.patient).to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_in_what_a_person_pays_falls_in_one_bucket() {
        let bucket = |yuan_fen: i64| CHANGE_BUCKETS[change_bucket(yuan_fen)];
        assert_eq!(bucket(0), "the same");
        assert_eq!(bucket(1), "pays up to 10 more");
        assert_eq!(bucket(1_000), "pays up to 10 more");
        assert_eq!(bucket(1_001), "pays 10 to 100 more");
        assert_eq!(bucket(100_000), "pays 100 to 1000 more");
        assert_eq!(bucket(100_001), "pays over 1000 more");
        assert_eq!(bucket(-1), "saves up to 10");
        assert_eq!(bucket(-1_000), "saves up to 10");
        assert_eq!(bucket(-1_001), "saves 10 to 100");
        assert_eq!(bucket(-10_001), "saves 100 to 1000");
        assert_eq!(bucket(-100_001), "saves over 1000");
        assert_eq!(bucket(i64::MIN), "saves over 1000");
        assert_eq!(bucket(i64::MAX), "pays over 1000 more");
    }
}
