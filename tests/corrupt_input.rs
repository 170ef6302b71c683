//! Damaged input files, through the binary: the sample claims file with a few bits flipped or cut
//! short, seed by seed. Every run ends in exit 0 with every input row accounted for (settled or
//! rejected) or in exit 2 naming the file — never a panic, an internal error (exit 1) or a lost
//! row.

use std::path::Path;
use std::process::Command;

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

fn settle(claims: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_yibao"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["adjudicate", "--claims"])
        .arg(claims)
        .args([
            "--persons",
            "data-samples/persons.parquet",
            "--registrations",
            "data-samples/registrations.parquet",
            "--out",
        ])
        .arg(out)
        .output()
        .unwrap()
}

/// Checks one damaged file's run; returns its exit code.
fn check(damaged: &[u8], dir: &Path, what: &str) -> i32 {
    let claims = dir.join("claims.parquet");
    std::fs::write(&claims, damaged).unwrap();
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let run = settle(&claims, &out);
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
            stderr.contains(claims.to_str().unwrap()),
            "{what}: the message names the file: {stderr}"
        );
        assert!(
            !out.join("summary.json").exists(),
            "{what}: no partial outputs"
        );
    } else {
        // Every row of the file is a settlement row or a rejected row.
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        let rows = summary["inputs"]["claims"][0]["rows"].as_u64().unwrap();
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
    code.unwrap()
}

#[test]
fn flipped_bits_and_cut_files_end_in_a_result_or_a_named_error() {
    let sample =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("data-samples/claims.parquet"))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut codes = [0u32; 3];
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut damaged = sample.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(damaged.len());
            damaged[at] ^= 1 << rng.below(8);
        }
        let code = check(&damaged, dir.path(), &format!("seed {seed}, bits flipped"));
        codes[code as usize] += 1;
    }
    for seed in 1..=12u64 {
        let mut rng = Rng(seed | 1);
        let cut = rng.below(sample.len());
        let code = check(&sample[..cut], dir.path(), &format!("cut at byte {cut}"));
        assert_eq!(code, 2, "a file cut at byte {cut} is not a Parquet file");
    }
    check(&[], dir.path(), "an empty file");
    // The damage reached both outcomes: decoded values changed, and pages refused.
    assert!(codes[0] > 0 && codes[2] > 0, "outcomes: {codes:?}");
}

/// Found by fuzzing (`fuzz/run.sh`, target `claims_file`): a dictionary page whose run-length
/// header is longer than any integer, on which the Parquet decoder panics. The run says the file
/// is corrupt, with no panic in its log.
#[test]
fn a_page_the_decoder_panics_on_is_reported_as_a_corrupt_file() {
    let crash = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz-claims-rle-vlq-overflow.parquet");
    let dir = tempfile::tempdir().unwrap();
    let code = check(
        &std::fs::read(crash).unwrap(),
        dir.path(),
        "the fuzzer's file",
    );
    assert_eq!(code, 2);
}
