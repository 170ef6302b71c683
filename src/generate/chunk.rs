//! One chunk of the synthetic province: a fixed range of the registry's persons, the claims
//! quota that falls to them, and their registrations, all drawn from RNG streams named by
//! `(seed, chunk index)` alone, so a chunk's rows never depend on which thread built it.
//!
//! A chunk's claimants are of two kinds. Most are *baseline* claimants, whose claims are drawn
//! under constraints that keep every audit rule quiet (see the module doc of `generate`) —
//! unless the month is skewed, which lets the constraints go (module `skewed`). A few
//! are *planted*: each carries one scripted anomaly (module `plant`), and their claims are
//! labelled with the rule they should fire. Reversals and bad rows are drawn from baseline
//! claims only.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Int16Array, Int32Array, RecordBatch,
    StringBuilder, TimestampMillisecondArray,
};

use super::catalogue::{
    drug_catalogue, policy_condition, PolicyFacts, CONDITIONS, DIABETES, DRUGS_PER_CONDITION,
    GENERAL_BUDGET_FEN, HIGH_COST_FEN, HYPERTENSION, INSTITUTIONS, LEVEL_LETTER,
    MAX_CLAIMS_PER_DAY, MAX_CLAIMS_PER_WEEK, NON_CHRONIC_CODES, NON_CHRONIC_DRUGS,
    NON_CHRONIC_MEDIAN_FEN, POLICY_FACTS, REFILL_REMAINING_DAYS, REGIONS,
};
use super::plant::{self, Plant};
use super::rng::{Rng, Weighted};
use super::schema;
use super::skewed;
use super::MonthProfile;
use crate::domain::{
    days_from_civil, days_in_month, AssistanceCategory, Day, Level, Millis, Referral, VisitType,
    MILLIS_PER_DAY,
};
use crate::error::{Error, Result};
use crate::money::apply_ratio;

/// Persons per chunk. Part of the output's definition: changing it changes every file.
pub const CHUNK_PERSONS: u64 = 4096;

/// Reversals per claim row.
const REVERSAL_RATE: f64 = 0.005;
/// One bad row per this many claim rows (at least one from [`BAD_ROWS_FROM`] rows on).
const ROWS_PER_BAD_ROW: u64 = 5000;
const BAD_ROWS_FROM: u64 = 1000;
/// Mean claims per claimant the generator aims for, and the largest share of the registry that
/// claims in one month (reached only when claims are many per person; exceeded only when they
/// are so many that claimants would need more than [`MAX_CLAIMS_PER_PERSON`]).
const CLAIMS_PER_CLAIMANT: f64 = 4.0;
const MAX_CLAIMANT_SHARE: f64 = 0.75;
/// Most claims a baseline claimant makes in a month: with at most three a day and ten a week,
/// more would not fit a month. Only a configuration with more claims than its claimants can
/// take this way (about 27 claims per person of the registry) goes beyond it.
pub const MAX_CLAIMS_PER_PERSON: u32 = 30;
/// A baseline person's month of `total_amount` stays below this (fen), far from the high-cost
/// line; stays are admitted only below [`STAY_ADMIT_BELOW_FEN`] and cut to end below
/// [`STAY_CEILING_FEN`].
const MONTH_CEILING_FEN: i64 = HIGH_COST_FEN / 100 * 79;
const STAY_ADMIT_BELOW_FEN: i64 = 4_000_000;
const STAY_CEILING_FEN: i64 = 6_000_000;

/// RNG streams of a chunk: persons do not depend on the claims count, so a registry stays the
/// same when only `--claims` changes.
const STREAM_PERSONS: u64 = 0;
const STREAM_CLAIMS: u64 = 1;
const STREAMS_PER_CHUNK: u64 = 2;

/// Claims are settled between 07:30 and 21:00 (a person's later claims of a day a few minutes
/// after their earlier ones), so a reversal always fits before month end.
pub(super) const OPENING_MS: Millis = 7 * 3_600_000 + 1_800_000;
pub(super) const OPEN_SPAN_MS: u64 = 13 * 3_600_000 + 1_800_000;
pub(super) const MINUTE_MS: Millis = 60_000;
/// The latest a crowded day's claims are settled (23:00).
const LAST_MS: Millis = 23 * 3_600_000;

/// The whole run's parameters and lookup tables, shared read-only by every chunk.
pub struct Plan {
    pub(super) seed: u64,
    pub(super) profile: MonthProfile,
    persons: u64,
    claims: u64,
    bad_rows: u64,
    /// First day of the month and its length.
    pub(super) month_start: Day,
    pub(super) month_days: u32,
    /// Persons `region_bounds[r]..region_bounds[r + 1]` are insured in `REGIONS[r]`.
    region_bounds: [u64; REGIONS.len() + 1],
    person_digits: usize,
    claim_digits: usize,
    claimant_share: f64,
    drugs: Vec<String>,
    pub(super) tables: Tables,
}

/// Draw tables, built once.
pub(super) struct Tables {
    region: Weighted,
    pub(super) level: Weighted,
    /// Level of the institution that wrote a pharmacy fill's prescription.
    pub(super) prescriber: Weighted,
    other_condition: Weighted,
    pub(super) codes: Vec<Weighted>,
    pub(super) non_chronic: Weighted,
    days_supply: Weighted,
    contribution_tier: Weighted,
    assistance: Weighted,
    /// `[region][condition][code]`: the condition the person's policy diagnoses, if any.
    mapped: Vec<Vec<Vec<Option<&'static str>>>>,
    /// `[region][condition]`: the condition names a patient's registrations carry, so that
    /// every code of the condition the region's policy knows finds one.
    registered: Vec<Vec<Vec<&'static str>>>,
}

/// `Level` order, as `u8`, plus the invalid level a bad row carries.
const QUATERNARY: u8 = 4;
pub(super) const PRIMARY: u8 = Level::Primary as u8;
pub(super) const SECONDARY: u8 = Level::Secondary as u8;
pub(super) const TERTIARY: u8 = Level::Tertiary as u8;
pub(super) const PHARMACY: u8 = Level::Pharmacy as u8;
const DAYS_SUPPLY: [i32; 8] = [7, 14, 28, 30, 56, 84, 0, 0];
/// Long prescriptions: Ezhou allows up to 24 weeks; elsewhere they are planted anomalies.
pub(super) const LONG_SUPPLY: [i32; 4] = [90, 112, 120, 168];
pub(super) const VERY_LONG_SUPPLY: [i32; 4] = [180, 196, 252, 336];
/// Cost relative to a grassroots visit, by `Level`.
pub(super) const LEVEL_COST: [f64; 4] = [0.85, 1.15, 1.5, 1.0];
/// Index of Ezhou, the one region allowing fills above 84 days, in `REGIONS`.
pub(super) const EZHOU: usize = 1;

impl Plan {
    pub fn new(
        persons: u64,
        claims: u64,
        year: i32,
        month: u32,
        seed: u64,
        profile: MonthProfile,
    ) -> Plan {
        let total_weight: u64 = REGIONS.iter().map(|r| r.weight as u64).sum();
        let mut region_bounds = [0u64; REGIONS.len() + 1];
        let mut cumulative = 0u64;
        for (r, region) in REGIONS.iter().enumerate() {
            cumulative += region.weight as u64;
            region_bounds[r + 1] = scale(persons, cumulative, total_weight);
        }
        let largest_region = region_bounds
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(0);
        let bad_rows = if claims >= BAD_ROWS_FROM {
            (claims / ROWS_PER_BAD_ROW).max(1)
        } else {
            0
        };
        // Beyond ~20 claims per person, more of the registry claims, so that no claimant needs
        // more than [`MAX_CLAIMS_PER_PERSON`] (up to ~27 claims per person).
        let claimant_share = if persons == 0 {
            0.0
        } else {
            let per_person = claims as f64 / persons as f64;
            (per_person / CLAIMS_PER_CLAIMANT)
                .min(MAX_CLAIMANT_SHARE)
                .max((per_person / (MAX_CLAIMS_PER_PERSON as f64 * 0.9)).min(1.0))
        };
        let mapped: Vec<Vec<Vec<Option<&'static str>>>> = (0..REGIONS.len())
            .map(|r| {
                CONDITIONS
                    .iter()
                    .map(|c| {
                        c.codes
                            .iter()
                            .map(|(code, _)| policy_condition(r, code))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let registered = mapped
            .iter()
            .map(|by_condition| {
                by_condition
                    .iter()
                    .enumerate()
                    .map(|(c, codes)| {
                        let mut names: Vec<&'static str> = Vec::new();
                        for name in codes.iter().flatten() {
                            if !names.contains(name) {
                                names.push(name);
                            }
                        }
                        // A condition this policy does not know keeps the generator's name.
                        if names.is_empty() {
                            names.push(CONDITIONS[c].id);
                        }
                        names
                    })
                    .collect()
            })
            .collect();
        let tables = Tables {
            region: Weighted::new(&REGIONS.map(|r| r.weight)),
            level: Weighted::new(&[450, 200, 100, 250]),
            prescriber: Weighted::new(&[400, 350, 220]),
            other_condition: Weighted::new(
                &CONDITIONS[2..]
                    .iter()
                    .map(|c| c.other_weight)
                    .collect::<Vec<_>>(),
            ),
            codes: CONDITIONS
                .iter()
                .map(|c| Weighted::new(&c.codes.iter().map(|x| x.1).collect::<Vec<_>>()))
                .collect(),
            non_chronic: Weighted::new(&NON_CHRONIC_CODES.iter().map(|x| x.1).collect::<Vec<_>>()),
            // 7, 14, 28, 30, 56, 84 days, then longer (≈2%, Ezhou only: elsewhere 56 or 84).
            days_supply: Weighted::new(&[80, 120, 300, 258, 100, 120, 20, 2]),
            contribution_tier: Weighted::new(&[800, 120, 80]),
            assistance: Weighted::new(&[15, 45, 20, 20]),
            mapped,
            registered,
        };
        Plan {
            seed,
            profile,
            persons,
            claims,
            bad_rows,
            month_start: days_from_civil(year, month, 1),
            month_days: days_in_month(year, month),
            region_bounds,
            person_digits: digits(largest_region.saturating_sub(1)).max(6),
            claim_digits: digits(claims.saturating_sub(1)).max(10),
            claimant_share,
            drugs: drug_catalogue(),
            tables,
        }
    }

    pub fn chunk_count(&self) -> u64 {
        self.persons.div_ceil(CHUNK_PERSONS)
    }

    /// Claim rows per chunk on average (the wave size is chosen from it).
    pub fn claims_per_chunk(&self) -> u64 {
        self.claims / self.chunk_count().max(1)
    }

    fn chunk_persons(&self, chunk: u64) -> Range<u64> {
        let start = chunk * CHUNK_PERSONS;
        start..(start + CHUNK_PERSONS).min(self.persons)
    }

    /// Claim rows that fall to persons before `person`: spreading the exact total evenly over
    /// chunks keeps every chunk's quota, and so its row numbers, computable in isolation.
    fn claims_before(&self, person: u64) -> u64 {
        scale(self.claims, person, self.persons)
    }

    fn bad_rows_before(&self, claim: u64) -> u64 {
        scale(self.bad_rows, claim, self.claims)
    }

    fn region_of(&self, person: u64) -> usize {
        (0..REGIONS.len())
            .find(|&r| person < self.region_bounds[r + 1])
            .unwrap_or(REGIONS.len() - 1)
    }

    fn month_end_ms(&self) -> Millis {
        (self.month_start as Millis + self.month_days as Millis) * MILLIS_PER_DAY
    }

    /// The registration names of a patient of `condition` insured in `region`.
    pub(super) fn registered_names(&self, region: usize, condition: usize) -> &[&'static str] {
        &self.tables.registered[region][condition]
    }

    /// Whether baseline claims are let go of the clean month's discipline.
    pub(super) fn skewed(&self) -> bool {
        self.profile == MonthProfile::Skewed
    }
}

/// `value × num / den`, floored, without overflow (`den == 0` gives 0).
fn scale(value: u64, num: u64, den: u64) -> u64 {
    if den == 0 {
        0
    } else {
        (value as u128 * num as u128 / den as u128) as u64
    }
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// What one chunk contributes to each file, and its tallies.
pub struct ChunkOutput {
    pub persons: RecordBatch,
    pub registrations: RecordBatch,
    pub claims: RecordBatch,
    pub labels: RecordBatch,
    pub reversals: u64,
    pub bad_rows: u64,
}

/// What settlement and the audit rules read of a person besides claims and registrations.
#[derive(Clone, Copy, Default)]
pub(super) struct Attrs {
    pub employee: bool,
    pub family_doctor: bool,
    pub assisted: bool,
}

/// A claimant (or registered non-claimant) and the habits that shape their claims.
pub(super) struct Profile {
    /// Person index within the chunk.
    pub local: u32,
    pub region: u8,
    /// Chronic conditions claimed for (`CONDITIONS` indices); empty for a claimant with only
    /// everyday diagnoses.
    pub conditions: Vec<u8>,
    preferred_level: u8,
    /// Usual institution per level in the home region.
    pub home: [u16; 4],
    /// Usual drug (catalogue index) per condition.
    pub regular_drug: Vec<u16>,
    /// Person-level cost multiplier: some patients are simply more expensive.
    pub intensity: f64,
    pub claims: u32,
}

pub(super) struct Registration {
    pub local: u32,
    /// The condition as the person's policy names it.
    pub condition: &'static str,
    pub severity: Option<&'static str>,
    pub primary: Option<bool>,
    pub approved_on: Day,
    pub ended_on: Option<Day>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RowKind {
    Normal,
    /// Cancels the row whose `uid` is `link`.
    Reversal,
    Bad(BadKind),
}

/// The kinds of bad row, cycled through in this order across the whole file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BadKind {
    DuplicateClaimId,
    NullClaimId,
    InScopeExceedsTotal,
    NegativeTotal,
    QuaternaryLevel,
    NullPersonId,
}

const BAD_KINDS: [BadKind; 6] = [
    BadKind::DuplicateClaimId,
    BadKind::NullClaimId,
    BadKind::InScopeExceedsTotal,
    BadKind::NegativeTotal,
    BadKind::QuaternaryLevel,
    BadKind::NullPersonId,
];

#[derive(Clone)]
pub(super) struct ClaimRow {
    pub settled_at: Millis,
    /// Creation order: a unique tie-break for sorting and the target of `link`.
    uid: u32,
    /// Index of the claimant's `Profile` in the chunk.
    profile: u32,
    region: u8,
    level: u8,
    institution: u16,
    prescriber: Option<u8>,
    visit: Option<VisitType>,
    service_date: Option<Day>,
    diagnosis: &'static str,
    pub total: i64,
    pub in_scope: i64,
    drug: Option<u16>,
    days_supply: Option<i32>,
    referral: Option<Referral>,
    kind: RowKind,
    /// The original of a reversal, or the row whose claim id a duplicate reuses.
    link: u32,
    /// The audit rule a planted claim should fire.
    pub label: Option<Plant>,
}

/// Builds chunk `chunk` of the province.
pub fn generate(plan: &Plan, chunk: u64) -> Result<ChunkOutput> {
    let persons = plan.chunk_persons(chunk);
    let mut person_rng = Rng::for_stream(plan.seed, chunk * STREAMS_PER_CHUNK + STREAM_PERSONS);
    let mut rng = Rng::for_stream(plan.seed, chunk * STREAMS_PER_CHUNK + STREAM_CLAIMS);
    let count = (persons.end - persons.start) as usize;
    let regions: Vec<u8> = persons.clone().map(|p| plan.region_of(p) as u8).collect();

    let (person_batch, attrs) = person_rows(plan, &persons, &regions, &mut person_rng)?;

    // This chunk's share of the file: rows, of which bad rows and reversals.
    let first_claim = plan.claims_before(persons.start);
    let quota = plan.claims_before(persons.end) - first_claim;
    let first_bad = plan.bad_rows_before(first_claim);
    let bad = plan.bad_rows_before(first_claim + quota) - first_bad;
    let reversals = if quota > bad {
        ((quota as f64 * REVERSAL_RATE + rng.unit()) as u64).min((quota - bad) / 3)
    } else {
        0
    };
    let normal = quota - bad - reversals;

    // Claimants: a random subset of the chunk's persons.
    let claimant_count = if normal == 0 {
        u64::from(bad > 0)
    } else {
        ((count as f64 * plan.claimant_share).round() as u64).clamp(1, normal)
    }
    .min(count as u64) as usize;
    let mut order: Vec<u32> = (0..count as u32).collect();
    for i in 0..claimant_count {
        let j = i + rng.below((count - i) as u64) as usize;
        order.swap(i, j);
    }
    let mut claimant_ids = order[..claimant_count].to_vec();
    claimant_ids.sort_unstable();
    let mut is_claimant = vec![false; count];
    for &c in &claimant_ids {
        is_claimant[c as usize] = true;
    }

    // A few claimants carry a planted anomaly each; the rest are the baseline.
    let scripts = plant::choose(&mut rng, quota, normal, &claimant_ids, &regions, &attrs);
    let mut scripted = vec![false; claimant_count];
    for &(_, i) in &scripts {
        scripted[i] = true;
    }

    let mut registrations = Vec::new();
    let mut profiles: Vec<Profile> = Vec::with_capacity(claimant_count);
    for (i, &local) in claimant_ids.iter().enumerate() {
        if !scripted[i] {
            let profile = new_profile(plan, &mut rng, local, regions[local as usize]);
            let first = registrations.len();
            register(plan, &mut rng, &profile, true, &mut registrations);
            if plan.skewed() {
                skewed::unregister(plan, &mut rng, &profile, &mut registrations, first);
            }
            profiles.push(profile);
        }
    }
    let baseline_profiles = profiles.len();
    // Registered patients who did not claim this month, as in any real registry.
    for local in 0..count as u32 {
        if !is_claimant[local as usize] && rng.chance(0.05) {
            let mut profile = new_profile(plan, &mut rng, local, regions[local as usize]);
            if profile.conditions.is_empty() {
                profile.conditions.push(HYPERTENSION as u8);
            }
            register(plan, &mut rng, &profile, false, &mut registrations);
        }
    }

    // Planted claims first: what they take fixes the baseline's share.
    let mut spend = Spend::default();
    let mut planted: Vec<ClaimRow> = Vec::new();
    for &(kind, i) in &scripts {
        let local = claimant_ids[i];
        let mut profile = new_profile(plan, &mut rng, local, regions[local as usize]);
        spend.reset();
        let index = profiles.len() as u32;
        plant::script(
            plan,
            &mut rng,
            kind,
            &mut profile,
            index,
            attrs[local as usize],
            &mut spend,
            &mut planted,
            &mut registrations,
        );
        profiles.push(profile);
    }
    registrations.sort_by_key(|r| r.local);

    let baseline_claims = normal - planted.len() as u64;
    if plan.skewed() {
        skewed::allocate_claims(
            &mut rng,
            &mut profiles[..baseline_profiles],
            baseline_claims,
        );
    } else {
        allocate_claims(
            &mut rng,
            &mut profiles[..baseline_profiles],
            baseline_claims,
        );
    }

    let mut rows: Vec<ClaimRow> = Vec::with_capacity(quota as usize);
    let mut days = Vec::with_capacity(MAX_CLAIMS_PER_PERSON as usize);
    for (p, profile) in profiles[..baseline_profiles].iter().enumerate() {
        if plan.skewed() {
            skewed::place_days(&mut rng, profile.claims, plan.month_days, &mut days);
        } else {
            place_days(&mut rng, profile.claims, plan.month_days, &mut days);
        }
        spend.reset();
        let person = attrs[profile.local as usize];
        for (j, &day) in days.iter().enumerate() {
            let left = profile.claims - j as u32;
            let row = claim(
                plan, &mut rng, profile, person, &mut spend, p as u32, day, left,
            );
            push_row(&mut rows, row);
        }
    }
    let normal_rows = rows.len();
    // Each baseline original is used at most once, by a reversal or by a duplicate; planted
    // claims are never reversed or copied.
    let mut taken = vec![false; normal_rows];

    for _ in 0..reversals {
        let original = pick_untaken(&mut rng, &mut taken);
        let mut row = rows[original].clone();
        row.settled_at = later_time(plan, &mut rng, row.settled_at);
        row.total = -row.total;
        row.in_scope = -row.in_scope;
        row.kind = RowKind::Reversal;
        row.link = original as u32;
        push_row(&mut rows, row);
    }

    for b in 0..bad {
        let mut kind = BAD_KINDS[((first_bad + b) % BAD_KINDS.len() as u64) as usize];
        if kind == BadKind::DuplicateClaimId && taken.iter().all(|&t| t) {
            kind = BadKind::NullClaimId;
        }
        let mut row = if kind == BadKind::DuplicateClaimId {
            // A resubmission: the same claim again, settled a little later.
            let original = pick_untaken(&mut rng, &mut taken);
            let mut row = rows[original].clone();
            row.settled_at = later_time(plan, &mut rng, row.settled_at);
            row.link = original as u32;
            row
        } else {
            let p = rng.below(baseline_profiles as u64) as usize;
            let day = rng.below(plan.month_days as u64) as u32;
            let person = attrs[profiles[p].local as usize];
            spend.reset();
            claim(
                plan,
                &mut rng,
                &profiles[p],
                person,
                &mut spend,
                p as u32,
                day,
                1,
            )
        };
        match kind {
            BadKind::InScopeExceedsTotal => {
                row.in_scope = row.total + 1 + rng.below(row.total as u64 / 10 + 1) as i64;
            }
            BadKind::NegativeTotal => {
                row.total = -row.total;
                row.in_scope = -row.in_scope;
            }
            BadKind::QuaternaryLevel => row.level = QUATERNARY,
            BadKind::DuplicateClaimId | BadKind::NullClaimId | BadKind::NullPersonId => {}
        }
        row.kind = RowKind::Bad(kind);
        push_row(&mut rows, row);
    }
    for row in planted {
        push_row(&mut rows, row);
    }
    debug_assert_eq!(rows.len() as u64, quota);

    let registration_batch = registration_rows(plan, &persons, &regions, &registrations)?;
    let (claims_batch, labels_batch) =
        claim_rows(plan, &persons, &regions, &profiles, rows, first_claim)?;
    Ok(ChunkOutput {
        persons: person_batch,
        registrations: registration_batch,
        claims: claims_batch,
        labels: labels_batch,
        reversals,
        bad_rows: bad,
    })
}

fn push_row(rows: &mut Vec<ClaimRow>, mut row: ClaimRow) {
    row.uid = rows.len() as u32;
    rows.push(row);
}

/// A random normal row not yet reversed or duplicated. Callers never ask for more than a third
/// of the rows, so rejection sampling ends quickly.
fn pick_untaken(rng: &mut Rng, taken: &mut [bool]) -> usize {
    loop {
        let i = rng.below(taken.len() as u64) as usize;
        if !taken[i] {
            taken[i] = true;
            return i;
        }
    }
}

/// A settlement time after `t` (by a minute to a week) that stays inside the month.
fn later_time(plan: &Plan, rng: &mut Rng, t: Millis) -> Millis {
    let room = plan.month_end_ms() - t - MINUTE_MS;
    let span = room.clamp(1, 7 * MILLIS_PER_DAY);
    t + MINUTE_MS + rng.below(span as u64) as Millis
}

pub(super) fn new_profile(plan: &Plan, rng: &mut Rng, local: u32, region: u8) -> Profile {
    let t = &plan.tables;
    // Most claimants are two-diseases patients (a quarter of them with both), a fifth have
    // another chronic condition (some with hypertension too), and a few claim only for
    // everyday illnesses.
    let mut conditions = Vec::with_capacity(2);
    if rng.chance(0.04) {
        // No chronic condition.
    } else if rng.chance(0.80) {
        match rng.below(100) {
            0..45 => conditions.push(HYPERTENSION as u8),
            45..75 => conditions.push(DIABETES as u8),
            _ => conditions.extend([HYPERTENSION as u8, DIABETES as u8]),
        }
    } else {
        conditions.push(2 + rng.pick(&t.other_condition) as u8);
        if rng.chance(0.3) {
            conditions.push(HYPERTENSION as u8);
        }
    }
    let regular_drug = conditions
        .iter()
        .map(|&c| {
            (c as usize * DRUGS_PER_CONDITION) as u16 + rng.zipf(DRUGS_PER_CONDITION as u64) as u16
        })
        .collect();
    Profile {
        local,
        region,
        conditions,
        preferred_level: rng.pick(&t.level) as u8,
        home: INSTITUTIONS.map(|n| rng.zipf(n) as u16),
        regular_drug,
        intensity: rng.lognormal(1.0, 0.35),
        claims: 0,
    }
}

/// Writes the registrations of `profile`: one per condition it claims for, under the name its
/// region's policy gives the condition, plus now and then one for a condition it does not
/// claim for. A claimant's registrations pay all month (approved a year or more ago, not
/// ended); a non-claimant's may start or end during the month.
fn register(
    plan: &Plan,
    rng: &mut Rng,
    profile: &Profile,
    claimant: bool,
    out: &mut Vec<Registration>,
) {
    let conditions = &profile.conditions;
    let region = profile.region as usize;
    let two_diseases =
        conditions.contains(&(HYPERTENSION as u8)) && conditions.contains(&(DIABETES as u8));
    // Which of hypertension and diabetes a patient with both chose as primary.
    let primary_choice = if rng.chance(0.6) {
        HYPERTENSION
    } else {
        DIABETES
    } as u8;
    for &condition in conditions {
        let primary = if two_diseases
            && (condition as usize == HYPERTENSION || condition as usize == DIABETES)
        {
            Some(condition == primary_choice)
        } else if rng.chance(0.3) {
            Some(true)
        } else {
            None
        };
        for &name in plan.registered_names(region, condition as usize) {
            out.push(registration(
                plan,
                rng,
                profile.local,
                name,
                primary,
                claimant,
            ));
        }
    }
    if rng.chance(0.03) {
        let extra = loop {
            let c = rng.below(CONDITIONS.len() as u64) as u8;
            if !conditions.contains(&c) {
                break c;
            }
        };
        // An unclaimed diabetes registration beside a claimed hypertension one (or the reverse)
        // makes a two-diseases pair: it must not be a second primary.
        let pairs = match extra as usize {
            HYPERTENSION => conditions.contains(&(DIABETES as u8)),
            DIABETES => conditions.contains(&(HYPERTENSION as u8)),
            _ => false,
        };
        let primary = if pairs { Some(false) } else { None };
        let name = plan.registered_names(region, extra as usize)[0];
        out.push(registration(plan, rng, profile.local, name, primary, false));
    }
}

fn registration(
    plan: &Plan,
    rng: &mut Rng,
    local: u32,
    condition: &'static str,
    primary: Option<bool>,
    claimant: bool,
) -> Registration {
    let severity = match rng.below(10) {
        0 => None,
        1 => Some("severe"),
        _ => Some("normal"),
    };
    let month_days = plan.month_days as u64;
    // Mostly approved one to five years ago; a few non-claimants' during the month, so their
    // benefits start mid-month.
    let approved_on = if rng.chance(0.03) && !claimant {
        plan.month_start + rng.below(month_days) as Day
    } else {
        years_ago(plan, rng)
    };
    let ended_on = (rng.chance(0.02) && !claimant).then(|| {
        let from = approved_on.max(plan.month_start);
        let left = (plan.month_start + plan.month_days as Day - from) as u64;
        from + rng.below(left) as Day
    });
    Registration {
        local,
        condition,
        severity,
        primary,
        approved_on,
        ended_on,
    }
}

/// An approval day one to five years before the month.
pub(super) fn years_ago(plan: &Plan, rng: &mut Rng) -> Day {
    plan.month_start - 365 - rng.below(4 * 365 + 1) as Day
}

/// Shares `normal` claims among the claimants: one each, the rest in proportion to a
/// heavy-tailed weight, so many claim once to three times a month and a few twenty times or
/// more — never more than [`MAX_CLAIMS_PER_PERSON`] while any claimant has room.
fn allocate_claims(rng: &mut Rng, profiles: &mut [Profile], normal: u64) {
    if normal == 0 || profiles.is_empty() {
        return;
    }
    let weights: Vec<f64> = profiles
        .iter()
        .map(|p| {
            let w = rng.lognormal(1.0, 1.4).min(30.0);
            if p.conditions.is_empty() {
                w * 0.5
            } else {
                w
            }
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let extra = normal - profiles.len() as u64;
    let room = (MAX_CLAIMS_PER_PERSON - 1) as u64;
    let mut given = 0u64;
    for (p, w) in profiles.iter_mut().zip(&weights) {
        let share = ((extra as f64 * w / total) as u64).min(room);
        p.claims = 1 + share as u32;
        given += share;
    }
    // Floors and the cap leave claims over: hand them out round-robin to claimants with room,
    // and past the cap only when none has any. (Float rounding could in principle overshoot
    // by one instead: take it back the same way.)
    let n = profiles.len();
    let mut k = rng.below(n as u64) as usize;
    let mut past_cap = false;
    while given < extra {
        let mut gave = false;
        for _ in 0..n {
            if given == extra {
                break;
            }
            if past_cap || profiles[k].claims < MAX_CLAIMS_PER_PERSON {
                profiles[k].claims += 1;
                given += 1;
                gave = true;
            }
            k = (k + 1) % n;
        }
        past_cap |= !gave;
    }
    while given > extra {
        if profiles[k].claims > 1 {
            profiles[k].claims -= 1;
            given -= 1;
        }
        k = (k + 1) % n;
    }
}

/// Days (0-based, nondecreasing) for `n` claims, stratified over the month so that a person's
/// claims spread through it, with at most [`MAX_CLAIMS_PER_DAY`] on a day and
/// [`MAX_CLAIMS_PER_WEEK`] in any seven consecutive days. Up to [`MAX_CLAIMS_PER_PERSON`]
/// claims always fit; beyond, the days are spread evenly and may break the limits.
fn place_days(rng: &mut Rng, n: u32, month_days: u32, out: &mut Vec<u32>) {
    out.clear();
    let mut per_day = [0u32; 31];
    let mut last = 0u32;
    let mut fits = true;
    for j in 0..n {
        let target = ((j as f64 + rng.unit()) * month_days as f64 / n as f64) as u32;
        let mut d = target.min(month_days - 1).max(last);
        while d < month_days
            && (per_day[d as usize] >= MAX_CLAIMS_PER_DAY
                || per_day[d.saturating_sub(6) as usize..=d as usize]
                    .iter()
                    .sum::<u32>()
                    >= MAX_CLAIMS_PER_WEEK)
        {
            d += 1;
        }
        if d >= month_days {
            fits = false;
            continue;
        }
        per_day[d as usize] += 1;
        last = d;
        out.push(d);
    }
    if !fits {
        out.clear();
        out.extend((0..n).map(|j| (j as u64 * month_days as u64 / n as u64) as u32));
    }
}

/// The cap pool a claim's in-scope cost counts against, as far as the generator can tell from
/// [`PolicyFacts`]: settlement's own pools are finer, never coarser.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Pool {
    General,
    Inpatient,
    Condition(&'static str),
}

/// Where a claim settles: its condition's benefit when the person's policy diagnoses one, a
/// registration of it pays on the day (`covered`) and the benefit pays this person at this
/// level; else general outpatient (or inpatient for a stay).
pub(super) fn pool_of(
    region: usize,
    person: Attrs,
    mapped: Option<&'static str>,
    covered: bool,
    level: u8,
    prescriber: Option<u8>,
    inpatient: bool,
) -> Pool {
    if inpatient {
        return Pool::Inpatient;
    }
    let facts: &PolicyFacts = &POLICY_FACTS[region];
    let Some(condition) = mapped.filter(|_| covered) else {
        return Pool::General;
    };
    if (person.employee && !facts.employee_condition_benefits)
        || (facts.family_doctor_required && !person.family_doctor)
        || (!person.employee && level == TERTIARY && !facts.resident_tertiary_condition)
        || (level == PHARMACY && prescriber.is_none())
    {
        return Pool::General;
    }
    if facts.shared_condition_cap {
        Pool::Condition(facts.budgets[0].0)
    } else {
        Pool::Condition(condition)
    }
}

/// The in-scope fen a person may spend in `pool` in a month without using up its cap.
pub(super) fn budget_fen(region: usize, employee: bool, pool: Pool) -> i64 {
    let pick = |resident: i64, employee_fen: i64| if employee { employee_fen } else { resident };
    match pool {
        Pool::General => pick(GENERAL_BUDGET_FEN.0, GENERAL_BUDGET_FEN.1),
        Pool::Inpatient => i64::MAX,
        Pool::Condition(c) => POLICY_FACTS[region]
            .budgets
            .iter()
            .find(|b| b.0 == c)
            .map_or(0, |b| pick(b.1, b.2)),
    }
}

/// One earlier claim of the person, as the duplicate rule compares claims.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Seen {
    day: u32,
    region: u8,
    level: u8,
    institution: u16,
    drug: Option<u16>,
    total: i64,
}

/// What a person has claimed so far this month, as the audit rules and the caps see it.
#[derive(Default)]
pub(super) struct Spend {
    /// In-scope fen and claims per pool.
    pools: Vec<(Pool, i64, u32)>,
    /// `total_amount` so far.
    pub total: i64,
    /// Per drug, the first day a next fill of it is not early.
    fills: Vec<(u16, i64)>,
    seen: Vec<Seen>,
    /// Day and settlement time of the latest outpatient or pharmacy claim.
    last: Option<(u32, Millis)>,
}

impl Spend {
    pub fn reset(&mut self) {
        self.pools.clear();
        self.total = 0;
        self.fills.clear();
        self.seen.clear();
        self.last = None;
    }

    /// Whether a fill of `drug` on `day` leaves at most [`REFILL_REMAINING_DAYS`] of the
    /// person's latest earlier fill of it.
    pub fn refill_ok(&self, drug: u16, day: u32) -> bool {
        self.fills
            .iter()
            .find(|(d, _)| *d == drug)
            .is_none_or(|&(_, from)| day as i64 >= from)
    }

    /// A settlement time on `day` after the person's earlier claims of that day: settlement
    /// order is then creation order, which the refill and duplicate rules depend on.
    pub fn time_on(&mut self, plan: &Plan, rng: &mut Rng, day: u32) -> Millis {
        let day_start = (plan.month_start as Millis + day as Millis) * MILLIS_PER_DAY;
        let mut t = day_start + OPENING_MS + rng.below(OPEN_SPAN_MS) as Millis;
        if let Some((d, last)) = self.last {
            if d == day && t <= last {
                t = last + MINUTE_MS + rng.below(20 * MINUTE_MS as u64) as Millis;
            }
        }
        self.last = Some((day, t));
        t
    }

    /// [`Spend::time_on`] for a person with up to hundreds of claims a day: a later claim of
    /// the day follows the latest within a minute, and none is settled after 23:00, so that a
    /// reversal still fits in the month. (Claims at the same millisecond keep their creation
    /// order: claim ids are numbered in it.)
    pub fn crowded_time_on(&mut self, plan: &Plan, rng: &mut Rng, day: u32) -> Millis {
        let day_start = (plan.month_start as Millis + day as Millis) * MILLIS_PER_DAY;
        let mut t = day_start + OPENING_MS + rng.below(OPEN_SPAN_MS) as Millis;
        if let Some((d, last)) = self.last {
            if d == day && t <= last {
                t = (last + 1 + rng.below(MINUTE_MS as u64) as Millis).min(day_start + LAST_MS);
            }
        }
        self.last = Some((day, t));
        t
    }

    /// Marks `t` (on `day`) as the person's latest claim time.
    pub fn settled(&mut self, day: u32, t: Millis) {
        self.last = Some((day, t));
    }

    /// What a claim may take of the pool's `budget`, leaving room for the person's further
    /// claims in the pool: at most 1.5 / (expected claims left in the pool, this one included)
    /// of what is left. Of the `remaining` claims of the person (this one included), the pool
    /// is expected to get the share it got so far (with one claim in and one out assumed).
    pub fn share(&self, pool: Pool, budget: i64, remaining: u32) -> i64 {
        let (spent, claims) = self
            .pools
            .iter()
            .find(|p| p.0 == pool)
            .map_or((0, 0), |p| (p.1, p.2));
        let left = (budget - spent).max(0);
        let so_far = self.seen.len() as f64;
        let expected = remaining as f64 * (claims as f64 + 1.0) / (so_far + 2.0);
        if expected <= 1.0 {
            left
        } else {
            ((left as f64 / expected) as i64).min(left)
        }
    }

    /// Cuts a claim's amounts so that its in-scope cost is within `share` (a claim wholly in
    /// the catalogue stays so) and the month's total stays below the high-cost line.
    pub fn fit(&self, rng: &mut Rng, share: i64, total: i64, in_scope: i64) -> (i64, i64) {
        let (mut total, mut in_scope) = (total, in_scope);
        if in_scope > share {
            let full = in_scope == total;
            let f = share as f64 * (0.85 + 0.15 * rng.unit()) / in_scope as f64;
            total = ((total as f64 * f).round() as i64).max(100);
            in_scope = ((in_scope as f64 * f) as i64).min(total).min(share);
            if full {
                total = in_scope.max(1);
                in_scope = total;
            }
        }
        let room = (MONTH_CEILING_FEN - self.total).max(100);
        if total > room {
            total = room;
            in_scope = in_scope.min(total);
        }
        (total, in_scope)
    }

    /// `total`, raised by a fen at a time until no earlier claim of the person on the day has
    /// the same institution, drug and amount (which would make this one a duplicate).
    fn distinct_total(&self, day: u32, row: &ClaimRow, mut total: i64) -> i64 {
        let same = |s: &Seen| {
            s.day == day
                && s.region == row.region
                && s.level == row.level
                && s.institution == row.institution
                && s.drug == row.drug
        };
        while self.seen.iter().any(|s| same(s) && s.total == total) {
            total += 1;
        }
        total
    }

    /// Counts `row` (service day `day`) against the person's month.
    pub fn record(&mut self, row: &ClaimRow, day: u32, pool: Pool) {
        match self.pools.iter_mut().find(|p| p.0 == pool) {
            Some(p) => {
                p.1 += row.in_scope;
                p.2 += 1;
            }
            None => self.pools.push((pool, row.in_scope, 1)),
        }
        self.total += row.total;
        self.seen.push(Seen {
            day,
            region: row.region,
            level: row.level,
            institution: row.institution,
            drug: row.drug,
            total: row.total,
        });
        if let (Some(drug), Some(supply)) = (row.drug, row.days_supply) {
            let from = day as i64 + supply as i64 - REFILL_REMAINING_DAYS as i64;
            match self.fills.iter_mut().find(|(d, _)| *d == drug) {
                Some((_, f)) => *f = from,
                None if from > day as i64 => self.fills.push((drug, from)),
                None => {}
            }
        }
    }
}

/// A claim's typical total (fen): by condition and supply (`None`: an everyday diagnosis), the
/// patient's intensity and the institution level, with a log-normal spread.
pub(super) fn typical_total(
    rng: &mut Rng,
    condition: Option<usize>,
    intensity: f64,
    level: u8,
    days: i32,
) -> i64 {
    let (median, ceiling) = match condition {
        // Cost grows with the supply dispensed, and with the patient's own intensity.
        Some(c) => (
            CONDITIONS[c].median_fen * intensity * (days as f64 + 10.0) / 40.0,
            CONDITIONS[c].median_fen,
        ),
        None => (NON_CHRONIC_MEDIAN_FEN, NON_CHRONIC_MEDIAN_FEN),
    };
    // The log-normal tail is cut softly at a few times the drug group's typical cost, which
    // keeps the baseline clear of `amount_outlier` (its bar is the group's median plus ten
    // robust standard deviations, with medians lowered by the persons' cap budgets).
    let ceiling = ceiling * TAIL_CEILING;
    let mut total = rng.lognormal(median * LEVEL_COST[level as usize], 0.45);
    if total > ceiling {
        total = ceiling * (0.85 + 0.15 * rng.unit());
    }
    total.max(100.0).round() as i64
}

/// Median fee (fen) of a follow-up visit without a dispensed drug, at a grassroots institution.
const CONSULTATION_FEN: f64 = 1_500.0;

/// Where [`typical_total`] cuts the tail, in multiples of a condition's median 30-day cost.
const TAIL_CEILING: f64 = 2.5;

/// The in-scope part of `total`: a fifth of claims are wholly in the catalogue, the rest have
/// 80–100% in scope.
pub(super) fn in_scope_of(rng: &mut Rng, total: i64) -> i64 {
    if rng.chance(0.2) {
        total
    } else {
        apply_ratio(total, 8_000 + rng.below(2_000) as u32).min(total)
    }
}

/// A drug of the condition whose catalogue drugs start at `base`, `preferred` first, that the
/// person may fill on `day` without an early refill; `None` when all are still in supply.
fn refillable(spend: &Spend, base: u16, preferred: u16, day: u32) -> Option<u16> {
    let n = DRUGS_PER_CONDITION as u16;
    (0..n)
        .map(|k| base + (preferred - base + k) % n)
        .find(|&d| spend.refill_ok(d, day))
}

/// One baseline claim of `profile` on `day` (0-based in the month); `remaining` counts it and
/// the person's later claims.
#[allow(clippy::too_many_arguments)]
fn claim(
    plan: &Plan,
    rng: &mut Rng,
    profile: &Profile,
    person: Attrs,
    spend: &mut Spend,
    profile_index: u32,
    day: u32,
    remaining: u32,
) -> ClaimRow {
    let t = &plan.tables;
    let skewed = plan.skewed();
    let home_region = profile.region as usize;
    let chronic_slot = if profile.conditions.is_empty() || rng.chance(0.06) {
        None
    } else if profile.conditions.len() > 1 && !rng.chance(0.55) {
        Some(1)
    } else {
        Some(0)
    };
    let condition = chronic_slot.map(|s| profile.conditions[s] as usize);
    let (diagnosis, mapped) = match condition {
        Some(c) => {
            let code = rng.pick(&t.codes[c]);
            (CONDITIONS[c].codes[code].0, t.mapped[home_region][c][code])
        }
        None => (NON_CHRONIC_CODES[rng.pick(&t.non_chronic)].0, None),
    };

    let level = if rng.chance(0.6) {
        profile.preferred_level
    } else {
        rng.pick(&t.level) as u8
    };
    // Most care is at home; a few claims are settled in another region (异地就医).
    let region = if rng.chance(0.97) {
        profile.region
    } else {
        loop {
            let r = rng.pick(&t.region) as u8;
            if r != profile.region {
                break r;
            }
        }
    };
    let institution = if region == profile.region && rng.chance(0.7) {
        profile.home[level as usize]
    } else {
        rng.zipf(INSTITUTIONS[level as usize]) as u16
    };

    // Hospitals admit one visit in thirty, grassroots institutions one in a hundred; a person
    // whose month already cost much is not admitted again.
    let inpatient = match level {
        l if l == SECONDARY || l == TERTIARY => rng.chance(1.0 / 30.0),
        l if l == PRIMARY => rng.chance(1.0 / 100.0),
        _ => false,
    } && spend.total < STAY_ADMIT_BELOW_FEN;
    // A stay may come with a two-way referral; an upward one is mostly to a hospital of the
    // person's own medical community (that of their grassroots institution).
    let referral = if inpatient {
        match rng.below(100) {
            0..=11 => Some(Referral::Upward),
            12..=15 => Some(Referral::Downward),
            _ => None,
        }
    } else {
        None
    };
    let institution = if referral == Some(Referral::Upward) && rng.chance(0.8) {
        let community = profile.home[Level::Primary as usize] % COMMUNITIES;
        let span = INSTITUTIONS[level as usize] / COMMUNITIES as u64;
        rng.zipf(span) as u16 * COMMUNITIES + community
    } else {
        institution
    };
    let visit = if level == PHARMACY {
        Some(VisitType::Pharmacy)
    } else if inpatient {
        Some(VisitType::Inpatient)
    } else if rng.chance(0.05) {
        None
    } else {
        Some(VisitType::Outpatient)
    };
    // Every baseline pharmacy fill has its prescription's level; in a skewed month, most do.
    let prescriber = (level == PHARMACY)
        .then(|| rng.pick(&t.prescriber) as u8)
        .filter(|_| !(skewed && rng.chance(skewed::UNPRESCRIBED_FILL)));

    let (settled_at, service_date, drug, days_supply, total) = if inpatient {
        // Settled at discharge or the next morning's batch; service date is the discharge day.
        let settle_day = if day + 1 < plan.month_days && rng.chance(0.5) {
            day + 1
        } else {
            day
        };
        let settled_at = (plan.month_start as Millis + settle_day as Millis) * MILLIS_PER_DAY
            + OPENING_MS
            + rng.below(OPEN_SPAN_MS) as Millis;
        let level_cost = if level == TERTIARY { 1.3 } else { 0.9 };
        // A heavy tail: some stays reach critical illness insurance's deductible, none the
        // high-cost line.
        let level_cost = if level == PRIMARY { 0.4 } else { level_cost };
        let mut total = rng.lognormal(1_300_000.0 * level_cost, 0.6).max(200_000.0) as i64;
        let room = STAY_CEILING_FEN - spend.total;
        if total > room {
            total = (room as f64 * (0.7 + 0.3 * rng.unit())) as i64;
        }
        (
            settled_at,
            Some(plan.month_start + day as Day),
            None,
            None,
            total,
        )
    } else {
        let settled_at = if skewed {
            spend.crowded_time_on(plan, rng, day)
        } else {
            spend.time_on(plan, rng, day)
        };
        let service_date = (!rng.chance(0.05)).then_some(plan.month_start + day as Day);
        let (drug, days) = match (condition, chronic_slot) {
            (Some(c), Some(slot)) => {
                let base = (c * DRUGS_PER_CONDITION) as u16;
                let preferred = if rng.chance(0.8) {
                    profile.regular_drug[slot]
                } else {
                    base + rng.zipf(DRUGS_PER_CONDITION as u64) as u16
                };
                let days = match rng.pick(&t.days_supply) {
                    6 | 7 if home_region == EZHOU => LONG_SUPPLY[rng.below(4) as usize],
                    6 | 7 => [56, 84][rng.below(2) as usize],
                    i => DAYS_SUPPLY[i],
                };
                if skewed {
                    // Whatever is still in supply: refills come when the patient comes.
                    let days = if rng.chance(skewed::LONG_FILL) {
                        skewed::beyond_limit(rng, home_region)
                    } else {
                        days
                    };
                    (Some(preferred), Some(days))
                } else {
                    // A drug still in supply is not refilled early: another of the condition's
                    // drugs is dispensed (or, in the rare case all are, none).
                    match refillable(spend, base, preferred, day) {
                        Some(drug) => (Some(drug), Some(days)),
                        None => (None, None),
                    }
                }
            }
            _ => {
                let drug = (NON_CHRONIC_DRUGS * DRUGS_PER_CONDITION) as u16
                    + rng.zipf(DRUGS_PER_CONDITION as u64) as u16;
                (Some(drug), Some([3, 5, 7][rng.below(3) as usize]))
            }
        };
        let total = typical_total(rng, condition, profile.intensity, level, days.unwrap_or(30));
        (settled_at, service_date, drug, days, total)
    };
    let in_scope = in_scope_of(rng, total);
    let pool = pool_of(
        home_region,
        person,
        mapped,
        true,
        level,
        prescriber,
        inpatient,
    );
    let (mut level, mut region, mut institution, mut visit, mut prescriber) =
        (level, region, institution, visit, prescriber);
    let (mut drug, mut days_supply) = (drug, days_supply);
    // A skewed month keeps no budget: heavy claimants use their caps up.
    let (total, in_scope) = if inpatient || skewed {
        (total, in_scope)
    } else {
        let share = spend.share(
            pool,
            budget_fen(home_region, person.employee, pool),
            remaining,
        );
        if in_scope <= 2 * share {
            spend.fit(rng, share, total, in_scope)
        } else {
            // The person's budget has no room for another fill: a follow-up visit without
            // one (at a pharmacy: at their grassroots institution instead). A drug's amounts
            // are thus never cut by more than half, which would lower its group's median and
            // make ordinary fills of others look like amount outliers.
            if level == PHARMACY {
                (level, region, visit, prescriber) =
                    (PRIMARY, profile.region, Some(VisitType::Outpatient), None);
                institution = profile.home[PRIMARY as usize];
            }
            (drug, days_supply) = (None, None);
            let fee = rng
                .lognormal(CONSULTATION_FEN * LEVEL_COST[level as usize], 0.3)
                .max(100.0)
                .round() as i64;
            let in_scope = in_scope_of(rng, fee).min(share);
            spend.fit(rng, share, fee, in_scope)
        }
    };
    let mut row = ClaimRow {
        settled_at,
        uid: 0,
        profile: profile_index,
        region,
        level,
        institution,
        prescriber,
        visit,
        service_date,
        diagnosis,
        total,
        in_scope,
        drug,
        days_supply,
        referral,
        kind: RowKind::Normal,
        link: 0,
        label: None,
    };
    row.total = spend.distinct_total(day, &row, row.total);
    spend.record(&row, day, pool);
    row
}

/// How a planted claim's amounts are drawn.
#[derive(Clone, Copy)]
pub(super) enum Amount {
    /// Typical for its drug and level, and cut to the person's budget like a baseline claim.
    Budgeted,
    /// Typical, uncut (the claim's pool is used up anyway).
    Typical,
    Fixed {
        total: i64,
        in_scope: i64,
    },
}

/// A planted claim, as a script describes it.
#[derive(Clone, Copy)]
pub(super) struct Spec {
    pub day: u32,
    pub diagnosis: &'static str,
    /// `CONDITIONS` index of the diagnosis, `None` for an everyday one: sets the typical cost.
    pub condition: Option<usize>,
    /// A registration of the diagnosed condition pays on `day`.
    pub covered: bool,
    pub level: u8,
    pub inpatient: bool,
    /// A pharmacy fill carries its prescriber's level.
    pub prescriber: bool,
    pub drug: Option<u16>,
    pub days_supply: Option<i32>,
    pub amount: Amount,
    pub label: Option<Plant>,
}

impl Spec {
    /// An outpatient (or, at a pharmacy, prescribed) claim with typical, budgeted amounts.
    pub fn new(day: u32, diagnosis: &'static str, condition: Option<usize>, level: u8) -> Spec {
        Spec {
            day,
            diagnosis,
            condition,
            covered: true,
            level,
            inpatient: false,
            prescriber: true,
            drug: None,
            days_supply: None,
            amount: Amount::Budgeted,
            label: None,
        }
    }
}

/// Writes a planted claim of `profile` (at its home institution of the level, in its home
/// region, service date set) and counts it against the person's month. Returns the claim and
/// its pool.
#[allow(clippy::too_many_arguments)]
pub(super) fn emit(
    plan: &Plan,
    rng: &mut Rng,
    profile: &Profile,
    profile_index: u32,
    person: Attrs,
    spend: &mut Spend,
    spec: &Spec,
    remaining: u32,
) -> (ClaimRow, Pool) {
    let region = profile.region as usize;
    let level = spec.level;
    let prescriber =
        (level == PHARMACY && spec.prescriber).then(|| rng.pick(&plan.tables.prescriber) as u8);
    let visit = if level == PHARMACY {
        VisitType::Pharmacy
    } else if spec.inpatient {
        VisitType::Inpatient
    } else {
        VisitType::Outpatient
    };
    let settled_at = if spec.inpatient {
        let settle_day = if spec.day + 1 < plan.month_days && rng.chance(0.5) {
            spec.day + 1
        } else {
            spec.day
        };
        (plan.month_start as Millis + settle_day as Millis) * MILLIS_PER_DAY
            + OPENING_MS
            + rng.below(OPEN_SPAN_MS) as Millis
    } else {
        spend.time_on(plan, rng, spec.day)
    };
    let pool = pool_of(
        region,
        person,
        policy_condition(region, spec.diagnosis),
        spec.covered,
        level,
        prescriber,
        spec.inpatient,
    );
    let (total, in_scope) = match spec.amount {
        Amount::Fixed { total, in_scope } => (total, in_scope),
        Amount::Budgeted | Amount::Typical => {
            // A planted long fill costs like an 84-day one, so that it is no amount outlier.
            let days = spec.days_supply.unwrap_or(30).min(84);
            let total = typical_total(rng, spec.condition, profile.intensity, level, days);
            let in_scope = in_scope_of(rng, total);
            if matches!(spec.amount, Amount::Budgeted) {
                let budget = budget_fen(region, person.employee, pool);
                let share = spend.share(pool, budget, remaining);
                spend.fit(rng, share, total, in_scope)
            } else {
                (total, in_scope)
            }
        }
    };
    let mut row = ClaimRow {
        settled_at,
        uid: 0,
        profile: profile_index,
        region: profile.region,
        level,
        institution: profile.home[level as usize],
        prescriber,
        visit: Some(visit),
        service_date: Some(plan.month_start + spec.day as Day),
        diagnosis: spec.diagnosis,
        total,
        in_scope,
        drug: spec.drug,
        days_supply: spec.days_supply,
        referral: None,
        kind: RowKind::Normal,
        link: 0,
        label: spec.label,
    };
    row.total = spend.distinct_total(spec.day, &row, row.total);
    spend.record(&row, spec.day, pool);
    (row, pool)
}

/// A resubmission of `row` (a planted claim on `day`) under a new claim id a little later the
/// same day: the `duplicate_claim` plant.
pub(super) fn resubmit(
    rng: &mut Rng,
    spend: &mut Spend,
    row: &ClaimRow,
    day: u32,
    pool: Pool,
) -> ClaimRow {
    let mut copy = row.clone();
    copy.settled_at = row.settled_at + MINUTE_MS + rng.below(60 * MINUTE_MS as u64) as Millis;
    copy.label = Some(Plant::DuplicateClaim);
    spend.settled(day, copy.settled_at);
    spend.record(&copy, day, pool);
    copy
}

/// Medical communities (医共体) per region: an institution's is its number modulo this; one
/// number in [`OUTSIDE_COMMUNITY`] belongs to none.
const COMMUNITIES: u16 = 6;
const OUTSIDE_COMMUNITY: u16 = 7;

/// The medical community of a non-pharmacy institution, if it belongs to one.
fn community_of(institution: u16) -> Option<u16> {
    (!institution.is_multiple_of(OUTSIDE_COMMUNITY)).then_some(institution % COMMUNITIES)
}

/// Appends `P` + region + the person's number within the region.
fn person_id(plan: &Plan, buf: &mut String, person: u64, region: usize) {
    buf.clear();
    buf.push('P');
    buf.push_str(REGIONS[region].code);
    push_padded(buf, person - plan.region_bounds[region], plan.person_digits);
}

fn push_padded(buf: &mut String, n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    for _ in len..width {
        buf.push('0');
    }
    for &d in &digits[i..] {
        buf.push(d as char);
    }
}

fn batch(
    schema: arrow::datatypes::SchemaRef,
    columns: Vec<ArrayRef>,
    what: &str,
) -> Result<RecordBatch> {
    RecordBatch::try_new(schema, columns).map_err(|e| Error::arrow(format!("generate: {what}"), e))
}

fn person_rows(
    plan: &Plan,
    persons: &Range<u64>,
    regions: &[u8],
    rng: &mut Rng,
) -> Result<(RecordBatch, Vec<Attrs>)> {
    let t = &plan.tables;
    let n = regions.len();
    let mut ids = StringBuilder::with_capacity(n, n * 16);
    let mut region_col = StringBuilder::with_capacity(n, n * 6);
    let mut scheme = StringBuilder::with_capacity(n, n * 8);
    let mut supplementary = Vec::with_capacity(n);
    let mut tier = Vec::with_capacity(n);
    let mut assistance = StringBuilder::with_capacity(n, n * 4);
    let mut family_doctor = Vec::with_capacity(n);
    let mut attrs = Vec::with_capacity(n);
    let mut buf = String::with_capacity(24);
    for (person, &region) in persons.clone().zip(regions) {
        let region = region as usize;
        let mut a = Attrs::default();
        person_id(plan, &mut buf, person, region);
        ids.append_value(&buf);
        region_col.append_value(REGIONS[region].code);
        if rng.chance(0.30) {
            a.employee = true;
            scheme.append_value("employee");
            supplementary.push(Some(rng.chance(0.30)));
            tier.push(
                (!rng.chance(0.05)).then(|| [100i16, 80, 60][rng.pick(&t.contribution_tier)]),
            );
            assistance.append_null();
        } else {
            scheme.append_value("resident");
            supplementary.push(rng.chance(0.05).then_some(false));
            tier.push(None);
            if rng.chance(0.05) {
                a.assisted = true;
                assistance.append_value(AssistanceCategory::ALL[rng.pick(&t.assistance)].as_str());
            } else {
                assistance.append_null();
            }
        }
        let signed = match rng.below(100) {
            0..75 => Some(true),
            75..95 => Some(false),
            _ => None,
        };
        a.family_doctor = signed == Some(true);
        family_doctor.push(signed);
        attrs.push(a);
    }
    let batch = batch(
        schema::persons(),
        vec![
            Arc::new(ids.finish()),
            Arc::new(region_col.finish()),
            Arc::new(scheme.finish()),
            Arc::new(BooleanArray::from(supplementary)),
            Arc::new(Int16Array::from(tier)),
            Arc::new(assistance.finish()),
            Arc::new(BooleanArray::from(family_doctor)),
        ],
        "persons",
    )?;
    Ok((batch, attrs))
}

fn registration_rows(
    plan: &Plan,
    persons: &Range<u64>,
    regions: &[u8],
    registrations: &[Registration],
) -> Result<RecordBatch> {
    let n = registrations.len();
    let mut ids = StringBuilder::with_capacity(n, n * 16);
    let mut condition = StringBuilder::with_capacity(n, n * 12);
    let mut severity = StringBuilder::with_capacity(n, n * 6);
    let mut buf = String::with_capacity(24);
    for r in registrations {
        person_id(
            plan,
            &mut buf,
            persons.start + r.local as u64,
            regions[r.local as usize] as usize,
        );
        ids.append_value(&buf);
        condition.append_value(r.condition);
        severity.append_option(r.severity);
    }
    batch(
        schema::registrations(),
        vec![
            Arc::new(ids.finish()),
            Arc::new(condition.finish()),
            Arc::new(severity.finish()),
            Arc::new(BooleanArray::from_iter(
                registrations.iter().map(|r| r.primary),
            )),
            Arc::new(Date32Array::from_iter_values(
                registrations.iter().map(|r| r.approved_on),
            )),
            Arc::new(Date32Array::from_iter(
                registrations.iter().map(|r| r.ended_on),
            )),
        ],
        "registrations",
    )
}

fn claim_rows(
    plan: &Plan,
    persons: &Range<u64>,
    regions: &[u8],
    profiles: &[Profile],
    mut rows: Vec<ClaimRow>,
    first_claim: u64,
) -> Result<(RecordBatch, RecordBatch)> {
    // File order is settlement order within the chunk: an original always precedes its
    // reversal or duplicate, which are settled strictly later.
    let by_uid_len = rows.len();
    rows.sort_unstable_by_key(|r| (r.settled_at, r.uid));
    let mut position = vec![0u64; by_uid_len];
    for (pos, row) in rows.iter().enumerate() {
        position[row.uid as usize] = pos as u64;
    }
    let claim_id = |buf: &mut String, region: u8, pos: u64| {
        buf.clear();
        buf.push('C');
        buf.push_str(REGIONS[region as usize].code);
        push_padded(buf, first_claim + pos, plan.claim_digits);
    };

    let n = rows.len();
    let mut ids = StringBuilder::with_capacity(n, n * 18);
    let mut person_ids = StringBuilder::with_capacity(n, n * 16);
    let mut region = StringBuilder::with_capacity(n, n * 6);
    let mut institution = StringBuilder::with_capacity(n, n * 12);
    let mut level = StringBuilder::with_capacity(n, n * 8);
    let mut prescriber = StringBuilder::with_capacity(n, n * 4);
    let mut visit = StringBuilder::with_capacity(n, n * 9);
    let mut diagnosis = StringBuilder::with_capacity(n, n * 5);
    let mut drug = StringBuilder::with_capacity(n, n * 23);
    let mut reverses = StringBuilder::with_capacity(n / 100, n / 100 * 18);
    let mut referral = StringBuilder::with_capacity(n / 100, n / 100 * 8);
    let mut community = StringBuilder::with_capacity(n, n * 9);
    let mut label_ids = StringBuilder::new();
    let mut label_rules = StringBuilder::new();
    let mut buf = String::with_capacity(32);
    for (pos, row) in rows.iter().enumerate() {
        match row.kind {
            RowKind::Bad(BadKind::NullClaimId) => ids.append_null(),
            RowKind::Bad(BadKind::DuplicateClaimId) => {
                claim_id(&mut buf, row.region, position[row.link as usize]);
                ids.append_value(&buf);
            }
            _ => {
                claim_id(&mut buf, row.region, pos as u64);
                ids.append_value(&buf);
                if let Some(plant) = row.label {
                    label_ids.append_value(&buf);
                    label_rules.append_value(plant.code());
                }
            }
        }
        if row.kind == RowKind::Bad(BadKind::NullPersonId) {
            person_ids.append_null();
        } else {
            let local = profiles[row.profile as usize].local;
            person_id(
                plan,
                &mut buf,
                persons.start + local as u64,
                regions[local as usize] as usize,
            );
            person_ids.append_value(&buf);
        }
        let code = REGIONS[row.region as usize].code;
        region.append_value(code);
        // Institution ids keep the level the institution really has, even on a bad row.
        let home_level = if row.level == QUATERNARY {
            Level::Tertiary as usize
        } else {
            row.level as usize
        };
        buf.clear();
        buf.push(if home_level == PHARMACY as usize {
            'D'
        } else {
            'H'
        });
        buf.push_str(code);
        buf.push(LEVEL_LETTER[home_level]);
        push_padded(&mut buf, row.institution as u64, 4);
        institution.append_value(&buf);
        level.append_value(if row.level == QUATERNARY {
            "quaternary"
        } else {
            Level::ALL[row.level as usize].as_str()
        });
        prescriber.append_option(row.prescriber.map(|p| Level::ALL[p as usize].as_str()));
        visit.append_option(row.visit.map(VisitType::as_str));
        diagnosis.append_value(row.diagnosis);
        drug.append_option(row.drug.map(|d| plan.drugs[d as usize].as_str()));
        if row.kind == RowKind::Reversal {
            claim_id(&mut buf, row.region, position[row.link as usize]);
            reverses.append_value(&buf);
        } else {
            reverses.append_null();
        }
        referral.append_option(row.referral.map(Referral::as_str));
        match community_of(row.institution).filter(|_| home_level != PHARMACY as usize) {
            Some(c) => {
                buf.clear();
                buf.push('M');
                buf.push_str(code);
                push_padded(&mut buf, c as u64, 2);
                community.append_value(&buf);
            }
            None => community.append_null(),
        }
    }
    let money = |values: Vec<i128>, what: &str| {
        Decimal128Array::from(values)
            .with_precision_and_scale(18, 2)
            .map_err(|e| Error::arrow(format!("generate: {what}"), e))
    };
    let total = money(
        rows.iter().map(|r| r.total as i128).collect(),
        "total_amount",
    )?;
    let in_scope = money(
        rows.iter().map(|r| r.in_scope as i128).collect(),
        "in_scope_amount",
    )?;
    let claims = batch(
        schema::claims(),
        vec![
            Arc::new(ids.finish()),
            Arc::new(person_ids.finish()),
            Arc::new(region.finish()),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.settled_at),
            )),
            Arc::new(Date32Array::from_iter(rows.iter().map(|r| r.service_date))),
            Arc::new(institution.finish()),
            Arc::new(level.finish()),
            Arc::new(prescriber.finish()),
            Arc::new(visit.finish()),
            Arc::new(diagnosis.finish()),
            Arc::new(total),
            Arc::new(in_scope),
            Arc::new(drug.finish()),
            Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.days_supply))),
            Arc::new(reverses.finish()),
            Arc::new(referral.finish()),
            Arc::new(community.finish()),
        ],
        "claims",
    )?;
    let labels = batch(
        schema::labels(),
        vec![Arc::new(label_ids.finish()), Arc::new(label_rules.finish())],
        "labels",
    )?;
    Ok((claims, labels))
}
