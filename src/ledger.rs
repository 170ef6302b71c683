//! Year-to-date state carried between runs (`OUT/ledger.parquet`, read back with `--ledger`).
//!
//! One file, two kinds of row, told apart by `record`:
//! - `pool`: a person's use of one annual-cap pool in one year (fund paid, cost covered,
//!   deductible absorbed, claims counted);
//! - `claim`: a claim settled by a run, with its settlement, so that a later reversal can undo it
//!   and a repeated `claim_id` is caught.
//!
//! Running month 1 and then month 2 with month 1's ledger gives the settlements of one run over
//! both months, because everything the arithmetic reads from the past is here.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Decimal128Builder, Int32Builder, RecordBatch,
    StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Int32Type, Schema, TimestampMillisecondType,
};

use crate::domain::{Day, Millis, Status, VisitType};
use crate::error::{Error, Result};
use crate::ingest::read::{col, contract_schema, read_file, ColumnKind::*, ColumnSpec};
use crate::ingest::registry::PersonIndex;
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
    /// What the audit rules compare across runs (duplicates, refills).
    pub institution_id: Option<Box<str>>,
    pub drug_code: Option<Box<str>>,
    pub days_supply: Option<i32>,
    /// `medical_community_id` of an inpatient stay: what a later upward referral compares with.
    pub medical_community: Option<Box<str>>,
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
}

impl Ledger {
    pub fn pools_of(&self, person: u32) -> &[PoolState] {
        slice(&self.pool_offsets, &self.pools, person)
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

    pub fn claim_ids(&self) -> Vec<&str> {
        self.claims.iter().map(|c| &*c.claim_id).collect()
    }

    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }

    /// Reads `--ledger`. Persons new to this run get dense ids. A pool or policy the current
    /// policies do not know stops the run: settling against state the policies cannot interpret
    /// would be silently wrong.
    pub fn load(path: &Path, persons: &mut PersonIndex, policies: &Policies) -> Result<Ledger> {
        let file = read_file(path, LEDGER_COLUMNS)?;
        let mut pools: Vec<(u32, PoolState)> = Vec::new();
        let mut claims: Vec<(u32, ClaimRecord)> = Vec::new();
        let mut row = 0u64;
        for batch in &file.batches {
            let text = |i: usize| batch.column(i).as_string::<i32>();
            let (record, person_id, pool_name) = (text(0), text(1), text(3));
            let year = batch.column(2).as_primitive::<Int32Type>();
            let money = |i: usize| batch.column(i).as_primitive::<Decimal128Type>();
            let (fund_ytd, cost_ytd, deductible_ytd) = (money(4), money(5), money(6));
            let count = batch.column(7).as_primitive::<Int32Type>();
            let claim_id = text(8);
            let settled_at = batch.column(9).as_primitive::<TimestampMillisecondType>();
            let service_date = batch.column(10).as_primitive::<Date32Type>();
            let (status, policy_id, benefit) = (text(11), text(12), text(13));
            let ratio = batch.column(14).as_primitive::<Decimal128Type>();
            let amounts: Vec<_> = (15..22).map(money).collect();
            let assisted = batch.column(22).as_boolean();
            let reversed = batch.column(23).as_boolean();
            let (visit, community, ci_pool) = (text(24), text(25), text(26));
            let (ci_deductible, ci_paid) = (money(27), money(28));
            let assistance_pool = text(29);
            let (assistance_deductible, assistance_paid) = (money(30), money(31));
            let (institution, drug) = (text(32), text(33));
            let days_supply = batch.column(34).as_primitive::<Int32Type>();
            for i in 0..batch.num_rows() {
                let bad = |column: &str, reason: String| Error::Value {
                    path: path.to_path_buf(),
                    column: column.into(),
                    row,
                    reason,
                };
                if person_id.is_null(i) || record.is_null(i) {
                    return Err(bad("person_id", "null person_id or record".into()));
                }
                let person = persons.intern(person_id.value(i)).0;
                let pool = |name: Option<&str>| -> Result<u16> {
                    match name {
                        None => Ok(NONE),
                        Some(n) => policies.pools.id(n).ok_or_else(|| {
                            bad("pool", format!("pool `{n}` is not in the current policies"))
                        }),
                    }
                };
                fn opt(a: &arrow::array::StringArray, i: usize) -> Option<&str> {
                    a.is_valid(i).then(|| a.value(i))
                }
                match record.value(i) {
                    "pool" => pools.push((
                        person,
                        PoolState {
                            year: if year.is_valid(i) {
                                year.value(i)
                            } else {
                                return Err(bad("year", "a pool record needs its year".into()));
                            },
                            pool: match opt(pool_name, i) {
                                Some(name) => pool(Some(name))?,
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
                    "claim" => {
                        let version = match opt(policy_id, i) {
                            None => NONE,
                            Some(id) => policies.version_id(id).ok_or_else(|| {
                                bad(
                                    "policy_id",
                                    format!("policy `{id}` is not in the current policies"),
                                )
                            })?,
                        };
                        let label = match opt(benefit, i) {
                            None => NONE,
                            Some(b) => policies.labels.id(b).ok_or_else(|| {
                                bad("benefit", format!("benefit `{b}` is not in the policies"))
                            })?,
                        };
                        let status = opt(status, i)
                            .and_then(Status::parse)
                            .ok_or_else(|| bad("status", "missing or unknown status".into()))?;
                        claims.push((
                            person,
                            ClaimRecord {
                                claim_id: opt(claim_id, i)
                                    .ok_or_else(|| bad("claim_id", "null claim_id".into()))?
                                    .into(),
                                settled_at: settled_at.value(i),
                                service_day: service_date.value(i),
                                status,
                                version,
                                label,
                                pool: pool(opt(pool_name, i))?,
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
                                visit: match opt(visit, i) {
                                    None => VisitType::Outpatient,
                                    Some(v) => VisitType::parse(v).ok_or_else(|| {
                                        bad("visit_type", format!("unknown visit type `{v}`"))
                                    })?,
                                },
                                medical_community: opt(community, i).map(Into::into),
                                institution_id: opt(institution, i).map(Into::into),
                                drug_code: opt(drug, i).map(Into::into),
                                days_supply: days_supply.is_valid(i).then(|| days_supply.value(i)),
                                layers: Layers {
                                    ci_pool: pool(opt(ci_pool, i))?,
                                    ci_deductible_fen: fen(ci_deductible, i),
                                    ci_fen: fen(ci_paid, i),
                                    assistance_pool: pool(opt(assistance_pool, i))?,
                                    assistance_deductible_fen: fen(assistance_deductible, i),
                                    assistance_fen: fen(assistance_paid, i),
                                },
                            },
                        ));
                    }
                    other => return Err(bad("record", format!("unknown record kind `{other}`"))),
                }
                row += 1;
            }
        }
        let n = persons.len();
        let (pool_offsets, pools) = group(pools, n);
        let (claim_offsets, claims) = group(claims, n);
        Ok(Ledger {
            pool_offsets,
            pools,
            claim_offsets,
            claims,
        })
    }
}

fn fen(a: &arrow::array::PrimitiveArray<Decimal128Type>, i: usize) -> i64 {
    if a.is_valid(i) {
        a.value(i) as i64
    } else {
        0
    }
}

fn slice<'a, T>(offsets: &[u32], items: &'a [T], person: u32) -> &'a [T] {
    let p = person as usize;
    match offsets.get(p + 1) {
        Some(&end) => &items[offsets[p] as usize..end as usize],
        None => &[],
    }
}

/// Groups `(person, item)` by person (stable), as CSR offsets over `persons` ids.
fn group<T>(mut items: Vec<(u32, T)>, persons: usize) -> (Vec<u32>, Vec<T>) {
    items.sort_by_key(|(p, _)| *p);
    let mut offsets = vec![0u32; persons + 1];
    for (p, _) in &items {
        offsets[*p as usize + 1] += 1;
    }
    for i in 1..offsets.len() {
        offsets[i] += offsets[i - 1];
    }
    (offsets, items.into_iter().map(|(_, t)| t).collect())
}

const LEDGER_COLUMNS: &[ColumnSpec] = &[
    col("record", Text, false),
    col("person_id", Text, false),
    col("year", Int32, true),
    col("pool", Text, true),
    col("fund_paid_ytd", Money, true),
    col("cost_ytd", Money, true),
    col("deductible_ytd", Money, true),
    col("claims_ytd", Int32, true),
    col("claim_id", Text, true),
    col("settled_at", TimestampMs, true),
    col("service_date", Date, true),
    col("status", Text, true),
    col("policy_id", Text, true),
    col("benefit", Text, true),
    col("ratio", Money, true),
    col("total_amount", Money, true),
    col("in_scope_amount", Money, true),
    col("eligible_amount", Money, true),
    col("deductible_amount", Money, true),
    col("fund_paid", Money, true),
    col("copay_amount", Money, true),
    col("over_cap_amount", Money, true),
    col("assisted", Boolean, true),
    col("reversed", Boolean, true),
    col("visit_type", Text, true),
    col("medical_community_id", Text, true),
    col("critical_illness_pool", Text, true),
    col("critical_illness_deductible", Money, true),
    col("critical_illness_paid", Money, true),
    col("assistance_pool", Text, true),
    col("assistance_deductible", Money, true),
    col("assistance_paid", Money, true),
    col("institution_id", Text, true),
    col("drug_code", Text, true),
    col("days_supply", Int32, true),
];

/// The ledger's Arrow schema (documented in the README).
pub fn schema() -> Schema {
    // Ratios are read with the money reader (any decimal) but written at the contract's (5, 4).
    let fields: Vec<Field> = contract_schema(LEDGER_COLUMNS)
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "ratio" => Field::new("ratio", DataType::Decimal128(5, 4), f.is_nullable()),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new(fields)
}

/// Builds ledger batches row by row (the ledger is small next to the claims).
pub struct LedgerWriter {
    record: StringBuilder,
    person_id: StringBuilder,
    year: Int32Builder,
    pool: StringBuilder,
    ytd: [Decimal128Builder; 3],
    claims_ytd: Int32Builder,
    claim_id: StringBuilder,
    settled_at: TimestampMillisecondBuilder,
    service_date: arrow::array::Date32Builder,
    status: StringBuilder,
    policy_id: StringBuilder,
    benefit: StringBuilder,
    ratio: Decimal128Builder,
    amounts: [Decimal128Builder; 7],
    assisted: BooleanBuilder,
    reversed: BooleanBuilder,
    visit: StringBuilder,
    community: StringBuilder,
    ci_pool: StringBuilder,
    ci_amounts: [Decimal128Builder; 2],
    assistance_pool: StringBuilder,
    assistance_amounts: [Decimal128Builder; 2],
    institution: StringBuilder,
    drug: StringBuilder,
    days_supply: Int32Builder,
    rows: usize,
}

fn money_builder() -> Decimal128Builder {
    Decimal128Builder::new().with_data_type(DataType::Decimal128(18, 2))
}

impl Default for LedgerWriter {
    fn default() -> Self {
        LedgerWriter {
            record: StringBuilder::new(),
            person_id: StringBuilder::new(),
            year: Int32Builder::new(),
            pool: StringBuilder::new(),
            ytd: std::array::from_fn(|_| money_builder()),
            claims_ytd: Int32Builder::new(),
            claim_id: StringBuilder::new(),
            settled_at: TimestampMillisecondBuilder::new(),
            service_date: arrow::array::Date32Builder::new(),
            status: StringBuilder::new(),
            policy_id: StringBuilder::new(),
            benefit: StringBuilder::new(),
            ratio: Decimal128Builder::new().with_data_type(DataType::Decimal128(5, 4)),
            amounts: std::array::from_fn(|_| money_builder()),
            assisted: BooleanBuilder::new(),
            reversed: BooleanBuilder::new(),
            visit: StringBuilder::new(),
            community: StringBuilder::new(),
            ci_pool: StringBuilder::new(),
            ci_amounts: std::array::from_fn(|_| money_builder()),
            assistance_pool: StringBuilder::new(),
            assistance_amounts: std::array::from_fn(|_| money_builder()),
            institution: StringBuilder::new(),
            drug: StringBuilder::new(),
            days_supply: Int32Builder::new(),
            rows: 0,
        }
    }
}

impl LedgerWriter {
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn push_pool(&mut self, person_id: &str, state: &PoolState, policies: &Policies) {
        self.record.append_value("pool");
        self.person_id.append_value(person_id);
        self.year.append_value(state.year);
        self.pool.append_value(&policies.pools[state.pool as usize]);
        self.ytd[0].append_value(state.fund_fen as i128);
        self.ytd[1].append_value(state.cost_fen as i128);
        self.ytd[2].append_value(state.deductible_fen as i128);
        self.claims_ytd.append_value(state.claims);
        self.claim_id.append_null();
        self.settled_at.append_null();
        self.service_date.append_null();
        self.status.append_null();
        self.policy_id.append_null();
        self.benefit.append_null();
        self.ratio.append_null();
        for a in &mut self.amounts {
            a.append_null();
        }
        self.assisted.append_null();
        self.reversed.append_null();
        self.visit.append_null();
        self.community.append_null();
        self.ci_pool.append_null();
        self.assistance_pool.append_null();
        for a in self
            .ci_amounts
            .iter_mut()
            .chain(&mut self.assistance_amounts)
        {
            a.append_null();
        }
        self.institution.append_null();
        self.drug.append_null();
        self.days_supply.append_null();
        self.rows += 1;
    }

    pub fn push_claim(&mut self, person_id: &str, c: &ClaimRecord, policies: &Policies) {
        fn name(list: &[String], i: u16) -> Option<&str> {
            (i != NONE).then(|| list[i as usize].as_str())
        }
        self.record.append_value("claim");
        self.person_id.append_value(person_id);
        self.year
            .append_value(crate::domain::year_of(c.service_day));
        self.pool.append_option(name(&policies.pools, c.pool));
        for y in &mut self.ytd {
            y.append_null();
        }
        self.claims_ytd.append_null();
        self.claim_id.append_value(&c.claim_id);
        self.settled_at.append_value(c.settled_at);
        self.service_date.append_value(c.service_day);
        self.status.append_value(c.status.as_str());
        self.policy_id.append_option(
            (c.version != NONE).then(|| policies.versions[c.version as usize].id.as_str()),
        );
        self.benefit.append_option(name(&policies.labels, c.label));
        self.ratio.append_option(c.ratio_bp.map(|r| r as i128));
        let values = [
            c.total_fen,
            c.in_scope_fen,
            c.eligible_fen,
            c.deductible_fen,
            c.fund_fen,
            c.copay_fen,
            c.over_cap_fen,
        ];
        for (b, v) in self.amounts.iter_mut().zip(values) {
            b.append_value(v as i128);
        }
        self.assisted.append_value(c.assisted);
        self.reversed.append_value(c.reversed);
        self.visit.append_value(c.visit.as_str());
        self.community.append_option(c.medical_community.as_deref());
        let l = &c.layers;
        self.ci_pool.append_option(name(&policies.pools, l.ci_pool));
        self.ci_amounts[0].append_value(l.ci_deductible_fen as i128);
        self.ci_amounts[1].append_value(l.ci_fen as i128);
        self.assistance_pool
            .append_option(name(&policies.pools, l.assistance_pool));
        self.assistance_amounts[0].append_value(l.assistance_deductible_fen as i128);
        self.assistance_amounts[1].append_value(l.assistance_fen as i128);
        self.institution.append_option(c.institution_id.as_deref());
        self.drug.append_option(c.drug_code.as_deref());
        self.days_supply.append_option(c.days_supply);
        self.rows += 1;
    }

    pub fn finish(mut self) -> Result<RecordBatch> {
        let [f, c, d] = &mut self.ytd;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.record.finish()),
            Arc::new(self.person_id.finish()),
            Arc::new(self.year.finish()),
            Arc::new(self.pool.finish()),
            Arc::new(f.finish()),
            Arc::new(c.finish()),
            Arc::new(d.finish()),
            Arc::new(self.claims_ytd.finish()),
            Arc::new(self.claim_id.finish()),
            Arc::new(self.settled_at.finish()),
            Arc::new(self.service_date.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.policy_id.finish()),
            Arc::new(self.benefit.finish()),
            Arc::new(self.ratio.finish()),
        ];
        for a in &mut self.amounts {
            columns.push(Arc::new(a.finish()));
        }
        columns.push(Arc::new(self.assisted.finish()));
        columns.push(Arc::new(self.reversed.finish()));
        columns.push(Arc::new(self.visit.finish()));
        columns.push(Arc::new(self.community.finish()));
        columns.push(Arc::new(self.ci_pool.finish()));
        for a in &mut self.ci_amounts {
            columns.push(Arc::new(a.finish()));
        }
        columns.push(Arc::new(self.assistance_pool.finish()));
        for a in &mut self.assistance_amounts {
            columns.push(Arc::new(a.finish()));
        }
        columns.push(Arc::new(self.institution.finish()));
        columns.push(Arc::new(self.drug.finish()));
        columns.push(Arc::new(self.days_supply.finish()));
        RecordBatch::try_new(Arc::new(schema()), columns).map_err(|e| Error::arrow("ledger", e))
    }
}
