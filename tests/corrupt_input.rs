//! Damaged input files, through the binary, seed by seed: the sample claims file, the persons
//! registry and the registrations with a few bits flipped, cut short or emptied, and a policy
//! file with bytes flipped, cut short, lines deleted or emptied — one input damaged at a time,
//! the others whole. Every run ends in exit 0 with every claim row accounted for (settled or
//! rejected) or in exit 2 naming the damaged file — never a panic, an internal error (exit 1), a
//! hang, a lost row or partial outputs. `yibao policy check` on a damaged policy directory ends
//! the same way, and accepts exactly the directories a run accepts.

mod common;

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::text;

/// A small deterministic generator (xorshift64*): the same damage for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn repository(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// What a run settles: the samples and the repository's policies, or a damaged copy of one.
#[derive(Clone)]
struct Inputs {
    claims: PathBuf,
    persons: PathBuf,
    registrations: PathBuf,
    policies: PathBuf,
}

impl Inputs {
    fn samples() -> Inputs {
        Inputs {
            claims: repository("data-samples/claims.parquet"),
            persons: repository("data-samples/persons.parquet"),
            registrations: repository("data-samples/registrations.parquet"),
            policies: repository("policies"),
        }
    }
}

/// A run on the samples takes well under a second; one still going after this long hangs (a
/// damaged policy could make a loop never end), and the test says so instead of waiting forever.
const HANG: Duration = Duration::from_secs(30);

/// Runs the binary from the repository's root, killed past [`HANG`]. Its output goes to files in
/// `dir`: a pipe nobody reads while the run is polled could fill up and stall it.
fn run_bounded(args: &[&OsStr], dir: &Path, what: &str) -> Output {
    let (stdout, stderr) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_yibao"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).unwrap())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{what}: still running after {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: std::fs::read(stdout).unwrap(),
        stderr: std::fs::read(stderr).unwrap(),
    }
}

/// Asserts that the last run in `dir` ([`run_bounded`]) said `expected` on stderr: the damage is
/// refused for what it is, not for some other reason.
fn assert_last_message(dir: &Path, expected: &str) {
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap();
    assert!(stderr.contains(expected), "{expected:?} in {stderr}");
}

/// Asserts what any command on a damaged file `damaged` ends in: exit 0, or exit 2 with the file
/// named; never exit 1 or a panic. Returns the exit code.
fn assert_outcome(run: &Output, damaged: &Path, what: &str) -> i32 {
    let stderr = String::from_utf8_lossy(&run.stderr);
    let code = run.status.code();
    assert!(
        matches!(code, Some(0) | Some(2)),
        "{what}: exit {code:?} (a panic or an internal error): {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "{what}: a panic reached the log: {stderr}"
    );
    if code == Some(2) {
        assert!(
            stderr.contains(text(damaged)),
            "{what}: the message names the file: {stderr}"
        );
    }
    code.unwrap()
}

/// Settles `inputs` (one of them `damaged`) into `dir/out` and checks the run
/// ([`assert_outcome`]): refused, it leaves no outputs; settled, every row of the claims file is
/// a settlement row or a rejected row — `claim_rows` of them, where the claims file is whole.
/// Returns the exit code.
fn check_settle(
    inputs: &Inputs,
    damaged: &Path,
    claim_rows: Option<u64>,
    dir: &Path,
    what: &str,
) -> i32 {
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let args: Vec<&OsStr> = vec![
        "adjudicate".as_ref(),
        "--claims".as_ref(),
        inputs.claims.as_ref(),
        "--persons".as_ref(),
        inputs.persons.as_ref(),
        "--registrations".as_ref(),
        inputs.registrations.as_ref(),
        "--policies".as_ref(),
        inputs.policies.as_ref(),
        "--out".as_ref(),
        out.as_ref(),
    ];
    let run = run_bounded(&args, dir, what);
    let code = assert_outcome(&run, damaged, what);
    if code == 2 {
        assert!(
            !out.join("summary.json").exists(),
            "{what}: no partial outputs"
        );
    } else {
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        let rows = summary["inputs"]["claims"][0]["rows"].as_u64().unwrap();
        if let Some(whole) = claim_rows {
            assert_eq!(rows, whole, "{what}: the claims file's rows");
        }
        assert_eq!(
            summary["claims"].as_u64().unwrap(),
            rows,
            "{what}: rows settled"
        );
        let written = &summary["outputs"];
        let settled = written["settlements"].as_u64().unwrap();
        let rejected_only = summary["reasons"]["null_key"].as_u64().unwrap_or(0);
        assert_eq!(
            settled + rejected_only,
            rows,
            "{what}: every row accounted for"
        );
    }
    code
}

/// Runs `check` on `sample` with 1–4 bits flipped (seeds `1..=flips`), cut short at a random byte
/// (seeds `1..=cuts`) and emptied; returns how many flipped files were settled and how many
/// refused. A cut or empty file has lost its footer, so it must be refused.
fn flips_and_cuts(
    sample: &[u8],
    flips: u64,
    cuts: u64,
    mut check: impl FnMut(&[u8], &str) -> i32,
) -> (u32, u32) {
    let (mut settled, mut refused) = (0, 0);
    for seed in 1..=flips {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut damaged = sample.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(damaged.len());
            damaged[at] ^= 1 << rng.below(8);
        }
        match check(&damaged, &format!("seed {seed}, bits flipped")) {
            0 => settled += 1,
            _ => refused += 1,
        }
    }
    for seed in 1..=cuts {
        let cut = Rng(seed.wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1).below(sample.len());
        let code = check(&sample[..cut], &format!("cut at byte {cut}"));
        assert_eq!(code, 2, "a file cut at byte {cut} is not a Parquet file");
    }
    assert_eq!(check(&[], "an empty file"), 2, "an empty file is refused");
    (settled, refused)
}

/// The row count in the footer of the sample claims file, which a run must settle whole when
/// only another input is damaged.
fn sample_claim_rows() -> u64 {
    let file = File::open(repository("data-samples/claims.parquet")).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    reader.metadata().file_metadata().num_rows() as u64
}

#[test]
fn flipped_bits_and_cut_files_end_in_a_result_or_a_named_error() {
    let sample = std::fs::read(repository("data-samples/claims.parquet")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let claims = dir.path().join("claims.parquet");
    let inputs = Inputs {
        claims: claims.clone(),
        ..Inputs::samples()
    };
    let outcomes = flips_and_cuts(&sample, 40, 12, |damaged, what| {
        std::fs::write(&claims, damaged).unwrap();
        check_settle(&inputs, &claims, None, dir.path(), what)
    });
    // The damage reached both outcomes: decoded values changed, and pages refused.
    assert!(outcomes.0 > 0 && outcomes.1 > 0, "outcomes: {outcomes:?}");
}

/// Damages the registry file `name` of `data-samples/` (`--persons` or `--registrations`, which
/// `swap` points at the damaged copy); the claims file is whole, so a run that settles settles
/// all of it.
fn damaged_registry_file(name: &str, swap: fn(&mut Inputs) -> &mut PathBuf) {
    let sample = std::fs::read(repository(&format!("data-samples/{name}"))).unwrap();
    let rows = sample_claim_rows();
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join(name);
    let mut inputs = Inputs::samples();
    *swap(&mut inputs) = damaged.clone();
    let outcomes = flips_and_cuts(&sample, 30, 10, |bytes, what| {
        std::fs::write(&damaged, bytes).unwrap();
        check_settle(&inputs, &damaged, Some(rows), dir.path(), what)
    });
    // Some flips change values the registry still reads (a region, a scheme), others break pages.
    assert!(outcomes.0 > 0 && outcomes.1 > 0, "outcomes: {outcomes:?}");
}

#[test]
fn a_damaged_persons_file_ends_in_a_whole_settlement_or_a_named_error() {
    damaged_registry_file("persons.parquet", |inputs| &mut inputs.persons);
}

#[test]
fn a_damaged_registrations_file_ends_in_a_whole_settlement_or_a_named_error() {
    damaged_registry_file("registrations.parquet", |inputs| &mut inputs.registrations);
}

/// `weihai.toml` in a copy of `policies/`, with 1–4 bytes' bits flipped (which may leave no UTF-8),
/// cut at a random byte, 1–3 random lines deleted, or emptied: `adjudicate` settles every claim or
/// refuses naming the file, and `policy check` ends the same way as the run.
#[test]
fn a_damaged_policy_file_ends_in_a_whole_settlement_or_a_named_error() {
    let sample = std::fs::read(repository("policies/weihai.toml")).unwrap();
    let rows = sample_claim_rows();
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    for entry in std::fs::read_dir(repository("policies")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), policies.join(entry.file_name())).unwrap();
    }
    let damaged = policies.join("weihai.toml");
    let inputs = Inputs {
        policies: policies.clone(),
        ..Inputs::samples()
    };
    // (settled, refused) per kind of damage; how many damaged files were not UTF-8.
    let mut outcomes = [[0u32; 2]; 4];
    let mut not_utf8 = 0;
    let mut check = |kind: usize, bytes: &[u8], what: &str| {
        std::fs::write(&damaged, bytes).unwrap();
        not_utf8 += u32::from(std::str::from_utf8(bytes).is_err());
        let settle = check_settle(&inputs, &damaged, Some(rows), dir.path(), what);
        let args: [&OsStr; 4] = [
            "policy".as_ref(),
            "check".as_ref(),
            "--policies".as_ref(),
            policies.as_ref(),
        ];
        let what = format!("{what}, policy check");
        let run = run_bounded(&args, dir.path(), &what);
        let code = assert_outcome(&run, &damaged, &what);
        assert_eq!(code, settle, "{what}: the same verdict as the run");
        if code == 0 {
            assert!(
                String::from_utf8_lossy(&run.stdout).contains("policies OK"),
                "{what}"
            );
        }
        outcomes[kind][(code / 2) as usize] += 1;
    };

    for seed in 1..=30u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut bytes = sample.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len());
            bytes[at] ^= 1 << rng.below(8);
        }
        check(0, &bytes, &format!("seed {seed}, bits flipped"));
    }
    for seed in 1..=10u64 {
        let cut = Rng(seed.wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1).below(sample.len());
        check(1, &sample[..cut], &format!("cut at byte {cut}"));
    }
    let lines: Vec<&[u8]> = sample.split_inclusive(|&b| b == b'\n').collect();
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x94d0_49bb_1331_11eb) | 1);
        let mut kept = lines.clone();
        for _ in 0..1 + rng.below(3) {
            kept.remove(rng.below(kept.len()));
        }
        check(2, &kept.concat(), &format!("seed {seed}, lines deleted"));
    }
    check(3, &[], "an empty file");

    assert_eq!(outcomes[3], [0, 1], "an empty policy file is refused");
    assert!(not_utf8 > 0, "some flips leave no UTF-8");
    // Flips and deletions reach both outcomes: a comment or a spare line changed, and a key or
    // the syntax broken.
    for (kind, [settled, refused]) in [("flips", outcomes[0]), ("deletions", outcomes[2])] {
        assert!(settled > 0 && refused > 0, "{kind}: {outcomes:?}");
    }
}

/// A footer whose row count has its sign bit flipped (-1501 for the sample's 1500 persons): the
/// registry sized its tables by the count and panicked ("capacity overflow", exit 101).
#[test]
fn a_persons_footer_counting_negative_rows_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = repository("tests/data/persons-negative-row-count.parquet");
    let inputs = Inputs {
        persons: damaged.clone(),
        ..Inputs::samples()
    };
    let code = check_settle(&inputs, &damaged, None, dir.path(), "a negative count");
    assert_eq!(code, 2);
    assert_last_message(dir.path(), "the footer counts -1501 rows");
}

/// As for persons: -1401 for the sample's 1400 registrations.
#[test]
fn a_registrations_footer_counting_negative_rows_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = repository("tests/data/registrations-negative-row-count.parquet");
    let inputs = Inputs {
        registrations: damaged.clone(),
        ..Inputs::samples()
    };
    let code = check_settle(&inputs, &damaged, None, dir.path(), "a negative count");
    assert_eq!(code, 2);
    assert_last_message(dir.path(), "the footer counts -1401 rows");
}

/// The same damage in a claims file (a generated month of 12 claims whose footer counts -13; the
/// sample claims file with bit 0 of byte 124149 flipped does the same): a reader that reserved
/// the footer's count would ask for nearly 2^64 rows. The count is held to the row groups'.
#[test]
fn a_claims_footer_counting_negative_rows_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = repository("tests/data/claims-negative-row-count.parquet");
    let inputs = Inputs {
        claims: damaged.clone(),
        ..Inputs::samples()
    };
    let code = check_settle(&inputs, &damaged, None, dir.path(), "a negative count");
    assert_eq!(code, 2);
    assert_last_message(dir.path(), "the footer counts -13 rows, its row groups 12");
}

/// The same file with its footer counting 28 rows for its 12 (as the sample claims file does with
/// bit 0 of byte 124150 flipped: 5064 rows for 5000): settled, its summary would give the file
/// rows it does not hold.
#[test]
fn a_claims_footer_counting_rows_the_file_does_not_hold_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = repository("tests/data/claims-footer-overcounts-rows.parquet");
    let inputs = Inputs {
        claims: damaged.clone(),
        ..Inputs::samples()
    };
    let code = check_settle(&inputs, &damaged, None, dir.path(), "a count too high");
    assert_eq!(code, 2);
    assert_last_message(dir.path(), "the footer counts 28 rows, its row groups 12");
}

/// Found by fuzzing (`fuzz/run.sh`, target `claims_file`): a dictionary page whose run-length
/// header is longer than any integer, on which the Parquet decoder panics. The run says the file
/// is corrupt, with no panic in its log.
#[test]
fn a_page_the_decoder_panics_on_is_reported_as_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let crash = repository("tests/data/fuzz-claims-rle-vlq-overflow.parquet");
    let inputs = Inputs {
        claims: crash.clone(),
        ..Inputs::samples()
    };
    let code = check_settle(&inputs, &crash, None, dir.path(), "the fuzzer's file");
    assert_eq!(code, 2);
}
