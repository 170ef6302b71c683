//! The second and third layers of one-stop settlement (一站式结算), after the basic fund:
//! critical illness insurance (大病保险) takes the in-scope cost the basic fund left to the
//! person; medical assistance (医疗救助) takes, for persons in an assistance category, what both
//! insurance layers left. Each layer keeps its own year-to-date pool per person: base received
//! (`cost`), deductible absorbed and amount paid (`fund`).

use super::kernel::{split, Terms};
use super::{pool_state, Layers};
use crate::ingest::registry::Person;
use crate::ledger::PoolState;
use crate::policy::{CapBasis, Version, NONE};

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
        state.cost_fen += ci_base_fen;
        state.deductible_fen += deductible;
        state.fund_fen += paid;
        state.claims += 1;
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
        state.claims += 1;
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
