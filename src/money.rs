//! Exact money and ratios. Amounts are `i64` fen (0.01 yuan), ratios `u32` basis points of
//! 1/10 000 (the contract's `Decimal128(5,4)`). There is one rounding function, [`round_div`],
//! and every rounding in the engine goes through it.

use std::fmt;

/// Fen per yuan: the contract's `Decimal128(18, 2)` scale.
pub const FEN_PER_YUAN: i64 = 100;
/// Ratio denominator: the contract's `Decimal128(5, 4)` scale; 10 000 = 100%.
pub const RATIO_ONE: u32 = 10_000;

/// Divides `numerator / denominator` rounding half away from zero (the contract's `round`).
///
/// `denominator` must be positive. Works on `i128` so that `fen × ratio` never overflows.
#[inline]
pub fn round_div(numerator: i128, denominator: i128) -> i128 {
    debug_assert!(denominator > 0);
    let half = denominator / 2;
    if numerator >= 0 {
        (numerator + half) / denominator
    } else {
        -((-numerator + half) / denominator)
    }
}

/// `round(amount × ratio)` to the fen.
#[inline]
pub fn apply_ratio(amount_fen: i64, ratio_bp: u32) -> i64 {
    round_div(amount_fen as i128 * ratio_bp as i128, RATIO_ONE as i128) as i64
}

/// `round(amount / ratio)` to the fen; the cost a capped fund payment covers. `ratio_bp > 0`.
#[inline]
pub fn divide_by_ratio(amount_fen: i64, ratio_bp: u32) -> i64 {
    round_div(amount_fen as i128 * RATIO_ONE as i128, ratio_bp as i128) as i64
}

/// Multiplies two ratios (e.g. a prescribed ratio by the secondary-condition factor), rounding
/// half away from zero to the basis point.
#[inline]
pub fn mul_ratio(a_bp: u32, b_bp: u32) -> u32 {
    round_div(a_bp as i128 * b_bp as i128, RATIO_ONE as i128) as u32
}

/// Formats fen as yuan with two decimals, for reports (wide enough for any sum of amounts).
pub struct Yuan(pub i128);

impl fmt::Display for Yuan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// Parses a decimal written by a person (a policy number) into an integer at `scale` decimals,
/// refusing anything that would need rounding. `"0.53"` at scale 4 is `5300`.
pub fn parse_scaled(text: &str, scale: u32) -> Result<i64, String> {
    let d: rust_decimal::Decimal = text
        .trim()
        .parse()
        .map_err(|e| format!("`{text}` is not a number: {e}"))?;
    if d.scale() > scale {
        let normalized = d.normalize();
        if normalized.scale() > scale {
            return Err(format!("`{text}` has more than {scale} decimal places"));
        }
    }
    let mut scaled = d;
    scaled.rescale(scale);
    let mantissa = scaled.mantissa();
    i64::try_from(mantissa).map_err(|_| format!("`{text}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(round_div(5, 10), 1);
        assert_eq!(round_div(4, 10), 0);
        assert_eq!(round_div(-5, 10), -1);
        assert_eq!(round_div(-4, 10), 0);
        assert_eq!(round_div(15, 10), 2);
        assert_eq!(round_div(25, 10), 3);
    }

    #[test]
    fn applies_ratio_to_the_fen() {
        // 123.45 yuan at 53% = 65.4285 → 65.43
        assert_eq!(apply_ratio(12_345, 5_300), 6_543);
        // 0.01 yuan at 50% = 0.005 → 0.01 (half away from zero)
        assert_eq!(apply_ratio(1, 5_000), 1);
        assert_eq!(apply_ratio(-1, 5_000), -1);
    }

    #[test]
    fn covered_cost_of_a_capped_payment() {
        // 100.00 paid at 60% covers 166.666… → 166.67
        assert_eq!(divide_by_ratio(10_000, 6_000), 16_667);
    }

    #[test]
    fn multiplies_ratios() {
        assert_eq!(mul_ratio(7_500, 5_000), 3_750);
        assert_eq!(mul_ratio(5_300, 5_000), 2_650);
        assert_eq!(mul_ratio(1, 5_000), 1);
    }

    #[test]
    fn parses_policy_numbers_exactly() {
        assert_eq!(parse_scaled("0.53", 4), Ok(5_300));
        assert_eq!(parse_scaled("1800", 2), Ok(180_000));
        assert_eq!(parse_scaled("1800.50", 2), Ok(180_050));
        assert_eq!(parse_scaled("0.600", 2), Ok(60));
        assert!(parse_scaled("0.12345", 4).is_err());
        assert!(parse_scaled("abc", 2).is_err());
    }

    #[test]
    fn formats_yuan() {
        assert_eq!(Yuan(180_000).to_string(), "1800.00");
        assert_eq!(Yuan(-5).to_string(), "-0.05");
    }
}
