//! The per-claim arithmetic of CONTRACT.md, on integers: deductible, ratio and annual cap. Pure
//! functions with no allocation, used by the person state machine and benchmarked on their own.

use crate::money::{apply_ratio, divide_by_ratio};
use crate::policy::CapBasis;

/// What a benefit's year-to-date state allows for the next claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// Final ratio after every adjustment, in basis points.
    pub ratio_bp: u32,
    /// Deductible not yet absorbed this year.
    pub deductible_left_fen: i64,
    /// What is left of the annual cap: fund payment or cost depending on `cap_basis`; `None`
    /// when the benefit is uncapped.
    pub cap_left_fen: Option<i64>,
    pub cap_basis: CapBasis,
}

/// One claim's split of its eligible cost. `eligible = deductible + fund + copay + over_cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Split {
    pub eligible_fen: i64,
    pub deductible_fen: i64,
    pub fund_fen: i64,
    pub copay_fen: i64,
    pub over_cap_fen: i64,
    /// Cost the benefit covered (`fund + copay`): what a cost-basis cap counts.
    pub covered_fen: i64,
    /// The cap bound: the fund paid less than ratio × cost.
    pub capped: bool,
    /// Cap left after this claim, on the cap's own basis.
    pub cap_remaining_fen: Option<i64>,
}

/// Settles `eligible` (≥ 0) under `terms`.
///
/// Fund-basis cap (the contract's rule): `fund = min(round(base × ratio), cap_left)`; when the
/// cap binds, `covered = min(base, round(fund / ratio))`. Cost-basis cap: the cap limits the cost
/// taken in, `covered = min(base, cap_left)`, and `fund = round(covered × ratio)`.
#[inline]
pub fn split(eligible_fen: i64, terms: &Terms) -> Split {
    assert!(eligible_fen >= 0, "a claim's eligible cost is not negative");
    let deductible_fen = eligible_fen.min(terms.deductible_left_fen.max(0));
    let base = eligible_fen - deductible_fen;
    let ratio = terms.ratio_bp;
    let (fund_fen, covered_fen, capped, cap_remaining_fen) =
        match (terms.cap_left_fen, terms.cap_basis) {
            (None, _) => (apply_ratio(base, ratio), base, false, None),
            (Some(left), CapBasis::Fund) => {
                let left = left.max(0);
                let full = apply_ratio(base, ratio);
                if full > left {
                    let covered = if ratio == 0 {
                        base
                    } else {
                        base.min(divide_by_ratio(left, ratio))
                    };
                    (left, covered, true, Some(0))
                } else {
                    (full, base, false, Some(left - full))
                }
            }
            (Some(left), CapBasis::Cost) => {
                let left = left.max(0);
                let covered = base.min(left);
                (
                    apply_ratio(covered, ratio),
                    covered,
                    covered < base,
                    Some(left - covered),
                )
            }
        };
    let s = Split {
        eligible_fen,
        deductible_fen,
        fund_fen,
        copay_fen: covered_fen - fund_fen,
        over_cap_fen: base - covered_fen,
        covered_fen,
        capped,
        cap_remaining_fen,
    };
    // The contract's identity and the cap, checked in release builds too: a few compares per
    // claim, against paying a fen the policy does not allow.
    assert_eq!(
        s.eligible_fen,
        s.deductible_fen + s.fund_fen + s.copay_fen + s.over_cap_fen,
        "eligible = deductible + fund + copay + over cap"
    );
    assert!(
        s.copay_fen >= 0 && s.over_cap_fen >= 0 && s.fund_fen >= 0,
        "no layer of a claim is negative"
    );
    if let Some(left) = terms.cap_left_fen {
        let taken = match terms.cap_basis {
            CapBasis::Fund => s.fund_fen,
            CapBasis::Cost => s.covered_fen,
        };
        assert!(
            taken <= left.max(0),
            "a claim never takes more than the cap left"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fund_terms(ratio_bp: u32, deductible: i64, cap: Option<i64>) -> Terms {
        Terms {
            ratio_bp,
            deductible_left_fen: deductible,
            cap_left_fen: cap,
            cap_basis: CapBasis::Fund,
        }
    }

    #[test]
    fn uncapped_claim_pays_ratio_of_base() {
        // 200.00 at 60%, no deductible: fund 120.00, copay 80.00.
        let s = split(20_000, &fund_terms(6_000, 0, None));
        assert_eq!(
            (s.fund_fen, s.copay_fen, s.over_cap_fen),
            (12_000, 8_000, 0)
        );
        assert!(!s.capped);
    }

    #[test]
    fn deductible_is_absorbed_first() {
        // 300.00 with 100.00 deductible left at 83%: base 200.00, fund 166.00, copay 34.00.
        let s = split(30_000, &fund_terms(8_300, 10_000, Some(180_000)));
        assert_eq!(s.deductible_fen, 10_000);
        assert_eq!((s.fund_fen, s.copay_fen), (16_600, 3_400));
        assert_eq!(s.cap_remaining_fen, Some(163_400));
    }

    #[test]
    fn fund_cap_binds_and_splits_over_cap() {
        // 500.00 at 60% would pay 300.00 but only 100.00 of the cap is left.
        // covered = round(100.00 / 0.6) = 166.67; copay 66.67; over cap 333.33.
        let s = split(50_000, &fund_terms(6_000, 0, Some(10_000)));
        assert_eq!(s.fund_fen, 10_000);
        assert_eq!(s.copay_fen, 6_667);
        assert_eq!(s.over_cap_fen, 33_333);
        assert!(s.capped);
        assert_eq!(s.cap_remaining_fen, Some(0));
    }

    #[test]
    fn exhausted_cap_pays_nothing() {
        let s = split(12_345, &fund_terms(6_000, 0, Some(0)));
        assert_eq!((s.fund_fen, s.copay_fen, s.over_cap_fen), (0, 0, 12_345));
        assert!(s.capped);
    }

    #[test]
    fn cap_exactly_reached_is_not_capped() {
        let s = split(10_000, &fund_terms(6_000, 0, Some(6_000)));
        assert_eq!(s.fund_fen, 6_000);
        assert!(!s.capped);
        assert_eq!(s.cap_remaining_fen, Some(0));
    }

    #[test]
    fn cost_cap_limits_cost_taken_in() {
        // cost cap 150.00 left, 200.00 at 60%: covered 150.00, fund 90.00, copay 60.00, over 50.00.
        let terms = Terms {
            cap_basis: CapBasis::Cost,
            ..fund_terms(6_000, 0, Some(15_000))
        };
        let s = split(20_000, &terms);
        assert_eq!(
            (s.fund_fen, s.copay_fen, s.over_cap_fen),
            (9_000, 6_000, 5_000)
        );
        assert!(s.capped);
        assert_eq!(s.cap_remaining_fen, Some(0));
    }
}
