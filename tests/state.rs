//! The state directory as a system of record: a month settled night by night equals the month
//! settled at once, an input fed twice pays nothing twice, closed years are dropped, and a run
//! killed at any moment leaves a state from which the same command gives the same bytes.

mod common;

use std::path::Path;
use std::process::Command;

use arrow::array::*;
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::TimestampMillisecondType;
use common::*;
use yibao::run::Adjudicated;

/// A clean May 2024.
fn generate(dir: &Path, persons: u64, claims: u64, seed: u64) {
    generate_month(dir, persons, claims, 2024, 5, seed);
}

fn args(d: &Path, claims: &str, out: &str, state: &str) -> yibao::run::AdjudicateArgs {
    yibao::run::AdjudicateArgs {
        claims: d.join(claims),
        persons: d.join("persons.parquet"),
        registrations: d.join("registrations.parquet"),
        state: Some(d.join(state)),
        state_version: None,
        policies: policies_dir(),
        out: d.join(out),
        threads: Some(2),
        memory_limit: None,
        part_claims: None,
        compress_spill: None,
        spill_around_page_cache: None,
    }
}

/// Writes the generated month's claims into one file per range of settlement days
/// (`bounds[i]..bounds[i + 1]`, May days; rows without a settlement time go to the first),
/// as `DIR/<name><i>/part.parquet`. Returns the files' batches.
fn split_by_day(d: &Path, name: &str, bounds: &[u32]) -> Vec<RecordBatch> {
    let all = read_parquet(&d.join("claims.parquet"));
    let settled = all
        .column_by_name("settled_at")
        .unwrap()
        .as_primitive::<TimestampMillisecondType>()
        .clone();
    let day_start = |day: u32| day_of(2024, 5, day) as i64 * 86_400_000;
    let mut pieces = Vec::new();
    for (i, w) in bounds.windows(2).enumerate() {
        let (from, to) = (day_start(w[0]), day_start(w[1]));
        let take: BooleanArray = (0..all.num_rows())
            .map(|r| {
                Some(if settled.is_null(r) {
                    i == 0
                } else {
                    (i == 0 || settled.value(r) >= from) && settled.value(r) < to
                })
            })
            .collect();
        let piece = filter_record_batch(&all, &take).unwrap();
        std::fs::create_dir_all(d.join(format!("{name}{i}"))).unwrap();
        write_parquet(&d.join(format!("{name}{i}/part.parquet")), &piece);
        pieces.push(piece);
    }
    pieces
}

fn day_of(y: i32, m: u32, d: u32) -> i32 {
    yibao::domain::days_from_civil(y, m, d)
}

#[test]
fn a_month_settled_as_31_daily_runs_equals_one_run_and_leaves_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 1_500, 15_000, 21);
    let bounds: Vec<u32> = (1..=32).collect();
    let days = split_by_day(d, "day", &bounds);
    assert_eq!(days.len(), 31);
    assert_eq!(
        days.iter().map(RecordBatch::num_rows).sum::<usize>(),
        15_000
    );
    let mut settled = Vec::new();
    for i in 0..31 {
        let summary =
            yibao::run::adjudicate(&args(d, &format!("day{i}"), &format!("out{i}"), "nightly"))
                .unwrap()
                .summary();
        let state = summary.state.expect("a run on a state");
        assert_eq!(
            (state.read_version, state.commits_version),
            (i, Some(i + 1))
        );
        settled.push(read_parquet(&d.join(format!("out{i}/settlements.parquet"))));
    }
    yibao::run::adjudicate(&args(d, "claims.parquet", "month", "monthly")).unwrap();
    let nightly = concat_batches(&settled[0].schema(), &settled).unwrap();
    let month = read_parquet(&d.join("month/settlements.parquet"));
    let flagged = assert_agree_by_claim(&nightly, &month);
    assert!(flagged > 0);
    // The same final year-to-date state, pool by pool.
    let (a, b) = (
        state_pools(&d.join("nightly")),
        state_pools(&d.join("monthly")),
    );
    assert!(a.len() > 1_000, "{} pools", a.len());
    assert_eq!(a, b);
    // The same flags, each related to the same earlier claim, though a night holds of the
    // earlier nights only what its own claims can reach: all but `amount_outlier`, which judges
    // a claim among the claims of its run.
    let flags = |paths: Vec<std::path::PathBuf>| {
        let mut flags: Vec<_> = paths
            .iter()
            .flat_map(|p| read_anomalies(p))
            .filter(|f| f.rule != "amount_outlier")
            .map(|f| {
                let numbers = (
                    f.value_amount,
                    f.threshold_amount,
                    f.value_count,
                    f.threshold_count,
                );
                (f.claim_id, f.rule, f.related_claim_id, numbers)
            })
            .collect();
        flags.sort();
        flags
    };
    let nights = flags(
        (0..31)
            .map(|i| d.join(format!("out{i}/anomalies.parquet")))
            .collect(),
    );
    let related = |rule: &str| {
        nights
            .iter()
            .filter(|f| f.1 == rule && f.2.is_some())
            .count()
    };
    assert!(related("early_refill") > 10, "{}", related("early_refill"));
    assert!(
        related("duplicate_claim") > 10,
        "{}",
        related("duplicate_claim")
    );
    assert_eq!(nights, flags(vec![d.join("month/anomalies.parquet")]));
    // Reversals found their originals in earlier nights.
    let status = nightly.column_by_name("status").unwrap().as_string::<i32>();
    let reason = nightly.column_by_name("reason").unwrap().as_string::<i32>();
    let reversals = (0..nightly.num_rows())
        .filter(|&i| status.value(i) == "reversal")
        .count();
    assert!(reversals > 10, "{reversals} reversals");
    assert!(
        !(0..nightly.num_rows()).any(|i| reason.value(i) == "original_not_found"
            && !month
                .column_by_name("reason")
                .unwrap()
                .as_string::<i32>()
                .iter()
                .any(|r| r == Some("original_not_found")))
    );
    // Each night wrote what its own claims touched, whatever the month behind it: a claim-index
    // row per claim it settled.
    let manifest = yibao::state::store::read_manifest(&d.join("nightly"), 31).unwrap();
    assert_eq!(manifest.runs.len(), 31);
    assert_eq!(manifest.inputs.len(), 31);
    for (night, claims) in days.iter().enumerate() {
        assert!(manifest.claims[night].rows <= claims.num_rows() as u64);
    }
    // The per-person tables merged by the nights in tiers of four, oldest and largest first:
    // 31 runs are 16 + 4 + 4 + 4 + 1 + 1 + 1.
    for pieces in [&manifest.pools, &manifest.history] {
        let runs: Vec<u32> = pieces.iter().map(|p| p.runs).collect();
        assert_eq!(runs, [16, 4, 4, 4, 1, 1, 1]);
    }
}

#[test]
fn an_input_fed_twice_pays_nothing_twice() {
    let persons = [person("P1", "420700", "resident")];
    let regs = [registration("P1", "hypertension")];
    let first = [
        claim("A1", "P1", "2024-03-01", "primary", "I10", "100.00"),
        claim("A2", "P1", "2024-03-02", "primary", "I10", "200.00"),
    ];
    let s = Scenario::new(&persons, &regs, &first);
    let settled = yibao::run::adjudicate(&s.args("claims", "o1", Some("state"))).unwrap();
    assert!(matches!(settled, Adjudicated::Settled(_)));
    let after_first = state_pools(&s.path("state"));
    // Ezhou resident two diseases at grassroots: 60% of 300.00 = 180.00.
    let pool = (
        "P1".to_string(),
        2024,
        "resident:two_diseases.hypertension".to_string(),
    );
    assert_eq!(after_first[&pool].0, 18_000);

    // The same file again, even into another output directory: nothing is settled.
    match yibao::run::adjudicate(&s.args("claims", "o2", Some("state"))).unwrap() {
        Adjudicated::AlreadyAbsorbed { version } => assert_eq!(version, 1),
        other => panic!("settled again: {other:?}"),
    }
    assert!(!s.path("o2/settlements.parquet").exists());
    assert_eq!(
        yibao::state::store::versions(&s.path("state")).unwrap(),
        [1]
    );

    // Another file repeating the settled ids: each repeat is a duplicate_claim_id row.
    let resent = [
        claim("A1", "P1", "2024-03-01", "primary", "I10", "100.00"),
        claim("A2", "P1", "2024-03-02", "primary", "I10", "200.00"),
        claim("A3", "P1", "2024-03-05", "primary", "I10", "50.00"),
    ];
    std::fs::create_dir_all(s.path("resent")).unwrap();
    write_claims(&s.path("resent/part.parquet"), &resent);
    yibao::run::adjudicate(&s.args("resent", "o3", Some("state"))).unwrap();
    let rows = read_settlements(&s.path("o3/settlements.parquet"));
    for id in ["A1", "A2"] {
        assert_eq!(rows[id].status, "rejected");
        assert_eq!(rows[id].reason.as_deref(), Some("duplicate_claim_id"));
        assert_eq!(rows[id].fund, 0);
    }
    // A3 alone is paid: 60% of 50.00 = 30.00, so the year's fund paid is 210.00.
    assert_eq!(rows["A3"].fund, fen("30.00"));
    assert_eq!(state_pools(&s.path("state"))[&pool].0, 21_000);

    // A directory holding an absorbed file beside a new one is refused, naming the file.
    std::fs::create_dir_all(s.path("mixed")).unwrap();
    std::fs::copy(s.path("claims/part-0.parquet"), s.path("mixed/a.parquet")).unwrap();
    write_claims(
        &s.path("mixed/b.parquet"),
        &[claim("A4", "P1", "2024-03-06", "primary", "I10", "10.00")],
    );
    let err = yibao::run::adjudicate(&s.args("mixed", "o4", Some("state"))).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().contains("mixed/a.parquet")
            && err
                .to_string()
                .contains("absorbed by the state's version 1"),
        "{err}"
    );
}

#[test]
fn years_before_the_previous_one_are_dropped_when_a_run_commits() {
    let persons = [person("P1", "420700", "resident")];
    let regs = [Registration {
        approved_on: "2022-01-01",
        ..registration("P1", "hypertension")
    }];
    let s = Scenario::new(
        &persons,
        &regs,
        &[claim("A1", "P1", "2023-06-01", "primary", "I10", "100.00")],
    );
    let batch = |name: &str, rows: &[Claim]| {
        std::fs::create_dir_all(s.path(name)).unwrap();
        write_claims(&s.path(&format!("{name}/part.parquet")), rows);
    };
    let refund = |id: &'static str, of: &'static str, day: &'static str, amount| Claim {
        total: amount,
        in_scope: amount,
        reverses: Some(of),
        ..claim(id, "P1", day, "primary", "I10", "0")
    };
    batch(
        "y2024",
        &[claim("B1", "P1", "2024-03-01", "primary", "I10", "200.00")],
    );
    // 2025 arrives: a refund of 2023's A1 is still settled (2023 is held until this run
    // commits), and 2024's B1 can be refunded.
    batch(
        "y2025",
        &[
            refund("R1", "A1", "2025-01-10", "-100.00"),
            claim("C1", "P1", "2025-02-01", "primary", "I10", "300.00"),
        ],
    );
    // After that commit 2023 is gone: its claims are no longer found.
    batch(
        "later",
        &[
            claim("A1", "P1", "2025-03-01", "primary", "I10", "10.00"),
            refund("R2", "B1", "2025-03-02", "-200.00"),
        ],
    );
    for (claims, out) in [
        ("claims", "o1"),
        ("y2024", "o2"),
        ("y2025", "o3"),
        ("later", "o4"),
    ] {
        yibao::run::adjudicate(&s.args(claims, out, Some("state"))).unwrap();
    }
    let o3 = read_settlements(&s.path("o3/settlements.parquet"));
    assert_eq!(o3["R1"].status, "reversal");
    assert_eq!(o3["R1"].fund, -fen("60.00"));
    let o4 = read_settlements(&s.path("o4/settlements.parquet"));
    // A1's id is free again once 2023 is dropped; B1 (2024) is still refundable.
    assert_eq!(o4["A1"].status, "paid");
    assert_eq!(o4["R2"].status, "reversal");
    assert_eq!(o4["R2"].fund, -fen("120.00"));

    let state = s.path("state");
    let manifest = yibao::state::store::read_manifest(&state, 4).unwrap();
    assert_eq!(manifest.latest_year, Some(2025));
    assert!(manifest
        .files()
        .all(|p| p.max_year.is_none_or(|y| y >= 2024)));
    let years: std::collections::BTreeSet<i32> = state_pools(&state).keys().map(|k| k.1).collect();
    assert_eq!(years, [2024, 2025].into());
    // 2024's B1 was refunded: its pool is back to 0; 2025: C1 180.00 + A1 6.00.
    let pools = state_pools(&state);
    let pool = |year| {
        pools[&(
            "P1".to_string(),
            year,
            "resident:two_diseases.hypertension".to_string(),
        )]
            .0
    };
    assert_eq!((pool(2024), pool(2025)), (0, 18_600));
}

/// Copies a state directory (flat) to `to`; an absent one leaves `to` absent.
/// The `person_key` column of a state file, as the unsigned keys it holds.
fn person_keys(path: &Path) -> Vec<u64> {
    use arrow::array::AsArray;
    let file = std::fs::File::open(path).unwrap();
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let mask = parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), ["person_key"]);
    builder
        .with_projection(mask)
        .build()
        .unwrap()
        .flat_map(|b| {
            let b = b.unwrap();
            let keys = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
            keys.values().iter().map(|&k| k as u64).collect::<Vec<_>>()
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    std::fs::create_dir_all(to).unwrap();
    for entry in entries {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// `command` run to completion, or killed after `kill_after`; whether it succeeded.
fn run_or_kill(command: &mut Command, kill_after: Option<std::time::Duration>) -> bool {
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    if let Some(after) = kill_after {
        std::thread::sleep(after);
        // SIGKILL: no destructor, no cleanup.
        let _ = child.kill();
    }
    child.wait().unwrap().success()
}

/// The binary settling `claims` on `DIR/state` into `out`, to completion or killed.
fn run_binary(d: &Path, claims: &str, out: &str, kill_after: Option<std::time::Duration>) -> bool {
    let mut command = Command::new(env!("CARGO_BIN_EXE_yibao"));
    command
        .args(["adjudicate", "--threads", "2", "--claims"])
        .arg(d.join(claims))
        .arg("--persons")
        .arg(d.join("persons.parquet"))
        .arg("--registrations")
        .arg(d.join("registrations.parquet"))
        .arg("--policies")
        .arg(policies_dir())
        .arg("--state")
        .arg(d.join("state"))
        .arg("--out")
        .arg(d.join(out));
    run_or_kill(&mut command, kill_after)
}

const OUTPUTS: [&str; 3] = [
    "settlements.parquet",
    "rejected.parquet",
    "anomalies.parquet",
];

fn same_outputs(a: &Path, b: &Path) -> bool {
    OUTPUTS
        .iter()
        .all(|f| std::fs::read(a.join(f)).ok() == std::fs::read(b.join(f)).ok())
}

#[test]
fn a_run_killed_at_any_moment_is_recovered_by_running_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 6_000, 60_000, 33);
    split_by_day(d, "batch", &[1, 11, 21, 32]);
    // The uninterrupted runs, and how long each takes at its fastest (a second and third run of
    // a night on a copy of the state before it).
    let mut run_time = Vec::new();
    for i in 0..3 {
        let before = d.join(format!("before{i}"));
        copy_dir(&d.join("state"), &before);
        assert!(run_binary(
            d,
            &format!("batch{i}"),
            &format!("ref{i}"),
            None
        ));
        let after = d.join(format!("after{i}"));
        std::fs::rename(d.join("state"), &after).unwrap();
        let mut fastest = std::time::Duration::MAX;
        for _ in 0..2 {
            copy_dir(&before, &d.join("state"));
            let started = std::time::Instant::now();
            assert!(run_binary(d, &format!("batch{i}"), "timing", None));
            fastest = fastest.min(started.elapsed());
            std::fs::remove_dir_all(d.join("state")).unwrap();
        }
        std::fs::rename(&after, d.join("state")).unwrap();
        run_time.push(fastest);
    }
    let reference = state_pools(&d.join("state"));

    // Kill moments spread over the whole run, commit included, at fixed pseudo-random
    // fractions of it; a run that finished before its kill shortens the span its night's kills
    // are drawn from (the machine may be faster now than when timed), until 24 runs were killed.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let (mut killed_before_commit, mut killed_after_commit) = (0, 0);
    let mut span = [1.05f64; 2];
    const KILLED: u32 = 24;
    for k in 0..80u32 {
        if killed_before_commit + killed_after_commit >= KILLED {
            break;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let fraction = (seed % 10_000) as f64 / 10_000.0;
        let _ = std::fs::remove_dir_all(d.join("state"));
        for i in 0..3 {
            let _ = std::fs::remove_dir_all(d.join(format!("out{i}")));
        }
        // Even kills: the first night on an empty state; odd: the second, on the first's.
        let night = (k % 2) as usize;
        let at = run_time[night].mul_f64(fraction * span[night]);
        for i in 0..night {
            assert!(run_binary(
                d,
                &format!("batch{i}"),
                &format!("out{i}"),
                None
            ));
        }
        let batch = format!("batch{night}");
        let out = format!("out{night}");
        let finished = run_binary(d, &batch, &out, Some(at));
        let versions = yibao::state::store::versions(&d.join("state")).unwrap_or_default();
        // Either the kill came after the commit (version night + 1 exists), or the state is
        // exactly as it was.
        assert!(
            versions.last().copied().unwrap_or(0) <= night as u64 + 1,
            "{versions:?}"
        );
        match (
            finished,
            versions.last().copied().unwrap_or(0) == night as u64 + 1,
        ) {
            (false, false) => killed_before_commit += 1,
            (false, true) => killed_after_commit += 1,
            (true, _) => span[night] *= 0.9,
        }
        // The same command again: the same bytes as the uninterrupted run.
        assert!(run_binary(d, &batch, &out, None), "rerun after kill {k}");
        assert!(
            same_outputs(&d.join(&out), &d.join(format!("ref{night}"))),
            "outputs after kill {k} at {at:?}"
        );
        assert!(d.join(&out).join("summary.json").exists());
        // And the following batches settle identically on the recovered state.
        for next in night + 1..3 {
            assert!(run_binary(
                d,
                &format!("batch{next}"),
                &format!("out{next}"),
                None
            ));
            assert!(
                same_outputs(&d.join(format!("out{next}")), &d.join(format!("ref{next}"))),
                "batch {next} after kill {k}"
            );
        }
        assert_eq!(state_pools(&d.join("state")), reference);
        // No file is left that no version names.
        let state = d.join("state");
        let mut named = std::collections::BTreeSet::new();
        for v in yibao::state::store::versions(&state).unwrap() {
            let m = yibao::state::store::read_manifest(&state, v).unwrap();
            named.extend(m.files().map(|p| p.file.clone()));
        }
        for entry in std::fs::read_dir(&state).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".tmp") && (!name.ends_with(".parquet") || named.contains(&name)),
                "leftover {name} after kill {k}"
            );
        }
    }
    assert!(
        killed_before_commit + killed_after_commit >= KILLED,
        "killed before the commit: {killed_before_commit}, after: {killed_after_commit}; \
         runs took {run_time:?}"
    );
}

#[test]
fn a_compacted_state_settles_the_next_night_as_the_appended_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 1_500, 15_000, 44);
    split_by_day(d, "night", &[1, 8, 15, 22, 29, 32]);
    for i in 0..4 {
        yibao::run::adjudicate(&args(d, &format!("night{i}"), &format!("o{i}"), "state")).unwrap();
    }
    copy_dir(&d.join("state"), &d.join("appended"));
    let nights = yibao::state::store::read_manifest(&d.join("state"), 4).unwrap();
    for piece in nights.pools.iter().chain(&nights.history) {
        let keys = person_keys(&d.join("state").join(&piece.file));
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{}", piece.file);
    }
    let before = state_pools(&d.join("state"));
    let c = yibao::state::compact::compact(&d.join("state"), 2).unwrap();
    assert_eq!(c.version, Some(5));
    assert_eq!(c.removed, [1, 2, 3]);
    // Superseded pool and history rows are gone; every pool that counts is kept.
    assert!(c.rows.1 < c.rows.0, "{:?}", c.rows);
    assert_eq!(state_pools(&d.join("state")), before);
    let state = d.join("state");
    let m = yibao::state::store::read_manifest(&state, 5).unwrap();
    assert_eq!((m.pools.len(), m.history.len(), m.claims.len()), (1, 1, 1));
    // Merged from four nights' files, each per-person table is in person-key order, as every
    // state file is: a reader merges its persons with the rows in one pass.
    for piece in m.pools.iter().chain(&m.history) {
        let keys = person_keys(&state.join(&piece.file));
        assert_eq!(keys.len() as u64, piece.rows);
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{}", piece.file);
    }
    // The claim index is one ordered run; every night's row kept.
    let rows = assert_one_ordered_run(&state.join(&m.claims[0].file));
    assert_eq!(rows, nights.claims.iter().map(|p| p.rows).sum::<u64>());
    assert_eq!(m.inputs.len(), 4, "what was absorbed is still known");
    assert_eq!(yibao::state::store::versions(&state).unwrap(), [4, 5]);
    let files = std::fs::read_dir(&state)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".parquet")
        })
        .count();
    // Version 4's twelve files and version 5's three.
    assert_eq!(files, 15);
    // The last night on the compacted state and on the appended one: the same bytes and pools.
    yibao::run::adjudicate(&args(d, "night4", "compacted", "state")).unwrap();
    yibao::run::adjudicate(&args(d, "night4", "appended-out", "appended")).unwrap();
    assert!(same_outputs(&d.join("compacted"), &d.join("appended-out")));
    assert_eq!(state_pools(&state), state_pools(&d.join("appended")));
    // Compacted again, keeping only the newest version; then there is nothing left to merge.
    let again = yibao::state::compact::compact(&state, 1).unwrap();
    assert_eq!((again.version, again.removed), (Some(7), vec![4, 5, 6]));
    let idle = yibao::state::compact::compact(&state, 1).unwrap();
    assert_eq!((idle.version, idle.removed), (None, vec![]));
    assert_eq!(state_pools(&state), state_pools(&d.join("appended")));
}

/// Asserts that the claim index file `index` is one ordered run: its claims ascending by
/// `claim_key` (unsigned), then its accepted refunds by `reverses_key`. Returns its rows.
fn assert_one_ordered_run(index: &Path) -> u64 {
    let orders = row_group_order(index);
    let groups: Vec<&str> = orders.split(',').collect();
    let claim_groups = groups.iter().take_while(|&&g| g == "claim_key").count();
    assert!(claim_groups > 0, "{orders}");
    assert!(
        groups[claim_groups..].iter().all(|&g| g == "reverses_key"),
        "{orders}"
    );
    let (mut rows, mut last) = (0u64, 0u64);
    for (g, &name) in groups.iter().enumerate() {
        if g == claim_groups {
            last = 0;
        }
        let group = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(index).unwrap(),
        )
        .unwrap()
        .with_row_groups(vec![g])
        .build()
        .unwrap();
        for batch in group {
            let batch = batch.unwrap();
            rows += batch.num_rows() as u64;
            let keys = batch
                .column_by_name(name)
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>()
                .clone();
            for k in keys.iter() {
                let k = k.expect("a key on every row of its run") as u64;
                assert!(k >= last, "{name} descends in row group {g} of the index");
                last = k;
            }
        }
    }
    rows
}

#[test]
fn a_state_a_spilled_run_wrote_has_its_claim_index_compacted_into_one_ordered_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 1_500, 15_000, 45);
    // Spilled in partitions, each writing its claims' index rows as an ordered run of its own:
    // one file a table, and an index of many runs.
    let mut spilled = args(d, "claims.parquet", "o", "state");
    spilled.memory_limit = Some(1);
    let settled = yibao::run::adjudicate(&spilled).unwrap().summary();
    assert!(settled.spill.is_some_and(|s| s.partitions > 1));
    let state = d.join("state");
    let m = yibao::state::store::read_manifest(&state, 1).unwrap();
    assert_eq!((m.pools.len(), m.history.len(), m.claims.len()), (1, 1, 1));
    assert!(!m.claims[0].ordered);
    let runs = row_group_order(&state.join(&m.claims[0].file))
        .split(',')
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w == &["reverses_key", "claim_key"])
        .count();
    assert!(runs > 1, "{runs} runs");
    let c = yibao::state::compact::compact(&state, 1).unwrap();
    assert_eq!(c.version, Some(2));
    let merged = yibao::state::store::read_manifest(&state, 2).unwrap();
    // The per-person files are as a merge would leave them: the new version names them again.
    assert_eq!(merged.pools, m.pools);
    assert_eq!(merged.history, m.history);
    assert_ne!(merged.claims[0].file, m.claims[0].file);
    let m = merged;
    assert!(m.claims[0].ordered);
    assert_eq!(
        assert_one_ordered_run(&state.join(&m.claims[0].file)),
        m.claims[0].rows
    );
    // Then there is nothing left to merge.
    let idle = yibao::state::compact::compact(&state, 1).unwrap();
    assert_eq!(idle.version, None);
}

#[test]
fn a_compaction_killed_at_any_moment_leaves_a_state_that_settles_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 3_000, 30_000, 55);
    split_by_day(d, "night", &[1, 6, 11, 16, 21, 26, 32]);
    for i in 0..5 {
        assert!(run_binary(d, &format!("night{i}"), &format!("o{i}"), None));
    }
    copy_dir(&d.join("state"), &d.join("base"));
    let before = state_pools(&d.join("state"));
    // The last night on the uncompacted state: what every recovered state must give.
    assert!(run_binary(d, "night5", "reference", None));
    let compact = |kill_after: Option<std::time::Duration>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_yibao"));
        command
            .args(["state", "compact", "--keep", "1"])
            .arg(d.join("state"));
        run_or_kill(&mut command, kill_after)
    };
    copy_dir(&d.join("base"), &d.join("state"));
    let started = std::time::Instant::now();
    assert!(compact(None));
    let took = started.elapsed();
    // Kill moments spread over the compaction, the span narrowed whenever one finished first.
    let (mut killed, mut span) = (0, 1.0f64);
    for k in 0..40u32 {
        if killed >= 8 {
            break;
        }
        copy_dir(&d.join("base"), &d.join("state"));
        let fraction = ((k as f64 * 0.618_034) % 1.0) * span;
        let finished = compact(Some(took.mul_f64(fraction)));
        killed += u32::from(!finished);
        if finished {
            span *= 0.8;
        }
        // Whatever the moment, the latest version holds the same pools…
        assert_eq!(state_pools(&d.join("state")), before, "after kill {k}");
        // …and the next night settles to the same bytes on it.
        let _ = std::fs::remove_dir_all(d.join("after"));
        assert!(run_binary(d, "night5", "after", None));
        assert!(
            same_outputs(&d.join("after"), &d.join("reference")),
            "night after kill {k}"
        );
    }
    assert!(killed >= 8, "{killed} compactions killed");
}

/// A policy version that settled claims into a state keeps its text: a committing run whose text
/// of it differs is refused, naming the file and the version, before anything is settled; a
/// comment or an `assumed` note is not the text that settles; a read-only what-if may differ.
#[test]
fn a_version_that_settled_claims_into_a_state_cannot_change_under_it() {
    let s = Scenario::new(
        &[person("P1", "420700", "resident")],
        &[registration("P1", "hypertension")],
        &[claim("A1", "P1", "2024-03-01", "primary", "I10", "100.00")],
    );
    let policies = s.path("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for entry in std::fs::read_dir(policies_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), policies.join(entry.file_name())).unwrap();
    }
    let ezhou = policies.join("ezhou.toml");
    let original = std::fs::read_to_string(&ezhou).unwrap();
    std::fs::create_dir_all(s.path("april")).unwrap();
    write_claims(
        &s.path("april/part.parquet"),
        &[claim("A2", "P1", "2024-04-01", "primary", "I10", "100.00")],
    );
    let state = s.path("state");
    let settle = |claims: &str, out: &str, extra: &[&str]| {
        let mut flags = vec!["--state", text(&state)];
        flags.extend_from_slice(extra);
        s.run_binary(claims, out, &policies, &flags)
    };
    assert!(settle("claims", "o1", &[]).status.success());

    // The grassroots ratio of the version that settled A1, changed in place.
    let edited = original.replacen("primary = 0.60,", "primary = 0.65,", 1);
    assert_ne!(edited, original);
    std::fs::write(&ezhou, &edited).unwrap();
    let run = settle("april", "o2", &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: `versions[0]`: version `ezhou-2022` differs from the text that settled claims \
             into the state (state version 1)",
            text(&ezhou)
        )),
        "{stderr}"
    );
    assert!(!s.path("o2/summary.json").exists());
    // A read-only what-if settles under the edited text.
    let what_if = settle("april", "o3", &["--state-version", "1"]);
    assert!(what_if.status.success());

    // A comment, a reworded note and another layout: the same text.
    let reworded = format!(
        "# reviewed\n{}",
        original.replacen(
            "the draft is undated; taken to apply from 2022-01-01",
            "undated draft, applied from 2022-01-01",
            1,
        )
    );
    std::fs::write(&ezhou, reworded).unwrap();
    let run = settle("april", "o4", &[]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let manifest = yibao::state::store::read_manifest(&s.path("state"), 2).unwrap();
    assert_eq!(
        manifest.policy_versions.keys().collect::<Vec<_>>(),
        ["ezhou-2022"]
    );
}
