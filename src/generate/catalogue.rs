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
        median_fen: 9_000.0,
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
        median_fen: 16_000.0,
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
}
