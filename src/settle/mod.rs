//! Settlement: each person's claims, in `(settled_at, claim_id)` order, against the person's
//! year-to-date state per year and cap pool. Persons are settled in parallel on the rayon pool;
//! work is split into chunks whose boundaries depend only on the data, so the output is the same
//! for any thread count.
//!
//! For each claim the engine picks the policy version (person's insured region, service date),
//! maps the diagnosis to a condition, finds the person's registration for it, chooses the benefit
//! by `[coverage][severity][condition]`, adjusts the ratio (contribution tier, secondary
//! condition) and splits the cost with [`kernel::split`]. A reversal gives its original's effect
//! on the state back. Every outcome other than `paid` carries a [`Reason`].

pub mod kernel;
pub mod layers;

use rayon::prelude::*;

use crate::domain::{year_of, Coverage, Day, Level, Reason, Referral, Status, VisitType};
use crate::ingest::claims::{Claims, NO_CODE};
use crate::ingest::registry::PersonIndex;
use crate::ingest::registry::{Person, PersonState, Registration, Registry};
use crate::money::mul_ratio;
use crate::partition::lookup::{ClaimIds, Original};
use crate::partition::Partitions;
use crate::policy::{DeductiblePer, LevelRatio, Policies, Slot, Version, NONE};
pub use crate::state::Layers;
use crate::state::{
    history_rows, run_codes, Changes, ClaimRecord, PoolState, Prior, RunCodes, WrittenClaim,
    WrittenPool,
};
use kernel::{split, Terms};

/// Claims per parallel work unit: large enough to amortise scheduling, small enough to balance
/// two cores when one person has thousands of claims.
const CHUNK_CLAIMS: usize = 16 * 1024;

/// Persons ahead of the one settled whose attributes and state are prefetched (half as far
/// ahead, their registrations).
const PREFETCH_AHEAD: usize = 8;

/// One claim's settlement. Amounts in fen; `self_funded` and the audit bases are derived from
/// these and the claim's input amounts when written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub reason: Option<Reason>,
    /// Policy version index, or [`NONE`].
    pub version: u16,
    /// Benefit label index, or [`NONE`].
    pub label: u16,
    /// Cap pool index, or [`NONE`].
    pub pool: u16,
    pub ratio_bp: Option<u32>,
    pub eligible_fen: i64,
    pub deductible_fen: i64,
    pub fund_fen: i64,
    pub copay_fen: i64,
    pub over_cap_fen: i64,
    pub cap_remaining_fen: Option<i64>,
    /// The person was in an assistance category when the claim was settled.
    pub assisted: bool,
    /// A later reversal in this run cancelled this claim.
    pub reversed: bool,
    /// What the later layers did with the claim.
    pub layers: Layers,
    /// Why no registered-condition benefit paid a claim settled by a general benefit (or not
    /// covered at all): a Jiaxing tertiary visit, a missing registration, … `None` when a
    /// condition benefit paid, and on reversals.
    pub condition_reason: Option<Reason>,
}

impl Outcome {
    pub fn unsettled(status: Status, reason: Reason) -> Outcome {
        Outcome {
            status,
            reason: Some(reason),
            version: NONE,
            label: NONE,
            pool: NONE,
            ratio_bp: None,
            eligible_fen: 0,
            deductible_fen: 0,
            fund_fen: 0,
            copay_fen: 0,
            over_cap_fen: 0,
            cap_remaining_fen: None,
            assisted: false,
            reversed: false,
            layers: Layers::NONE,
            condition_reason: None,
        }
    }

    /// The in-scope cost left to the person: handed on to critical illness insurance.
    pub fn critical_illness_base_fen(&self) -> i64 {
        match self.status {
            Status::Paid | Status::Capped | Status::Reversal => self.eligible_fen - self.fund_fen,
            Status::NotCovered | Status::Rejected => 0,
        }
    }

    /// What medical assistance receives, for persons in an assistance category: the in-scope
    /// cost both insurance layers left, below their deductibles and above their caps included
    /// (Weihai: 经基本医保、大病保险等报销后 … 全部纳入医疗救助范围).
    pub fn assistance_base_fen(&self) -> i64 {
        if self.assisted {
            self.critical_illness_base_fen() - self.layers.ci_fen
        } else {
            0
        }
    }

    /// What the person finally pays of `total`: `total − fund − critical illness − assistance`.
    pub fn patient_pays_fen(&self, total_fen: i64) -> i64 {
        total_fen - self.fund_fen - self.layers.ci_fen - self.layers.assistance_fen
    }
}

/// Everything settlement reads: compiled policies, registry, claims, the state's [`Prior`].
pub struct Engine<'a> {
    pub policies: &'a Policies,
    pub registry: &'a Registry,
    pub claims: &'a Claims,
    pub prior: &'a Prior,
    /// `[version][diagnosis]` → condition id or [`NONE`], built once per run.
    diagnosis_condition: Vec<Vec<u16>>,
    /// The state's medical communities as codes of this run's dictionary.
    prior_communities: RunCodes,
    /// [`crate::policy::TOTAL_COST_POOL`]'s id, when the policies define it.
    total_cost_pool: Option<u16>,
}

/// The settlement stage's result.
#[derive(Debug, Default)]
pub struct Settled {
    /// One per entry of [`Partitions::order`], in that order.
    pub outcomes: Vec<Outcome>,
    /// Year-to-date state after the run of every person with claims, by slot (see
    /// [`Partitions`]) then (year, pool).
    pub pools: Vec<(u32, PoolState)>,
    /// Every accepted refund with its original, by position.
    pub refunds: Vec<Refund>,
    /// `[version][diagnosis]` → the condition settlement read the diagnosis code as (an id of
    /// [`Policies::conditions`]) or [`NONE`]: matched once per code, for the outputs to name.
    pub conditions: Vec<Vec<u16>>,
}

/// An accepted refund (status `reversal`) and the claim it gave back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refund {
    /// Position of the refund in [`Partitions::order`].
    pub position: u32,
    /// Its original: a claim of this run by position in [`Partitions::order`], or an earlier
    /// claim by index in [`Prior::claims`].
    pub original: Original,
}

impl Settled {
    /// The refunds among positions `from..to` (one person's claims).
    pub fn refunds_in(&self, from: usize, to: usize) -> &[Refund] {
        let a = self
            .refunds
            .partition_point(|r| (r.position as usize) < from);
        let b = self.refunds.partition_point(|r| (r.position as usize) < to);
        &self.refunds[a..b]
    }

    /// What the settlement of slots `a..b` of `partitions` changes in the state, for each person
    /// with claims here: the person's pools after the run (of years from `first_year` on), and
    /// this run's claims for the claim index and the history.
    pub fn changes<'a>(
        &'a self,
        claims: &'a Claims,
        partitions: &Partitions,
        persons: &'a PersonIndex,
        first_year: i32,
        (a, b): (usize, usize),
    ) -> Changes<'a> {
        let claim_rows = (partitions.offsets[b] - partitions.offsets[a]) as usize;
        let mut changes = Changes {
            claims: Vec::with_capacity(claim_rows),
            history: Vec::with_capacity(claim_rows),
            ..Changes::default()
        };
        let (mut scratch, mut keep) = (Vec::new(), Vec::new());
        let from = self.pools.partition_point(|(q, _)| (*q as usize) < a);
        let mut pools = self.pools[from..].iter().peekable();
        for slot in a..b {
            let rows = partitions.rows_of(slot);
            if rows.is_empty() {
                continue;
            }
            // Persons in key order read the arena, in input order, at random.
            persons.prefetch_ahead(&partitions.persons, slot);
            let person_id = persons.id(partitions.persons[slot]);
            let person_key = partitions.keys[slot];
            let before = changes.pools.len();
            let pool = |state: PoolState| WrittenPool {
                person_id,
                person_key,
                state,
            };
            while let Some((_, state)) = pools.next_if(|(q, _)| *q as usize == slot) {
                if state.year >= first_year {
                    changes.pools.push(pool(*state));
                }
            }
            if changes.pools.len() == before {
                // No pool: the row still marks this version as the holder of the person.
                changes.pools.push(pool(PoolState::empty(0, NONE)));
            }
            let first = partitions.offsets[slot] as usize;
            let start = changes.claims.len();
            let mut refunds = self.refunds_in(first, first + rows.len()).iter().peekable();
            for (k, &row) in rows.iter().enumerate() {
                let row = row as usize;
                let o = &self.outcomes[first + k];
                let claim_id = claims.claim_id(row).unwrap_or_default();
                changes.claims.push(WrittenClaim {
                    person_id,
                    person_key,
                    claim_id,
                    claim_key: crate::state::claim_key(claim_id),
                    record: record_of(claims, row, o),
                    reverses: (o.status == Status::Reversal)
                        .then(|| claims.reverses_claim_id(row))
                        .flatten(),
                    original_in_run: refunds
                        .next_if(|r| r.position as usize == first + k)
                        .is_some_and(|r| matches!(r.original, Original::Run(_))),
                });
            }
            history_rows(
                &changes.claims[start..],
                first_year,
                &mut scratch,
                &mut keep,
            );
            changes.history.extend_from_slice(&keep);
        }
        changes
    }
}

/// The state's record of the claim at `row`, settled as `o`; its texts are codes of the run's
/// dictionaries.
fn record_of(claims: &Claims, row: usize, o: &Outcome) -> ClaimRecord {
    ClaimRecord {
        settled_at: claims.settled_at[row],
        service_day: claims.service_day[row],
        status: o.status,
        version: o.version,
        label: o.label,
        pool: o.pool,
        ratio_bp: o.ratio_bp,
        total_fen: claims.total_fen[row],
        in_scope_fen: claims.in_scope_fen[row],
        eligible_fen: o.eligible_fen,
        deductible_fen: o.deductible_fen,
        fund_fen: o.fund_fen,
        copay_fen: o.copay_fen,
        over_cap_fen: o.over_cap_fen,
        assisted: o.assisted,
        reversed: o.reversed,
        visit: claims.visit[row],
        institution: claims.institution[row],
        drug: claims.drug[row],
        days_supply: claims.days_supply[row],
        medical_community: claims.medical_community[row],
        layers: o.layers,
    }
}

/// Per-thread scratch reused across persons: no allocation per claim.
#[derive(Default)]
struct Scratch {
    pools: Vec<PoolState>,
    /// Per earlier claim of the person: refunded in this run. Sized at the person's first
    /// refund of an earlier claim; empty means none.
    reversed_prior: Vec<bool>,
    /// The person's claim ids, for refunds to find their originals.
    ids: ClaimIds,
    /// The person's settled stays of this run so far, in order (the latest last); refunded ones
    /// are dropped when met at the top.
    stays: Vec<u32>,
    /// The person's earlier stays not refunded in the state, in order; built at the first
    /// upward referral (`None` until then).
    earlier_stays: Option<Vec<u32>>,
    /// Spare storage for `earlier_stays`.
    spare_stays: Vec<u32>,
}

impl Scratch {
    fn reversed_prior(&self, i: usize) -> bool {
        self.reversed_prior.get(i).copied().unwrap_or(false)
    }
}

impl<'a> Engine<'a> {
    pub fn new(
        policies: &'a Policies,
        registry: &'a Registry,
        claims: &'a Claims,
        prior: &'a Prior,
    ) -> Engine<'a> {
        // Distinct diagnosis codes are few (thousands) next to claims (millions): match ICD-10
        // prefixes once per code and version, never per claim.
        let diagnosis_condition = policies
            .versions
            .iter()
            .map(|v| {
                claims
                    .diagnoses
                    .iter()
                    .map(|d| v.condition_of(d).unwrap_or(NONE))
                    .collect()
            })
            .collect();
        let prior_communities = run_codes(&prior.medical_communities, &claims.medical_communities);
        Engine {
            policies,
            registry,
            claims,
            prior,
            diagnosis_condition,
            prior_communities,
            total_cost_pool: policies.pools.id(crate::policy::TOTAL_COST_POOL),
        }
    }

    /// Settles every partitioned claim in parallel.
    pub fn settle(&self, partitions: &Partitions) -> Settled {
        let n = partitions.order.len();
        let mut outcomes = vec![Outcome::unsettled(Status::Rejected, Reason::NullKey); n];
        // Chunk boundaries fall between persons, by claim count: a function of the data only.
        let chunks = partitions.chunks(CHUNK_CLAIMS);
        let lengths = chunks
            .iter()
            .map(|&(a, b)| (partitions.offsets[b] - partitions.offsets[a]) as usize);
        let work: Vec<((usize, usize), &mut [Outcome])> = chunks
            .iter()
            .copied()
            .zip(crate::ingest::cut_mut(&mut outcomes, lengths))
            .collect();
        type Part = (Vec<(u32, PoolState)>, Vec<Refund>);
        let results: Vec<Part> = work
            .into_par_iter()
            .map_init(Scratch::default, |scratch, ((a, b), out)| {
                let (mut pools, mut refunds) = (Vec::new(), Vec::new());
                let base = partitions.offsets[a] as usize;
                for slot in a..b {
                    // The persons' attributes, registrations and state are numbered otherwise
                    // than the slots: each is a cache miss unless asked for ahead.
                    if let Some(&ahead) = partitions.persons.get(slot + PREFETCH_AHEAD) {
                        self.registry.prefetch_person(ahead);
                        self.registry.prefetch_registration_offsets(ahead);
                        self.prior.prefetch(ahead);
                    }
                    if let Some(&near) = partitions.persons.get(slot + PREFETCH_AHEAD / 2) {
                        self.registry.prefetch_registrations(near);
                    }
                    let rows = partitions.rows_of(slot);
                    if rows.is_empty() {
                        // No claims this run: the person's state stays as it was.
                        continue;
                    }
                    let from = partitions.offsets[slot] as usize - base;
                    let person = partitions.persons[slot];
                    let out = &mut out[from..from + rows.len()];
                    let first = refunds.len();
                    self.settle_person(person, rows, out, scratch, &mut refunds);
                    // Positions: the person's claims start at its slot's offset.
                    let offset = partitions.offsets[slot];
                    for r in &mut refunds[first..] {
                        r.position += offset;
                        if let Original::Run(j) = &mut r.original {
                            *j += offset as usize;
                        }
                    }
                    pools.extend(scratch.pools.iter().map(|s| (slot as u32, *s)));
                }
                (pools, refunds)
            })
            .collect();
        let mut settled = Settled {
            outcomes,
            conditions: self.diagnosis_condition.clone(),
            ..Settled::default()
        };
        // Sized once: a night's persons bring millions of earlier pools, and a vector grown by
        // doubling would touch twice their memory.
        settled
            .pools
            .reserve_exact(results.iter().map(|(p, _)| p.len()).sum());
        settled
            .refunds
            .reserve_exact(results.iter().map(|(_, r)| r.len()).sum());
        for (pools, refunds) in results {
            settled.pools.extend(pools);
            settled.refunds.extend(refunds);
        }
        settled
    }

    /// Settles one person's claims (`rows`, in order) into `out`; the refunds it accepts go to
    /// `refunds`, positions counted from the person's first claim.
    fn settle_person(
        &self,
        person: u32,
        rows: &[u32],
        out: &mut [Outcome],
        scratch: &mut Scratch,
        refunds: &mut Vec<Refund>,
    ) {
        scratch.pools.clear();
        scratch.pools.extend_from_slice(self.prior.pools_of(person));
        scratch.reversed_prior.clear();
        scratch.ids.clear();
        scratch.stays.clear();
        if let Some(stays) = scratch.earlier_stays.take() {
            scratch.spare_stays = stays;
        }
        let attributes = self.registry.person(person);
        for k in 0..rows.len() {
            let row = rows[k] as usize;
            out[k] = if self.claims.is_reversal[row] {
                self.reverse(person, rows, k, out, scratch, refunds)
            } else {
                let previous = match self.claims.referral[row] {
                    Some(Referral::Upward) => self.previous_stay(person, rows, out, scratch),
                    _ => None,
                };
                self.settle_claim(person, &attributes, row, previous, scratch)
            };
            if self.claims.visit[row] == VisitType::Inpatient && out[k].status.is_settled_claim() {
                scratch.stays.push(k as u32);
            }
            // Every settled row counts in the year's total cost (a refund negatively), in the
            // year of its own service day.
            if let (Some(pool), true) = (self.total_cost_pool, out[k].status != Status::Rejected) {
                let state = pool_state(
                    &mut scratch.pools,
                    year_of(self.claims.service_day[row]),
                    pool,
                );
                state.cost_fen += self.claims.total_fen[row];
                state.count_claim();
            }
        }
        // Checked in release builds: a broken pool is a bug, and the run stops here, before it
        // writes or commits anything. The message names the pool, not the person.
        for pool in &scratch.pools {
            if let Some(broken) = pool.violation() {
                panic!(
                    "settlement broke a pool: {broken} (year {}, pool `{}`); a reversal gives \
                     back what its claim's settlement took, so the state and its claim index \
                     disagree, or a policy version was edited after it settled claims",
                    pool.year, self.policies.pools[pool.pool as usize]
                );
            }
        }
        scratch.pools.sort_unstable_by_key(|s| (s.year, s.pool));
    }

    fn settle_claim(
        &self,
        person: u32,
        attributes: &Person,
        row: usize,
        previous_stay: Option<(u32, Day)>,
        scratch: &mut Scratch,
    ) -> Outcome {
        let not_covered = |reason| Outcome::unsettled(Status::NotCovered, reason);
        let claims = self.claims;
        let day = claims.service_day[row];
        let v = match version_for(self.policies, attributes, day) {
            Ok(v) => v,
            Err(reason) => return not_covered(reason),
        };
        let version = &self.policies.versions[v as usize];
        // A registered condition's benefit first; what it does not pay falls to the general
        // benefit of the visit type (Jiaxing clause 12: costs outside the two-diseases scope go
        // to general outpatient), else it is not covered for the condition path's reason.
        let condition = self.condition_benefit(person, attributes, v, row);
        let condition_reason = condition.err();
        let chosen = condition.or_else(|reason| {
            let slot = version
                .general_slot(attributes.coverage, claims.visit[row])
                .ok_or(reason)?;
            let benefit = &version.benefits[slot.benefit as usize];
            let ratio = level_ratio(benefit.ratio, claims.level[row], claims.prescriber[row])?;
            Ok((
                slot,
                adjust_ratio(ratio, version, benefit, attributes, true),
            ))
        });
        let (slot, ratio_bp) = match chosen {
            Ok(c) => c,
            Err(reason) => {
                return Outcome {
                    version: v,
                    condition_reason,
                    ..not_covered(reason)
                }
            }
        };
        let benefit = &version.benefits[slot.benefit as usize];
        let level = claims.level[row];

        let year = year_of(day);
        // A shared deductible (Jiaxing employees: one outpatient deductible) is absorbed in its
        // own pool; otherwise in the benefit's.
        let deductible_pool = match benefit.deductible_pool {
            NONE => slot.pool,
            shared => shared,
        };
        let deductible_used = pool_state(&mut scratch.pools, year, deductible_pool).deductible_fen;
        let deductible_left_fen = match benefit.deductible_per {
            DeductiblePer::Year => benefit.deductible_fen[level as usize] - deductible_used,
            DeductiblePer::Admission => {
                let community = claims.medical_community[row];
                let waiver = &benefit.referral_waiver;
                let continues = previous_stay.is_some_and(|(c, on)| {
                    community != NO_CODE
                        && c == community
                        && waiver.within_days.is_none_or(|w| day - on <= w as i32)
                });
                if waiver.waives(claims.referral[row], continues) {
                    0
                } else {
                    benefit.deductible_fen[level as usize]
                }
            }
        };
        let state = pool_state(&mut scratch.pools, year, slot.pool);
        let terms = Terms {
            ratio_bp,
            deductible_left_fen,
            cap_left_fen: cap_left(benefit, state),
            cap_basis: benefit.cap_basis,
        };
        let s = split(claims.in_scope_fen[row], &terms);
        state.fund_fen += s.fund_fen;
        state.cost_fen += s.covered_fen;
        state.count_claim();
        pool_state(&mut scratch.pools, year, deductible_pool).deductible_fen += s.deductible_fen;
        let mut outcome = Outcome {
            status: if s.capped {
                Status::Capped
            } else {
                Status::Paid
            },
            reason: s.capped.then_some(Reason::AnnualCapReached),
            version: v,
            label: slot.label,
            pool: slot.pool,
            ratio_bp: Some(ratio_bp),
            eligible_fen: s.eligible_fen,
            deductible_fen: s.deductible_fen,
            fund_fen: s.fund_fen,
            copay_fen: s.copay_fen,
            over_cap_fen: s.over_cap_fen,
            cap_remaining_fen: s.cap_remaining_fen,
            assisted: attributes.assistance.is_some(),
            reversed: false,
            layers: Layers::NONE,
            condition_reason,
        };
        outcome.layers = layers::settle(
            version,
            attributes,
            year,
            outcome.critical_illness_base_fen(),
            &mut scratch.pools,
        );
        outcome
    }

    /// The condition benefit that pays the claim and its adjusted ratio, or why none does.
    fn condition_benefit(
        &self,
        person: u32,
        attributes: &Person,
        v: u16,
        row: usize,
    ) -> Result<(Slot, u32), Reason> {
        let claims = self.claims;
        let version = &self.policies.versions[v as usize];
        let condition = self.diagnosis_condition[v as usize][claims.diagnosis[row] as usize];
        if condition == NONE {
            return Err(Reason::DiagnosisNotCovered);
        }
        let registration = find_registration(
            self.registry.registrations_of(person),
            condition,
            claims.service_day[row],
            version.start_offset_days,
        )?;
        if version.family_doctor_required && !attributes.family_doctor {
            return Err(Reason::NoFamilyDoctor);
        }
        let slot = version
            .slot(attributes.coverage, registration.severity, condition)
            .ok_or(Reason::SchemeNotCovered)?;
        let benefit = &version.benefits[slot.benefit as usize];
        if !benefit.pays_visit(claims.visit[row]) {
            return Err(Reason::VisitTypeNotCovered);
        }
        let ratio = level_ratio(benefit.ratio, claims.level[row], claims.prescriber[row])?;
        Ok((
            slot,
            adjust_ratio(ratio, version, benefit, attributes, registration.primary),
        ))
    }

    /// Settles the reversal at `rows[k]`: finds its original (earlier in this run, else in the
    /// state), gives the original's effect on the state back and negates its settlement.
    fn reverse(
        &self,
        person: u32,
        rows: &[u32],
        k: usize,
        out: &mut [Outcome],
        scratch: &mut Scratch,
        refunds: &mut Vec<Refund>,
    ) -> Outcome {
        let claims = self.claims;
        let row = rows[k] as usize;
        let rejected = |reason| Outcome::unsettled(Status::Rejected, reason);
        let Some(target) = claims.reverses_claim_id(row) else {
            return rejected(Reason::OriginalNotFound);
        };
        // The original as (outcome, total, in-scope, service day), and where to mark it reversed.
        let found = scratch
            .ids
            .find(claims, self.prior, person, rows, k, target);
        let (original, total, in_scope, day) = match found {
            None => return rejected(Reason::OriginalNotFound),
            Some(Original::Run(j)) => {
                let r = rows[j] as usize;
                if out[j].reversed {
                    return rejected(Reason::AlreadyReversed);
                }
                (
                    out[j],
                    claims.total_fen[r],
                    claims.in_scope_fen[r],
                    claims.service_day[r],
                )
            }
            Some(Original::Earlier(i)) => {
                let start = self.prior.claims_of(person).0;
                if self.prior.claim(i).reversed || scratch.reversed_prior(i - start) {
                    return rejected(Reason::AlreadyReversed);
                }
                // Every claim a reversal names is looked up in the claim index, which holds its
                // settlement; a claim of a year the state no longer holds is not found.
                let Some(r) = self.prior.settlement(i) else {
                    return rejected(Reason::OriginalNotFound);
                };
                let outcome = Outcome {
                    layers: r.layers,
                    condition_reason: None,
                    status: r.status,
                    reason: None,
                    version: r.version,
                    label: r.label,
                    pool: r.pool,
                    ratio_bp: r.ratio_bp,
                    eligible_fen: r.eligible_fen,
                    deductible_fen: r.deductible_fen,
                    fund_fen: r.fund_fen,
                    copay_fen: r.copay_fen,
                    over_cap_fen: r.over_cap_fen,
                    cap_remaining_fen: None,
                    assisted: r.assisted,
                    reversed: false,
                };
                (outcome, r.total_fen, r.in_scope_fen, r.service_day)
            }
        };
        if matches!(original.status, Status::Reversal | Status::Rejected) {
            return rejected(Reason::OriginalNotReversible);
        }
        if claims.total_fen[row] != -total || claims.in_scope_fen[row] != -in_scope {
            return rejected(Reason::ReversalAmountMismatch);
        }
        match found {
            Some(Original::Run(j)) => out[j].reversed = true,
            Some(Original::Earlier(i)) => {
                let (start, earlier) = self.prior.claims_of(person);
                scratch.reversed_prior.resize(earlier.len(), false);
                scratch.reversed_prior[i - start] = true;
            }
            None => unreachable!(),
        }
        if let Some(original) = found {
            refunds.push(Refund {
                position: k as u32,
                original,
            });
        }

        let mut cap_remaining_fen = None;
        layers::give_back(
            &original.layers,
            original.critical_illness_base_fen(),
            year_of(day),
            &mut scratch.pools,
        );
        if original.pool != NONE {
            let year = year_of(day);
            let benefit = match original.version {
                NONE => None,
                v => self.policies.versions[v as usize].benefit_of_pool(original.pool),
            };
            let deductible_pool = match benefit.map_or(NONE, |b| b.deductible_pool) {
                NONE => original.pool,
                shared => shared,
            };
            pool_state(&mut scratch.pools, year, deductible_pool).deductible_fen -=
                original.deductible_fen;
            let state = pool_state(&mut scratch.pools, year, original.pool);
            state.fund_fen -= original.fund_fen;
            state.cost_fen -= original.fund_fen + original.copay_fen;
            state.claims -= 1;
            if let Some(benefit) = benefit {
                cap_remaining_fen = cap_left(benefit, state);
            }
        }
        Outcome {
            status: Status::Reversal,
            reason: Some(Reason::ReversesClaim),
            version: original.version,
            label: original.label,
            pool: original.pool,
            ratio_bp: original.ratio_bp,
            eligible_fen: -original.eligible_fen,
            deductible_fen: -original.deductible_fen,
            fund_fen: -original.fund_fen,
            copay_fen: -original.copay_fen,
            over_cap_fen: -original.over_cap_fen,
            cap_remaining_fen,
            assisted: original.assisted,
            reversed: false,
            layers: original.layers.negated(),
            condition_reason: None,
        }
    }
}

impl Engine<'_> {
    /// The person's latest stay so far that still counts — settled, not refunded by now — in
    /// this run, else in the state: its medical community and discharge day, which an upward
    /// referral continues. Looked up only for upward referrals.
    fn previous_stay(
        &self,
        person: u32,
        rows: &[u32],
        out: &[Outcome],
        scratch: &mut Scratch,
    ) -> Option<(u32, Day)> {
        let claims = self.claims;
        while let Some(&j) = scratch.stays.last() {
            if !out[j as usize].reversed {
                let r = rows[j as usize] as usize;
                return Some((claims.medical_community[r], claims.service_day[r]));
            }
            scratch.stays.pop();
        }
        let (start, records) = self.prior.claims_of(person);
        let stays = scratch.earlier_stays.get_or_insert_with(|| {
            let mut stays = std::mem::take(&mut scratch.spare_stays);
            stays.clear();
            stays.extend(
                records
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.is_stay() && !r.reversed)
                    .map(|(i, _)| i as u32),
            );
            stays
        });
        while let Some(&i) = stays.last() {
            if !scratch
                .reversed_prior
                .get(i as usize)
                .copied()
                .unwrap_or(false)
            {
                let r = self.prior.claim(start + i as usize);
                return Some((
                    self.prior_communities.of(r.medical_community),
                    r.service_day,
                ));
            }
            stays.pop();
        }
        None
    }
}

/// The policy version that settles a (non-reversal) claim of a person with `attributes` served
/// on `day`, or why none does — the claim is then `not_covered`. It depends on the person and
/// the day alone, never on earlier claims, which is what lets a spilled run find the claims the
/// outlier rule judges before settling them.
pub fn version_for(policies: &Policies, attributes: &Person, day: Day) -> Result<u16, Reason> {
    match attributes.state {
        PersonState::Unknown => return Err(Reason::UnknownPerson),
        PersonState::Invalid => return Err(Reason::InvalidPersonRecord),
        PersonState::Valid => {}
    }
    if attributes.region == NONE {
        return Err(Reason::NoPolicyForRegion);
    }
    policies
        .version_on(attributes.region, day)
        .ok_or(Reason::NoPolicyInForce)
}

/// The registration that pays `condition` on `day`, or why none does.
fn find_registration(
    registrations: &[Registration],
    condition: u16,
    day: Day,
    start_offset_days: i32,
) -> Result<&Registration, Reason> {
    let mut reason = Reason::NotRegistered;
    let mut best: Option<&Registration> = None;
    for r in registrations.iter().filter(|r| r.condition == condition) {
        let starts = r.approved_on.saturating_add(start_offset_days);
        if day < starts {
            if reason == Reason::NotRegistered {
                reason = Reason::BeforeBenefitStart;
            }
        } else if day > r.ended_on {
            reason = Reason::RegistrationEnded;
        } else if best.is_none_or(|b| r.approved_on >= b.approved_on) {
            // Of two active registrations (a change registration), the later approval rules.
            best = Some(r);
        }
    }
    best.ok_or(reason)
}

/// The prescribed ratio at the claim's level; a pharmacy fill may take its prescriber's.
fn level_ratio(
    ratios: [LevelRatio; Level::COUNT],
    level: Level,
    prescriber: Option<Level>,
) -> Result<u32, Reason> {
    match ratios[level as usize] {
        LevelRatio::Ratio(r) => Ok(r),
        LevelRatio::NotCovered => Err(Reason::LevelNotCovered),
        LevelRatio::PrescriberLevel => match prescriber {
            None => Err(Reason::MissingPrescriberLevel),
            Some(p) => match ratios[p as usize] {
                LevelRatio::Ratio(r) => Ok(r),
                _ => Err(Reason::LevelNotCovered),
            },
        },
    }
}

/// Contribution-tier reduction (employees), then the secondary-condition factor (Ezhou 4(2),
/// 4(4)): `(ratio − reduction) × factor`.
fn adjust_ratio(
    ratio_bp: u32,
    version: &Version,
    benefit: &crate::policy::Benefit,
    person: &Person,
    primary_condition: bool,
) -> u32 {
    let mut r = ratio_bp;
    if benefit.tier_reduction && person.coverage == Coverage::Employee {
        r = r.saturating_sub(version.tier_reduction_bp[person.tier as usize]);
    }
    if !primary_condition {
        r = mul_ratio(r, benefit.secondary_factor_bp);
    }
    r
}

/// What is left of the benefit's annual cap given the pool's year-to-date use, on the cap's
/// basis (fund paid, or cost covered); `None` when uncapped.
fn cap_left(benefit: &crate::policy::Benefit, state: &PoolState) -> Option<i64> {
    benefit.annual_cap_fen.map(|cap| {
        cap - match benefit.cap_basis {
            crate::policy::CapBasis::Fund => state.fund_fen,
            crate::policy::CapBasis::Cost => state.cost_fen,
        }
    })
}

/// The person's state for (year, pool), created empty on first use.
fn pool_state(pools: &mut Vec<PoolState>, year: i32, pool: u16) -> &mut PoolState {
    let i = match pools.iter().position(|s| s.year == year && s.pool == pool) {
        Some(i) => i,
        None => {
            pools.push(PoolState::empty(year, pool));
            pools.len() - 1
        }
    };
    &mut pools[i]
}
