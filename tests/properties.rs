//! Invariants: the kernel's identities for any input (proptest), and on a generated month the
//! contract's identities on every row, identical output for 1 and 2 threads, and a month split
//! through the state equal to the single run.

mod common;

use std::path::Path;

use arrow::array::*;
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::*;
use common::*;
use proptest::prelude::*;
use yibao::policy::CapBasis;
use yibao::settle::kernel::{split, Terms};

proptest! {
    #[test]
    fn kernel_split_keeps_the_identities(
        eligible in 0i64..10_000_000,
        ratio_bp in 0u32..=10_000,
        deductible_left in -1_000i64..500_000,
        cap_left in proptest::option::of(-1_000i64..2_000_000),
        cost_basis in any::<bool>(),
    ) {
        let terms = Terms {
            ratio_bp,
            deductible_left_fen: deductible_left,
            cap_left_fen: cap_left,
            cap_basis: if cost_basis { CapBasis::Cost } else { CapBasis::Fund },
        };
        let s = split(eligible, &terms);
        prop_assert_eq!(s.eligible_fen, s.deductible_fen + s.fund_fen + s.copay_fen + s.over_cap_fen);
        prop_assert!(s.deductible_fen >= 0 && s.fund_fen >= 0 && s.copay_fen >= 0 && s.over_cap_fen >= 0);
        prop_assert!(s.deductible_fen <= deductible_left.max(0));
        let base = eligible - s.deductible_fen;
        let full = yibao::money::apply_ratio(base, ratio_bp);
        prop_assert!(s.fund_fen <= full);
        if let Some(left) = cap_left {
            if !cost_basis {
                prop_assert!(s.fund_fen <= left.max(0));
            } else {
                prop_assert!(s.covered_fen <= left.max(0));
            }
            prop_assert!(s.cap_remaining_fen.unwrap() >= 0);
        } else {
            prop_assert_eq!(s.fund_fen, full);
            prop_assert!(!s.capped);
        }
        prop_assert_eq!(s.capped, s.over_cap_fen > 0 || (s.fund_fen < full));
    }
}

fn args(
    dir: &Path,
    claims: &str,
    out: &str,
    state: Option<&str>,
    threads: usize,
) -> yibao::run::AdjudicateArgs {
    yibao::run::AdjudicateArgs {
        claims: dir.join(claims),
        persons: dir.join("persons.parquet"),
        registrations: dir.join("registrations.parquet"),
        state: state.map(|l| dir.join(l)),
        state_version: None,
        policies: policies_dir(),
        out: dir.join(out),
        threads: Some(threads),
        memory_limit: None,
        part_claims: None,
        compress_spill: None,
        spill_around_page_cache: None,
    }
}

#[test]
fn generated_month_keeps_the_contract_identities_and_thread_count_changes_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate_month(d, 3_000, 30_000, 2024, 3, 11);
    let one = yibao::run::adjudicate(&args(d, "claims.parquet", "t1", Some("s1"), 1))
        .unwrap()
        .summary();
    yibao::run::adjudicate(&args(d, "claims.parquet", "t2", Some("s2"), 2)).unwrap();
    for file in [
        "settlements.parquet",
        "rejected.parquet",
        "anomalies.parquet",
    ] {
        let a = std::fs::read(d.join("t1").join(file)).unwrap();
        let b = std::fs::read(d.join("t2").join(file)).unwrap();
        assert!(a == b, "{file} differs between 1 and 2 threads");
    }
    assert!(one.rejected > 0, "the generator plants bad rows");
    // Every planted anomaly is found, and the rules flag nothing else (the amount outlier
    // also judges the generator's natural lognormal amounts: precision is only reported).
    let scores =
        yibao::audit::eval::evaluate(&d.join("labels.parquet"), &d.join("t1/anomalies.parquet"))
            .unwrap();
    for s in &scores {
        assert!(s.planted > 0, "{s:?}");
        assert!(s.recall >= 0.99, "{s:?}");
        if s.rule != "amount_outlier" {
            assert!(s.precision >= 0.95, "{s:?}");
        }
    }

    // Settlement rows are the input rows with non-null keys.
    let input = read_parquet(&d.join("claims.parquet"));
    let keys = [
        "claim_id",
        "person_id",
        "region",
        "settled_at",
        "institution_level",
    ];
    let mask: BooleanArray = (0..input.num_rows())
        .map(|i| {
            Some(
                keys.iter()
                    .all(|k| input.column_by_name(k).unwrap().is_valid(i)),
            )
        })
        .collect();
    let input = filter_record_batch(&input, &mask).unwrap();
    let out = read_parquet(&d.join("t1/settlements.parquet"));
    assert_eq!(out.num_rows(), input.num_rows());
    // Output order is by person, not input order: line the input up with it by claim id (a
    // repeated id's rows in input order; the generator's repeats are exact copies).
    let input = {
        let ids = input.column_by_name("claim_id").unwrap().as_string::<i32>();
        let mut by_id: std::collections::HashMap<&str, std::collections::VecDeque<u32>> =
            Default::default();
        for i in 0..ids.len() {
            by_id.entry(ids.value(i)).or_default().push_back(i as u32);
        }
        let out_ids = out.column_by_name("claim_id").unwrap().as_string::<i32>();
        let order: arrow::array::UInt32Array = (0..out_ids.len())
            .map(|i| {
                by_id
                    .get_mut(out_ids.value(i))
                    .unwrap()
                    .pop_front()
                    .unwrap()
            })
            .collect();
        arrow::compute::take_record_batch(&input, &order).unwrap()
    };
    let dec = |b: &RecordBatch, n: &str| {
        b.column_by_name(n)
            .unwrap()
            .as_primitive::<Decimal128Type>()
            .clone()
    };
    let (total, in_scope) = (dec(&input, "total_amount"), dec(&input, "in_scope_amount"));
    let (eligible, deductible, fund, copay, over_cap, self_funded, ci) = (
        dec(&out, "eligible_amount"),
        dec(&out, "deductible_amount"),
        dec(&out, "fund_paid"),
        dec(&out, "copay_amount"),
        dec(&out, "over_cap_amount"),
        dec(&out, "self_funded_amount"),
        dec(&out, "critical_illness_base"),
    );
    let (ci_paid, assistance_base, assistance_paid, patient_pays) = (
        dec(&out, "critical_illness_paid"),
        dec(&out, "assistance_base"),
        dec(&out, "assistance_paid"),
        dec(&out, "patient_pays"),
    );
    let benefit = out
        .column_by_name("benefit")
        .unwrap()
        .as_string::<i32>()
        .clone();
    let mut layers_paid = (0, 0);
    let mut benefits = std::collections::BTreeSet::new();
    let status = out
        .column_by_name("status")
        .unwrap()
        .as_string::<i32>()
        .clone();
    let reason = out
        .column_by_name("reason")
        .unwrap()
        .as_string::<i32>()
        .clone();
    let out_ids = out
        .column_by_name("claim_id")
        .unwrap()
        .as_string::<i32>()
        .clone();
    let in_ids = input
        .column_by_name("claim_id")
        .unwrap()
        .as_string::<i32>()
        .clone();
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..out.num_rows() {
        assert_eq!(out_ids.value(i), in_ids.value(i));
        *seen.entry(status.value(i)).or_insert(0) += 1;
        assert_eq!(
            eligible.value(i),
            deductible.value(i) + fund.value(i) + copay.value(i) + over_cap.value(i),
            "row {i}"
        );
        assert_eq!(
            reason.is_null(i),
            status.value(i) == "paid",
            "row {i}: reason iff not paid"
        );
        if status.value(i) == "rejected" {
            continue;
        }
        assert_eq!(
            total.value(i),
            in_scope.value(i) + self_funded.value(i),
            "row {i}"
        );
        // One-stop settlement: the three layers and the person share the whole cost.
        assert_eq!(
            total.value(i),
            fund.value(i) + ci_paid.value(i) + assistance_paid.value(i) + patient_pays.value(i),
            "row {i}: three-layer identity"
        );
        assert!(ci_paid.value(i).abs() <= ci.value(i).abs(), "row {i}");
        if assistance_base.value(i) != 0 {
            assert_eq!(assistance_base.value(i), ci.value(i) - ci_paid.value(i));
        }
        assert!(assistance_paid.value(i).abs() <= assistance_base.value(i).abs());
        if status.value(i) != "reversal" {
            assert!(patient_pays.value(i) >= 0, "row {i}");
        }
        layers_paid.0 += (ci_paid.value(i) > 0) as u32;
        layers_paid.1 += (assistance_paid.value(i) > 0) as u32;
        if benefit.is_valid(i) {
            benefits.insert(benefit.value(i).split('.').next().unwrap().to_string());
        }
        match status.value(i) {
            "paid" | "capped" => {
                assert_eq!(eligible.value(i), in_scope.value(i), "row {i}");
                assert_eq!(ci.value(i), eligible.value(i) - fund.value(i));
            }
            "not_covered" => assert_eq!((eligible.value(i), fund.value(i)), (0, 0)),
            "reversal" => assert!(fund.value(i) <= 0),
            other => panic!("unexpected status {other}"),
        }
    }
    // Every layer and every kind of benefit pays somewhere in a month.
    assert!(layers_paid.0 > 0 && layers_paid.1 > 0, "{layers_paid:?}");
    for b in ["general_outpatient", "inpatient", "two_diseases"] {
        assert!(benefits.contains(b), "{benefits:?}");
    }
    // A realistic month exercises every status.
    for s in ["paid", "capped", "not_covered", "reversal", "rejected"] {
        assert!(
            seen.get(s).copied().unwrap_or(0) > 0,
            "no {s} rows: {seen:?}"
        );
    }
}

#[test]
fn month_split_through_the_state_equals_the_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate_month(d, 2_000, 20_000, 2024, 5, 5);
    // Split the month at the 16th by settlement time; bad rows with a null time go first.
    let (a, b) = split_month(d, 2024, 5, 16);
    assert!(a.num_rows() > 1000 && b.num_rows() > 1000);
    std::fs::create_dir_all(d.join("both")).unwrap();
    write_parquet(&d.join("both/part-1.parquet"), &a);
    write_parquet(&d.join("both/part-2.parquet"), &b);

    yibao::run::adjudicate(&args(d, "h1", "o1", Some("state"), 2)).unwrap();
    yibao::run::adjudicate(&args(d, "h2", "o2", Some("state"), 2)).unwrap();
    yibao::run::adjudicate(&args(d, "both", "all", None, 2)).unwrap();
    let split = concat_batches(
        &read_parquet(&d.join("o1/settlements.parquet")).schema(),
        &[
            read_parquet(&d.join("o1/settlements.parquet")),
            read_parquet(&d.join("o2/settlements.parquet")),
        ],
    )
    .unwrap();
    let whole = read_parquet(&d.join("all/settlements.parquet"));
    assert_eq!(split.num_rows(), whole.num_rows());
    let flagged = assert_agree_by_claim(&split, &whole);
    // The per-person rules did fire, and across the split.
    assert!(flagged > 0);
    // The reversals of the second half found their first-half originals through the state,
    // and both later layers paid in the second half on state the first half left.
    let status = whole.column_by_name("status").unwrap().as_string::<i32>();
    assert!((0..whole.num_rows()).any(|i| status.value(i) == "reversal"));
    let second = read_parquet(&d.join("o2/settlements.parquet"));
    for layer in ["critical_illness_paid", "assistance_paid"] {
        let paid = second
            .column_by_name(layer)
            .unwrap()
            .as_primitive::<Decimal128Type>();
        assert!((0..paid.len()).any(|i| paid.value(i) > 0), "{layer}");
    }
}
