//! The domain's small closed vocabularies (institution level, scheme, severity, …) as `u8`
//! enums, with the exact strings the contract uses. Ingest maps strings to these once; the
//! settlement kernel never sees a string.

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order (`ALL[v as usize] == v`).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// How many values there are: the size of a lookup table indexed by this enum.
            pub const COUNT: usize = $name::ALL.len();

            /// The contract's spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the contract's spelling (exact, lower case).
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// Level of the institution that settled the claim (`institution_level`), or of the one that
    /// wrote an external prescription (`prescriber_level`).
    Level {
        /// 基层 / 一级及以下: township and community health centres, village clinics.
        Primary = "primary",
        /// 二级 hospital.
        Secondary = "secondary",
        /// 三级 hospital.
        Tertiary = "tertiary",
        /// 定点零售药店: designated retail pharmacy filling an external prescription.
        Pharmacy = "pharmacy",
    }
}

vocabulary! {
    /// Basic medical-insurance scheme of the person.
    Scheme {
        /// 城乡居民基本医疗保险.
        Resident = "resident",
        /// 职工基本医疗保险.
        Employee = "employee",
    }
}

vocabulary! {
    /// Which benefit table a person is settled on: the scheme, with employee supplementary
    /// (职工补充医保) as its own class because Ezhou settles it *in place of* the employee table.
    Coverage {
        Resident = "resident",
        Employee = "employee",
        EmployeeSupplementary = "employee_supplementary",
    }
}

vocabulary! {
    /// Severity of a chronic-condition registration.
    Severity {
        /// 门诊普通.
        Normal = "normal",
        /// 门诊重症, recognised after an expert review.
        Severe = "severe",
    }
}

vocabulary! {
    /// Kind of transaction.
    VisitType {
        Outpatient = "outpatient",
        Pharmacy = "pharmacy",
        Inpatient = "inpatient",
    }
}

vocabulary! {
    /// A two-way referral (双向转诊) recorded on an inpatient claim (`referral`).
    Referral {
        /// 上转: referred up to a higher-level hospital.
        Upward = "upward",
        /// 下转: referred down for continued recovery or treatment.
        Downward = "downward",
    }
}

vocabulary! {
    /// Medical-assistance category (医疗救助对象).
    AssistanceCategory {
        /// 特困.
        Destitute = "destitute",
        /// 低保.
        MinimumLiving = "minimum_living",
        /// 低保边缘.
        LowIncomeEdge = "low_income_edge",
        /// 防返贫监测.
        PovertyMonitoring = "poverty_monitoring",
    }
}

vocabulary! {
    /// Outcome of a claim (`status` column).
    Status {
        /// The fund paid ratio × cost (possibly 0 inside a deductible).
        Paid = "paid",
        /// The fund paid less than ratio × cost because the annual cap bound.
        Capped = "capped",
        /// No benefit covers the claim; `reason` says why.
        NotCovered = "not_covered",
        /// A refund that cancels an earlier claim.
        Reversal = "reversal",
        /// Not a valid claim; also written to `rejected.parquet`.
        Rejected = "rejected",
    }
}

vocabulary! {
    /// Why a claim was not paid in full (`reason` column). Stable codes: the README documents
    /// each one, and the audit platform keys on them.
    Reason {
        /// The annual cap bound: part or all of the cost is over the cap.
        AnnualCapReached = "annual_cap_reached",
        /// The claim cancels an earlier one.
        ReversesClaim = "reverses_claim",
        /// The person is not in the registry snapshot.
        UnknownPerson = "unknown_person",
        /// The person's registry row has a value the contract does not allow (scheme, tier,
        /// assistance category).
        InvalidPersonRecord = "invalid_person_record",
        /// No policy file covers the person's insured region.
        NoPolicyForRegion = "no_policy_for_region",
        /// The region's policy has no version in force on the service date.
        NoPolicyInForce = "no_policy_in_force",
        /// The main diagnosis is not a condition of any benefit of the policy.
        DiagnosisNotCovered = "diagnosis_not_covered",
        /// The person has no registration for the diagnosed condition.
        NotRegistered = "not_registered",
        /// Service date before the day the registration's benefits start.
        BeforeBenefitStart = "before_benefit_start",
        /// Service date after the registration ended.
        RegistrationEnded = "registration_ended",
        /// The policy requires a signed family doctor (Jiaxing clause 8) and the person has none.
        NoFamilyDoctor = "no_family_doctor",
        /// The policy has no benefit for this person's scheme and severity.
        SchemeNotCovered = "scheme_not_covered",
        /// The benefit pays nothing at this institution level (Jiaxing residents at tertiary).
        LevelNotCovered = "level_not_covered",
        /// A pharmacy claim settled at the prescriber's level has no `prescriber_level`.
        MissingPrescriberLevel = "missing_prescriber_level",
        /// The benefit does not cover this visit type (e.g. an inpatient stay).
        VisitTypeNotCovered = "visit_type_not_covered",
        /// Rejected: a required key column (`claim_id`, `person_id`, …) is null.
        NullKey = "null_key",
        /// Rejected: `in_scope_amount` or `total_amount` is null.
        NullAmount = "null_amount",
        /// Rejected: `in_scope_amount` > `total_amount`.
        InScopeExceedsTotal = "in_scope_exceeds_total",
        /// Rejected: a negative amount on a claim that is not a reversal.
        NegativeAmount = "negative_amount",
        /// Rejected: `institution_level` or `prescriber_level` is not a contract value.
        UnknownLevel = "unknown_level",
        /// Rejected: `visit_type` is not a contract value.
        UnknownVisitType = "unknown_visit_type",
        /// Rejected: `referral` is not a contract value.
        UnknownReferral = "unknown_referral",
        /// Rejected: an amount does not fit the contract's decimal type.
        UnreadableAmount = "unreadable_amount",
        /// Rejected: a `claim_id` seen before (in this run or by an earlier run, in the state).
        DuplicateClaimId = "duplicate_claim_id",
        /// Rejected: a reversal whose original is neither in this run nor in the state.
        OriginalNotFound = "original_not_found",
        /// Rejected: a reversal of a claim already reversed.
        AlreadyReversed = "already_reversed",
        /// Rejected: a reversal whose amounts are not the negatives of its original's.
        ReversalAmountMismatch = "reversal_amount_mismatch",
        /// Rejected: a reversal of a claim that was itself rejected or a reversal.
        OriginalNotReversible = "original_not_reversible",
        /// Rejected: an amount beyond any real claim ([`crate::limits::MAX_CLAIM_FEN`]).
        AmountOutOfRange = "amount_out_of_range",
        /// Rejected: `days_supply` negative or beyond [`crate::limits::MAX_DAYS_SUPPLY`].
        DaysSupplyOutOfRange = "days_supply_out_of_range",
        /// Rejected: an id longer than [`crate::limits::MAX_ID_BYTES`] or holding a control
        /// character.
        InvalidId = "invalid_id",
        /// Rejected: `settled_at` or `service_date` outside 1990-01-01..2100-01-01.
        TimeOutOfRange = "time_out_of_range",
        /// Rejected: the person has more claims in the run than
        /// [`crate::limits::MAX_CLAIMS_PER_PERSON`] (a placeholder id, not a person).
        PersonClaimLimit = "person_claim_limit",
    }
}

vocabulary! {
    /// An audit rule (`anomaly_codes`, `anomalies.parquet`'s `rule`). Stable codes: the README
    /// documents each one with the clause or practice behind it.
    Rule {
        /// Same person and drug refilled while more than the policy's days of the last fill
        /// remain (Ezhou: a continuous prescription is refilled with 15 days or less left).
        EarlyRefill = "early_refill",
        /// `days_supply` over the policy's prescription limit (Ezhou 168, Rizhao 84 days).
        SupplyTooLong = "supply_too_long",
        /// Same person, institution, drug, amount and day as an earlier claim.
        DuplicateClaim = "duplicate_claim",
        /// A chronic-condition diagnosis without a registration; for a person in an assistance
        /// category, Rizhao's positive audit: a benefit missed.
        UnregisteredCondition = "unregistered_condition",
        /// Service before the registration's benefits start.
        BeforeBenefitStart = "before_benefit_start",
        /// Service after the registration ended.
        AfterRegistrationEnd = "after_registration_end",
        /// The benefit's annual cap was already used up.
        CapExhausted = "cap_exhausted",
        /// The person's year-to-date cost passes the policy's early-warning threshold (Weihai).
        HighCost = "high_cost",
        /// A pharmacy claim with no prescriber level: no external prescription behind it.
        PharmacyWithoutPrescription = "pharmacy_without_prescription",
        /// More claims for one person in a day or a week than the policy allows.
        VisitBurst = "visit_burst",
        /// An amount far above its drug's and level's distribution in this batch.
        AmountOutlier = "amount_outlier",
    }
}

impl Status {
    /// A claim that happened and was settled — `paid`, `capped` or `not_covered` — as opposed to
    /// a refund or a rejected row: what counts as an earlier claim, stay or fill.
    pub fn is_settled_claim(self) -> bool {
        matches!(self, Status::Paid | Status::Capped | Status::NotCovered)
    }
}

impl Coverage {
    pub fn of(scheme: Scheme, supplementary: bool) -> Coverage {
        match (scheme, supplementary) {
            (Scheme::Resident, _) => Coverage::Resident,
            (Scheme::Employee, false) => Coverage::Employee,
            (Scheme::Employee, true) => Coverage::EmployeeSupplementary,
        }
    }
}

/// Days since 1970-01-01 (Arrow `Date32`).
pub type Day = i32;

/// Milliseconds since 1970-01-01T00:00:00 (Arrow `Timestamp(ms)`).
pub type Millis = i64;

/// The days of `visit_burst`'s longer window, a claim's service day and the six before it: the
/// furthest the rules look back at a person's earlier claims by date (`duplicate_claim` looks
/// at the same day only).
pub const WEEK_DAYS: Day = 7;

pub const MILLIS_PER_DAY: i64 = 86_400_000;

/// The calendar day of a timestamp.
#[inline]
pub fn day_of(ts: Millis) -> Day {
    ts.div_euclid(MILLIS_PER_DAY) as Day
}

/// Converts a civil date to days since the epoch (Howard Hinnant's algorithm).
pub const fn days_from_civil(year: i32, month: u32, day: u32) -> Day {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u32;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i32 - 719_468
}

/// Converts days since the epoch to `(year, month, day)`.
pub const fn civil_from_days(z: Day) -> (i32, u32, u32) {
    // Saturating: a wild Date32 (a flipped bit) still formats for its error message.
    let z = z.saturating_add(719_468);
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u32;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i32 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The first year of [`YEAR_STARTS`].
const YEAR_STARTS_FROM: i32 = 1900;

/// The first day of each year from 1900 to 2200: settlement and audit take the year of every
/// claim, and a look-up costs less than the calendar arithmetic.
const YEAR_STARTS: [Day; 301] = {
    let mut starts = [0; _];
    let mut i = 0;
    while i < starts.len() {
        starts[i] = days_from_civil(YEAR_STARTS_FROM + i as i32, 1, 1);
        i += 1;
    }
    starts
};

/// The calendar year of a day: the key of year-to-date state.
#[inline]
pub fn year_of(day: Day) -> i32 {
    let last = YEAR_STARTS.len() - 1;
    if day < YEAR_STARTS[0] || day >= YEAR_STARTS[last] {
        return civil_from_days(day).0;
    }
    // A year has at most 366 days, so this is the year or up to one before it.
    let mut i = ((day - YEAR_STARTS[0]) / 366) as usize;
    while YEAR_STARTS[i + 1] <= day {
        i += 1;
    }
    YEAR_STARTS_FROM + i as i32
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<Day> {
    let mut parts = text.trim().splitn(3, '-');
    let y: i32 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Formats a day as `YYYY-MM-DD`.
pub fn format_date(day: Day) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

pub const fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

/// A fixed 64-bit key of an id: FNV-1a over its bytes, finished with MurmurHash3's `fmix64` so
/// that the top bits are well mixed. Person ids are ordered and partitioned by it; the state's
/// claim index stores it beside each claim id. Fixed forever: outputs and state files depend on it.
pub fn stable_key(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_year_of_a_day_is_its_calendar_year() {
        for day in -800_000..800_000 {
            assert_eq!(year_of(day), civil_from_days(day).0, "day {day}");
        }
        assert_eq!(year_of(days_from_civil(2024, 1, 1)), 2024);
        assert_eq!(year_of(days_from_civil(2023, 12, 31)), 2023);
        assert_eq!(year_of(days_from_civil(2200, 1, 1)), 2200);
        assert_eq!(year_of(days_from_civil(1899, 12, 31)), 1899);
    }

    #[test]
    fn vocabulary_round_trips() {
        for level in Level::ALL {
            assert_eq!(Level::parse(level.as_str()), Some(*level));
        }
        assert_eq!(Level::parse("Primary"), None);
        assert_eq!(Level::COUNT, 4);
        assert_eq!(
            Reason::parse("annual_cap_reached"),
            Some(Reason::AnnualCapReached)
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2023, 5, 1), 19_478);
        assert_eq!(civil_from_days(19_478), (2023, 5, 1));
        assert_eq!(parse_date("2024-02-29"), Some(days_from_civil(2024, 2, 29)));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(format_date(19_478), "2023-05-01");
        assert_eq!(year_of(days_from_civil(2023, 12, 31)), 2023);
        assert_eq!(year_of(days_from_civil(2024, 1, 1)), 2024);
        assert_eq!(day_of(-1), -1);
    }
}
