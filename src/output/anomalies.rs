//! `anomalies.parquet`: one row per (claim, rule) flag with the evidence an auditor needs — the
//! observed value and the policy's threshold (money in yuan, or a count of days or claims), the
//! earlier claim a duplicate or refill relates to, and a sentence saying what was found. Rows
//! are in settlement order: by person, then time.

use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::RunView;
use crate::audit::{Anomaly, Related, Unit};
use crate::domain::Rule;
use crate::error::{Error, Result};
use crate::money::Yuan;
use crate::policy::NONE;

pub fn schema() -> SchemaRef {
    let text = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let money = |n: &str| Field::new(n, DataType::Decimal128(18, 2), true);
    Arc::new(Schema::new(vec![
        text("claim_id", false),
        text("person_id", false),
        text("region", false),
        Field::new(
            "settled_at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        text("policy_id", true),
        text("benefit", true),
        text("rule", false),
        money("value_amount"),
        money("threshold_amount"),
        Field::new("value_count", DataType::Int64, true),
        Field::new("threshold_count", DataType::Int64, true),
        text("count_unit", true),
        text("related_claim_id", true),
        text("detail", false),
    ]))
}

/// The anomaly rows `anomalies` (a slice of the run's, in order).
pub fn batch<'a>(view: &RunView<'a>, anomalies: &[Anomaly]) -> Result<RecordBatch> {
    let (claims, registry) = (view.claims, view.registry);
    let row_of = |a: &Anomaly| view.partitions.order[a.position as usize] as usize;
    let text = |f: &dyn Fn(&Anomaly) -> Option<String>| -> ArrayRef {
        Arc::new(anomalies.iter().map(f).collect::<StringArray>())
    };
    let key = |f: &dyn Fn(usize) -> Option<&'a str>| text(&|a| f(row_of(a)).map(str::to_string));
    let amount = |of_value: bool| -> Result<ArrayRef> {
        Ok(Arc::new(
            anomalies
                .iter()
                .map(|a| {
                    let v = if of_value { a.value } else { a.threshold };
                    (a.rule.unit() == Unit::Fen)
                        .then_some(v)
                        .flatten()
                        .map(i128::from)
                })
                .collect::<Decimal128Array>()
                .with_precision_and_scale(18, 2)
                .map_err(|e| Error::arrow("anomalies", e))?,
        ))
    };
    let count = |of_value: bool| -> ArrayRef {
        Arc::new(
            anomalies
                .iter()
                .map(|a| {
                    let v = if of_value { a.value } else { a.threshold };
                    matches!(a.rule.unit(), Unit::Days | Unit::Claims)
                        .then_some(v)
                        .flatten()
                })
                .collect::<Int64Array>(),
        )
    };
    let outcome = |a: &Anomaly| &view.settled.outcomes[a.position as usize];
    let policies = view.policies;
    let columns: Vec<ArrayRef> = vec![
        key(&|r| claims.claim_id(r)),
        key(&|r| claims.person_id(r, &registry.index)),
        key(&|r| claims.region_text(r)),
        Arc::new(arrow::array::TimestampMillisecondArray::from_iter_values(
            anomalies.iter().map(|a| claims.settled_at[row_of(a)]),
        )),
        text(&|a| match outcome(a).version {
            NONE => None,
            v => Some(policies.versions[v as usize].id.clone()),
        }),
        text(&|a| match outcome(a).label {
            NONE => None,
            l => Some(policies.labels[l as usize].clone()),
        }),
        text(&|a| Some(a.rule.as_str().to_string())),
        amount(true)?,
        amount(false)?,
        count(true),
        count(false),
        text(&|a| match a.rule.unit() {
            Unit::Days => Some("days".into()),
            Unit::Claims => Some("claims".into()),
            _ => None,
        }),
        text(&|a| related_id(view, a.related)),
        text(&|a| Some(detail(view, a, row_of(a)))),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| Error::arrow("anomalies", e))
}

fn related_id(view: &RunView, related: Related) -> Option<String> {
    match related {
        Related::None => None,
        Related::Run(row) => view.claims.claim_id(row as usize).map(str::to_string),
        Related::Earlier(i) => Some(view.prior.claim_ids.get(i as usize).to_string()),
    }
}

/// What an auditor reads first.
fn detail(view: &RunView, a: &Anomaly, row: usize) -> String {
    let claims = view.claims;
    let o = &view.settled.outcomes[a.position as usize];
    let v = a.value.unwrap_or(0);
    let t = a.threshold.unwrap_or(0);
    let related = related_id(view, a.related).unwrap_or_default();
    let diagnosis = &claims.diagnoses[claims.diagnosis[row] as usize];
    let condition = || -> String {
        (o.version != NONE)
            .then(|| view.policies.versions[o.version as usize].condition_of(diagnosis))
            .flatten()
            .map(|c| view.policies.conditions[c as usize].clone())
            .unwrap_or_default()
    };
    match a.rule {
        Rule::EarlyRefill => format!(
            "refilled with {v} days of the fill in {related} left; a refill may leave at most {t}"
        ),
        Rule::SupplyTooLong => format!("{v} days supplied; the prescription limit is {t}"),
        Rule::DuplicateClaim => {
            format!(
                "same institution, drug, amount ({}) and day as {related}",
                Yuan(v as i128)
            )
        }
        Rule::UnregisteredCondition => {
            let person = view.registry.person(claims.person[row]);
            match person.assistance {
                Some(category) => format!(
                    "diagnosis {diagnosis} ({}) without a registration; the person is {category}: a \
                     benefit missed (Rizhao positive audit)",
                    condition()
                ),
                None => format!("diagnosis {diagnosis} ({}) without a registration", condition()),
            }
        }
        Rule::BeforeBenefitStart => format!(
            "diagnosis {diagnosis} ({}) before the registration's benefits start",
            condition()
        ),
        Rule::AfterRegistrationEnd => format!(
            "diagnosis {diagnosis} ({}) after the registration ended",
            condition()
        ),
        Rule::CapExhausted => format!(
            "the annual cap of {} of {} was used up before this claim; {} over the cap",
            Yuan(t as i128),
            view.policies.pools[o.pool as usize],
            Yuan(v as i128)
        ),
        Rule::HighCost => format!(
            "year-to-date cost {} passes the early-warning line of {}",
            Yuan(v as i128),
            Yuan(t as i128)
        ),
        Rule::PharmacyWithoutPrescription => {
            "pharmacy fill with no prescriber level: no external prescription".into()
        }
        Rule::VisitBurst => format!(
            "{v} claims in {}; the policy allows {t}",
            if a.window_days == 1 {
                "one day"
            } else {
                "seven days"
            }
        ),
        Rule::AmountOutlier => format!(
            "amount {} above its drug and level's bar of {} (median + factor × 1.4826 × MAD)",
            Yuan(v as i128),
            Yuan(t as i128)
        ),
    }
}
