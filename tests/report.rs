//! `yibao report`, run through the binary on a small Ezhou sample whose annexes are worked out by
//! hand, and read back from the workbook as a spreadsheet program would.

mod common;

use calamine::{open_workbook, Data, Reader, Xlsx};

use common::*;

/// Ezhou, March 2024. Residents R1 (hypertension, normal) and R2 (diabetes, severe), employee E1
/// (hypertension, normal), employee-supplementary member S1 (none registered).
fn ezhou_sample() -> Scenario {
    let ezhou = |id, scheme| person(id, "420700", scheme);
    let severe = Registration {
        severity: Some("severe"),
        ..registration("R2", "diabetes")
    };
    let visit = |id, who, at, level, diagnosis, amount| Claim {
        region: "420700",
        ..claim(id, who, at, level, diagnosis, amount)
    };
    Scenario::new(
        &[
            ezhou("R1", "resident"),
            ezhou("R2", "resident"),
            ezhou("E1", "employee"),
            Person {
                supplementary: Some(true),
                ..ezhou("S1", "employee")
            },
        ],
        &[
            registration("R1", "hypertension"),
            severe,
            registration("E1", "hypertension"),
        ],
        &[
            // Residents' normal two-diseases: 60% at level 1, a pharmacy at its prescriber's.
            visit("C1", "R1", "2024-03-04", "primary", "I10", "100.00"),
            Claim {
                prescriber: Some("primary"),
                visit: Some("pharmacy"),
                ..visit("C2", "R1", "2024-03-05", "pharmacy", "I10", "50.00")
            },
            // Residents' severe two-diseases at level 2: 50%.
            visit("C3", "R2", "2024-03-06", "secondary", "E11.9", "200.00"),
            // Employees' normal two-diseases at level 3: 70%.
            visit("C4", "E1", "2024-03-07", "tertiary", "I10", "300.00"),
            // April: another month's report.
            visit("C5", "R1", "2024-04-02", "primary", "I10", "80.00"),
        ],
    )
}

fn report(s: &Scenario, out: &str, extra: &[&str]) -> std::path::PathBuf {
    let settled = s.path("settled");
    let run = s.run_binary("claims", "settled", &policies_dir(), &[]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = s.path(out);
    let (persons, registrations) = (s.path("persons.parquet"), s.path("registrations.parquet"));
    let mut args = vec![
        "report",
        "ezhou",
        "--month",
        "2024-03",
        "--settlements",
        text(&settled),
        "--persons",
        text(&persons),
        "--registrations",
        text(&registrations),
        "--out",
        text(&out),
    ];
    args.extend_from_slice(extra);
    let printed = yibao_ok(&args);
    assert!(
        printed.starts_with("4 settlement rows of the period"),
        "{printed}"
    );
    out
}

#[test]
fn ezhou_annexes_match_the_hand_computation() {
    let s = ezhou_sample();
    let out = report(&s, "report", &[]);
    let csv = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    let header = "\u{feff}疾病病种,参保人数,备案人数,\
        一级及以下医疗机构/医疗费,一级及以下医疗机构/报销额,二级医疗机构/医疗费,二级医疗机构/报销额,\
        三级医疗机构/医疗费,三级医疗机构/报销额,定点药店/医疗费,定点药店/报销额,合计/医疗费,合计/报销额\n";
    // Residents: two insured; R1's 100.00 at level 1 pays 60.00, its 50.00 fill at a pharmacy
    // on a level-1 prescription 30.00; R2's severe 200.00 at level 2 pays 100.00.
    assert_eq!(
        csv("附件4.csv"),
        format!(
            "{header}\
             普通高血压,2,1,100.00,60.00,0.00,0.00,0.00,0.00,50.00,30.00,150.00,90.00\n\
             普通糖尿病,2,0,0.00,0.00,0.00,0.00,0.00,0.00,0.00,0.00,0.00,0.00\n\
             合计,2,1,100.00,60.00,0.00,0.00,0.00,0.00,50.00,30.00,150.00,90.00\n\
             重症高血压,2,0,0.00,0.00,0.00,0.00,0.00,0.00,0.00,0.00,0.00,0.00\n\
             重症糖尿病,2,1,0.00,0.00,200.00,100.00,0.00,0.00,0.00,0.00,200.00,100.00\n\
             合计,2,1,0.00,0.00,200.00,100.00,0.00,0.00,0.00,0.00,200.00,100.00\n"
        )
    );
    // Employees: E1's 300.00 at level 3 pays 70%, 210.00.
    let employees = csv("附件5.csv");
    assert!(
        employees.contains(
            "\n普通高血压,1,1,0.00,0.00,0.00,0.00,300.00,210.00,0.00,0.00,300.00,210.00\n"
        ),
        "{employees}"
    );
    // Employee supplementary: one insured, nothing registered or settled.
    assert!(csv("附件6.csv").contains("\n合计,1,0,0.00,0.00,"));
    // Annex 7 without the claims: the whole city in one row, then the total.
    let annex_7 = csv("附件7.csv");
    assert!(
        annex_7.ends_with("\n1,鄂州市,0,2,2,1,0,1,3\n,合计,0,2,2,1,0,1,3\n"),
        "{annex_7}"
    );

    // The workbook, read back: the annexes as sheets with the documents' headers.
    let mut book: Xlsx<_> = open_workbook(out.join("report.xlsx")).unwrap();
    assert_eq!(book.sheet_names(), ["附件4", "附件5", "附件6", "附件7"]);
    let sheet = book.worksheet_range("附件4").unwrap();
    let at = |r: u32, c: u32| sheet.get_value((r, c)).cloned().unwrap_or(Data::Empty);
    assert_eq!(
        at(0, 0),
        Data::String("鄂州市城乡居民医保“两病”门诊用药保障和健康管理示范城市活动月报表".into())
    );
    assert_eq!(at(2, 0), Data::String("疾病病种".into()));
    assert_eq!(at(2, 1), Data::String("参保人数".into()));
    assert_eq!(at(2, 3), Data::String("一级及以下医疗机构".into()));
    assert_eq!(at(3, 3), Data::String("医疗费".into()));
    assert_eq!(at(3, 4), Data::String("报销额".into()));
    assert_eq!(at(2, 11), Data::String("合计".into()));
    assert_eq!(at(4, 0), Data::String("普通高血压".into()));
    assert_eq!(at(4, 1), Data::Float(2.0));
    assert_eq!(at(4, 3), Data::Float(100.0));
    assert_eq!(at(4, 12), Data::Float(90.0));
    let annex_7 = book.worksheet_range("附件7").unwrap();
    assert_eq!(
        annex_7.get_value((2, 2)).cloned(),
        Some(Data::String("纳入“高血压“管理人员情况统计（人数）".into()))
    );
}

#[test]
fn with_the_claims_annex_7_counts_persons_per_institution() {
    let s = ezhou_sample();
    let out = report(&s, "by-unit", &["--claims", text(&s.path("claims"))]);
    let annex_7 = std::fs::read_to_string(out.join("附件7.csv")).unwrap();
    // Every sample claim is at H0001: R1, R2 and E1 are managed there.
    assert!(
        annex_7.ends_with("\n1,H0001,0,2,2,1,0,1,3\n,合计,0,2,2,1,0,1,3\n"),
        "{annex_7}"
    );
}
