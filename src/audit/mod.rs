//! Smart audit (智能审核): the rules that flag settled claims for an auditor, run after
//! settlement. Each flag is a stable [`Rule`] code with its evidence (the value, the policy's
//! threshold, the earlier claim it relates to), so an auditor sees why.
//!
//! Two kinds of rule:
//! - **per person**, in the person's `(settled_at, claim_id)` order against what the person did
//!   before — in this run and, through the state, in earlier runs — so flags survive a month
//!   split ([`person`]);
//! - **per batch**: amounts far from their (drug, level) group in this run ([`outlier`]).
//!
//! A claim's risk score is `1 − Π(1 − weight)` over its flags, weights from its policy version.

pub mod eval;
pub mod outlier;
mod person;

use rayon::prelude::*;

use crate::domain::Rule;
use crate::ingest::claims::Claims;
use crate::ingest::registry::Registry;
use crate::partition::Partitions;
use crate::policy::{Policies, DEFAULT_WEIGHTS_BP, NONE};
use crate::settle::Settled;
use crate::state::Prior;

/// Persons per parallel work unit (by claim count, as in settlement).
const CHUNK_CLAIMS: usize = 16 * 1024;

/// Persons ahead of the one audited whose place in the prior is prefetched ([`Prior::prefetch`]).
const PREFETCH_AHEAD: usize = 8;

/// The claim an anomaly points back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Related {
    None,
    /// A claim of this run, by global row.
    Run(u32),
    /// A claim of an earlier run, by index in [`Prior::claims`].
    Earlier(u32),
}

/// One flag with its evidence. `value` and `threshold` are in the rule's unit: days for the
/// refill and supply rules, claims for bursts, fen for amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anomaly {
    /// Position in [`Partitions::order`].
    pub position: u32,
    pub rule: Rule,
    pub value: Option<i64>,
    pub threshold: Option<i64>,
    pub related: Related,
    /// For `visit_burst`: the window that overflowed, in days (1 or 7); else 0.
    pub window_days: u8,
}

impl Rule {
    /// What `value` and `threshold` count.
    pub fn unit(self) -> Unit {
        match self {
            Rule::EarlyRefill | Rule::SupplyTooLong => Unit::Days,
            Rule::VisitBurst => Unit::Claims,
            Rule::HighCost | Rule::AmountOutlier | Rule::CapExhausted | Rule::DuplicateClaim => {
                Unit::Fen
            }
            Rule::UnregisteredCondition
            | Rule::BeforeBenefitStart
            | Rule::AfterRegistrationEnd
            | Rule::PharmacyWithoutPrescription => Unit::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Days,
    Claims,
    Fen,
    None,
}

/// The audit stage's result.
#[derive(Debug, Default)]
pub struct Audited {
    /// Bit `1 << rule` per position in [`Partitions::order`].
    pub flags: Vec<u16>,
    /// Every flag with its evidence, by position then rule.
    pub anomalies: Vec<Anomaly>,
    /// The claim ids of the earlier claims the anomalies relate to: what the writers need of
    /// the [`Prior`], which is let go once every part is settled.
    pub earlier: EarlierIds,
}

/// Claim ids of earlier claims ([`Related::Earlier`]), by their number in the [`Prior`].
#[derive(Debug, Default)]
pub struct EarlierIds {
    /// Ascending, each once.
    numbers: Vec<u32>,
    ids: crate::state::Ids,
}

impl EarlierIds {
    /// The ids in `prior` of the earlier claims `anomalies` relate to.
    fn of(anomalies: &[Anomaly], prior: &Prior) -> EarlierIds {
        // A month without state flags millions of claims and relates none to an earlier one.
        if prior.holds_no_claims() {
            return EarlierIds::default();
        }
        let mut numbers: Vec<u32> = anomalies
            .iter()
            .filter_map(|a| match a.related {
                Related::Earlier(i) => Some(i),
                _ => None,
            })
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        let mut ids = crate::state::Ids::with_capacity(numbers.len(), numbers.len() * 16);
        for &i in &numbers {
            ids.push(prior.claim_id(i as usize));
        }
        EarlierIds { numbers, ids }
    }

    /// The claim id of earlier claim `number`, if an anomaly relates to it.
    pub fn get(&self, number: u32) -> Option<&str> {
        let at = self.numbers.binary_search(&number).ok()?;
        Some(self.ids.get(at))
    }
}

impl Audited {
    /// Flags of a position as rules, in code order.
    pub fn rules(flags: u16) -> impl Iterator<Item = Rule> {
        Rule::ALL
            .iter()
            .copied()
            .filter(move |r| flags & (1 << *r as u16) != 0)
    }

    /// `1 − Π(1 − w)` over the flags, with the weights of the claim's policy version.
    pub fn risk_score(policies: &Policies, version: u16, flags: u16) -> f32 {
        if flags == 0 {
            return 0.0;
        }
        let weights = match version {
            NONE => &DEFAULT_WEIGHTS_BP,
            v => match &policies.versions[v as usize].audit {
                Some(a) => &a.weights_bp,
                None => &DEFAULT_WEIGHTS_BP,
            },
        };
        let mut clear = 1.0f64;
        for rule in Audited::rules(flags) {
            clear *= 1.0 - f64::from(weights[rule as usize]) / 10_000.0;
        }
        (1.0 - clear) as f32
    }

    /// Anomaly counts per rule code, for the summary.
    pub fn counts(&self) -> [u64; Rule::COUNT] {
        let mut counts = [0u64; Rule::COUNT];
        for a in &self.anomalies {
            counts[a.rule as usize] += 1;
        }
        counts
    }
}

/// Everything the rules read.
pub struct Auditor<'a> {
    pub policies: &'a Policies,
    pub registry: &'a Registry,
    pub claims: &'a Claims,
    pub prior: &'a Prior,
    pub partitions: &'a Partitions,
    pub settled: &'a Settled,
}

impl Auditor<'_> {
    /// Runs every rule on a whole run: the amount statistics are this run's. Deterministic for
    /// any thread count: chunks are cut by the data alone and results are concatenated in order.
    pub fn run(&self) -> Audited {
        self.run_rules(|| outlier::whole_run_outliers(self))
    }

    /// Runs every rule on one partition of a run, judging amounts against `stats`, the whole
    /// run's (see [`outlier::AmountCounts`]).
    pub fn run_with(&self, stats: &outlier::AmountStats) -> Audited {
        self.run_rules(|| outlier::amount_outliers(self, stats))
    }

    fn run_rules(&self, outliers: impl FnOnce() -> Vec<Anomaly>) -> Audited {
        let lookup = person::PriorCodes::new(self.claims, self.prior, self.policies);
        let partitions = self.partitions;
        let chunks = partitions.chunks(CHUNK_CLAIMS);
        let parts: Vec<Vec<Anomaly>> = chunks
            .par_iter()
            .map(|&(a, b)| {
                let mut found = Vec::new();
                let mut scratch = person::Scratch::default();
                for slot in a..b {
                    if let Some(&ahead) = partitions.persons.get(slot + PREFETCH_AHEAD) {
                        self.prior.prefetch(ahead);
                    }
                    person::audit_person(self, &lookup, slot, &mut scratch, &mut found);
                }
                // A person's claims are in position order and each claim's flags in rule order.
                assert!(found.is_sorted_by_key(|a| (a.position, a.rule)));
                found
            })
            .collect();
        // Chunks are ranges of positions in order, each sorted: in order once put end to end,
        // and merged with the outliers, which span every chunk.
        let mut outliers = outliers();
        outliers.par_sort_by_key(|a| (a.position, a.rule));
        let anomalies = merged(parts, outliers);
        let mut flags = vec![0u16; self.partitions.order.len()];
        for a in &anomalies {
            flags[a.position as usize] |= 1 << a.rule as u16;
        }
        let earlier = EarlierIds::of(&anomalies, self.prior);
        Audited {
            flags,
            anomalies,
            earlier,
        }
    }

    /// The audit rules of the version that settled the claim at `position`, if any.
    fn rules_at(&self, position: usize) -> Option<&crate::policy::AuditRules> {
        match self.settled.outcomes[position].version {
            NONE => None,
            v => self.policies.versions[v as usize].audit.as_ref(),
        }
    }
}

/// The flags of `chunks` (each sorted by `(position, rule)`, the chunks in order of position)
/// and `outliers` (sorted the same way) in one list sorted by `(position, rule)`; on a tie the
/// chunk's flag comes first.
fn merged(chunks: Vec<Vec<Anomaly>>, outliers: Vec<Anomaly>) -> Vec<Anomaly> {
    let total = chunks.iter().map(Vec::len).sum::<usize>() + outliers.len();
    let mut out = Vec::with_capacity(total);
    let mut outliers = outliers.into_iter().peekable();
    for a in chunks.into_iter().flatten() {
        while let Some(o) = outliers.next_if(|o| (o.position, o.rule) < (a.position, a.rule)) {
            out.push(o);
        }
        out.push(a);
    }
    out.extend(outliers);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(position: u32, rule: Rule) -> Anomaly {
        Anomaly {
            position,
            rule,
            value: None,
            threshold: None,
            related: Related::None,
            window_days: 0,
        }
    }

    #[test]
    fn chunks_flags_and_outliers_merge_into_position_order() {
        let chunks = vec![
            vec![flag(1, Rule::EarlyRefill), flag(3, Rule::SupplyTooLong)],
            vec![],
            vec![flag(5, Rule::HighCost), flag(5, Rule::VisitBurst)],
        ];
        let outliers = vec![
            flag(0, Rule::AmountOutlier),
            flag(3, Rule::AmountOutlier),
            flag(9, Rule::AmountOutlier),
        ];
        let order: Vec<(u32, Rule)> = merged(chunks, outliers)
            .iter()
            .map(|a| (a.position, a.rule))
            .collect();
        assert_eq!(
            order,
            [
                (0, Rule::AmountOutlier),
                (1, Rule::EarlyRefill),
                (3, Rule::SupplyTooLong),
                (3, Rule::AmountOutlier),
                (5, Rule::HighCost),
                (5, Rule::VisitBurst),
                (9, Rule::AmountOutlier),
            ]
        );
    }
}
