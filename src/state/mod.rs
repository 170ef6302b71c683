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

use crate::domain::{Day, Millis, Status, VisitType, WEEK_DAYS};
use crate::ingest::claims::NO_CODE;
use crate::ingest::{group_by_key, person_slice};
use crate::limits::{MAX_CLAIM_FEN, MAX_DAYS_SUPPLY};
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

/// Appends the [`claim_key`] of every claim id of `ids` to `claim_keys` and of every reversal
/// target of `targets` to `target_keys` (nulls skipped): what a run asks the claim index about.
pub fn push_claim_keys(
    ids: &arrow::array::StringArray,
    targets: &arrow::array::StringArray,
    claim_keys: &mut Vec<u64>,
    target_keys: &mut Vec<u64>,
) {
    use arrow::array::Array;
    use rayon::prelude::*;
    let key_of =
        |a: &arrow::array::StringArray, i: usize| a.is_valid(i).then(|| claim_key(a.value(i)));
    claim_keys.par_extend(
        (0..ids.len())
            .into_par_iter()
            .filter_map(|i| key_of(ids, i)),
    );
    target_keys.extend((0..targets.len()).filter_map(|i| key_of(targets, i)));
}

/// A second 64-bit key of a person id, independent of [`crate::domain::stable_key`] (the first
/// 64 bits of its BLAKE3 hash): the `pools` table stores it beside `person_key`, so that a run
/// finds out, without reading the ids, that the state holds another person under one of its
/// persons' keys.
pub fn person_check(person_id: &str) -> u64 {
    let hash = blake3::hash(person_id.as_bytes());
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 of 32 bytes"))
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

    /// What every pool holds to, whatever reversals gave back (README "Limits"): the amount
    /// paid, the deductible absorbed and the claim count are never negative, and the cost is
    /// never more than its claims could add up to ([`MAX_CLAIM_FEN`] each). Checked where
    /// state is produced (the end of each person's settlement: a broken one is a bug, and the
    /// run stops before it commits) and where it is consumed (a state file breaking it stops
    /// the run naming the file).
    pub fn violation(&self) -> Option<&'static str> {
        if self.fund_fen < 0 {
            Some("the amount paid (fund_paid_fen) is negative")
        } else if self.deductible_fen < 0 {
            Some("the deductible absorbed (deductible_fen) is negative")
        } else if self.claims < 0 {
            Some("the claim count (claims) is negative")
        } else if self.cost_fen.unsigned_abs() > self.claims as u64 * MAX_CLAIM_FEN as u64 {
            Some("the cost (cost_fen) is more than its claims could add up to")
        } else if self.fund_fen as u64 > self.claims as u64 * MAX_CLAIM_FEN as u64 {
            Some("the amount paid (fund_paid_fen) is more than its claims could add up to")
        } else if self.deductible_fen as u64 > i32::MAX as u64 * MAX_CLAIM_FEN as u64 {
            // A shared deductible's pool counts no claims of its own: bounded by any pool's most.
            Some("the deductible absorbed (deductible_fen) is more than any pool could hold")
        } else {
            None
        }
    }

    /// Counts a claim in. The count bounds the pool's sums (see [`crate::limits`]), so it is
    /// checked in release builds too.
    #[inline]
    pub fn count_claim(&mut self) {
        self.claims = self
            .claims
            .checked_add(1)
            .expect("a pool counts fewer than 2^31 claims a year");
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
    /// Days of supply, 0 to [`MAX_DAYS_SUPPLY`]: 16 bits keep the claim in 40 bytes.
    pub days_supply: Option<u16>,
    pub status: Status,
    pub visit: VisitType,
    /// A later reversal cancelled it.
    pub reversed: bool,
}

/// Days of supply as an [`EarlierClaim`] holds them: `days`, if it is a supply ingest accepts
/// (0 to [`MAX_DAYS_SUPPLY`]).
pub fn supply_days(days: i32) -> Option<u16> {
    (0..=MAX_DAYS_SUPPLY).contains(&days).then_some(days as u16)
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
            // A record's supply was checked at ingest, or read from the index with none.
            days_supply: r.days_supply.and_then(supply_days),
            status: r.status,
            visit: r.visit,
            reversed: r.reversed,
        }
    }

    /// An inpatient stay that was settled (not a refund, not rejected).
    pub fn is_stay(&self) -> bool {
        self.visit == VisitType::Inpatient && self.status.is_settled_claim()
    }

    /// A fill: a drug with days of supply ([`crate::ingest::claims::Claims::is_fill`]).
    pub fn is_fill(&self) -> bool {
        self.drug != NO_CODE && self.days_supply.is_some()
    }

    /// As a claim record with no settlement (for tests that build records).
    #[cfg(test)]
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
            days_supply: self.days_supply.map(i32::from),
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
    /// Each dense person id's rank among the run's persons in person-key order (the order of
    /// the state's files and of settlement), or `u32::MAX`: what is held is stored by rank, so
    /// that building it and settling against it both walk memory in order.
    rank_of: Vec<u32>,
    pool_offsets: Vec<u32>,
    pools: Vec<PoolState>,
    /// Ranks per chunk: rank `r`'s claims are in chunk `r / chunk_persons`.
    chunk_persons: usize,
    /// The earlier claims, numbered across the chunks in rank order ([`Self::claim`]).
    chunks: Vec<Chunk>,
    /// The texts that records hold as codes ([`ClaimRecord::institution`] and the like).
    pub institutions: Vec<String>,
    pub drugs: Vec<String>,
    pub medical_communities: Vec<String>,
}

/// Texts side by side in one buffer: a night holds millions of claim ids, each its own
/// allocation otherwise.
#[derive(Debug, Default, Clone)]
pub struct Ids {
    text: String,
    ends: Vec<u32>,
}

impl Ids {
    pub fn with_capacity(ids: usize, bytes: usize) -> Ids {
        Ids {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(ids),
        }
    }

    pub fn push(&mut self, id: &str) {
        self.text.push_str(id);
        let end = u32::try_from(self.text.len()).expect("claim ids of a run under 4 GiB");
        self.ends.push(end);
    }

    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of text held.
    pub fn bytes(&self) -> usize {
        self.text.len()
    }

    /// Bytes of text of texts `range`.
    pub fn bytes_in(&self, range: std::ops::Range<usize>) -> usize {
        let end = |i: usize| if i == 0 { 0 } else { self.ends[i - 1] as usize };
        end(range.end) - end(range.start)
    }
}

/// Earlier claims as read from one piece of the state (a batch of a history file, or the
/// claim index's hits), as columns: a row per claim.
#[derive(Debug, Default)]
pub struct EarlierRows {
    /// The person's rank ([`Prior::new`]).
    pub person: Vec<u32>,
    pub claim: Vec<EarlierClaim>,
    pub claim_id: Ids,
    /// The refunds among the rows (`(row, key of the claim it cancelled)`): each marks its
    /// original reversed and is not itself an earlier claim the rules compare.
    pub refunds: Vec<(u32, u64)>,
    /// For rows of the claim index: each row's settlement (else empty).
    pub settlements: Vec<ClaimRecord>,
}

impl EarlierRows {
    pub fn len(&self) -> usize {
        self.person.len()
    }

    pub fn is_empty(&self) -> bool {
        self.person.is_empty()
    }

    fn is_index(&self) -> bool {
        !self.settlements.is_empty()
    }

    /// Puts the rows in person order (stable), if they are not.
    fn sort_by_person(&mut self) {
        if self.person.is_sorted() {
            return;
        }
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        order.sort_by_key(|&i| self.person[i as usize]);
        let mut new_row = vec![0u32; self.len()];
        for (to, &from) in order.iter().enumerate() {
            new_row[from as usize] = to as u32;
        }
        self.person = order.iter().map(|&i| self.person[i as usize]).collect();
        self.claim = order.iter().map(|&i| self.claim[i as usize]).collect();
        let mut ids = Ids::with_capacity(self.len(), self.claim_id.bytes());
        for &i in &order {
            ids.push(self.claim_id.get(i as usize));
        }
        self.claim_id = ids;
        if self.is_index() {
            self.settlements = order
                .iter()
                .map(|&i| self.settlements[i as usize])
                .collect();
        }
        for refund in &mut self.refunds {
            refund.0 = new_row[refund.0 as usize];
        }
        self.refunds.sort_unstable();
    }
}

impl Prior {
    /// Groups what was read by person: `pools` and `rows` name persons by rank among the run's
    /// `persons` in person-key order ([`Self::with_ranks`] then finds them by dense id).
    ///
    /// `rows` are the history's pieces in file order, each in person-key and settlement order,
    /// then the index's. Each piece is read front to back: a person's rows are gathered from
    /// the pieces whose range of ranks has begun and not ended, and sorted again (by settlement
    /// time, then claim id) only when they are out of order. A claim both in the history and in
    /// the index (the original of a reversal of this run) is kept once: what the audit compares
    /// from the history, its settlement from the index. A refund in the history marks the claim
    /// it cancelled reversed and is dropped. Of the history, a person keeps what compaction
    /// would keep ([`retained`]), whatever files it was read from. Ranges of ranks are grouped
    /// in parallel, each into its own chunk: a night groups millions of rows, and one
    /// thread doing it left the other idle.
    pub fn new(
        persons: usize,
        pools: Vec<(u32, PoolState)>,
        mut rows: Vec<EarlierRows>,
        texts: [Vec<String>; 3],
    ) -> Prior {
        use rayon::prelude::*;
        rows.par_iter_mut().for_each(EarlierRows::sort_by_person);
        let (pool_offsets, pools) = group_by_key(pools, persons);
        let chunk_persons = persons
            .div_ceil(CHUNKS * rayon::current_num_threads().max(1))
            .max(1);
        let ranges: Vec<std::ops::Range<usize>> = (0..persons)
            .step_by(chunk_persons)
            .map(|from| from..(from + chunk_persons).min(persons))
            .collect();
        // A band of chunks at a time, each piece dropped once the bands have passed its last
        // rank: what was read is not held twice over while it is grouped.
        let mut chunks: Vec<Chunk> = Vec::with_capacity(ranges.len());
        for band in ranges.chunks(ranges.len().div_ceil(BANDS).max(1)) {
            chunks.par_extend(
                band.par_iter()
                    .map(|ranks| Chunk::group(&rows, ranks.clone())),
            );
            let grouped = band.last().map_or(0, |r| r.end);
            for piece in rows.iter_mut() {
                if piece.person.last().is_none_or(|&p| (p as usize) < grouped) {
                    *piece = EarlierRows::default();
                }
            }
        }
        drop(rows);
        number_chunks(&mut chunks);
        let [institutions, drugs, medical_communities] = texts;
        Prior {
            rank_of: Vec::new(),
            pool_offsets,
            pools,
            chunk_persons,
            chunks,
            institutions,
            drugs,
            medical_communities,
        }
    }

    /// The prior found by dense person id: `rank_of` gives each its rank (`u32::MAX` for a
    /// person not in the run).
    pub fn with_ranks(mut self, rank_of: Vec<u32>) -> Prior {
        self.rank_of = rank_of;
        self
    }

    /// Starts loading where `person`'s rank is held: ranks are by dense id, in no order a
    /// walk of the persons in key order follows, and each is a cache miss otherwise (a third
    /// of the audit's time on a month of state, profiled).
    #[inline]
    pub fn prefetch(&self, person: u32) {
        if let Some(r) = self.rank_of.get(person as usize) {
            crate::ingest::registry::prefetch(r);
        }
    }

    /// The ranks given by [`Self::with_ranks`], for the next partition's prior.
    pub fn into_ranks(self) -> Vec<u32> {
        self.rank_of
    }

    /// The rank of dense person id `person`, if the run holds its state.
    fn rank(&self, person: u32) -> Option<u32> {
        self.rank_of
            .get(person as usize)
            .copied()
            .filter(|&r| r != u32::MAX)
    }

    pub fn pools_of(&self, person: u32) -> &[PoolState] {
        match self.rank(person) {
            Some(r) => person_slice(&self.pool_offsets, &self.pools, r),
            None => &[],
        }
    }

    /// The chunk holding earlier claim `i` and `i`'s place in it.
    #[inline]
    fn chunk_of(&self, i: usize) -> (&Chunk, usize) {
        // Empty chunks share their base with the next: the last chunk starting at or before
        // `i` is the one holding it.
        let c = &self.chunks[self.chunks.partition_point(|c| c.base <= i) - 1];
        (c, i - c.base)
    }

    /// Earlier claim `i` (numbered as [`Self::claims_of`] numbers them).
    #[inline]
    pub fn claim(&self, i: usize) -> &EarlierClaim {
        let (c, at) = self.chunk_of(i);
        &c.claims[at]
    }

    /// The claim id of earlier claim `i`.
    pub fn claim_id(&self, i: usize) -> &str {
        let (c, at) = self.chunk_of(i);
        c.claim_ids.get(at)
    }

    /// The settlement of earlier claim `i`, when the claim index gave it (for the originals of
    /// this run's reversals).
    pub fn settlement(&self, i: usize) -> Option<&ClaimRecord> {
        let (c, at) = self.chunk_of(i);
        let s = c.settled.binary_search(&(at as u32)).ok()?;
        Some(&c.settlements[s])
    }

    /// Lets go of the earlier claims that no claim of the run (`claims`, its persons ranked by
    /// [`Self::with_ranks`]) can reach, once the run's claims are known. The state is read
    /// before them (beside the registry), so it is grouped whole; most of what it holds of a
    /// person is fills of drugs the person does not fill in this run, which no rule compares.
    /// A person keeps:
    /// - a claim the claim index gave a settlement for (a reversal's original) or that is
    ///   already reversed (a reversal naming it is rejected as such);
    /// - a stay (settlement's latest stay);
    /// - a claim from [`WEEK_DAYS`] before the person's earliest service day in the run on
    ///   (`visit_burst` and `duplicate_claim` look no further back);
    /// - a fill of a drug the person fills in the run (`early_refill`).
    ///
    /// Every claim of the run counts, rejected or not: what it keeps is a superset of what
    /// settlement and the audit look at, in the same order, so their outcomes are the same.
    pub fn keep_reachable(&mut self, claims: &crate::ingest::claims::Claims) {
        use rayon::prelude::*;
        if self.holds_no_claims() {
            return;
        }
        let ranks: usize = self.chunks.iter().map(|c| c.offsets.len() - 1).sum();
        let mut earliest = vec![Day::MAX; ranks];
        // (rank, the run's code of a drug it fills)
        let mut fills: Vec<(u32, u32)> = Vec::new();
        for row in 0..claims.len() {
            let Some(r) = self.rank(claims.person[row]) else {
                continue;
            };
            let day = &mut earliest[r as usize];
            *day = (*day).min(claims.service_day[row]);
            if claims.is_fill(row) {
                fills.push((r, claims.drug[row]));
            }
        }
        fills.sort_unstable();
        fills.dedup();
        let reach = Reach {
            earliest,
            fills,
            drugs: run_codes(&self.drugs, &claims.drugs),
        };
        let chunk_persons = self.chunk_persons;
        self.chunks
            .par_iter_mut()
            .enumerate()
            .for_each(|(n, c)| c.keep_reachable(n * chunk_persons, &reach));
        number_chunks(&mut self.chunks);
    }

    /// Earlier claims held (after [`Self::keep_reachable`], those kept).
    pub fn claims_held(&self) -> usize {
        self.chunks.iter().map(|c| c.claims.len()).sum()
    }

    /// Whether it holds no earlier claim (a run without state, or whose persons have none).
    pub fn holds_no_claims(&self) -> bool {
        self.chunks.iter().all(|c| c.claims.is_empty())
    }

    /// Person's earlier claims with the number of the first.
    pub fn claims_of(&self, person: u32) -> (usize, &[EarlierClaim]) {
        let Some(r) = self.rank(person) else {
            return (0, &[]);
        };
        let r = r as usize;
        let Some(c) = self.chunks.get(r / self.chunk_persons) else {
            return (0, &[]);
        };
        let local = r % self.chunk_persons;
        match c.offsets.get(local + 1) {
            Some(&end) => {
                let start = c.offsets[local] as usize;
                (c.base + start, &c.claims[start..end as usize])
            }
            None => (0, &[]),
        }
    }
}

/// Ranges of ranks per thread grouped as separate tasks, so that a thread given a range of
/// heavy persons does not hold the other up.
const CHUNKS: usize = 16;

/// Bands the chunks are grouped in, one after another ([`Prior::new`]): the more bands, the less
/// of what was read is held beside what is grouped from it, the more often threads wait for a
/// band's last chunk.
const BANDS: usize = 4;

/// The earlier claims of a range of ranks ([`Prior::new`]).
#[derive(Debug, Default)]
struct Chunk {
    /// The number of the chunk's first claim among all of the [`Prior`]'s.
    base: usize,
    /// Each rank's claims (from the range's first rank on) start at `offsets[rank - first]`.
    offsets: Vec<u32>,
    claims: Vec<EarlierClaim>,
    /// The claim id of each of `claims`.
    claim_ids: Ids,
    /// Which of `claims` the claim index gave a settlement for (the originals of this run's
    /// reversals, a few thousand of millions), ascending: `settlements[k]` is `settled[k]`'s.
    settled: Vec<u32>,
    settlements: Vec<ClaimRecord>,
}

impl Chunk {
    /// The claims of persons `ranks` from `rows` (each piece in rank order).
    fn group(rows: &[EarlierRows], ranks: std::ops::Range<usize>) -> Chunk {
        // Where each piece's rows of the range begin and end.
        let mut cursor: Vec<usize> = Vec::with_capacity(rows.len());
        let mut ends: Vec<usize> = Vec::with_capacity(rows.len());
        let (mut total, mut bytes) = (0, 0);
        for r in rows {
            let from = r.person.partition_point(|&p| (p as usize) < ranks.start);
            let to = from + r.person[from..].partition_point(|&p| (p as usize) < ranks.end);
            cursor.push(from);
            ends.push(to);
            total += to - from;
            bytes += r.claim_id.bytes_in(from..to);
        }
        let persons = ranks.len();
        let mut opening: Vec<(u32, usize)> = (0..rows.len())
            .filter(|&n| cursor[n] < ends[n])
            .map(|n| (rows[n].person[cursor[n]], n))
            .collect();
        opening.sort_unstable();
        let mut opening = opening.into_iter().peekable();
        let mut open: Vec<usize> = Vec::new();
        let mut group: Vec<u64> = Vec::new();
        let at = |g: u64| ((g >> 32) as usize, (g & 0xffff_ffff) as usize);
        // The key of the claim a row cancelled, for a refund (refunds are listed in row order).
        let refund = |g: u64| {
            let (n, i) = at(g);
            let r = &rows[n].refunds;
            r.binary_search_by_key(&(i as u32), |r| r.0)
                .ok()
                .map(|k| r[k].1)
        };
        // By time, the ids looked up only between equal times.
        let order = |a: u64, b: u64| {
            let ((x, i), (y, j)) = (at(a), at(b));
            let (rx, ry) = (&rows[x], &rows[y]);
            rx.claim[i]
                .settled_at
                .cmp(&ry.claim[j].settled_at)
                .then_with(|| rx.claim_id.get(i).cmp(ry.claim_id.get(j)))
                .then_with(|| rx.is_index().cmp(&ry.is_index()))
        };
        const NO_SETTLEMENT: u64 = u64::MAX;
        let mut chunk = Chunk {
            base: 0,
            offsets: vec![0u32; persons + 1],
            claims: Vec::with_capacity(total),
            claim_ids: Ids::with_capacity(total, bytes),
            settled: Vec::new(),
            settlements: Vec::new(),
        };
        // (row of the record, row of its settlement in the index or NO_SETTLEMENT)
        let mut kept: Vec<(u64, u64)> = Vec::new();
        let mut cancelled: Vec<u64> = Vec::new();
        let mut claims: Vec<EarlierClaim> = Vec::new();
        let mut keep: Vec<bool> = Vec::new();
        for local in 0..persons {
            let p = ranks.start + local;
            while let Some((_, n)) = opening.next_if(|&(first, _)| first as usize == p) {
                let at = open.partition_point(|&m| m < n);
                open.insert(at, n);
            }
            // The common case, a person's rows all of one piece of the history, in order and
            // none a refund: what compaction keeps of them is taken from the piece as it lies.
            let mut holding = open.iter().copied().filter(|&n| {
                rows[n]
                    .person
                    .get(cursor[n])
                    .is_some_and(|&q| q as usize == p)
            });
            if let (Some(n), None) = (holding.next(), holding.next()) {
                let piece = &rows[n];
                let from = cursor[n];
                let to = from
                    + piece.person[from..ends[n]]
                        .iter()
                        .take_while(|&&q| q as usize == p)
                        .count();
                let first_refund = piece.refunds.partition_point(|r| (r.0 as usize) < from);
                let refunded = piece
                    .refunds
                    .get(first_refund)
                    .is_some_and(|r| (r.0 as usize) < to);
                // In settlement order: by time, the ids compared only between equal times.
                let in_order = |i: usize| {
                    let (a, b) = (&piece.claim[i - 1], &piece.claim[i]);
                    a.settled_at < b.settled_at
                        || (a.settled_at == b.settled_at
                            && piece.claim_id.get(i - 1) <= piece.claim_id.get(i))
                };
                if !piece.is_index() && !refunded && (from + 1..to).all(in_order) {
                    cursor[n] = to;
                    open.retain(|&m| cursor[m] < ends[m]);
                    retained(&piece.claim[from..to], i32::MIN, &mut keep);
                    for (i, _) in (from..to).zip(&keep).filter(|(_, &k)| k) {
                        chunk.claims.push(piece.claim[i]);
                        chunk.claim_ids.push(piece.claim_id.get(i));
                    }
                    chunk.offsets[local + 1] = chunk.claims.len() as u32;
                    continue;
                }
            }
            group.clear();
            for &n in &open {
                let person = &rows[n].person;
                let c = &mut cursor[n];
                while *c < ends[n] && person[*c] as usize == p {
                    group.push((n as u64) << 32 | *c as u64);
                    *c += 1;
                }
            }
            open.retain(|&n| cursor[n] < ends[n]);
            let slice = &mut group[..];
            if slice.len() > 1 && !slice.is_sorted_by(|&a, &b| order(a, b).is_le()) {
                slice.sort_by(|&a, &b| order(a, b));
            }
            kept.clear();
            cancelled.clear();
            for &g in slice.iter() {
                if let Some(key) = refund(g) {
                    cancelled.push(key);
                    continue;
                }
                let (n, i) = at(g);
                let index = rows[n].is_index();
                match kept.last_mut() {
                    Some((h, settlement))
                        if index
                            && *settlement == NO_SETTLEMENT
                            && rows[at(*h).0].claim_id.get(at(*h).1) == rows[n].claim_id.get(i) =>
                    {
                        *settlement = g
                    }
                    _ => kept.push((g, if index { g } else { NO_SETTLEMENT })),
                }
            }
            cancelled.sort_unstable();
            claims.clear();
            claims.extend(kept.iter().map(|&(g, settlement)| {
                let (n, i) = at(g);
                let mut claim = rows[n].claim[i];
                // A refund is rare: a claim's key is found from its id only when one is.
                if !cancelled.is_empty() {
                    let key = claim_key(rows[n].claim_id.get(i));
                    claim.reversed |= cancelled.binary_search(&key).is_ok();
                }
                if settlement != NO_SETTLEMENT {
                    let (m, j) = at(settlement);
                    claim.reversed |= rows[m].claim[j].reversed;
                }
                claim
            }));
            // What compaction would keep of the history: files the nights appended hold
            // every claim of their persons, and the rules reach no further than this.
            retained(&claims, i32::MIN, &mut keep);
            for (k, &(g, settlement)) in kept.iter().enumerate() {
                if settlement == NO_SETTLEMENT && !keep[k] {
                    continue;
                }
                let (n, i) = at(g);
                if settlement != NO_SETTLEMENT {
                    let (m, j) = at(settlement);
                    chunk.settled.push(chunk.claims.len() as u32);
                    chunk.settlements.push(rows[m].settlements[j]);
                }
                chunk.claims.push(claims[k]);
                chunk.claim_ids.push(rows[n].claim_id.get(i));
            }
            chunk.offsets[local + 1] = chunk.claims.len() as u32;
        }
        chunk
    }
}

/// Numbers the chunks' claims one after another, in rank order ([`Chunk::base`]).
fn number_chunks(chunks: &mut [Chunk]) {
    let mut base = 0;
    for c in chunks {
        c.base = base;
        base += c.claims.len();
    }
}

/// What the run's claims reach of each rank's earlier claims ([`Prior::keep_reachable`]).
struct Reach {
    /// The earliest service day of each rank's claims in the run.
    earliest: Vec<Day>,
    /// (rank, the run's code of a drug it fills), ascending.
    fills: Vec<(u32, u32)>,
    /// The state's drug codes as the run's.
    drugs: RunCodes,
}

impl Chunk {
    /// Keeps the claims of ranks `first..` that the run reaches ([`Prior::keep_reachable`]),
    /// in new buffers of their own size: what is let go is memory the run's later stages use.
    fn keep_reachable(&mut self, first: usize, reach: &Reach) {
        let persons = self.offsets.len() - 1;
        let mut keep = vec![false; self.claims.len()];
        let mut settled = self.settled.iter().peekable();
        let mut fill = reach.fills.partition_point(|&(r, _)| (r as usize) < first);
        let (mut kept, mut bytes) = (0, 0);
        for local in 0..persons {
            let rank = first + local;
            let from = fill;
            while reach
                .fills
                .get(fill)
                .is_some_and(|&(r, _)| r as usize == rank)
            {
                fill += 1;
            }
            let drugs = &reach.fills[from..fill];
            let horizon = reach.earliest[rank].saturating_sub(WEEK_DAYS - 1);
            let claims = self.offsets[local] as usize..self.offsets[local + 1] as usize;
            for i in claims {
                let c = &self.claims[i];
                let settlement = settled.next_if(|&&s| s as usize == i).is_some();
                let filled = || {
                    c.is_fill()
                        && drugs
                            .binary_search_by_key(&reach.drugs.of(c.drug), |&(_, d)| d)
                            .is_ok()
                };
                if settlement || c.reversed || c.is_stay() || c.service_day >= horizon || filled() {
                    keep[i] = true;
                    kept += 1;
                    bytes += self.claim_ids.get(i).len();
                }
            }
        }
        if kept == self.claims.len() {
            return;
        }
        let mut claims = Vec::with_capacity(kept);
        let mut claim_ids = Ids::with_capacity(kept, bytes);
        let mut settled = Vec::with_capacity(self.settled.len());
        let mut s = 0;
        let mut start = 0;
        for local in 0..persons {
            // The person's claims as held until now; its offset is rewritten below.
            let end = self.offsets[local + 1] as usize;
            for i in (start..end).filter(|&i| keep[i]) {
                if self.settled.get(s).is_some_and(|&at| at as usize == i) {
                    settled.push(claims.len() as u32);
                    s += 1;
                }
                claims.push(self.claims[i]);
                claim_ids.push(self.claim_ids.get(i));
            }
            self.offsets[local + 1] = claims.len() as u32;
            start = end;
        }
        debug_assert_eq!(s, self.settled.len(), "every settled claim is kept");
        self.claims = claims;
        self.claim_ids = claim_ids;
        self.settled = settled;
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

/// A claim as written to the history or the index: its ids and their keys, its record, and
/// for a reversal the claim it cancelled.
#[derive(Clone, Copy)]
pub struct WrittenClaim<'a> {
    pub person_id: &'a str,
    /// [`claim_key`] of `person_id` (the person key) and of `claim_id`, computed once: the
    /// tables write them and the index is ordered by the claim's.
    pub person_key: u64,
    pub claim_id: &'a str,
    pub claim_key: u64,
    /// Its institution, drug and medical community are codes of the run's dictionaries
    /// ([`crate::ingest::claims::Claims`]).
    pub record: ClaimRecord,
    /// The original of an accepted reversal.
    pub reverses: Option<&'a str>,
    /// An accepted reversal whose original is one of the run's claims (that claim's record
    /// says it was reversed).
    pub original_in_run: bool,
}

/// One of a person's pools after a run, as the run writes it to the `pools` table.
#[derive(Debug, Clone, Copy)]
pub struct WrittenPool<'a> {
    pub person_id: &'a str,
    /// [`claim_key`] of `person_id` (the person key).
    pub person_key: u64,
    pub state: PoolState,
}

/// Which of one person's claims of a run (`claims`, in settlement order, text codes of the run's
/// dictionaries) the run writes to the history: what [`retained`] keeps of them, and the
/// accepted refunds of claims of earlier runs (a refund of a claim of this run is already in
/// its original's `reversed`). Keeping only what the rules reach of the run's own claims is
/// safe with the earlier files beside: their latest service day, fills and stays are no later
/// than the state's.
pub fn history_rows(
    claims: &[WrittenClaim],
    first_year: i32,
    scratch: &mut Vec<EarlierClaim>,
    keep: &mut Vec<bool>,
) {
    scratch.clear();
    scratch.extend(claims.iter().map(|c| EarlierClaim::of(&c.record)));
    retained(scratch, first_year, keep);
    for (k, c) in keep.iter_mut().zip(claims) {
        if c.record.status == Status::Reversal {
            *k = !c.original_in_run;
        }
    }
}

/// The rows one part of a run adds to the state, built by settlement
/// ([`crate::settle::Settled::changes`]).
#[derive(Default)]
pub struct Changes<'a> {
    pub pools: Vec<WrittenPool<'a>>,
    /// Every claim the part settled, for the claim index.
    pub claims: Vec<WrittenClaim<'a>>,
    /// Whether each of `claims` goes to the history ([`history_rows`]).
    pub history: Vec<bool>,
}

/// The first day of `first_year`: a claim served before it is of a year the state no longer
/// holds. A state that has absorbed no year (`first_year` is `i32::MIN`) drops none.
pub fn first_day_held(first_year: i32) -> Day {
    match first_year {
        y if y < 0 => Day::MIN,
        y => crate::domain::days_from_civil(y, 1, 1),
    }
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
    let first_day = first_day_held(first_year);
    let mut drugs_seen: Vec<u32> = Vec::new();
    let mut stay_seen = false;
    for (i, c) in candidates.iter().enumerate().rev() {
        if !c.status.is_settled_claim() || c.service_day < first_day {
            continue;
        }
        let mut kept = c.service_day >= horizon;
        if !c.reversed {
            if c.is_fill() {
                if let Err(at) = drugs_seen.binary_search(&c.drug) {
                    drugs_seen.insert(at, c.drug);
                    kept = true;
                }
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

    #[test]
    fn an_earlier_claim_is_held_in_40_bytes() {
        // A night on a month's state holds millions of them, twice over while they are grouped.
        assert_eq!(std::mem::size_of::<EarlierClaim>(), 40);
        assert_eq!(supply_days(0), Some(0));
        assert_eq!(supply_days(MAX_DAYS_SUPPLY), Some(366));
        assert_eq!(supply_days(MAX_DAYS_SUPPLY + 1), None);
        assert_eq!(supply_days(-1), None);
    }

    #[test]
    fn a_pool_holds_to_its_invariants() {
        let pool = |fund, cost, deductible, claims| PoolState {
            fund_fen: fund,
            cost_fen: cost,
            deductible_fen: deductible,
            claims,
            ..PoolState::empty(2024, 1)
        };
        assert_eq!(pool(6_000, 10_000, 500, 1).violation(), None);
        // A total-cost pool after a refund of last year's claim: negative cost, within bounds.
        assert_eq!(pool(0, -10_000, 0, 1).violation(), None);
        assert!(pool(-1, 0, 0, 1).violation().unwrap().contains("paid"));
        assert!(pool(0, 0, -1, 1)
            .violation()
            .unwrap()
            .contains("deductible"));
        assert!(pool(0, 0, 0, -1)
            .violation()
            .unwrap()
            .contains("claim count"));
        assert_eq!(pool(0, MAX_CLAIM_FEN * 2, 0, 2).violation(), None);
        assert!(pool(0, MAX_CLAIM_FEN * 2 + 1, 0, 2)
            .violation()
            .unwrap()
            .contains("cost"));
    }

    fn claim(day: Day, drug: Option<u32>, supply: Option<u16>) -> EarlierClaim {
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

    /// Rows of one piece: (person, claim id, service day, the id it refunds).
    fn piece(claims: &[(u32, &str, Day, Option<&str>)], index: bool) -> EarlierRows {
        let mut rows = EarlierRows::default();
        for (i, &(person, id, day, refunds)) in claims.iter().enumerate() {
            let mut c = claim(day, None, None);
            if let Some(original) = refunds {
                c.status = Status::Reversal;
                rows.refunds.push((i as u32, claim_key(original)));
            }
            rows.person.push(person);
            rows.claim.push(c);
            rows.claim_id.push(id);
            if index {
                rows.settlements.push(c.as_record());
            }
        }
        rows
    }

    #[test]
    fn the_history_is_read_as_compaction_would_keep_it() {
        let d = 19_723;
        // One person: a visit 30 days before the latest (dropped), the latest fill of drug 7
        // as old (kept), an old claim whose settlement the index gives (kept: a reversal of
        // this run names it), and the latest visit.
        let mut history = piece(
            &[
                (0, "OLD", d, None),
                (0, "FILL", d + 1, None),
                (0, "ORIG", d + 2, None),
                (0, "NEW", d + 30, None),
            ],
            false,
        );
        history.claim[1].drug = 7;
        history.claim[1].days_supply = Some(30);
        let index = piece(&[(0, "ORIG", d + 2, None)], true);
        let prior =
            Prior::new(1, Vec::new(), vec![history, index], text_lists()).with_ranks(vec![0]);
        let (first, held) = prior.claims_of(0);
        let ids: Vec<&str> = (first..first + held.len())
            .map(|i| prior.claim_id(i))
            .collect();
        assert_eq!(ids, ["FILL", "ORIG", "NEW"]);
        assert!(prior.settlement(first).is_none());
        assert!(prior.settlement(first + 1).is_some());
    }

    #[test]
    fn a_run_keeps_of_the_earlier_claims_what_its_claims_can_reach() {
        let d = 19_723;
        // Person 0 (rank 0) claims on day d (no drug) and fills drug A on d + 1; person 1 on
        // d + 30, with drug A but no supply (not a fill). The state codes A as 1 and B as 2, the
        // run B as 1 and A as 2 (compared as codes of one list, B would pass for A). All of the
        // history is within compaction's horizon.
        let (a, b) = (Some(1), Some(2));
        let rows = [
            (0, "FILL-A", d - 14, a, Some(30)), // a fill of a drug the person fills: kept
            (0, "STAY", d - 13, None, None),    // the latest stay: kept
            (0, "FILL-B", d - 12, b, Some(30)), // another drug, before the week: dropped
            (0, "SETTLED", d - 11, None, None), // a reversal's original, from the index: kept
            (0, "REVERSED", d - 10, None, None), // already reversed: kept
            (0, "OLD", d - 7, None, None),      // the day before the week: dropped
            (0, "WEEK", d - 6, None, None),     // the week's first day: kept
            (0, "FILL-B2", d - 3, b, Some(30)), // another drug within the week: kept
            (0, "LATEST", d - 1, None, None),   // kept
            (1, "P1-FILL-A", d - 1, a, Some(30)), // person 1 fills no drug: dropped
        ];
        let ids: Vec<(u32, &str, Day, Option<&str>)> = rows
            .iter()
            .map(|&(p, id, day, _, _)| (p, id, day, None))
            .collect();
        let mut history = piece(&ids, false);
        for (c, &(_, id, _, drug, supply)) in history.claim.iter_mut().zip(&rows) {
            c.drug = drug.unwrap_or(NO_CODE);
            c.days_supply = supply;
            c.visit = match id {
                "STAY" => VisitType::Inpatient,
                _ => c.visit,
            };
            c.reversed = id == "REVERSED";
        }
        let index = piece(&[(0, "SETTLED", d - 11, None)], true);
        let texts = [
            vec![INDEX_ONLY.to_string()],
            [INDEX_ONLY, "A", "B"].map(String::from).to_vec(),
            Vec::new(),
        ];
        let mut prior =
            Prior::new(2, Vec::new(), vec![history, index], texts).with_ranks(vec![0, 1]);
        assert_eq!(prior.claims_held(), 10, "compaction keeps all of it");
        let claims = crate::ingest::claims::Claims {
            person: vec![0, 0, 1],
            service_day: vec![d, d + 1, d + 30],
            drug: vec![NO_CODE, 2, 2],
            days_supply: vec![None, Some(30), None],
            drugs: ["X", "B", "A"].map(String::from).to_vec(),
            ..Default::default()
        };
        prior.keep_reachable(&claims);
        let (first, held) = prior.claims_of(0);
        let kept: Vec<&str> = (first..first + held.len())
            .map(|i| prior.claim_id(i))
            .collect();
        assert_eq!(
            kept,
            ["FILL-A", "STAY", "SETTLED", "REVERSED", "WEEK", "FILL-B2", "LATEST"]
        );
        let settled: Vec<bool> = (first..first + held.len())
            .map(|i| prior.settlement(i).is_some())
            .collect();
        assert_eq!(settled, [false, false, true, false, false, false, false]);
        assert!(held[3].reversed);
        assert!(prior.claims_of(1).1.is_empty());
        assert_eq!(prior.claims_held(), 7);
    }

    #[test]
    fn claims_are_numbered_across_chunks_in_rank_order() {
        // 1,000 persons (many chunks), person r with r % 4 claims: one from a first file, the
        // rest from a second; a third piece, of the index, holds the settlement of person 998's
        // second claim.
        let d = 19_723;
        let ids: Vec<Vec<String>> = (0..1_000u32)
            .map(|r| (0..r % 4).map(|k| format!("C{r}-{k}")).collect())
            .collect();
        let mut first = Vec::new();
        let mut second = Vec::new();
        for (r, claims) in ids.iter().enumerate() {
            for (k, id) in claims.iter().enumerate() {
                let row = (r as u32, id.as_str(), d + k as Day, None);
                if k == 0 {
                    first.push(row)
                } else {
                    second.push(row)
                }
            }
        }
        let index = [(998u32, "C998-1", d + 1, None)];
        let pieces = vec![
            piece(&first, false),
            piece(&second, false),
            piece(&index, true),
        ];
        let prior =
            Prior::new(1_000, Vec::new(), pieces, text_lists()).with_ranks((0..1_000).collect());
        assert!(prior.chunks.len() > 1);
        let mut next = 0;
        for (r, claims) in ids.iter().enumerate() {
            let (start, held) = prior.claims_of(r as u32);
            assert_eq!(held.len(), claims.len(), "person {r}");
            if held.is_empty() {
                continue;
            }
            assert_eq!(
                start, next,
                "person {r}'s first claim follows the previous person's"
            );
            for (k, id) in claims.iter().enumerate() {
                assert_eq!(prior.claim_id(start + k), id);
                assert_eq!(prior.claim(start + k).service_day, d + k as Day);
                let settled = (r, k) == (998, 1);
                assert_eq!(prior.settlement(start + k).is_some(), settled, "{id}");
            }
            next = start + held.len();
        }
        assert_eq!(next, 1_000 / 4 * 6);
    }

    #[test]
    fn prior_groups_by_person_in_settlement_order_and_applies_the_historys_refunds() {
        let d = 19_723;
        // Persons by rank: dense ids 0, 1, 2 are ranks 2, 0, 1.
        let claims = vec![
            // A later history file first: person 1's claims arrive out of order.
            piece(&[(0, "B", d + 5, None), (2, "X", d, None)], false),
            piece(&[(0, "A", d + 1, None)], false),
            // Person 1's refund of A, from a third run.
            piece(&[(0, "R", d + 6, Some("A"))], false),
            // The index's record of B (the original of a reversal of this run): kept once,
            // with its settlement.
            piece(&[(0, "B", d + 5, None)], true),
        ];
        let prior = Prior::new(3, Vec::new(), claims, text_lists()).with_ranks(vec![2, 0, 1]);
        let (first, zero) = prior.claims_of(0);
        assert_eq!((first, zero.len()), (2, 1));
        assert_eq!(prior.claim_id(first), "X");
        let (first, one) = prior.claims_of(1);
        assert_eq!(first, 0);
        let ids: Vec<&str> = (first..first + one.len())
            .map(|i| prior.claim_id(i))
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

    #[test]
    fn a_run_writes_to_the_history_what_the_rules_reach_of_its_own_claims() {
        let d = 19_723;
        let written = |id: &'static str,
                       day: Day,
                       status: Status,
                       reverses: Option<&'static str>| WrittenClaim {
            person_id: "P",
            person_key: claim_key("P"),
            claim_id: id,
            claim_key: claim_key(id),
            record: EarlierClaim {
                status,
                ..claim(day, None, None)
            }
            .as_record(),
            reverses,
            // Of the originals, only A is one of this run's claims.
            original_in_run: reverses == Some("A"),
        };
        let claims = [
            written("OLD", d, Status::Paid, None), // 20 days before the latest: dropped
            written("A", d + 15, Status::Paid, None),
            written("R1", d + 16, Status::Reversal, Some("A")), // original here: dropped
            written("R2", d + 17, Status::Reversal, Some("EARLIER")), // kept for the state
            written("B", d + 20, Status::Paid, None),
        ];
        let (mut scratch, mut keep) = (Vec::new(), Vec::new());
        history_rows(&claims, 2024, &mut scratch, &mut keep);
        assert_eq!(keep, [false, true, false, true, true]);
    }
}
