//! `compare.parquet`: every settlement row of the input in both worlds, in the order of
//! `settlements.parquet` (persons by key), keys written back exactly as read.

use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::domain::{Reason, Status};
use crate::error::{Error, Result};
use crate::ingest::claims::NO_CODE;
use crate::output::{batch_of, coded, names_of, RunView};
use crate::policy::NONE;
use crate::settle::Outcome;

/// The columns of CONTRACT.md, then the ones yibao adds.
pub fn schema() -> SchemaRef {
    let money = |name: &str| Field::new(name, DataType::Decimal128(18, 2), false);
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("claim_id", false),
        text("person_id", false),
        text("region", false),
        text("benefit_baseline", true),
        text("benefit_proposal", true),
        text("status_baseline", false),
        text("status_proposal", false),
        money("fund_paid_baseline"),
        money("fund_paid_proposal"),
        money("patient_pays_baseline"),
        money("patient_pays_proposal"),
        // Added by yibao: the claim's cost, and the rest of each world's settlement.
        money("total_amount"),
        text("policy_id_baseline", true),
        text("policy_id_proposal", true),
        text("reason_baseline", true),
        text("reason_proposal", true),
        money("critical_illness_paid_baseline"),
        money("critical_illness_paid_proposal"),
        money("assistance_paid_baseline"),
        money("assistance_paid_proposal"),
        money("over_cap_amount_baseline"),
        money("over_cap_amount_proposal"),
        Field::new("cap_remaining_baseline", DataType::Decimal128(18, 2), true),
        Field::new("cap_remaining_proposal", DataType::Decimal128(18, 2), true),
    ]))
}

fn money(values: impl Iterator<Item = Option<i64>>) -> Result<ArrayRef> {
    Ok(Arc::new(
        values
            .map(|v| v.map(i128::from))
            .collect::<Decimal128Array>()
            .with_precision_and_scale(18, 2)
            .map_err(|e| Error::arrow("compare", e))?,
    ))
}

/// The compare rows of `rows` (global rows of one part, in output order) settled in the
/// `baseline` and `proposal` views of the same claims. Rows with a null key are not settlement
/// rows, as in `settlements.parquet`.
pub fn batch(
    baseline: &RunView,
    proposal: &RunView,
    rows: &[u32],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let claims = baseline.claims;
    let (kept, at) = crate::output::settlements::settlement_rows(claims, rows);
    let persons = &baseline.registry.index;
    let worlds: [Vec<Outcome>; 2] =
        [baseline, proposal].map(|v| kept.iter().map(|&r| v.outcome(r)).collect());
    // Both worlds share their names (`Policies::name_difference`): the baseline's lists serve.
    let policies = baseline.policies;
    let policy_ids: Vec<&str> = policies.versions.iter().map(|v| v.id.as_str()).collect();
    let labels = names_of(&policies.labels);
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    let id = |c: u16| (c != NONE).then_some(u32::from(c));
    let each = |w: usize, f: &dyn Fn(&Outcome, usize) -> Option<i64>| {
        money(worlds[w].iter().zip(&kept).map(|(o, &r)| f(o, r)))
    };
    let names = |w: usize, list: &[&str], code: &dyn Fn(&Outcome) -> Option<u32>| {
        coded(list, worlds[w].iter().map(code))
    };
    let patient_pays = |o: &Outcome, r: usize| Some(o.patient_pays_fen(claims.total_fen[r]));
    let region = |r: usize| (claims.region[r] != NO_CODE).then_some(claims.region[r]);
    let mut columns: Vec<ArrayRef> = vec![
        claims.key_column(&at, |b| &b.claim_id)?,
        Arc::new(
            kept.iter()
                .map(|&r| claims.person_id(r, persons))
                .collect::<StringArray>(),
        ),
        coded(&names_of(&claims.regions), kept.iter().map(|&r| region(r))),
    ];
    for w in 0..2 {
        columns.push(names(w, &labels, &|o| id(o.label)));
    }
    for w in 0..2 {
        columns.push(names(w, &statuses, &|o| Some(o.status as u32)));
    }
    for w in 0..2 {
        columns.push(each(w, &|o, _| Some(o.fund_fen))?);
    }
    for w in 0..2 {
        columns.push(each(w, &patient_pays)?);
    }
    columns.push(money(kept.iter().map(|&r| Some(claims.total_fen[r])))?);
    for w in 0..2 {
        columns.push(names(w, &policy_ids, &|o| id(o.version)));
    }
    for w in 0..2 {
        columns.push(names(w, &reasons, &|o| o.reason.map(|r| r as u32)));
    }
    for w in 0..2 {
        columns.push(each(w, &|o, _| Some(o.layers.ci_fen))?);
    }
    for w in 0..2 {
        columns.push(each(w, &|o, _| Some(o.layers.assistance_fen))?);
    }
    for w in 0..2 {
        columns.push(each(w, &|o, _| Some(o.over_cap_fen))?);
    }
    for w in 0..2 {
        columns.push(each(w, &|o, _| o.cap_remaining_fen)?);
    }
    batch_of(schema, columns, "compare")
}
