//! `rejected.parquet`: every input row that is not a valid claim, with the claim columns as read
//! (null where a value could not be read), the reason code, the offending value, and the source
//! file and row so the data centre can fix it at the source.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Decimal128Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::RunView;
use crate::domain::{Reason, Status};
use crate::error::{Error, Result};
use crate::ingest::claims::NO_CODE;

pub fn schema() -> SchemaRef {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let money = |n: &str| Field::new(n, DataType::Decimal128(18, 2), true);
    Arc::new(Schema::new(vec![
        text("claim_id"),
        text("person_id"),
        text("region"),
        Field::new(
            "settled_at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
        Field::new("service_date", DataType::Date32, true),
        text("institution_id"),
        text("institution_level"),
        text("prescriber_level"),
        text("visit_type"),
        text("diagnosis"),
        money("total_amount"),
        money("in_scope_amount"),
        text("drug_code"),
        Field::new("days_supply", DataType::Int32, true),
        text("reverses_claim_id"),
        text("referral"),
        text("medical_community_id"),
        Field::new("reason", DataType::Utf8, false),
        text("detail"),
        Field::new("source_file", DataType::Utf8, false),
        Field::new("source_row", DataType::Int64, false),
    ]))
}

/// The rejected rows among `rows` (global rows in output order), with their reasons.
pub fn rows(view: &RunView, rows: &[u32]) -> Vec<(usize, Reason)> {
    rows.iter()
        .filter_map(|&row| {
            let row = row as usize;
            let o = view.outcome(row);
            (o.status == Status::Rejected).then(|| (row, o.reason.unwrap_or(Reason::NullKey)))
        })
        .collect()
}

pub fn batch(view: &RunView, rejected: &[(usize, Reason)]) -> Result<RecordBatch> {
    let c = view.claims;
    let at = |row: usize| c.locate(row);
    let opt_text = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    let code = |list: &[String], v: u32| (v != NO_CODE).then(|| list[v as usize].clone());
    let amount_readable =
        |reason: Reason| !matches!(reason, Reason::NullAmount | Reason::UnreadableAmount);
    let strings = |f: &dyn Fn(usize, Reason) -> Option<String>| -> ArrayRef {
        Arc::new(
            rejected
                .iter()
                .map(|&(r, reason)| f(r, reason))
                .collect::<StringArray>(),
        )
    };
    let money = |f: &dyn Fn(usize) -> i64| -> Result<ArrayRef> {
        Ok(Arc::new(
            rejected
                .iter()
                .map(|&(r, reason)| amount_readable(reason).then(|| f(r) as i128))
                .collect::<Decimal128Array>()
                .with_precision_and_scale(18, 2)
                .map_err(|e| Error::arrow("rejected", e))?,
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        strings(&|r, _| {
            let (b, i) = at(r);
            opt_text(&b.claim_id, i)
        }),
        strings(&|r, _| c.person_id(r, &view.registry.index).map(str::to_string)),
        strings(&|r, _| c.region_text(r).map(str::to_string)),
        Arc::new(
            rejected
                .iter()
                .map(|&(r, _)| (!c.settled_at_null[r]).then(|| c.settled_at[r]))
                .collect::<TimestampMillisecondArray>(),
        ),
        Arc::new(
            rejected
                .iter()
                .map(|&(r, _)| (!c.service_date_null[r]).then(|| c.service_day[r]))
                .collect::<Date32Array>(),
        ),
        strings(&|r, _| code(&c.institutions, c.institution[r])),
        strings(&|r, _| c.level_text(r).map(str::to_string)),
        strings(&|r, _| c.prescriber[r].map(|l| l.as_str().to_string())),
        strings(&|r, reason| {
            (reason != Reason::UnknownVisitType).then(|| c.visit[r].as_str().to_string())
        }),
        strings(&|r, _| code(&c.diagnoses, c.diagnosis[r])),
        money(&|r| c.total_fen[r])?,
        money(&|r| c.in_scope_fen[r])?,
        strings(&|r, _| code(&c.drugs, c.drug[r])),
        Arc::new(
            rejected
                .iter()
                .map(|&(r, _)| c.days_supply[r])
                .collect::<Int32Array>(),
        ),
        strings(&|r, _| c.reverses_claim_id(r).map(str::to_string)),
        strings(&|r, _| c.referral[r].map(|x| x.as_str().to_string())),
        strings(&|r, _| code(&c.medical_communities, c.medical_community[r])),
        strings(&|_, reason| Some(reason.as_str().to_string())),
        strings(&|r, _| c.reject_detail.get(&r).cloned()),
        strings(&|r, _| Some(c.sources[c.source_row(r).0].path.display().to_string())),
        Arc::new(
            rejected
                .iter()
                .map(|&(r, _)| c.source_row(r).1 as i64)
                .collect::<Int64Array>(),
        ),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| Error::arrow("rejected", e))
}
