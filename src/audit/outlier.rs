//! `amount_outlier`: a claim's amount against the other claims of the same drug at the same
//! institution level in this run. A robust statistic, so that the outliers themselves do not
//! move the bar: flag `total > median + factor × 1.4826 × MAD` (1.4826 × MAD estimates the
//! standard deviation of normal data), with the factor and the smallest group judged taken
//! from the claim's policy version. Medians are the lower median, exact on fen.

use rayon::prelude::*;

use super::{Anomaly, Auditor, Related};
use crate::domain::{Level, Rule};
use crate::ingest::claims::NO_PERSON;
use crate::ingest::claims::{Claims, NO_CODE};
use crate::ingest::registry::{Registry, PERSON_PREFETCH_ROWS};
use crate::ingest::FastMap;
use crate::money::round_div;
use crate::policy::Policies;
use crate::settle::version_for;

/// 1.4826 in ten-thousandths: MAD to standard deviation for normal data.
const MAD_TO_SIGMA: i128 = 14_826;

/// What the rule judges a claim by: its drug code, its institution level and its total in fen.
#[derive(Debug, Clone, Copy)]
struct Judged {
    drug: u32,
    level: u8,
    total: i64,
}

/// A group: (drug code text, institution level).
type GroupKey = (Box<str>, u8);

/// The amounts of each (drug, level) group across the whole run, as `(total, count)` runs,
/// gathered partition by partition: the rule compares a claim with every claim of its group in
/// the run, wherever the run was cut.
#[derive(Default)]
pub struct AmountCounts {
    groups: FastMap<GroupKey, Runs>,
}

/// One group's `(total, count)` runs: sorted segments, one per partition added since the last
/// compaction, then compacted into one sorted run per distinct total.
#[derive(Default)]
struct Runs {
    runs: Vec<(i64, u32)>,
    /// Length of the runs after the last compaction.
    compacted: usize,
}

impl Runs {
    /// Adds a group's totals, in order, as runs of equal totals.
    fn add_sorted(&mut self, totals: impl Iterator<Item = i64>) {
        for total in totals {
            match self.runs.last_mut() {
                Some((v, n)) if *v == total => *n += 1,
                _ => self.runs.push((total, 1)),
            }
        }
        self.compact_when_grown();
    }

    /// Sorts and merges equal totals once the runs added since the last compaction outnumber
    /// the compacted ones (amortised: each run is re-sorted a logarithmic number of times).
    /// Within a partition most totals are distinct, across a month they repeat: at 100 million
    /// claims the uncompacted runs of every partition held about a gigabyte until the month's
    /// medians were taken.
    fn compact_when_grown(&mut self) {
        if self.runs.len() <= 2 * self.compacted.max(4096) {
            return;
        }
        self.runs.sort_unstable_by_key(|r| r.0);
        let mut kept = 0;
        for i in 0..self.runs.len() {
            let run = self.runs[i];
            match kept {
                k if k > 0 && self.runs[k - 1].0 == run.0 => self.runs[k - 1].1 += run.1,
                _ => {
                    self.runs[kept] = run;
                    kept += 1;
                }
            }
        }
        self.runs.truncate(kept);
        self.runs.shrink_to_fit();
        self.compacted = kept;
    }
}

/// Per (drug, level) group: size, lower median and lower median absolute deviation, in fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupStats {
    pub n: u32,
    pub median: i64,
    pub mad: i64,
}

/// One judged claim's group and amount ([`AmountCounts::amount_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount {
    group: GroupKey,
    total: i64,
}

/// The groups' statistics for the whole run.
#[derive(Default)]
pub struct AmountStats {
    groups: FastMap<GroupKey, GroupStats>,
}

impl AmountCounts {
    /// Adds the claims of one partition, before they are settled ([`judged`] needs no
    /// settlement).
    pub fn add_claims(&mut self, policies: &Policies, registry: &Registry, claims: &Claims) {
        self.add_claims_except(policies, registry, claims, &[]);
    }

    /// Adds the claims of `claims` but rows `skip` (sorted): a spilled run's rows whose claim
    /// id may repeat another's, added once the repeats are known ([`Self::add_amount`]).
    pub fn add_claims_except(
        &mut self,
        policies: &Policies,
        registry: &Registry,
        claims: &Claims,
        skip: &[u32],
    ) {
        // Each judged claim's total under its group's number (drug code × levels + level),
        // sorted by group and total: each group's totals then lie in order, side by side.
        let mut totals: Vec<(u32, i64)> = (0..claims.len())
            .into_par_iter()
            .filter(|&row| skip.binary_search(&(row as u32)).is_err())
            .filter_map(|row| {
                // Claims in input order read the registry at random.
                if let Some(&ahead) = claims.person.get(row + PERSON_PREFETCH_ROWS) {
                    registry.prefetch_person(ahead);
                }
                let Judged { drug, level, total } = judged(policies, registry, claims, row)?;
                Some((drug * Level::COUNT as u32 + level as u32, total))
            })
            .collect();
        totals.par_sort_unstable();
        // The groups' runs are taken out of the map and added to side by side: a spilled run
        // adds a window at a time while the window is scattered, and a popular drug's
        // compaction alone held one thread.
        let mut groups: Vec<_> = totals
            .chunk_by(|a, b| a.0 == b.0)
            .map(|group| {
                let g = group[0].0 as usize;
                let key: GroupKey = (
                    claims.drugs[g / Level::COUNT].as_str().into(),
                    (g % Level::COUNT) as u8,
                );
                let runs = self.groups.remove(&key).unwrap_or_default();
                (key, runs, group)
            })
            .collect();
        groups
            .par_iter_mut()
            .for_each(|(_, runs, group)| runs.add_sorted(group.iter().map(|&(_, total)| total)));
        self.groups
            .extend(groups.into_iter().map(|(key, runs, _)| (key, runs)));
    }

    /// The group and amount of claim `row` if the rule judges it, kept apart from `claims`.
    pub fn amount_of(
        policies: &Policies,
        registry: &Registry,
        claims: &Claims,
        row: usize,
    ) -> Option<Amount> {
        let Judged { drug, level, total } = judged(policies, registry, claims, row)?;
        Some(Amount {
            group: (claims.drugs[drug as usize].as_str().into(), level),
            total,
        })
    }

    /// Adds one judged claim's amount.
    pub fn add_amount(&mut self, amount: Amount) {
        let group = self.groups.entry(amount.group).or_default();
        group.runs.push((amount.total, 1));
        group.compact_when_grown();
    }

    pub fn stats(mut self) -> AmountStats {
        let groups = self
            .groups
            .par_drain()
            .map(|(key, Runs { mut runs, .. })| {
                // Runs of several partitions: put them in order and merge equal totals.
                runs.sort_unstable();
                (key, group_stats(&runs))
            })
            .collect();
        AmountStats { groups }
    }
}

/// Median and MAD of sorted `(value, count)` runs (equal values may repeat across runs).
fn group_stats(runs: &[(i64, u32)]) -> GroupStats {
    let n: u32 = runs.iter().map(|r| r.1).sum();
    let nth = |runs: &[(i64, u32)], k: u32| -> i64 {
        let mut seen = 0;
        for &(v, c) in runs {
            seen += c;
            if seen > k {
                return v;
            }
        }
        unreachable!("k < n")
    };
    let median = nth(runs, (n - 1) / 2);
    let mut deviations: Vec<(i64, u32)> =
        runs.iter().map(|&(v, c)| ((v - median).abs(), c)).collect();
    deviations.sort_unstable();
    GroupStats {
        n,
        median,
        mad: nth(&deviations, (n - 1) / 2),
    }
}

/// What claim `row` is judged by, if the rule judges it: a valid, non-reversal claim
/// of a person, with a drug, whose policy version has audit rules. Settlement never rejects such
/// a claim and picks its version from the person and the service day alone ([`version_for`]),
/// so this is known before settlement — the one definition for a run held whole and for a
/// spilled run's first pass, whose outputs must be the same bytes.
fn judged(policies: &Policies, registry: &Registry, claims: &Claims, row: usize) -> Option<Judged> {
    let judged = of_a_kind_judged(claims, row)?;
    let person = registry.person(claims.person[row]);
    let version = version_for(policies, &person, claims.service_day[row]).ok()?;
    policies.versions[version as usize].audit.as_ref()?;
    Some(judged)
}

/// What claim `row` is judged by if its version has audit rules ([`judged`]): a valid,
/// non-reversal claim of a person, with a drug.
fn of_a_kind_judged(claims: &Claims, row: usize) -> Option<Judged> {
    let judged = claims.person[row] != NO_PERSON
        && claims.rejected[row].is_none()
        && !claims.is_reversal[row]
        && claims.drug[row] != NO_CODE;
    judged.then(|| Judged {
        drug: claims.drug[row],
        level: claims.level[row] as u8,
        total: claims.total_fen[row],
    })
}

/// The outliers of a whole run, judged against the run's own statistics.
pub fn whole_run_outliers(a: &Auditor) -> Vec<Anomaly> {
    let mut counts = AmountCounts::default();
    counts.add_claims(a.policies, a.registry, a.claims);
    amount_outliers(a, &counts.stats())
}

/// The outliers among this partition's claims, each judged against its group in `stats`: one
/// claim at a time, in position order, its group's statistics looked up by drug code — no
/// grouping or sorting of the partition's claims. The version is the one that settled the
/// claim, which for a claim of the kind judged is [`version_for`]'s ([`judged`]), so the
/// registry is not looked up again.
pub fn amount_outliers(a: &Auditor, stats: &AmountStats) -> Vec<Anomaly> {
    let table = stats.by_drug_code(&a.claims.drugs);
    a.partitions
        .order
        .par_iter()
        .enumerate()
        .filter_map(|(position, &row)| {
            let Judged { drug, level, total } = of_a_kind_judged(a.claims, row as usize)?;
            debug_assert_eq!(
                a.settled.outcomes[position].version,
                version_for(
                    a.policies,
                    &a.registry.person(a.claims.person[row as usize]),
                    a.claims.service_day[row as usize]
                )
                .unwrap_or(crate::policy::NONE),
                "a judged kind of claim is settled by its day's version"
            );
            judge(
                a,
                table[drug as usize][level as usize]?,
                total,
                position as u32,
            )
        })
        .collect()
}

impl AmountStats {
    /// The statistics of each (drug code, level) group of the run's drug dictionary.
    fn by_drug_code(&self, drugs: &[String]) -> Vec<[Option<GroupStats>; Level::COUNT]> {
        drugs
            .par_iter()
            .map(|drug| {
                let mut key: GroupKey = (drug.as_str().into(), 0);
                std::array::from_fn(|level| {
                    key.1 = level as u8;
                    self.groups.get(&key).copied()
                })
            })
            .collect()
    }
}

/// The flag of one claim (`total` at `position`) of a group with statistics `stats`, if its
/// amount is past its own version's bar (regions may differ).
fn judge(a: &Auditor, stats: GroupStats, total: i64, position: u32) -> Option<Anomaly> {
    let GroupStats { n, median, mad } = stats;
    let rules = a.rules_at(position as usize)?;
    if mad == 0 || n < rules.outlier_min_group {
        return None;
    }
    let bar = median
        + round_div(
            rules.outlier_factor_centi as i128 * MAD_TO_SIGMA * mad as i128,
            100 * 10_000,
        ) as i64;
    (total > bar).then_some(Anomaly {
        position,
        rule: Rule::AmountOutlier,
        value: Some(total),
        threshold: Some(bar),
        related: Related::None,
        window_days: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stats of one group whose items are added in `parts` sorted slices.
    fn stats_in_parts(totals: &[i64], parts: usize) -> (GroupStats, usize) {
        let mut counts = AmountCounts::default();
        let size = totals.len().div_ceil(parts);
        for chunk in totals.chunks(size) {
            let mut sorted = chunk.to_vec();
            sorted.sort_unstable();
            counts
                .groups
                .entry(("D1".into(), 1))
                .or_default()
                .add_sorted(sorted.into_iter());
        }
        let held = counts.groups.values().map(|r| r.runs.len()).sum();
        let stats = counts.stats().groups[&("D1".into(), 1)];
        (stats, held)
    }

    #[test]
    fn runs_compacted_across_partitions_give_the_stats_of_one_partition() {
        // 60 000 amounts over 5 000 distinct values, in no order.
        let totals: Vec<i64> = (0..60_000i64)
            .map(|i| (i * 7_919) % 5_000 * 10 + 100)
            .collect();
        let (whole, whole_runs) = stats_in_parts(&totals, 1);
        let (cut, cut_runs) = stats_in_parts(&totals, 40);
        assert_eq!(whole, cut);
        assert_eq!(whole.n, 60_000);
        // Values 100, 110, …, 50 090: the lower median is the 30 000th of 60 000, value 25 090.
        assert_eq!(whole.median, 25_090);
        assert_eq!(whole_runs, 5_000);
        // 40 parts of 1 500 runs each would hold 60 000; compaction keeps it near the distinct.
        assert!(cut_runs <= 3 * 5_000, "{cut_runs} runs held");
    }
}
