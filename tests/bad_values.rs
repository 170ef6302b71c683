//! Values past the documented limits (README "Limits"), through the binary: each bad row ends in
//! `rejected.parquet` with its reason and the run settles the rest; decimals of another scale
//! are rescaled when exact; a claims directory holding something that is not a claims file stops
//! the run naming it.

mod common;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, Float64Array, Int64Array};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use common::*;

const EZHOU: &str = "420700";

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// Replaces (or adds) column `name` of `batch`.
fn with_column(batch: &RecordBatch, name: &str, values: ArrayRef) -> RecordBatch {
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns = batch.columns().to_vec();
    let field = Field::new(name, values.data_type().clone(), true);
    match schema.index_of(name) {
        Ok(i) => {
            fields[i] = field;
            columns[i] = values;
        }
        Err(_) => {
            fields.push(field);
            columns.push(values);
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

fn adjudicate(s: &Scenario, claims: &str, out: &str) -> std::process::Output {
    s.run_binary(claims, out, &policies_dir(), &[])
}

/// `(claim_id, status, reason)` of every settlement row, in file order.
fn outcomes(s: &Scenario, out: &str) -> Vec<(String, String, Option<String>)> {
    let rows = read_parquet(&s.path(&format!("{out}/settlements.parquet")));
    let column = |name| {
        rows.column_by_name(name)
            .unwrap()
            .as_string::<i32>()
            .clone()
    };
    let (ids, status, reason) = (column("claim_id"), column("status"), column("reason"));
    (0..rows.num_rows())
        .map(|i| {
            (
                ids.value(i).to_string(),
                status.value(i).to_string(),
                reason.is_valid(i).then(|| reason.value(i).to_string()),
            )
        })
        .collect()
}

/// `reason → detail` of `rejected.parquet`, for the reasons that occur once.
fn rejected_details(s: &Scenario, out: &str) -> Vec<(String, String)> {
    let rows = read_parquet(&s.path(&format!("{out}/rejected.parquet")));
    let reason = rows.column_by_name("reason").unwrap().as_string::<i32>();
    let detail = rows.column_by_name("detail").unwrap().as_string::<i32>();
    (0..rows.num_rows())
        .map(|i| (reason.value(i).to_string(), detail.value(i).to_string()))
        .collect()
}

#[test]
fn values_past_the_limits_are_rejected_each_with_its_reason() {
    let good = |id| claim(id, "P1", "2024-03-01", "primary", "I10", "100.00");
    let long_id = leak("C".repeat(2_000));
    let claims = vec![
        good("C01"),
        // Past 10,000,000.00 yuan: beyond any real claim.
        claim("C02", "P1", "2024-03-01", "primary", "I10", "10000000.01"),
        // Exactly the limit settles.
        claim(
            "C03",
            "P1",
            "2024-03-01",
            "tertiary",
            "K35.8",
            "10000000.00",
        ),
        Claim {
            days_supply: Some(-3),
            ..good("C04")
        },
        Claim {
            days_supply: Some(100_000),
            ..good("C05")
        },
        // The prescription limits are audit rules below the bound: 200 days settles, flagged.
        Claim {
            days_supply: Some(200),
            ..good("C06")
        },
        good(long_id),
        Claim {
            drug: Some("XC08\nCAA001"),
            ..good("C08")
        },
        claim("C09", "P1", "1970-01-01", "primary", "I10", "100.00"),
        Claim {
            service_date: Some("2150-01-01"),
            ..good("C10")
        },
    ];
    let s = Scenario::new(
        &[person("P1", EZHOU, "resident")],
        &[registration("P1", "hypertension")],
        &claims,
    );
    let run = adjudicate(&s, "claims", "out");
    assert!(run.status.success(), "{}", text_of(&run.stderr));

    let rejected = |reason: &'static str| ("rejected", Some(reason));
    let mut expected = vec![
        ("C01", ("paid", None)),
        ("C02", rejected("amount_out_of_range")),
        // Exactly the limit settles; Ezhou's general outpatient cap binds it.
        ("C03", ("capped", Some("annual_cap_reached"))),
        ("C04", rejected("days_supply_out_of_range")),
        ("C05", rejected("days_supply_out_of_range")),
        ("C06", ("paid", None)),
        (long_id, rejected("invalid_id")),
        ("C08", rejected("invalid_id")),
        ("C09", rejected("time_out_of_range")),
        ("C10", rejected("time_out_of_range")),
    ];
    expected.sort();
    // Rows are listed by person, settled claims in time order, then the rejected in input
    // order: compared by claim id.
    let mut got = outcomes(&s, "out");
    got.sort();
    let got: Vec<(&str, (&str, Option<&str>))> = got
        .iter()
        .map(|(id, status, reason)| (id.as_str(), (status.as_str(), reason.as_deref())))
        .collect();
    assert_eq!(got, expected);

    let details = rejected_details(&s, "out");
    assert_eq!(details.len(), 7, "{details:?}");
    for want in [
        (
            "amount_out_of_range",
            "total_amount = 10000000.01 yuan (limit 10000000.00)",
        ),
        ("days_supply_out_of_range", "days_supply = -3 (0 to 366)"),
        (
            "days_supply_out_of_range",
            "days_supply = 100000 (0 to 366)",
        ),
        ("invalid_id", "claim_id is 2000 bytes long (limit 128)"),
        (
            "invalid_id",
            "drug_code holds a control character at byte 4",
        ),
        ("time_out_of_range", "settled_at on 1970-01-01"),
        ("time_out_of_range", "service_date = 2150-01-01"),
    ] {
        assert!(
            details.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {details:?}"
        );
    }
    // rejected.parquet holds the values as read.
    let rejected = read_parquet(&s.path("out/rejected.parquet"));
    let ids = rejected
        .column_by_name("claim_id")
        .unwrap()
        .as_string::<i32>();
    let row = |id: &str| (0..ids.len()).find(|&i| ids.value(i) == id).unwrap();
    let total = rejected
        .column_by_name("total_amount")
        .unwrap()
        .as_primitive::<arrow::datatypes::Decimal128Type>();
    assert_eq!(total.value(row("C02")), 1_000_000_001);
    let days = rejected
        .column_by_name("days_supply")
        .unwrap()
        .as_primitive::<arrow::datatypes::Int32Type>();
    assert_eq!(
        (days.value(row("C04")), days.value(row("C05"))),
        (-3, 100_000)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("out/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["claims"], 10);
    assert_eq!(summary["rejected"], 7);
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn decimals_of_another_scale_are_rescaled_when_exact_and_rejected_when_not() {
    let s = Scenario::new(
        &[person("P1", EZHOU, "resident")],
        &[registration("P1", "hypertension")],
        &[],
    );
    std::fs::remove_dir_all(s.path("claims")).unwrap();
    std::fs::create_dir(s.path("claims")).unwrap();
    let batch = claims_batch(&[
        claim("C1", "P1", "2024-03-01", "primary", "I10", "100.00"),
        claim("C2", "P1", "2024-03-02", "primary", "I10", "100.00"),
        claim("C3", "P1", "2024-03-03", "primary", "I10", "100.00"),
    ]);
    // Scale 3: 100.000 and 100.000 are whole fen; 100.005 is not. Scale 0: 100 yuan.
    let scale3 = |values: [i128; 3]| -> ArrayRef {
        Arc::new(
            Decimal128Array::from(values.to_vec())
                .with_precision_and_scale(20, 3)
                .unwrap(),
        )
    };
    let batch = with_column(&batch, "total_amount", scale3([100_000, 100_000, 100_005]));
    let batch = with_column(
        &batch,
        "in_scope_amount",
        Arc::new(
            Decimal128Array::from(vec![100i128, 100, 100])
                .with_precision_and_scale(10, 0)
                .unwrap(),
        ),
    );
    // days_supply written as Int64, one of them past any Int32: only that row is rejected.
    let batch = with_column(
        &batch,
        "days_supply",
        Arc::new(Int64Array::from(vec![Some(30), Some(1 << 40), None])),
    );
    write_parquet(&s.path("claims/part-0.parquet"), &batch);
    let run = adjudicate(&s, "claims", "out");
    assert!(run.status.success(), "{}", text_of(&run.stderr));
    let got = outcomes(&s, "out");
    assert_eq!(
        got,
        vec![
            ("C1".into(), "paid".into(), None),
            (
                "C2".into(),
                "rejected".into(),
                Some("days_supply_out_of_range".into())
            ),
            (
                "C3".into(),
                "rejected".into(),
                Some("unreadable_amount".into())
            ),
        ]
    );
    let details = rejected_details(&s, "out");
    assert_eq!(
        details[1].1,
        "total_amount = 100005 at scale 3: not a whole number of fen, or too large"
    );
    assert_eq!(details[0].1, "days_supply = 1099511627776 (0 to 366)");
    // C1 settled on 100.00 yuan: Ezhou's resident hypertension benefit pays 60% at grassroots.
    let rows = read_settlements(&s.path("out/settlements.parquet"));
    assert_eq!(rows["C1"].eligible, 10_000);
    assert_eq!(rows["C1"].self_funded, 0);
}

#[test]
fn money_written_as_a_float_stops_the_run_naming_file_and_column() {
    let s = Scenario::new(
        &[person("P1", EZHOU, "resident")],
        &[registration("P1", "hypertension")],
        &[claim("C1", "P1", "2024-03-01", "primary", "I10", "100.00")],
    );
    let batch = claims_batch(&[claim("C2", "P1", "2024-03-01", "primary", "I10", "1.00")]);
    let batch = with_column(
        &batch,
        "total_amount",
        Arc::new(Float64Array::from(vec![1.0])),
    );
    write_parquet(&s.path("claims/part-9.parquet"), &batch);
    let run = adjudicate(&s, "claims", "out");
    assert_eq!(run.status.code(), Some(2));
    let stderr = text_of(&run.stderr);
    assert!(
        stderr.contains("part-9.parquet") && stderr.contains("`total_amount`: has type Float64"),
        "{stderr}"
    );
    assert!(!s.path("out/summary.json").exists());
}

#[test]
fn nulls_in_any_key_reject_the_row_naming_the_column() {
    let s = Scenario::new(
        &[person("P1", EZHOU, "resident")],
        &[registration("P1", "hypertension")],
        &[],
    );
    let rows: Vec<Claim> = (0..7)
        .map(|i| {
            claim(
                leak(format!("C{i}")),
                "P1",
                "2024-03-01",
                "primary",
                "I10",
                "100.00",
            )
        })
        .collect();
    let mut batch = claims_batch(&rows);
    // Row i + 1 has key column KEYS[i] null; row 0 is whole.
    const KEYS: [&str; 5] = [
        "person_id",
        "region",
        "institution_id",
        "institution_level",
        "diagnosis",
    ];
    for (i, key) in KEYS.iter().enumerate() {
        let column = batch.column_by_name(key).unwrap().as_string::<i32>();
        let values: arrow::array::StringArray = (0..7)
            .map(|r| (r != i + 1).then(|| column.value(r)))
            .collect();
        batch = with_column(&batch, key, Arc::new(values));
    }
    let settled = batch.column_by_name("settled_at").unwrap().clone();
    let mut nulled = settled.to_data().into_builder();
    nulled = nulled.null_bit_buffer(Some(arrow::buffer::Buffer::from_slice_ref([0b1011_1111u8])));
    let settled_nulls = arrow::array::make_array(nulled.build().unwrap());
    // Row 6 loses its settlement time.
    batch = with_column(&batch, "settled_at", settled_nulls);
    assert_eq!(batch.column_by_name("settled_at").unwrap().null_count(), 1);
    write_parquet(&s.path("claims/part-0.parquet"), &batch);
    let run = adjudicate(&s, "claims", "out");
    assert!(run.status.success(), "{}", text_of(&run.stderr));
    let details = rejected_details(&s, "out");
    let mut got: Vec<&str> = details
        .iter()
        .map(|(reason, detail)| {
            assert_eq!(reason, "null_key");
            detail.as_str()
        })
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        vec![
            "diagnosis is null",
            "institution_id is null",
            "institution_level is null",
            "person_id is null",
            "region is null",
            "settled_at is null",
        ]
    );
    // A row with a null settlement key (person, region, time, level) cannot be a settlement
    // row: it is in rejected.parquet only. The others are also rejected settlement rows.
    let null_key = || Some(String::from("null_key"));
    assert_eq!(
        outcomes(&s, "out"),
        vec![
            ("C0".into(), "paid".into(), None),
            ("C3".into(), "rejected".into(), null_key()),
            ("C5".into(), "rejected".into(), null_key()),
        ]
    );
}

#[test]
fn a_claims_directory_holding_anything_but_claims_files_stops_the_run_naming_it() {
    let s = Scenario::new(
        &[person("P1", EZHOU, "resident")],
        &[registration("P1", "hypertension")],
        &[claim("C1", "P1", "2024-03-01", "primary", "I10", "100.00")],
    );
    // A dataset's bookkeeping is passed over.
    std::fs::write(s.path("claims/_SUCCESS"), b"").unwrap();
    std::fs::write(s.path("claims/.part-0.parquet.crc"), b"crc").unwrap();
    let run = adjudicate(&s, "claims", "out");
    assert!(run.status.success(), "{}", text_of(&run.stderr));
    assert_eq!(outcomes(&s, "out").len(), 1);

    for stray in ["notes.txt", "claims-03.parq", "month=04"] {
        let path = s.path("claims").join(stray);
        if stray.contains('=') {
            std::fs::create_dir(&path).unwrap();
        } else {
            std::fs::write(&path, b"not claims").unwrap();
        }
        let out = format!("out-{stray}");
        let run = adjudicate(&s, "claims", &out);
        assert_eq!(run.status.code(), Some(2), "{stray}");
        let stderr = text_of(&run.stderr);
        assert!(
            stderr.contains(&format!("{}: not a *.parquet file", text(&path))),
            "{stray}: {stderr}"
        );
        assert!(!s.path(&out).join("summary.json").exists());
        if stray.contains('=') {
            std::fs::remove_dir(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }

    // The extension is matched whatever its case: a file exported as DAY2.PARQUET is a claims
    // file like any other.
    write_claims(
        &s.path("claims/DAY2.PARQUET"),
        &[claim("C2", "P1", "2024-03-02", "primary", "I10", "50.00")],
    );
    let run = adjudicate(&s, "claims", "out-upper");
    assert!(run.status.success(), "{}", text_of(&run.stderr));
    assert_eq!(outcomes(&s, "out-upper").len(), 2);
    std::fs::remove_file(s.path("claims/DAY2.PARQUET")).unwrap();

    // A file named *.parquet that is not Parquet stops the run as a damaged file.
    std::fs::write(s.path("claims/notes.parquet"), b"hello").unwrap();
    let run = adjudicate(&s, "claims", "out-text");
    assert_eq!(run.status.code(), Some(2));
    assert!(text_of(&run.stderr).contains("notes.parquet"));
}

#[test]
fn a_person_past_the_registration_limit_stops_the_run_naming_the_file() {
    let claims = [claim(
        "C1",
        "PERSON-REG-LIMIT",
        "2024-03-01",
        "primary",
        "I10",
        "100.00",
    )];
    let holding = |n: usize| {
        let registrations: Vec<Registration> = (0..n)
            .map(|_| registration("PERSON-REG-LIMIT", "hypertension"))
            .collect();
        Scenario::new(
            &[person("PERSON-REG-LIMIT", EZHOU, "resident")],
            &registrations,
            &claims,
        )
    };
    let run = adjudicate(&holding(1024), "claims", "out");
    assert!(run.status.success(), "{}", text_of(&run.stderr));

    let s = holding(1025);
    let stderr = refused(
        &s,
        "registrations.parquet",
        "column `person_id`: a person holds 1025 registrations, past the limit of 1024",
    );
    assert!(
        !stderr.contains("PERSON-REG-LIMIT"),
        "no person id: {stderr}"
    );
}

/// Runs `s`, which must stop with exit 2 saying `message` of its file `file`; returns stderr.
fn refused(s: &Scenario, file: &str, message: &str) -> String {
    let run = adjudicate(s, "claims", "out");
    let stderr = text_of(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    let expected = format!("{}: {message}", text(&s.path(file)));
    assert!(stderr.contains(&expected), "{expected:?} in {stderr}");
    assert!(!s.path("out/summary.json").exists());
    stderr
}

#[test]
fn a_registration_dated_outside_1900_to_9999_stops_the_run_naming_file_column_and_row() {
    let claims = [claim("C1", "P1", "2024-03-01", "primary", "I10", "100.00")];
    // An open end written as 9999-12-31, as older systems do, is a date like any other.
    let open_end = Registration {
        ended_on: Some("9999-12-31"),
        ..registration("P1", "hypertension")
    };
    let s = Scenario::new(&[person("P1", EZHOU, "resident")], &[open_end], &claims);
    let run = adjudicate(&s, "claims", "out");
    assert!(run.status.success(), "{}", text_of(&run.stderr));
    assert_eq!(
        read_settlements(&s.path("out/settlements.parquet"))["C1"].status,
        "paid"
    );

    let wild = Registration {
        approved_on: "1899-12-31",
        ..registration("P1", "hypertension")
    };
    let s = Scenario::new(
        &[person("P1", EZHOU, "resident")],
        &[registration("P1", "diabetes"), wild],
        &claims,
    );
    refused(
        &s,
        "registrations.parquet",
        "column `approved_on`, row 1: 1899-12-31 is outside 1900-01-01 to 9999-12-31",
    );
}

#[test]
fn text_of_any_arrow_string_type_settles_as_plain_utf8_does() {
    let claims = [
        claim("C1", "P1", "2024-03-01", "primary", "I10", "100.00"),
        Claim {
            drug: None,
            ..claim("C2", "P1", "2024-03-02", "secondary", "I10", "80.00")
        },
    ];
    let s = Scenario::new(
        &[person("P1", EZHOU, "resident")],
        &[registration("P1", "hypertension")],
        &claims,
    );
    let run = adjudicate(&s, "claims", "plain");
    assert!(run.status.success(), "{}", text_of(&run.stderr));

    // The same rows with the region as LargeUtf8, the diagnosis and the level dictionary-encoded
    // with 8-bit keys, the drug code with 32-bit keys over LargeUtf8 values.
    let batch = claims_batch(&claims);
    let cast = |name: &str, to: arrow::datatypes::DataType| {
        arrow::compute::cast(batch.column_by_name(name).unwrap(), &to).unwrap()
    };
    use arrow::datatypes::DataType as T;
    let dict = |key: T, value: T| T::Dictionary(Box::new(key), Box::new(value));
    let mut other = batch.clone();
    for (name, to) in [
        ("region", T::LargeUtf8),
        ("diagnosis", dict(T::Int8, T::Utf8)),
        ("institution_level", dict(T::Int8, T::Utf8)),
        ("drug_code", dict(T::Int32, T::LargeUtf8)),
    ] {
        other = with_column(&other, name, cast(name, to));
    }
    std::fs::remove_file(s.path("claims/part-0.parquet")).unwrap();
    write_parquet(&s.path("claims/part-0.parquet"), &other);
    let run = adjudicate(&s, "claims", "typed");
    assert!(run.status.success(), "{}", text_of(&run.stderr));
    assert_eq!(
        read_settlements(&s.path("typed/settlements.parquet")),
        read_settlements(&s.path("plain/settlements.parquet"))
    );
    assert_eq!(
        outcomes(&s, "typed").len(),
        2,
        "both claims settled, none rejected"
    );
}
