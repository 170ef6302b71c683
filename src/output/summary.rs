//! `summary.json`: the run manifest — inputs with sizes and row counts, policy versions, totals
//! per region / scheme / benefit / status, reason and anomaly counts, wall time and rows/s.
//! Money is written as exact decimal strings (yuan), never as binary floats.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use super::{RunView, Written};
use crate::domain::{Reason, Status};
use crate::ingest::claims::{SourceFile, NO_PERSON};
use crate::ingest::registry::{Person, RegistryStats, PERSON_PREFETCH_ROWS};
use crate::ingest::FastMap;
use crate::money::Yuan;
use crate::policy::{Policies, NONE};

#[derive(Debug, Serialize)]
pub struct Summary {
    pub engine: &'static str,
    pub version: &'static str,
    /// What ran on what: enough to reproduce any settlement and trace it to the policy text.
    pub audit_trail: AuditTrail,
    pub threads: usize,
    pub inputs: Inputs,
    /// Set when the run read (and, unless read-only, advanced) a state directory.
    pub state: Option<StateSummary>,
    pub policies: Vec<PolicyEntry>,
    pub outputs: Written,
    pub claims: u64,
    pub rejected: u64,
    pub totals: Vec<Total>,
    pub reasons: BTreeMap<&'static str, u64>,
    pub anomalies: BTreeMap<String, u64>,
    pub wall_seconds: f64,
    /// Where the wall time went, for operators watching the nightly window.
    pub stage_seconds: StageTimes,
    pub rows_per_second: f64,
    /// `--memory-limit` as applied, in bytes.
    pub memory_limit_bytes: u64,
    /// Set when the claims did not fit the memory limit and were spilled to disk.
    pub spill: Option<Spill>,
    /// Parts the run was settled in, one after another: partitions of persons by key (held in
    /// memory, or spilled), then the rows with no person.
    pub parts: u64,
    /// The process's peak resident memory (Linux `VmHWM`), for sizing the machine and
    /// `--memory-limit`; `null` where the platform does not tell.
    pub peak_rss_bytes: Option<u64>,
    /// The peak resident memory reached by the time each stage last ended (so the first stage
    /// whose figure is `peak_rss_bytes` is where the peak was reached); 0 where not known.
    pub stage_peak_rss_bytes: Stages<u64>,
}

/// How a run that spilled was cut.
#[derive(Debug, Serialize)]
pub struct Spill {
    /// Partitions of persons (by the top bits of the person key); the rows with no person are
    /// one more.
    pub partitions: u64,
    /// Spill files' size on disk.
    pub bytes: u64,
}

/// The process's peak resident set size so far, from `/proc/self/status` (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A stage of the pipeline, as the summary's per-stage figures name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Policies, registry, state and claims read and validated (in a spilled run also the
    /// scatter to disk and reading the partitions back).
    Ingest,
    /// Claims grouped by person, in time order, gathered into output order.
    Partition,
    Settle,
    /// Anomaly rules and risk scores.
    Audit,
    /// Parquet outputs and the summary's totals.
    Output,
}

/// One figure per pipeline stage.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stages<T> {
    pub ingest: T,
    pub partition: T,
    pub settle: T,
    pub audit: T,
    pub output: T,
}

impl<T> Stages<T> {
    pub fn at(&mut self, stage: Stage) -> &mut T {
        match stage {
            Stage::Ingest => &mut self.ingest,
            Stage::Partition => &mut self.partition,
            Stage::Settle => &mut self.settle,
            Stage::Audit => &mut self.audit,
            Stage::Output => &mut self.output,
        }
    }
}

/// Wall seconds per pipeline stage, added up over partitions.
pub type StageTimes = Stages<f64>;

#[derive(Debug, Serialize)]
pub struct Inputs {
    pub claims: Vec<SourceFile>,
    pub persons: String,
    pub registrations: String,
    pub registry: RegistryStats,
}

/// What the run read of the state and what it added (`--state`).
#[derive(Debug, Serialize)]
pub struct StateSummary {
    pub dir: String,
    /// The version settled against.
    pub read_version: u64,
    /// The version this run commits as its last step; `null` for a read-only run
    /// (`--state-version`).
    pub commits_version: Option<u64>,
    /// Pool rows and history claims of this run's persons, claims of the index its reversals
    /// named, and the bytes of the state files read for them.
    pub read: crate::state::read::ReadStats,
    /// Claim ids of this run already in the claim index (rejected as `duplicate_claim_id`
    /// unless another copy in this run came first).
    pub known_claim_ids: u64,
    /// Rows and bytes of the new files (pools, history, claim index).
    pub written_rows: u64,
    pub written_bytes: u64,
    /// Files merged from a full tier of earlier runs' pools and history files, their rows and
    /// bytes ([`crate::state::compact::TIER`]).
    pub merged_files: u64,
    pub merged_rows: u64,
    pub merged_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct PolicyEntry {
    pub region: String,
    pub name: String,
    pub file: String,
    pub versions: Vec<String>,
}

/// Totals of one (region, scheme, benefit, status) group. `region` is the person's insured
/// region (the one whose policy settled the claim); rows of unknown persons count under `-`.
#[derive(Debug, Serialize)]
pub struct Total {
    pub region: String,
    pub scheme: String,
    pub benefit: Option<String>,
    pub status: &'static str,
    pub claims: u64,
    pub total_amount: String,
    pub in_scope_amount: String,
    pub fund_paid: String,
    pub copay_amount: String,
    pub over_cap_amount: String,
    pub deductible_amount: String,
    pub critical_illness_paid: String,
    pub assistance_paid: String,
    pub patient_pays: String,
}

#[derive(Default, Clone, Copy)]
struct Sums {
    claims: u64,
    total: i128,
    in_scope: i128,
    fund: i128,
    copay: i128,
    over_cap: i128,
    deductible: i128,
    critical_illness: i128,
    assistance: i128,
    patient_pays: i128,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.claims += o.claims;
        self.total += o.total;
        self.in_scope += o.in_scope;
        self.fund += o.fund;
        self.copay += o.copay;
        self.over_cap += o.over_cap;
        self.deductible += o.deductible;
        self.critical_illness += o.critical_illness;
        self.assistance += o.assistance;
        self.patient_pays += o.patient_pays;
    }
}

/// Totals key: (insured region, coverage, benefit label, status).
type Key = (u16, u8, u16, u8);

/// The run's outcomes summed by group and reason, added up partition by partition. Integer sums
/// commute, so the totals do not depend on how the run was cut. Deterministic: groups are kept
/// in a `BTreeMap`.
pub struct Tally {
    groups: BTreeMap<Key, Sums>,
    reasons: [u64; Reason::COUNT],
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            groups: BTreeMap::new(),
            reasons: [0; Reason::COUNT],
        }
    }
}

impl Tally {
    /// Adds the outcomes of one settled partition (or of a whole run).
    pub fn add(&mut self, view: &RunView) {
        let (groups, reasons) = tally(view);
        for (k, v) in groups {
            self.groups.entry(k).or_default().add(&v);
        }
        for (x, y) in self.reasons.iter_mut().zip(reasons) {
            *x += y;
        }
    }

    /// The summary's totals, reason counts and rejected-row count.
    pub fn finish(self, p: &Policies) -> (Vec<Total>, BTreeMap<&'static str, u64>, u64) {
        let rejected = self
            .groups
            .iter()
            .filter(|(k, _)| k.3 == Status::Rejected as u8)
            .map(|(_, s)| s.claims)
            .sum();
        let reasons: BTreeMap<&'static str, u64> = Reason::ALL
            .iter()
            .zip(self.reasons)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.as_str(), n))
            .collect();
        let totals = self
            .groups
            .into_iter()
            .map(|((region, coverage, label, status), s)| Total {
                region: if region == NONE {
                    "-".into()
                } else {
                    p.regions[region as usize].code.clone()
                },
                scheme: crate::domain::Coverage::ALL[coverage as usize]
                    .as_str()
                    .to_string(),
                benefit: (label != NONE).then(|| p.labels[label as usize].clone()),
                status: Status::ALL[status as usize].as_str(),
                claims: s.claims,
                total_amount: Yuan(s.total).to_string(),
                in_scope_amount: Yuan(s.in_scope).to_string(),
                fund_paid: Yuan(s.fund).to_string(),
                copay_amount: Yuan(s.copay).to_string(),
                over_cap_amount: Yuan(s.over_cap).to_string(),
                deductible_amount: Yuan(s.deductible).to_string(),
                critical_illness_paid: Yuan(s.critical_illness).to_string(),
                assistance_paid: Yuan(s.assistance).to_string(),
                patient_pays: Yuan(s.patient_pays).to_string(),
            })
            .collect();
        (totals, reasons, rejected)
    }
}

fn tally(view: &RunView) -> (FastMap<Key, Sums>, [u64; Reason::COUNT]) {
    let c = view.claims;
    // The settled rows in output order, then the rows settlement did not reach: each outcome
    // (a hundred bytes) is read where it lies, whatever order the claims are in.
    let order = &view.partitions.order;
    let unsettled: Vec<u32> = (0..c.len() as u32)
        .filter(|&r| view.position[r as usize] == super::NOT_SETTLED)
        .collect();
    let rows = order.len() + unsettled.len();
    // Integer sums commute, so chunks summed in parallel and merged in any order give the same
    // totals. The groups are a few dozen: each chunk of rows sums into its own small map, in a
    // plain loop (a fold would move the map and the reason counts through every row).
    (0..rows.div_ceil(TALLY_CHUNK_ROWS))
        .into_par_iter()
        .map(|chunk| {
            let from = chunk * TALLY_CHUNK_ROWS;
            let to = (from + TALLY_CHUNK_ROWS).min(rows);
            let mut groups = FastMap::<Key, Sums>::default();
            let mut reasons = [0u64; Reason::COUNT];
            // Rows come a person at a time: the registry (in input order, a random read per
            // person) is read once per person, not per claim.
            let mut last = (NO_PERSON, Person::UNKNOWN);
            for at in from..to {
                let (row, o) = match order.get(at) {
                    Some(&row) => (row as usize, view.settled.outcomes[at]),
                    None => {
                        let row = unsettled[at - order.len()] as usize;
                        (row, view.outcome(row))
                    }
                };
                if let Some(&ahead) = order.get(at + PERSON_PREFETCH_ROWS) {
                    view.registry.prefetch_person(c.person[ahead as usize]);
                }
                if c.person[row] != last.0 {
                    last = (
                        c.person[row],
                        match c.person[row] {
                            NO_PERSON => Person::UNKNOWN,
                            p => view.registry.person(p),
                        },
                    );
                }
                let person = last.1;
                let key = (
                    person.region,
                    person.coverage as u8,
                    o.label,
                    o.status as u8,
                );
                let s = groups.entry(key).or_default();
                s.claims += 1;
                s.total += i128::from(c.total_fen[row]);
                s.in_scope += i128::from(c.in_scope_fen[row]);
                s.fund += i128::from(o.fund_fen);
                s.copay += i128::from(o.copay_fen);
                s.over_cap += i128::from(o.over_cap_fen);
                s.deductible += i128::from(o.deductible_fen);
                s.critical_illness += i128::from(o.layers.ci_fen);
                s.assistance += i128::from(o.layers.assistance_fen);
                s.patient_pays += i128::from(o.patient_pays_fen(c.total_fen[row]));
                if let Some(r) = o.reason {
                    reasons[r as usize] += 1;
                }
            }
            (groups, reasons)
        })
        .reduce(
            || (FastMap::default(), [0u64; Reason::COUNT]),
            |(mut a, mut ra), (b, rb)| {
                for (k, v) in b {
                    a.entry(k).or_default().add(&v);
                }
                for (x, y) in ra.iter_mut().zip(rb) {
                    *x += y;
                }
                (a, ra)
            },
        )
}

/// Rows a tally task sums before its map is merged with another's.
const TALLY_CHUNK_ROWS: usize = 16 * 1024;

/// The engine version, the command line and every input and policy file with its content hash
/// (BLAKE3): what a run read, so that any settlement can be reproduced and traced to the exact
/// policy text that made it. Paths and hashes only, no personal data.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AuditTrail {
    pub engine: String,
    pub command_line: Vec<String>,
    pub files: Vec<HashedFile>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct HashedFile {
    /// `claims`, `persons`, `registrations`, `policy`, or what else a command read.
    pub role: String,
    pub path: String,
    pub bytes: u64,
    pub blake3: String,
}

impl AuditTrail {
    /// The trail of this process over `files` (role, path), hashed in turn; `known` holds
    /// hashes already taken (the claim files' of a run with a state).
    pub fn of(
        files: &[(&str, &std::path::Path)],
        known: &HashMap<&std::path::Path, &str>,
    ) -> crate::Result<AuditTrail> {
        let files = files
            .iter()
            .map(|&(role, path)| {
                let bytes = std::fs::metadata(path)
                    .map_err(|e| crate::Error::io(path, e))?
                    .len();
                let blake3 = match known.get(path) {
                    Some(h) => h.to_string(),
                    None => crate::state::store::content_hash(path)?,
                };
                Ok(HashedFile {
                    role: role.to_string(),
                    path: path.display().to_string(),
                    bytes,
                    blake3,
                })
            })
            .collect::<crate::Result<_>>()?;
        Ok(AuditTrail {
            engine: format!("yibao {}", env!("CARGO_PKG_VERSION")),
            command_line: std::env::args().collect(),
            files,
        })
    }

    /// The inputs of a settlement run: claim files, registry, and every policy file of each
    /// `(role, policies)`.
    pub fn of_run(
        claims: &[std::path::PathBuf],
        claim_hashes: &[String],
        persons: &std::path::Path,
        registrations: &std::path::Path,
        policies: &[(&'static str, &Policies)],
    ) -> crate::Result<AuditTrail> {
        let mut files: Vec<(&str, &std::path::Path)> =
            claims.iter().map(|p| ("claims", p.as_path())).collect();
        files.push(("persons", persons));
        files.push(("registrations", registrations));
        for (role, p) in policies {
            files.extend(p.regions.iter().map(|r| (*role, r.file.as_path())));
        }
        let known: HashMap<&std::path::Path, &str> = claims
            .iter()
            .map(PathBuf::as_path)
            .zip(claim_hashes.iter().map(String::as_str))
            .collect();
        AuditTrail::of(&files, &known)
    }
}

pub fn policy_entries(policies: &Policies) -> Vec<PolicyEntry> {
    policies
        .regions
        .iter()
        .map(|r| PolicyEntry {
            region: r.code.clone(),
            name: r.name.clone(),
            file: r.file.display().to_string(),
            versions: r
                .versions
                .iter()
                .map(|&v| policies.versions[v as usize].id.clone())
                .collect(),
        })
        .collect()
}
