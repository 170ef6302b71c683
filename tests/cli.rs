//! Runs the built `yibao` binary as the README's quick start does, and checks every output file
//! against the contract's schema (`tests/contract-schema.json`, a copy of the shared contract).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Schema, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn yibao() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_yibao"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// `yibao adjudicate` on the sample's persons and registrations, with `claims`, writing to `out`.
fn adjudicate_sample(claims: &str, out: &Path, extra: &[&str]) -> Command {
    let mut c = yibao();
    c.args([
        "adjudicate",
        "--claims",
        claims,
        "--persons",
        "data-samples/persons.parquet",
        "--registrations",
        "data-samples/registrations.parquet",
    ])
    .args(extra)
    .arg("--out")
    .arg(out);
    c
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn schema_of(path: &Path) -> Schema {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    builder.schema().as_ref().clone()
}

fn rows_of(path: &Path) -> i64 {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    builder.metadata().file_metadata().num_rows()
}

/// Does `dt` satisfy a contract type name?
fn matches(contract: &str, dt: &DataType) -> bool {
    let utf8 = |d: &DataType| matches!(d, DataType::Utf8);
    match contract {
        "utf8" => utf8(dt) || matches!(dt, DataType::Dictionary(_, v) if utf8(v)),
        "date32" => dt == &DataType::Date32,
        "timestamp_ms" => matches!(dt, DataType::Timestamp(TimeUnit::Millisecond, _)),
        "decimal(18,2)" => dt == &DataType::Decimal128(18, 2),
        "decimal(5,4)" => dt == &DataType::Decimal128(5, 4),
        "int16" => dt == &DataType::Int16,
        "int32" => dt == &DataType::Int32,
        "bool" => dt == &DataType::Boolean,
        "float32" => dt == &DataType::Float32,
        "list<utf8>" => matches!(dt, DataType::List(f) if utf8(f.data_type())),
        other => panic!("unknown contract type {other}"),
    }
}

fn check(schema: &Schema, columns: &serde_json::Value, what: &str, strict_nulls: bool) {
    for column in columns.as_array().unwrap() {
        let name = column["name"].as_str().unwrap();
        let ty = column["type"].as_str().unwrap();
        let field = schema
            .field_with_name(name)
            .unwrap_or_else(|_| panic!("{what}: column {name} missing"));
        assert!(
            matches(ty, field.data_type()),
            "{what}.{name}: {} is not {ty}",
            field.data_type()
        );
        if strict_nulls && column["nullable"] == false {
            assert!(
                !field.is_nullable(),
                "{what}.{name} must be declared non-null"
            );
        }
    }
}

#[test]
fn quick_start_settles_the_sample_and_outputs_follow_the_contract() {
    let contract: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("tests/contract-schema.json")).unwrap())
            .unwrap();
    // The committed sample inputs follow the contract's input tables.
    for (file, table) in [
        ("data-samples/claims.parquet", "claims"),
        ("data-samples/persons.parquet", "persons"),
        ("data-samples/registrations.parquet", "registrations"),
    ] {
        // Inputs may declare required columns nullable: the sample plants bad rows with nulls,
        // which the engine must reject rather than refuse the file.
        check(
            &schema_of(&repo(file)),
            &contract["inputs"][table],
            table,
            false,
        );
    }

    let out = tempfile::tempdir().unwrap();
    let status = adjudicate_sample("data-samples/claims.parquet", out.path(), &[])
        .status()
        .unwrap();
    assert!(status.success());

    let settlements = out.path().join("settlements.parquet");
    check(
        &schema_of(&settlements),
        &contract["outputs"]["settlements"],
        "settlements",
        true,
    );
    // yibao's additions to the contract: the one-stop layers, typed like the contract's money.
    let schema = schema_of(&settlements);
    for added in ["critical_illness_paid", "assistance_paid", "patient_pays"] {
        let field = schema.field_with_name(added).unwrap();
        assert_eq!(
            (field.data_type(), field.is_nullable()),
            (&arrow::datatypes::DataType::Decimal128(18, 2), false),
            "{added}"
        );
    }
    assert!(schema.field_with_name("condition_reason").is_ok());
    let input_rows = rows_of(&repo("data-samples/claims.parquet"));
    let rejected = rows_of(&out.path().join("rejected.parquet"));
    let settled = rows_of(&settlements);
    assert!(rejected > 0, "the sample carries a few bad rows");
    assert!(settled <= input_rows && settled >= input_rows - rejected);
    let anomalies = rows_of(&out.path().join("anomalies.parquet"));

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["claims"], input_rows);
    assert_eq!(summary["outputs"]["settlements"], settled);
    assert_eq!(summary["outputs"]["rejected"], rejected);
    assert_eq!(summary["outputs"]["anomalies"], anomalies);
    let per_rule: i64 = summary["anomalies"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_i64().unwrap())
        .sum();
    assert_eq!(per_rule, anomalies as i64, "anomaly counts per rule");
    assert_eq!(summary["policies"].as_array().unwrap().len(), 5);
    let claimed: i64 = summary["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["claims"].as_i64().unwrap())
        .sum();
    assert_eq!(claimed, input_rows, "totals account for every input row");
}

#[test]
fn thread_count_does_not_change_the_output() {
    let out = tempfile::tempdir().unwrap();
    for threads in ["1", "2"] {
        let status = adjudicate_sample(
            "data-samples/claims.parquet",
            &out.path().join(threads),
            &["--threads", threads],
        )
        .status()
        .unwrap();
        assert!(status.success());
    }
    for file in [
        "settlements.parquet",
        "anomalies.parquet",
        "rejected.parquet",
    ] {
        let a = std::fs::read(out.path().join("1").join(file)).unwrap();
        let b = std::fs::read(out.path().join("2").join(file)).unwrap();
        assert!(a == b, "{file} differs");
    }
}

#[test]
fn a_state_is_advanced_once_per_input_and_inspected() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state_arg = state.to_str().unwrap();
    let run = || {
        adjudicate_sample(
            "data-samples/claims.parquet",
            &dir.path().join("out"),
            &["--state", state_arg],
        )
        .output()
        .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{first:?}");
    let settled = std::fs::read(dir.path().join("out/settlements.parquet")).unwrap();
    // The same input again: a no-op that says so and exits 0, leaving the outputs as they were.
    let again = run();
    assert!(again.status.success(), "{again:?}");
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(
        said.contains("absorbed these claims already (version 1)"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("out/settlements.parquet")).unwrap(),
        settled
    );
    let inspect = yibao()
        .args(["state", "inspect", state_arg])
        .output()
        .unwrap();
    assert!(inspect.status.success());
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(text.contains("versions: 1 (latest 1)"), "{text}");
    assert!(text.contains("data-samples/claims.parquet"), "{text}");
    // An older version is read-only: settling against it leaves the state at version 1.
    let read_only = adjudicate_sample(
        "data-samples/claims.parquet",
        &dir.path().join("replay"),
        &["--state", state_arg, "--state-version", "0"],
    )
    .output()
    .unwrap();
    assert!(read_only.status.success(), "{read_only:?}");
    assert_eq!(
        std::fs::read(dir.path().join("replay/settlements.parquet")).unwrap(),
        settled,
        "version 0 is the empty state the first run settled against"
    );
    assert_eq!(yibao::state::store::versions(&state).unwrap(), [1]);
}

#[test]
fn unreadable_input_exits_2_naming_the_file() {
    let out = tempfile::tempdir().unwrap();
    let output = adjudicate_sample("no-such-dir/claims.parquet", out.path(), &[])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no-such-dir/claims.parquet"), "{stderr}");
}

#[test]
fn policy_check_lists_assumptions_and_refuses_a_bad_policy() {
    let output = yibao().args(["policy", "check"]).output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("assumed number(s)"), "{stdout}");
    assert!(stdout.contains("rizhao-2020"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("policies/ezhou.toml"))
        .unwrap()
        .replace("primary = 0.60", "primary = 1.60");
    std::fs::write(dir.path().join("ezhou.toml"), text).unwrap();
    let output = yibao()
        .args(["policy", "check", "--policies"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ezhou.toml") && stderr.contains("ratio.primary"),
        "{stderr}"
    );
}

/// Runs `generate` with `args` into `dir/gen`, then `adjudicate` on it into `dir/out`; returns
/// `generate`'s standard output.
fn generate_and_adjudicate(dir: &Path, args: &[&str]) -> String {
    let gen = dir.join("gen");
    let output = yibao()
        .arg("generate")
        .args(args)
        .arg("--out")
        .arg(&gen)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = yibao()
        .arg("adjudicate")
        .arg("--claims")
        .arg(gen.join("claims.parquet"))
        .arg("--persons")
        .arg(gen.join("persons.parquet"))
        .arg("--registrations")
        .arg(gen.join("registrations.parquet"))
        .arg("--out")
        .arg(dir.join("out"))
        .status()
        .unwrap();
    assert!(status.success());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn generate_then_adjudicate_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let gen = dir.path().join("gen");
    let stdout = generate_and_adjudicate(
        dir.path(),
        &[
            "--persons",
            "500",
            "--claims",
            "2000",
            "--month",
            "2023-12",
            "--seed",
            "3",
        ],
    );
    assert!(stdout.contains("2000 claims"));
    assert_eq!(rows_of(&gen.join("claims.parquet")), 2000);
    let bad = yibao()
        .args([
            "generate",
            "--persons",
            "5",
            "--claims",
            "5",
            "--month",
            "2023-13",
            "--out",
        ])
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// `generate --profile skewed` writes a month where flags are the common case: adjudicated,
/// most claims carry at least one anomaly code and anomaly rows outnumber claims.
#[test]
fn a_skewed_month_is_mostly_flagged() {
    let dir = tempfile::tempdir().unwrap();
    generate_and_adjudicate(
        dir.path(),
        &[
            "--persons",
            "4000",
            "--claims",
            "20000",
            "--month",
            "2024-03",
            "--seed",
            "5",
            "--profile",
            "skewed",
        ],
    );
    let out = dir.path().join("out");
    let reader = ParquetRecordBatchReaderBuilder::try_new(
        File::open(out.join("settlements.parquet")).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let (mut claims, mut flagged) = (0usize, 0usize);
    for batch in reader {
        let batch = batch.unwrap();
        let status = batch.column_by_name("status").unwrap().as_string::<i32>();
        let codes = batch
            .column_by_name("anomaly_codes")
            .unwrap()
            .as_list::<i32>();
        for i in 0..batch.num_rows() {
            if !matches!(status.value(i), "reversal" | "rejected") {
                claims += 1;
                flagged += (!codes.value(i).is_empty()) as usize;
            }
        }
    }
    let flagged = flagged as f64 / claims as f64;
    let per_claim = rows_of(&out.join("anomalies.parquet")) as f64 / 20_000.0;
    // Measured on this month: 74% of claims flagged, 1.61 anomaly rows a claim.
    assert!(flagged > 0.6, "flagged claims {flagged}");
    assert!(per_claim > 1.2, "anomaly rows per claim {per_claim}");
}

/// `bench-floor` reads the sample's claims and writes a settlement-shaped file of every claim
/// row; it prints its measurement as JSON and removes the file unless asked to keep it.
#[test]
fn bench_floor_writes_a_settlement_shaped_file_of_every_claim() {
    let dir = tempfile::tempdir().unwrap();
    let run = |keep: bool| {
        let mut c = yibao();
        c.args([
            "bench-floor",
            "--claims",
            "data-samples/claims.parquet",
            "--out",
        ])
        .arg(dir.path())
        .args(["--threads", "2"]);
        if keep {
            c.arg("--keep");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let claims = rows_of(&repo("data-samples/claims.parquet"));
    let floor = run(false);
    assert_eq!(floor["claims"], claims);
    assert_eq!(floor["threads"], 2);
    assert!(floor["wall_seconds"].as_f64().unwrap() > 0.0);
    assert!(!dir.path().join("settlements.parquet").exists());

    run(true);
    let written = dir.path().join("settlements.parquet");
    assert_eq!(rows_of(&written), claims);
    let names: Vec<String> = schema_of(&written)
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let contract: Vec<String> = yibao::output::settlements::schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, contract);
}
