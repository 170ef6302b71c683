//! Bad rows go to rejected.parquet with a reason and never stop the run; the state carries
//! year-to-date state so that a split run equals the single run.

mod common;

use std::sync::Arc;

use arrow::array::*;
use arrow::datatypes::*;
use common::*;

const EZHOU: &str = "420700";

#[test]
fn bad_rows_are_rejected_with_reasons_and_the_run_goes_on() {
    let p = person("P1", EZHOU, "resident");
    let good = claim("C1", "P1", "2024-03-01", "primary", "I10", "100.00");
    let claims = vec![
        good.clone(),
        Claim {
            in_scope: "120.00",
            ..claim("C2", "P1", "2024-03-02", "primary", "I10", "100.00")
        },
        Claim {
            total: "-5.00",
            in_scope: "-5.00",
            ..claim("C3", "P1", "2024-03-02", "primary", "I10", "0")
        },
        claim("C4", "P1", "2024-03-02", "quaternary", "I10", "100.00"),
        Claim {
            visit: Some("teleport"),
            ..claim("C5", "P1", "2024-03-02", "primary", "I10", "100.00")
        },
        // A repeat of C1's id: the first one settles, the repeat is rejected.
        claim("C1", "P1", "2024-03-03", "primary", "I10", "50.00"),
    ];
    let s = Scenario::new(&[p], &[registration("P1", "hypertension")], &claims);
    // A second file whose claim_id is null and whose amount is text that is not a number.
    let mut batch = claims_batch(&[claim("X", "P1", "2024-03-04", "primary", "I10", "1.00")]);
    let mut columns = batch.columns().to_vec();
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    columns[0] = Arc::new(StringArray::from(vec![None::<&str>]));
    fields[0] = Field::new("claim_id", DataType::Utf8, true);
    batch = RecordBatch::try_new(Arc::new(Schema::new(fields.clone())), columns.clone()).unwrap();
    write_parquet(&s.path("claims/part-1.parquet"), &batch);
    columns[0] = Arc::new(StringArray::from(vec!["C7"]));
    columns[10] = Arc::new(StringArray::from(vec!["12.3x"]));
    fields[10] = Field::new("total_amount", DataType::Utf8, true);
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    write_parquet(&s.path("claims/part-2.parquet"), &batch);

    let summary = yibao::run::adjudicate(&s.args("claims", "out", None))
        .unwrap()
        .summary();
    assert_eq!(summary.claims, 8);
    assert_eq!(summary.rejected, 7);

    // Settlements: every row with its keys, the bad ones marked rejected with their reason.
    let rows = read_parquet(&s.path("out/settlements.parquet"));
    assert_eq!(
        rows.num_rows(),
        7,
        "the null-id row cannot be a settlement row"
    );
    let ids = rows.column_by_name("claim_id").unwrap().as_string::<i32>();
    let status = rows.column_by_name("status").unwrap().as_string::<i32>();
    let reason = rows.column_by_name("reason").unwrap().as_string::<i32>();
    let got: Vec<(&str, &str, Option<&str>)> = (0..rows.num_rows())
        .map(|i| {
            (
                ids.value(i),
                status.value(i),
                reason.is_valid(i).then(|| reason.value(i)),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("C1", "paid", None),
            ("C2", "rejected", Some("in_scope_exceeds_total")),
            ("C3", "rejected", Some("negative_amount")),
            ("C4", "rejected", Some("unknown_level")),
            ("C5", "rejected", Some("unknown_visit_type")),
            ("C1", "rejected", Some("duplicate_claim_id")),
            ("C7", "rejected", Some("unreadable_amount")),
        ]
    );

    // rejected.parquet: every bad row, the null-id one included, with file and row.
    let rejected = read_parquet(&s.path("out/rejected.parquet"));
    assert_eq!(rejected.num_rows(), 7);
    let reasons = rejected
        .column_by_name("reason")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(reasons.value(5), "null_key");
    let detail = rejected
        .column_by_name("detail")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(detail.value(5), "claim_id is null");
    assert_eq!(detail.value(6), "total_amount = \"12.3x\"");
    let source_row = rejected
        .column_by_name("source_row")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(
        source_row.value(4),
        5,
        "the repeat of C1 is row 5 of part-0"
    );
    let source_file = rejected
        .column_by_name("source_file")
        .unwrap()
        .as_string::<i32>();
    assert!(source_file.value(6).ends_with("part-2.parquet"));
    let in_scope = rejected
        .column_by_name("in_scope_amount")
        .unwrap()
        .as_primitive::<Decimal128Type>();
    assert_eq!(in_scope.value(0), 12_000, "C2's in-scope amount as read");
}

#[test]
fn a_malformed_file_stops_the_run_naming_file_and_column() {
    let p = person("P1", EZHOU, "resident");
    let s = Scenario::new(
        &[p],
        &[],
        &[claim("C1", "P1", "2024-03-01", "primary", "I10", "1.00")],
    );
    let batch = RecordBatch::try_from_iter(vec![(
        "claim_id",
        Arc::new(StringArray::from(vec!["C9"])) as ArrayRef,
    )])
    .unwrap();
    write_parquet(&s.path("claims/part-9.parquet"), &batch);
    let err = yibao::run::adjudicate(&s.args("claims", "out", None)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("part-9.parquet") && text.contains("person_id"),
        "{text}"
    );
    assert_eq!(err.exit_code(), 2);
    assert!(
        !s.path("out/settlements.parquet").exists(),
        "no partial output"
    );
}

/// Month 1, then month 2 on the state month 1 left, equals one run over both months — including a
/// reversal in month 2 of a month-1 claim and a cap crossed in month 2.
#[test]
fn month_split_through_the_state_equals_the_single_run() {
    let persons = [
        person("P1", EZHOU, "resident"),
        Person {
            tier: Some(80),
            ..person("P2", EZHOU, "employee")
        },
    ];
    let regs = [
        registration("P1", "hypertension"),
        registration("P2", "diabetes"),
    ];
    let march = vec![
        claim("A1", "P1", "2024-03-01", "primary", "I10", "900.00"),
        claim("A2", "P1", "2024-03-20", "primary", "I10", "500.00"),
        claim("B1", "P2", "2024-03-05", "secondary", "E11", "1000.00"),
    ];
    let april = vec![
        Claim {
            total: "-500.00",
            in_scope: "-500.00",
            reverses: Some("A2"),
            ..claim("R1", "P1", "2024-04-02", "primary", "I10", "0")
        },
        claim("A3", "P1", "2024-04-03", "primary", "I10", "1000.00"),
        claim("B2", "P2", "2024-04-05", "secondary", "E11", "2000.00"),
        // A repeat of a March claim id is caught through the state's claim index.
        claim("B1", "P2", "2024-04-06", "secondary", "E11", "10.00"),
    ];
    let s = Scenario::new(&persons, &regs, &march);
    std::fs::create_dir_all(s.path("april")).unwrap();
    write_claims(&s.path("april/part-0.parquet"), &april);
    std::fs::create_dir_all(s.path("both")).unwrap();
    write_claims(&s.path("both/part-0.parquet"), &march);
    write_claims(&s.path("both/part-1.parquet"), &april);

    yibao::run::adjudicate(&s.args("claims", "m1", Some("state"))).unwrap();
    yibao::run::adjudicate(&s.args("april", "m2", Some("state"))).unwrap();
    yibao::run::adjudicate(&s.args("both", "all", None)).unwrap();
    let mut split = read_settlements(&s.path("m1/settlements.parquet"));
    let m2 = read_settlements(&s.path("m2/settlements.parquet"));
    // The repeated B1 of April is a different row from March's B1 (the maps keep the first row
    // of an id); compare it separately.
    let whole = read_settlements(&s.path("all/settlements.parquet"));
    for (id, row) in m2 {
        if id == "B1" {
            assert_eq!(row.reason.as_deref(), Some("duplicate_claim_id"));
            continue;
        }
        split.insert(id, row);
    }
    assert_eq!(split, whole);
    // A1 900 × 60% = 540; A2 500 would pay 300 > 460 left? no: 300 ≤ 460, paid, 160 left.
    // R1 gives 300 back (460 left). A3 1000 × 60% = 600 > 460: capped at 460.00.
    assert_eq!(whole["R1"].cap_remaining, Some(fen("460.00")));
    assert_eq!(
        (whole["A3"].status.as_str(), whole["A3"].fund),
        ("capped", fen("460.00"))
    );
    // P2: employee tier 80 at level 2: 75%. B1 750.00, B2 would pay 1,500 > 1,250 left.
    assert_eq!(whole["B2"].fund, fen("1250.00"));
}

/// A person idle for a month keeps exactly one copy of each year-to-date state, and a claim id
/// seen only on a reversal rejected in settlement still counts as seen in the next run.
#[test]
fn idle_months_and_settlement_rejects_carry_through_the_state() {
    let persons = [
        person("P1", EZHOU, "resident"),
        person("P2", EZHOU, "resident"),
    ];
    let regs = [
        registration("P1", "hypertension"),
        registration("P2", "hypertension"),
    ];
    let m1 = vec![
        claim("A1", "P1", "2024-03-01", "primary", "I10", "1000.00"),
        // A reversal of a claim nobody has: rejected in settlement, but its id is taken.
        Claim {
            total: "-10.00",
            in_scope: "-10.00",
            reverses: Some("NOPE"),
            ..claim("X1", "P2", "2024-03-02", "primary", "I10", "0")
        },
    ];
    let m2 = vec![claim("B1", "P2", "2024-04-01", "primary", "I10", "10.00")];
    let m3 = vec![
        // P1 was idle in April: March's 600.00 still counts, 400.00 left at 60%.
        claim("A2", "P1", "2024-05-01", "primary", "I10", "1000.00"),
        claim("X1", "P2", "2024-05-02", "primary", "I10", "100.00"),
    ];
    let s = Scenario::new(&persons, &regs, &m1);
    for (dir, rows) in [("m2", &m2), ("m3", &m3)] {
        std::fs::create_dir_all(s.path(dir)).unwrap();
        write_claims(&s.path(&format!("{dir}/part.parquet")), rows);
    }
    std::fs::create_dir_all(s.path("all")).unwrap();
    write_claims(&s.path("all/part-1.parquet"), &m1);
    write_claims(&s.path("all/part-2.parquet"), &m2);
    write_claims(&s.path("all/part-3.parquet"), &m3);

    yibao::run::adjudicate(&s.args("claims", "o1", Some("state"))).unwrap();
    yibao::run::adjudicate(&s.args("m2", "o2", Some("state"))).unwrap();
    let after_april = state_pools(&s.path("state"));
    yibao::run::adjudicate(&s.args("m3", "o3", Some("state"))).unwrap();
    yibao::run::adjudicate(&s.args("all", "whole", Some("whole-state"))).unwrap();

    // Each person's two-diseases pool, critical-illness pool (which took the copays) and
    // year-to-date total cost; P1, idle in April, keeps March's.
    assert_eq!(after_april.len(), 6, "{after_april:?}");
    // A1: 1,000 × 60% = 600.00 from the two-diseases cap of 1,000.
    assert_eq!(
        after_april[&(
            "P1".to_string(),
            2024,
            "resident:two_diseases.hypertension".to_string()
        )]
            .0,
        60_000
    );
    assert!(after_april.contains_key(&(
        "P1".to_string(),
        2024,
        "critical_illness:resident".to_string()
    )));
    assert_eq!(
        state_pools(&s.path("state")),
        state_pools(&s.path("whole-state"))
    );

    let whole = read_settlements(&s.path("whole/settlements.parquet"));
    let m3_rows = read_settlements(&s.path("o3/settlements.parquet"));
    assert_eq!(m3_rows["A2"], whole["A2"]);
    assert_eq!(
        (m3_rows["A2"].status.as_str(), m3_rows["A2"].fund),
        ("capped", fen("400.00"))
    );
    assert_eq!(m3_rows["X1"].reason.as_deref(), Some("duplicate_claim_id"));
}

/// Settles a claim of P1 into a new state, rewrites the state's pools file with `tamper`, then
/// settles an April claim of P1 on it: the error and the pools file's name.
fn april_on_tampered_pools(
    tamper: impl FnOnce(&RecordBatch) -> RecordBatch,
) -> (yibao::Error, String) {
    let s = Scenario::new(
        &[person("P1", EZHOU, "resident")],
        &[registration("P1", "hypertension")],
        &[claim("A1", "P1", "2024-03-01", "primary", "I10", "100.00")],
    );
    yibao::run::adjudicate(&s.args("claims", "o1", Some("state"))).unwrap();
    let state = s.path("state");
    let manifest = yibao::state::store::read_manifest(&state, 1).unwrap();
    let file = state.join(&manifest.pools[0].file);
    write_parquet(&file, &tamper(&read_parquet(&file)));
    std::fs::create_dir_all(s.path("april")).unwrap();
    write_claims(
        &s.path("april/part.parquet"),
        &[claim("A2", "P1", "2024-04-01", "primary", "I10", "100.00")],
    );
    let err = yibao::run::adjudicate(&s.args("april", "o2", Some("state"))).unwrap_err();
    // The failed run committed nothing.
    assert_eq!(yibao::state::store::versions(&state).unwrap(), [1]);
    (err, manifest.pools[0].file.clone())
}

/// `pools` with column `name` replaced by `values` (its field retyped to them).
fn with_column(pools: &RecordBatch, name: &str, values: arrow::array::ArrayRef) -> RecordBatch {
    let i = pools.schema().index_of(name).unwrap();
    let mut columns = pools.columns().to_vec();
    let mut fields: Vec<arrow::datatypes::Field> = pools
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields[i] = fields[i].clone().with_data_type(values.data_type().clone());
    columns[i] = values;
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns).unwrap()
}

#[test]
fn a_state_naming_a_pool_the_policies_do_not_have_stops_the_run() {
    // Every pool renamed, as a policy edit that renamed a benefit would leave it.
    let (err, file) = april_on_tampered_pools(|pools| {
        let renamed = (0..pools.num_rows()).map(|_| "resident:renamed");
        with_column(
            pools,
            "pool",
            Arc::new(arrow::array::StringArray::from_iter_values(renamed)),
        )
    });
    let message = err.to_string();
    assert!(
        message.contains("pool `resident:renamed` is not in the current policies")
            && message.contains(&file)
            && message.contains("column `pool`"),
        "{message}"
    );
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn a_state_holding_another_person_under_a_persons_key_stops_the_run() {
    // What a 64-bit collision of person keys would leave: P1's key on another person's rows.
    let (err, file) = april_on_tampered_pools(|pools| {
        let other = (0..pools.num_rows()).map(|_| yibao::state::person_check("P2") as i64);
        with_column(
            pools,
            "person_check",
            Arc::new(arrow::array::Int64Array::from_iter_values(other)),
        )
    });
    let message = err.to_string();
    assert!(
        message.contains("key collision")
            && message.contains(&file)
            && message.contains("column `person_check`")
            && !message.contains("P1"),
        "{message}"
    );
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn a_state_pool_no_settlement_could_leave_stops_the_run() {
    // A pool paid a negative amount: what a reversal giving back more than its claim took would
    // leave, or a hand edit.
    let (err, file) = april_on_tampered_pools(|pools| {
        let negative = (0..pools.num_rows()).map(|_| -1);
        with_column(
            pools,
            "fund_paid_fen",
            Arc::new(arrow::array::Int64Array::from_iter_values(negative)),
        )
    });
    let message = err.to_string();
    assert!(
        message.contains(&file)
            && message.contains("row 0")
            && message.contains("the amount paid (fund_paid_fen) is negative"),
        "{message}"
    );
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn a_reversal_that_would_leave_a_pool_negative_stops_the_run_as_an_internal_error() {
    // The state's pools say nothing was paid, its claim index that A1 was: the refund's give-back
    // would leave the pool negative. Each file passes its own checks; together they are a
    // state no run could leave, and the run stops before it writes or commits anything.
    let s = Scenario::new(
        &[person("PX-NEGATIVE", EZHOU, "resident")],
        &[registration("PX-NEGATIVE", "hypertension")],
        &[claim(
            "A1",
            "PX-NEGATIVE",
            "2024-03-01",
            "primary",
            "I10",
            "1000.00",
        )],
    );
    yibao::run::adjudicate(&s.args("claims", "o1", Some("state"))).unwrap();
    let state = s.path("state");
    let manifest = yibao::state::store::read_manifest(&state, 1).unwrap();
    let file = state.join(&manifest.pools[0].file);
    let pools = read_parquet(&file);
    let i = pools.schema().index_of("fund_paid_fen").unwrap();
    let mut columns = pools.columns().to_vec();
    columns[i] = Arc::new(arrow::array::Int64Array::from_iter_values(
        (0..pools.num_rows()).map(|_| 0),
    ));
    write_parquet(
        &file,
        &RecordBatch::try_new(pools.schema(), columns).unwrap(),
    );
    std::fs::create_dir_all(s.path("april")).unwrap();
    write_claims(
        &s.path("april/part.parquet"),
        &[Claim {
            reverses: Some("A1"),
            ..claim(
                "R1",
                "PX-NEGATIVE",
                "2024-04-01",
                "primary",
                "I10",
                "-1000.00",
            )
        }],
    );
    let run = s.run_binary("april", "o2", &policies_dir(), &["--state", text(&state)]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("settlement broke a pool: the amount paid (fund_paid_fen) is negative")
            && stderr.contains("pool `resident:")
            && stderr.contains("yibao: internal error"),
        "{stderr}"
    );
    assert!(!stderr.contains("PX-NEGATIVE"), "no person id: {stderr}");
    assert!(!s.path("o2/summary.json").exists());
    assert!(!s.path("o2/settlements.parquet").exists());
    assert_eq!(yibao::state::store::versions(&state).unwrap(), [1]);
}
