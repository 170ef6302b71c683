//! The second and third layers of one-stop settlement (一站式结算), after the basic fund:
//! critical illness insurance (大病保险) takes the in-scope cost the basic fund left to the
//! person; medical assistance (医疗救助) takes, for persons in an assistance category, what both
//! insurance layers left. Each layer keeps its own year-to-date pool per person: base received
//! (`cost`), deductible absorbed and amount paid (`fund`).

use super::kernel::{split, Terms};
use super::{pool_state, Layers};
use crate::ingest::registry::Person;
use crate::policy::{CapBasis, Version, NONE};
use crate::state::PoolState;

/// Settles a claim's `critical_illness_base` through both layers and updates their pools.
pub fn settle(
    version: &Version,
    person: &Person,
    year: i32,
    ci_base_fen: i64,
    pools: &mut Vec<PoolState>,
) -> Layers {
    let mut layers = Layers::NONE;
    if ci_base_fen <= 0 {
        return layers;
    }
    if let Some(ci) = version.critical_illness_for(person.coverage) {
        let state = pool_state(pools, year, ci.pool);
        let deductible = ci_base_fen.min((ci.deductible_fen - state.deductible_fen).max(0));
        // The bands are on the year's cumulative base above the deductible; the claim is paid
        // what its part of that cumulative base earns.
        let above_before = state.cost_fen - state.deductible_fen;
        let above_after = above_before + ci_base_fen - deductible;
        let mut paid = ci.paid_on(above_after) - ci.paid_on(above_before);
        if let Some(cap) = ci.annual_cap_fen {
            paid = paid.min((cap - state.fund_fen).max(0));
        }
        let paid = paid.clamp(0, ci_base_fen);
        if let Some(cap) = ci.annual_cap_fen {
            // Checked in release builds: the layer pays nothing past its cap (a cap lowered
            // mid-year may leave the pool above the new one; it then pays nothing more).
            assert!(
                paid == 0 || state.fund_fen + paid <= cap,
                "critical illness insurance never pays past its annual cap"
            );
        }
        state.cost_fen += ci_base_fen;
        state.deductible_fen += deductible;
        state.fund_fen += paid;
        state.count_claim();
        layers.ci_pool = ci.pool;
        layers.ci_deductible_fen = deductible;
        layers.ci_fen = paid;
    }
    let assistance = person
        .assistance
        .and_then(|category| version.assistance[category as usize]);
    if let Some(a) = assistance {
        let base = ci_base_fen - layers.ci_fen;
        let state = pool_state(pools, year, a.pool);
        let s = split(
            base,
            &Terms {
                ratio_bp: a.ratio_bp,
                deductible_left_fen: a.deductible_fen - state.deductible_fen,
                cap_left_fen: a.annual_cap_fen.map(|cap| cap - state.fund_fen),
                cap_basis: CapBasis::Fund,
            },
        );
        state.cost_fen += base;
        state.deductible_fen += s.deductible_fen;
        state.fund_fen += s.fund_fen;
        state.count_claim();
        layers.assistance_pool = a.pool;
        layers.assistance_deductible_fen = s.deductible_fen;
        layers.assistance_fen = s.fund_fen;
    }
    layers
}

/// Gives a reversed claim's effect on both layers' pools back. `ci_base_fen` is the original's
/// `critical_illness_base`.
pub fn give_back(layers: &Layers, ci_base_fen: i64, year: i32, pools: &mut Vec<PoolState>) {
    if layers.ci_pool != NONE {
        let state = pool_state(pools, year, layers.ci_pool);
        state.cost_fen -= ci_base_fen;
        state.deductible_fen -= layers.ci_deductible_fen;
        state.fund_fen -= layers.ci_fen;
        state.claims -= 1;
    }
    if layers.assistance_pool != NONE {
        let state = pool_state(pools, year, layers.assistance_pool);
        state.cost_fen -= ci_base_fen - layers.ci_fen;
        state.deductible_fen -= layers.assistance_deductible_fen;
        state.fund_fen -= layers.assistance_fen;
        state.claims -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AssistanceCategory, Coverage};
    use crate::ingest::registry::PersonState;
    use crate::policy::{compile_file, Policies};

    const POLICY: &str = r#"
region = "999999"
name = "Test"
source = "test"
[conditions.hypertension]
icd10 = ["I10"]
[[versions]]
id = "t"
effective_from = 2024-01-01
benefit_start = "approval_day"
[[versions.critical_illness]]
coverage = "resident"
deductible = 100
bands = [{ above = 0, ratio = 0.5 }, { above = 1000, ratio = 0.8 }]
annual_cap = 1200
[[versions.assistance]]
category = "minimum_living"
deductible = 10
ratio = 0.7
annual_cap = 100
"#;

    fn policies() -> Policies {
        let mut p = Policies::default();
        compile_file(&mut p, std::path::Path::new("t.toml"), POLICY).unwrap();
        p
    }

    fn person(assistance: Option<AssistanceCategory>) -> Person {
        Person {
            state: PersonState::Valid,
            region: 0,
            coverage: Coverage::Resident,
            tier: 0,
            assistance,
            family_doctor: false,
        }
    }

    #[test]
    fn bands_pay_on_the_cumulative_base_above_the_deductible() {
        let p = policies();
        let ci = p.versions[0]
            .critical_illness_for(Coverage::Resident)
            .unwrap();
        // 1,000.00 at 50% then 80%: 500.00 + 0.80 × 200.00 = 660.00.
        assert_eq!(ci.paid_on(120_000), 66_000);
        // One rounding: 0.01 at 50% is 0.005 → 0.01.
        assert_eq!(ci.paid_on(1), 1);
        assert_eq!(ci.paid_on(0), 0);
        // The employee table is absent, and supplementary members fall back to it.
        assert!(p.versions[0]
            .critical_illness_for(Coverage::EmployeeSupplementary)
            .is_none());
    }

    #[test]
    fn layers_fill_their_deductibles_bands_and_caps_and_give_them_back() {
        let p = policies();
        let v = &p.versions[0];
        let someone = person(Some(AssistanceCategory::MinimumLiving));
        let mut pools = Vec::new();
        // Base 300.00: 100.00 deductible, 200.00 × 50% = 100.00. Assistance: 200.00 left,
        // 10.00 deductible, 190.00 × 70% = 133.00, capped at 100.00.
        let a = settle(v, &someone, 2024, 30_000, &mut pools);
        assert_eq!(
            (a.ci_deductible_fen, a.ci_fen),
            (10_000, 10_000),
            "critical illness"
        );
        assert_eq!(
            (a.assistance_deductible_fen, a.assistance_fen),
            (1_000, 10_000)
        );
        // Base 1,500.00 takes the year from 200.00 to 1,700.00 above the deductible:
        // 500 + 0.8 × 700 = 1,060.00 less the 100.00 paid = 960.00; within the 1,200.00 cap
        // (1,060.00 used). Assistance's cap is spent: nothing more.
        let b = settle(v, &someone, 2024, 150_000, &mut pools);
        assert_eq!((b.ci_deductible_fen, b.ci_fen), (0, 96_000));
        assert_eq!(b.assistance_fen, 0);
        // 1,000.00 more at 80% would pay 800.00; only 140.00 of the cap is left.
        let c = settle(v, &someone, 2024, 100_000, &mut pools);
        assert_eq!(c.ci_fen, 14_000);
        // Giving c back restores the state before it exactly.
        let before: Vec<PoolState> = {
            let mut p2 = Vec::new();
            settle(v, &someone, 2024, 30_000, &mut p2);
            settle(v, &someone, 2024, 150_000, &mut p2);
            p2
        };
        give_back(&c, 100_000, 2024, &mut pools);
        assert_eq!(pools, before);
        // A person outside the categories gets no assistance, and no base means no layer.
        let other = settle(v, &person(None), 2024, 30_000, &mut Vec::new());
        assert_eq!((other.ci_fen, other.assistance_pool), (10_000, NONE));
        assert_eq!(settle(v, &someone, 2024, 0, &mut Vec::new()), Layers::NONE);
    }
}
