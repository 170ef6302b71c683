//! The per-person rules: each of a person's claims against the person's earlier claims — in
//! this run, then in the state — and year-to-date cost. Only claims that settled count
//! (`paid`, `capped`, `not_covered`); a refund lowers the year's cost and makes its original no
//! longer count as an earlier fill or a duplicate's first copy from the refund on.

use super::{Anomaly, Auditor, Related};
use crate::domain::{year_of, Day, Level, Reason, Rule, Status, WEEK_DAYS};
use crate::ingest::claims::{Claims, NO_CODE};
use crate::partition::lookup::{DayCounts, LatestPerKey, Original};
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
    /// Per run claim of the person: refunded by a refund met so far.
    run_gone: Vec<bool>,
    /// Per earlier claim of the person: refunded by a refund of this run met so far.
    earlier_gone: Vec<bool>,
    /// Earlier claims that settled and may share a burst window or a day with this run's claims.
    recent: Vec<usize>,
    /// Year-to-date total cost by year.
    ytd: Vec<(i32, i64)>,
    /// Claims counted per service day (recent earlier claims, then this run's up to the current
    /// one): a day's and a week's count without looking back.
    days: DayCounts,
    /// The latest copy of each (institution, drug, amount, day): nodes are the `recent` earlier
    /// claims, then this run's.
    copies: LatestPerKey<(u32, u32, i64, Day)>,
    /// The latest fill of each drug: nodes are the person's earlier claims, then this run's.
    fills: LatestPerKey<u32>,
    /// The service days of the person's claims in this run that the rules look at.
    run_days: Vec<Day>,
    /// The drugs of those claims that are fills (a drug and days of supply).
    run_drugs: Vec<u32>,
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
    let mut refunds = a
        .settled
        .refunds_in(base, base + rows.len())
        .iter()
        .peekable();
    s.run_gone.clear();
    s.run_gone.resize(rows.len(), false);
    s.earlier_gone.clear();
    s.earlier_gone.resize(records.len(), false);
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
    // This run's claims the rules look at, and those that count as earlier claims for the ones
    // after them.
    let audited = |k: usize| {
        !matches!(
            outcomes[base + k].status,
            Status::Rejected | Status::Reversal
        )
    };
    // The days and fills of the claims the rules look at. Only they look for a copy or a fill:
    // an earlier claim is keyed only when it may be one of theirs (on one of their days, of one
    // of their drugs). A person on a month of state has several times as many earlier claims
    // as claims in a night.
    s.run_days.clear();
    s.run_drugs.clear();
    for (k, &row) in rows.iter().enumerate() {
        let row = row as usize;
        if audited(k) {
            s.run_days.push(claims.service_day[row]);
            if claims.is_fill(row) {
                s.run_drugs.push(claims.drug[row]);
            }
        }
    }
    s.run_days.sort_unstable();
    s.run_days.dedup();
    s.run_drugs.sort_unstable();
    s.run_drugs.dedup();
    let earliest = s.run_days.first().copied().unwrap_or(Day::MAX);
    s.recent.clear();
    s.recent.extend(
        records
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.status.is_settled_claim()
                    && r.service_day >= earliest.saturating_sub(WEEK_DAYS - 1)
            })
            .map(|(i, _)| i),
    );
    let recent = s.recent.len();
    s.days.start(
        s.recent
            .iter()
            .map(|&i| records[i].service_day)
            .chain((0..rows.len()).map(|k| claims.service_day[rows[k] as usize])),
    );
    for &i in &s.recent {
        s.days.add(records[i].service_day);
    }
    s.copies.start(recent + rows.len());
    for (n, &i) in s.recent.iter().enumerate() {
        let r = &records[i];
        if s.run_days.binary_search(&r.service_day).is_ok() {
            let key = (
                codes.institutions.of(r.institution),
                codes.drugs.of(r.drug),
                r.total_fen,
                r.service_day,
            );
            s.copies.key(n, key);
        }
    }
    s.fills.start(records.len() + rows.len());
    if !s.run_drugs.is_empty() {
        for (i, r) in records.iter().enumerate() {
            if r.status.is_settled_claim() && r.is_fill() {
                let drug = codes.drugs.of(r.drug);
                if s.run_drugs.binary_search(&drug).is_ok() {
                    s.fills.key(i, drug);
                }
            }
        }
    }
    for (k, &row) in rows.iter().enumerate() {
        let row = row as usize;
        if audited(k) {
            let key = (
                claims.institution[row],
                claims.drug[row],
                claims.total_fen[row],
                claims.service_day[row],
            );
            s.copies.key(recent + k, key);
            if claims.is_fill(row) {
                s.fills.key(records.len() + k, claims.drug[row]);
            }
        }
    }
    s.copies.group();
    s.fills.group();
    for n in 0..recent {
        s.copies.push(n);
    }
    for i in 0..records.len() {
        s.fills.push(i);
    }

    for k in 0..rows.len() {
        let row = rows[k] as usize;
        let position = base + k;
        let o = &outcomes[position];
        let day = claims.service_day[row];
        match o.status {
            Status::Rejected => continue,
            Status::Reversal => {
                add_cost(&mut s.ytd, year_of(day), claims.total_fen[row]);
                // Settlement accepted the refund: its original no longer counts from here on.
                if let Some(refund) = refunds.next_if(|r| r.position as usize == position) {
                    match refund.original {
                        Original::Run(at) => s.run_gone[at - base] = true,
                        Original::Earlier(i) => s.earlier_gone[i - first] = true,
                    }
                }
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
        let (on_day, in_week) = s.days.add(day);
        let rules = a.rules_at(position);
        let drug = claims.drug[row];

        // Against the person's earlier claims (this run's first, then the state's), those not
        // refunded by now: a copy of an earlier claim, and the latest fill of the same drug.
        let (run_gone, earlier_gone) = (&s.run_gone, &s.earlier_gone);
        let copy_gone = |n: usize| match n.checked_sub(recent) {
            Some(j) => run_gone[j],
            None => {
                let i = s.recent[n];
                records[i].reversed || earlier_gone[i]
            }
        };
        let copy = s
            .copies
            .latest(recent + k, copy_gone)
            .map(|n| match n.checked_sub(recent) {
                Some(j) => Related::Run(rows[j]),
                None => Related::Earlier((first + s.recent[n]) as u32),
            });
        let fill_gone = |n: usize| match n.checked_sub(records.len()) {
            Some(j) => run_gone[j],
            None => records[n].reversed || earlier_gone[n],
        };
        let fill = match (drug, claims.days_supply[row]) {
            (NO_CODE, _) | (_, None) => None,
            _ => s.fills.latest(records.len() + k, fill_gone).map(|n| {
                match n.checked_sub(records.len()) {
                    Some(j) => {
                        let r = rows[j] as usize;
                        let supply = claims.days_supply[r].unwrap_or(0);
                        (claims.service_day[r] + supply, Related::Run(rows[j]))
                    }
                    None => {
                        let r = &records[n];
                        let supply = i32::from(r.days_supply.unwrap_or(0));
                        (r.service_day + supply, Related::Earlier((first + n) as u32))
                    }
                }
            }),
        };
        if o.status.is_settled_claim() {
            s.copies.push(recent + k);
            s.fills.push(records.len() + k);
        }

        // The flags, in rule-code order: a chunk's flags come out sorted by (position, rule).
        if let (Some(rules), Some(days)) = (rules, claims.days_supply[row]) {
            if let Some((runs_out, related)) = fill {
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
            if days > rules.max_days_supply {
                flag(
                    Rule::SupplyTooLong,
                    Some(days as i64),
                    Some(rules.max_days_supply as i64),
                    Related::None,
                );
            }
        }
        if let Some(related) = copy {
            flag(
                Rule::DuplicateClaim,
                Some(claims.total_fen[row]),
                None,
                related,
            );
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
        if let Some(rules) = rules {
            if before < rules.high_cost_fen && after >= rules.high_cost_fen {
                flag(
                    Rule::HighCost,
                    Some(after),
                    Some(rules.high_cost_fen),
                    Related::None,
                );
            }
        }
        if claims.level[row] == Level::Pharmacy && claims.prescriber[row].is_none() {
            flag(Rule::PharmacyWithoutPrescription, None, None, Related::None);
        }
        let Some(rules) = rules else { continue };
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
