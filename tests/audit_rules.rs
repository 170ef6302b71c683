//! One test per audit rule: a hand-built case that fires, with its evidence, and a near miss
//! that does not. Thresholds are the policy files' `[versions.audit]` tables.

mod common;

use common::*;

const EZHOU: &str = "420700";
const WEIHAI: &str = "371000";
const RIZHAO: &str = "371100";

struct Run {
    rows: std::collections::BTreeMap<String, Row>,
    flags: Vec<Flag>,
}

impl Run {
    fn new(persons: &[Person], regs: &[Registration], claims: &[Claim]) -> Run {
        let s = Scenario::new(persons, regs, claims);
        let rows = s.settle();
        let flags = read_anomalies(&s.path("out/anomalies.parquet"));
        Run { rows, flags }
    }

    fn codes(&self, claim: &str) -> Vec<&str> {
        self.rows[claim]
            .anomaly_codes
            .iter()
            .map(String::as_str)
            .collect()
    }

    fn flag(&self, claim: &str, rule: &str) -> &Flag {
        self.flags
            .iter()
            .find(|f| f.claim_id == claim && f.rule == rule)
            .unwrap_or_else(|| panic!("{claim} has no {rule} flag: {:?}", self.codes(claim)))
    }
}

/// A fill of `drug` for `days` on `date`, at 100.00 (amounts vary by `cents` to keep fills
/// apart from duplicates).
fn fill(id: &'static str, person: &'static str, date: &'static str, days: i32) -> Claim {
    Claim {
        days_supply: Some(days),
        ..claim(id, person, date, "primary", "I10", "100.00")
    }
}

fn registered(p: &'static str) -> Registration {
    registration(p, "hypertension")
}

#[test]
fn early_refill_fires_with_more_than_15_days_left() {
    let persons = [
        person("P1", EZHOU, "resident"),
        person("P2", EZHOU, "resident"),
        person("P3", EZHOU, "resident"),
    ];
    let run = Run::new(
        &persons,
        &[registered("P1"), registered("P2"), registered("P3")],
        &[
            // 30 days from 03-01 last to 03-31; refilled on 03-10 with 21 days left.
            fill("A1", "P1", "2024-03-01", 30),
            Claim {
                total: "101.00",
                in_scope: "101.00",
                ..fill("A2", "P1", "2024-03-10", 30)
            },
            // Near miss: refilled on 03-16 with exactly 15 days left.
            fill("B1", "P2", "2024-03-01", 30),
            Claim {
                total: "101.00",
                in_scope: "101.00",
                ..fill("B2", "P2", "2024-03-16", 30)
            },
            // Near miss: the first fill was refunded before the refill.
            fill("C1", "P3", "2024-03-01", 30),
            Claim {
                total: "-100.00",
                in_scope: "-100.00",
                reverses: Some("C1"),
                ..fill("R1", "P3", "2024-03-02", 30)
            },
            fill("C2", "P3", "2024-03-05", 30),
        ],
    );
    let f = run.flag("A2", "early_refill");
    assert_eq!((f.value_count, f.threshold_count), (Some(21), Some(15)));
    assert_eq!(f.related_claim_id.as_deref(), Some("A1"));
    assert!(f.detail.contains("21 days"), "{}", f.detail);
    assert!(run.codes("A1").is_empty());
    assert!(run.codes("B2").is_empty());
    assert!(run.codes("C2").is_empty(), "{:?}", run.codes("C2"));
    assert!(run.rows["A2"].risk_score > 0.0);
    assert_eq!(run.rows["B2"].risk_score, 0.0);
}

#[test]
fn supply_too_long_uses_each_regions_limit() {
    let persons = [
        person("P1", EZHOU, "resident"),
        person("P2", RIZHAO, "resident"),
    ];
    let run = Run::new(
        &persons,
        &[registered("P1"), registered("P2")],
        &[
            // Ezhou: at most 24 weeks.
            fill("A1", "P1", "2024-03-01", 169),
            Claim {
                drug: Some("XC08CAA002"),
                ..fill("A2", "P1", "2024-03-02", 168)
            },
            // Rizhao: long prescriptions up to 12 weeks.
            fill("B1", "P2", "2024-03-01", 85),
            Claim {
                drug: Some("XC08CAA002"),
                ..fill("B2", "P2", "2024-03-02", 84)
            },
        ],
    );
    let f = run.flag("A1", "supply_too_long");
    assert_eq!((f.value_count, f.threshold_count), (Some(169), Some(168)));
    assert_eq!(run.flag("B1", "supply_too_long").threshold_count, Some(84));
    assert!(run.codes("A2").is_empty());
    assert!(run.codes("B2").is_empty());
}

#[test]
fn duplicate_claim_is_the_same_institution_drug_amount_and_day() {
    let persons = [
        person("P1", EZHOU, "resident"),
        person("P2", EZHOU, "resident"),
    ];
    let visit = |id, p, amount| Claim {
        drug: Some("XJ01CA04"),
        days_supply: Some(5),
        ..claim(id, p, "2024-03-05", "secondary", "J06.9", amount)
    };
    let run = Run::new(
        &persons,
        &[],
        &[
            visit("A1", "P1", "80.00"),
            Claim {
                settled_at: "2024-03-05 15:00",
                ..visit("A2", "P1", "80.00")
            },
            // Near misses: another institution, or a fen apart.
            Claim {
                settled_at: "2024-03-05 17:00",
                institution: "H0002",
                ..visit("A4", "P1", "80.00")
            },
            visit("B1", "P2", "80.00"),
            Claim {
                settled_at: "2024-03-05 16:00",
                ..visit("A3", "P2", "80.01")
            },
        ],
    );
    let f = run.flag("A2", "duplicate_claim");
    assert_eq!(f.related_claim_id.as_deref(), Some("A1"));
    assert_eq!(f.value_amount, Some(fen("80.00")));
    assert_eq!(run.rows["A2"].risk_score, 0.8);
    assert!(run.codes("A3").is_empty());
    assert!(run.codes("A4").is_empty());
}

#[test]
fn registration_rules_and_the_missed_benefit_of_assisted_persons() {
    let persons = [
        person("P1", EZHOU, "resident"),
        Person {
            assistance: Some("minimum_living"),
            ..person("P2", RIZHAO, "resident")
        },
        person("P3", RIZHAO, "resident"),
        person("P4", EZHOU, "resident"),
    ];
    let regs = [
        // Rizhao pays from the day after approval.
        Registration {
            approved_on: "2024-03-10",
            ..registration("P3", "diabetes")
        },
        Registration {
            ended_on: Some("2024-03-20"),
            ..registered("P4")
        },
    ];
    // Visits, not fills: no days of supply to make a refill.
    let visits: Vec<Claim> = [
        claim("A1", "P1", "2024-03-01", "primary", "I10", "50.00"),
        // Near miss: an everyday diagnosis is no chronic condition.
        Claim {
            drug: Some("XJ01CA04"),
            ..claim("A2", "P1", "2024-03-02", "primary", "J06.9", "50.00")
        },
        claim("B1", "P2", "2024-03-01", "primary", "E11.9", "50.00"),
        claim("C1", "P3", "2024-03-10", "primary", "E11.9", "50.00"),
        claim("C2", "P3", "2024-03-11", "primary", "E11.9", "50.00"),
        claim("D1", "P4", "2024-03-20", "primary", "I10", "50.00"),
        claim("D2", "P4", "2024-03-21", "primary", "I10", "50.00"),
    ]
    .into_iter()
    .map(|c| Claim {
        days_supply: None,
        ..c
    })
    .collect();
    let run = Run::new(&persons, &regs, &visits);
    assert_eq!(run.codes("A1"), ["unregistered_condition"]);
    assert!(run
        .flag("A1", "unregistered_condition")
        .detail
        .contains("hypertension"));
    assert!(run.codes("A2").is_empty());
    // Rizhao's positive audit: a poor person with a chronic claim and no registration.
    let missed = run.flag("B1", "unregistered_condition");
    assert!(
        missed.detail.contains("minimum_living") && missed.detail.contains("missed"),
        "{}",
        missed.detail
    );
    assert_eq!(run.codes("C1"), ["before_benefit_start"]);
    assert!(run.codes("C2").is_empty());
    assert!(run.codes("D1").is_empty());
    assert_eq!(run.codes("D2"), ["after_registration_end"]);
}

#[test]
fn cap_exhausted_fires_only_once_the_cap_is_used_up() {
    // Weihai two-diseases hypertension: 70% at grassroots, cap 300.00 (assumed).
    let persons = [person("P1", WEIHAI, "resident")];
    let run = Run::new(
        &persons,
        &[registered("P1")],
        &[
            // 1,000.00 would pay 700.00: capped at 300.00, but the cap was not used up before.
            claim("A1", "P1", "2024-03-01", "primary", "I10", "1000.00"),
            Claim {
                drug: Some("XC08CAA002"),
                ..claim("A2", "P1", "2024-03-02", "primary", "I10", "100.00")
            },
        ],
    );
    assert_eq!(run.rows["A1"].status, "capped");
    assert!(run.codes("A1").is_empty());
    let f = run.flag("A2", "cap_exhausted");
    assert_eq!(
        (f.value_amount, f.threshold_amount),
        (Some(fen("100.00")), Some(fen("300.00")))
    );
}

#[test]
fn high_cost_flags_the_claim_that_crosses_the_warning_line() {
    let persons = [
        person("P1", EZHOU, "resident"),
        person("P2", EZHOU, "resident"),
    ];
    let run = Run::new(
        &persons,
        &[],
        &[
            stay("A1", "P1", "2024-03-01", "tertiary", "K35.8", "60000.00"),
            stay("A2", "P1", "2024-03-10", "tertiary", "K35.8", "39999.99"),
            // Reaches exactly 100,000.00.
            Claim {
                drug: None,
                ..claim("A3", "P1", "2024-03-11", "primary", "J06.9", "0.01")
            },
            Claim {
                drug: None,
                ..claim("A4", "P1", "2024-03-12", "primary", "J06.9", "10.00")
            },
            // Near miss: a refund takes P2 back under the line before the last claim.
            stay("B1", "P2", "2024-03-01", "tertiary", "K35.8", "99000.00"),
            Claim {
                total: "-99000.00",
                in_scope: "-99000.00",
                reverses: Some("B1"),
                ..stay("R1", "P2", "2024-03-02", "tertiary", "K35.8", "0")
            },
            stay("B2", "P2", "2024-03-03", "tertiary", "K35.8", "2000.00"),
        ],
    );
    assert!(run.codes("A2").is_empty());
    let f = run.flag("A3", "high_cost");
    assert_eq!(
        (f.value_amount, f.threshold_amount),
        (Some(fen("100000.00")), Some(fen("100000.00")))
    );
    // Only the crossing claim.
    assert!(run.codes("A4").is_empty());
    assert!(run.codes("B2").is_empty());
}

#[test]
fn pharmacy_without_prescription() {
    let persons = [person("P1", EZHOU, "resident")];
    let run = Run::new(
        &persons,
        &[registered("P1")],
        &[
            claim("A1", "P1", "2024-03-01", "pharmacy", "I10", "50.00"),
            Claim {
                prescriber: Some("primary"),
                drug: Some("XC08CAA002"),
                ..claim("A2", "P1", "2024-03-02", "pharmacy", "I10", "50.00")
            },
        ],
    );
    assert_eq!(run.codes("A1"), ["pharmacy_without_prescription"]);
    assert_eq!(run.rows["A1"].risk_score, 0.6);
    assert!(run.codes("A2").is_empty());
}

#[test]
fn visit_burst_by_day_and_by_week() {
    let persons = [
        person("P1", EZHOU, "resident"),
        person("P2", EZHOU, "resident"),
    ];
    let visit = |id: &'static str, p: &'static str, at: &'static str, amount: &'static str| Claim {
        drug: None,
        days_supply: None,
        ..claim(id, p, at, "primary", "J06.9", amount)
    };
    let mut claims = vec![
        // Four visits on one day: the fourth is one too many.
        visit("D1", "P1", "2024-03-04 09:00", "10.01"),
        visit("D2", "P1", "2024-03-04 10:00", "10.02"),
        visit("D3", "P1", "2024-03-04 11:00", "10.03"),
        visit("D4", "P1", "2024-03-04 12:00", "10.04"),
    ];
    // P2: eleven visits over seven days, never more than two a day.
    let days = [
        "2024-03-10 09:00",
        "2024-03-10 10:00",
        "2024-03-11 09:00",
        "2024-03-11 10:00",
        "2024-03-12 09:00",
        "2024-03-13 09:00",
        "2024-03-13 10:00",
        "2024-03-14 09:00",
        "2024-03-15 09:00",
        "2024-03-16 09:00",
        "2024-03-16 10:00",
    ];
    let ids = [
        "W01", "W02", "W03", "W04", "W05", "W06", "W07", "W08", "W09", "W10", "W11",
    ];
    let amounts = [
        "20.01", "20.02", "20.03", "20.04", "20.05", "20.06", "20.07", "20.08", "20.09", "20.10",
        "20.11",
    ];
    for i in 0..11 {
        claims.push(visit(ids[i], "P2", days[i], amounts[i]));
    }
    let run = Run::new(&persons, &[], &claims);
    assert!(run.codes("D3").is_empty());
    let f = run.flag("D4", "visit_burst");
    assert_eq!((f.value_count, f.threshold_count), (Some(4), Some(3)));
    assert!(f.detail.contains("one day"), "{}", f.detail);
    assert!(run.codes("W10").is_empty());
    let f = run.flag("W11", "visit_burst");
    assert_eq!((f.value_count, f.threshold_count), (Some(11), Some(10)));
    assert!(f.detail.contains("seven days"), "{}", f.detail);
}

#[test]
fn amount_outlier_by_median_and_mad_of_the_drug_and_level() {
    // 40 fills of one drug at grassroots, 100.00 to 139.00, one at 268.26 and one at 5,000.00.
    // Lower median 120.00; absolute deviations 0, 1, 1, 2, 2, … : MAD 10.00. The bar is
    // 120.00 + 10 × 1.4826 × 10.00 = 268.26: 268.26 is not above it, 5,000.00 is.
    const IDS: [&str; 42] = [
        "P00", "P01", "P02", "P03", "P04", "P05", "P06", "P07", "P08", "P09", "P10", "P11", "P12",
        "P13", "P14", "P15", "P16", "P17", "P18", "P19", "P20", "P21", "P22", "P23", "P24", "P25",
        "P26", "P27", "P28", "P29", "P30", "P31", "P32", "P33", "P34", "P35", "P36", "P37", "P38",
        "P39", "P40", "P41",
    ];
    let amounts: Vec<String> = (0..40)
        .map(|i| format!("{}.00", 100 + i))
        .chain(["268.26".to_string(), "5000.00".to_string()])
        .collect();
    let amounts: Vec<&'static str> = amounts
        .into_iter()
        .map(|a| &*Box::leak(a.into_boxed_str()))
        .collect();
    let persons: Vec<Person> = IDS.iter().map(|&p| person(p, EZHOU, "resident")).collect();
    let claims: Vec<Claim> = IDS
        .iter()
        .zip(&amounts)
        .map(|(&p, &a)| Claim {
            drug: Some("XJ01CA04"),
            ..claim(p, p, "2024-03-05", "primary", "J06.9", a)
        })
        .collect();
    let run = Run::new(&persons, &[], &claims);
    let f = run.flag("P41", "amount_outlier");
    assert_eq!(
        (f.value_amount, f.threshold_amount),
        (Some(fen("5000.00")), Some(fen("268.26")))
    );
    assert!(run.codes("P40").is_empty());
    assert_eq!(
        run.flags
            .iter()
            .filter(|f| f.rule == "amount_outlier")
            .count(),
        1
    );
}

#[test]
fn flags_survive_the_month_split() {
    let persons = [
        person("P1", EZHOU, "resident"),
        person("P2", EZHOU, "resident"),
    ];
    let regs = [registered("P1")];
    let m1 = vec![
        fill("A1", "P1", "2024-03-25", 30),
        stay("H1", "P2", "2024-03-20", "tertiary", "K35.8", "90000.00"),
        Claim {
            drug: Some("XJ01CA04"),
            days_supply: None,
            ..claim(
                "D1",
                "P2",
                "2024-03-31 09:00",
                "secondary",
                "J06.9",
                "80.00",
            )
        },
        Claim {
            drug: None,
            ..claim("V1", "P2", "2024-03-31 10:00", "primary", "J06.9", "10.00")
        },
    ];
    let m2 = vec![
        // Refill on 04-01 with 23 days of A1 left: found through the state's history.
        Claim {
            total: "101.00",
            in_scope: "101.00",
            ..fill("A2", "P1", "2024-04-01", 30)
        },
        // The year's cost crosses 100,000.00 on a claim of the second run.
        stay("H2", "P2", "2024-04-05", "tertiary", "K35.8", "10000.00"),
        // A copy of D1, settled late (service day 03-31) in the next run, and a fourth claim
        // of that day.
        Claim {
            settled_at: "2024-04-01 08:00",
            service_date: Some("2024-03-31"),
            drug: Some("XJ01CA04"),
            days_supply: None,
            ..claim("D2", "P2", "2024-04-01", "secondary", "J06.9", "80.00")
        },
        Claim {
            settled_at: "2024-04-01 09:00",
            service_date: Some("2024-03-31"),
            drug: None,
            ..claim("V2", "P2", "2024-04-01", "primary", "J06.9", "10.01")
        },
        Claim {
            settled_at: "2024-04-01 10:00",
            service_date: Some("2024-03-31"),
            drug: None,
            ..claim("V3", "P2", "2024-04-01", "primary", "J06.9", "10.02")
        },
    ];
    let (s, split, whole) = split_and_whole(&persons, &regs, &m1, &m2);
    for c in ["A2", "H2", "D2", "V2", "V3"] {
        assert_eq!(split[c].anomaly_codes, whole[c].anomaly_codes, "{c}");
    }
    assert_eq!(split["A2"].anomaly_codes, ["early_refill"]);
    assert_eq!(split["H2"].anomaly_codes, ["high_cost"]);
    assert_eq!(split["D2"].anomaly_codes, ["duplicate_claim"]);
    assert_eq!(split["V3"].anomaly_codes, ["visit_burst"]);
    let flags = read_anomalies(&s.path("o2/anomalies.parquet"));
    let refill = flags.iter().find(|f| f.claim_id == "A2").unwrap();
    assert_eq!(
        (refill.related_claim_id.as_deref(), refill.value_count),
        (Some("A1"), Some(23))
    );
    let dup = flags.iter().find(|f| f.claim_id == "D2").unwrap();
    assert_eq!(dup.related_claim_id.as_deref(), Some("D1"));
}
