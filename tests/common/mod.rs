//! Test harness: builds small input files from compact row descriptions, runs the engine, and
//! reads the settlements back as plain structs with money in fen.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::*;
use arrow::datatypes::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use yibao::domain::{days_from_civil, parse_date, MILLIS_PER_DAY};

#[derive(Clone, Debug)]
pub struct Person {
    pub id: &'static str,
    pub region: &'static str,
    pub scheme: &'static str,
    pub supplementary: Option<bool>,
    pub tier: Option<i16>,
    pub assistance: Option<&'static str>,
    pub family_doctor: Option<bool>,
}

pub fn person(id: &'static str, region: &'static str, scheme: &'static str) -> Person {
    Person {
        id,
        region,
        scheme,
        supplementary: None,
        tier: None,
        assistance: None,
        family_doctor: Some(true),
    }
}

#[derive(Clone, Debug)]
pub struct Registration {
    pub person: &'static str,
    pub condition: &'static str,
    pub severity: Option<&'static str>,
    pub primary: Option<bool>,
    pub approved_on: &'static str,
    pub ended_on: Option<&'static str>,
}

pub fn registration(person: &'static str, condition: &'static str) -> Registration {
    Registration {
        person,
        condition,
        severity: None,
        primary: None,
        approved_on: "2020-01-01",
        ended_on: None,
    }
}

#[derive(Clone, Debug)]
pub struct Claim {
    pub id: &'static str,
    pub person: &'static str,
    pub region: &'static str,
    /// `YYYY-MM-DD` (settled at noon) or `YYYY-MM-DD HH:MM`.
    pub settled_at: &'static str,
    pub service_date: Option<&'static str>,
    pub level: &'static str,
    pub prescriber: Option<&'static str>,
    pub visit: Option<&'static str>,
    pub diagnosis: &'static str,
    pub total: &'static str,
    pub in_scope: &'static str,
    pub drug: Option<&'static str>,
    pub days_supply: Option<i32>,
    pub reverses: Option<&'static str>,
    pub referral: Option<&'static str>,
    pub community: Option<&'static str>,
    pub institution: &'static str,
}

/// A claim fully in scope.
pub fn claim(
    id: &'static str,
    person: &'static str,
    settled_at: &'static str,
    level: &'static str,
    diagnosis: &'static str,
    amount: &'static str,
) -> Claim {
    Claim {
        id,
        person,
        region: "000000",
        settled_at,
        service_date: None,
        level,
        prescriber: None,
        visit: None,
        diagnosis,
        total: amount,
        in_scope: amount,
        drug: Some("XC08CAA001"),
        days_supply: Some(30),
        reverses: None,
        referral: None,
        community: None,
        institution: "H0001",
    }
}

/// An inpatient stay fully in scope, discharged (and settled) on `settled_at`'s day.
pub fn stay(
    id: &'static str,
    person: &'static str,
    settled_at: &'static str,
    level: &'static str,
    diagnosis: &'static str,
    amount: &'static str,
) -> Claim {
    Claim {
        visit: Some("inpatient"),
        drug: None,
        days_supply: None,
        ..claim(id, person, settled_at, level, diagnosis, amount)
    }
}

pub fn fen(text: &str) -> i64 {
    yibao::money::parse_scaled(text, 2).expect("test amount")
}

fn millis(text: &str) -> i64 {
    let (date, time) = text.split_once(' ').unwrap_or((text, "12:00"));
    let day = parse_date(date).expect("test date") as i64;
    let (h, m) = time.split_once(':').expect("HH:MM");
    day * MILLIS_PER_DAY + (h.parse::<i64>().unwrap() * 60 + m.parse::<i64>().unwrap()) * 60_000
}

/// Writes one batch as a Parquet file.
pub fn write_parquet(path: &Path, batch: &RecordBatch) {
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// Reads a whole Parquet file as one batch.
/// The order a state file names for each of its row groups (its metadata
/// `yibao::state::tables::ROW_GROUP_ORDER`, a comma-separated entry per row group).
pub fn row_group_order(path: &Path) -> String {
    ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| {
            kv.iter()
                .find(|kv| kv.key == yibao::state::tables::ROW_GROUP_ORDER)
        })
        .and_then(|kv| kv.value.clone())
        .unwrap_or_else(|| panic!("{path:?} names no row group order"))
}

pub fn read_parquet(path: &Path) -> RecordBatch {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    arrow::compute::concat_batches(&schema, &batches).unwrap()
}

fn strings<T>(rows: &[T], f: impl Fn(&T) -> Option<&str>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

fn money(rows: &[Claim], f: impl Fn(&Claim) -> &str) -> ArrayRef {
    Arc::new(
        rows.iter()
            .map(|c| Some(fen(f(c)) as i128))
            .collect::<Decimal128Array>()
            .with_precision_and_scale(18, 2)
            .unwrap(),
    )
}

pub fn write_persons(path: &Path, persons: &[Person]) {
    let batch = RecordBatch::try_from_iter(vec![
        ("person_id", strings(persons, |p| Some(p.id))),
        ("region", strings(persons, |p| Some(p.region))),
        ("scheme", strings(persons, |p| Some(p.scheme))),
        (
            "supplementary",
            Arc::new(
                persons
                    .iter()
                    .map(|p| p.supplementary)
                    .collect::<BooleanArray>(),
            ) as ArrayRef,
        ),
        (
            "contribution_tier",
            Arc::new(persons.iter().map(|p| p.tier).collect::<Int16Array>()) as ArrayRef,
        ),
        ("assistance_category", strings(persons, |p| p.assistance)),
        (
            "family_doctor_signed",
            Arc::new(
                persons
                    .iter()
                    .map(|p| p.family_doctor)
                    .collect::<BooleanArray>(),
            ) as ArrayRef,
        ),
    ])
    .unwrap();
    write_parquet(path, &batch);
}

pub fn write_registrations(path: &Path, rows: &[Registration]) {
    let date = |s: &str| parse_date(s).expect("test date");
    let batch = RecordBatch::try_from_iter(vec![
        ("person_id", strings(rows, |r| Some(r.person))),
        ("condition", strings(rows, |r| Some(r.condition))),
        ("severity", strings(rows, |r| r.severity)),
        (
            "primary",
            Arc::new(rows.iter().map(|r| r.primary).collect::<BooleanArray>()) as ArrayRef,
        ),
        (
            "approved_on",
            Arc::new(
                rows.iter()
                    .map(|r| Some(date(r.approved_on)))
                    .collect::<Date32Array>(),
            ) as ArrayRef,
        ),
        (
            "ended_on",
            Arc::new(
                rows.iter()
                    .map(|r| r.ended_on.map(date))
                    .collect::<Date32Array>(),
            ) as ArrayRef,
        ),
    ])
    .unwrap();
    write_parquet(path, &batch);
}

pub fn claims_batch(rows: &[Claim]) -> RecordBatch {
    RecordBatch::try_from_iter(vec![
        ("claim_id", strings(rows, |c| Some(c.id))),
        ("person_id", strings(rows, |c| Some(c.person))),
        ("region", strings(rows, |c| Some(c.region))),
        (
            "settled_at",
            Arc::new(
                rows.iter()
                    .map(|c| Some(millis(c.settled_at)))
                    .collect::<TimestampMillisecondArray>(),
            ) as ArrayRef,
        ),
        (
            "service_date",
            Arc::new(
                rows.iter()
                    .map(|c| c.service_date.map(|d| parse_date(d).unwrap()))
                    .collect::<Date32Array>(),
            ) as ArrayRef,
        ),
        ("institution_id", strings(rows, |c| Some(c.institution))),
        ("institution_level", strings(rows, |c| Some(c.level))),
        ("prescriber_level", strings(rows, |c| c.prescriber)),
        ("visit_type", strings(rows, |c| c.visit)),
        ("diagnosis", strings(rows, |c| Some(c.diagnosis))),
        ("total_amount", money(rows, |c| c.total)),
        ("in_scope_amount", money(rows, |c| c.in_scope)),
        ("drug_code", strings(rows, |c| c.drug)),
        (
            "days_supply",
            Arc::new(rows.iter().map(|c| c.days_supply).collect::<Int32Array>()) as ArrayRef,
        ),
        ("reverses_claim_id", strings(rows, |c| c.reverses)),
        ("referral", strings(rows, |c| c.referral)),
        ("medical_community_id", strings(rows, |c| c.community)),
    ])
    .unwrap()
}

pub fn write_claims(path: &Path, rows: &[Claim]) {
    write_parquet(path, &claims_batch(rows));
}

/// The repository's `policies/` directory.
pub fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// One settlement row, money in fen.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub claim_id: String,
    pub person_id: String,
    pub policy_id: Option<String>,
    pub benefit: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub eligible: i64,
    pub deductible: i64,
    pub ratio_bp: Option<i64>,
    pub fund: i64,
    pub copay: i64,
    pub over_cap: i64,
    pub self_funded: i64,
    pub cap_remaining: Option<i64>,
    pub critical_illness_base: i64,
    pub assistance_base: i64,
    pub critical_illness_paid: i64,
    pub assistance_paid: i64,
    pub patient_pays: i64,
    pub condition_reason: Option<String>,
    pub anomaly_codes: Vec<String>,
    pub risk_score: f32,
}

/// Reads a settlements file into rows keyed by claim id (the first row of a repeated id).
pub fn read_settlements(path: &Path) -> BTreeMap<String, Row> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut rows = BTreeMap::new();
    for batch in reader {
        let b = batch.unwrap();
        let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let d = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_primitive::<Decimal128Type>()
                .clone()
        };
        let (claim_id, person_id, policy_id, benefit, status, reason) = (
            s("claim_id"),
            s("person_id"),
            s("policy_id"),
            s("benefit"),
            s("status"),
            s("reason"),
        );
        let opt = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
        let (eligible, deductible, ratio, fund, copay, over_cap, self_funded, cap, ci, assist) = (
            d("eligible_amount"),
            d("deductible_amount"),
            d("ratio"),
            d("fund_paid"),
            d("copay_amount"),
            d("over_cap_amount"),
            d("self_funded_amount"),
            d("cap_remaining"),
            d("critical_illness_base"),
            d("assistance_base"),
        );
        let (ci_paid, assist_paid, patient) = (
            d("critical_illness_paid"),
            d("assistance_paid"),
            d("patient_pays"),
        );
        let condition_reason = s("condition_reason");
        let codes = b
            .column_by_name("anomaly_codes")
            .unwrap()
            .as_list::<i32>()
            .clone();
        let risk = b
            .column_by_name("risk_score")
            .unwrap()
            .as_primitive::<Float32Type>()
            .clone();
        for i in 0..b.num_rows() {
            let row = Row {
                claim_id: claim_id.value(i).to_string(),
                person_id: person_id.value(i).to_string(),
                policy_id: opt(&policy_id, i),
                benefit: opt(&benefit, i),
                status: status.value(i).to_string(),
                reason: opt(&reason, i),
                eligible: eligible.value(i) as i64,
                deductible: deductible.value(i) as i64,
                ratio_bp: ratio.is_valid(i).then(|| ratio.value(i) as i64),
                fund: fund.value(i) as i64,
                copay: copay.value(i) as i64,
                over_cap: over_cap.value(i) as i64,
                self_funded: self_funded.value(i) as i64,
                cap_remaining: cap.is_valid(i).then(|| cap.value(i) as i64),
                critical_illness_base: ci.value(i) as i64,
                assistance_base: assist.value(i) as i64,
                critical_illness_paid: ci_paid.value(i) as i64,
                assistance_paid: assist_paid.value(i) as i64,
                patient_pays: patient.value(i) as i64,
                condition_reason: opt(&condition_reason, i),
                anomaly_codes: {
                    let v = codes.value(i);
                    let v = v.as_string::<i32>();
                    (0..v.len()).map(|j| v.value(j).to_string()).collect()
                },
                risk_score: risk.value(i),
            };
            // A repeated claim id (rejected as a duplicate) keeps the first row under the id.
            rows.entry(row.claim_id.clone()).or_insert(row);
        }
    }
    rows
}

/// One row of `anomalies.parquet`.
#[derive(Clone, Debug, PartialEq)]
pub struct Flag {
    pub claim_id: String,
    pub rule: String,
    pub value_amount: Option<i64>,
    pub threshold_amount: Option<i64>,
    pub value_count: Option<i64>,
    pub threshold_count: Option<i64>,
    pub related_claim_id: Option<String>,
    /// The sentence a reader gets: the row's `detail` template filled from its columns.
    pub detail: String,
}

/// Reads `anomalies.parquet`.
pub fn read_anomalies(path: &Path) -> Vec<Flag> {
    let b = read_parquet(path);
    let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
    let d = |n: &str| {
        b.column_by_name(n)
            .unwrap()
            .as_primitive::<Decimal128Type>()
            .clone()
    };
    let c = |n: &str| {
        b.column_by_name(n)
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone()
    };
    let (claim, rule, related, detail) =
        (s("claim_id"), s("rule"), s("related_claim_id"), s("detail"));
    let (va, ta, vc, tc) = (
        d("value_amount"),
        d("threshold_amount"),
        c("value_count"),
        c("threshold_count"),
    );
    (0..b.num_rows())
        .map(|i| Flag {
            claim_id: claim.value(i).to_string(),
            rule: rule.value(i).to_string(),
            value_amount: va.is_valid(i).then(|| va.value(i) as i64),
            threshold_amount: ta.is_valid(i).then(|| ta.value(i) as i64),
            value_count: vc.is_valid(i).then(|| vc.value(i)),
            threshold_count: tc.is_valid(i).then(|| tc.value(i)),
            related_claim_id: related.is_valid(i).then(|| related.value(i).to_string()),
            detail: yibao::output::anomalies::render(detail.value(i), |name| {
                let column = b.column_by_name(name)?;
                column.is_valid(i).then(|| {
                    arrow::util::display::array_value_to_string(column, i)
                        .expect("a displayable column")
                })
            }),
        })
        .collect()
}

/// A scenario: inputs written to a temporary directory, settled with the repository policies.
pub struct Scenario {
    pub dir: tempfile::TempDir,
}

impl Scenario {
    pub fn new(persons: &[Person], registrations: &[Registration], claims: &[Claim]) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        write_persons(&dir.path().join("persons.parquet"), persons);
        write_registrations(&dir.path().join("registrations.parquet"), registrations);
        std::fs::create_dir_all(dir.path().join("claims")).unwrap();
        write_claims(&dir.path().join("claims/part-0.parquet"), claims);
        Scenario { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn args(&self, claims: &str, out: &str, state: Option<&str>) -> yibao::run::AdjudicateArgs {
        yibao::run::AdjudicateArgs {
            claims: self.path(claims),
            persons: self.path("persons.parquet"),
            registrations: self.path("registrations.parquet"),
            state: state.map(|l| self.path(l)),
            state_version: None,
            policies: policies_dir(),
            out: self.path(out),
            threads: Some(2),
            memory_limit: None,
            part_claims: None,
            compress_spill: None,
            spill_around_page_cache: None,
        }
    }

    /// Runs the binary's `adjudicate` on `claims` (a path under the scenario) with the
    /// scenario's registry and the policies of `policies`, writing to `out`; `extra` flags after.
    pub fn run_binary(
        &self,
        claims: &str,
        out: &str,
        policies: &Path,
        extra: &[&str],
    ) -> std::process::Output {
        let paths = [
            self.path(claims),
            self.path("persons.parquet"),
            self.path("registrations.parquet"),
            self.path(out),
        ];
        let mut args = vec![
            "adjudicate",
            "--claims",
            text(&paths[0]),
            "--persons",
            text(&paths[1]),
            "--registrations",
            text(&paths[2]),
            "--policies",
            text(policies),
            "--out",
            text(&paths[3]),
        ];
        args.extend_from_slice(extra);
        run_yibao(&args)
    }

    /// Settles `claims/` and returns the settlements by claim id.
    pub fn settle(&self) -> BTreeMap<String, Row> {
        yibao::run::adjudicate(&self.args("claims", "out", None)).expect("adjudicate");
        read_settlements(&self.path("out/settlements.parquet"))
    }
}

/// A month split: settles `m1`, then `m2` on the state `m1` left (outputs `o1`, `o2`), and both
/// in one run (`whole`). Returns the scenario and the settlements of `o2` and of `whole`.
pub fn split_and_whole(
    persons: &[Person],
    registrations: &[Registration],
    m1: &[Claim],
    m2: &[Claim],
) -> (Scenario, BTreeMap<String, Row>, BTreeMap<String, Row>) {
    let s = Scenario::new(persons, registrations, m1);
    std::fs::create_dir_all(s.path("m2")).unwrap();
    write_claims(&s.path("m2/part.parquet"), m2);
    std::fs::create_dir_all(s.path("all")).unwrap();
    write_claims(&s.path("all/part-1.parquet"), m1);
    write_claims(&s.path("all/part-2.parquet"), m2);
    yibao::run::adjudicate(&s.args("claims", "o1", Some("state"))).unwrap();
    yibao::run::adjudicate(&s.args("m2", "o2", Some("state"))).unwrap();
    yibao::run::adjudicate(&s.args("all", "whole", None)).unwrap();
    let split = read_settlements(&s.path("o2/settlements.parquet"));
    let whole = read_settlements(&s.path("whole/settlements.parquet"));
    (s, split, whole)
}

/// Day number of a date, for expectations.
pub fn day(y: i32, m: u32, d: u32) -> i32 {
    days_from_civil(y, m, d)
}

/// Asserts the contract's identities on a row.
pub fn assert_identities(r: &Row) {
    assert_eq!(
        r.eligible,
        r.deductible + r.fund + r.copay + r.over_cap,
        "eligible split of {}",
        r.claim_id
    );
    if matches!(r.status.as_str(), "paid" | "capped" | "reversal") {
        // Covered: total = eligible + self-funded, shared by the three layers and the person.
        assert_eq!(
            r.eligible + r.self_funded,
            r.fund + r.critical_illness_paid + r.assistance_paid + r.patient_pays,
            "three-layer identity of {}",
            r.claim_id
        );
        assert_eq!(r.critical_illness_base, r.eligible - r.fund);
        if r.assistance_base != 0 {
            assert_eq!(
                r.assistance_base,
                r.critical_illness_base - r.critical_illness_paid
            );
        }
        assert!(r.critical_illness_paid.abs() <= r.critical_illness_base.abs());
        assert!(r.assistance_paid.abs() <= r.assistance_base.abs());
    } else {
        assert_eq!(
            (r.critical_illness_paid, r.assistance_paid),
            (0, 0),
            "{}",
            r.claim_id
        );
    }
}

/// A clean generated month (`yibao generate`) of `persons` and `claims` in `dir`.
pub fn generate_month(dir: &Path, persons: u64, claims: u64, year: i32, month: u32, seed: u64) {
    yibao::generate::generate(&yibao::generate::GenerateConfig {
        persons,
        claims,
        year,
        month,
        seed,
        profile: yibao::generate::MonthProfile::Clean,
        out: dir.to_path_buf(),
    })
    .unwrap();
}

/// A generated month's claims (`dir/claims.parquet`) split at `day` 00:00 by settlement time
/// into `dir/h1/part.parquet` and `dir/h2/part.parquet` (rows with a null time go first);
/// returns the two halves.
pub fn split_month(dir: &Path, year: i32, month: u32, day: u32) -> (RecordBatch, RecordBatch) {
    let all = read_parquet(&dir.join("claims.parquet"));
    let settled = all
        .column_by_name("settled_at")
        .unwrap()
        .as_primitive::<TimestampMillisecondType>()
        .clone();
    let cut = days_from_civil(year, month, day) as i64 * MILLIS_PER_DAY;
    let first: BooleanArray = (0..all.num_rows())
        .map(|i| Some(settled.is_null(i) || settled.value(i) < cut))
        .collect();
    let second = arrow::compute::not(&first).unwrap();
    let halves = (
        arrow::compute::filter_record_batch(&all, &first).unwrap(),
        arrow::compute::filter_record_batch(&all, &second).unwrap(),
    );
    for (sub, half) in [("h1", &halves.0), ("h2", &halves.1)] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        write_parquet(&dir.join(sub).join("part.parquet"), half);
    }
    halves
}

/// (person, year, pool) → (fund, cost, deductible, claims), in fen.
pub type StatePools = BTreeMap<(String, i32, String), (i64, i64, i64, i32)>;

/// A state's year-to-date pools as its latest version holds them, read as any Parquet reader
/// would: the manifest names the pools files, oldest first, and the newest file holding a person
/// holds the person's whole state.
pub fn state_pools(dir: &Path) -> StatePools {
    let versions = yibao::state::store::versions(dir).unwrap();
    let manifest = yibao::state::store::read_manifest(dir, *versions.last().unwrap()).unwrap();
    let first_year = manifest.first_year();
    let mut holder: BTreeMap<String, usize> = BTreeMap::new();
    let mut pools = BTreeMap::new();
    for (n, piece) in manifest.pools.iter().enumerate().rev() {
        let b = read_parquet(&dir.join(&piece.file));
        let text = |name: &str| {
            arrow::compute::cast(b.column_by_name(name).unwrap(), &DataType::Utf8)
                .unwrap()
                .as_string::<i32>()
                .clone()
        };
        let (person, pool) = (text("person_id"), text("pool"));
        let int64 = |name: &str| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone()
        };
        let int32 = |name: &str| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<Int32Type>()
                .clone()
        };
        let (year, claims) = (int32("year"), int32("claims"));
        let (fund, cost, deductible) = (
            int64("fund_paid_fen"),
            int64("cost_fen"),
            int64("deductible_fen"),
        );
        for i in 0..b.num_rows() {
            let p = person.value(i).to_string();
            if *holder.entry(p.clone()).or_insert(n) != n || pool.is_null(i) {
                continue;
            }
            if year.value(i) < first_year {
                continue;
            }
            pools.insert(
                (p, year.value(i), pool.value(i).to_string()),
                (
                    fund.value(i),
                    cost.value(i),
                    deductible.value(i),
                    claims.value(i),
                ),
            );
        }
    }
    pools
}

/// Asserts that `split` (the settlements of several runs on one state, concatenated) and `whole`
/// (one run over the same claims) agree claim by claim, every column, except what
/// `amount_outlier` judges: it compares a claim with the other claims of its run, so a split
/// run may judge differently (documented). Returns how many rows carry a flag.
pub fn assert_agree_by_claim(split: &RecordBatch, whole: &RecordBatch) -> usize {
    assert_eq!(split.num_rows(), whole.num_rows());
    // Each run lists its own persons in key order: compare row by row in one order, by claim id
    // (a repeated id's copies by status, reason and settlement time).
    let by_claim = |b: &RecordBatch| -> RecordBatch {
        let sort = |name: &str| arrow::compute::SortColumn {
            values: b.column_by_name(name).unwrap().clone(),
            options: None,
        };
        let order = arrow::compute::lexsort_to_indices(
            &[
                sort("claim_id"),
                sort("status"),
                sort("reason"),
                sort("settled_at"),
            ],
            None,
        )
        .unwrap();
        arrow::compute::take_record_batch(b, &order).unwrap()
    };
    let (split, whole) = (by_claim(split), by_claim(whole));
    // Every column agrees, except what `amount_outlier` judges: it compares a claim with the
    // other claims of its batch, so a split batch may judge differently (documented).
    let codes = |b: &RecordBatch| -> Vec<Vec<String>> {
        let list = b.column_by_name("anomaly_codes").unwrap().as_list::<i32>();
        (0..b.num_rows())
            .map(|i| {
                let v = list.value(i);
                let v = v.as_string::<i32>();
                (0..v.len()).map(|j| v.value(j).to_string()).collect()
            })
            .collect()
    };
    let (split_codes, whole_codes) = (codes(&split), codes(&whole));
    let outlier = |c: &Vec<String>| c.iter().any(|x| x == "amount_outlier");
    for (i, field) in whole.schema().fields().iter().enumerate() {
        match field.name().as_str() {
            "anomaly_codes" => {
                let strip = |c: &Vec<Vec<String>>| -> Vec<Vec<String>> {
                    c.iter()
                        .map(|c| {
                            c.iter()
                                .filter(|x| *x != "amount_outlier")
                                .cloned()
                                .collect()
                        })
                        .collect()
                };
                assert_eq!(strip(&split_codes), strip(&whole_codes), "anomaly_codes");
            }
            "risk_score" => {
                let (a, b) = (
                    split.column(i).as_primitive::<Float32Type>(),
                    whole.column(i).as_primitive::<Float32Type>(),
                );
                for r in 0..a.len() {
                    if !outlier(&split_codes[r]) && !outlier(&whole_codes[r]) {
                        assert_eq!(a.value(r), b.value(r), "risk_score row {r}");
                    }
                }
            }
            name => assert_eq!(
                split.column(i).as_ref(),
                whole.column(i).as_ref(),
                "column {name}"
            ),
        }
    }
    whole_codes.iter().filter(|c| !c.is_empty()).count()
}

/// The sample inputs of `data-samples/`, as flags, for a command run from the repository's root.
pub const SAMPLE_INPUTS: [&str; 6] = [
    "--claims",
    "data-samples/claims.parquet",
    "--persons",
    "data-samples/persons.parquet",
    "--registrations",
    "data-samples/registrations.parquet",
];

/// Runs the built `yibao` binary from the repository's root (as the README does), returning what
/// it did.
pub fn run_yibao(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_yibao"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap()
}

/// [`run_yibao`], which must succeed; returns what it printed.
pub fn yibao_ok(args: &[&str]) -> String {
    let out = run_yibao(args);
    assert!(
        out.status.success(),
        "yibao {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A path as a command-line argument.
pub fn text(p: &Path) -> &str {
    p.to_str().unwrap()
}
