//! One test per settlement rule of POLICY-DIGEST.md, with the fen amounts worked out by hand
//! from the source clause. Each test settles a tiny province through the library.

mod common;

use common::*;

const JIAXING: &str = "330400";
const EZHOU: &str = "420700";
const WEIHAI: &str = "371000";
const RIZHAO: &str = "371100";

fn settle_one(
    p: Person,
    regs: &[Registration],
    claims: &[Claim],
) -> std::collections::BTreeMap<String, Row> {
    let rows = Scenario::new(&[p], regs, claims).settle();
    for r in rows.values() {
        assert_identities(r);
    }
    rows
}

// ---- Jiaxing clause 11, residents: grassroots 60%, secondary 50%, pharmacy 53%, cap 1,800 ----

#[test]
fn jiaxing_resident_ratios_by_level() {
    let p = person("P1", JIAXING, "resident");
    let regs = [registration("P1", "hypertension")];
    let claims = [
        // 100.00 at grassroots: 60% = 60.00, copay 40.00, cap left 1800 − 60 = 1740.00.
        claim("C1", "P1", "2024-03-01", "primary", "I10", "100.00"),
        // 100.00 at level 2: 50% = 50.00, cap left 1690.00.
        claim("C2", "P1", "2024-03-02", "secondary", "I10", "100.00"),
        // 123.45 at a chain pharmacy: 53% = 65.4285 → 65.43, copay 58.02.
        Claim {
            prescriber: Some("tertiary"),
            ..claim("C3", "P1", "2024-03-03", "pharmacy", "I11.9", "123.45")
        },
        // Tertiary is not listed in clause 11: the chronic benefit does not pay; general
        // outpatient (clause 12) does, at its assumed residents' tertiary 30%: 30.00, its own
        // cap of 500.00 left at 470.00.
        claim("C4", "P1", "2024-03-04", "tertiary", "I10", "100.00"),
    ];
    let rows = settle_one(p, &regs, &claims);
    let c1 = &rows["C1"];
    assert_eq!(
        (c1.status.as_str(), c1.fund, c1.copay),
        ("paid", fen("60.00"), fen("40.00"))
    );
    assert_eq!(c1.ratio_bp, Some(6000));
    assert_eq!(c1.cap_remaining, Some(fen("1740.00")));
    assert_eq!(
        c1.benefit.as_deref(),
        Some("chronic_outpatient.hypertension")
    );
    assert_eq!(c1.policy_id.as_deref(), Some("jiaxing-2021"));
    assert_eq!(rows["C2"].fund, fen("50.00"));
    assert_eq!(rows["C2"].cap_remaining, Some(fen("1690.00")));
    assert_eq!(
        (rows["C3"].fund, rows["C3"].copay),
        (fen("65.43"), fen("58.02"))
    );
    assert_eq!(rows["C3"].ratio_bp, Some(5300));
    let c4 = &rows["C4"];
    assert_eq!(c4.status, "paid");
    assert_eq!(c4.benefit.as_deref(), Some("general_outpatient"));
    assert_eq!(c4.condition_reason.as_deref(), Some("level_not_covered"));
    assert_eq!(
        (c4.eligible, c4.fund, c4.copay, c4.cap_remaining),
        (
            fen("100.00"),
            fen("30.00"),
            fen("70.00"),
            Some(fen("470.00"))
        )
    );
    // The chronic cap is untouched by the general-outpatient claim.
    assert_eq!(c4.ratio_bp, Some(3000));
    assert_eq!(c1.condition_reason, None);
}

#[test]
fn jiaxing_cap_of_1800_binds_on_the_crossing_claim() {
    let p = person("P1", JIAXING, "resident");
    let regs = [registration("P1", "diabetes")];
    let claims = [
        // 1,000.00 at 60% = 600.00; cap left 1,200.00.
        claim("C1", "P1", "2024-03-01", "primary", "E11.9", "1000.00"),
        // 1,500.00 at 60% = 900.00; cap left 300.00.
        claim("C2", "P1", "2024-03-02", "primary", "E11.9", "1500.00"),
        // 1,000.00 would pay 600.00; only 300.00 left: fund 300.00,
        // covered = round(300.00 / 0.6) = 500.00, copay 200.00, over cap 500.00.
        claim("C3", "P1", "2024-03-03", "primary", "E11.9", "1000.00"),
        // Cap exhausted: 50.00 is all over the cap.
        claim("C4", "P1", "2024-03-04", "primary", "E11.9", "50.00"),
    ];
    let rows = settle_one(p, &regs, &claims);
    assert_eq!(rows["C2"].cap_remaining, Some(fen("300.00")));
    let c3 = &rows["C3"];
    assert_eq!(c3.status, "capped");
    assert_eq!(c3.reason.as_deref(), Some("annual_cap_reached"));
    assert_eq!(
        (c3.fund, c3.copay, c3.over_cap),
        (fen("300.00"), fen("200.00"), fen("500.00"))
    );
    assert_eq!(c3.cap_remaining, Some(0));
    // Critical illness takes the personal in-scope share and the above-cap cost (clause 12).
    assert_eq!(c3.critical_illness_base, fen("700.00"));
    let c4 = &rows["C4"];
    assert_eq!(
        (c4.status.as_str(), c4.fund, c4.over_cap),
        ("capped", 0, fen("50.00"))
    );
}

#[test]
fn jiaxing_single_cap_is_shared_by_hypertension_and_diabetes() {
    let p = person("P1", JIAXING, "resident");
    let regs = [
        registration("P1", "hypertension"),
        registration("P1", "diabetes"),
    ];
    let claims = [
        // Hypertension 2,500.00 at 60% = 1,500.00; shared cap left 300.00.
        claim("C1", "P1", "2024-03-01", "primary", "I10", "2500.00"),
        // Diabetes 1,000.00 at level 2 (50%) would pay 500.00: only 300.00 left.
        // covered = 300.00 / 0.5 = 600.00, copay 300.00, over cap 400.00.
        claim("C2", "P1", "2024-03-02", "secondary", "E11", "1000.00"),
    ];
    let rows = settle_one(p, &regs, &claims);
    assert_eq!(rows["C1"].cap_remaining, Some(fen("300.00")));
    let c2 = &rows["C2"];
    assert_eq!(c2.benefit.as_deref(), Some("chronic_outpatient.diabetes"));
    assert_eq!(
        (c2.fund, c2.copay, c2.over_cap),
        (fen("300.00"), fen("300.00"), fen("400.00"))
    );
}

#[test]
fn jiaxing_requires_a_family_doctor() {
    // Clause 8: only persons signed with a family doctor.
    let p = Person {
        family_doctor: Some(false),
        ..person("P1", JIAXING, "resident")
    };
    let rows = settle_one(
        p,
        &[registration("P1", "hypertension")],
        &[claim("C1", "P1", "2024-03-01", "primary", "I10", "100.00")],
    );
    // The two-diseases benefit does not pay; general outpatient does, at grassroots 50%.
    let c1 = &rows["C1"];
    assert_eq!(
        (c1.benefit.as_deref(), c1.fund),
        (Some("general_outpatient"), fen("50.00"))
    );
    assert_eq!(c1.condition_reason.as_deref(), Some("no_family_doctor"));
    // A null family_doctor_signed reads as false.
    let p = Person {
        family_doctor: None,
        ..person("P1", JIAXING, "resident")
    };
    let rows = settle_one(
        p,
        &[registration("P1", "hypertension")],
        &[claim("C1", "P1", "2024-03-01", "primary", "I10", "100.00")],
    );
    assert_eq!(
        rows["C1"].condition_reason.as_deref(),
        Some("no_family_doctor")
    );
}

#[test]
fn jiaxing_employee_pays_above_the_deductible_at_83_percent() {
    // Clause 11, employees: above the general-outpatient deductible (assumed 1,000.00):
    // 1,200.00 at grassroots: deductible 1,000.00, base 200.00 × 83% = 166.00, copay 34.00.
    // Then 100.00 at a pharmacy: deductible used up, 83% = 83.00.
    // Then 100.00 at level 3: "other institutions" 50% = 50.00.
    let p = person("P1", JIAXING, "employee");
    let rows = settle_one(
        p,
        &[registration("P1", "hypertension")],
        &[
            claim("C1", "P1", "2024-03-01", "primary", "I10", "1200.00"),
            Claim {
                prescriber: Some("primary"),
                ..claim("C2", "P1", "2024-03-02", "pharmacy", "I10", "100.00")
            },
            claim("C3", "P1", "2024-03-03", "tertiary", "I10", "100.00"),
        ],
    );
    let c1 = &rows["C1"];
    assert_eq!(
        (c1.deductible, c1.fund, c1.copay),
        (fen("1000.00"), fen("166.00"), fen("34.00"))
    );
    assert_eq!(c1.critical_illness_base, fen("1034.00"));
    assert_eq!((rows["C2"].deductible, rows["C2"].fund), (0, fen("83.00")));
    assert_eq!(rows["C3"].fund, fen("50.00"));
}

// ---- Ezhou: ratios by level and scheme, tiers, secondary condition, pharmacy, supplementary ----

#[test]
fn ezhou_resident_ratios_by_level_and_pharmacy_at_prescriber_level() {
    let p = person("P1", EZHOU, "resident");
    let rows = settle_one(
        p,
        &[registration("P1", "hypertension")],
        &[
            // Clause 4(1): 60% / 50% / 40% of 100.00.
            claim("C1", "P1", "2024-03-01", "primary", "I10", "100.00"),
            claim("C2", "P1", "2024-03-02", "secondary", "I10", "100.00"),
            claim("C3", "P1", "2024-03-03", "tertiary", "I10", "100.00"),
            // Clause 4(5): a pharmacy fill of a level-2 prescription pays level 2's 50%.
            Claim {
                prescriber: Some("secondary"),
                ..claim("C4", "P1", "2024-03-04", "pharmacy", "I10", "100.00")
            },
            // No prescriber level: the ratio cannot be determined.
            claim("C5", "P1", "2024-03-05", "pharmacy", "I10", "100.00"),
        ],
    );
    assert_eq!(rows["C1"].fund, fen("60.00"));
    assert_eq!(rows["C2"].fund, fen("50.00"));
    assert_eq!(rows["C3"].fund, fen("40.00"));
    assert_eq!(
        (rows["C4"].fund, rows["C4"].ratio_bp),
        (fen("50.00"), Some(5000))
    );
    assert_eq!(rows["C5"].status, "not_covered");
    assert_eq!(
        rows["C5"].reason.as_deref(),
        Some("missing_prescriber_level")
    );
    // Cap 1,000.00 per condition: 1000 − 60 − 50 − 40 − 50 = 800.00 left.
    assert_eq!(rows["C4"].cap_remaining, Some(fen("800.00")));
    assert_eq!(
        rows["C1"].benefit.as_deref(),
        Some("two_diseases.hypertension")
    );
}

#[test]
fn ezhou_employee_tier80_secondary_condition_halves_ratio() {
    // Clause 4(2) and 4(4): level 2 employee ratio 80%, tier 80 → 75%, secondary → × 50% = 37.5%.
    // 1,000.00 × 37.5% = 375.00. The primary condition at level 1: 90% − 5% = 85% of 100.00.
    let p = Person {
        tier: Some(80),
        ..person("P1", EZHOU, "employee")
    };
    let regs = [
        Registration {
            primary: Some(true),
            ..registration("P1", "hypertension")
        },
        Registration {
            primary: Some(false),
            ..registration("P1", "diabetes")
        },
    ];
    let rows = settle_one(
        p,
        &regs,
        &[
            claim("C1", "P1", "2024-03-01", "secondary", "E11.9", "1000.00"),
            claim("C2", "P1", "2024-03-02", "primary", "I10", "100.00"),
        ],
    );
    assert_eq!(
        (rows["C1"].ratio_bp, rows["C1"].fund),
        (Some(3750), fen("375.00"))
    );
    // Each condition keeps its own employee cap of 2,000.00.
    assert_eq!(rows["C1"].cap_remaining, Some(fen("1625.00")));
    assert_eq!(
        (rows["C2"].ratio_bp, rows["C2"].fund),
        (Some(8500), fen("85.00"))
    );
    assert_eq!(rows["C2"].cap_remaining, Some(fen("1915.00")));
}

#[test]
fn ezhou_employee_tier60_is_ten_points_lower() {
    // Clause 4(2): 60% standard: 90% − 10% = 80% at level 1; 70% − 10% = 60% at level 3.
    let p = Person {
        tier: Some(60),
        ..person("P1", EZHOU, "employee")
    };
    let rows = settle_one(
        p,
        &[registration("P1", "diabetes")],
        &[
            claim("C1", "P1", "2024-03-01", "primary", "E11", "100.00"),
            claim("C2", "P1", "2024-03-02", "tertiary", "E11", "100.00"),
        ],
    );
    assert_eq!(rows["C1"].fund, fen("80.00"));
    assert_eq!(rows["C2"].fund, fen("60.00"));
}

#[test]
fn ezhou_supplementary_replaces_employee_without_tier_reduction() {
    // Clause 4(3): supplementary 95% at level 1, cap 2,500.00; the tier-80 reduction of 4(2)
    // does not apply. 3,000.00 would pay 2,850.00 > 2,500.00: fund 2,500.00,
    // covered = round(2,500.00 / 0.95) = 2,631.58, copay 131.58, over cap 368.42.
    let p = Person {
        supplementary: Some(true),
        tier: Some(80),
        ..person("P1", EZHOU, "employee")
    };
    let rows = settle_one(
        p,
        &[registration("P1", "hypertension")],
        &[claim("C1", "P1", "2024-03-01", "primary", "I10", "3000.00")],
    );
    let c1 = &rows["C1"];
    assert_eq!(c1.ratio_bp, Some(9500));
    assert_eq!(c1.status, "capped");
    assert_eq!(
        (c1.fund, c1.copay, c1.over_cap),
        (fen("2500.00"), fen("131.58"), fen("368.42"))
    );
}

#[test]
fn ezhou_severe_registration_has_the_higher_cap() {
    // Clause 4(1): severe resident cap 2,000.00. 4,000.00 at 60% would pay 2,400.00:
    // fund 2,000.00, covered round(2,000.00 / 0.6) = 3,333.33, copay 1,333.33, over 666.67.
    let p = person("P1", EZHOU, "resident");
    let regs = [Registration {
        severity: Some("severe"),
        ..registration("P1", "hypertension")
    }];
    let rows = settle_one(
        p,
        &regs,
        &[claim("C1", "P1", "2024-03-01", "primary", "I10", "4000.00")],
    );
    let c1 = &rows["C1"];
    assert_eq!(
        c1.benefit.as_deref(),
        Some("two_diseases_severe.hypertension")
    );
    assert_eq!(
        (c1.fund, c1.copay, c1.over_cap),
        (fen("2000.00"), fen("1333.33"), fen("666.67"))
    );
}

// ---- Weihai: the 2023-05-01 switch to 70% at grassroots, cap carried across versions ----

#[test]
fn weihai_grassroots_ratio_rises_to_70_percent_on_2023_05_01() {
    let p = person("P1", WEIHAI, "resident");
    let rows = settle_one(
        p,
        &[registration("P1", "hypertension")],
        &[
            // 2023-04-30: assumed 50%: 400.00 → 200.00; cap 300.00 (assumed) leaves 100.00.
            claim("C1", "P1", "2023-04-30", "primary", "I10", "400.00"),
            // 2023-05-01: 70%: 200.00 would pay 140.00, only 100.00 left: fund 100.00,
            // covered round(100.00 / 0.7) = 142.86, copay 42.86, over cap 57.14.
            claim("C2", "P1", "2023-05-01", "primary", "I10", "200.00"),
        ],
    );
    assert_eq!(rows["C1"].policy_id.as_deref(), Some("weihai-2020"));
    assert_eq!(
        (rows["C1"].fund, rows["C1"].ratio_bp),
        (fen("200.00"), Some(5000))
    );
    let c2 = &rows["C2"];
    assert_eq!(c2.policy_id.as_deref(), Some("weihai-2023-05"));
    assert_eq!(c2.ratio_bp, Some(7000));
    assert_eq!(
        (c2.fund, c2.copay, c2.over_cap),
        (fen("100.00"), fen("42.86"), fen("57.14"))
    );
}

#[test]
fn weihai_level2_prescription_filled_at_grassroots_pays_grassroots_ratio() {
    // A prescription from level 2 filled at a grassroots institution: institution_level is
    // primary, so the 70% grassroots ratio applies (not level 2's 50%).
    let p = person("P1", WEIHAI, "resident");
    let rows = settle_one(
        p,
        &[registration("P1", "diabetes")],
        &[Claim {
            prescriber: Some("secondary"),
            ..claim("C1", "P1", "2024-03-01", "primary", "E11", "100.00")
        }],
    );
    assert_eq!(rows["C1"].fund, fen("70.00"));
}

#[test]
fn weihai_employees_have_no_two_diseases_benefit() {
    let p = person("P1", WEIHAI, "employee");
    let rows = settle_one(
        p,
        &[registration("P1", "diabetes")],
        &[claim("C1", "P1", "2024-03-01", "primary", "E11", "100.00")],
    );
    // General outpatient takes it instead; its assumed employees' deductible of 1,000.00
    // absorbs all of the 100.00.
    let c1 = &rows["C1"];
    assert_eq!(c1.condition_reason.as_deref(), Some("scheme_not_covered"));
    assert_eq!(
        (c1.benefit.as_deref(), c1.deductible, c1.fund),
        (Some("general_outpatient"), fen("100.00"), 0)
    );
}

// ---- Rizhao: benefits start the day after approval ----

#[test]
fn rizhao_benefits_start_the_day_after_approval() {
    let p = person("P1", RIZHAO, "resident");
    let regs = [Registration {
        approved_on: "2024-03-10",
        ..registration("P1", "malignant_tumour")
    }];
    let rows = settle_one(
        p,
        &regs,
        &[
            claim("C1", "P1", "2024-03-10", "tertiary", "C34.9", "1000.00"),
            // Next day: assumed chronic-special 60% at level 3 = 600.00.
            claim("C2", "P1", "2024-03-11", "tertiary", "C34.9", "1000.00"),
        ],
    );
    // On the approval day the chronic benefit does not pay yet: general outpatient does, at
    // its assumed residents' tertiary 30% = 300.00.
    assert_eq!(
        rows["C1"].condition_reason.as_deref(),
        Some("before_benefit_start")
    );
    assert_eq!(
        (rows["C1"].benefit.as_deref(), rows["C1"].fund),
        (Some("general_outpatient"), fen("300.00"))
    );
    assert_eq!(rows["C2"].fund, fen("600.00"));
    assert_eq!(rows["C2"].condition_reason, None);
    assert_eq!(
        rows["C2"].benefit.as_deref(),
        Some("chronic_special.malignant_tumour")
    );
}

#[test]
fn registration_window_and_diagnosis_reasons() {
    let p = person("P1", EZHOU, "resident");
    let regs = [Registration {
        approved_on: "2024-03-05",
        ended_on: Some("2024-03-20"),
        ..registration("P1", "hypertension")
    }];
    let rows = settle_one(
        p,
        &regs,
        &[
            // Ezhou pays from the approval day itself.
            claim("C1", "P1", "2024-03-04", "primary", "I10", "100.00"),
            claim("C2", "P1", "2024-03-05", "primary", "I10", "100.00"),
            claim("C3", "P1", "2024-03-20", "primary", "I10", "100.00"),
            claim("C4", "P1", "2024-03-21", "primary", "I10", "100.00"),
            claim("C5", "P1", "2024-03-06", "primary", "E11", "100.00"),
            claim("C6", "P1", "2024-03-06", "primary", "J06.9", "100.00"),
        ],
    );
    // Outside the two-diseases benefit each claim falls to general outpatient (assumed
    // residents' grassroots 50%: 50.00), with the reason the condition benefit did not pay.
    let reason = |c: &str| rows[c].condition_reason.clone();
    for c in ["C1", "C4", "C5", "C6"] {
        assert_eq!(
            rows[c].benefit.as_deref(),
            Some("general_outpatient"),
            "{c}"
        );
        assert_eq!(
            (rows[c].status.as_str(), rows[c].fund),
            ("paid", fen("50.00"))
        );
    }
    // Settlement order C1, C5, C6, C4: four claims of 50.00 against the 500.00 cap.
    assert_eq!(rows["C4"].cap_remaining, Some(fen("300.00")));
    assert_eq!(reason("C1").as_deref(), Some("before_benefit_start"));
    assert_eq!(rows["C2"].fund, fen("60.00"));
    assert_eq!(rows["C3"].fund, fen("60.00"));
    assert_eq!(reason("C4").as_deref(), Some("registration_ended"));
    assert_eq!(reason("C5").as_deref(), Some("not_registered"));
    assert_eq!(reason("C6").as_deref(), Some("diagnosis_not_covered"));
    assert_eq!(rows["C6"].policy_id.as_deref(), Some("ezhou-2022"));
}

// ---- Reversals and the year boundary ----

#[test]
fn reversal_gives_the_cap_back() {
    // Ezhou resident normal cap 1,000.00. C1 1,500.00 at 60% = 900.00 (100.00 left).
    // R1 reverses C1: −900.00, cap left back to 1,000.00. C2 1,000.00 at 60% = 600.00, paid in
    // full (it would have been capped at 100.00 without the reversal); 400.00 left.
    let p = person("P1", EZHOU, "resident");
    let rows = settle_one(
        p,
        &[registration("P1", "hypertension")],
        &[
            claim("C1", "P1", "2024-03-01", "primary", "I10", "1500.00"),
            Claim {
                total: "-1500.00",
                in_scope: "-1500.00",
                reverses: Some("C1"),
                ..claim("R1", "P1", "2024-03-02", "primary", "I10", "0")
            },
            claim("C2", "P1", "2024-03-03", "primary", "I10", "1000.00"),
        ],
    );
    let r1 = &rows["R1"];
    assert_eq!(r1.status, "reversal");
    assert_eq!(r1.reason.as_deref(), Some("reverses_claim"));
    assert_eq!(r1.benefit.as_deref(), Some("two_diseases.hypertension"));
    assert_eq!(
        (r1.eligible, r1.fund, r1.copay),
        (fen("-1500.00"), fen("-900.00"), fen("-600.00"))
    );
    assert_eq!(r1.cap_remaining, Some(fen("1000.00")));
    assert_eq!(r1.ratio_bp, Some(6000));
    assert_eq!(
        (rows["C2"].status.as_str(), rows["C2"].fund),
        ("paid", fen("600.00"))
    );
    assert_eq!(rows["C2"].cap_remaining, Some(fen("400.00")));
}

#[test]
fn reversal_problems_are_rejected() {
    let p = person("P1", EZHOU, "resident");
    let reversal = |id: &'static str, of: &'static str, amount: &'static str| Claim {
        total: amount,
        in_scope: amount,
        reverses: Some(of),
        ..claim(id, "P1", "2024-03-10", "primary", "I10", "0")
    };
    let rows = settle_one(
        p,
        &[registration("P1", "hypertension")],
        &[
            claim("C1", "P1", "2024-03-01", "primary", "I10", "100.00"),
            reversal("R0", "NOPE", "-100.00"),
            reversal("R1", "C1", "-90.00"),
            reversal("R2", "C1", "-100.00"),
            Claim {
                settled_at: "2024-03-11",
                ..reversal("R3", "C1", "-100.00")
            },
        ],
    );
    assert_eq!(rows["R0"].reason.as_deref(), Some("original_not_found"));
    assert_eq!(
        rows["R1"].reason.as_deref(),
        Some("reversal_amount_mismatch")
    );
    assert_eq!(rows["R2"].status, "reversal");
    assert_eq!(rows["R3"].reason.as_deref(), Some("already_reversed"));
    for id in ["R0", "R1", "R3"] {
        assert_eq!(rows[id].status, "rejected");
    }
}

#[test]
fn new_year_resets_the_cap() {
    // Ezhou resident cap 1,000.00: 2,000.00 on 2023-12-30 uses all of it (capped at 1,000.00).
    // A claim settled on 2024-01-02 starts the 2024 cap: 100.00 × 60% = 60.00, 940.00 left.
    // A claim served on 2023-12-31 but settled in January still counts against 2023.
    let p = person("P1", EZHOU, "resident");
    let rows = settle_one(
        p,
        &[registration("P1", "hypertension")],
        &[
            claim("C1", "P1", "2023-12-30", "primary", "I10", "2000.00"),
            claim("C2", "P1", "2024-01-02", "primary", "I10", "100.00"),
            Claim {
                service_date: Some("2023-12-31"),
                ..claim("C3", "P1", "2024-01-03", "primary", "I10", "100.00")
            },
        ],
    );
    assert_eq!(
        (rows["C1"].status.as_str(), rows["C1"].fund),
        ("capped", fen("1000.00"))
    );
    assert_eq!(
        (rows["C2"].status.as_str(), rows["C2"].fund),
        ("paid", fen("60.00"))
    );
    assert_eq!(rows["C2"].cap_remaining, Some(fen("940.00")));
    assert_eq!((rows["C3"].status.as_str(), rows["C3"].fund), ("capped", 0));
}

#[test]
fn assistance_categories_get_an_assistance_base() {
    // Weihai's assistance paragraph: the in-scope personal share, below-deductible and above-cap
    // cost go to medical assistance. Jiaxing employee, minimum-living: 1,200.00 → deductible
    // 1,000.00 + copay 34.00 = 1,034.00 handed on; the self-funded 50.00 is not in scope.
    let p = Person {
        assistance: Some("minimum_living"),
        ..person("P1", JIAXING, "employee")
    };
    let rows = settle_one(
        p,
        &[registration("P1", "hypertension")],
        &[Claim {
            total: "1250.00",
            ..claim("C1", "P1", "2024-03-01", "primary", "I10", "1200.00")
        }],
    );
    let c1 = &rows["C1"];
    assert_eq!(c1.self_funded, fen("50.00"));
    assert_eq!(c1.assistance_base, fen("1034.00"));
    assert_eq!(c1.critical_illness_base, fen("1034.00"));
}

#[test]
fn unknown_person_and_region_are_not_covered() {
    let persons = [person("P1", "110000", "resident")];
    let rows = Scenario::new(
        &persons,
        &[registration("P1", "hypertension")],
        &[
            claim("C1", "P1", "2024-03-01", "primary", "I10", "100.00"),
            claim("C2", "P9", "2024-03-01", "primary", "I10", "100.00"),
        ],
    )
    .settle();
    assert_eq!(rows["C1"].reason.as_deref(), Some("no_policy_for_region"));
    assert_eq!(rows["C1"].policy_id, None);
    assert_eq!(rows["C2"].reason.as_deref(), Some("unknown_person"));
}

// ---- Jin'an and Rizhao: assumed residents' rates by level ----

#[test]
fn jinan_two_diseases_and_chronic_special_by_level() {
    // Assumed Anhui rates: two-diseases 60% / 55% / 50%, chronic special 70% / 65% / 60%.
    // Heart failure 1,000.00 at level 2: 650.00, cap 3,000.00 leaves 2,350.00.
    let p = person("P1", "341502", "resident");
    let rows = settle_one(
        p,
        &[
            registration("P1", "diabetes"),
            registration("P1", "heart_failure"),
        ],
        &[
            claim("C1", "P1", "2024-03-01", "primary", "E11", "100.00"),
            claim("C2", "P1", "2024-03-02", "secondary", "E11", "100.00"),
            claim("C3", "P1", "2024-03-03", "tertiary", "E11", "100.00"),
            claim("C4", "P1", "2024-03-04", "secondary", "I50.0", "1000.00"),
        ],
    );
    assert_eq!(rows["C1"].fund, fen("60.00"));
    assert_eq!(rows["C2"].fund, fen("55.00"));
    assert_eq!(rows["C3"].fund, fen("50.00"));
    // Two-diseases cap 500.00 per condition: 500 − 60 − 55 − 50 = 335.00.
    assert_eq!(rows["C3"].cap_remaining, Some(fen("335.00")));
    let c4 = &rows["C4"];
    assert_eq!(c4.benefit.as_deref(), Some("chronic_special.heart_failure"));
    assert_eq!(
        (c4.fund, c4.cap_remaining),
        (fen("650.00"), Some(fen("2350.00")))
    );
    assert_eq!(c4.policy_id.as_deref(), Some("jinan-2023"));
}

#[test]
fn rizhao_two_diseases_by_level_with_a_300_cap() {
    // Assumed: 60% / 55% / 50%, hypertension cap 300.00. 200.00 at level 2 → 110.00 (190.00
    // left); 400.00 at level 1 would pay 240.00: fund 190.00, covered round(190.00 / 0.6) =
    // 316.67, copay 126.67, over cap 83.33.
    let p = person("P1", RIZHAO, "resident");
    let regs = [Registration {
        approved_on: "2024-01-01",
        ..registration("P1", "hypertension")
    }];
    let rows = settle_one(
        p,
        &regs,
        &[
            claim("C1", "P1", "2024-03-01", "secondary", "I10", "200.00"),
            claim("C2", "P1", "2024-03-02", "primary", "I10", "400.00"),
        ],
    );
    assert_eq!(
        (rows["C1"].fund, rows["C1"].cap_remaining),
        (fen("110.00"), Some(fen("190.00")))
    );
    let c2 = &rows["C2"];
    assert_eq!(
        (c2.fund, c2.copay, c2.over_cap),
        (fen("190.00"), fen("126.67"), fen("83.33"))
    );
}
