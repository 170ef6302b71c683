//! Year-to-date state carried between runs (`--state DIR`): what later runs read of earlier
//! ones, and nothing more. Neither settlement's nor output's: [`crate::settle`] takes a person's
//! [`Prior`] in and hands its changes out ([`Changes`]); this module reads and writes them.
//!
//! A state directory ([`store`]) holds versions, each a small JSON manifest naming plain Parquet
//! files ([`tables`] writes them, [`read`] reads a run's share of them, [`compact`] merges them)
//! of three tables:
//! - **pools**: per (person, year, cap pool) the year-to-date amounts of every layer, written per
//!   person: a run writes the whole new state of every person it settled, and the newest file
//!   holding a person is that person's state;
//! - **history**: the settled claims (and accepted refunds) the audit rules and referral waivers
//!   look back at, appended: each run writes its own, and compaction keeps of each person only
//!   what the rules' windows reach ([`HISTORY_DAYS`], the latest fill of each drug, the latest
//!   stay) — not every claim of the year;
//! - **claims**: the claim index, a row per claim a run settled (what a later reversal or a
//!   repeated claim id needs), appended run by run and looked up by [`claim_key`] without reading
//!   the rest of its columns.
//!
//! A run reads only the rows of its own persons and claim ids, writes rows for them alone, and
//! commits a new version atomically as its last step ([`store::Store::commit`]).

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
    pub claim_key: u64,
    pub claim: EarlierClaim,
    pub settlement: Option<Box<ClaimRecord>>,
    /// From the history (not the claim index alone).
    pub in_history: bool,
    /// A refund in the history: the key of the claim it cancelled, which is then marked
    /// reversed; the refund itself is not an earlier claim the rules compare.
    pub reverses: Option<u64>,
}

impl Prior {
    /// Groups what was read by person: `pools` and `claims` of dense ids below `persons`.
    ///
    /// `claims` are the history's rows, each file's in person and settlement order, then the
    /// index's. They are grouped by a counting sort; a person's claims are sorted again only
    /// when they are out of order (rows of several history files, or of the index). A claim
    /// both in the history and in the index (the original of a reversal of this run) is kept
    /// once: what the audit compares from the history, its settlement from the index. A refund
    /// in the history marks the claim it cancelled reversed and is dropped.
    pub fn new(
        persons: usize,
        pools: Vec<(u32, PoolState)>,
        mut claims: Vec<PriorClaim>,
        texts: [Vec<String>; 3],
    ) -> Prior {
        let (pool_offsets, pools) = group_by_person(pools, persons);
        let mut starts = vec![0u32; persons + 1];
        for c in &claims {
            starts[c.person as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let mut grouped = vec![0u32; claims.len()];
        for (i, c) in claims.iter().enumerate() {
            let slot = &mut next[c.person as usize];
            grouped[*slot as usize] = i as u32;
            *slot += 1;
        }
        drop(next);
        let order = |a: &PriorClaim, b: &PriorClaim| {
            (a.claim.settled_at, &a.claim_id, !a.in_history).cmp(&(
                b.claim.settled_at,
                &b.claim_id,
                !b.in_history,
            ))
        };
        let mut offsets = vec![0u32; persons + 1];
        let mut records = Vec::with_capacity(claims.len());
        let mut claim_ids = Vec::with_capacity(claims.len());
        let mut settlement_of = Vec::with_capacity(claims.len());
        let mut settlements = Vec::new();
        let mut kept: Vec<u32> = Vec::new();
        for p in 0..persons {
            let slice = &mut grouped[starts[p] as usize..starts[p + 1] as usize];
            if !slice.is_sorted_by(|&a, &b| order(&claims[a as usize], &claims[b as usize]).is_le())
            {
                slice.sort_by(|&a, &b| order(&claims[a as usize], &claims[b as usize]));
            }
            kept.clear();
            for &i in slice.iter() {
                let c = &claims[i as usize];
                if let Some(target) = c.reverses {
                    for &k in &kept {
                        if claims[k as usize].claim_key == target {
                            claims[k as usize].claim.reversed = true;
                        }
                    }
                    continue;
                }
                match kept.last() {
                    Some(&last)
                        if claims[last as usize].in_history
                            && !c.in_history
                            && claims[last as usize].claim_id == c.claim_id =>
                    {
                        let settlement = claims[i as usize].settlement.take();
                        let reversed = claims[i as usize].claim.reversed;
                        let last = &mut claims[last as usize];
                        last.claim.reversed |= reversed;
                        last.settlement = settlement;
                    }
                    _ => kept.push(i),
                }
            }
            for &k in &kept {
                let c = &mut claims[k as usize];
                records.push(c.claim);
                claim_ids.push(std::mem::take(&mut c.claim_id));
                settlement_of.push(match c.settlement.take() {
                    Some(s) => {
                        settlements.push(*s);
                        settlements.len() as u32 - 1
                    }
                    None => u32::MAX,
                });
            }
            offsets[p + 1] = records.len() as u32;
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

impl WrittenClaim<'_> {
    /// A settled claim, or an accepted refund (which marks its original reversed when read).
    pub fn in_history(&self) -> bool {
        self.record.status.is_settled_claim() || self.record.status == Status::Reversal
    }
}

/// The rows one part of a run adds to the state, built by settlement
/// ([`crate::settle::Settled::changes`]).
#[derive(Default)]
pub struct Changes<'a> {
    pub pools: Vec<(&'a str, PoolState)>,
    /// Every claim the part settled, for the claim index; the history takes the settled claims
    /// and accepted refunds among them ([`WrittenClaim::in_history`]).
    pub claims: Vec<WrittenClaim<'a>>,
}

/// Which of a person's claims (`candidates`, in settlement order, refunds already applied as
/// [`EarlierClaim::reversed`]) compaction keeps in the history: settled claims of a year from
/// `first_year` on that are within [`HISTORY_DAYS`] of the person's latest service day, or are
/// the latest fill of their drug still counting, or the latest stay still counting. Drugs
/// compare by code: the candidates' codes must come from one list.
pub fn retained(candidates: &[EarlierClaim], first_year: i32, keep: &mut Vec<bool>) {
    keep.clear();
    keep.resize(candidates.len(), false);
    let latest = candidates
        .iter()
        .map(|c| c.service_day)
        .max()
        .unwrap_or(Day::MIN);
    let horizon = latest.saturating_sub(HISTORY_DAYS);
    let mut drugs_seen: Vec<u32> = Vec::new();
    let mut stay_seen = false;
    for (i, c) in candidates.iter().enumerate().rev() {
        if !c.status.is_settled_claim() || crate::domain::year_of(c.service_day) < first_year {
            continue;
        }
        let mut kept = c.service_day >= horizon;
        if !c.reversed {
            if c.drug != NO_CODE && c.days_supply.is_some() && !drugs_seen.contains(&c.drug) {
                drugs_seen.push(c.drug);
                kept = true;
            }
            if c.is_stay() && !stay_seen {
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

    fn claim(day: Day, drug: Option<u32>, supply: Option<i32>) -> EarlierClaim {
        EarlierClaim {
            settled_at: day as i64 * 86_400_000,
            total_fen: 100,
            service_day: day,
            institution: 3,
            drug: drug.unwrap_or(NO_CODE),
            medical_community: NO_CODE,
            days_supply: supply,
            status: Status::Paid,
            visit: VisitType::Outpatient,
            reversed: false,
        }
    }

    #[test]
    fn history_keeps_the_window_and_each_drugs_latest_fill_and_the_latest_stay() {
        // 2024-01-01 is day 19723. Latest service day: 19723 + 200; horizon 14 days before it,
        // d + 186.
        let d = 19_723;
        let mut stay = claim(d + 10, None, None);
        stay.visit = VisitType::Inpatient;
        let (a, b) = (Some(1), Some(2));
        let mut reversed_fill = claim(d + 130, b, Some(30));
        reversed_fill.reversed = true;
        let candidates = [
            claim(d, a, Some(30)),      // 0: superseded fill of A, out of window
            stay,                       // 1: the latest stay, out of window
            claim(d + 20, b, Some(30)), // 2: B's latest fill that still counts
            claim(d + 100, None, None), // 3: out of window
            claim(d + 120, a, Some(7)), // 4: A's latest fill
            reversed_fill,              // 5: out of window, reversed: not a latest fill
            claim(d + 186, None, None), // 6: on the horizon
            claim(d + 200, None, None), // 7: the latest
        ];
        let mut keep = Vec::new();
        retained(&candidates, 2024, &mut keep);
        assert_eq!(keep, [false, true, true, false, true, false, true, true]);
        // A year before `first_year` is dropped whatever it is.
        retained(&candidates, 2025, &mut keep);
        assert_eq!(keep, [false; 8]);
    }

    fn read(person: u32, id: &str, day: Day, history: bool, reverses: Option<&str>) -> PriorClaim {
        let mut c = claim(day, None, None);
        if reverses.is_some() {
            c.status = Status::Reversal;
        }
        PriorClaim {
            person,
            claim_id: id.into(),
            claim_key: claim_key(id),
            claim: c,
            settlement: (!history).then(|| Box::new(c.as_record())),
            in_history: history,
            reverses: reverses.map(claim_key),
        }
    }

    #[test]
    fn prior_groups_by_person_in_settlement_order_and_applies_the_historys_refunds() {
        let d = 19_723;
        let claims = vec![
            // A later history file first: person 1's claims arrive out of order.
            read(1, "B", d + 5, true, None),
            read(0, "X", d, true, None),
            read(1, "A", d + 1, true, None),
            // Person 1's refund of A, from a third run.
            read(1, "R", d + 6, true, Some("A")),
            // The index's record of B (the original of a reversal of this run): kept once,
            // with its settlement.
            read(1, "B", d + 5, false, None),
        ];
        let prior = Prior::new(3, Vec::new(), claims, text_lists());
        let (first, zero) = prior.claims_of(0);
        assert_eq!((first, zero.len()), (0, 1));
        let (first, one) = prior.claims_of(1);
        assert_eq!(first, 1);
        let ids: Vec<&str> = (first..first + one.len())
            .map(|i| &*prior.claim_ids[i])
            .collect();
        assert_eq!(ids, ["A", "B"]);
        assert!(one[0].reversed, "the refund marks A reversed");
        assert!(!one[1].reversed);
        assert!(prior.settlement(first).is_none());
        assert_eq!(
            prior.settlement(first + 1).map(|r| r.service_day),
            Some(d + 5)
        );
        assert!(prior.claims_of(2).1.is_empty());
    }
}
