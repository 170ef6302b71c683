//! The skewed month profile: what a baseline claimant does when nothing keeps their month
//! clean. Claims per person are heavy-tailed (a few persons claim thousands of times), claims
//! come in episodes of a few days, and some claimants were never registered for a condition
//! they are treated for; module `chunk` draws the claims themselves, without the clean
//! profile's refill spacing and cap budgets, and with now and then a fill beyond the region's
//! supply limit or without a prescriber level.
//!
//! Everything here draws from the chunk's own RNG stream only when the profile is skewed, so
//! the clean profile's files do not change.

use super::catalogue::POLICY_FACTS;
use super::chunk::{Plan, Profile, Registration, LONG_SUPPLY, VERY_LONG_SUPPLY};
use super::rng::{exp, ln, Rng};

/// Shape of the Lomax (Pareto from zero) weight of a claimant's claims beyond the first: below
/// 1.5 the top claimants of a chunk take a large share of its claims, which is the point, and
/// from zero many claimants get no claim beyond the first.
const PARETO_SHAPE: f64 = 1.3;
/// The weight saturates softly towards this (in multiples of its scale), so that no one
/// person takes most of a chunk: the top claimant of a 1M–10M-claim month has about 4,000
/// claims rather than 15,000.
const WEIGHT_CEILING: f64 = 3_000.0;
/// Claims per episode of care on average, and the days an episode spans: a claimant's claims
/// cluster, so more than three on a day or ten in a week are common from a few dozen claims on
/// (and the rule of every claim of the heaviest claimants).
const EPISODE_CLAIMS: u32 = 5;
const EPISODE_DAYS: u32 = 3;
/// Share of baseline claimants not registered for one of their chronic conditions.
const UNREGISTERED_CLAIMANT: f64 = 0.3;
/// Share of chronic fills whose supply exceeds the region's limit.
pub(super) const LONG_FILL: f64 = 0.1;
/// Share of pharmacy fills without a prescriber level.
pub(super) const UNPRESCRIBED_FILL: f64 = 0.02;

/// Shares `normal` claims among the claimants: one each, the rest in proportion to a softly
/// capped Lomax weight, so that most claim one to three times and a few claim hundreds or
/// thousands of times. Exact: the counts add up to `normal` (at least one per claimant).
pub(super) fn allocate_claims(rng: &mut Rng, profiles: &mut [Profile], normal: u64) {
    if normal == 0 || profiles.is_empty() {
        return;
    }
    let weights: Vec<f64> = profiles
        .iter()
        .map(|p| {
            // Inverse transform: (1 − u)^(−1/shape) − 1, with 1 − u in (0, 1].
            let pareto = exp(-ln(1.0 - rng.unit()) / PARETO_SHAPE) - 1.0;
            let w = pareto / (1.0 + pareto / WEIGHT_CEILING);
            if p.conditions.is_empty() {
                w * 0.5
            } else {
                w
            }
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let extra = normal.saturating_sub(profiles.len() as u64);
    let mut given = 0u64;
    for (p, w) in profiles.iter_mut().zip(&weights) {
        let share = (extra as f64 * w / total) as u64;
        p.claims = 1 + share as u32;
        given += share;
    }
    // Flooring leaves fewer than one claim per claimant over: hand them out round-robin
    // from a random claimant. (Float rounding could in principle overshoot by one instead:
    // take it back the same way.)
    let n = profiles.len();
    let mut k = rng.below(n as u64) as usize;
    while given < extra {
        profiles[k].claims += 1;
        given += 1;
        k = (k + 1) % n;
    }
    while given > extra {
        if profiles[k].claims > 1 {
            profiles[k].claims -= 1;
            given -= 1;
        }
        k = (k + 1) % n;
    }
}

/// Days (0-based, nondecreasing) for `n` claims, in episodes of [`EPISODE_DAYS`] days, one per
/// [`EPISODE_CLAIMS`] claims, each claim in a random one: a second fill of a drug mostly comes
/// within days of the first, long before the first runs out.
pub(super) fn place_days(rng: &mut Rng, n: u32, month_days: u32, out: &mut Vec<u32>) {
    out.clear();
    let episodes: Vec<u32> = (0..n.div_ceil(EPISODE_CLAIMS))
        .map(|_| rng.below((month_days - EPISODE_DAYS + 1) as u64) as u32)
        .collect();
    out.extend((0..n).map(|_| {
        let start = episodes[rng.below(episodes.len() as u64) as usize];
        start + rng.below(EPISODE_DAYS as u64) as u32
    }));
    out.sort_unstable();
}

/// With probability [`UNREGISTERED_CLAIMANT`], takes back the registrations module `chunk`
/// wrote for `profile` (from index `first` of `registrations`) for one of its chronic
/// conditions: its claims for that condition fire `unregistered_condition`.
pub(super) fn unregister(
    plan: &Plan,
    rng: &mut Rng,
    profile: &Profile,
    registrations: &mut Vec<Registration>,
    first: usize,
) {
    if profile.conditions.is_empty() || !rng.chance(UNREGISTERED_CLAIMANT) {
        return;
    }
    let condition = profile.conditions[rng.below(profile.conditions.len() as u64) as usize];
    let names = plan.registered_names(profile.region as usize, condition as usize);
    let mut k = first;
    while k < registrations.len() {
        if names.contains(&registrations[k].condition) {
            registrations.remove(k);
        } else {
            k += 1;
        }
    }
}

/// A supply beyond the limit of `region`'s policy (84 days; 168 in Ezhou).
pub(super) fn beyond_limit(rng: &mut Rng, region: usize) -> i32 {
    let limit = POLICY_FACTS[region].max_days_supply;
    let longer: Vec<i32> = LONG_SUPPLY
        .iter()
        .chain(&VERY_LONG_SUPPLY)
        .copied()
        .filter(|&d| d > limit)
        .collect();
    longer[rng.below(longer.len() as u64) as usize]
}
