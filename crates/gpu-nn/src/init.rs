//! Seeded parameter initialisation with PyTorch's default rules.
//!
//! A small SplitMix64 generator is used instead of `rand` on purpose: its output is fixed
//! forever, so a seed names the same initial weights on every platform and version (rand's
//! `StdRng` makes no such promise), which checkpoints and tests rely on.

/// SplitMix64: tiny, fast, statistically good for initialisation and shuffling.
#[derive(Clone, Debug)]
pub struct SeedRng(u64);

impl SeedRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Current state (for checkpoints); `SeedRng::new(state)` resumes the stream.
    pub fn state(&self) -> u64 {
        self.0
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 bits of precision.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.next_f32().max(f32::MIN_POSITIVE);
        let u2 = self.next_f32();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 11) as u128 * n as u128) >> 53) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// `n` values uniform in [-bound, bound).
pub fn uniform_vec(rng: &mut SeedRng, n: usize, bound: f32) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(-bound, bound)).collect()
}

/// PyTorch's default bound for conv/linear weights: `kaiming_uniform_(a=sqrt(5))` gives
/// gain*sqrt(3/fan_in) with gain = sqrt(2/(1+5)), i.e. 1/sqrt(fan_in). Biases use the same
/// bound.
pub fn default_bound(fan_in: usize) -> f32 {
    if fan_in == 0 {
        0.0
    } else {
        1.0 / (fan_in as f32).sqrt()
    }
}
