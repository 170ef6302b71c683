//! Personal data and the audit trail, through the binary: every file a run writes is readable by
//! its owner only unless `--mode` widens it; no person id reaches the logs or `summary.json`,
//! even on bad data; `summary.json` and the state's run record name the engine, the command
//! line and the content hash of every input and policy file.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use common::*;

/// Every file and directory under `dir`, with its permission bits.
fn modes(dir: &Path) -> Vec<(String, bool, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let name = entry.path().display().to_string();
        out.push((name, meta.is_dir(), meta.permissions().mode() & 0o777));
        if meta.is_dir() {
            out.extend(modes(&entry.path()));
        }
    }
    out
}

fn sample_run(dir: &Path, mode: Option<&str>) -> Output {
    let (out, state) = (dir.join("out"), dir.join("state"));
    let mut args = [&["adjudicate"][..], &SAMPLE_INPUTS].concat();
    args.extend(["--state", text(&state), "--out", text(&out)]);
    if let Some(m) = mode {
        args.extend(["--mode", m]);
    }
    let run = run_yibao(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    run
}

#[test]
fn outputs_and_state_are_readable_by_their_owner_only_unless_widened() {
    let dir = tempfile::tempdir().unwrap();
    sample_run(dir.path(), None);
    let written = modes(dir.path());
    assert!(written.len() >= 10, "outputs and state files: {written:?}");
    for (name, is_dir, mode) in &written {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{name}: {mode:o}");
    }

    let wider = tempfile::tempdir().unwrap();
    sample_run(wider.path(), Some("0640"));
    for (name, is_dir, mode) in modes(wider.path()) {
        let want = if is_dir { 0o750 } else { 0o640 };
        assert_eq!(mode, want, "{name}: {mode:o}");
    }
}

#[test]
fn no_person_id_reaches_the_logs_or_the_summary_of_a_run_over_bad_data() {
    // Bad rows of every kind the sample scenario helpers make, and a registry repeating a person.
    let mut bad = claim(
        "C1",
        "ZHANGSAN-110101",
        "2024-03-04",
        "primary",
        "I10",
        "-5.00",
    );
    bad.region = "420700";
    let s = Scenario::new(
        &[
            person("ZHANGSAN-110101", "420700", "resident"),
            person("LISI-440301", "420700", "sideways"),
        ],
        &[registration("WANGWU-310101", "hypertension")],
        &[
            bad,
            claim(
                "C2",
                "NOBODY-999999",
                "2024-03-04",
                "primary",
                "I10",
                "10.00",
            ),
            Claim {
                reverses: Some("C404"),
                ..claim(
                    "C3",
                    "LISI-440301",
                    "2024-03-05",
                    "primary",
                    "I10",
                    "-10.00",
                )
            },
            claim(
                "C1",
                "ZHANGSAN-110101",
                "2024-03-06",
                "tertiary",
                "E11",
                "20.00",
            ),
        ],
    );
    let ids = [
        "ZHANGSAN-110101",
        "LISI-440301",
        "WANGWU-310101",
        "NOBODY-999999",
    ];
    let registrations = s.path("registrations.parquet");
    let out = s.path("out");
    let run = s.run_binary("claims", "out", &policies_dir(), &[]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The run did meet them: the rejected rows are there, with their persons.
    let rejected = read_parquet(&out.join("rejected.parquet"));
    assert!(rejected.num_rows() >= 2);
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    // The registry's bad rows are counted, not named: a person of an unknown scheme, and a
    // registration of a person the registry does not have.
    let counted: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let registry = &counted["inputs"]["registry"];
    assert_eq!(registry["persons_invalid"], 1);
    assert_eq!(registry["registrations_unknown_person"], 1);

    // A registry repeating a person stops the run (exit 2), naming rows, not ids.
    let twice = s.path("twice.parquet");
    write_persons(
        &twice,
        &[
            person("ZHANGSAN-110101", "420700", "resident"),
            person("ZHANGSAN-110101", "420700", "resident"),
        ],
    );
    let stopped = run_yibao(&[
        "adjudicate",
        "--claims",
        text(&s.path("claims")),
        "--persons",
        text(&twice),
        "--registrations",
        text(&registrations),
        "--out",
        text(&s.path("out-2")),
    ]);
    assert_eq!(stopped.status.code(), Some(2));
    let message = String::from_utf8_lossy(&stopped.stderr);
    assert!(
        message.contains("row 1") && message.contains("row 0"),
        "{message}"
    );

    let logs = [
        String::from_utf8_lossy(&run.stdout).into_owned(),
        String::from_utf8_lossy(&run.stderr).into_owned(),
        summary,
        String::from_utf8_lossy(&stopped.stdout).into_owned(),
        message.into_owned(),
    ];
    for log in &logs {
        for id in ids {
            assert!(!log.contains(id), "a person id in a log: {log}");
        }
    }
}

#[test]
fn the_summary_and_the_state_name_the_command_line_and_hash_every_input_and_policy() {
    let dir = tempfile::tempdir().unwrap();
    sample_run(dir.path(), None);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/summary.json")).unwrap())
            .unwrap();
    let trail = &summary["audit_trail"];
    assert_eq!(
        trail["engine"],
        format!("yibao {}", env!("CARGO_PKG_VERSION"))
    );
    let command: Vec<&str> = trail["command_line"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        command[1..4],
        ["adjudicate", "--claims", "data-samples/claims.parquet"]
    );
    let files = trail["files"].as_array().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (role, path) in [
        ("claims", "data-samples/claims.parquet"),
        ("persons", "data-samples/persons.parquet"),
        ("registrations", "data-samples/registrations.parquet"),
        ("policy", "policies/jinan.toml"),
        ("policy", "policies/weihai.toml"),
    ] {
        let file = files
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("{path} in the trail"));
        assert_eq!(file["role"], role);
        let bytes = std::fs::read(root.join(path)).unwrap();
        assert_eq!(
            file["blake3"],
            blake3::hash(&bytes).to_hex().to_string(),
            "{path}"
        );
        assert_eq!(file["bytes"], bytes.len() as u64);
    }
    assert_eq!(
        files.len(),
        3 + 5,
        "claims, registry and the five policy files"
    );
    // The state's record of the run holds the same trail.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("state/manifest-0000000001.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(&manifest["runs"][0]["audit_trail"], trail);
}
