//! `amount_outlier`: a claim's amount against the other claims of the same drug at the same
//! institution level in this run. A robust statistic, so that the outliers themselves do not
//! move the bar: flag `total > median + factor × 1.4826 × MAD` (1.4826 × MAD estimates the
//! standard deviation of normal data), with the factor and the smallest group judged taken
//! from the claim's policy version. Medians are the lower median, exact on fen.

use rayon::prelude::*;

use super::{Anomaly, Auditor, Related};
use crate::domain::Rule;
use crate::ingest::claims::NO_CODE;
use crate::money::round_div;

/// 1.4826 in ten-thousandths: MAD to standard deviation for normal data.
const MAD_TO_SIGMA: i128 = 14_826;

pub fn amount_outliers(a: &Auditor) -> Vec<Anomaly> {
    let claims = a.claims;
    // (drug, level, total, position) of every settled claim with a drug and audit rules.
    let mut items: Vec<(u32, u8, i64, u32)> = a
        .partitions
        .order
        .par_iter()
        .enumerate()
        .filter_map(|(position, &row)| {
            let row = row as usize;
            let o = &a.settled.outcomes[position];
            (o.status.is_settled_claim()
                && claims.drug[row] != NO_CODE
                && a.rules_at(position).is_some())
            .then(|| {
                (
                    claims.drug[row],
                    claims.level[row] as u8,
                    claims.total_fen[row],
                    position as u32,
                )
            })
        })
        .collect();
    items.par_sort_unstable();
    let mut groups: Vec<&[(u32, u8, i64, u32)]> = Vec::new();
    let mut rest = &items[..];
    while let Some(&(drug, level, _, _)) = rest.first() {
        let n = rest.partition_point(|x| (x.0, x.1) == (drug, level));
        let (group, tail) = rest.split_at(n);
        groups.push(group);
        rest = tail;
    }
    groups
        .par_iter()
        .flat_map_iter(|group| judge(a, group))
        .collect()
}

/// The outliers of one (drug, level) group (sorted by amount).
fn judge(a: &Auditor, group: &[(u32, u8, i64, u32)]) -> Vec<Anomaly> {
    let n = group.len();
    let median = group[(n - 1) / 2].2;
    let mut deviations: Vec<i64> = group.iter().map(|x| (x.2 - median).abs()).collect();
    deviations.sort_unstable();
    let mad = deviations[(n - 1) / 2];
    if mad == 0 {
        return Vec::new();
    }
    let mut found = Vec::new();
    // Each claim against its own version's bar (regions may differ).
    for &(_, _, total, position) in group {
        let Some(rules) = a.rules_at(position as usize) else {
            continue;
        };
        if (n as u32) < rules.outlier_min_group {
            continue;
        }
        let bar = median
            + round_div(
                rules.outlier_factor_centi as i128 * MAD_TO_SIGMA * mad as i128,
                100 * 10_000,
            ) as i64;
        if total <= bar {
            continue;
        }
        found.push(Anomaly {
            position,
            rule: Rule::AmountOutlier,
            value: Some(total),
            threshold: Some(bar),
            related: Related::None,
            window_days: 0,
        });
    }
    found
}
