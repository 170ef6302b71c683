//! One-stop settlement (一站式结算): inpatient and general benefits, critical illness insurance
//! and medical assistance, with the fen amounts worked out by hand from the policy files.
//! Numbers the sources do not state are the files' `assumed` values, named in each comment.

mod common;

use common::*;

const EZHOU: &str = "420700";
const WEIHAI: &str = "371000";

fn settle(
    persons: &[Person],
    regs: &[Registration],
    claims: &[Claim],
) -> std::collections::BTreeMap<String, Row> {
    let rows = Scenario::new(persons, regs, claims).settle();
    for r in rows.values() {
        assert_identities(r);
    }
    rows
}

/// (fund, critical illness, assistance, patient) of a row.
fn layers(r: &Row) -> (i64, i64, i64, i64) {
    (
        r.fund,
        r.critical_illness_paid,
        r.assistance_paid,
        r.patient_pays,
    )
}

// ---- Critical illness insurance: its deductible, then bands rising with the year's cost ----

#[test]
fn critical_illness_crosses_its_deductible_then_spans_two_bands() {
    // Ezhou residents (assumed): inpatient deductible 800.00 per tertiary admission, 60%, cap
    // 200,000.00; critical illness deductible 15,000.00, 60% up to 100,000.00 above it, then
    // 70%, cap 400,000.00.
    let p = person("P1", EZHOU, "resident");
    let rows = settle(
        &[p],
        &[],
        &[
            // 30,000.00: deductible 800.00, 29,200.00 × 60% = 17,520.00, copay 11,680.00.
            // Base to critical illness 12,480.00: all inside its 15,000.00 deductible.
            stay("S1", "P1", "2024-03-01", "tertiary", "K35.8", "30000.00"),
            // 20,000.00: a new admission's 800.00, 19,200.00 × 60% = 11,520.00. Base 8,480.00:
            // 2,520.00 finish the deductible, 5,960.00 × 60% = 3,576.00.
            stay("S2", "P1", "2024-03-10", "tertiary", "K35.8", "20000.00"),
            // 300,000.00: 299,200.00 × 60% = 179,520.00 but 200,000 − 29,040 = 170,960.00 of the
            // cap is left: covered round(170,960 / 0.6) = 284,933.33, copay 113,973.33, over cap
            // 14,266.67. Base 129,040.00 takes the year above the deductible from 5,960.00 to
            // 135,000.00: 100,000 × 60% + 35,000 × 70% = 84,500.00, less the 3,576.00 paid.
            stay("S3", "P1", "2024-03-20", "tertiary", "K35.8", "300000.00"),
        ],
    );
    let s1 = &rows["S1"];
    assert_eq!(s1.benefit.as_deref(), Some("inpatient"));
    assert_eq!(
        (s1.deductible, s1.fund, s1.copay),
        (fen("800.00"), fen("17520.00"), fen("11680.00"))
    );
    assert_eq!(s1.critical_illness_base, fen("12480.00"));
    assert_eq!(layers(s1), (fen("17520.00"), 0, 0, fen("12480.00")));

    let s2 = &rows["S2"];
    assert_eq!(s2.deductible, fen("800.00"));
    assert_eq!(s2.critical_illness_base, fen("8480.00"));
    assert_eq!(
        layers(s2),
        (fen("11520.00"), fen("3576.00"), 0, fen("4904.00"))
    );

    let s3 = &rows["S3"];
    assert_eq!(
        (s3.status.as_str(), s3.reason.as_deref()),
        ("capped", Some("annual_cap_reached"))
    );
    assert_eq!(
        (s3.fund, s3.copay, s3.over_cap, s3.cap_remaining),
        (fen("170960.00"), fen("113973.33"), fen("14266.67"), Some(0))
    );
    assert_eq!(s3.critical_illness_base, fen("129040.00"));
    assert_eq!(
        layers(s3),
        (fen("170960.00"), fen("80924.00"), 0, fen("48116.00"))
    );
}

#[test]
fn a_reversal_gives_critical_illness_its_state_back() {
    let p = person("P1", EZHOU, "resident");
    let rows = settle(
        &[p],
        &[],
        &[
            stay("S1", "P1", "2024-03-01", "tertiary", "K35.8", "30000.00"),
            stay("S2", "P1", "2024-03-10", "tertiary", "K35.8", "20000.00"),
            Claim {
                total: "-20000.00",
                in_scope: "-20000.00",
                reverses: Some("S2"),
                ..stay("R2", "P1", "2024-03-11", "tertiary", "K35.8", "0")
            },
            // Settles exactly as S2 did: both the inpatient cap and the critical-illness
            // deductible and bands were given back.
            stay("S4", "P1", "2024-03-12", "tertiary", "K35.8", "20000.00"),
        ],
    );
    let r2 = &rows["R2"];
    assert_eq!(r2.status, "reversal");
    assert_eq!(
        layers(r2),
        (-fen("11520.00"), -fen("3576.00"), 0, -fen("4904.00"))
    );
    assert_eq!(layers(&rows["S4"]), layers(&rows["S2"]));
    assert_eq!(rows["S4"].cap_remaining, rows["S2"].cap_remaining);
}

// ---- Medical assistance: what both insurance layers left, deductibles and caps included ----

#[test]
fn assistance_takes_cost_below_the_deductibles_and_above_the_cap() {
    // Weihai from 2023-05-01: residents' grassroots inpatient 85% (stated) after a 200.00
    // deductible (assumed); two-diseases hypertension 70% (stated) with a 300.00 cap (assumed);
    // critical illness deductible 20,000.00 (assumed). Assistance (assumed): minimum-living
    // 70%, no deductible; low-income-edge 60% after 1,500.00; destitute 90%, cap 50,000.00.
    let persons = [
        Person {
            assistance: Some("minimum_living"),
            ..person("P1", WEIHAI, "resident")
        },
        Person {
            assistance: Some("low_income_edge"),
            ..person("P2", WEIHAI, "resident")
        },
        Person {
            assistance: Some("destitute"),
            ..person("P3", WEIHAI, "resident")
        },
        person("P4", WEIHAI, "resident"),
    ];
    let partly_in_scope = |id, p| Claim {
        total: "1100.00",
        in_scope: "1000.00",
        ..stay(id, p, "2024-03-01", "primary", "J18.9", "0")
    };
    let rows = settle(
        &persons,
        &[registration("P1", "hypertension")],
        &[
            // 1,100.00 of which 1,000.00 in scope: deductible 200.00, 800.00 × 85% = 680.00,
            // copay 120.00. The 320.00 left in scope is inside critical illness' deductible;
            // assistance pays 70% of it = 224.00. The person pays the 100.00 self-funded and
            // 96.00: 196.00.
            partly_in_scope("S1", "P1"),
            // Two diseases, 1,000.00 at grassroots: 70% = 700.00 over the 300.00 cap; covered
            // round(300 / 0.7) = 428.57, copay 128.57, over cap 571.43. Assistance: 70% of
            // 700.00 = 490.00; the person pays 210.00.
            claim("C2", "P1", "2024-03-02", "primary", "I10", "1000.00"),
            // Low-income edge: the 320.00 is inside assistance's own 1,500.00 deductible.
            partly_in_scope("S1b", "P2"),
            // Destitute, 300,000.00 at level 3: 800.00 deductible, 299,200.00 × 60% = 179,520.00,
            // copay 119,680.00. Critical illness: 120,480.00 − 20,000.00 = 100,480.00 above its
            // deductible: 100,000 × 60% + 480 × 70% = 60,336.00. Assistance: 90% of the
            // 60,144.00 left = 54,129.60, capped at 50,000.00. The person pays 10,144.00.
            stay("S3", "P3", "2024-03-05", "tertiary", "C34.9", "300000.00"),
            // Not in a category: nothing is handed to assistance.
            partly_in_scope("S4", "P4"),
        ],
    );
    let s1 = &rows["S1"];
    assert_eq!((s1.deductible, s1.fund), (fen("200.00"), fen("680.00")));
    assert_eq!(
        (s1.critical_illness_base, s1.assistance_base),
        (fen("320.00"), fen("320.00"))
    );
    assert_eq!(layers(s1), (fen("680.00"), 0, fen("224.00"), fen("196.00")));

    let c2 = &rows["C2"];
    assert_eq!(c2.benefit.as_deref(), Some("two_diseases.hypertension"));
    assert_eq!(
        (c2.fund, c2.copay, c2.over_cap),
        (fen("300.00"), fen("128.57"), fen("571.43"))
    );
    assert_eq!(c2.assistance_base, fen("700.00"));
    assert_eq!(layers(c2), (fen("300.00"), 0, fen("490.00"), fen("210.00")));

    let s1b = &rows["S1b"];
    assert_eq!(s1b.assistance_base, fen("320.00"));
    assert_eq!(layers(s1b), (fen("680.00"), 0, 0, fen("420.00")));

    let s3 = &rows["S3"];
    assert_eq!(s3.critical_illness_base, fen("120480.00"));
    assert_eq!(s3.assistance_base, fen("60144.00"));
    assert_eq!(
        layers(s3),
        (
            fen("179520.00"),
            fen("60336.00"),
            fen("50000.00"),
            fen("10144.00")
        )
    );

    let s4 = &rows["S4"];
    assert_eq!(s4.assistance_base, 0);
    assert_eq!(layers(s4), (fen("680.00"), 0, 0, fen("420.00")));
}

// ---- Weihai: inpatient referrals and the 2023-05-01 switch ----

fn referred(c: Claim, referral: &'static str, community: &'static str) -> Claim {
    Claim {
        referral: Some(referral),
        community: Some(community),
        ..c
    }
}

#[test]
fn weihai_referrals_waive_the_admission_deductible() {
    // Residents, from 2023-05-01: deductible 200.00 / 500.00 per admission at grassroots /
    // level 2 (assumed), 85% (stated) / 70% (assumed).
    let persons = [
        person("P1", WEIHAI, "resident"),
        person("P2", WEIHAI, "resident"),
        person("P3", WEIHAI, "resident"),
    ];
    let first = |id, p| Claim {
        community: Some("M01"),
        ..stay(id, p, "2024-03-01", "primary", "I63.9", "5000.00")
    };
    let rows = settle(
        &persons,
        &[],
        &[
            // 5,000.00 at a grassroots member of community M01: 200.00, 4,800.00 × 85% = 4,080.00.
            first("A1", "P1"),
            // Referred up to a level-2 hospital of the same community, continuing the stay:
            // only the first admission's deductible counts, so none here: 10,000.00 × 70%.
            referred(
                stay("A2", "P1", "2024-03-05", "secondary", "I63.9", "10000.00"),
                "upward",
                "M01",
            ),
            // Referred down for recovery (to another community, which does not matter): no
            // deductible: 2,000.00 × 85% = 1,700.00.
            referred(
                stay("A3", "P1", "2024-03-20", "primary", "I63.9", "2000.00"),
                "downward",
                "M02",
            ),
            // P2 is referred up outside the community: the deductible follows the usual rule,
            // 500.00, then 9,500.00 × 70% = 6,650.00.
            first("B1", "P2"),
            referred(
                stay("B2", "P2", "2024-03-05", "secondary", "I63.9", "10000.00"),
                "upward",
                "M09",
            ),
            // P3 has no earlier stay to continue: the upward referral pays its deductible.
            referred(
                stay("C2", "P3", "2024-03-05", "secondary", "I63.9", "10000.00"),
                "upward",
                "M01",
            ),
        ],
    );
    let amounts = |c: &str| (rows[c].deductible, rows[c].fund);
    assert_eq!(amounts("A1"), (fen("200.00"), fen("4080.00")));
    assert_eq!(amounts("A2"), (0, fen("7000.00")));
    assert_eq!(amounts("A3"), (0, fen("1700.00")));
    assert_eq!(amounts("B2"), (fen("500.00"), fen("6650.00")));
    assert_eq!(amounts("C2"), (fen("500.00"), fen("6650.00")));
    assert_eq!(rows["A2"].policy_id.as_deref(), Some("weihai-2023-05"));
}

#[test]
fn weihai_grassroots_inpatient_rises_to_85_percent_on_2023_05_01() {
    let p = person("P1", WEIHAI, "resident");
    let rows = settle(
        &[p],
        &[registration("P1", "hypertension")],
        &[
            // 2023-04-30: the earlier version, grassroots 80% (assumed) after 200.00, and no
            // referral waiver yet: 800.00 × 80% = 640.00.
            referred(
                stay("S1", "P1", "2023-04-30", "primary", "I63.9", "1000.00"),
                "downward",
                "M01",
            ),
            // 2023-05-01: 85%, and the downward referral pays no deductible: 850.00.
            referred(
                stay("S2", "P1", "2023-05-01", "primary", "I63.9", "1000.00"),
                "downward",
                "M01",
            ),
            // A prescription written at level 2 and filled at a grassroots institution settles
            // at the grassroots two-diseases ratio, 70%.
            Claim {
                prescriber: Some("secondary"),
                ..claim("C3", "P1", "2023-05-02", "primary", "I10", "100.00")
            },
        ],
    );
    let s1 = &rows["S1"];
    assert_eq!(s1.policy_id.as_deref(), Some("weihai-2020"));
    assert_eq!(
        (s1.deductible, s1.ratio_bp, s1.fund),
        (fen("200.00"), Some(8000), fen("640.00"))
    );
    let s2 = &rows["S2"];
    assert_eq!(s2.policy_id.as_deref(), Some("weihai-2023-05"));
    assert_eq!(
        (s2.deductible, s2.ratio_bp, s2.fund),
        (0, Some(8500), fen("850.00"))
    );
    assert_eq!(
        (rows["C3"].ratio_bp, rows["C3"].fund),
        (Some(7000), fen("70.00"))
    );
}

#[test]
fn a_referral_continues_a_stay_settled_by_the_previous_run() {
    let persons = [person("P1", WEIHAI, "resident")];
    let m1 = [Claim {
        community: Some("M01"),
        ..stay("A1", "P1", "2024-03-30", "primary", "I63.9", "5000.00")
    }];
    let m2 = [referred(
        stay("A2", "P1", "2024-04-02", "secondary", "I63.9", "10000.00"),
        "upward",
        "M01",
    )];
    let (_, split, whole) = split_and_whole(&persons, &[], &m1, &m2);
    assert_eq!(
        (split["A2"].deductible, split["A2"].fund),
        (0, fen("7000.00"))
    );
    assert_eq!(split["A2"], whole["A2"]);
}

// ---- Policy checks of the new tables ----

#[test]
fn layer_tables_refuse_bad_bands_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(policies_dir().join("ezhou.toml")).unwrap();
    let check = |text: String| {
        std::fs::write(dir.path().join("ezhou.toml"), text).unwrap();
        yibao::policy::Policies::load_dir(dir.path())
            .unwrap_err()
            .to_string()
    };
    let e = check(text.replacen(
        "{ above = 100000, ratio = 0.70 }",
        "{ above = 0, ratio = 0.70 }",
        1,
    ));
    assert!(
        e.contains("critical_illness[0].bands[1].above") && e.contains("rise strictly"),
        "{e}"
    );
    let e = check(text.replacen(
        "category = \"minimum_living\"",
        "category = \"destitute\"",
        1,
    ));
    assert!(
        e.contains("assistance[1].category") && e.contains("second assistance table"),
        "{e}"
    );
    let e = check(text.replacen("deductible_per = \"admission\"\n", "", 1));
    assert!(e.contains("deductible_per"), "{e}");
}

#[test]
fn an_upward_referral_continues_only_a_recent_stay_that_still_counts() {
    let persons = [
        person("P1", WEIHAI, "resident"),
        person("P2", WEIHAI, "resident"),
    ];
    let first = |id, p, date| Claim {
        community: Some("M01"),
        ..stay(id, p, date, "primary", "I63.9", "5000.00")
    };
    let rows = settle(
        &persons,
        &[],
        &[
            // P1's first stay is refunded: the referred stay continues nothing and pays its own
            // 500.00 deductible: 9,500.00 × 70% = 6,650.00.
            first("A1", "P1", "2024-03-01"),
            Claim {
                total: "-5000.00",
                in_scope: "-5000.00",
                reverses: Some("A1"),
                ..first("R1", "P1", "2024-03-02")
            },
            referred(
                stay("A2", "P1", "2024-03-05", "secondary", "I63.9", "10000.00"),
                "upward",
                "M01",
            ),
            // P2's earlier stay ended 31 days before: not continuous (30 days, assumed).
            first("B1", "P2", "2024-02-01"),
            referred(
                stay("B2", "P2", "2024-03-03", "secondary", "I63.9", "10000.00"),
                "upward",
                "M01",
            ),
        ],
    );
    assert_eq!(
        (rows["A2"].deductible, rows["A2"].fund),
        (fen("500.00"), fen("6650.00"))
    );
    assert_eq!(
        (rows["B2"].deductible, rows["B2"].fund),
        (fen("500.00"), fen("6650.00"))
    );
}

#[test]
fn jiaxing_employees_absorb_one_outpatient_deductible() {
    // Clause 11: the chronic benefit's deductible is the general-outpatient one (1,000.00,
    // assumed), absorbed once across both benefits.
    let p = person("P1", "330400", "employee");
    let rows = settle(
        &[p],
        &[registration("P1", "hypertension")],
        &[
            // 600.00 chronic: all deductible.
            claim("C1", "P1", "2024-03-01", "primary", "I10", "600.00"),
            // 1,000.00 general outpatient: the last 400.00 of the deductible, then 600.00 at the
            // assumed employees' grassroots 70% = 420.00.
            Claim {
                drug: None,
                ..claim("C2", "P1", "2024-03-02", "primary", "J06.9", "1000.00")
            },
            // Chronic again: nothing left to absorb, 100.00 × 83% = 83.00.
            claim("C3", "P1", "2024-03-03", "primary", "I10", "100.00"),
        ],
    );
    assert_eq!((rows["C1"].deductible, rows["C1"].fund), (fen("600.00"), 0));
    assert_eq!(
        (rows["C2"].deductible, rows["C2"].fund),
        (fen("400.00"), fen("420.00"))
    );
    assert_eq!((rows["C3"].deductible, rows["C3"].fund), (0, fen("83.00")));
}

#[test]
fn benefit_tables_refuse_settings_that_would_settle_wrongly() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(policies_dir().join("weihai.toml")).unwrap();
    let check = |text: String| {
        std::fs::write(dir.path().join("weihai.toml"), text).unwrap();
        yibao::policy::Policies::load_dir(dir.path())
            .unwrap_err()
            .to_string()
    };
    // A per-admission deductible on outpatient claims.
    let e = check(text.replacen("visit_types = [\"inpatient\"]\n", "", 1));
    assert!(
        e.contains("deductible_per") && e.contains("inpatient"),
        "{e}"
    );
    let e = check(text.replacen("visit_types = [\"inpatient\"]", "visit_types = []", 1));
    assert!(e.contains("visit_types"), "{e}");
    let e = check(text.replacen("annual_cap = 400000", "annual_cap = 0", 1));
    assert!(e.contains("critical_illness[0].annual_cap"), "{e}");
    // The same pool counted per admission in one version and per year in the next.
    let last = text.rfind("deductible_per = \"admission\"").unwrap();
    let (head, tail) = text.split_at(last);
    let tail = tail
        .replacen("deductible_per = \"admission\"", "", 1)
        .replacen(
            "deductible = { primary = 300, secondary = 600, tertiary = 900 }",
            "deductible = 300",
            1,
        )
        .replacen(
            "referral_waiver = { upward_in_community = true, downward = true, within_days = 30 }",
            "",
            1,
        )
        .replacen(", \"referral_waiver.within_days\" = \"not stated; the document says only continuous hospitalisation\"", "", 1);
    let e = check(format!("{head}{tail}"));
    assert!(
        e.contains("counts its deductible or cap differently"),
        "{e}"
    );
}
