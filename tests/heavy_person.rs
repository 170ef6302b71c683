//! One person with 100,000 claims in one run, then a night on the state it left: every rule that
//! looks back at a person's earlier claims (copies, refills, bursts, refunds) gives the flags
//! counted by hand from the pattern below. Lookups back are O(log k) per claim, so this runs in
//! seconds; a backward scan per claim would take minutes.

mod common;

use std::collections::BTreeMap;

use common::*;

const EZHOU: &str = "420700";
const CLAIMS: usize = 100_000;
/// Claims per service day: claim `i` is on day `i / PER_DAY` of 2024, at minute `i % PER_DAY`.
const PER_DAY: usize = 300;
const DRUG: &str = "XA10BAA001";

/// Text the harness borrows for the life of the test process.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

fn at(day: usize, minute: usize) -> &'static str {
    let date = yibao::domain::format_date(day_2024(day));
    leak(format!("{date} {:02}:{:02}", minute / 60, minute % 60))
}

fn day_2024(day: usize) -> i32 {
    yibao::domain::parse_date("2024-01-01").unwrap() + day as i32
}

fn id(i: usize) -> &'static str {
    leak(format!("C{i:06}"))
}

/// The amount of claim `i`: distinct within a day, so only planted copies repeat one.
fn amount(i: usize) -> &'static str {
    let fen = 1_000 + i % PER_DAY;
    leak(format!("{}.{:02}", fen / 100, fen % 100))
}

/// The month of the pattern:
/// - `i % 100 == 50` refunds claim `i − 25` (1,000 refunds);
/// - `i % 1000 == 999` copies claim `i − 1` (same institution, no drug, amount, day; 100 copies);
/// - the first claim of every tenth day is a 30-day fill of `DRUG` (34 fills, on days 0 … 330);
/// - every other claim is a visit with no drug.
fn heavy_month() -> Vec<Claim> {
    let visit = |i: usize| Claim {
        drug: None,
        days_supply: None,
        ..claim(
            id(i),
            "P1",
            at(i / PER_DAY, i % PER_DAY),
            "primary",
            "J06.9",
            amount(i),
        )
    };
    (0..CLAIMS)
        .map(|i| {
            let mut c = visit(i);
            if i % 100 == 50 {
                let original = i - 25;
                let negative = leak(format!("-{}", amount(original)));
                c.reverses = Some(id(original));
                c.total = negative;
                c.in_scope = negative;
            } else if i % 1000 == 999 {
                c.total = amount(i - 1);
                c.in_scope = amount(i - 1);
            } else if i % PER_DAY == 0 && (i / PER_DAY).is_multiple_of(10) {
                c.drug = Some(DRUG);
                c.days_supply = Some(30);
            }
            c
        })
        .collect()
}

fn count(flags: &[Flag], rule: &str) -> usize {
    flags.iter().filter(|f| f.rule == rule).count()
}

#[test]
fn a_person_with_100000_claims_in_one_run_gets_every_flag_counted_by_hand() {
    let persons = [person("P1", EZHOU, "resident")];
    let s = Scenario::new(&persons, &[], &heavy_month());
    yibao::run::adjudicate(&s.args("claims", "out", Some("state"))).unwrap();
    let rows = read_settlements(&s.path("out/settlements.parquet"));
    let flags = read_anomalies(&s.path("out/anomalies.parquet"));
    assert_eq!(rows.len(), CLAIMS);

    // Refunds: each finds its original 25 claims back and gives back exactly what it paid.
    let refunds: Vec<&Row> = rows.values().filter(|r| r.status == "reversal").collect();
    assert_eq!(refunds.len(), 1_000);
    for i in (50..CLAIMS).step_by(100) {
        let (refund, original) = (&rows[id(i)], &rows[id(i - 25)]);
        assert_eq!(refund.status, "reversal", "{}", refund.claim_id);
        assert_eq!(refund.fund, -original.fund, "{}", refund.claim_id);
        assert_eq!(refund.copay, -original.copay, "{}", refund.claim_id);
    }

    // Copies: the claim just before, on the same day.
    let copies: BTreeMap<&str, Option<&str>> = flags
        .iter()
        .filter(|f| f.rule == "duplicate_claim")
        .map(|f| (f.claim_id.as_str(), f.related_claim_id.as_deref()))
        .collect();
    let expected: BTreeMap<&str, Option<&str>> = (999..CLAIMS)
        .step_by(1000)
        .map(|i| (id(i), Some(id(i - 1))))
        .collect();
    assert_eq!(copies, expected);

    // Refills: every fill after the first comes 10 days into a 30-day supply: 20 days left.
    let refills: Vec<&Flag> = flags.iter().filter(|f| f.rule == "early_refill").collect();
    assert_eq!(refills.len(), 33);
    for f in &refills {
        assert_eq!((f.value_count, f.threshold_count), (Some(20), Some(15)));
        let i: usize = f.claim_id[1..].parse().unwrap();
        assert_eq!(f.related_claim_id.as_deref(), Some(id(i - 10 * PER_DAY)));
    }

    // Bursts: refunds do not count, so a full day holds 297 counted claims. Beyond the third
    // of a day a claim overflows the day (294 a full day; the last day's 99 claims, 96); the
    // first three of every day after the first overflow the week (333 days × 3).
    let bursts: Vec<&Flag> = flags.iter().filter(|f| f.rule == "visit_burst").collect();
    let by_day = bursts
        .iter()
        .filter(|f| f.detail.contains("one day"))
        .count();
    assert_eq!(by_day, 333 * 294 + 96);
    assert_eq!(bursts.len() - by_day, 333 * 3);
    let last = &rows[id(CLAIMS - 1)];
    assert!(last.anomaly_codes.contains(&"visit_burst".to_string()));
    let f = bursts
        .iter()
        .find(|f| f.claim_id == id(CLAIMS - 1))
        .unwrap();
    assert_eq!((f.value_count, f.threshold_count), (Some(99), Some(3)));

    // A night on the state this run left: a copy of a claim of the last day (served that day,
    // settled late), a refund of an earlier claim, and a fill the day after, 4 days into the
    // last 30-day fill (26 days left): each finds its claim among the state's of the person.
    let last_day = (CLAIMS - 1) / PER_DAY;
    let (copied, refunded) = (CLAIMS - 3, CLAIMS - 74);
    let night = [
        Claim {
            drug: None,
            days_supply: None,
            ..claim(
                "N1",
                "P1",
                at(last_day, 23 * 60),
                "primary",
                "J06.9",
                amount(copied),
            )
        },
        Claim {
            drug: None,
            days_supply: None,
            reverses: Some(id(refunded)),
            total: leak(format!("-{}", amount(refunded))),
            in_scope: leak(format!("-{}", amount(refunded))),
            ..claim("N2", "P1", at(last_day + 1, 60), "primary", "J06.9", "0")
        },
        Claim {
            days_supply: Some(30),
            drug: Some(DRUG),
            ..claim(
                "N3",
                "P1",
                at(last_day + 1, 120),
                "primary",
                "J06.9",
                "10.00",
            )
        },
    ];
    std::fs::create_dir_all(s.path("night")).unwrap();
    write_claims(&s.path("night/part.parquet"), &night);
    yibao::run::adjudicate(&s.args("night", "night-out", Some("state"))).unwrap();
    let rows = read_settlements(&s.path("night-out/settlements.parquet"));
    let flags = read_anomalies(&s.path("night-out/anomalies.parquet"));
    let flag = |claim: &str, rule: &str| {
        flags
            .iter()
            .find(|f| f.claim_id == claim && f.rule == rule)
            .unwrap_or_else(|| panic!("{claim} has no {rule}: {flags:?}"))
    };
    assert_eq!(
        flag("N1", "duplicate_claim").related_claim_id.as_deref(),
        Some(id(copied))
    );
    assert_eq!(rows["N2"].status, "reversal");
    let refill = flag("N3", "early_refill");
    assert_eq!(refill.value_count, Some(26));
    assert_eq!(refill.related_claim_id.as_deref(), Some(id(330 * PER_DAY)));
    assert_eq!(count(&flags, "duplicate_claim"), 1);
}
