//! `yibao compare`, run through the binary: a proposal that raises one ratio, settled by hand;
//! and a generated month (with and without a state) whose comparison agrees claim by claim with
//! two `yibao adjudicate` runs, one per policy directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Decimal128Type};

use common::*;

/// A copy of the repository's policies in `dir/proposal` with Weihai's residents' general
/// outpatient grassroots ratio (the version in force from 2023-05) raised from 50% to 60%.
fn proposal_raising_one_ratio(dir: &Path) -> PathBuf {
    let proposal = dir.join("proposal");
    std::fs::create_dir_all(&proposal).unwrap();
    for entry in std::fs::read_dir(policies_dir()).unwrap() {
        let path = entry.unwrap().path();
        let mut body = std::fs::read_to_string(&path).unwrap();
        if path.file_name().unwrap() == "weihai.toml" {
            let old =
                "ratio = { primary = 0.50, secondary = 0.40, tertiary = 0.30, pharmacy = 0.50 }";
            // The last of the two versions' residents' general outpatient lines.
            let at = body
                .rfind(old)
                .expect("the residents' general outpatient ratios");
            body.replace_range(
                at..at + old.len(),
                &old.replace("primary = 0.50", "primary = 0.60"),
            );
        }
        std::fs::write(proposal.join(path.file_name().unwrap()), body).unwrap();
    }
    proposal
}

fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let column = arrow::compute::cast(b.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
    let column = column.as_string::<i32>();
    (0..column.len())
        .map(|i| column.is_valid(i).then(|| column.value(i).to_string()))
        .collect()
}

fn fens(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let column = b
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Decimal128Type>();
    (0..column.len())
        .map(|i| column.is_valid(i).then(|| column.value(i) as i64))
        .collect()
}

fn fen_sum(b: &RecordBatch, name: &str) -> i64 {
    fens(b, name).into_iter().flatten().sum()
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

/// Weihai residents' general outpatient (2023-05 version): no deductible, a 500-yuan annual cap
/// on the fund, 50% at a grassroots institution and 40% at a secondary one; the proposal pays
/// 60% at the grassroots.
#[test]
fn a_proposal_raising_one_ratio_costs_what_the_hand_computation_says() {
    let weihai = |id| person(id, "371000", "resident");
    let visit = |id, person, at, level, amount| Claim {
        region: "371000",
        drug: None,
        days_supply: None,
        ..claim(id, person, at, level, "J06.9", amount)
    };
    let s = Scenario::new(
        &[weihai("P1"), weihai("P2")],
        &[],
        &[
            // P1: 100.00 at 50% → 50.00, at 60% → 60.00.
            visit("C1", "P1", "2024-03-05", "primary", "100.00"),
            // 33.33 at 50% → 16.665 → 16.67; at 60% → 19.998 → 20.00.
            visit("C2", "P1", "2024-03-06", "primary", "33.33"),
            // A secondary visit: 40% in both worlds → 32.00.
            visit("C3", "P1", "2024-03-07", "secondary", "80.00"),
            // P2: 900.00 at 50% → 450.00 (50.00 of the cap left); at 60% 540.00 is over the
            // 500.00 cap: fund 500.00, covered round(500 / 0.6) = 833.33, over cap 66.67.
            visit("C4", "P2", "2024-03-05", "primary", "900.00"),
            // 10.00 at 50% → 5.00 (the cap holds 50.00); at 60% the cap is used up: fund 0,
            // status capped.
            visit("C5", "P2", "2024-03-08", "primary", "10.00"),
        ],
    );
    let proposal = proposal_raising_one_ratio(s.dir.path());
    let out = s.path("compare");
    yibao_ok(&[
        "compare",
        "--claims",
        text(&s.path("claims")),
        "--persons",
        text(&s.path("persons.parquet")),
        "--registrations",
        text(&s.path("registrations.parquet")),
        "--baseline",
        text(&policies_dir()),
        "--proposal",
        text(&proposal),
        "--out",
        text(&out),
    ]);
    let rows = read_parquet(&out.join("compare.parquet"));
    let ids = strings(&rows, "claim_id");
    let by_id = |column: &str| -> Vec<(String, Option<i64>)> {
        let values = fens(&rows, column);
        let mut v: Vec<_> = ids.iter().flatten().cloned().zip(values).collect();
        v.sort();
        v
    };
    let expect = |values: [i64; 5]| -> Vec<(String, Option<i64>)> {
        ["C1", "C2", "C3", "C4", "C5"]
            .iter()
            .zip(values)
            .map(|(id, v)| (id.to_string(), Some(v)))
            .collect()
    };
    assert_eq!(
        by_id("fund_paid_baseline"),
        expect([5000, 1667, 3200, 45000, 500])
    );
    assert_eq!(
        by_id("fund_paid_proposal"),
        expect([6000, 2000, 3200, 50000, 0])
    );
    assert_eq!(
        by_id("patient_pays_baseline"),
        expect([5000, 1666, 4800, 45000, 500])
    );
    assert_eq!(
        by_id("patient_pays_proposal"),
        expect([4000, 1333, 4800, 40000, 1000])
    );
    assert_eq!(
        by_id("over_cap_amount_proposal"),
        expect([0, 0, 0, 6667, 1000])
    );
    let status: Vec<_> = ids
        .iter()
        .zip(strings(&rows, "status_proposal"))
        .filter(|(_, s)| s.as_deref() == Some("capped"))
        .map(|(id, _)| id.clone().unwrap())
        .collect();
    assert_eq!(status, ["C4", "C5"]);

    let s = summary(&out);
    assert_eq!(s["baseline"]["amounts"]["fund_paid"], "553.67");
    assert_eq!(s["proposal"]["amounts"]["fund_paid"], "612.00");
    assert_eq!(s["difference"]["fund_paid"], "58.33");
    assert_eq!(s["difference"]["patient_pays"], "-58.33");
    assert_eq!(s["claims_changed"], 4);
    let persons = &s["persons"];
    assert_eq!(persons["persons"], 2);
    assert_eq!(persons["pay_less"], 2);
    assert_eq!(persons["pay_more"], 0);
    // P2 reaches the cap under the proposal only.
    assert_eq!(persons["newly_capped"], 1);
    // P1 saves 13.33, P2 45.00.
    let buckets = persons["change_in_patient_pays"].as_array().unwrap();
    let saving = buckets.iter().find(|b| b["change"] == "saves 10 to 100");
    assert_eq!(saving.unwrap()["persons"], 2);
}

/// `compare.parquet` against the settlements of two `adjudicate` runs of the same claims on the
/// same state, row by row (both files list persons in key order).
fn assert_agrees_with_adjudicate(
    compare: &RecordBatch,
    baseline: &RecordBatch,
    proposal: &RecordBatch,
) {
    assert_eq!(compare.num_rows(), baseline.num_rows());
    assert_eq!(compare.num_rows(), proposal.num_rows());
    assert_eq!(strings(compare, "claim_id"), strings(baseline, "claim_id"));
    assert_eq!(
        strings(compare, "person_id"),
        strings(baseline, "person_id")
    );
    assert_eq!(strings(compare, "region"), strings(baseline, "region"));
    for (world, settlements) in [("baseline", baseline), ("proposal", proposal)] {
        let column = |name: &str| format!("{name}_{world}");
        assert_eq!(
            strings(compare, &column("benefit")),
            strings(settlements, "benefit")
        );
        assert_eq!(
            strings(compare, &column("status")),
            strings(settlements, "status")
        );
        assert_eq!(
            strings(compare, &column("reason")),
            strings(settlements, "reason")
        );
        assert_eq!(
            strings(compare, &column("policy_id")),
            strings(settlements, "policy_id")
        );
        for (ours, theirs) in [
            ("fund_paid", "fund_paid"),
            ("patient_pays", "patient_pays"),
            ("critical_illness_paid", "critical_illness_paid"),
            ("assistance_paid", "assistance_paid"),
            ("over_cap_amount", "over_cap_amount"),
            ("cap_remaining", "cap_remaining"),
        ] {
            assert_eq!(
                fens(compare, &column(ours)),
                fens(settlements, theirs),
                "{ours} {world}"
            );
        }
    }
}

#[test]
fn a_comparison_agrees_claim_by_claim_with_two_adjudicate_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate_month(d, 3_000, 30_000, 2024, 3, 11);
    split_month(d, 2024, 3, 16);
    let proposal = proposal_raising_one_ratio(d);
    let (persons, registrations) = (d.join("persons.parquet"), d.join("registrations.parquet"));
    let adjudicate = |claims: &Path, policies: &Path, out: &Path, state: &[&str]| {
        let mut args = vec![
            "adjudicate",
            "--claims",
            text(claims),
            "--persons",
            text(&persons),
            "--registrations",
            text(&registrations),
            "--policies",
            text(policies),
            "--out",
            text(out),
        ];
        args.extend_from_slice(state);
        yibao_ok(&args);
    };
    let compare = |claims: &Path, out: &Path, state: &[&str]| {
        let mut args = vec![
            "compare",
            "--claims",
            text(claims),
            "--persons",
            text(&persons),
            "--registrations",
            text(&registrations),
            "--baseline",
            "policies",
            "--proposal",
            text(&proposal),
            "--out",
            text(out),
        ];
        args.extend_from_slice(state);
        yibao_ok(&args);
    };

    // The whole month on empty state.
    let month = d.join("claims.parquet");
    compare(&month, &d.join("c-month"), &[]);
    adjudicate(&month, &policies_dir(), &d.join("a-month-base"), &[]);
    adjudicate(&month, &proposal, &d.join("a-month-prop"), &[]);
    let rows = read_parquet(&d.join("c-month/compare.parquet"));
    let base = read_parquet(&d.join("a-month-base/settlements.parquet"));
    let prop = read_parquet(&d.join("a-month-prop/settlements.parquet"));
    assert_agrees_with_adjudicate(&rows, &base, &prop);
    let s = summary(&d.join("c-month"));
    let changed = s["claims_changed"].as_u64().unwrap();
    assert!(
        changed > 100,
        "the raised ratio changes many claims: {changed}"
    );
    let yuan = |fen: i64| format!("{}.{:02}", fen / 100, fen % 100);
    assert_eq!(
        s["baseline"]["amounts"]["fund_paid"],
        yuan(fen_sum(&base, "fund_paid"))
    );
    assert_eq!(
        s["proposal"]["amounts"]["fund_paid"],
        yuan(fen_sum(&prop, "fund_paid"))
    );
    assert_eq!(
        s["difference"]["fund_paid"],
        yuan(fen_sum(&prop, "fund_paid") - fen_sum(&base, "fund_paid"))
    );

    // The second half on the state the first half left (baseline policies), read and never
    // advanced: compared with read-only adjudicate runs on the same version.
    let state = d.join("state");
    adjudicate(
        &d.join("h1"),
        &policies_dir(),
        &d.join("a-h1"),
        &["--state", text(&state)],
    );
    let versions = yibao::state::store::versions(&state).unwrap();
    compare(&d.join("h2"), &d.join("c-h2"), &["--state", text(&state)]);
    assert_eq!(
        yibao::state::store::versions(&state).unwrap(),
        versions,
        "never advanced"
    );
    let read_only = ["--state", text(&state), "--state-version", "1"];
    adjudicate(
        &d.join("h2"),
        &policies_dir(),
        &d.join("a-h2-base"),
        &read_only,
    );
    adjudicate(&d.join("h2"), &proposal, &d.join("a-h2-prop"), &read_only);
    assert_agrees_with_adjudicate(
        &read_parquet(&d.join("c-h2/compare.parquet")),
        &read_parquet(&d.join("a-h2-base/settlements.parquet")),
        &read_parquet(&d.join("a-h2-prop/settlements.parquet")),
    );
    let s = summary(&d.join("c-h2"));
    assert_eq!(s["state"]["read_version"], 1);
    assert!(s["state"]["read"]["pool_rows"].as_u64().unwrap() > 0);
}

#[test]
fn policies_that_name_other_things_are_refused_with_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let proposal = proposal_raising_one_ratio(dir.path());
    std::fs::remove_file(proposal.join("jinan.toml")).unwrap();
    let out_dir = dir.path().join("out");
    let out = run_yibao(
        &[
            &["compare"][..],
            &SAMPLE_INPUTS,
            &["--baseline", "policies", "--proposal", text(&proposal)],
            &["--out", text(&out_dir)],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("regions: 341502 is only in the first"),
        "{stderr}"
    );
    assert!(!dir.path().join("out/summary.json").exists());
}

/// `compare.html` opened in headless Chromium (Debian's `chromium`, which `.ci/run` installs):
/// its charts are laid out with a size and nothing is written to the browser's console. Skipped
/// where there is no Chromium, unless `YIBAO_REQUIRE_CHROMIUM` is set (CI sets it).
#[test]
fn the_page_opens_in_a_browser_with_its_charts_drawn_and_no_console_errors() {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        assert!(
            std::env::var_os("YIBAO_REQUIRE_CHROMIUM").is_none(),
            "no chromium on this machine"
        );
        eprintln!("skipped: no chromium on this machine");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let proposal = proposal_raising_one_ratio(dir.path());
    let out = dir.path().join("out");
    yibao_ok(
        &[
            &["compare"][..],
            &SAMPLE_INPUTS,
            &["--baseline", "policies", "--proposal", text(&proposal)],
            &["--out", text(&out)],
        ]
        .concat(),
    );
    let page = out.join("compare.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing fetched from anywhere (SVG's namespace is a name, not a fetch).
    for outside in ["src=", "href=", "url(", "@import", "<link"] {
        assert!(
            !html.contains(outside),
            "the page refers outside itself: {outside}"
        );
    }
    // The one changed number, with its clause.
    assert!(html.contains("<code>ratio.primary</code>"));
    assert!(html.contains("weihai-2023-05 › general_outpatient (resident)"));
    let run = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let dom = String::from_utf8_lossy(&run.stdout);
    assert!(
        dom.contains("data-charts-rendered=\"5\""),
        "the five charts are laid out: {}",
        &dom[..dom.len().min(400)]
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
}
