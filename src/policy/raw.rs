//! The policy file as an analyst writes it: serde structs mirroring the TOML one to one, with
//! `deny_unknown_fields` so a misspelt key is refused rather than silently ignored. Nothing here
//! is used by settlement; [`super::compile`] turns it into lookup tables.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A number as written in the file: TOML integer, float or string. Kept as its decimal text so
/// that `0.53` is exactly 53 hundredths, never a binary float.
#[derive(Debug, Clone, PartialEq)]
pub struct Number(pub String);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any {
            Int(i64),
            Float(f64),
            Text(String),
        }
        Ok(Number(match Any::deserialize(d)? {
            Any::Int(i) => i.to_string(),
            // Rust prints the shortest text that reads back to the same f64, which for any
            // number a person typed with a few decimals is exactly what they typed.
            Any::Float(f) => f.to_string(),
            Any::Text(s) => s,
        }))
    }
}

/// One region's policy file (`policies/<region>.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Pooling-region code (统筹区), e.g. `"420700"`; persons' `region` selects the file.
    pub region: String,
    /// Human name of the region.
    pub name: String,
    /// The source document(s) the numbers come from.
    pub source: String,
    /// Conditions this region recognises and the ICD-10 prefixes that diagnose them.
    pub conditions: BTreeMap<String, Condition>,
    /// Effective-dated versions; their date ranges must not overlap.
    pub versions: Vec<Version>,
    /// A capitation budget settled at year end (`yibao capitation`), where the region has one.
    #[serde(default)]
    pub capitation: Option<Capitation>,
}

/// A per-person budget (按人头付费包干) for the fund's payments to a pilot population, settled per
/// member unit at year end: surplus kept in proportion to the unit's assessment score, split by
/// level; overspend borne by the medical community for the best-ranked units, else split by
/// level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capitation {
    /// The pilot's conditions: persons with a registration of one of them form the population.
    pub conditions: Vec<String>,
    /// The scheme of the pilot population (`resident`, `employee`).
    pub coverage: String,
    /// Yuan a year per enrolled person.
    pub budget_per_person: Number,
    /// Benefits whose fund payments are outside the budget (by name: `general_outpatient`).
    #[serde(default)]
    pub excluded_benefits: Vec<String>,
    /// ICD-10 prefixes of diagnoses outside the budget (accidental injury); applied when the
    /// claims are given.
    #[serde(default)]
    pub excluded_diagnoses: Vec<String>,
    /// Kept surplus split county : township : village.
    pub surplus_split: [u32; 3],
    /// Overspend split county : township : village for units ranked below the best.
    pub overspend_split: [u32; 3],
    /// Units ranked this high or higher hand their overspend to the medical community.
    pub overspend_to_community_ranks: u32,
    #[serde(default)]
    pub assumed: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// ICD-10 code prefixes, e.g. `["I10", "I11"]`; dots are ignored, the longest prefix wins.
    pub icd10: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// Written to `policy_id` on every claim this version settles; unique across all files.
    pub id: String,
    pub effective_from: toml::value::Datetime,
    /// Last day in force (inclusive); open-ended when absent.
    pub effective_to: Option<toml::value::Datetime>,
    /// Benefits are paid only to persons signed with a family doctor (Jiaxing clause 8).
    #[serde(default)]
    pub family_doctor_required: bool,
    /// The first day a registration pays: `approval_day` or `next_day` (Rizhao).
    pub benefit_start: BenefitStart,
    /// Employee ratio reduction by contribution tier in percent, e.g. `{ "80" = 0.05 }`.
    #[serde(default)]
    pub tier_reduction: BTreeMap<String, Number>,
    /// Factor on the ratio of a person's secondary (non-primary) condition (Ezhou: 0.5).
    pub secondary_factor: Option<Number>,
    #[serde(default)]
    pub benefits: Vec<Benefit>,
    /// Critical illness insurance (大病保险), one table per coverage.
    #[serde(default)]
    pub critical_illness: Vec<CriticalIllness>,
    /// Medical assistance (医疗救助), one table per assistance category.
    #[serde(default)]
    pub assistance: Vec<Assistance>,
    /// Audit thresholds and risk weights; without the table only the threshold-free rules run.
    pub audit: Option<AuditTable>,
    /// Keys of this table whose numbers the source does not state: key → why the value.
    #[serde(default)]
    pub assumed: BTreeMap<String, String>,
}

/// The smart-audit rules' thresholds (智能审核).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditTable {
    /// A refill is early when more than this many days of the last fill remain.
    pub refill_remaining_days: i32,
    /// Longest prescription, in days of supply.
    pub max_days_supply: i32,
    /// Year-to-date cost per person (yuan) whose crossing raises an early warning.
    pub high_cost_threshold: Number,
    pub max_claims_per_day: u32,
    /// In the trailing seven days (the service day and the six before).
    pub max_claims_per_week: u32,
    /// An amount is an outlier above `median + factor × 1.4826 × MAD` of its group.
    pub outlier_mad_factor: Number,
    /// Smallest (drug, level) group the outlier rule judges.
    pub outlier_min_group: u32,
    /// Risk weight per rule code in 0..1; rules not listed keep the built-in weight.
    #[serde(default)]
    pub weights: BTreeMap<String, Number>,
    #[serde(default)]
    pub assumed: BTreeMap<String, String>,
}

/// The second layer: takes each claim's `critical_illness_base` (the in-scope cost the basic
/// fund left to the person) and pays on the year's cumulative base above its own deductible,
/// at a ratio that rises by band.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriticalIllness {
    /// `resident` or `employee` (supplementary members use the employee table).
    pub coverage: String,
    /// Annual deductible in yuan (大病保险起付线), on the cumulative base.
    pub deductible: Number,
    /// Progressive bands: from `above` yuan of cumulative base over the deductible, `ratio`.
    pub bands: Vec<Band>,
    /// Most it pays a person in a year, in yuan; absent means uncapped.
    pub annual_cap: Option<Number>,
    #[serde(default)]
    pub assumed: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    pub above: Number,
    pub ratio: Number,
}

/// The third layer, for persons in an assistance category: what is still in scope after both
/// insurance layers (deductibles and above-cap cost included) is assisted at `ratio`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assistance {
    /// `destitute`, `minimum_living`, `low_income_edge` or `poverty_monitoring`.
    pub category: String,
    /// Annual deductible in yuan on the assisted base (0 when absent).
    pub deductible: Option<Number>,
    pub ratio: Number,
    /// Most assistance pays a person in a year, in yuan; absent means uncapped.
    pub annual_cap: Option<Number>,
    #[serde(default)]
    pub assumed: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BenefitStart {
    ApprovalDay,
    NextDay,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Benefit {
    /// Benefit family; the output `benefit` is `<name>.<condition>`.
    pub name: String,
    /// `resident`, `employee` or `employee_supplementary`.
    pub coverage: String,
    /// `normal` or `severe`; absent means the benefit serves both.
    pub severity: Option<String>,
    /// `registered_conditions` (the default: pays registered persons' claims for `conditions`)
    /// or `general` (pays every claim of its visit types that no condition benefit pays:
    /// general outpatient 普通门诊, inpatient 住院).
    #[serde(default)]
    pub scope: Scope,
    #[serde(default)]
    pub conditions: Vec<String>,
    /// Visit types the benefit pays for (default outpatient and pharmacy).
    pub visit_types: Option<Vec<String>>,
    /// Deductible in yuan (起付线): one number, or one per institution level.
    pub deductible: Deductible,
    /// `year` (the default: absorbed once a year) or `admission` (per inpatient stay).
    #[serde(default)]
    pub deductible_per: DeductiblePer,
    /// Weihai's two-way referral rules (admission deductibles only).
    pub referral_waiver: Option<ReferralWaiver>,
    /// Name of a deductible this benefit shares with others of the version (Jiaxing employees:
    /// the chronic benefit's deductible is the general-outpatient one): absorbed once a year
    /// across them.
    pub deductible_shared: Option<String>,
    /// Annual cap in yuan (年度最高支付限额); absent means uncapped.
    pub annual_cap: Option<Number>,
    /// `fund` (the cap limits the fund's payment, the default) or `cost`.
    #[serde(default)]
    pub cap_basis: CapBasis,
    /// `benefit` (one cap shared by all the benefit's conditions) or `condition` (one each);
    /// required for condition benefits.
    pub cap_per: Option<CapPer>,
    /// Ratio by institution level; every level must be listed.
    pub ratio: BTreeMap<String, RatioEntry>,
    /// Apply the version's contribution-tier reduction (employee scheme only).
    #[serde(default)]
    pub tier_reduction: bool,
    /// Apply the version's secondary-condition factor.
    #[serde(default)]
    pub secondary_factor: bool,
    #[serde(default)]
    pub assumed: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    #[default]
    RegisteredConditions,
    General,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeductiblePer {
    #[default]
    Year,
    Admission,
}

/// A deductible as written: one amount, or a table by institution level.
#[derive(Debug, Clone, PartialEq)]
pub enum Deductible {
    ByLevel(BTreeMap<String, Number>),
    Amount(Number),
}

impl<'de> Deserialize<'de> for Deductible {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            ByLevel(BTreeMap<String, Number>),
            Amount(Number),
        }
        match Either::deserialize(d) {
            Ok(Either::ByLevel(t)) => Ok(Deductible::ByLevel(t)),
            Ok(Either::Amount(n)) => Ok(Deductible::Amount(n)),
            Err(_) => Err(serde::de::Error::custom(
                "a deductible is an amount in yuan or a table by level, e.g. { primary = 200 }",
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReferralWaiver {
    /// An upward referral inside the medical community, continuing a stay, pays only the
    /// first admission's deductible (当次住院只计算首次起付线): none of its own.
    #[serde(default)]
    pub upward_in_community: bool,
    /// A downward referral pays no deductible (下转 … 取消起付线).
    #[serde(default)]
    pub downward: bool,
    /// The stay an upward referral continues must have ended at most this many days before
    /// the referred stay's discharge (连续性住院); absent: any earlier stay.
    pub within_days: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CapBasis {
    #[default]
    Fund,
    Cost,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CapPer {
    Benefit,
    Condition,
}

/// A level's entry in a ratio table.
#[derive(Debug, Clone, PartialEq)]
pub enum RatioEntry {
    Ratio(Number),
    /// The level is not covered by this benefit.
    NotCovered,
    /// `pharmacy` only: settle at the ratio of the prescriber's level (Ezhou).
    PrescriberLevel,
}

impl<'de> Deserialize<'de> for RatioEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = Number::deserialize(d)?;
        Ok(match n.0.as_str() {
            "not_covered" => RatioEntry::NotCovered,
            "prescriber_level" => RatioEntry::PrescriberLevel,
            _ => RatioEntry::Ratio(n),
        })
    }
}
