//! Year-to-date state carried between runs (`--state DIR`): what later runs read of earlier
//! ones, and nothing more. Neither settlement's nor output's: [`crate::settle`] takes a person's
//! [`Prior`] in and hands its changes out ([`Changes`]); this module reads and writes them.
//!
//! A state directory ([`store`]) holds versions, each a small JSON manifest naming plain Parquet
//! files ([`tables`] writes them, [`read`] reads a run's share of them, [`compact`] merges them)
//! of three tables:
//! - **pools**: per (person, year, cap pool) the year-to-date amounts of every layer;
//! - **history**: per person, the settled claims the audit rules and referral waivers look back
//!   at, bounded by their windows ([`HISTORY_DAYS`], the latest fill of each drug, the latest
//!   stay), not every claim of the year;
//! - **claims**: the claim index, a row per claim a run settled (what a later reversal or a
//!   repeated claim id needs), appended run by run and looked up by [`claim_key`] without reading
//!   the rest of its columns.
//!
//! Pools and history are written per person: a run writes the whole new state of every person it
//! settled, and the newest file holding a person is that person's state. A run reads only the
//! rows of its own persons and claim ids, and commits a new version atomically as its last step
//! ([`store::Store::commit`]).

pub mod compact;
pub mod read;
pub mod store;
pub mod tables;

use std::collections::HashMap;

use crate::domain::{Day, Millis, Status, VisitType};
use crate::ingest::claims::NO_CODE;
use crate::ingest::{group_by_person, person_slice};
use crate::policy::NONE;

/// Days before a person's latest service day within which every settled claim is kept in the
/// history: the windows of the rules that compare a claim with the claims of its day
/// (`duplicate_claim`) and week (`visit_burst`), with a week's margin for claims settled late. A
/// claim served up to `HISTORY_DAYS − 7` days before the latest one the state has seen of its
/// person is compared with every claim of its week. Older claims are kept only as a drug's
/// latest fill (`early_refill`) or the latest stay (referral waivers).
pub const HISTORY_DAYS: i32 = 14;

/// The key the claim index is looked up by: [`crate::domain::stable_key`] of the claim id.
pub fn claim_key(claim_id: &str) -> u64 {
    crate::domain::stable_key(claim_id)
}

/// A person's year-to-date use of one cap pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    pub year: i32,
    pub pool: u16,
    pub fund_fen: i64,
    /// Cost covered (`fund + copay`): what a cost-basis cap counts.
    pub cost_fen: i64,
    pub deductible_fen: i64,
    pub claims: i32,
}

impl PoolState {
    pub fn empty(year: i32, pool: u16) -> PoolState {
        PoolState {
            year,
            pool,
            fund_fen: 0,
            cost_fen: 0,
            deductible_fen: 0,
            claims: 0,
        }
    }
}

/// The second and third layers of one-stop settlement (一站式结算) on one claim: critical
/// illness insurance and medical assistance. Each keeps a year-to-date pool of its own: base
/// received (`cost`), deductible absorbed and amount paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    /// Critical-illness pool, or [`NONE`] when no critical illness insurance took the claim.
    pub ci_pool: u16,
    pub ci_deductible_fen: i64,
    /// `critical_illness_paid`.
    pub ci_fen: i64,
    /// Assistance pool, or [`NONE`].
    pub assistance_pool: u16,
    pub assistance_deductible_fen: i64,
    /// `assistance_paid`.
    pub assistance_fen: i64,
}

impl Layers {
    pub const NONE: Layers = Layers {
        ci_pool: NONE,
        ci_deductible_fen: 0,
        ci_fen: 0,
        assistance_pool: NONE,
        assistance_deductible_fen: 0,
        assistance_fen: 0,
    };

    pub fn negated(&self) -> Layers {
        Layers {
            ci_deductible_fen: -self.ci_deductible_fen,
            ci_fen: -self.ci_fen,
            assistance_deductible_fen: -self.assistance_deductible_fen,
            assistance_fen: -self.assistance_fen,
            ..*self
        }
    }
}

/// A settled claim as the state keeps it (its claim id beside it). Text codes (institution, drug,
/// medical community) are codes of the list of whoever holds the record: [`Prior`]'s lists for
/// an earlier run's claim, the run's dictionaries for a claim of this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimRecord {
    pub settled_at: Millis,
    pub service_day: Day,
    pub status: Status,
    /// Policy version index, or [`NONE`].
    pub version: u16,
    /// Benefit label index, or [`NONE`].
    pub label: u16,
    /// Cap pool index, or [`NONE`].
    pub pool: u16,
    pub ratio_bp: Option<u32>,
    pub total_fen: i64,
    pub in_scope_fen: i64,
    pub eligible_fen: i64,
    pub deductible_fen: i64,
    pub fund_fen: i64,
    pub copay_fen: i64,
    pub over_cap_fen: i64,
    pub assisted: bool,
    /// A later reversal cancelled it.
    pub reversed: bool,
    pub visit: VisitType,
    /// What the audit rules compare across runs (duplicates, refills), or [`NO_CODE`].
    pub institution: u32,
    pub drug: u32,
    pub days_supply: Option<i32>,
    /// `medical_community_id` of an inpatient stay: what a later upward referral compares with.
    pub medical_community: u32,
    /// Critical illness insurance and medical assistance on this claim.
    pub layers: Layers,
}

impl ClaimRecord {
    /// An inpatient stay that was settled (not a refund, not rejected).
    pub fn is_stay(&self) -> bool {
        self.visit == VisitType::Inpatient && self.status.is_settled_claim()
    }
}

/// An earlier claim as the rules look back at it: what `duplicate_claim`, `visit_burst`,
/// `early_refill` and the referral waiver compare (about a third of a [`ClaimRecord`]: a night
/// holds millions of them). Text codes as in [`ClaimRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlierClaim {
    pub settled_at: Millis,
    pub total_fen: i64,
    pub service_day: Day,
    pub institution: u32,
    pub drug: u32,
    pub medical_community: u32,
    pub days_supply: Option<i32>,
    pub status: Status,
    pub visit: VisitType,
    /// A later reversal cancelled it.
    pub reversed: bool,
}

impl EarlierClaim {
    pub fn of(r: &ClaimRecord) -> EarlierClaim {
        EarlierClaim {
            settled_at: r.settled_at,
            total_fen: r.total_fen,
            service_day: r.service_day,
            institution: r.institution,
            drug: r.drug,
            medical_community: r.medical_community,
            days_supply: r.days_supply,
            status: r.status,
            visit: r.visit,
            reversed: r.reversed,
        }
    }

    /// An inpatient stay that was settled (not a refund, not rejected).
    pub fn is_stay(&self) -> bool {
        self.visit == VisitType::Inpatient && self.status.is_settled_claim()
    }

    /// As a claim record with no settlement (what the history writes back).
    pub fn as_record(&self) -> ClaimRecord {
        ClaimRecord {
            settled_at: self.settled_at,
            service_day: self.service_day,
            status: self.status,
            version: NONE,
            label: NONE,
            pool: NONE,
            ratio_bp: None,
            total_fen: self.total_fen,
            in_scope_fen: 0,
            eligible_fen: 0,
            deductible_fen: 0,
            fund_fen: 0,
            copay_fen: 0,
            over_cap_fen: 0,
            assisted: false,
            reversed: self.reversed,
            visit: self.visit,
            institution: self.institution,
            drug: self.drug,
            days_supply: self.days_supply,
            medical_community: self.medical_community,
            layers: Layers::NONE,
        }
    }
}

/// Marks a text of the state that this run's claims never mention (a null is [`NO_CODE`]).
pub const UNSEEN: u32 = u32::MAX - 1;

/// The text code of a claim found only in the claim index, which keeps no institution or drug:
/// entry 0 of [`Prior`]'s institution and drug lists, a text no claim has, so such a record is
/// never taken for a copy or a fill.
pub const INDEX_ONLY_TEXT: u32 = 0;

/// The text [`INDEX_ONLY_TEXT`] stands for.
const INDEX_ONLY: &str = "\u{0}index";

/// A text list's codes translated to a run dictionary's ([`run_codes`]).
#[derive(Debug, Default)]
pub struct RunCodes(Vec<u32>);

impl RunCodes {
    /// The run's code for state code `code`: [`NO_CODE`] for a null, [`UNSEEN`] for a text the
    /// run's claims do not have.
    #[inline]
    pub fn of(&self, code: u32) -> u32 {
        match code {
            NO_CODE => NO_CODE,
            c => self.0[c as usize],
        }
    }
}

/// Maps the codes of one of the state's text lists to this run's dictionary `run`: one hash per
/// distinct text, so comparing an earlier claim with a run claim is comparing integers.
pub fn run_codes(state: &[String], run: &[String]) -> RunCodes {
    let index: HashMap<&str, u32> = run
        .iter()
        .enumerate()
        .map(|(i, v)| (v.as_str(), i as u32))
        .collect();
    RunCodes(
        state
            .iter()
            .map(|v| index.get(v.as_str()).copied().unwrap_or(UNSEEN))
            .collect(),
    )
}

/// The state of this run's persons as the version read holds it, by dense person id: their
/// pools, and their earlier claims (the history, and claims of the index that this run's
/// reversals name), each person's in settlement order `(settled_at, claim_id)`.
#[derive(Debug, Default)]
pub struct Prior {
    pool_offsets: Vec<u32>,
    pools: Vec<PoolState>,
    claim_offsets: Vec<u32>,
    pub claims: Vec<EarlierClaim>,
    /// The claim id of each of [`Self::claims`].
    pub claim_ids: Vec<Box<str>>,
    /// The settlement of each of [`Self::claims`] found in the claim index (the originals of
    /// this run's reversals): an index into [`Self::settlements`], or `u32::MAX`.
    settlement_of: Vec<u32>,
    settlements: Vec<ClaimRecord>,
    /// Whether each of [`Self::claims`] came from the history (and is written back to it when
    /// its person is settled again), not from the claim index alone.
    pub in_history: Vec<bool>,
    /// The texts that records hold as codes ([`ClaimRecord::institution`] and the like).
    pub institutions: Vec<String>,
    pub drugs: Vec<String>,
    pub medical_communities: Vec<String>,
}

/// An earlier claim of a person, as read: its person (dense id), id, what the rules compare,
/// its settlement when it came from the claim index, and where from.
pub struct PriorClaim {
    pub person: u32,
    pub claim_id: Box<str>,
    pub claim: EarlierClaim,
    pub settlement: Option<Box<ClaimRecord>>,
    pub in_history: bool,
}

impl Prior {
    /// Groups what was read by person: `pools` and `claims` of dense ids below `persons`.
    /// A claim both in the history and in the index (the original of a reversal of this run)
    /// is kept once: what the audit compares from the history, its settlement from the index.
    ///
    /// `claims` are the history's rows, each person's in settlement order (as the history is
    /// written), then the index's: they are grouped by a counting sort, each moved once, and
    /// only the few persons with index records are sorted again.
    pub fn new(
        persons: usize,
        pools: Vec<(u32, PoolState)>,
        mut claims: Vec<PriorClaim>,
        texts: [Vec<String>; 3],
    ) -> Prior {
        let (pool_offsets, pools) = group_by_person(pools, persons);
        let mut offsets = vec![0u32; persons + 1];
        for c in &claims {
            offsets[c.person as usize + 1] += 1;
        }
        for i in 1..offsets.len() {
            offsets[i] += offsets[i - 1];
        }
        let mut next = offsets.clone();
        let mut source = vec![0u32; claims.len()];
        let mut resort: Vec<u32> = Vec::new();
        for (i, c) in claims.iter().enumerate() {
            let slot = &mut next[c.person as usize];
            source[*slot as usize] = i as u32;
            *slot += 1;
            if !c.in_history {
                resort.push(c.person);
            }
        }
        let mut records: Vec<EarlierClaim> =
            source.iter().map(|&i| claims[i as usize].claim).collect();
        let mut settlements = Vec::new();
        let mut settlement_of: Vec<u32> = source
            .iter()
            .map(|&i| match claims[i as usize].settlement.take() {
                Some(s) => {
                    settlements.push(*s);
                    settlements.len() as u32 - 1
                }
                None => u32::MAX,
            })
            .collect();
        let mut claim_ids: Vec<Box<str>> = source
            .iter()
            .map(|&i| std::mem::take(&mut claims[i as usize].claim_id))
            .collect();
        let mut in_history: Vec<bool> = source
            .iter()
            .map(|&i| claims[i as usize].in_history)
            .collect();
        drop(claims);
        drop(source);
        // A person with claims of the index: its claims sorted again, and a claim both in the
        // history and in the index kept once — what the audit compares from the history, its
        // settlement from the index.
        resort.sort_unstable();
        resort.dedup();
        let mut dropped = vec![false; records.len()];
        for &p in &resort {
            let (from, to) = (
                offsets[p as usize] as usize,
                offsets[p as usize + 1] as usize,
            );
            let mut order: Vec<usize> = (from..to).collect();
            order.sort_by(|&a, &b| {
                (records[a].settled_at, &claim_ids[a], !in_history[a]).cmp(&(
                    records[b].settled_at,
                    &claim_ids[b],
                    !in_history[b],
                ))
            });
            let sorted: Vec<(EarlierClaim, Box<str>, bool, u32)> = order
                .iter()
                .map(|&i| {
                    let id = std::mem::take(&mut claim_ids[i]);
                    (records[i], id, in_history[i], settlement_of[i])
                })
                .collect();
            for (k, (record, id, history, settlement)) in sorted.into_iter().enumerate() {
                records[from + k] = record;
                claim_ids[from + k] = id;
                in_history[from + k] = history;
                settlement_of[from + k] = settlement;
            }
            for i in from + 1..to {
                if claim_ids[i] == claim_ids[i - 1] && in_history[i - 1] && !in_history[i] {
                    records[i - 1].reversed |= records[i].reversed;
                    settlement_of[i - 1] = settlement_of[i];
                    dropped[i] = true;
                }
            }
        }
        if dropped.iter().any(|&d| d) {
            let mut kept = 0;
            let mut new_offsets = vec![0u32; persons + 1];
            for p in 0..persons {
                for i in offsets[p] as usize..offsets[p + 1] as usize {
                    if !dropped[i] {
                        records[kept] = records[i];
                        claim_ids.swap(kept, i);
                        in_history[kept] = in_history[i];
                        settlement_of[kept] = settlement_of[i];
                        kept += 1;
                    }
                }
                new_offsets[p + 1] = kept as u32;
            }
            records.truncate(kept);
            claim_ids.truncate(kept);
            in_history.truncate(kept);
            settlement_of.truncate(kept);
            offsets = new_offsets;
        }
        let [institutions, drugs, medical_communities] = texts;
        Prior {
            pool_offsets,
            pools,
            claim_offsets: offsets,
            claims: records,
            claim_ids,
            settlement_of,
            settlements,
            in_history,
            institutions,
            drugs,
            medical_communities,
        }
    }

    pub fn pools_of(&self, person: u32) -> &[PoolState] {
        person_slice(&self.pool_offsets, &self.pools, person)
    }

    /// The settlement of earlier claim `i`, when the claim index gave it (for the originals of
    /// this run's reversals).
    pub fn settlement(&self, i: usize) -> Option<&ClaimRecord> {
        match self.settlement_of[i] {
            u32::MAX => None,
            s => Some(&self.settlements[s as usize]),
        }
    }

    /// Person's earlier claims with the index of the first in [`Self::claims`].
    pub fn claims_of(&self, person: u32) -> (usize, &[EarlierClaim]) {
        let p = person as usize;
        match self.claim_offsets.get(p + 1) {
            Some(&end) => {
                let start = self.claim_offsets[p] as usize;
                (start, &self.claims[start..end as usize])
            }
            None => (0, &[]),
        }
    }
}

/// New text lists for [`Prior`]: institutions and drugs start with [`INDEX_ONLY`].
pub fn text_lists() -> [Vec<String>; 3] {
    [
        vec![INDEX_ONLY.to_string()],
        vec![INDEX_ONLY.to_string()],
        Vec::new(),
    ]
}

/// A claim as written to the history or the index: its record, its texts, and for a reversal
/// the claim it cancelled.
#[derive(Clone, Copy)]
pub struct WrittenClaim<'a> {
    pub person_id: &'a str,
    pub claim_id: &'a str,
    pub record: ClaimRecord,
    pub institution: Option<&'a str>,
    pub drug: Option<&'a str>,
    pub medical_community: Option<&'a str>,
    /// The original of an accepted reversal.
    pub reverses: Option<&'a str>,
}

/// The rows one part of a run adds to the state, built by settlement
/// ([`crate::settle::Settled::changes`]).
#[derive(Default)]
pub struct Changes<'a> {
    pub pools: Vec<(&'a str, PoolState)>,
    pub history: Vec<WrittenClaim<'a>>,
    pub claims: Vec<WrittenClaim<'a>>,
}

/// Which of a person's settled claims (`candidates`, in settlement order) the history keeps:
/// those of a year from `first_year` on that are within [`HISTORY_DAYS`] of the person's latest
/// service day, or are the latest fill of their drug still counting, or the latest stay still
/// counting. Drugs compare by text: candidates come from the state's lists and the run's.
pub fn retained(candidates: &[WrittenClaim], first_year: i32, keep: &mut Vec<bool>) {
    keep.clear();
    keep.resize(candidates.len(), false);
    let latest = candidates
        .iter()
        .map(|c| c.record.service_day)
        .max()
        .unwrap_or(Day::MIN);
    let horizon = latest.saturating_sub(HISTORY_DAYS);
    let mut drugs_seen: Vec<&str> = Vec::new();
    let mut stay_seen = false;
    for (i, c) in candidates.iter().enumerate().rev() {
        let r = &c.record;
        if !r.status.is_settled_claim() || crate::domain::year_of(r.service_day) < first_year {
            continue;
        }
        let mut kept = r.service_day >= horizon;
        if !r.reversed {
            if let (Some(drug), true) = (c.drug, r.days_supply.is_some()) {
                if !drugs_seen.contains(&drug) {
                    drugs_seen.push(drug);
                    kept = true;
                }
            }
            if r.is_stay() && !stay_seen {
                stay_seen = true;
                kept = true;
            }
        }
        keep[i] = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(day: Day, drug: Option<&'static str>, supply: Option<i32>) -> WrittenClaim<'static> {
        WrittenClaim {
            person_id: "P",
            claim_id: "C",
            record: EarlierClaim {
                settled_at: day as i64 * 86_400_000,
                total_fen: 100,
                service_day: day,
                institution: NO_CODE,
                drug: if drug.is_some() { 1 } else { NO_CODE },
                medical_community: NO_CODE,
                days_supply: supply,
                status: Status::Paid,
                visit: VisitType::Outpatient,
                reversed: false,
            }
            .as_record(),
            institution: Some("H1"),
            drug,
            medical_community: None,
            reverses: None,
        }
    }

    #[test]
    fn history_keeps_the_window_and_each_drugs_latest_fill_and_the_latest_stay() {
        // 2024-01-01 is day 19723. Latest service day: 19723 + 200; horizon 14 days before it,
        // d + 186.
        let d = 19_723;
        let mut stay = claim(d + 10, None, None);
        stay.record.visit = VisitType::Inpatient;
        let mut reversed_fill = claim(d + 130, Some("B"), Some(30));
        reversed_fill.record.reversed = true;
        let candidates = [
            claim(d, Some("A"), Some(30)), // 0: superseded fill of A, out of window
            stay,                          // 1: the latest stay, out of window
            claim(d + 20, Some("B"), Some(30)), // 2: B's latest fill that still counts
            claim(d + 100, None, None),    // 3: out of window
            claim(d + 120, Some("A"), Some(7)), // 4: A's latest fill
            reversed_fill,                 // 5: out of window, reversed: not a latest fill
            claim(d + 186, None, None),    // 6: on the horizon
            claim(d + 200, None, None),    // 7: the latest
        ];
        let mut keep = Vec::new();
        retained(&candidates, 2024, &mut keep);
        assert_eq!(keep, [false, true, true, false, true, false, true, true]);
        // A year before `first_year` is dropped whatever it is.
        retained(&candidates, 2025, &mut keep);
        assert_eq!(keep, [false; 8]);
    }
}
