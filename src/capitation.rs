//! `yibao capitation`: the year-end accounts of a capitation budget (按人头付费包干), as Jin'an's
//! chronic/special disease pilot settles them (seed 003, section 六; the numbers are the
//! `[capitation]` table of the region's policy file). Claims are settled as usual all year; at
//! year end each member unit (成员单位) of a medical community (医共体) is given a budget of
//! `budget_per_person` × its enrolled persons (persons registered during the year do not raise
//! it) and charged with the basic fund's payments for its enrolled pilot persons (every benefit
//! but the excluded ones, by discharge date: a stay is settled at discharge, so by the day of
//! `settled_at`). Then, per unit:
//! - **surplus**: the unit keeps `score %` of it (its assessment score), the rest goes to the
//!   medical community's overall account; what it keeps is split county : township : village
//!   by `surplus_split` (2 : 6 : 2);
//! - **overspend**: a unit ranked in the top `overspend_to_community_ranks` (six) hands it to the
//!   medical community's overall account; any other unit's overspend is borne county : township
//!   : village by `overspend_split` (4 : 5 : 1).
//!
//! A split rounds each level's share half away from zero to the fen, the township's share
//! taking what is left, so the shares add up to the amount exactly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Deserialize;

use crate::domain::days_from_civil;
use crate::error::{Error, Result};
use crate::ingest::registry::Registry;
use crate::money::{round_div, Yuan};
use crate::policy::{Capitation, Policies};
use crate::report::table::csv_field;

/// What `yibao capitation` was asked to do.
#[derive(Debug, Clone)]
pub struct CapitationArgs {
    /// The region whose budget is settled (its policy file has the `[capitation]` table).
    pub region: String,
    pub year: i32,
    /// A year of settlements: a file, or a directory searched for `settlements.parquet`.
    pub settlements: PathBuf,
    pub persons: PathBuf,
    pub registrations: PathBuf,
    /// The member units (CSV: [`UnitRow`]).
    pub units: PathBuf,
    /// The pilot persons each unit manages (CSV: `person_id,unit_id`).
    pub enrolment: PathBuf,
    /// The year's claims: with them, claims of an excluded diagnosis are taken out of the spend.
    pub claims: Option<PathBuf>,
    pub policies: PathBuf,
    pub out: PathBuf,
}

/// A row of the units file, as an operator keeps it.
#[derive(Debug, Clone, Deserialize)]
pub struct UnitRow {
    pub unit_id: String,
    pub name: String,
    pub medical_community_id: String,
    /// The unit's kind (township health centre, community centre): shown, not computed on.
    #[serde(default)]
    pub level: String,
    /// Enrolled pilot persons at the start of the year: the budget's head count.
    pub enrolled_persons: u64,
    /// The year's assessment score, 0–100 (up to two decimals).
    pub assessment_score: String,
    /// The unit's place in the year's assessment, 1 the best.
    pub assessment_rank: u32,
}

/// One unit's year-end account, money in fen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub unit: String,
    pub name: String,
    pub medical_community: String,
    pub level: String,
    pub enrolled_persons: u64,
    /// Enrolled persons of the pilot population whose payments were counted.
    pub pilot_persons: u64,
    /// Score in hundredths of a percent (9250 = 92.50).
    pub score_hundredths: u32,
    pub rank: u32,
    pub budget: i128,
    pub spend: i128,
    pub surplus: i128,
    pub overspend: i128,
    pub kept_surplus: i128,
    pub surplus_to_community: i128,
    pub overspend_to_community: i128,
    /// County, township, village: what each level keeps of the surplus (positive) or bears of
    /// the overspend (negative).
    pub levels: [i128; 3],
    /// Ranked high enough that an overspend goes to the medical community.
    pub top_ranked: bool,
    /// Which rule applied, in words.
    pub rule: String,
}

/// `amount` split by `shares`: each level but the township (index 1) rounded half away from
/// zero, the township taking the rest.
pub fn split(amount: i128, shares: [u32; 3]) -> [i128; 3] {
    let total: i128 = shares.iter().map(|&s| i128::from(s)).sum();
    let part = |s: u32| round_div(amount * i128::from(s), total);
    let (county, village) = (part(shares[0]), part(shares[2]));
    [county, amount - county - village, village]
}

/// The account of a unit with `budget` and `spend`, under `rules`.
pub fn account(
    unit: &UnitRow,
    score_hundredths: u32,
    budget: i128,
    spend: i128,
    pilot_persons: u64,
    rules: &Capitation,
) -> Account {
    let balance = budget - spend;
    let mut a = Account {
        unit: unit.unit_id.clone(),
        name: unit.name.clone(),
        medical_community: unit.medical_community_id.clone(),
        level: unit.level.clone(),
        enrolled_persons: unit.enrolled_persons,
        pilot_persons,
        score_hundredths,
        rank: unit.assessment_rank,
        budget,
        spend,
        surplus: balance.max(0),
        overspend: (-balance).max(0),
        kept_surplus: 0,
        surplus_to_community: 0,
        overspend_to_community: 0,
        levels: [0; 3],
        top_ranked: (1..=rules.overspend_to_community_ranks).contains(&unit.assessment_rank),
        rule: String::new(),
    };
    let score = format!("{}.{:02}", score_hundredths / 100, score_hundredths % 100);
    if a.surplus > 0 {
        a.kept_surplus = round_div(a.surplus * i128::from(score_hundredths), 10_000);
        a.surplus_to_community = a.surplus - a.kept_surplus;
        a.levels = split(a.kept_surplus, rules.surplus_split);
        let [c, t, v] = rules.surplus_split;
        a.rule =
            format!("surplus: {score}% kept, split {c}:{t}:{v}; the rest to the medical community");
    } else if a.overspend > 0 {
        if a.top_ranked {
            a.overspend_to_community = a.overspend;
            a.rule = format!(
                "overspend, ranked {} (top {}): to the medical community",
                unit.assessment_rank, rules.overspend_to_community_ranks
            );
        } else {
            a.levels = split(a.overspend, rules.overspend_split).map(|x| -x);
            let [c, t, v] = rules.overspend_split;
            a.rule = format!(
                "overspend, ranked {} (not top {}): borne {c}:{t}:{v}",
                unit.assessment_rank, rules.overspend_to_community_ranks
            );
        }
    } else {
        a.rule = "on budget".into();
    }
    a
}

fn csv_error(path: &Path) -> impl Fn(csv::Error) -> Error + '_ {
    move |e| {
        let row = e.position().map_or(0, |p| p.line());
        Error::Value {
            path: path.to_path_buf(),
            column: "-".into(),
            row,
            reason: e.to_string(),
        }
    }
}

/// The units file, checked: ids unique, scores 0–100 with at most two decimals, ranks from 1.
fn read_units(path: &Path) -> Result<Vec<(UnitRow, u32)>> {
    let err = csv_error(path);
    let mut reader = csv::Reader::from_path(path).map_err(&err)?;
    let mut units = Vec::new();
    let mut seen = HashSet::new();
    for (i, row) in reader.deserialize::<UnitRow>().enumerate() {
        let row = row.map_err(&err)?;
        let line = i as u64 + 2;
        let bad = |column: &str, reason: String| Error::Value {
            path: path.to_path_buf(),
            column: column.into(),
            row: line,
            reason,
        };
        let score = crate::money::parse_scaled(&row.assessment_score, 2)
            .map_err(|e| bad("assessment_score", e))?;
        if !(0..=10_000).contains(&score) {
            return Err(bad("assessment_score", "not between 0 and 100".into()));
        }
        if row.assessment_rank == 0 {
            return Err(bad("assessment_rank", "ranks start at 1".into()));
        }
        if !seen.insert(row.unit_id.clone()) {
            return Err(bad(
                "unit_id",
                format!("unit {} is listed twice", row.unit_id),
            ));
        }
        units.push((row, score as u32));
    }
    Ok(units)
}

#[derive(Deserialize)]
struct EnrolmentRow {
    person_id: String,
    unit_id: String,
}

/// Each enrolled person's unit (dense person id → unit index); a person in two units or an
/// unknown unit stops the run, naming the row (by line; no person id in the message).
fn read_enrolment(
    path: &Path,
    registry: &Registry,
    units: &HashMap<&str, usize>,
) -> Result<(HashMap<u32, usize>, u64)> {
    let err = csv_error(path);
    let mut reader = csv::Reader::from_path(path).map_err(&err)?;
    let mut unit_of = HashMap::new();
    let mut unknown_persons = 0;
    for (i, row) in reader.deserialize::<EnrolmentRow>().enumerate() {
        let row = row.map_err(&err)?;
        let bad = |column: &str, reason: String| Error::Value {
            path: path.to_path_buf(),
            column: column.into(),
            row: i as u64 + 2,
            reason,
        };
        let Some(&unit) = units.get(row.unit_id.as_str()) else {
            return Err(bad(
                "unit_id",
                format!("unit {} is not in the units file", row.unit_id),
            ));
        };
        let Some(person) = registry.index.get(&row.person_id) else {
            unknown_persons += 1;
            continue;
        };
        if unit_of.insert(person, unit).is_some_and(|u| u != unit) {
            return Err(bad(
                "person_id",
                "this person is enrolled with two units".into(),
            ));
        }
    }
    Ok((unit_of, unknown_persons))
}

/// What the accounts counted, besides the accounts.
#[derive(Debug, Default, Clone)]
pub struct Counted {
    /// Settlement rows charged to a unit.
    pub rows: u64,
    /// Rows of enrolled pilot persons left out: excluded benefits or diagnoses.
    pub excluded_rows: u64,
    /// Enrolled persons who are not in the registry, or not of the pilot population.
    pub enrolled_outside_pilot: u64,
    /// Whether excluded diagnoses could be applied (the claims were given).
    pub diagnoses_applied: bool,
    /// Charged settlement rows whose claim the claims files do not have (their diagnosis
    /// unknown: counted in the spend).
    pub claims_not_found: u64,
}

/// Settles the year's accounts of `args` and writes `capitation.parquet` and `capitation.csv`.
pub fn capitation(args: &CapitationArgs) -> Result<(Vec<Account>, Counted)> {
    let policies = Policies::load_dir(&args.policies)?;
    let region = policies
        .region_index(&args.region)
        .ok_or_else(|| Error::Usage(format!("no policy file has region {}", args.region)))?;
    let rules = policies
        .capitation
        .iter()
        .find(|(r, _)| *r == region)
        .map(|(_, c)| c.clone())
        .ok_or_else(|| {
            Error::Usage(format!(
                "region {}'s policy has no [capitation] table",
                args.region
            ))
        })?;
    let registry = Registry::load(&args.persons, &args.registrations, &policies)?;
    let units = read_units(&args.units)?;
    let by_id: HashMap<&str, usize> = units
        .iter()
        .enumerate()
        .map(|(i, (u, _))| (u.unit_id.as_str(), i))
        .collect();
    let (unit_of, unknown) = read_enrolment(&args.enrolment, &registry, &by_id)?;
    let (first, last) = (
        days_from_civil(args.year, 1, 1),
        days_from_civil(args.year, 12, 31),
    );
    // The pilot population: persons of the region on the pilot's scheme with a registration
    // of a pilot condition in force on some day of the year.
    let pilot = |p: u32| {
        let person = registry.person(p);
        person.region == region
            && person.coverage == rules.coverage
            && registry.registrations_of(p).iter().any(|r| {
                rules.conditions.contains(&r.condition)
                    && r.approved_on <= last
                    && r.ended_on >= first
            })
    };
    let mut counted = Counted {
        enrolled_outside_pilot: unknown,
        ..Counted::default()
    };
    let charged: HashMap<u32, usize> = unit_of
        .iter()
        .filter(|(&p, _)| pilot(p))
        .map(|(&p, &u)| (p, u))
        .collect();
    counted.enrolled_outside_pilot += (unit_of.len() - charged.len()) as u64;
    let rows = crate::report::settled_rows(&args.settlements, &registry, first, last, &|p, _| {
        charged.contains_key(&p)
    })?;
    // Claims of an excluded diagnosis, and the refunds of such claims (judged by their original).
    let excluded_ids: HashSet<String> = match &args.claims {
        Some(claims) => {
            counted.diagnoses_applied = true;
            let wanted: HashSet<&str> = rows.iter().map(|r| r.claim_id.as_str()).collect();
            let diagnoses = crate::report::claim_column(claims, &wanted, "diagnosis", true)?;
            counted.claims_not_found = wanted
                .iter()
                .filter(|id| !diagnoses.contains_key(**id))
                .count() as u64;
            let excluded = |d: &str| {
                let d = d.replace('.', "").to_ascii_uppercase();
                rules.excluded_diagnoses.iter().any(|p| d.starts_with(p))
            };
            let mut ids: HashSet<String> = diagnoses
                .iter()
                .filter(|(_, d)| excluded(d))
                .map(|(id, _)| id.clone())
                .collect();
            let originals =
                crate::report::claim_column(claims, &wanted, "reverses_claim_id", false)?;
            for (refund, original) in originals {
                if ids.contains(&original) {
                    ids.insert(refund);
                }
            }
            ids
        }
        None => HashSet::new(),
    };
    let mut spend = vec![0i128; units.len()];
    let mut persons: Vec<HashSet<u32>> = vec![HashSet::new(); units.len()];
    for r in &rows {
        let unit = charged[&r.person];
        let name = r.benefit.split('.').next().unwrap_or("");
        if rules.excluded_benefits.iter().any(|b| b == name) || excluded_ids.contains(&r.claim_id) {
            counted.excluded_rows += 1;
            continue;
        }
        counted.rows += 1;
        spend[unit] += r.fund_fen;
        persons[unit].insert(r.person);
    }
    let accounts: Vec<Account> = units
        .iter()
        .enumerate()
        .map(|(i, (u, score))| {
            let budget = i128::from(rules.budget_per_person_fen) * i128::from(u.enrolled_persons);
            account(u, *score, budget, spend[i], persons[i].len() as u64, &rules)
        })
        .collect();
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let batch = batch(&accounts)?;
    let mut file = crate::output::parquet::PendingFile::create_with(
        &args.out.join("capitation.parquet"),
        batch.schema(),
        &crate::output::parquet::FileSettings::OUTPUT,
    )?;
    file.write(&batch)?;
    let committed = file.close()?;
    committed.commit()?;
    crate::output::parquet::write_atomic(
        &args.out.join("capitation.csv"),
        csv(&accounts).as_bytes(),
    )?;
    crate::output::parquet::sync_dir(&args.out)?;
    Ok((accounts, counted))
}

fn schema() -> SchemaRef {
    let money = |n: &str| Field::new(n, DataType::Decimal128(18, 2), false);
    Arc::new(Schema::new(vec![
        Field::new("unit_id", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("medical_community_id", DataType::Utf8, false),
        Field::new("level", DataType::Utf8, false),
        Field::new("enrolled_persons", DataType::Int64, false),
        Field::new("pilot_persons", DataType::Int64, false),
        Field::new("assessment_score", DataType::Decimal128(5, 2), false),
        Field::new("assessment_rank", DataType::Int32, false),
        Field::new("top_ranked", DataType::Boolean, false),
        money("budget"),
        money("spend"),
        money("surplus"),
        money("overspend"),
        money("kept_surplus"),
        money("surplus_to_community"),
        money("overspend_to_community"),
        money("county_share"),
        money("township_share"),
        money("village_share"),
        Field::new("rule", DataType::Utf8, false),
    ]))
}

fn batch(accounts: &[Account]) -> Result<RecordBatch> {
    let text = |f: &dyn Fn(&Account) -> &str| -> ArrayRef {
        Arc::new(accounts.iter().map(|a| Some(f(a))).collect::<StringArray>())
    };
    let money = |f: &dyn Fn(&Account) -> i128| -> Result<ArrayRef> {
        Ok(Arc::new(
            Decimal128Array::from_iter_values(accounts.iter().map(f))
                .with_precision_and_scale(18, 2)
                .map_err(|e| Error::arrow("capitation", e))?,
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|a| &a.unit),
        text(&|a| &a.name),
        text(&|a| &a.medical_community),
        text(&|a| &a.level),
        Arc::new(Int64Array::from_iter_values(
            accounts.iter().map(|a| a.enrolled_persons as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            accounts.iter().map(|a| a.pilot_persons as i64),
        )),
        Arc::new(
            Decimal128Array::from_iter_values(
                accounts.iter().map(|a| i128::from(a.score_hundredths)),
            )
            .with_precision_and_scale(5, 2)
            .map_err(|e| Error::arrow("capitation", e))?,
        ),
        Arc::new(Int32Array::from_iter_values(
            accounts.iter().map(|a| a.rank as i32),
        )),
        Arc::new(
            accounts
                .iter()
                .map(|a| Some(a.top_ranked))
                .collect::<BooleanArray>(),
        ),
        money(&|a| a.budget)?,
        money(&|a| a.spend)?,
        money(&|a| a.surplus)?,
        money(&|a| a.overspend)?,
        money(&|a| a.kept_surplus)?,
        money(&|a| a.surplus_to_community)?,
        money(&|a| a.overspend_to_community)?,
        money(&|a| a.levels[0])?,
        money(&|a| a.levels[1])?,
        money(&|a| a.levels[2])?,
        text(&|a| &a.rule),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| Error::arrow("capitation", e))
}

/// The accounts as CSV, the Parquet file's columns.
pub fn csv(accounts: &[Account]) -> String {
    let names: Vec<String> = schema().fields().iter().map(|f| f.name().clone()).collect();
    let mut out = names.join(",");
    out.push('\n');
    for a in accounts {
        let y = |fen: i128| Yuan(fen).to_string();
        let fields = [
            csv_field(&a.unit),
            csv_field(&a.name),
            csv_field(&a.medical_community),
            csv_field(&a.level),
            a.enrolled_persons.to_string(),
            a.pilot_persons.to_string(),
            format!(
                "{}.{:02}",
                a.score_hundredths / 100,
                a.score_hundredths % 100
            ),
            a.rank.to_string(),
            a.top_ranked.to_string(),
            y(a.budget),
            y(a.spend),
            y(a.surplus),
            y(a.overspend),
            y(a.kept_surplus),
            y(a.surplus_to_community),
            y(a.overspend_to_community),
            y(a.levels[0]),
            y(a.levels[1]),
            y(a.levels[2]),
            csv_field(&a.rule),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// The accounts as a table for the terminal, with each medical community's overall account.
pub fn terminal_table(accounts: &[Account]) -> String {
    let mut rows: Vec<[String; 9]> = vec![[
        "unit".into(),
        "rank".into(),
        "budget".into(),
        "spend".into(),
        "surplus/overspend".into(),
        "kept".into(),
        "county / township / village".into(),
        "to community".into(),
        "rule".into(),
    ]];
    let mut community: BTreeMap<&str, i128> = BTreeMap::new();
    for a in accounts {
        let balance = a.surplus - a.overspend;
        let to_community = a.surplus_to_community - a.overspend_to_community;
        *community.entry(&a.medical_community).or_default() += to_community;
        rows.push([
            format!("{} {}", a.unit, a.name),
            a.rank.to_string(),
            Yuan(a.budget).to_string(),
            Yuan(a.spend).to_string(),
            Yuan(balance).to_string(),
            Yuan(a.kept_surplus).to_string(),
            format!(
                "{} / {} / {}",
                Yuan(a.levels[0]),
                Yuan(a.levels[1]),
                Yuan(a.levels[2])
            ),
            Yuan(to_community).to_string(),
            a.rule.clone(),
        ]);
    }
    // Widths on the terminal: a Chinese character takes two columns.
    let width = |t: &str| unicode_width::UnicodeWidthStr::width(t);
    let widths: Vec<usize> = (0..9)
        .map(|c| rows.iter().map(|r| width(&r[c])).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (text, &w))| {
                let pad = w - width(text);
                // Names and rules to the left, numbers to the right.
                if c == 0 || c == 8 {
                    format!("{text}{}", " ".repeat(pad))
                } else {
                    format!("{}{text}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for (id, amount) in community {
        out.push_str(&format!(
            "medical community {id}: overall account {} (surplus handed on − overspend taken over)\n",
            Yuan(amount)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_rounds_county_and_village_and_leaves_the_rest_to_the_township() {
        assert_eq!(split(100_000, [2, 6, 2]), [20_000, 60_000, 20_000]);
        // 0.07 yuan 2:6:2: county round(1.4) = 1, village 1, township the 5 fen left.
        assert_eq!(split(7, [2, 6, 2]), [1, 5, 1]);
        // 0.05 yuan 4:5:1: county round(2.0) = 2, village round(0.5) = 1, township 2.
        assert_eq!(split(5, [4, 5, 1]), [2, 2, 1]);
    }
}
