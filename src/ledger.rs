//! Year-to-date state carried between runs (`OUT/ledger.parquet`, read back with `--ledger`).
//!
//! One file, three kinds of row, told apart by `record`:
//! - `0` name: entry of one of the file's name lists ([`LISTS`]: persons, pools, policies,
//!   benefits, statuses, visit types, institutions, drugs, medical communities), written after
//!   every other row. Every other row holds names as codes into these lists, so it is integers
//!   but for its claim id: the ledger is rewritten every run and grows with every claim, so its
//!   rows must be cheap to write;
//! - `1` pool: a person's use of one annual-cap pool in one year (fund paid, cost covered,
//!   deductible absorbed, claims counted);
//! - `2` claim: a claim settled by a run, with its settlement, so that a later reversal can undo
//!   it and a repeated `claim_id` is caught.
//!
//! Money is in fen (`Int64`). Names are resolved against the current policies once per list
//! entry when the ledger is read.
//!
//! Running month 1 and then month 2 with month 1's ledger gives the settlements of one run over
//! both months, because everything the arithmetic reads from the past is here.

use std::path::Path;
use std::sync::Arc;

use std::collections::HashMap;

use std::borrow::Cow;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Date32Array, Int16Array, Int32Array,
    Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{
    Date32Type, Int16Type, Int32Type, Int64Type, Schema, TimestampMillisecondType,
};

use crate::domain::{Day, Millis, Status, VisitType};
use crate::error::{Error, Result};
use crate::ingest::claims::NO_CODE;
use crate::ingest::read::{col, contract_schema, read_file, ColumnKind::*, ColumnSpec};
use crate::ingest::registry::PersonIndex;
use crate::ingest::{group_by_person, person_slice};
use crate::policy::{Policies, NONE};
use crate::settle::Layers;

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

/// A settled claim as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRecord {
    pub claim_id: Box<str>,
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
    pub reversed: bool,
    pub visit: VisitType,
    /// What the audit rules compare across runs (duplicates, refills): codes into
    /// [`Ledger::institutions`] / [`Ledger::drugs`], or [`NO_CODE`].
    pub institution: u32,
    pub drug: u32,
    pub days_supply: Option<i32>,
    /// `medical_community_id` of an inpatient stay, a code into [`Ledger::medical_communities`]:
    /// what a later upward referral compares with.
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

/// The ledger read back, grouped by dense person id.
#[derive(Debug, Default)]
pub struct Ledger {
    pool_offsets: Vec<u32>,
    pools: Vec<PoolState>,
    claim_offsets: Vec<u32>,
    pub claims: Vec<ClaimRecord>,
    /// The texts that records hold as codes ([`ClaimRecord::institution`] and the like).
    pub institutions: Vec<String>,
    pub drugs: Vec<String>,
    pub medical_communities: Vec<String>,
}

/// Marks a ledger text that this run's claims never mention (a null is [`NO_CODE`]).
pub const UNSEEN: u32 = u32::MAX - 1;

/// A ledger text list's codes translated to a run dictionary's ([`Ledger::run_codes`]).
#[derive(Debug, Default)]
pub struct RunCodes(Vec<u32>);

impl RunCodes {
    /// The run's code for ledger code `code`: [`NO_CODE`] for a null, [`UNSEEN`] for a text the
    /// run's claims do not have.
    #[inline]
    pub fn of(&self, code: u32) -> u32 {
        match code {
            NO_CODE => NO_CODE,
            c => self.0[c as usize],
        }
    }
}

impl Ledger {
    pub fn pools_of(&self, person: u32) -> &[PoolState] {
        person_slice(&self.pool_offsets, &self.pools, person)
    }

    /// Person's ledger claims with their global record index.
    pub fn claims_of(&self, person: u32) -> (usize, &[ClaimRecord]) {
        let p = person as usize;
        match self.claim_offsets.get(p + 1) {
            Some(&end) => {
                let start = self.claim_offsets[p] as usize;
                (start, &self.claims[start..end as usize])
            }
            None => (0, &[]),
        }
    }

    /// Size of the dense person id space the ledger was grouped over (persons it names).
    pub fn persons(&self) -> usize {
        self.pool_offsets
            .len()
            .max(self.claim_offsets.len())
            .saturating_sub(1)
    }

    /// Whether the ledger holds pools or claims of `person`.
    pub fn has_state(&self, person: u32) -> bool {
        !self.pools_of(person).is_empty() || !self.claims_of(person).1.is_empty()
    }

    pub fn claim_ids(&self) -> Vec<&str> {
        self.claims.iter().map(|c| &*c.claim_id).collect()
    }

    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }

    /// Maps the codes of one of the ledger's text lists to this run's dictionary `run`: one hash
    /// per distinct text, so comparing a ledger claim with a run claim is comparing integers.
    pub fn run_codes(ledger: &[String], run: &[String]) -> RunCodes {
        let index: HashMap<&str, u32> = run
            .iter()
            .enumerate()
            .map(|(i, v)| (v.as_str(), i as u32))
            .collect();
        RunCodes(
            ledger
                .iter()
                .map(|v| index.get(v.as_str()).copied().unwrap_or(UNSEEN))
                .collect(),
        )
    }

    /// Reads `--ledger`. Persons new to this run get dense ids. A pool or policy the current
    /// policies do not know stops the run: settling against state the policies cannot interpret
    /// would be silently wrong.
    pub fn load(path: &Path, persons: &mut PersonIndex, policies: &Policies) -> Result<Ledger> {
        let file = read_file(path, LEDGER_COLUMNS)?;
        let bad = |row: u64, column: &str, reason: String| Error::value(path, column, row, reason);
        let column = |name: &str| {
            LEDGER_COLUMNS
                .iter()
                .position(|c| c.name == name)
                .expect("a ledger column")
        };

        // First the name lists, in code order.
        let mut lists: [Vec<String>; LISTS.len()] = Default::default();
        let (mut pool_rows, mut claim_rows) = (0usize, 0usize);
        let mut row = 0u64;
        for batch in &file.batches {
            let record = batch.column(column("record")).as_primitive::<Int16Type>();
            let list = batch.column(column("list")).as_primitive::<Int16Type>();
            let name = batch.column(column("name")).as_string::<i32>();
            for i in 0..batch.num_rows() {
                if record.is_valid(i) && record.value(i) == RECORD_NAME {
                    let which = list.is_valid(i).then(|| list.value(i));
                    let Some(slot) = which.and_then(|l| lists.get_mut(l as usize)) else {
                        return Err(bad(row, "list", format!("unknown name list {which:?}")));
                    };
                    if name.is_null(i) {
                        return Err(bad(row, "name", "a name row needs its name".into()));
                    }
                    slot.push(name.value(i).to_string());
                } else if record.is_valid(i) && record.value(i) == RECORD_POOL {
                    pool_rows += 1;
                } else {
                    claim_rows += 1;
                }
                row += 1;
            }
        }
        let [person_names, pool_names, policy_names, benefit_names, status_names, visit_names, institutions, drugs, medical_communities] =
            lists;
        let person_of: Vec<u32> = person_names.iter().map(|p| persons.intern(p).0).collect();
        let pool_of: Vec<Option<u16>> = pool_names.iter().map(|n| policies.pools.id(n)).collect();
        let policy_of: Vec<Option<u16>> = policy_names
            .iter()
            .map(|n| policies.version_id(n))
            .collect();
        let benefit_of: Vec<Option<u16>> = benefit_names
            .iter()
            .map(|n| policies.labels.id(n))
            .collect();
        let status_of: Vec<Option<Status>> =
            status_names.iter().map(|n| Status::parse(n)).collect();
        let visit_of: Vec<Option<VisitType>> =
            visit_names.iter().map(|n| VisitType::parse(n)).collect();

        // Sized up front: a ledger holds every claim of the year, and growing vectors of that
        // size by doubling costs copies and fresh pages.
        let mut pools: Vec<(u32, PoolState)> = Vec::with_capacity(pool_rows);
        let mut claims: Vec<(u32, ClaimRecord)> = Vec::with_capacity(claim_rows);
        let mut row = 0u64;
        // Each decoded batch is dropped once read, so the records replace the batches in memory.
        for batch in file.batches {
            let batch = &batch;
            let int16 = |name: &str| batch.column(column(name)).as_primitive::<Int16Type>();
            let int32 = |name: &str| batch.column(column(name)).as_primitive::<Int32Type>();
            let int64 = |name: &str| batch.column(column(name)).as_primitive::<Int64Type>();
            let record = int16("record");
            let person = int32("person");
            let year = int32("year");
            let pool = int32("pool");
            let (fund_ytd, cost_ytd, deductible_ytd) = (
                int64("fund_paid_ytd_fen"),
                int64("cost_ytd_fen"),
                int64("deductible_ytd_fen"),
            );
            let count = int32("claims_ytd");
            let claim_id = batch.column(column("claim_id")).as_string::<i32>();
            let settled_at = batch
                .column(column("settled_at"))
                .as_primitive::<TimestampMillisecondType>();
            let service_date = batch
                .column(column("service_date"))
                .as_primitive::<Date32Type>();
            let (status, policy, benefit) = (int16("status"), int32("policy"), int32("benefit"));
            let ratio = int32("ratio_bp");
            let amounts: Vec<_> = CLAIM_AMOUNTS.iter().map(|c| int64(c)).collect();
            let assisted = batch.column(column("assisted")).as_boolean();
            let reversed = batch.column(column("reversed")).as_boolean();
            let visit = int16("visit_type");
            let community = int32("medical_community");
            let (ci_pool, ci_deductible, ci_paid) = (
                int32("critical_illness_pool"),
                int64("critical_illness_deductible_fen"),
                int64("critical_illness_paid_fen"),
            );
            let (assistance_pool, assistance_deductible, assistance_paid) = (
                int32("assistance_pool"),
                int64("assistance_deductible_fen"),
                int64("assistance_paid_fen"),
            );
            let (institution, drug) = (int32("institution"), int32("drug"));
            let days_supply = int32("days_supply");
            for i in 0..batch.num_rows() {
                let this_row = row;
                row += 1;
                let bad = |column: &str, reason: String| bad(this_row, column, reason);
                let kind = record.value(i);
                if kind == RECORD_NAME {
                    continue;
                }
                let entry = |a: &Int32Array, what: &str| -> Result<Option<usize>> {
                    if a.is_null(i) {
                        return Ok(None);
                    }
                    let v = a.value(i);
                    usize::try_from(v)
                        .map(Some)
                        .map_err(|_| bad(what, format!("negative code {v}")))
                };
                let pool_id = |c: Option<usize>, what: &str| -> Result<u16> {
                    match c {
                        None => Ok(NONE),
                        Some(c) => match pool_of.get(c) {
                            Some(Some(id)) => Ok(*id),
                            Some(None) => Err(bad(
                                what,
                                format!("pool `{}` is not in the current policies", pool_names[c]),
                            )),
                            None => Err(bad(what, format!("pool code {c} has no name row"))),
                        },
                    }
                };
                let text_code = |a: &Int32Array, what: &str, list: &[String]| match entry(a, what)?
                {
                    None => Ok(NO_CODE),
                    Some(c) if c < list.len() => Ok(c as u32),
                    Some(c) => Err(bad(what, format!("code {c} has no name row"))),
                };
                let Some(p) = entry(person, "person")?.and_then(|c| person_of.get(c).copied())
                else {
                    return Err(bad("person", "a null or unnamed person".into()));
                };
                match kind {
                    RECORD_POOL => pools.push((
                        p,
                        PoolState {
                            year: if year.is_valid(i) {
                                year.value(i)
                            } else {
                                return Err(bad("year", "a pool record needs its year".into()));
                            },
                            pool: match entry(pool, "pool")? {
                                Some(c) => pool_id(Some(c), "pool")?,
                                None => {
                                    return Err(bad("pool", "a pool record needs its pool".into()))
                                }
                            },
                            fund_fen: fen(fund_ytd, i),
                            cost_fen: fen(cost_ytd, i),
                            deductible_fen: fen(deductible_ytd, i),
                            claims: count.value(i),
                        },
                    )),
                    RECORD_CLAIM => {
                        let version = match entry(policy, "policy")? {
                            None => NONE,
                            Some(c) => match policy_of.get(c) {
                                Some(Some(id)) => *id,
                                Some(None) => {
                                    return Err(bad(
                                        "policy",
                                        format!(
                                            "policy `{}` is not in the current policies",
                                            policy_names[c]
                                        ),
                                    ))
                                }
                                None => {
                                    return Err(bad("policy", format!("code {c} has no name row")))
                                }
                            },
                        };
                        let label = match entry(benefit, "benefit")? {
                            None => NONE,
                            Some(c) => match benefit_of.get(c) {
                                Some(Some(id)) => *id,
                                _ => {
                                    return Err(bad(
                                        "benefit",
                                        format!(
                                            "benefit `{}` is not in the policies",
                                            benefit_names.get(c).map_or("?", |s| s.as_str())
                                        ),
                                    ))
                                }
                            },
                        };
                        let status = (status.is_valid(i))
                            .then(|| status_of.get(status.value(i) as usize).copied().flatten())
                            .flatten()
                            .ok_or_else(|| bad("status", "missing or unknown status".into()))?;
                        let visit = if visit.is_null(i) {
                            VisitType::Outpatient
                        } else {
                            visit_of
                                .get(visit.value(i) as usize)
                                .copied()
                                .flatten()
                                .ok_or_else(|| bad("visit_type", "unknown visit type".into()))?
                        };
                        claims.push((
                            p,
                            ClaimRecord {
                                claim_id: (claim_id.is_valid(i))
                                    .then(|| claim_id.value(i))
                                    .ok_or_else(|| bad("claim_id", "null claim_id".into()))?
                                    .into(),
                                settled_at: settled_at.value(i),
                                service_day: service_date.value(i),
                                status,
                                version,
                                label,
                                pool: pool_id(entry(pool, "pool")?, "pool")?,
                                ratio_bp: ratio.is_valid(i).then(|| ratio.value(i) as u32),
                                total_fen: fen(amounts[0], i),
                                in_scope_fen: fen(amounts[1], i),
                                eligible_fen: fen(amounts[2], i),
                                deductible_fen: fen(amounts[3], i),
                                fund_fen: fen(amounts[4], i),
                                copay_fen: fen(amounts[5], i),
                                over_cap_fen: fen(amounts[6], i),
                                assisted: assisted.is_valid(i) && assisted.value(i),
                                reversed: reversed.is_valid(i) && reversed.value(i),
                                visit,
                                medical_community: text_code(
                                    community,
                                    "medical_community",
                                    &medical_communities,
                                )?,
                                institution: text_code(institution, "institution", &institutions)?,
                                drug: text_code(drug, "drug", &drugs)?,
                                days_supply: days_supply.is_valid(i).then(|| days_supply.value(i)),
                                layers: Layers {
                                    ci_pool: pool_id(
                                        entry(ci_pool, "critical_illness_pool")?,
                                        "critical_illness_pool",
                                    )?,
                                    ci_deductible_fen: fen(ci_deductible, i),
                                    ci_fen: fen(ci_paid, i),
                                    assistance_pool: pool_id(
                                        entry(assistance_pool, "assistance_pool")?,
                                        "assistance_pool",
                                    )?,
                                    assistance_deductible_fen: fen(assistance_deductible, i),
                                    assistance_fen: fen(assistance_paid, i),
                                },
                            },
                        ));
                    }
                    other => return Err(bad("record", format!("unknown record kind {other}"))),
                }
            }
        }
        let n = persons.len();
        let (pool_offsets, pools) = group_by_person(pools, n);
        let (claim_offsets, claims) = group_by_person(claims, n);
        Ok(Ledger {
            pool_offsets,
            pools,
            claim_offsets,
            claims,
            institutions,
            drugs,
            medical_communities,
        })
    }
}

/// An amount in fen; a null (a column the row's kind does not use) counts as 0.
fn fen(a: &Int64Array, i: usize) -> i64 {
    if a.is_valid(i) {
        a.value(i)
    } else {
        0
    }
}

/// What a ledger row is.
const RECORD_NAME: i16 = 0;
const RECORD_POOL: i16 = 1;
const RECORD_CLAIM: i16 = 2;

/// The name lists of a ledger file, by list code: a coded column's value is the position of its
/// text in its list (the `name` rows of that list, in file order).
pub const LISTS: [&str; 9] = [
    "person",
    "pool",
    "policy",
    "benefit",
    "status",
    "visit_type",
    "institution",
    "drug",
    "medical_community",
];

/// A name list's code (its index in [`LISTS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Person,
    Pool,
    Policy,
    Benefit,
    Status,
    Visit,
    Institution,
    Drug,
    MedicalCommunity,
}

const CLAIM_AMOUNTS: [&str; 7] = [
    "total_fen",
    "in_scope_fen",
    "eligible_fen",
    "deductible_fen",
    "fund_paid_fen",
    "copay_fen",
    "over_cap_fen",
];

/// The ledger's columns (README "Ledger"): money in fen (`Int64`), names as codes into the file's
/// own name lists, so a row is integers but for its claim id.
const LEDGER_COLUMNS: &[ColumnSpec] = &[
    col("record", Int16, false),
    col("list", Int16, true),
    col("name", Text, true),
    col("person", Int32, true),
    col("year", Int32, true),
    col("pool", Int32, true),
    col("fund_paid_ytd_fen", Int64, true),
    col("cost_ytd_fen", Int64, true),
    col("deductible_ytd_fen", Int64, true),
    col("claims_ytd", Int32, true),
    col("claim_id", Text, true),
    col("settled_at", TimestampMs, true),
    col("service_date", Date, true),
    col("status", Int16, true),
    col("policy", Int32, true),
    col("benefit", Int32, true),
    col("ratio_bp", Int32, true),
    col("total_fen", Int64, true),
    col("in_scope_fen", Int64, true),
    col("eligible_fen", Int64, true),
    col("deductible_fen", Int64, true),
    col("fund_paid_fen", Int64, true),
    col("copay_fen", Int64, true),
    col("over_cap_fen", Int64, true),
    col("assisted", Boolean, true),
    col("reversed", Boolean, true),
    col("visit_type", Int16, true),
    col("medical_community", Int32, true),
    col("critical_illness_pool", Int32, true),
    col("critical_illness_deductible_fen", Int64, true),
    col("critical_illness_paid_fen", Int64, true),
    col("assistance_pool", Int32, true),
    col("assistance_deductible_fen", Int64, true),
    col("assistance_paid_fen", Int64, true),
    col("institution", Int32, true),
    col("drug", Int32, true),
    col("days_supply", Int32, true),
];

/// The ledger's Arrow schema (documented in the README).
pub fn schema() -> Schema {
    contract_schema(LEDGER_COLUMNS)
}

/// A claim row of the ledger being written.
pub struct LedgerClaim<'a> {
    pub person: u32,
    pub claim_id: &'a str,
    /// The settlement; its own `claim_id` is not read (a claim settled by this run has none
    /// allocated: its id is the input's, in `claim_id` above).
    pub record: Cow<'a, ClaimRecord>,
    /// Reversed by now (by an earlier run, or by this one).
    pub reversed: bool,
}

/// Assembles a batch from the columns one kind of row uses; every other column is null.
fn assemble(n: usize, mut columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    let schema = Arc::new(schema());
    let arrays: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(
            |f| match columns.iter().position(|(name, _)| *name == f.name()) {
                Some(i) => columns.swap_remove(i).1,
                None => new_null_array(f.data_type(), n),
            },
        )
        .collect();
    debug_assert!(columns.is_empty(), "a column the ledger does not have");
    RecordBatch::try_new(schema, arrays).map_err(|e| Error::arrow("ledger", e))
}

fn arc(a: impl Array + 'static) -> ArrayRef {
    Arc::new(a)
}

fn id16(id: u16) -> Option<i32> {
    (id != NONE).then_some(id as i32)
}

fn code32(code: u32) -> Option<i32> {
    (code != NO_CODE).then_some(code as i32)
}

/// Name rows: entry `name` of `list`; entries of a list are numbered in file order.
pub fn name_batch(entries: &[(List, &str)]) -> Result<RecordBatch> {
    let n = entries.len();
    assemble(
        n,
        vec![
            ("record", arc(Int16Array::from_value(RECORD_NAME, n))),
            (
                "list",
                arc(Int16Array::from_iter_values(
                    entries.iter().map(|(l, _)| *l as i16),
                )),
            ),
            (
                "name",
                arc(StringArray::from_iter_values(
                    entries.iter().map(|(_, v)| *v),
                )),
            ),
        ],
    )
}

/// Pool rows: (person, state).
pub fn pool_batch(rows: &[(u32, &PoolState)]) -> Result<RecordBatch> {
    let n = rows.len();
    let int32 = |f: &dyn Fn(&PoolState) -> i32| {
        arc(Int32Array::from_iter_values(rows.iter().map(|(_, s)| f(s))))
    };
    let int64 = |f: &dyn Fn(&PoolState) -> i64| {
        arc(Int64Array::from_iter_values(rows.iter().map(|(_, s)| f(s))))
    };
    assemble(
        n,
        vec![
            ("record", arc(Int16Array::from_value(RECORD_POOL, n))),
            (
                "person",
                arc(Int32Array::from_iter_values(
                    rows.iter().map(|(p, _)| *p as i32),
                )),
            ),
            ("year", int32(&|s| s.year)),
            ("pool", int32(&|s| s.pool as i32)),
            ("fund_paid_ytd_fen", int64(&|s| s.fund_fen)),
            ("cost_ytd_fen", int64(&|s| s.cost_fen)),
            ("deductible_ytd_fen", int64(&|s| s.deductible_fen)),
            ("claims_ytd", int32(&|s| s.claims)),
        ],
    )
}

/// Claim rows, whose text codes (institution, drug, medical community) are already codes of the
/// file's lists.
pub fn claim_batch(rows: &[LedgerClaim]) -> Result<RecordBatch> {
    let n = rows.len();
    let int16 = |f: &dyn Fn(&ClaimRecord) -> i16| {
        arc(Int16Array::from_iter_values(
            rows.iter().map(|c| f(&c.record)),
        ))
    };
    let int32 = |f: &dyn Fn(&ClaimRecord) -> Option<i32>| {
        arc(rows.iter().map(|c| f(&c.record)).collect::<Int32Array>())
    };
    let int64 = |f: &dyn Fn(&ClaimRecord) -> i64| {
        arc(Int64Array::from_iter_values(
            rows.iter().map(|c| f(&c.record)),
        ))
    };
    let flag = |f: &dyn Fn(&LedgerClaim) -> bool| {
        arc(rows.iter().map(|c| Some(f(c))).collect::<BooleanArray>())
    };
    assemble(
        n,
        vec![
            ("record", arc(Int16Array::from_value(RECORD_CLAIM, n))),
            (
                "person",
                arc(Int32Array::from_iter_values(
                    rows.iter().map(|c| c.person as i32),
                )),
            ),
            (
                "year",
                int32(&|r| Some(crate::domain::year_of(r.service_day))),
            ),
            ("pool", int32(&|r| id16(r.pool))),
            (
                "claim_id",
                arc(StringArray::from_iter_values(
                    rows.iter().map(|c| c.claim_id),
                )),
            ),
            (
                "settled_at",
                arc(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|c| c.record.settled_at),
                )),
            ),
            (
                "service_date",
                arc(Date32Array::from_iter_values(
                    rows.iter().map(|c| c.record.service_day),
                )),
            ),
            ("status", int16(&|r| r.status as i16)),
            ("policy", int32(&|r| id16(r.version))),
            ("benefit", int32(&|r| id16(r.label))),
            ("ratio_bp", int32(&|r| r.ratio_bp.map(|b| b as i32))),
            ("total_fen", int64(&|r| r.total_fen)),
            ("in_scope_fen", int64(&|r| r.in_scope_fen)),
            ("eligible_fen", int64(&|r| r.eligible_fen)),
            ("deductible_fen", int64(&|r| r.deductible_fen)),
            ("fund_paid_fen", int64(&|r| r.fund_fen)),
            ("copay_fen", int64(&|r| r.copay_fen)),
            ("over_cap_fen", int64(&|r| r.over_cap_fen)),
            ("assisted", flag(&|c| c.record.assisted)),
            ("reversed", flag(&|c| c.reversed)),
            ("visit_type", int16(&|r| r.visit as i16)),
            ("medical_community", int32(&|r| code32(r.medical_community))),
            ("critical_illness_pool", int32(&|r| id16(r.layers.ci_pool))),
            (
                "critical_illness_deductible_fen",
                int64(&|r| r.layers.ci_deductible_fen),
            ),
            ("critical_illness_paid_fen", int64(&|r| r.layers.ci_fen)),
            (
                "assistance_pool",
                int32(&|r| id16(r.layers.assistance_pool)),
            ),
            (
                "assistance_deductible_fen",
                int64(&|r| r.layers.assistance_deductible_fen),
            ),
            ("assistance_paid_fen", int64(&|r| r.layers.assistance_fen)),
            ("institution", int32(&|r| code32(r.institution))),
            ("drug", int32(&|r| code32(r.drug))),
            ("days_supply", int32(&|r| r.days_supply)),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_codes_are_positions_in_the_written_name_lists() {
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
        for (i, v) in VisitType::ALL.iter().enumerate() {
            assert_eq!(*v as usize, i);
        }
        assert_eq!(LISTS[List::MedicalCommunity as usize], "medical_community");
        assert_eq!(LISTS[List::Person as usize], "person");
    }
}
