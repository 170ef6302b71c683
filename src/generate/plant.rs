//! Planted anomalies: claimants whose month is a short script that makes exactly one audit
//! rule fire, at fixed rates, with the claims it should flag written to `labels.parquet`.
//!
//! Each script is one person, chosen among a chunk's claimants, whose whole month (claims and
//! registrations) the script writes; nothing else touches it (no reversal, no bad row copies
//! it), so what fires on it is what the script meant. Apart from its anomaly a script keeps
//! the baseline's discipline: drugs that are not refilled early, in-scope cost within the
//! person's cap budgets, at most three claims a day, a month's cost far from the high-cost
//! line, a prescriber level on every pharmacy fill. Scripts use hypertension and diabetes,
//! which every region's policy names alike.

use super::catalogue::{
    CONDITIONS, DIABETES, DRUGS_PER_CONDITION, HIGH_COST_FEN, HYPERTENSION, NON_CHRONIC_CODES,
    NON_CHRONIC_DRUGS, POLICY_FACTS,
};
use super::chunk::{
    emit, resubmit, years_ago, Amount, Attrs, ClaimRow, Plan, Profile, Registration, Spec, Spend,
    EZHOU, LEVEL_COST, LONG_SUPPLY, PHARMACY, PRIMARY, SECONDARY, TERTIARY, VERY_LONG_SUPPLY,
};
use super::rng::Rng;
use crate::domain::Day;
use crate::money::apply_ratio;

/// Index of Rizhao in `REGIONS`: its benefits start the day after approval, and its assisted
/// persons' unregistered chronic claims are the "missed benefit" case.
const RIZHAO: usize = 3;

/// An audit rule a planted claim should fire (`labels.parquet`'s `rule`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Plant {
    EarlyRefill,
    SupplyTooLong,
    DuplicateClaim,
    UnregisteredCondition,
    BeforeBenefitStart,
    AfterRegistrationEnd,
    CapExhausted,
    HighCost,
    PharmacyWithoutPrescription,
    VisitBurst,
    AmountOutlier,
}

impl Plant {
    pub const ALL: [Plant; 11] = [
        Plant::EarlyRefill,
        Plant::SupplyTooLong,
        Plant::DuplicateClaim,
        Plant::UnregisteredCondition,
        Plant::BeforeBenefitStart,
        Plant::AfterRegistrationEnd,
        Plant::CapExhausted,
        Plant::HighCost,
        Plant::PharmacyWithoutPrescription,
        Plant::VisitBurst,
        Plant::AmountOutlier,
    ];

    /// The rule's code, as the engine's `anomaly_codes` spell it.
    pub fn code(self) -> &'static str {
        match self {
            Plant::EarlyRefill => "early_refill",
            Plant::SupplyTooLong => "supply_too_long",
            Plant::DuplicateClaim => "duplicate_claim",
            Plant::UnregisteredCondition => "unregistered_condition",
            Plant::BeforeBenefitStart => "before_benefit_start",
            Plant::AfterRegistrationEnd => "after_registration_end",
            Plant::CapExhausted => "cap_exhausted",
            Plant::HighCost => "high_cost",
            Plant::PharmacyWithoutPrescription => "pharmacy_without_prescription",
            Plant::VisitBurst => "visit_burst",
            Plant::AmountOutlier => "amount_outlier",
        }
    }

    /// Scripts per claim row (a chunk plants `quota × rate`, stochastically rounded). With the
    /// labels each script writes (see `script`) every rule gets 0.15–0.21% of claims.
    pub const fn rate(self) -> f64 {
        match self {
            Plant::EarlyRefill | Plant::SupplyTooLong | Plant::DuplicateClaim => 0.0020,
            Plant::UnregisteredCondition => 0.0010,
            Plant::BeforeBenefitStart | Plant::AfterRegistrationEnd => 0.0013,
            Plant::CapExhausted | Plant::VisitBurst => 0.0007,
            Plant::HighCost | Plant::AmountOutlier => 0.0015,
            Plant::PharmacyWithoutPrescription => 0.0013,
        }
    }

    /// The most claims a script of this kind writes.
    const fn max_claims(self) -> u64 {
        match self {
            Plant::SupplyTooLong => 2,
            Plant::CapExhausted => 5,
            Plant::VisitBurst => 9,
            _ => 3,
        }
    }
}

/// Which claimants (indices into `claimants`) carry which plant. Kinds take turns, so that a
/// chunk too small for all its scripts still gets some of every kind; scripts take at most a
/// quarter of the claimants, a fifth of the claims and a third of the claims beyond one per
/// claimant, and none when there are fewer than eight claimants.
pub(super) fn choose(
    rng: &mut Rng,
    quota: u64,
    normal: u64,
    claimants: &[u32],
    regions: &[u8],
    attrs: &[Attrs],
) -> Vec<(Plant, usize)> {
    let wanted: Vec<u64> = Plant::ALL
        .iter()
        .map(|p| (quota as f64 * p.rate() + rng.unit()) as u64)
        .collect();
    let n = claimants.len();
    let mut out = Vec::new();
    if n < 8 || normal < n as u64 {
        return out;
    }
    let (max_persons, max_extra, max_claims) = (n / 4, (normal - n as u64) / 3, normal / 5);
    let (mut extra, mut claims) = (0u64, 0u64);
    let mut used = vec![false; n];
    let mut round = 0;
    'rounds: loop {
        let mut any = false;
        for (k, &plant) in Plant::ALL.iter().enumerate() {
            if wanted[k] <= round {
                continue;
            }
            any = true;
            let m = plant.max_claims();
            if out.len() >= max_persons || extra + m - 1 > max_extra || claims + m > max_claims {
                break 'rounds;
            }
            let i = pick(rng, plant, round, claimants, regions, attrs, &mut used);
            out.push((plant, i));
            extra += m - 1;
            claims += m;
        }
        if !any {
            break;
        }
        round += 1;
    }
    out
}

/// An unused claimant for the `nth` script of `plant`, preferring the persons a kind is
/// meant to cover: for the unregistered conditions, assisted persons in Rizhao (else assisted
/// ones) for a quarter of the scripts, assisted persons for another quarter and unassisted ones
/// for the rest; Rizhao persons for a third of the early claims; Ezhou persons (limit 168 days)
/// for a quarter of the long fills and of the unprescribed pharmacy fills. (Chunks hold
/// consecutive persons, who are mostly of one region: regional preferences matter only in
/// small registries.)
fn pick(
    rng: &mut Rng,
    plant: Plant,
    nth: u64,
    claimants: &[u32],
    regions: &[u8],
    attrs: &[Attrs],
    used: &mut [bool],
) -> usize {
    // How well claimant `i` fits, 0 to `BEST`.
    const BEST: u8 = 2;
    let fit = |i: usize| -> u8 {
        let local = claimants[i] as usize;
        let (region, person) = (regions[local] as usize, attrs[local]);
        let yes = |b: bool| if b { BEST } else { 0 };
        match plant {
            Plant::UnregisteredCondition => match nth % 4 {
                0 => u8::from(person.assisted) + u8::from(person.assisted && region == RIZHAO),
                1 => yes(person.assisted),
                _ => yes(!person.assisted),
            },
            Plant::BeforeBenefitStart => yes(!nth.is_multiple_of(3) || region == RIZHAO),
            Plant::SupplyTooLong | Plant::PharmacyWithoutPrescription => {
                yes(!nth.is_multiple_of(4) || region == EZHOU)
            }
            _ => BEST,
        }
    };
    let n = claimants.len();
    let start = rng.below(n as u64) as usize;
    let mut best: Option<(u8, usize)> = None;
    for k in 0..n {
        let i = (start + k) % n;
        if used[i] {
            continue;
        }
        let f = fit(i);
        if best.is_none_or(|(b, _)| f > b) {
            best = Some((f, i));
            if f == BEST {
                break;
            }
        }
    }
    let (_, i) = best.expect("scripts take at most a quarter of the claimants");
    used[i] = true;
    i
}

/// Distinct drugs of one catalogue group, from a random start: a script's fills never repeat
/// a drug unless it means to.
struct Drugs {
    base: u16,
    next: u16,
}

impl Drugs {
    fn new(rng: &mut Rng, group: usize) -> Drugs {
        Drugs {
            base: (group * DRUGS_PER_CONDITION) as u16,
            next: rng.below(DRUGS_PER_CONDITION as u64) as u16,
        }
    }

    fn take(&mut self) -> u16 {
        let d = self.base + self.next % DRUGS_PER_CONDITION as u16;
        self.next += 1;
        d
    }
}

/// Uniform in `lo..=hi`.
fn day_in(rng: &mut Rng, lo: u32, hi: u32) -> u32 {
    lo + rng.below((hi - lo + 1) as u64) as u32
}

/// Up to `n` distinct days in `lo..=hi` not in `avoid`, ascending.
fn days_in(rng: &mut Rng, n: u32, lo: u32, hi: u32, avoid: &[u32]) -> Vec<u32> {
    let mut free: Vec<u32> = (lo..=hi).filter(|d| !avoid.contains(d)).collect();
    let n = (n as usize).min(free.len());
    for i in 0..n {
        let j = i + rng.below((free.len() - i) as u64) as usize;
        free.swap(i, j);
    }
    free.truncate(n);
    free.sort_unstable();
    free
}

fn chronic_code(plan: &Plan, rng: &mut Rng, c: usize) -> &'static str {
    CONDITIONS[c].codes[rng.pick(&plan.tables.codes[c])].0
}

fn everyday_code(plan: &Plan, rng: &mut Rng) -> &'static str {
    NON_CHRONIC_CODES[rng.pick(&plan.tables.non_chronic)].0
}

/// An everyday visit or prescribed pharmacy fill on `day`.
fn everyday(plan: &Plan, rng: &mut Rng, drugs: &mut Drugs, day: u32) -> Spec {
    let level = rng.pick(&plan.tables.level) as u8;
    Spec {
        drug: Some(drugs.take()),
        days_supply: Some([3, 5, 7][rng.below(3) as usize]),
        ..Spec::new(day, everyday_code(plan, rng), None, level)
    }
}

/// A registration of `condition` approved on `approved_on`, ending on `ended_on`.
fn registration(
    profile: &Profile,
    condition: &'static str,
    approved_on: Day,
    ended_on: Option<Day>,
) -> Registration {
    Registration {
        local: profile.local,
        condition,
        severity: Some("normal"),
        primary: None,
        approved_on,
        ended_on,
    }
}

/// Writes the month of planted claimant `profile` (profile index `index`): its registrations
/// into `registrations` and its claims, labelled, into `rows`.
///
/// | kind | claims | labelled |
/// |---|---|---|
/// | early_refill | a 28–56-day fill, the same drug 1 to `supply − 16` days later, maybe an everyday visit | the refill |
/// | supply_too_long | a fill over the region's limit (costed as 84 days), maybe another fill | the long fill |
/// | duplicate_claim | a claim (supply ≤ 14 days), its copy under a new id later that day, maybe another | the copy |
/// | unregistered_condition | 1–3 chronic claims without any registration of the condition | all |
/// | before_benefit_start | 1–2 claims before a mid-month registration pays (Rizhao: on the approval day too), maybe one after | those before |
/// | after_registration_end | 1–2 claims after the registration's last day, maybe one up to it | those after |
/// | cap_exhausted | a 20,000–30,000-yuan in-scope visit (no drug), then 2–4 fills of the same diagnosis at the same level | the 2–4 later ones |
/// | high_cost | a 100,000–160,000-yuan stay, up to 2 everyday visits | the stay |
/// | pharmacy_without_prescription | 1–2 pharmacy fills without a prescriber level, maybe a visit | the fills |
/// | visit_burst | 5–7 claims on one day, up to 2 on other days | the 4th and later of the day |
/// | amount_outlier | up to 2 everyday visits, then, last, a fill of its condition's first drug at 27–36 × its typical cost | the fill |
#[allow(clippy::too_many_arguments)]
pub(super) fn script(
    plan: &Plan,
    rng: &mut Rng,
    kind: Plant,
    profile: &mut Profile,
    index: u32,
    person: Attrs,
    spend: &mut Spend,
    rows: &mut Vec<ClaimRow>,
    registrations: &mut Vec<Registration>,
) {
    let d = plan.month_days;
    let region = profile.region as usize;
    let c = if rng.chance(0.6) {
        HYPERTENSION
    } else {
        DIABETES
    };
    let other = if c == HYPERTENSION {
        DIABETES
    } else {
        HYPERTENSION
    };
    let name = plan.registered_names(region, c)[0];
    let regular = (c * DRUGS_PER_CONDITION) as u16 + rng.zipf(DRUGS_PER_CONDITION as u64) as u16;
    profile.conditions = vec![c as u8];
    profile.regular_drug = vec![regular];
    let mut chronic = Drugs::new(rng, c);
    let mut common = Drugs::new(rng, NON_CHRONIC_DRUGS);
    let active = |rng: &mut Rng| registration(profile, name, years_ago(plan, rng), None);
    // A fill of `drug` with one of `supplies`, at a random level.
    let fill = |rng: &mut Rng, day: u32, drug: u16, supplies: &[i32]| Spec {
        drug: Some(drug),
        days_supply: Some(supplies[rng.below(supplies.len() as u64) as usize]),
        ..Spec::new(
            day,
            chronic_code(plan, rng, c),
            Some(c),
            rng.pick(&plan.tables.level) as u8,
        )
    };

    let mut specs: Vec<Spec> = Vec::with_capacity(9);
    match kind {
        Plant::EarlyRefill => {
            registrations.push(active(rng));
            let supply = [28, 30, 56][rng.below(3) as usize];
            let gap = 1 + rng.below(((supply - 16) as u32).min(d - 1) as u64) as u32;
            let first = rng.below((d - gap) as u64) as u32;
            specs.push(fill(rng, first, regular, &[supply]));
            let refill = fill(rng, first + gap, regular, &[28, 30]);
            specs.push(Spec {
                label: Some(Plant::EarlyRefill),
                ..refill
            });
            if rng.chance(0.5) {
                let day = days_in(rng, 1, 0, d - 1, &[first, first + gap]);
                specs.extend(day.iter().map(|&day| everyday(plan, rng, &mut common, day)));
            }
        }
        Plant::SupplyTooLong => {
            registrations.push(active(rng));
            let supply = if POLICY_FACTS[region].max_days_supply >= 168 {
                VERY_LONG_SUPPLY[rng.below(4) as usize]
            } else {
                [LONG_SUPPLY, VERY_LONG_SUPPLY].concat()[rng.below(8) as usize]
            };
            let day = rng.below(d as u64) as u32;
            let long = fill(rng, day, chronic.take(), &[supply]);
            specs.push(Spec {
                label: Some(Plant::SupplyTooLong),
                ..long
            });
            if rng.chance(0.5) {
                for day in days_in(rng, 1, 0, d - 1, &[day]) {
                    specs.push(fill(rng, day, chronic.take(), &[14, 28, 30]));
                }
            }
        }
        Plant::DuplicateClaim => {
            let day = rng.below(d as u64) as u32;
            let original = if rng.chance(0.5) {
                registrations.push(active(rng));
                fill(rng, day, chronic.take(), &[7, 14])
            } else {
                everyday(plan, rng, &mut common, day)
            };
            let others: Vec<Spec> = if rng.chance(0.5) {
                days_in(rng, 1, 0, d - 1, &[day])
                    .into_iter()
                    .map(|day| everyday(plan, rng, &mut common, day))
                    .collect()
            } else {
                Vec::new()
            };
            // The pair is emitted in day order with the rest; each of the two takes at most
            // half of what the pool has left.
            for spec in others.iter().filter(|s| s.day < day) {
                push(plan, rng, profile, index, person, spend, rows, spec, 3);
            }
            let (row, pool) = emit(plan, rng, profile, index, person, spend, &original, 3);
            let copy = resubmit(rng, spend, &row, day, pool);
            rows.push(row);
            rows.push(copy);
            for spec in others.iter().filter(|s| s.day > day) {
                push(plan, rng, profile, index, person, spend, rows, spec, 1);
            }
            return;
        }
        Plant::UnregisteredCondition => {
            if rng.chance(0.5) {
                let name = plan.registered_names(region, other)[0];
                registrations.push(registration(profile, name, years_ago(plan, rng), None));
            }
            let n = 1 + rng.below(3) as u32;
            for day in days_in(rng, n, 0, d - 1, &[]) {
                let claim = fill(rng, day, chronic.take(), &[14, 28, 30]);
                specs.push(Spec {
                    covered: false,
                    label: Some(Plant::UnregisteredCondition),
                    ..claim
                });
            }
        }
        Plant::BeforeBenefitStart => {
            let approval = day_in(rng, 2, d - 1);
            let start = approval + POLICY_FACTS[region].benefit_start_offset as u32;
            registrations.push(registration(
                profile,
                name,
                plan.month_start + approval as Day,
                None,
            ));
            let n = 1 + rng.below(2) as u32;
            let mut early = if start > approval && rng.chance(0.5) {
                // Rizhao: the approval day itself is before the benefit starts.
                let mut days = days_in(rng, n - 1, 0, approval - 1, &[]);
                days.push(approval);
                days
            } else {
                days_in(rng, n, 0, start.min(d) - 1, &[])
            };
            early.sort_unstable();
            for &day in &early {
                let claim = fill(rng, day, chronic.take(), &[14, 28, 30]);
                specs.push(Spec {
                    covered: false,
                    label: Some(Plant::BeforeBenefitStart),
                    ..claim
                });
            }
            if start < d && rng.chance(0.6) {
                let day = if rng.chance(0.5) {
                    start
                } else {
                    day_in(rng, start, d - 1)
                };
                specs.push(fill(rng, day, chronic.take(), &[14, 28]));
            }
        }
        Plant::AfterRegistrationEnd => {
            let end = day_in(rng, 1, d - 2);
            registrations.push(registration(
                profile,
                name,
                years_ago(plan, rng),
                Some(plan.month_start + end as Day),
            ));
            let n = 1 + rng.below(2) as u32;
            for day in days_in(rng, n, end + 1, d - 1, &[]) {
                let claim = fill(rng, day, chronic.take(), &[14, 28, 30]);
                specs.push(Spec {
                    covered: false,
                    label: Some(Plant::AfterRegistrationEnd),
                    ..claim
                });
            }
            if rng.chance(0.6) {
                let day = if rng.chance(0.5) {
                    end
                } else {
                    day_in(rng, 0, end)
                };
                specs.push(fill(rng, day, chronic.take(), &[14, 28]));
            }
        }
        Plant::CapExhausted => {
            registrations.push(active(rng));
            let k = 2 + rng.below(3) as u32;
            let first = rng.below((d - k) as u64) as u32;
            // The same diagnosis at the same (covered) level: the same benefit and cap pool.
            let level = [PRIMARY, SECONDARY][rng.below(2) as usize];
            let diagnosis = chronic_code(plan, rng, c);
            let in_scope = 2_000_000 + rng.below(1_000_000) as i64;
            let total = in_scope + rng.below(in_scope as u64 / 10 + 1) as i64;
            // A costly visit (tests, procedures) with no main drug: it is in no drug's
            // amount distribution, so it is no amount outlier either.
            specs.push(Spec {
                amount: Amount::Fixed { total, in_scope },
                ..Spec::new(first, diagnosis, Some(c), level)
            });
            for day in days_in(rng, k, first + 1, d - 1, &[]) {
                specs.push(Spec {
                    drug: Some(chronic.take()),
                    days_supply: Some([7, 14, 28, 30][rng.below(4) as usize]),
                    amount: Amount::Typical,
                    label: Some(Plant::CapExhausted),
                    ..Spec::new(day, diagnosis, Some(c), level)
                });
            }
        }
        Plant::HighCost => {
            let day = rng.below(d as u64) as u32;
            let total = HIGH_COST_FEN + rng.below(6_000_000) as i64;
            let in_scope = apply_ratio(total, 8_000 + rng.below(2_000) as u32);
            let level = [SECONDARY, TERTIARY][rng.below(2) as usize];
            specs.push(Spec {
                inpatient: true,
                amount: Amount::Fixed { total, in_scope },
                label: Some(Plant::HighCost),
                ..Spec::new(day, everyday_code(plan, rng), None, level)
            });
            let n = rng.below(3) as u32;
            for day in days_in(rng, n, 0, d - 1, &[day]) {
                specs.push(everyday(plan, rng, &mut common, day));
            }
        }
        Plant::PharmacyWithoutPrescription => {
            let n = 1 + rng.below(2) as u32;
            let days = days_in(rng, n, 0, d - 1, &[]);
            for &day in &days {
                specs.push(Spec {
                    level: PHARMACY,
                    prescriber: false,
                    label: Some(Plant::PharmacyWithoutPrescription),
                    ..everyday(plan, rng, &mut common, day)
                });
            }
            if rng.chance(0.5) {
                for day in days_in(rng, 1, 0, d - 1, &days) {
                    specs.push(Spec {
                        level: [PRIMARY, SECONDARY][rng.below(2) as usize],
                        ..everyday(plan, rng, &mut common, day)
                    });
                }
            }
        }
        Plant::VisitBurst => {
            let day = rng.below(d as u64) as u32;
            let n = 5 + rng.below(3);
            for i in 0..n {
                specs.push(Spec {
                    label: (i >= 3).then_some(Plant::VisitBurst),
                    ..everyday(plan, rng, &mut common, day)
                });
            }
            let others = rng.below(3) as u32;
            for day in days_in(rng, others, 0, d - 1, &[day]) {
                specs.push(everyday(plan, rng, &mut common, day));
            }
        }
        Plant::AmountOutlier => {
            registrations.push(active(rng));
            let before = rng.below(3) as u32;
            let day = day_in(rng, before, d - 1);
            // Everyday visits first: the outlier is the person's last claim, so that the cap
            // it may use up has no later claim to show exhausted.
            if before > 0 {
                for day in days_in(rng, before, 0, day - 1, &[]) {
                    specs.push(everyday(plan, rng, &mut common, day));
                }
            }
            let level = [PRIMARY, SECONDARY, PHARMACY][rng.below(3) as usize];
            let typical = CONDITIONS[c].median_fen * LEVEL_COST[level as usize];
            let total = (30.0 * typical * (0.9 + 0.3 * rng.unit())).round() as i64;
            specs.push(Spec {
                drug: Some((c * DRUGS_PER_CONDITION) as u16),
                days_supply: Some(30),
                amount: Amount::Fixed {
                    total,
                    in_scope: total,
                },
                label: Some(Plant::AmountOutlier),
                ..Spec::new(day, chronic_code(plan, rng, c), Some(c), level)
            });
        }
    }
    // In day order (stable: same-day claims in the script's order, which is their settlement
    // order), each leaving room in its pools for the claims after it.
    specs.sort_by_key(|s| s.day);
    let n = specs.len() as u32;
    for (j, spec) in specs.iter().enumerate() {
        push(
            plan,
            rng,
            profile,
            index,
            person,
            spend,
            rows,
            spec,
            n - j as u32,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn push(
    plan: &Plan,
    rng: &mut Rng,
    profile: &Profile,
    index: u32,
    person: Attrs,
    spend: &mut Spend,
    rows: &mut Vec<ClaimRow>,
    spec: &Spec,
    remaining: u32,
) {
    let (row, _) = emit(plan, rng, profile, index, person, spend, spec, remaining);
    rows.push(row);
}
