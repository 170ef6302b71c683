//! `settlements.parquet`: one row per input claim with non-null keys, in output order (persons
//! by key, see [`crate::partition`]), keys written back exactly as read.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, ListArray, RecordBatch, TimestampMillisecondArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit};

use super::{batch_of, coded_by, names_of, RunView};
use crate::domain::{Reason, Rule, Status};
use crate::error::Result;
use crate::ingest::claims::{Claims, NO_CODE};
use crate::policy::NONE;

/// The settlement schema of CONTRACT.md, in its column order.
pub fn schema() -> SchemaRef {
    let money = |name: &str| Field::new(name, DataType::Decimal128(18, 2), false);
    Arc::new(Schema::new(vec![
        Field::new("claim_id", DataType::Utf8, false),
        Field::new("person_id", DataType::Utf8, false),
        Field::new("region", DataType::Utf8, false),
        Field::new(
            "settled_at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("institution_level", DataType::Utf8, false),
        Field::new("policy_id", DataType::Utf8, true),
        Field::new("benefit", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, true),
        money("eligible_amount"),
        money("deductible_amount"),
        Field::new("ratio", DataType::Decimal128(5, 4), true),
        money("fund_paid"),
        money("copay_amount"),
        money("over_cap_amount"),
        money("self_funded_amount"),
        Field::new("cap_remaining", DataType::Decimal128(18, 2), true),
        money("critical_illness_base"),
        money("assistance_base"),
        Field::new(
            "anomaly_codes",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            false,
        ),
        Field::new("risk_score", DataType::Float32, false),
        // Added by yibao: the later layers of one-stop settlement, and what the person pays.
        // total = fund_paid + critical_illness_paid + assistance_paid + patient_pays.
        money("critical_illness_paid"),
        money("assistance_paid"),
        money("patient_pays"),
        // Why no registered-condition benefit paid (a general benefit did, or none).
        Field::new("condition_reason", DataType::Utf8, true),
    ]))
}

/// The rows of `rows` (global rows, in output order) that are settlement rows — every key
/// non-null — with where each one's key texts are read from ([`Claims::locate_index`]).
pub(crate) fn settlement_rows(claims: &Claims, rows: &[u32]) -> (Vec<usize>, Vec<(usize, usize)>) {
    let kept: Vec<usize> = rows
        .iter()
        .map(|&r| r as usize)
        .filter(|&r| claims.keys_complete(r))
        .collect();
    let at = kept.iter().map(|&r| claims.locate_index(r)).collect();
    (kept, at)
}

/// The settlement rows of `rows` (global rows, in output order). Rows with a null key cannot be
/// settlement rows (every key is non-null in the contract): they are in `rejected.parquet` only.
pub fn batch<'a>(view: &RunView<'a>, rows: &[u32], schema: &SchemaRef) -> Result<RecordBatch> {
    let claims = view.claims;
    let (kept, at) = settlement_rows(claims, rows);
    let persons = &view.registry.index;

    let outcomes: Vec<_> = kept.iter().map(|&r| view.outcome(r)).collect();
    let policies = view.policies;
    fn per<T>(items: &[T], f: impl Fn(&T) -> i64) -> Vec<i64> {
        items.iter().map(f).collect()
    }
    let code = |c: u32| (c != NO_CODE).then_some(c);
    let id = |c: u16| (c != NONE).then_some(u32::from(c));
    let policy_ids: Vec<&str> = policies.versions.iter().map(|v| v.id.as_str()).collect();
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    let money = super::fen;
    let self_funded: Vec<i64> = kept
        .iter()
        .map(|&r| claims.total_fen[r] - claims.in_scope_fen[r])
        .collect();
    // Decimals as their unscaled integers ([`super::fen`]): basis points for Decimal(5,4).
    let ratio: ArrayRef = Arc::new(super::optional::<Int32Type>(
        outcomes.iter().map(|o| o.ratio_bp.map(|bp| bp as i32)),
    ));
    let cap_remaining: ArrayRef = Arc::new(super::optional::<Int64Type>(
        outcomes.iter().map(|o| o.cap_remaining_fen),
    ));
    let k = outcomes.len();
    // Flags as lists of rule codes, coded into the list of rules.
    let flags: Vec<u16> = kept.iter().map(|&r| view.flags(r)).collect();
    let mut count = 0i32;
    let mut offsets = Vec::with_capacity(k + 1);
    offsets.push(0i32);
    for &f in &flags {
        count += f.count_ones() as i32;
        offsets.push(count);
    }
    let rules: Vec<&str> = Rule::ALL.iter().map(|r| r.as_str()).collect();
    let codes = super::coded(
        &rules,
        flags
            .iter()
            .flat_map(|&f| crate::audit::Audited::rules(f).map(|r| Some(r as u32))),
    );
    let anomaly_codes: ArrayRef = Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(codes.data_type().clone(), true)),
        OffsetBuffer::new(offsets.into()),
        codes,
        None,
    ));
    let risk: Float32Array = outcomes
        .iter()
        .zip(&flags)
        .map(|(o, &f)| crate::audit::Audited::risk_score(policies, o.version, f))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        claims.key_column(&at, |b| &b.claim_id)?,
        Arc::new(persons.names(&kept.iter().map(|&r| claims.person[r]).collect::<Vec<_>>())),
        coded_by(&names_of(&claims.regions), &kept, |&r| {
            code(claims.region[r])
        }),
        Arc::new(TimestampMillisecondArray::from_iter_values(
            kept.iter().map(|&r| claims.settled_at[r]),
        )),
        coded_by(&names_of(&claims.level_texts), &kept, |&r| {
            code(claims.level_text[r])
        }),
        coded_by(&policy_ids, &outcomes, |o| id(o.version)),
        coded_by(&names_of(&policies.labels), &outcomes, |o| id(o.label)),
        coded_by(&statuses, &outcomes, |o| Some(o.status as u32)),
        coded_by(&reasons, &outcomes, |o| o.reason.map(|r| r as u32)),
        money(per(&outcomes, |o| o.eligible_fen)),
        money(per(&outcomes, |o| o.deductible_fen)),
        ratio,
        money(per(&outcomes, |o| o.fund_fen)),
        money(per(&outcomes, |o| o.copay_fen)),
        money(per(&outcomes, |o| o.over_cap_fen)),
        money(self_funded),
        cap_remaining,
        money(per(&outcomes, |o| o.critical_illness_base_fen())),
        money(per(&outcomes, |o| o.assistance_base_fen())),
        anomaly_codes,
        Arc::new(risk),
        money(per(&outcomes, |o| o.layers.ci_fen)),
        money(per(&outcomes, |o| o.layers.assistance_fen)),
        money(
            kept.iter()
                .zip(&outcomes)
                .map(|(&r, o)| o.patient_pays_fen(claims.total_fen[r]))
                .collect(),
        ),
        coded_by(&reasons, &outcomes, |o| {
            o.condition_reason.map(|r| r as u32)
        }),
    ];
    batch_of(schema, columns, "settlements")
}
