//! Policies: the TOML files analysts edit (`policies/<region>.toml`), validated and compiled once
//! into dense lookup tables. Settlement sees only [`Policies`]: versions by region and date,
//! benefits by `[coverage][severity][condition]`, ratios by level in basis points, money in fen.
//! No string is looked at per claim.

mod compile;
pub mod diff;
pub mod raw;

use std::path::{Path, PathBuf};

use crate::domain::{
    AssistanceCategory, Coverage, Day, Level, Referral, Rule, Severity, VisitType,
};
use crate::error::{Error, Result};
use crate::interner::Interner;
use crate::money::Yuan;

pub use compile::{compile_file, TIERS};

/// The pool of a person's year-to-date cost of every claim (`total_amount`, refunds
/// subtracted): what the high-cost early warning watches.
pub const TOTAL_COST_POOL: &str = "person:total_cost";

/// Sentinel for "none" in `u16` id tables.
pub const NONE: u16 = u16::MAX;

/// All policies of a run, compiled.
#[derive(Debug, Default)]
pub struct Policies {
    /// One per policy file, in file-name order.
    pub regions: Vec<RegionPolicy>,
    /// Every version of every region; `Version::region` points back.
    pub versions: Vec<Version>,
    /// Condition ids (`hypertension`, …) across all files; a condition's index is its id.
    pub conditions: Names,
    /// Output benefit labels (`two_diseases.hypertension`).
    pub labels: Names,
    /// Annual-cap pools: the key of year-to-date state (`resident:chronic_outpatient` for a
    /// shared cap, `employee:two_diseases.hypertension` for a per-condition one). Stable across
    /// versions, so that a mid-year rate change keeps the cap already used.
    pub pools: Names,
    /// Numbers the sources do not state, as listed by `yibao policy check`.
    pub assumptions: Vec<Assumption>,
    /// Capitation budgets, by region index (`yibao capitation`).
    pub capitation: Vec<(u16, Capitation)>,
    /// Looked up once for every person of the registry: a fast hash, not SipHash.
    region_by_code: foldhash::HashMap<String, u16>,
    version_by_id: foldhash::HashMap<String, u16>,
}

fn names(list: &Names) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

/// Interned names: a name's index is its id. Looking a name up is a hash, once per distinct
/// input value (registration conditions, state pools); settlement uses only the ids.
#[derive(Debug, Default)]
pub struct Names(Interner);

impl Names {
    /// The id of `name`, adding it if new.
    pub fn intern(&mut self, name: &str) -> u16 {
        self.0.intern(name) as u16
    }

    pub fn id(&self, name: &str) -> Option<u16> {
        self.0.code(name).map(|c| c as u16)
    }
}

impl std::ops::Deref for Names {
    type Target = [String];

    fn deref(&self) -> &[String] {
        self.0.texts()
    }
}

/// One region's file.
#[derive(Debug)]
pub struct RegionPolicy {
    pub code: String,
    pub name: String,
    pub source: String,
    pub file: PathBuf,
    /// Indexes into [`Policies::versions`], by `effective_from`.
    pub versions: Vec<u16>,
}

/// One effective-dated version of a region's policy.
#[derive(Debug)]
pub struct Version {
    /// `policy_id` in the output.
    pub id: String,
    pub region: u16,
    /// First day in force.
    pub from: Day,
    /// Last day in force (inclusive).
    pub to: Day,
    /// Days after approval before a registration pays (0 or 1).
    pub start_offset_days: i32,
    pub family_doctor_required: bool,
    /// Ratio reduction for contribution tiers 100, 80 and 60, in basis points.
    pub tier_reduction_bp: [u32; 3],
    /// ICD-10 prefixes (upper case, no dots), sorted, with their condition id.
    pub icd_prefixes: Vec<(String, u16)>,
    pub benefits: Vec<Benefit>,
    /// `(pool, benefit)` pairs: the benefit whose cap a pool counts against (for reversals).
    pub pool_benefits: Vec<(u16, u16)>,
    /// `[coverage][severity][condition]` → benefit slot.
    slots: Vec<Slot>,
    /// `[coverage][visit type]` → the general benefit (general outpatient, inpatient) that pays
    /// a claim no condition benefit pays.
    general: [[Slot; VisitType::COUNT]; Coverage::COUNT],
    /// Critical illness insurance by coverage (supplementary members on the employee table).
    pub critical_illness: [Option<CriticalIllness>; Coverage::COUNT],
    /// Medical assistance by category.
    pub assistance: [Option<Assistance>; AssistanceCategory::COUNT],
    /// Audit thresholds, if the version sets them.
    pub audit: Option<AuditRules>,
    /// BLAKE3 (hex) of what settles under this version, as parsed: its own table and the file's
    /// other tables but `capitation`, without names, sources, comments or layout. A state records
    /// it for each version that settled claims into it, and refuses a run whose text of that
    /// version differs ([`text_hash`]).
    pub text_hash: String,
}

/// The audit table, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRules {
    pub refill_remaining_days: i32,
    pub max_days_supply: i32,
    pub high_cost_fen: i64,
    pub max_claims_per_day: u32,
    pub max_claims_per_week: u32,
    /// `outlier_mad_factor` in hundredths.
    pub outlier_factor_centi: i64,
    pub outlier_min_group: u32,
    /// Risk weight per [`Rule`], basis points.
    pub weights_bp: [u32; Rule::COUNT],
}

/// Risk weights where neither the policy nor a version sets one, by [`Rule`] order: how much a
/// flag alone says a claim deserves a look. Duplicates and prescription-less fills are the most
/// direct signs of fraud; window and cap flags mostly mark a person to follow up.
pub const DEFAULT_WEIGHTS_BP: [u32; Rule::COUNT] = [
    5_000, // early_refill
    4_000, // supply_too_long
    8_000, // duplicate_claim
    3_000, // unregistered_condition
    3_000, // before_benefit_start
    3_000, // after_registration_end
    2_000, // cap_exhausted
    4_000, // high_cost
    6_000, // pharmacy_without_prescription
    6_000, // visit_burst
    5_000, // amount_outlier
];

/// Critical illness insurance (大病保险), compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriticalIllness {
    pub deductible_fen: i64,
    /// `(above, ratio)`: from `above` fen of cumulative base over the deductible, `ratio` bp.
    /// The first band starts at 0; `above` rises strictly.
    pub bands: Vec<(i64, u32)>,
    pub annual_cap_fen: Option<i64>,
    /// Year-to-date state: `cost` = base received, `deductible` = absorbed, `fund` = paid.
    pub pool: u16,
}

impl CriticalIllness {
    /// What the bands pay on the first `above` fen of cumulative base over the deductible,
    /// rounded once. A claim is paid the difference of this function across the base it adds,
    /// so that a year's payments do not depend on how its cost is split into claims.
    pub fn paid_on(&self, above: i64) -> i64 {
        let mut sum: i128 = 0;
        for (i, &(from, ratio)) in self.bands.iter().enumerate() {
            if above <= from {
                break;
            }
            let to = self
                .bands
                .get(i + 1)
                .map_or(above, |&(next, _)| next.min(above));
            sum += (to - from) as i128 * ratio as i128;
        }
        crate::money::round_div(sum, crate::money::RATIO_ONE as i128) as i64
    }
}

/// Medical assistance (医疗救助) for one category, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assistance {
    pub deductible_fen: i64,
    pub ratio_bp: u32,
    pub annual_cap_fen: Option<i64>,
    /// Year-to-date state: `cost` = base received, `deductible` = absorbed, `fund` = paid.
    pub pool: u16,
}

/// Which benefit, label and cap pool settle a (coverage, severity, condition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub benefit: u16,
    pub label: u16,
    pub pool: u16,
}

impl Slot {
    const EMPTY: Slot = Slot {
        benefit: NONE,
        label: NONE,
        pool: NONE,
    };
}

/// A compiled benefit: everything the per-claim arithmetic needs, as integers.
#[derive(Debug, Clone)]
pub struct Benefit {
    pub name: String,
    /// Deductible by institution level (the same at every level for an annual deductible).
    pub deductible_fen: [i64; Level::COUNT],
    pub deductible_per: DeductiblePer,
    /// The shared-deductible pool, or [`NONE`] when the deductible is absorbed in the claim's
    /// own cap pool.
    pub deductible_pool: u16,
    pub referral_waiver: ReferralWaiver,
    pub annual_cap_fen: Option<i64>,
    pub cap_basis: CapBasis,
    /// Indexed by [`Level`].
    pub ratio: [LevelRatio; Level::COUNT],
    pub tier_reduction: bool,
    /// Factor on a secondary condition's ratio; `RATIO_ONE` when the benefit has none.
    pub secondary_factor_bp: u32,
    /// Bit `1 << VisitType as u8` set for each visit type paid.
    pub visit_mask: u8,
}

pub use raw::{CapBasis, DeductiblePer, ReferralWaiver};

impl ReferralWaiver {
    /// Whether a stay with this referral pays no deductible of its own. `same_community`: the
    /// person's previous stay was in the same medical community as this one.
    #[inline]
    pub fn waives(&self, referral: Option<Referral>, same_community: bool) -> bool {
        match referral {
            Some(Referral::Downward) => self.downward,
            Some(Referral::Upward) => self.upward_in_community && same_community,
            None => false,
        }
    }
}

/// A level's ratio, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelRatio {
    Ratio(u32),
    NotCovered,
    PrescriberLevel,
}

/// A region's capitation budget ([`raw::Capitation`]), compiled.
#[derive(Debug, Clone)]
pub struct Capitation {
    /// Condition ids of the pilot population.
    pub conditions: Vec<u16>,
    pub coverage: Coverage,
    pub budget_per_person_fen: i64,
    /// Benefit names (the part of a label before the dot) outside the budget.
    pub excluded_benefits: Vec<String>,
    /// ICD-10 prefixes (upper case, no dots) outside the budget.
    pub excluded_diagnoses: Vec<String>,
    pub surplus_split: [u32; 3],
    pub overspend_split: [u32; 3],
    pub overspend_to_community_ranks: u32,
}

/// A number the source does not state, with where it is and why the value.
#[derive(Debug, Clone)]
pub struct Assumption {
    pub file: PathBuf,
    pub version: String,
    pub key: String,
    pub why: String,
}

impl Policies {
    /// Loads and compiles every `*.toml` in `dir`, in file-name order.
    pub fn load_dir(dir: &Path) -> Result<Policies> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::policy(
                dir,
                "*",
                "no policy files (*.toml) in this directory",
            ));
        }
        let mut policies = Policies::default();
        policies.pools.intern(TOTAL_COST_POOL);
        for file in &files {
            let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
            compile_file(&mut policies, file, &text)?;
        }
        Ok(policies)
    }

    /// How `other` names things differently from these policies — regions, conditions, benefit
    /// labels, cap pools, policy versions, each list in its order — as a sentence; `None` when
    /// every list is the same. Policies that name the same things compile to the same ids, so
    /// one registry, one state read and one set of claims serve both (`yibao compare`).
    pub fn name_difference(&self, other: &Policies) -> Option<String> {
        let lists: [(&str, Vec<&str>, Vec<&str>); 5] = [
            (
                "regions",
                self.regions.iter().map(|r| r.code.as_str()).collect(),
                other.regions.iter().map(|r| r.code.as_str()).collect(),
            ),
            (
                "conditions",
                names(&self.conditions),
                names(&other.conditions),
            ),
            ("benefits", names(&self.labels), names(&other.labels)),
            ("cap pools", names(&self.pools), names(&other.pools)),
            (
                "policy versions",
                self.versions.iter().map(|v| v.id.as_str()).collect(),
                other.versions.iter().map(|v| v.id.as_str()).collect(),
            ),
        ];
        lists
            .into_iter()
            .find(|(_, a, b)| a != b)
            .map(|(what, a, b)| {
                if let Some(only) = a.iter().find(|n| !b.contains(n)) {
                    format!("{what}: {only} is only in the first")
                } else if let Some(only) = b.iter().find(|n| !a.contains(n)) {
                    format!("{what}: {only} is only in the second")
                } else {
                    format!("{what}: the same names in another order")
                }
            })
    }

    /// The region's index, looked up once per person at ingest.
    pub fn region_index(&self, code: &str) -> Option<u16> {
        self.region_by_code.get(code).copied()
    }

    /// The version of `region` in force on `day`.
    #[inline]
    pub fn version_on(&self, region: u16, day: Day) -> Option<u16> {
        self.regions[region as usize]
            .versions
            .iter()
            .copied()
            .find(|&v| {
                let v = &self.versions[v as usize];
                v.from <= day && day <= v.to
            })
    }

    /// Condition id of a condition name (registrations), if any policy names it.
    pub fn condition_id(&self, name: &str) -> Option<u16> {
        self.conditions.id(name)
    }

    /// Index of the policy version with `policy_id` `id` (state records).
    pub fn version_id(&self, id: &str) -> Option<u16> {
        self.version_by_id.get(id).copied()
    }
}

impl Version {
    /// The benefit slot for a person's coverage, a registration's severity and a condition.
    #[inline]
    pub fn slot(&self, coverage: Coverage, severity: Severity, condition: u16) -> Option<Slot> {
        let per_coverage = Severity::COUNT * self.condition_count();
        let i = coverage as usize * per_coverage
            + severity as usize * self.condition_count()
            + condition as usize;
        self.slots.get(i).copied().filter(|s| s.benefit != NONE)
    }

    /// The general benefit paying `visit` claims outside every condition benefit, if any.
    #[inline]
    pub fn general_slot(&self, coverage: Coverage, visit: VisitType) -> Option<Slot> {
        Some(self.general[coverage as usize][visit as usize]).filter(|s| s.benefit != NONE)
    }

    /// Critical illness insurance for a coverage.
    #[inline]
    pub fn critical_illness_for(&self, coverage: Coverage) -> Option<&CriticalIllness> {
        self.critical_illness[coverage as usize].as_ref()
    }

    /// The benefit whose cap `pool` counts against in this version.
    pub fn benefit_of_pool(&self, pool: u16) -> Option<&Benefit> {
        self.pool_benefits
            .iter()
            .find(|(p, _)| *p == pool)
            .map(|&(_, b)| &self.benefits[b as usize])
    }

    fn condition_count(&self) -> usize {
        self.slots.len() / (Coverage::COUNT * Severity::COUNT)
    }

    /// The condition an ICD-10 code diagnoses under this version: the longest matching prefix.
    /// Called once per distinct diagnosis code at ingest, never per claim.
    pub fn condition_of(&self, diagnosis: &str) -> Option<u16> {
        let code = normalize_icd(diagnosis);
        self.icd_prefixes
            .iter()
            .filter(|(prefix, _)| code.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|&(_, c)| c)
    }
}

impl Benefit {
    #[inline]
    pub fn pays_visit(&self, visit: VisitType) -> bool {
        self.visit_mask & (1 << visit as u8) != 0
    }
}

/// A ratio in basis points as a percentage: `8500` → `85%`, `5350` → `53.5%`.
fn percent(bp: u32) -> String {
    let whole = format!("{}.{:02}", bp / 100, bp % 100);
    format!("{}%", whole.trim_end_matches('0').trim_end_matches('.'))
}

/// Upper-cases an ICD-10 code and drops dots and spaces: `e11.9` → `E119`.
pub fn normalize_icd(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '.' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl Policies {
    /// The text `yibao policy check` prints: each file and version, then every assumption.
    pub fn check_report(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for region in &self.regions {
            let _ = writeln!(
                out,
                "{} {} ({}): {} version(s)",
                region.file.display(),
                region.code,
                region.name,
                region.versions.len()
            );
            for &v in &region.versions {
                let v = &self.versions[v as usize];
                let to = if v.to == Day::MAX {
                    "open".to_string()
                } else {
                    crate::domain::format_date(v.to)
                };
                let _ = writeln!(
                    out,
                    "  {}: {} .. {}, {} benefit(s)",
                    v.id,
                    crate::domain::format_date(v.from),
                    to,
                    v.benefits.len()
                );
                let mut names: Vec<&str> = Vec::new();
                for b in &v.benefits {
                    if !names.contains(&b.name.as_str()) {
                        names.push(&b.name);
                    }
                }
                let _ = writeln!(out, "    benefits: {}", names.join(", "));
                // Supplementary members use the employee table unless they have their own.
                let own = |c: Coverage| {
                    c != Coverage::EmployeeSupplementary
                        || v.critical_illness_for(c) != v.critical_illness_for(Coverage::Employee)
                };
                let ci: Vec<String> = Coverage::ALL
                    .iter()
                    .filter(|&&c| own(c))
                    .filter_map(|&c| {
                        v.critical_illness_for(c).map(|ci| {
                            let bands: Vec<String> = ci
                                .bands
                                .iter()
                                .map(|&(above, r)| {
                                    format!("{} from {}", percent(r), Yuan(above as i128))
                                })
                                .collect();
                            format!(
                                "{c} (deductible {}, {}, cap {})",
                                Yuan(ci.deductible_fen as i128),
                                bands.join(", "),
                                ci.annual_cap_fen
                                    .map_or("none".to_string(), |f| Yuan(f as i128).to_string())
                            )
                        })
                    })
                    .collect();
                if !ci.is_empty() {
                    let _ = writeln!(out, "    critical illness: {}", ci.join("; "));
                }
                let assistance: Vec<String> = AssistanceCategory::ALL
                    .iter()
                    .filter_map(|&c| {
                        v.assistance[c as usize].map(|a| {
                            format!(
                                "{c} {} after {}",
                                percent(a.ratio_bp),
                                Yuan(a.deductible_fen as i128)
                            )
                        })
                    })
                    .collect();
                if !assistance.is_empty() {
                    let _ = writeln!(out, "    assistance: {}", assistance.join(", "));
                }
            }
        }
        let _ = writeln!(out, "\n{} assumed number(s):", self.assumptions.len());
        for a in &self.assumptions {
            let _ = writeln!(
                out,
                "  {} [{}] {}: assumed — {}",
                a.file.display(),
                a.version,
                a.key,
                a.why
            );
        }
        out
    }
}
