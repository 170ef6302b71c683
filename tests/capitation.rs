//! `yibao capitation`, run through the binary: Jin'an's year-end accounts of three member units
//! worked out by hand — a surplus kept at the unit's score and split 2:6:2, an overspend of a
//! unit ranked in the top six taken over by the medical community, and one of a unit ranked
//! ninth borne 4:5:1 — from a hand-written year of settlements.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Decimal128Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use common::*;

/// (claim id, person, settled on, benefit, fund paid, diagnosis, the claim a refund reverses)
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

/// The settlement columns the accounts read, and a claims file of ids and diagnoses.
fn write_year(dir: &Path, rows: &[Row]) {
    let money = |f: &dyn Fn(&Row) -> i64| -> ArrayRef {
        Arc::new(
            Decimal128Array::from_iter_values(rows.iter().map(|r| f(r) as i128))
                .with_precision_and_scale(18, 2)
                .unwrap(),
        )
    };
    let texts = |f: &dyn Fn(&Row) -> &str| -> ArrayRef {
        Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>())
    };
    let settled_at =
        TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| {
            yibao::domain::parse_date(r.2).unwrap() as i64 * yibao::domain::MILLIS_PER_DAY
        }));
    let decimal = || DataType::Decimal128(18, 2);
    let schema = Arc::new(Schema::new(vec![
        Field::new("claim_id", DataType::Utf8, false),
        Field::new("person_id", DataType::Utf8, false),
        Field::new(
            "settled_at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("institution_level", DataType::Utf8, false),
        Field::new("benefit", DataType::Utf8, true),
        Field::new("fund_paid", decimal(), false),
        Field::new("critical_illness_paid", decimal(), false),
        Field::new("assistance_paid", decimal(), false),
        Field::new("patient_pays", decimal(), false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            texts(&|r| r.0),
            texts(&|r| r.1),
            Arc::new(settled_at),
            texts(&|_| "secondary"),
            texts(&|r| r.3),
            money(&|r| fen(r.4)),
            money(&|_| 0),
            money(&|_| 0),
            money(&|_| 0),
        ],
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("year")).unwrap();
    write_parquet(&dir.join("year/settlements.parquet"), &batch);
    let claims = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("claim_id", DataType::Utf8, false),
            Field::new("diagnosis", DataType::Utf8, false),
            Field::new("reverses_claim_id", DataType::Utf8, true),
        ])),
        vec![
            texts(&|r| r.0),
            texts(&|r| r.5),
            Arc::new(rows.iter().map(|r| r.6).collect::<StringArray>()),
        ],
    )
    .unwrap();
    write_parquet(&dir.join("claims.parquet"), &claims);
}

struct Unit {
    budget: String,
    spend: String,
    surplus: String,
    overspend: String,
    kept: String,
    surplus_to_community: String,
    overspend_to_community: String,
    levels: [String; 3],
    top_ranked: String,
    pilot_persons: String,
}

fn accounts(out: &Path) -> Vec<Unit> {
    let mut reader = csv::Reader::from_path(out.join("capitation.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let get = |name: &str| {
                let at = headers.iter().position(|h| h == name).unwrap();
                r[at].to_string()
            };
            Unit {
                budget: get("budget"),
                spend: get("spend"),
                surplus: get("surplus"),
                overspend: get("overspend"),
                kept: get("kept_surplus"),
                surplus_to_community: get("surplus_to_community"),
                overspend_to_community: get("overspend_to_community"),
                levels: [
                    get("county_share"),
                    get("township_share"),
                    get("village_share"),
                ],
                top_ranked: get("top_ranked"),
                pilot_persons: get("pilot_persons"),
            }
        })
        .collect()
}

#[test]
fn year_end_accounts_follow_the_2_6_2_4_5_1_and_top_six_rules() {
    let jinan = |id| person(id, "341502", "resident");
    let mid_year = Registration {
        approved_on: "2023-07-01",
        ..registration("P4", "copd")
    };
    let s = Scenario::new(
        &[
            jinan("P1"),
            jinan("P2"),
            jinan("P3"),
            jinan("P4"),
            jinan("P5"),
            person("E1", "341502", "employee"),
        ],
        &[
            registration("P1", "hypertension"),
            registration("P2", "diabetes"),
            registration("P3", "stroke"),
            mid_year,
            registration("E1", "hypertension"),
        ],
        &[],
    );
    let d = s.dir.path();
    write_year(
        d,
        &[
            // U1: P1's stay counts; general outpatient, two-diseases outpatient and last year's
            // stay do not. P5 (no pilot registration) and E1 (an employee) are not charged.
            (
                "A1",
                "P1",
                "2023-05-10",
                "inpatient",
                "1000.00",
                "I63.9",
                None,
            ),
            (
                "A2",
                "P1",
                "2023-06-01",
                "general_outpatient",
                "50.00",
                "J06.9",
                None,
            ),
            (
                "A3",
                "P1",
                "2023-06-02",
                "two_diseases.hypertension",
                "30.00",
                "I10",
                None,
            ),
            ("A4", "P1", "2022-12-31", "inpatient", "500.00", "I10", None),
            ("A5", "P5", "2023-03-01", "inpatient", "400.00", "I10", None),
            ("A6", "E1", "2023-03-01", "inpatient", "300.00", "I10", None),
            // U2: 1500.00 + 2000.00 against 3070.00.
            (
                "B1",
                "P2",
                "2023-02-01",
                "chronic_special.diabetes",
                "1500.00",
                "E11",
                None,
            ),
            (
                "B2",
                "P2",
                "2023-08-01",
                "inpatient",
                "2000.00",
                "E11",
                None,
            ),
            // U3: 2500.00 + 1000.00, and an accidental injury stay of 800.00.
            (
                "C1",
                "P3",
                "2023-04-01",
                "inpatient",
                "2500.00",
                "I63",
                None,
            ),
            (
                "C2",
                "P4",
                "2023-09-01",
                "inpatient",
                "1000.00",
                "J44",
                None,
            ),
            (
                "C3",
                "P4",
                "2023-10-01",
                "inpatient",
                "800.00",
                "S72.0",
                None,
            ),
            // Another injury stay of P3, refunded: the refund goes out with its original, whatever
            // diagnosis it carries.
            (
                "C4",
                "P3",
                "2023-11-01",
                "inpatient",
                "600.00",
                "S82.1",
                None,
            ),
            (
                "C5",
                "P3",
                "2023-11-20",
                "inpatient",
                "-600.00",
                "Z09",
                Some("C4"),
            ),
        ],
    );
    std::fs::write(
        d.join("units.csv"),
        "unit_id,name,medical_community_id,level,enrolled_persons,assessment_score,assessment_rank\n\
         U1,城东卫生院,MC1,township,1,90,2\n\
         U2,城西卫生院,MC1,township,1,85.5,3\n\
         U3,三里桥卫生院,MC2,township,1,70,9\n",
    )
    .unwrap();
    std::fs::write(
        d.join("enrolment.csv"),
        "person_id,unit_id\nP1,U1\nP5,U1\nE1,U1\nP2,U2\nP3,U3\nP4,U3\n",
    )
    .unwrap();
    let run = |out: &str, claims: bool| {
        let (persons, registrations) = (s.path("persons.parquet"), s.path("registrations.parquet"));
        let (year, units, enrolment, claims_file, out) = (
            d.join("year"),
            d.join("units.csv"),
            d.join("enrolment.csv"),
            d.join("claims.parquet"),
            d.join(out),
        );
        let mut args = vec![
            "capitation",
            "--year",
            "2023",
            "--settlements",
            text(&year),
            "--persons",
            text(&persons),
            "--registrations",
            text(&registrations),
            "--units",
            text(&units),
            "--enrolment",
            text(&enrolment),
            "--out",
            text(&out),
        ];
        if claims {
            args.extend(["--claims", text(&claims_file)]);
        }
        let printed = yibao_ok(&args);
        (accounts(&out), printed)
    };

    let (units, printed) = run("with-claims", true);
    assert!(
        printed.contains("2 enrolled persons outside the pilot population"),
        "{printed}"
    );
    // U1: budget 3070.00, spend 1000.00: surplus 2070.00, 90% kept = 1863.00 split 2:6:2
    // (372.60, 1117.80, 372.60), 207.00 to the medical community.
    let u1 = &units[0];
    assert_eq!(
        (u1.budget.as_str(), u1.spend.as_str()),
        ("3070.00", "1000.00")
    );
    assert_eq!(
        (u1.surplus.as_str(), u1.kept.as_str()),
        ("2070.00", "1863.00")
    );
    assert_eq!(u1.surplus_to_community, "207.00");
    assert_eq!(u1.levels, ["372.60", "1117.80", "372.60"]);
    assert_eq!(u1.pilot_persons, "1");
    // U2: spend 3500.00, overspend 430.00; ranked 3rd, in the top six: the medical community
    // takes it over, no level bears any.
    let u2 = &units[1];
    assert_eq!(
        (u2.spend.as_str(), u2.overspend.as_str()),
        ("3500.00", "430.00")
    );
    assert_eq!(u2.overspend_to_community, "430.00");
    assert_eq!(u2.levels, ["0.00", "0.00", "0.00"]);
    assert_eq!(u2.top_ranked, "true");
    // U3: the injury stays left out (the claims say S72.0, S82.1) with the refund of the
    // second: spend 3500.00 against a budget of
    // one person (P4 registered mid-year raises nothing), overspend 430.00; ranked 9th: borne
    // 4:5:1, county 172.00, township 215.00, village 43.00.
    let u3 = &units[2];
    assert_eq!(
        (u3.budget.as_str(), u3.spend.as_str()),
        ("3070.00", "3500.00")
    );
    assert_eq!(u3.overspend, "430.00");
    assert_eq!(u3.overspend_to_community, "0.00");
    assert_eq!(u3.levels, ["-172.00", "-215.00", "-43.00"]);
    assert_eq!(
        (u3.top_ranked.as_str(), u3.pilot_persons.as_str()),
        ("false", "2")
    );
    assert!(
        printed.contains("medical community MC1: overall account -223.00"),
        "{printed}"
    );

    // Without the claims the injury stays cannot be told apart (the refunded one nets out):
    // U3's overspend is 1230.00, borne 492.00, 615.00, 123.00.
    let (units, printed) = run("without-claims", false);
    assert!(
        printed.contains("diagnoses not applied without --claims"),
        "{printed}"
    );
    assert_eq!(units[2].overspend, "1230.00");
    assert_eq!(units[2].levels, ["-492.00", "-615.00", "-123.00"]);
    assert_eq!(units[2].surplus, "0.00");
}
