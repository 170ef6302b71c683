//! A small, hand-written random-number generator and the few floating-point functions the
//! generator needs, so that a seed names the same synthetic province forever: no dependence on
//! an external crate's algorithm choices, nor on the platform's `libm` (whose `exp`/`ln` may
//! differ in the last bit between C libraries and would then change a rounded amount).
//!
//! [`SplitMix64`] turns `(seed, stream)` into a well-mixed 256-bit state; [`Rng`] is
//! xoshiro256** (Blackman & Vigna) on that state. Everything here uses only IEEE-754 basic
//! operations (`+ − × ÷ √`), which are correctly rounded and therefore bit-identical everywhere.

/// SplitMix64 (Steele, Lea & Flood): used only to expand a seed into xoshiro state.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }
}

/// SplitMix64's output function: a bijective avalanche mix of 64 bits.
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256**: fast, 256 bits of state, passes BigCrush; plenty for synthetic data.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// An independent generator for one `stream` (a chunk and purpose) of one `seed`. Streams of
    /// one seed, and equal streams of different seeds, start from unrelated states.
    pub fn for_stream(seed: u64, stream: u64) -> Self {
        let key =
            mix64(seed ^ 0x6A09_E667_F3BC_C908) ^ mix64(stream.wrapping_add(0xBB67_AE85_84CA_A73B));
        let mut sm = SplitMix64::new(key);
        let s = [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()];
        // All-zero state is xoshiro's one fixed point; SplitMix64 never yields four zeros in a
        // row, but keep the guarantee explicit.
        debug_assert!(s.iter().any(|&w| w != 0));
        Rng { s }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (`n > 0`) by Lemire's multiply-shift; the bias (< n / 2⁶⁴) is far
    /// below anything a synthetic data set could show.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal by Marsaglia's polar method (needs only `ln` and `√`).
    pub fn normal(&mut self) -> f64 {
        loop {
            let u = 2.0 * self.unit() - 1.0;
            let v = 2.0 * self.unit() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                return u * (-2.0 * ln(s) / s).sqrt();
            }
        }
    }

    /// Log-normal with the given median and shape `sigma`.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * exp(sigma * self.normal())
    }

    /// Index in `0..n` with Zipf-like (log-uniform) popularity: index 0 is the most popular,
    /// and the share of index `i` falls off roughly as `1 / (i + 1)`.
    pub fn zipf(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let x = exp(self.unit() * ln((n + 1) as f64));
        ((x as u64).saturating_sub(1)).min(n - 1)
    }

    /// Draws an index from a [`Weighted`] table.
    #[inline]
    pub fn pick(&mut self, table: &Weighted) -> usize {
        table.index_of(self.below(table.total))
    }
}

/// Integer weights, so that a draw never depends on floating-point summation.
#[derive(Debug, Clone)]
pub struct Weighted {
    cumulative: Vec<u64>,
    total: u64,
}

impl Weighted {
    /// `weights` must not all be zero.
    pub fn new(weights: &[u32]) -> Self {
        let mut total = 0u64;
        let cumulative = weights
            .iter()
            .map(|&w| {
                total += w as u64;
                total
            })
            .collect();
        assert!(total > 0, "a weighted table needs a positive weight");
        Weighted { cumulative, total }
    }

    #[inline]
    fn index_of(&self, r: u64) -> usize {
        // Tables are short (≤ 20 entries): a linear scan beats a binary search.
        self.cumulative
            .iter()
            .position(|&c| r < c)
            .unwrap_or(self.cumulative.len() - 1)
    }
}

// fdlibm's split of ln 2: the high part has trailing zero bits, so `k × LN2_HI` is exact.
const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
const LN2: f64 = std::f64::consts::LN_2;

/// `eˣ` from basic operations only (Cody–Waite reduction, then a Taylor polynomial); relative
/// error below 1e-15 on `[-700, 700]`, which is all the generator uses. Out-of-range arguments
/// are clamped.
pub fn exp(x: f64) -> f64 {
    let x = x.clamp(-700.0, 700.0);
    let k = (x * std::f64::consts::LOG2_E).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // |r| ≤ ln2/2: terms to r¹³/13! leave an error under 1e-17.
    let mut p = 1.0 / 6_227_020_800.0; // 1/13!
    for n in (1..13).rev() {
        p = p * r + 1.0 / factorial(n);
    }
    let er = p * r + 1.0;
    er * f64::from_bits(((k as i64 + 1023) as u64) << 52)
}

const fn factorial(n: u32) -> f64 {
    let mut f = 1.0;
    let mut i = 2;
    while i <= n {
        f *= i as f64;
        i += 1;
    }
    f
}

/// Natural logarithm of a positive, normal `x` from basic operations only: split off the binary
/// exponent, then `ln m = 2·atanh((m−1)/(m+1))` on `m ∈ [√½, √2]`.
pub fn ln(x: f64) -> f64 {
    debug_assert!(x > 0.0 && x.is_normal());
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7FF) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000F_FFFF_FFFF_FFFF) | (1023u64 << 52));
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    // |s| ≤ 0.172: odd terms to s²³ leave an error under 1e-19.
    let mut p = 1.0 / 23.0;
    let mut n = 21.0;
    while n >= 1.0 {
        p = p * s2 + 1.0 / n;
        n -= 2.0;
    }
    e as f64 * LN2 + 2.0 * s * p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoshiro_matches_its_reference_output() {
        // Reference: xoshiro256** with state {1, 2, 3, 4} (Vigna's C code) yields these.
        let mut rng = Rng { s: [1, 2, 3, 4] };
        let got: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(got, [11520, 0, 1509978240, 1215971899390074240]);
    }

    #[test]
    fn splitmix_matches_its_reference_output() {
        // Reference: SplitMix64 seeded with 1234567.
        let mut sm = SplitMix64::new(1_234_567);
        assert_eq!(sm.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(sm.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn streams_differ_and_repeat() {
        let a: Vec<u64> = {
            let mut r = Rng::for_stream(7, 0);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::for_stream(7, 1);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::for_stream(8, 0);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let a2: Vec<u64> = {
            let mut r = Rng::for_stream(7, 0);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn exp_and_ln_agree_with_std() {
        for i in -2000..=2000 {
            let x = i as f64 * 0.0173;
            let rel = (exp(x) - x.exp()).abs() / x.exp();
            assert!(rel < 1e-14, "exp({x}): {} vs {}", exp(x), x.exp());
        }
        for i in 1..=4000 {
            let x = i as f64 * 0.00731;
            let err = (ln(x) - x.ln()).abs();
            assert!(
                err < 1e-14 * x.ln().abs().max(1.0),
                "ln({x}): {} vs {}",
                ln(x),
                x.ln()
            );
        }
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn draws_have_the_expected_moments() {
        let mut rng = Rng::for_stream(42, 3);
        let n = 100_000;
        let (mut sum, mut sq) = (0.0, 0.0);
        for _ in 0..n {
            let z = rng.normal();
            sum += z;
            sq += z * z;
        }
        let mean = sum / n as f64;
        let var = sq / n as f64 - mean * mean;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "variance {var}");

        let table = Weighted::new(&[1, 0, 3]);
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[rng.pick(&table)] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!((9_000..11_000).contains(&counts[0]), "{counts:?}");

        for _ in 0..10_000 {
            assert!(rng.below(7) < 7);
            assert!(rng.zipf(300) < 300);
        }
    }
}
