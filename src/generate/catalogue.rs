//! The fixed vocabulary of the synthetic province: regions, chronic conditions with their ICD-10
//! codes and typical costs, the non-chronic diagnoses that no registration covers, and a small
//! national-style drug catalogue per condition. Changing any table changes every seed's output.

use super::rng::mix64;

/// A pooling region and its share of the province's insured population (weights in tenths).
pub struct Region {
    pub code: &'static str,
    pub weight: u32,
}

/// Jiaxing, Ezhou, Weihai, Rizhao, Jin'an (POLICY-DIGEST.md's region codes).
pub const REGIONS: [Region; 5] = [
    Region {
        code: "330400",
        weight: 55,
    },
    Region {
        code: "420700",
        weight: 11,
    },
    Region {
        code: "371000",
        weight: 29,
    },
    Region {
        code: "371100",
        weight: 30,
    },
    Region {
        code: "341502",
        weight: 9,
    },
];

/// A chronic condition as registrations name it, with the diagnoses that map to it.
pub struct Condition {
    /// The registration's `condition` id.
    pub id: &'static str,
    /// Full ICD-10 codes and how often each is the main diagnosis (relative weights).
    pub codes: &'static [(&'static str, u32)],
    /// ATC level-5 groups of the drugs dispensed for it: the catalogue is built from these.
    pub atc: &'static [&'static str],
    /// Median cost in fen of a 30-day outpatient fill at a grassroots institution.
    pub median_fen: f64,
    /// Weight among claimants whose chronic condition is neither hypertension nor diabetes.
    pub other_weight: u32,
}

pub const HYPERTENSION: usize = 0;
pub const DIABETES: usize = 1;

pub const CONDITIONS: [Condition; 15] = [
    Condition {
        id: "hypertension",
        codes: &[
            ("I10", 80),
            ("I11.9", 8),
            ("I12.9", 4),
            ("I13.9", 3),
            ("I15.9", 5),
        ],
        atc: &["C08CA", "C09AA", "C09CA", "C07AB", "C03AA", "C09DA"],
        median_fen: 6_000.0,
        other_weight: 0,
    },
    Condition {
        id: "diabetes",
        codes: &[
            ("E11.9", 55),
            ("E11.6", 10),
            ("E11.2", 8),
            ("E10.9", 6),
            ("E10.6", 4),
            ("E12.9", 2),
            ("E13.9", 3),
            ("E14.9", 12),
        ],
        atc: &["A10BA", "A10BB", "A10BH", "A10AE", "A10BF", "A10BJ"],
        median_fen: 12_000.0,
        other_weight: 0,
    },
    Condition {
        id: "coronary_heart_disease",
        codes: &[
            ("I25.1", 45),
            ("I25.9", 25),
            ("I20.9", 20),
            ("I20.0", 5),
            ("I21.9", 5),
        ],
        atc: &["C01DA", "B01AC", "C10AA", "C07AB"],
        median_fen: 20_000.0,
        other_weight: 200,
    },
    Condition {
        id: "copd",
        codes: &[("J44.9", 70), ("J44.1", 25), ("J44.0", 5)],
        atc: &["R03AK", "R03BB", "R03AL"],
        median_fen: 20_000.0,
        other_weight: 120,
    },
    Condition {
        id: "chronic_kidney_disease",
        codes: &[("N18.3", 30), ("N18.4", 20), ("N18.5", 20), ("N18.9", 30)],
        atc: &["B03XA", "V03AE", "H05BX"],
        median_fen: 20_000.0,
        other_weight: 80,
    },
    Condition {
        id: "asthma",
        codes: &[("J45.9", 75), ("J45.0", 20), ("J45.1", 5)],
        atc: &["R03AK", "R03BA", "R03DC"],
        median_fen: 20_000.0,
        other_weight: 80,
    },
    Condition {
        id: "stroke",
        codes: &[("I69.3", 55), ("I63.9", 40), ("I63.5", 5)],
        atc: &["B01AC", "C10AA", "N06BX"],
        median_fen: 20_000.0,
        other_weight: 120,
    },
    Condition {
        id: "heart_failure",
        codes: &[("I50.9", 70), ("I50.0", 25), ("I50.1", 5)],
        atc: &["C03CA", "C09DX", "C03DA", "C01AA"],
        median_fen: 20_000.0,
        other_weight: 80,
    },
    Condition {
        id: "rheumatoid_arthritis",
        codes: &[("M06.9", 60), ("M05.9", 30), ("M05.8", 10)],
        atc: &["L04AX", "M01AE", "H02AB"],
        median_fen: 20_000.0,
        other_weight: 60,
    },
    Condition {
        id: "chronic_liver_disease",
        codes: &[("K74.6", 40), ("K70.3", 25), ("K74.0", 15), ("K73.9", 20)],
        atc: &["A05BA", "J05AF"],
        median_fen: 20_000.0,
        other_weight: 60,
    },
    Condition {
        id: "parkinsons",
        codes: &[("G20", 100)],
        atc: &["N04BA", "N04BC", "N04BD"],
        median_fen: 20_000.0,
        other_weight: 40,
    },
    Condition {
        id: "alzheimers",
        codes: &[("G30.9", 80), ("G30.1", 20)],
        atc: &["N06DA", "N06DX"],
        median_fen: 20_000.0,
        other_weight: 40,
    },
    Condition {
        id: "tuberculosis",
        codes: &[
            ("A15.0", 45),
            ("A16.2", 35),
            ("A18.0", 10),
            ("A19.9", 5),
            ("A17.0", 5),
        ],
        atc: &["J04AM", "J04AK", "J04AB"],
        median_fen: 20_000.0,
        other_weight: 30,
    },
    Condition {
        id: "schizophrenia",
        codes: &[("F20.9", 60), ("F20.0", 40)],
        atc: &["N05AH", "N05AX", "N05AN"],
        median_fen: 20_000.0,
        other_weight: 60,
    },
    Condition {
        id: "malignant_tumour",
        codes: &[
            ("C34.9", 25),
            ("C16.9", 15),
            ("C22.0", 12),
            ("C50.9", 15),
            ("C18.9", 13),
            ("C61", 10),
            ("C73", 10),
        ],
        atc: &["L01XE", "L02BG", "L01BC"],
        median_fen: 20_000.0,
        other_weight: 10,
    },
];

/// Everyday diagnoses outside every chronic benefit: claims carrying them are never covered by
/// a chronic registration.
pub const NON_CHRONIC_CODES: &[(&str, u32)] = &[
    ("J06.9", 30),
    ("K29.7", 15),
    ("M54.5", 12),
    ("R51", 8),
    ("J02.9", 10),
    ("K59.0", 5),
    ("L30.9", 6),
    ("H10.9", 4),
    ("N39.0", 5),
    ("R05", 5),
];
pub const NON_CHRONIC_ATC: &[&str] = &["J01CA", "M01AE", "N02BE", "R05CB", "A02BC"];
/// Median cost in fen of a non-chronic visit at a grassroots institution.
pub const NON_CHRONIC_MEDIAN_FEN: f64 = 12_000.0;

/// Drugs per condition in the catalogue.
pub const DRUGS_PER_CONDITION: usize = 20;

/// The drug catalogue: `DRUGS_PER_CONDITION` codes for each condition (in [`CONDITIONS`] order),
/// then as many for the non-chronic diagnoses. Codes follow the national 23-character layout:
/// `X` (western medicine), ATC group, generic-name, dosage-form and packaging/manufacturer parts,
/// e.g. `XC08CAA123B001010101234`. The digits are a fixed hash of the position, so the catalogue
/// is the same for every seed.
pub fn drug_catalogue() -> Vec<String> {
    let groups = CONDITIONS
        .iter()
        .map(|c| c.atc)
        .chain(std::iter::once(NON_CHRONIC_ATC));
    let mut codes = Vec::with_capacity((CONDITIONS.len() + 1) * DRUGS_PER_CONDITION);
    for (g, atc) in groups.enumerate() {
        for i in 0..DRUGS_PER_CONDITION {
            // Offset like SplitMix64's first step: `mix64(0)` is 0, which would give drug
            // `…A000B000000000000`.
            let h = mix64((((g as u64) << 32) | i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15));
            let generic = h % 1000;
            let form = (h >> 10) % 1000;
            let packaging = (h >> 20) % 1_000_000_000;
            codes.push(format!(
                "X{}A{generic:03}B{form:03}{packaging:09}",
                atc[i % atc.len()]
            ));
        }
    }
    codes
}

/// Catalogue index of the non-chronic drugs.
pub const NON_CHRONIC_DRUGS: usize = CONDITIONS.len();

/// Institutions per region for each level (`Level` order: primary, secondary, tertiary,
/// pharmacy); popularity within a level is Zipf-like.
pub const INSTITUTIONS: [u64; 4] = [600, 300, 200, 500];
/// The letter of a level in an institution id (`H330400P0042`, `D330400R0007`).
pub const LEVEL_LETTER: [char; 4] = ['P', 'S', 'T', 'R'];

/// What the generator assumes of one region's policy file (`policies/<region>.toml`), so that
/// the baseline it writes stays clear of every audit rule: the conditions the policy's ICD-10
/// prefixes diagnose (registrations are written under these names), the audit thresholds, and
/// how much in-scope cost a person may run up in a month in each cap pool without using a cap up.
/// The tests check these facts against the policy files themselves.
pub struct PolicyFacts {
    /// ICD-10 prefix (upper case, no dots) and the condition it diagnoses.
    pub conditions: &'static [(&'static str, &'static str)],
    /// `max_days_supply`: a fill above it is `supply_too_long`.
    pub max_days_supply: i32,
    /// Days after the approval day on which benefits start (Rizhao: the next day).
    pub benefit_start_offset: i32,
    /// Condition benefits pay only persons signed with a family doctor (Jiaxing clause 8).
    pub family_doctor_required: bool,
    /// Employees have condition benefits; elsewhere their chronic claims go to general
    /// outpatient.
    pub employee_condition_benefits: bool,
    /// One cap shared by every condition (Jiaxing's chronic outpatient benefit).
    pub shared_condition_cap: bool,
    /// Residents' condition benefit pays at tertiary institutions (not in Jiaxing).
    pub resident_tertiary_condition: bool,
    /// In-scope fen a month per condition cap pool, `(condition, resident, employee)`; with a
    /// shared cap, the first entry is the shared pool's.
    pub budgets: &'static [(&'static str, i64, i64)],
}

/// Audit threshold: a refill with more than this many days of the last fill left is early.
pub const REFILL_REMAINING_DAYS: i32 = 15;
/// Audit threshold: a person's year-to-date total cost crossing this (fen) is `high_cost`.
pub const HIGH_COST_FEN: i64 = 10_000_000;
/// Audit thresholds: claims of a person in a day and in a trailing week.
pub const MAX_CLAIMS_PER_DAY: u32 = 3;
pub const MAX_CLAIMS_PER_WEEK: u32 = 10;

/// A month's in-scope fen in the general outpatient pool (resident, employee): below residents'
/// 500-yuan cap at up to 50% (1,000 yuan of cost) and employees' 1,000 deductible plus 3,000
/// cap at up to 70% (5,286 yuan).
pub const GENERAL_BUDGET_FEN: (i64, i64) = (85_000, 450_000);

const HYPERTENSION_DIABETES: [(&str, &str); 11] = [
    ("I10", "hypertension"),
    ("I11", "hypertension"),
    ("I12", "hypertension"),
    ("I13", "hypertension"),
    ("I14", "hypertension"),
    ("I15", "hypertension"),
    ("E10", "diabetes"),
    ("E11", "diabetes"),
    ("E12", "diabetes"),
    ("E13", "diabetes"),
    ("E14", "diabetes"),
];

const fn with_two_diseases<const N: usize, const M: usize>(
    own: [(&'static str, &'static str); N],
) -> [(&'static str, &'static str); M] {
    assert!(M == N + HYPERTENSION_DIABETES.len());
    let mut out = [("", ""); M];
    let mut i = 0;
    while i < HYPERTENSION_DIABETES.len() {
        out[i] = HYPERTENSION_DIABETES[i];
        i += 1;
    }
    let mut j = 0;
    while j < N {
        out[i + j] = own[j];
        j += 1;
    }
    out
}

const JIAXING_CONDITIONS: [(&str, &str); 38] = with_two_diseases([
    ("G30", "alzheimers"),
    ("F00", "alzheimers"),
    ("G20", "parkinsons"),
    ("I20", "coronary_heart_disease"),
    ("I21", "coronary_heart_disease"),
    ("I22", "coronary_heart_disease"),
    ("I23", "coronary_heart_disease"),
    ("I24", "coronary_heart_disease"),
    ("I25", "coronary_heart_disease"),
    ("N18", "chronic_kidney_disease"),
    ("J45", "asthma"),
    ("J46", "asthma"),
    ("A15", "tuberculosis"),
    ("A16", "tuberculosis"),
    ("A17", "tuberculosis"),
    ("A18", "tuberculosis"),
    ("A19", "tuberculosis"),
    ("Z492", "peritoneal_dialysis"),
    ("J44", "copd"),
    ("F20", "schizophrenia"),
    ("F25", "schizophrenia"),
    ("F31", "schizophrenia"),
    ("K70", "chronic_liver_disease"),
    ("K73", "chronic_liver_disease"),
    ("K74", "chronic_liver_disease"),
    ("M05", "rheumatoid_arthritis"),
    ("M06", "rheumatoid_arthritis"),
]);
const RIZHAO_CONDITIONS: [(&str, &str); 21] = with_two_diseases([
    ("C", "malignant_tumour"),
    ("N185", "uraemia_dialysis"),
    ("N186", "uraemia_dialysis"),
    ("Z49", "uraemia_dialysis"),
    ("Z94", "organ_transplant_antirejection"),
    ("F20", "severe_mental_disorder"),
    ("F25", "severe_mental_disorder"),
    ("F31", "severe_mental_disorder"),
    ("F322", "severe_mental_disorder"),
    ("F323", "severe_mental_disorder"),
]);
const JINAN_CONDITIONS: [(&str, &str); 24] = with_two_diseases([
    ("I50", "heart_failure"),
    ("I20", "coronary_heart_disease"),
    ("I21", "coronary_heart_disease"),
    ("I22", "coronary_heart_disease"),
    ("I23", "coronary_heart_disease"),
    ("I24", "coronary_heart_disease"),
    ("I25", "coronary_heart_disease"),
    ("I60", "stroke"),
    ("I61", "stroke"),
    ("I63", "stroke"),
    ("I64", "stroke"),
    ("I69", "stroke"),
    ("J44", "copd"),
]);

/// [`PolicyFacts`] by [`REGIONS`] index. Budgets stay below each cap's exhaustion point, the
/// in-scope cost at which the fund would pay the whole cap at the benefit's highest ratio
/// (plus its deductible), by 15–20%.
pub const POLICY_FACTS: [PolicyFacts; 5] = [
    // Jiaxing: one 1,800 cap for every condition; residents at up to 60% (3,000 yuan),
    // employees after a 1,000 deductible at up to 83% (3,169 yuan).
    PolicyFacts {
        conditions: &JIAXING_CONDITIONS,
        max_days_supply: 84,
        benefit_start_offset: 0,
        family_doctor_required: true,
        employee_condition_benefits: true,
        shared_condition_cap: true,
        resident_tertiary_condition: false,
        budgets: &[("chronic_outpatient", 240_000, 260_000)],
    },
    // Ezhou: caps per condition 1,000 (residents, up to 60%: 1,667 yuan) and 2,000–2,500
    // (employees, up to 95%: 2,105 yuan).
    PolicyFacts {
        conditions: &HYPERTENSION_DIABETES,
        max_days_supply: 168,
        benefit_start_offset: 0,
        family_doctor_required: false,
        employee_condition_benefits: true,
        shared_condition_cap: false,
        resident_tertiary_condition: true,
        budgets: &[
            ("hypertension", 140_000, 175_000),
            ("diabetes", 140_000, 175_000),
        ],
    },
    // Weihai: residents' hypertension 300 at up to 70% (429 yuan), diabetes 500 (714 yuan).
    PolicyFacts {
        conditions: &HYPERTENSION_DIABETES,
        max_days_supply: 84,
        benefit_start_offset: 0,
        family_doctor_required: false,
        employee_condition_benefits: false,
        shared_condition_cap: false,
        resident_tertiary_condition: true,
        budgets: &[("hypertension", 36_000, 0), ("diabetes", 60_000, 0)],
    },
    // Rizhao: hypertension 300 at up to 60% (500 yuan), diabetes 500 (833 yuan), the four
    // special conditions 20,000 at up to 70% (28,571 yuan).
    PolicyFacts {
        conditions: &RIZHAO_CONDITIONS,
        max_days_supply: 84,
        benefit_start_offset: 1,
        family_doctor_required: false,
        employee_condition_benefits: false,
        shared_condition_cap: false,
        resident_tertiary_condition: true,
        budgets: &[
            ("hypertension", 42_000, 0),
            ("diabetes", 70_000, 0),
            ("malignant_tumour", 500_000, 0),
            ("uraemia_dialysis", 500_000, 0),
            ("organ_transplant_antirejection", 500_000, 0),
            ("severe_mental_disorder", 500_000, 0),
        ],
    },
    // Jin'an: two diseases 500 at up to 60% (833 yuan), the four chronic-special conditions
    // 3,000 at up to 70% (4,286 yuan).
    PolicyFacts {
        conditions: &JINAN_CONDITIONS,
        max_days_supply: 84,
        benefit_start_offset: 0,
        family_doctor_required: false,
        employee_condition_benefits: false,
        shared_condition_cap: false,
        resident_tertiary_condition: true,
        budgets: &[
            ("hypertension", 70_000, 0),
            ("diabetes", 70_000, 0),
            ("heart_failure", 350_000, 0),
            ("coronary_heart_disease", 350_000, 0),
            ("stroke", 350_000, 0),
            ("copd", 350_000, 0),
        ],
    },
];

/// The condition `diagnosis` diagnoses under region `region`'s policy: the longest matching
/// ICD-10 prefix, dots ignored.
pub fn policy_condition(region: usize, diagnosis: &str) -> Option<&'static str> {
    POLICY_FACTS[region]
        .conditions
        .iter()
        .filter(|(prefix, _)| starts_with_ignoring_dots(diagnosis, prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|&(_, c)| c)
}

fn starts_with_ignoring_dots(code: &str, prefix: &str) -> bool {
    let mut code = code.bytes().filter(|&b| b != b'.' && b != b' ');
    prefix
        .bytes()
        .all(|p| code.next().is_some_and(|c| c.to_ascii_uppercase() == p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drug_codes_have_the_national_layout_and_are_unique() {
        let codes = drug_catalogue();
        assert_eq!(codes.len(), 16 * DRUGS_PER_CONDITION);
        assert!(codes.iter().all(|c| c.len() == 23 && c.starts_with('X')));
        assert!(codes.iter().all(|c| !c.ends_with("000000000")), "{codes:?}");
        let mut sorted = codes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len());
    }

    #[test]
    fn other_conditions_are_weighted_and_codes_are_icd10_shaped() {
        assert!(CONDITIONS[2..].iter().all(|c| c.other_weight > 0));
        for c in &CONDITIONS {
            for (code, _) in c.codes {
                let b = code.as_bytes();
                assert!(b[0].is_ascii_uppercase() && b[1].is_ascii_digit(), "{code}");
            }
        }
    }

    /// [`POLICY_FACTS`] against `policies/*.toml`, every version: the diagnosis mapping of every
    /// code the generator writes, benefit start, the family-doctor rule, which benefits pay whom,
    /// and that every budget stays below its cap's exhaustion point while a cap_exhausted plant's
    /// 20,000 yuan uses any cap up.
    #[test]
    fn policy_facts_are_the_policy_files() {
        use crate::domain::{Coverage, Level, Severity, VisitType};
        use crate::policy::{Benefit, DeductiblePer, LevelRatio, Policies};

        let policies =
            Policies::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
                .unwrap();
        let ratios = |b: &Benefit| -> Vec<u32> {
            b.ratio
                .iter()
                .filter_map(|r| match r {
                    LevelRatio::Ratio(r) => Some(*r),
                    _ => None,
                })
                .collect()
        };
        // The in-scope cost (fen) at which the fund has paid the whole cap.
        let exhaustion = |b: &Benefit| -> f64 {
            let cap = b
                .annual_cap_fen
                .expect("every outpatient benefit has a cap") as f64;
            let deductible = match b.deductible_per {
                DeductiblePer::Year => *b.deductible_fen.iter().max().unwrap() as f64,
                DeductiblePer::Admission => 0.0,
            };
            deductible + cap * 10_000.0 / *ratios(b).iter().max().unwrap() as f64
        };
        // What a plant's 20,000 yuan at primary or secondary leaves the fund owing: positive
        // means the cap is used up.
        let plant_exhausts = |b: &Benefit, tier_bp: u32| {
            let deductible = *b.deductible_fen.iter().max().unwrap();
            let low = [Level::Primary, Level::Secondary]
                .iter()
                .map(|&l| match b.ratio[l as usize] {
                    LevelRatio::Ratio(r) => r,
                    _ => panic!("{} pays nothing at {l}", b.name),
                })
                .min()
                .unwrap()
                - tier_bp;
            (2_000_000 - deductible) as f64 * low as f64 / 10_000.0
                > b.annual_cap_fen.unwrap() as f64
        };
        let codes: Vec<&str> = CONDITIONS
            .iter()
            .flat_map(|c| c.codes.iter().map(|x| x.0))
            .chain(NON_CHRONIC_CODES.iter().map(|x| x.0))
            .collect();
        for (r, region) in REGIONS.iter().enumerate() {
            let facts = &POLICY_FACTS[r];
            let index = policies.region_index(region.code).unwrap();
            for &v in &policies.regions[index as usize].versions {
                let version = &policies.versions[v as usize];
                for code in &codes {
                    let theirs = version
                        .condition_of(code)
                        .map(|c| policies.conditions[c as usize].as_str());
                    assert_eq!(policy_condition(r, code), theirs, "{} {code}", version.id);
                }
                assert!(NON_CHRONIC_CODES
                    .iter()
                    .all(|(c, _)| policy_condition(r, c).is_none()));
                assert_eq!(version.start_offset_days, facts.benefit_start_offset);
                assert_eq!(version.family_doctor_required, facts.family_doctor_required);
                let tier_bp = *version.tier_reduction_bp.iter().max().unwrap();
                for &coverage in Coverage::ALL {
                    let employee = coverage != Coverage::Resident;
                    let mut pools = Vec::new();
                    for (_, condition) in facts.conditions {
                        let id = policies.condition_id(condition).unwrap();
                        for &severity in Severity::ALL {
                            let slot = version.slot(coverage, severity, id);
                            let Some(slot) = slot else {
                                assert!(employee && !facts.employee_condition_benefits);
                                continue;
                            };
                            assert!(!employee || facts.employee_condition_benefits);
                            let b = &version.benefits[slot.benefit as usize];
                            assert!(b.pays_visit(VisitType::Outpatient));
                            assert!(b.pays_visit(VisitType::Pharmacy));
                            assert_eq!(
                                matches!(b.ratio[Level::Tertiary as usize], LevelRatio::Ratio(_)),
                                employee || facts.resident_tertiary_condition,
                                "{} {}",
                                version.id,
                                b.name
                            );
                            let name = if facts.shared_condition_cap {
                                facts.budgets[0].0
                            } else {
                                condition
                            };
                            let budget = facts.budgets.iter().find(|b| b.0 == name).unwrap();
                            let budget = if employee { budget.2 } else { budget.1 };
                            assert!(
                                (budget as f64) < 0.9 * exhaustion(b),
                                "{} {coverage} {condition}: budget {budget}",
                                version.id
                            );
                            if ["hypertension", "diabetes"].contains(condition) {
                                assert!(plant_exhausts(b, tier_bp), "{} {}", version.id, b.name);
                            }
                            if !pools.contains(&(slot.pool, *condition)) {
                                pools.push((slot.pool, *condition));
                            }
                        }
                    }
                    // One pool for every condition when the facts say the cap is shared; else
                    // no pool is shared by two conditions.
                    let mut distinct: Vec<u16> = pools.iter().map(|p| p.0).collect();
                    distinct.sort_unstable();
                    distinct.dedup();
                    if facts.shared_condition_cap {
                        assert_eq!(distinct.len(), 1, "{}", version.id);
                    } else {
                        for (pool, condition) in &pools {
                            assert!(
                                pools.iter().all(|(p, c)| p != pool || c == condition),
                                "{} {condition}",
                                version.id
                            );
                        }
                    }
                    for visit in [VisitType::Outpatient, VisitType::Pharmacy] {
                        let slot = version.general_slot(coverage, visit).unwrap();
                        let b = &version.benefits[slot.benefit as usize];
                        let budget = if employee {
                            GENERAL_BUDGET_FEN.1
                        } else {
                            GENERAL_BUDGET_FEN.0
                        };
                        assert!((budget as f64) < 0.9 * exhaustion(b), "{}", version.id);
                        assert!(plant_exhausts(b, tier_bp), "{} {}", version.id, b.name);
                    }
                    // A planted high-cost stay (at most 160,000 yuan in scope) leaves the
                    // inpatient cap unused up.
                    let slot = version
                        .general_slot(coverage, VisitType::Inpatient)
                        .unwrap();
                    let b = &version.benefits[slot.benefit as usize];
                    assert!(exhaustion(b) > 16_000_000.0, "{}", version.id);
                }
            }
        }
    }
}
