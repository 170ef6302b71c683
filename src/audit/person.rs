//! The per-person rules: each of a person's claims against the person's earlier claims — in
//! this run, then in the state — and year-to-date cost. Only claims that settled count
//! (`paid`, `capped`, `not_covered`); a refund lowers the year's cost and makes its original no
//! longer count as an earlier fill or a duplicate's first copy from the refund on.

use super::{Anomaly, Auditor, Related};
use crate::domain::{year_of, Day, Level, Reason, Rule, Status};
use crate::ingest::claims::{Claims, NO_CODE};
use crate::policy::{CapBasis, NONE, TOTAL_COST_POOL};
use crate::state::{run_codes, Prior, RunCodes};

/// The state's institutions and drugs as codes of this run's dictionaries, so the rules
/// compare integers.
pub struct PriorCodes {
    institutions: RunCodes,
    drugs: RunCodes,
    total_cost_pool: Option<u16>,
}

impl PriorCodes {
    pub fn new(claims: &Claims, prior: &Prior, policies: &crate::policy::Policies) -> Self {
        PriorCodes {
            institutions: run_codes(&prior.institutions, &claims.institutions),
            drugs: run_codes(&prior.drugs, &claims.drugs),
            total_cost_pool: policies.pools.id(TOTAL_COST_POOL),
        }
    }
}

/// Per-thread scratch reused across persons.
#[derive(Default)]
pub struct Scratch {
    /// Per run claim of the person: the position (in the person's order) of the refund that
    /// reversed it, or `usize::MAX`.
    reversed_at: Vec<usize>,
    /// Earlier claims reversed in this run: (index in [`Prior::claims`], position of the refund).
    prior_reversed_at: Vec<(usize, usize)>,
    /// Earlier claims that settled and may share a burst window or a day with this run's claims.
    recent: Vec<usize>,
    /// Year-to-date total cost by year.
    ytd: Vec<(i32, i64)>,
    /// Service days of the claims counted so far (recent earlier claims, then this run's up to
    /// the current one), sorted: a burst window is two binary searches.
    days: Vec<Day>,
}

pub fn audit_person(
    a: &Auditor,
    codes: &PriorCodes,
    slot: usize,
    s: &mut Scratch,
    found: &mut Vec<Anomaly>,
) {
    let rows = a.partitions.rows_of(slot);
    if rows.is_empty() {
        return;
    }
    let person = a.partitions.persons[slot];
    let (claims, outcomes) = (a.claims, &a.settled.outcomes);
    let base = a.partitions.offsets[slot] as usize;
    let (first, records) = a.prior.claims_of(person);
    s.reversed_at.clear();
    s.reversed_at.resize(rows.len(), usize::MAX);
    s.prior_reversed_at.clear();
    s.ytd.clear();
    if let Some(pool) = codes.total_cost_pool {
        s.ytd.extend(
            a.prior
                .pools_of(person)
                .iter()
                .filter(|st| st.pool == pool)
                .map(|st| (st.year, st.cost_fen)),
        );
    }
    let earliest = rows
        .iter()
        .map(|&r| claims.service_day[r as usize])
        .min()
        .unwrap_or(Day::MAX);
    s.recent.clear();
    s.recent.extend(
        records
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.status.is_settled_claim() && r.service_day >= earliest.saturating_sub(6)
            })
            .map(|(i, _)| first + i),
    );
    s.days.clear();
    s.days
        .extend(s.recent.iter().map(|&i| a.prior.claims[i].service_day));
    s.days.sort_unstable();
    let prior_gone = |i: usize, k: usize, s: &Scratch| {
        a.prior.claims[i].reversed || s.prior_reversed_at.iter().any(|&(j, at)| j == i && at < k)
    };

    for k in 0..rows.len() {
        let row = rows[k] as usize;
        let position = base + k;
        let o = &outcomes[position];
        let day = claims.service_day[row];
        match o.status {
            Status::Rejected => continue,
            Status::Reversal => {
                add_cost(&mut s.ytd, year_of(day), claims.total_fen[row]);
                mark_reversed(a, rows, k, first, records.len(), s);
                continue;
            }
            _ => {}
        }
        let mut flag =
            |rule: Rule, value: Option<i64>, threshold: Option<i64>, related: Related| {
                found.push(Anomaly {
                    position: position as u32,
                    rule,
                    value,
                    threshold,
                    related,
                    window_days: 0,
                })
            };
        let (before, after) = add_cost(&mut s.ytd, year_of(day), claims.total_fen[row]);
        // Claims of the person on this day and in the trailing week, this one included.
        let at = s.days.partition_point(|&d| d <= day);
        s.days.insert(at, day);
        let on_day = (at + 1 - s.days.partition_point(|&d| d < day)) as u32;
        let in_week = (at + 1 - s.days.partition_point(|&d| d <= day - 7)) as u32;
        let rules = a.rules_at(position);
        let drug = claims.drug[row];

        // Claim-intrinsic rules.
        if claims.level[row] == Level::Pharmacy && claims.prescriber[row].is_none() {
            flag(Rule::PharmacyWithoutPrescription, None, None, Related::None);
        }
        match o.condition_reason {
            Some(Reason::NotRegistered) => {
                flag(Rule::UnregisteredCondition, None, None, Related::None)
            }
            Some(Reason::BeforeBenefitStart) => {
                flag(Rule::BeforeBenefitStart, None, None, Related::None)
            }
            Some(Reason::RegistrationEnded) => {
                flag(Rule::AfterRegistrationEnd, None, None, Related::None)
            }
            _ => {}
        }
        if let (Some(cap_left), true) = (o.cap_remaining_fen, o.pool != NONE && o.version != NONE) {
            let version = &a.policies.versions[o.version as usize];
            if let Some(benefit) = version.benefit_of_pool(o.pool) {
                let used_here = match benefit.cap_basis {
                    CapBasis::Fund => o.fund_fen,
                    CapBasis::Cost => o.fund_fen + o.copay_fen,
                };
                if cap_left + used_here <= 0 {
                    flag(
                        Rule::CapExhausted,
                        Some(o.over_cap_fen),
                        benefit.annual_cap_fen,
                        Related::None,
                    );
                }
            }
        }

        // Against the person's earlier claims: a copy of an earlier claim.
        let same_claim = |institution: u32, d: u32, total: i64, on: Day| {
            institution == claims.institution[row]
                && d == drug
                && total == claims.total_fen[row]
                && on == day
        };
        let duplicate = (0..k)
            .rev()
            .find(|&j| {
                let r = rows[j] as usize;
                outcomes[base + j].status.is_settled_claim()
                    && s.reversed_at[j] >= k
                    && same_claim(
                        claims.institution[r],
                        claims.drug[r],
                        claims.total_fen[r],
                        claims.service_day[r],
                    )
            })
            .map(|j| Related::Run(rows[j]))
            .or_else(|| {
                s.recent
                    .iter()
                    .rev()
                    .copied()
                    .find(|&i| {
                        let r = &a.prior.claims[i];
                        !prior_gone(i, k, s)
                            && same_claim(
                                codes.institutions.of(r.institution),
                                codes.drugs.of(r.drug),
                                r.total_fen,
                                r.service_day,
                            )
                    })
                    .map(|i| Related::Earlier(i as u32))
            });
        if let Some(related) = duplicate {
            flag(
                Rule::DuplicateClaim,
                Some(claims.total_fen[row]),
                None,
                related,
            );
        }

        let Some(rules) = rules else { continue };
        if let Some(days) = claims.days_supply[row] {
            if days > rules.max_days_supply {
                flag(
                    Rule::SupplyTooLong,
                    Some(days as i64),
                    Some(rules.max_days_supply as i64),
                    Related::None,
                );
            }
            // The latest earlier fill of the same drug still in force.
            if drug != NO_CODE {
                let earlier = (0..k)
                    .rev()
                    .find(|&j| {
                        let r = rows[j] as usize;
                        outcomes[base + j].status.is_settled_claim()
                            && s.reversed_at[j] >= k
                            && claims.drug[r] == drug
                            && claims.days_supply[r].is_some()
                    })
                    .map(|j| {
                        let r = rows[j] as usize;
                        let supply = claims.days_supply[r].unwrap_or(0);
                        (claims.service_day[r] + supply, Related::Run(rows[j]))
                    })
                    .or_else(|| {
                        (0..records.len())
                            .rev()
                            .find(|&i| {
                                let r = &records[i];
                                r.status.is_settled_claim()
                                    && !prior_gone(first + i, k, s)
                                    && codes.drugs.of(r.drug) == drug
                                    && r.days_supply.is_some()
                            })
                            .map(|i| {
                                let r = &records[i];
                                (
                                    r.service_day + r.days_supply.unwrap_or(0),
                                    Related::Earlier((first + i) as u32),
                                )
                            })
                    });
                if let Some((runs_out, related)) = earlier {
                    let remaining = (runs_out - day) as i64;
                    if remaining > rules.refill_remaining_days as i64 {
                        flag(
                            Rule::EarlyRefill,
                            Some(remaining),
                            Some(rules.refill_remaining_days as i64),
                            related,
                        );
                    }
                }
            }
        }
        if before < rules.high_cost_fen && after >= rules.high_cost_fen {
            flag(
                Rule::HighCost,
                Some(after),
                Some(rules.high_cost_fen),
                Related::None,
            );
        }

        let burst = if on_day > rules.max_claims_per_day {
            Some((on_day, rules.max_claims_per_day, 1))
        } else if in_week > rules.max_claims_per_week {
            Some((in_week, rules.max_claims_per_week, 7))
        } else {
            None
        };
        if let Some((count, limit, window_days)) = burst {
            found.push(Anomaly {
                position: position as u32,
                rule: Rule::VisitBurst,
                value: Some(count as i64),
                threshold: Some(limit as i64),
                related: Related::None,
                window_days,
            });
        }
    }
}

/// Adds `total` to the year's cost; returns the cost before and after.
fn add_cost(ytd: &mut Vec<(i32, i64)>, year: i32, total: i64) -> (i64, i64) {
    let i = match ytd.iter().position(|(y, _)| *y == year) {
        Some(i) => i,
        None => {
            ytd.push((year, 0));
            ytd.len() - 1
        }
    };
    let before = ytd[i].1;
    ytd[i].1 += total;
    (before, ytd[i].1)
}

/// Marks the original of the refund at `k` as reversed from `k` on: settlement accepted the
/// refund, so its original is the earlier claim (this run first, then the state) with the id.
fn mark_reversed(
    a: &Auditor,
    rows: &[u32],
    k: usize,
    first: usize,
    earlier: usize,
    s: &mut Scratch,
) {
    let claims = a.claims;
    let Some(target) = claims.reverses_claim_id(rows[k] as usize) else {
        return;
    };
    if let Some(j) = (0..k).find(|&j| claims.claim_id(rows[j] as usize) == Some(target)) {
        s.reversed_at[j] = s.reversed_at[j].min(k);
    } else if let Some(i) = (first..first + earlier).find(|&i| a.prior.claim_ids.get(i) == target) {
        s.prior_reversed_at.push((i, k));
    }
}
