//! A month larger than `--memory-limit` is scattered to disk by person partition and settled one
//! partition at a time; its outputs must be the bytes of the run held in memory.

mod common;

use std::path::Path;

use arrow::array::AsArray;
use common::*;

const OUTPUTS: [&str; 3] = [
    "settlements.parquet",
    "rejected.parquet",
    "anomalies.parquet",
];

fn assert_same_outputs(a: &Path, b: &Path) {
    for file in OUTPUTS {
        let (x, y) = (
            std::fs::read(a.join(file)).unwrap(),
            std::fs::read(b.join(file)).unwrap(),
        );
        assert!(x == y, "{file} differs between {a:?} and {b:?}");
    }
}

fn no_spill_left(out: &Path) {
    let left: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".spill"))
        .collect();
    assert!(left.is_empty(), "spill files left in {out:?}: {left:?}");
}

/// A run of `claims` into `out`, held in memory in one part; callers change the cut.
fn args(
    d: &Path,
    claims: &str,
    out: &str,
    state: Option<&str>,
    threads: usize,
) -> yibao::run::AdjudicateArgs {
    yibao::run::AdjudicateArgs {
        claims: d.join(claims),
        persons: d.join("persons.parquet"),
        registrations: d.join("registrations.parquet"),
        state: state.map(|l| d.join(l)),
        state_version: None,
        policies: policies_dir(),
        out: d.join(out),
        threads: Some(threads),
        memory_limit: None,
        part_claims: None,
        compress_spill: None,
        spill_around_page_cache: None,
    }
}

fn run(args: yibao::run::AdjudicateArgs) -> yibao::output::summary::Summary {
    yibao::run::adjudicate(&args).unwrap().summary()
}

fn spilled_at(limit: u64, args: yibao::run::AdjudicateArgs) -> yibao::run::AdjudicateArgs {
    yibao::run::AdjudicateArgs {
        memory_limit: Some(limit),
        ..args
    }
}

#[test]
fn a_spilled_month_and_its_state_match_the_run_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate_month(d, 2_000, 20_000, 2024, 5, 9);
    // Two halves of the month, the second settled on the state the first left.
    split_month(d, 2024, 5, 16);

    let memory = run(args(d, "h1", "m1", Some("m-state"), 2));
    assert!(memory.spill.is_none());
    assert_eq!(
        memory.parts, 2,
        "one part of persons, one of rows with no person"
    );
    // Held in memory and settled in many parts of persons: the same bytes.
    let parted = run(yibao::run::AdjudicateArgs {
        part_claims: Some(300),
        ..args(d, "h1", "p1", None, 2)
    });
    assert_eq!(
        parted.parts, 65,
        "10 000 claims in parts of at most ~300: 64 parts and one"
    );
    assert_same_outputs(&d.join("m1"), &d.join("p1"));
    // The month-wide statistics of amount_outlier are gathered before the spilled run settles.
    assert!(memory.anomalies.get("amount_outlier").copied().unwrap_or(0) > 0);
    // Written around the page cache, as a spill past a tenth of memory is.
    let spilled = run(yibao::run::AdjudicateArgs {
        spill_around_page_cache: Some(true),
        ..spilled_at(1 << 20, args(d, "h1", "s1", Some("s-state"), 2))
    });
    let parts = spilled
        .spill
        .as_ref()
        .expect("1 MiB is too small for the month")
        .partitions;
    assert!(parts > 1, "{parts} partitions");
    assert_same_outputs(&d.join("m1"), &d.join("s1"));
    assert_eq!(memory.totals.len(), spilled.totals.len());
    assert_eq!(memory.rejected, spilled.rejected);
    assert_eq!(memory.anomalies, spilled.anomalies);
    no_spill_left(&d.join("s1"));

    assert_eq!(
        state_pools(&d.join("m-state")),
        state_pools(&d.join("s-state"))
    );

    // The second half on the first half's state; the spilled run on one thread, more finely
    // cut, and its spill files compressed (a month this small is spilled raw by default).
    run(args(d, "h2", "m2", Some("m-state"), 2));
    let spilled = run(yibao::run::AdjudicateArgs {
        compress_spill: Some(true),
        ..spilled_at(200 << 10, args(d, "h2", "s2", Some("s-state"), 1))
    });
    assert!(spilled.spill.unwrap().partitions > parts);
    assert_same_outputs(&d.join("m2"), &d.join("s2"));
    no_spill_left(&d.join("s2"));
    assert_eq!(
        state_pools(&d.join("m-state")),
        state_pools(&d.join("s-state"))
    );
}

/// Settles the scenario's claims held in memory (`whole/`) and spilled into every partition
/// there is (`cut/`), and checks that both wrote the same bytes.
fn settle_whole_and_spilled(s: &Scenario) {
    let mut whole = s.args("claims", "whole", None);
    let mut cut = s.args("claims", "cut", None);
    whole.memory_limit = None;
    cut.memory_limit = Some(1);
    yibao::run::adjudicate(&whole).unwrap();
    let summary = yibao::run::adjudicate(&cut).unwrap().summary();
    assert!(summary.spill.is_some());
    assert_same_outputs(&s.path("whole"), &s.path("cut"));
}

#[test]
fn a_claim_id_repeated_under_persons_in_different_partitions_is_caught_when_spilled() {
    // Two persons whose keys differ in the top bit: with any cut they are in different
    // partitions.
    let ids = ["P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9"];
    let top = |id: &str| yibao::partition::person_key(id) >> 63;
    let a = ids[0];
    let b = *ids.iter().find(|id| top(id) != top(a)).unwrap();
    let persons = [
        person(a, "330400", "employee"),
        person(b, "330400", "employee"),
    ];
    // `b`'s copy of C1 settled first: it is the original, `a`'s is the repeat.
    let claims = [
        claim("C1", a, "2024-03-05", "primary", "I10", "100.00"),
        claim("C1", b, "2024-03-03", "primary", "I10", "100.00"),
        claim("C2", a, "2024-03-06", "primary", "I10", "50.00"),
    ];
    let s = Scenario::new(&persons, &[], &claims);
    settle_whole_and_spilled(&s);
    let rejected = read_parquet(&s.path("cut/rejected.parquet"));
    assert_eq!(rejected.num_rows(), 1);
    let column = |n: &str| {
        rejected
            .column_by_name(n)
            .unwrap()
            .as_string::<i32>()
            .value(0)
            .to_string()
    };
    assert_eq!(column("person_id"), a);
    assert_eq!(column("claim_id"), "C1");
    assert_eq!(column("reason"), "duplicate_claim_id");
}

#[test]
fn a_spilled_month_judges_amounts_against_the_month_without_its_repeated_claims() {
    // The 42 fills of audit_rules' amount_outlier test (100.00 … 139.00, 268.26, 5,000.00: bar
    // 268.26), and ten later copies of the first ten claim ids at 9,000.00 filed under other
    // persons (other partitions). The copies are repeats: counted, they would move the median
    // and the bar; their originals, whose ids are repeated too, must still be counted.
    const EZHOU: &str = "420700";
    let ids: Vec<&'static str> = (0..42)
        .map(|i| &*Box::leak(format!("P{i:02}").into_boxed_str()))
        .collect();
    let amounts: Vec<&'static str> = (0..40)
        .map(|i| format!("{}.00", 100 + i))
        .chain(["268.26".to_string(), "5000.00".to_string()])
        .map(|a| &*Box::leak(a.into_boxed_str()))
        .collect();
    let persons: Vec<Person> = ids.iter().map(|&p| person(p, EZHOU, "resident")).collect();
    let fill = |id, p, day, amount| Claim {
        region: EZHOU,
        drug: Some("XJ01CA04"),
        ..claim(id, p, day, "primary", "J06.9", amount)
    };
    let claims: Vec<Claim> = ids
        .iter()
        .zip(&amounts)
        .map(|(&p, &a)| fill(p, p, "2024-03-05", a))
        .chain((0..10).map(|i| fill(ids[i], ids[20 + i], "2024-03-09", "9000.00")))
        .collect();
    let s = Scenario::new(&persons, &[], &claims);
    settle_whole_and_spilled(&s);
    let outliers: Vec<Flag> = read_anomalies(&s.path("cut/anomalies.parquet"))
        .into_iter()
        .filter(|f| f.rule == "amount_outlier")
        .collect();
    assert_eq!(outliers.len(), 1, "{outliers:?}");
    assert_eq!(outliers[0].claim_id, "P41");
    assert_eq!(
        (outliers[0].value_amount, outliers[0].threshold_amount),
        (Some(fen("5000.00")), Some(fen("268.26")))
    );
    let rejected = read_parquet(&s.path("cut/rejected.parquet"));
    assert_eq!(rejected.num_rows(), 10);
}

/// A spilled night reads each partition's persons' state from the row groups that may hold
/// them: a state of several row groups (a first run of 300,000 claims) settles the next days
/// spilled exactly as held in memory, reading little more than the run held in memory reads.
#[test]
fn a_spilled_night_reads_each_partitions_state_from_its_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate_month(d, 30_000, 300_000, 2024, 5, 11);
    split_month(d, 2024, 5, 29);
    run(args(d, "h1", "first", Some("state"), 2));
    let manifest = yibao::state::store::Manifest::peek(&d.join("state"), None)
        .unwrap()
        .expect("the first run committed a version");
    let history_rows: u64 = manifest.history.iter().map(|p| p.rows).sum();
    assert!(
        history_rows > 1 << 17,
        "{history_rows} history rows: two row groups or more"
    );

    let whole = run(yibao::run::AdjudicateArgs {
        state_version: Some(1),
        ..args(d, "h2", "whole", Some("state"), 2)
    });
    // About 20 MB of claims and 30 MB of state, two partitions held at once (one written while
    // the next is settled): 16 partitions.
    let spilled = run(spilled_at(
        8 << 20,
        yibao::run::AdjudicateArgs {
            state_version: Some(1),
            ..args(d, "h2", "cut", Some("state"), 2)
        },
    ));
    let partitions = spilled.spill.as_ref().expect("8 MiB spills").partitions;
    assert_eq!(partitions, 16);
    assert_same_outputs(&d.join("whole"), &d.join("cut"));
    let (w, s) = (
        whole.state.as_ref().unwrap(),
        spilled.state.as_ref().unwrap(),
    );
    assert_eq!(w.read.pool_rows, s.read.pool_rows);
    assert_eq!(w.read.history_rows, s.read.history_rows);
    // Each partition decodes the row groups its range of keys overlaps, not every one: the
    // history's two groups are read about once each over the partitions (the one-group pools
    // file by every partition).
    assert!(
        s.read.bytes_read < partitions * w.read.bytes_read / 2,
        "spilled {} bytes, held in memory {}",
        s.read.bytes_read,
        w.read.bytes_read
    );
}

/// The state's files of `dir`'s newest version, as bytes, by table.
fn state_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let versions = yibao::state::store::versions(dir).unwrap();
    let manifest = yibao::state::store::read_manifest(dir, *versions.last().unwrap()).unwrap();
    [
        ("pools", &manifest.pools),
        ("history", &manifest.history),
        ("claims", &manifest.claims),
    ]
    .into_iter()
    .flat_map(|(table, pieces)| {
        pieces
            .iter()
            .map(move |p| (table.to_string(), std::fs::read(dir.join(&p.file)).unwrap()))
    })
    .collect()
}

#[test]
fn a_state_is_the_same_bytes_for_any_number_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // More claims than a window of state changes (4 chunks of 16 Ki): the claim index is
    // written as several ordered runs.
    generate_month(d, 5_000, 80_000, 2024, 5, 11);
    run(args(d, "claims.parquet", "o1", Some("state-1"), 1));
    run(args(d, "claims.parquet", "o2", Some("state-2"), 2));
    let (one, two) = (
        state_files(&d.join("state-1")),
        state_files(&d.join("state-2")),
    );
    assert_eq!(one.len(), 3);
    for ((table, a), (_, b)) in one.iter().zip(&two) {
        assert!(a == b, "the {table} file differs between 1 and 2 threads");
    }
    let manifest = yibao::state::store::read_manifest(&d.join("state-1"), 1).unwrap();
    let orders = row_group_order(&d.join("state-1").join(&manifest.claims[0].file));
    // Two windows of 64 Ki claims and the rest: each a run of claims, then one of refunds.
    assert!(
        orders.matches("claim_key").count() >= 2,
        "{orders}: one ordered run"
    );
}
