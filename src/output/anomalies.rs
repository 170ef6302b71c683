//! `anomalies.parquet`: one row per (claim, rule) flag with the evidence an auditor needs — the
//! observed value and the policy's threshold (money in yuan, or a count of days or claims), the
//! earlier claim a duplicate or refill relates to, the diagnosis, condition or pool the rule is
//! about — and `detail`, the rule's sentence as a template whose `{placeholders}` name columns of
//! the same row ([`TEMPLATES`], listed in the README). The numbers are the data: no sentence is
//! formatted per flag, and the dozen templates cost a dictionary page per row group. Rows are in
//! settlement order: by person, then time.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Int16Type, Int64Type, Schema, SchemaRef, TimeUnit};

use super::{coded_by, optional, RunView};
use crate::audit::{Anomaly, Related, Unit};
use crate::domain::{AssistanceCategory, Rule};
use crate::error::Result;
use crate::ingest::claims::NO_CODE;
use crate::policy::NONE;

/// A flag's sentence, by what was found: `{name}` stands for the row's `name` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Template {
    EarlyRefill,
    SupplyTooLong,
    DuplicateClaim,
    Unregistered,
    UnregisteredAssisted,
    BeforeBenefitStart,
    AfterRegistrationEnd,
    CapExhausted,
    HighCost,
    PharmacyWithoutPrescription,
    BurstInADay,
    BurstInAWeek,
    AmountOutlier,
}

/// Every template, indexed by [`Template`].
pub const TEMPLATES: [&str; 13] = [
    "refilled with {value_count} days of the fill in {related_claim_id} left; a refill may leave \
     at most {threshold_count}",
    "{value_count} days supplied; the prescription limit is {threshold_count}",
    "same institution, drug, amount ({value_amount}) and day as {related_claim_id}",
    "diagnosis {diagnosis} ({condition}) without a registration",
    "diagnosis {diagnosis} ({condition}) without a registration; the person is \
     {assistance_category}: a benefit missed (Rizhao positive audit)",
    "diagnosis {diagnosis} ({condition}) before the registration's benefits start",
    "diagnosis {diagnosis} ({condition}) after the registration ended",
    "the annual cap of {threshold_amount} of {pool} was used up before this claim; \
     {value_amount} over the cap",
    "year-to-date cost {value_amount} passes the early-warning line of {threshold_amount}",
    "pharmacy fill with no prescriber level: no external prescription",
    "{value_count} claims in one day; the policy allows {threshold_count}",
    "{value_count} claims in seven days; the policy allows {threshold_count}",
    "amount {value_amount} above its drug and level's bar of {threshold_amount} (median + factor \
     × 1.4826 × MAD)",
];

impl Template {
    pub fn text(self) -> &'static str {
        TEMPLATES[self as usize]
    }

    /// The template of a flag; `assisted` says whether the claim's person belongs to a
    /// medical-assistance category.
    pub fn of(a: &Anomaly, assisted: bool) -> Template {
        match a.rule {
            Rule::EarlyRefill => Template::EarlyRefill,
            Rule::SupplyTooLong => Template::SupplyTooLong,
            Rule::DuplicateClaim => Template::DuplicateClaim,
            Rule::UnregisteredCondition if assisted => Template::UnregisteredAssisted,
            Rule::UnregisteredCondition => Template::Unregistered,
            Rule::BeforeBenefitStart => Template::BeforeBenefitStart,
            Rule::AfterRegistrationEnd => Template::AfterRegistrationEnd,
            Rule::CapExhausted => Template::CapExhausted,
            Rule::HighCost => Template::HighCost,
            Rule::PharmacyWithoutPrescription => Template::PharmacyWithoutPrescription,
            Rule::VisitBurst if a.window_days == 1 => Template::BurstInADay,
            Rule::VisitBurst => Template::BurstInAWeek,
            Rule::AmountOutlier => Template::AmountOutlier,
        }
    }
}

/// `template` with each `{column}` replaced by `value(column)` (the text of that column of a
/// row; an unknown or null column is left as written): what a reader of the file does to get a
/// flag's sentence.
pub fn render(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        let name = &rest[open + 1..open + close];
        match value(name) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[open..=open + close]),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

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
        Field::new("window_days", DataType::Int16, true),
        text("diagnosis", true),
        text("condition", true),
        text("pool", true),
        text("assistance_category", true),
        text("detail", false),
    ]))
}

/// The anomaly rows `anomalies` (a slice of the run's, in order).
pub fn batch<'a>(view: &RunView<'a>, anomalies: &[Anomaly]) -> Result<RecordBatch> {
    let (claims, registry, policies) = (view.claims, view.registry, view.policies);
    let row_of = |a: &Anomaly| view.partitions.order[a.position as usize] as usize;
    let outcome = |a: &Anomaly| &view.settled.outcomes[a.position as usize];
    // Texts are copied from where they live (the claims, the policies, static names): no
    // string is made per flag ([`texts`], [`coded_by`]).
    // Amounts in fen, as the file's decimals store them ([`super::fen`]).
    let amount = |of_value: bool| -> ArrayRef {
        Arc::new(optional::<Int64Type>(anomalies.iter().map(|a| {
            let v = if of_value { a.value } else { a.threshold };
            (a.rule.unit() == Unit::Fen).then_some(v).flatten()
        })))
    };
    let count = |of_value: bool| -> ArrayRef {
        Arc::new(optional::<Int64Type>(anomalies.iter().map(|a| {
            let v = if of_value { a.value } else { a.threshold };
            matches!(a.rule.unit(), Unit::Days | Unit::Claims)
                .then_some(v)
                .flatten()
        })))
    };
    let about_diagnosis = |a: &Anomaly| {
        matches!(
            a.rule,
            Rule::UnregisteredCondition | Rule::BeforeBenefitStart | Rule::AfterRegistrationEnd
        )
    };
    let strs = super::names_of;
    let code = |c: u32| (c != NO_CODE).then_some(c);
    let id = |c: u16| (c != NONE).then_some(u32::from(c));
    let policy_ids: Vec<&str> = policies.versions.iter().map(|v| v.id.as_str()).collect();
    let rules: Vec<&str> = Rule::ALL.iter().map(|r| r.as_str()).collect();
    let categories: Vec<&str> = AssistanceCategory::ALL.iter().map(|c| c.as_str()).collect();
    // Only a missed registration's sentence depends on the person's assistance category.
    let assistance = |a: &Anomaly| match a.rule {
        Rule::UnregisteredCondition => registry.person(claims.person[row_of(a)]).assistance,
        _ => None,
    };
    let columns: Vec<ArrayRef> = vec![
        texts(&claims.locate_rows(anomalies.iter().map(row_of)), |&at| {
            claims.claim_id_at(at)
        }),
        Arc::new(
            registry.index.names(
                &anomalies
                    .iter()
                    .map(|a| claims.person[row_of(a)])
                    .collect::<Vec<_>>(),
            ),
        ),
        coded_by(&strs(&claims.regions), anomalies, |a| {
            code(claims.region[row_of(a)])
        }),
        Arc::new(arrow::array::TimestampMillisecondArray::from_iter_values(
            anomalies.iter().map(|a| claims.settled_at[row_of(a)]),
        )),
        coded_by(&policy_ids, anomalies, |a| id(outcome(a).version)),
        coded_by(&strs(&policies.labels), anomalies, |a| id(outcome(a).label)),
        coded_by(&rules, anomalies, |a| Some(a.rule as u32)),
        amount(true),
        amount(false),
        count(true),
        count(false),
        coded_by(&["days", "claims"], anomalies, |a| match a.rule.unit() {
            Unit::Days => Some(0),
            Unit::Claims => Some(1),
            _ => None,
        }),
        texts(anomalies, |a| related_id(view, a.related)),
        Arc::new(optional::<Int16Type>(anomalies.iter().map(|a| {
            (a.rule == Rule::VisitBurst).then_some(i16::from(a.window_days))
        }))),
        coded_by(&strs(&claims.diagnoses), anomalies, |a| {
            about_diagnosis(a)
                .then(|| code(claims.diagnosis[row_of(a)]))
                .flatten()
        }),
        coded_by(&strs(&policies.conditions), anomalies, |a| {
            let version = outcome(a).version;
            if !about_diagnosis(a) || version == NONE {
                return None;
            }
            let diagnosis = claims.diagnosis[row_of(a)] as usize;
            id(view.settled.conditions[version as usize][diagnosis])
        }),
        coded_by(&strs(&policies.pools), anomalies, |a| match a.rule {
            Rule::CapExhausted => id(outcome(a).pool),
            _ => None,
        }),
        coded_by(&categories, anomalies, |a| assistance(a).map(|c| c as u32)),
        coded_by(&TEMPLATES, anomalies, |a| {
            Some(Template::of(a, assistance(a).is_some()) as u32)
        }),
    ];
    super::batch_of(&schema(), columns, "anomalies")
}

/// A text column of `items`, each row's text copied from where it lives.
fn texts<'a, T>(items: &[T], text: impl Fn(&T) -> Option<&'a str>) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(items.len(), items.len() * 8);
    for item in items {
        b.append_option(text(item));
    }
    Arc::new(b.finish())
}

fn related_id<'a>(view: &RunView<'a>, related: Related) -> Option<&'a str> {
    match related {
        Related::None => None,
        Related::Run(row) => view.claims.claim_id(row as usize),
        Related::Earlier(i) => view.audited.earlier.get(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_names_a_column_of_the_row() {
        let schema = schema();
        for t in TEMPLATES {
            let unknown = render(t, |name| {
                schema.index_of(name).is_ok().then(|| "x".to_string())
            });
            assert!(!unknown.contains('{'), "{t}");
        }
    }

    #[test]
    fn the_readme_lists_every_template() {
        let readme = include_str!("../../README.md");
        for t in TEMPLATES {
            assert!(readme.contains(&format!("| {t} |")), "{t}");
        }
    }

    #[test]
    fn a_template_renders_with_the_rows_values() {
        let sentence = render(Template::EarlyRefill.text(), |name| match name {
            "value_count" => Some("21".into()),
            "threshold_count" => Some("15".into()),
            "related_claim_id" => Some("A1".into()),
            _ => None,
        });
        assert_eq!(
            sentence,
            "refilled with 21 days of the fill in A1 left; a refill may leave at most 15"
        );
        assert_eq!(render("{nope} and {", |_| None), "{nope} and {");
    }
}
