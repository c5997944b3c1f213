//! Randomness: the ChaCha20 CSPRNG, secret and error distributions, and uniform polynomials
//! expanded from 32-byte seeds.
//!
//! The library never gathers entropy itself. Callers pass a [`rand_core::CryptoRng`] (on a host,
//! seeded from the operating system; on a microcontroller, from its TRNG) or a seed for
//! [`Csprng::from_seed`].

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, Rng, SeedableRng};
use zeroize::Zeroize;

use crate::arith::Modulus;

/// The CSPRNG used throughout: ChaCha20 (rand_chacha).
pub type Csprng = ChaCha20Rng;

/// A 32-byte seed.
pub type Seed = [u8; 32];

/// Parameter η of the centred binomial error distribution: variance η/2 = 10.5, standard
/// deviation ≈ 3.24, every sample in [−21, 21].
pub const CBD_ETA: u32 = 21;

/// Standard deviation of the error distribution.
pub const ERROR_STD_DEV: f64 = 3.24037034920393;

/// Draws a fresh seed from `rng`.
pub fn random_seed<R: CryptoRng + ?Sized>(rng: &mut R) -> Seed {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    seed
}

/// A ChaCha20 stream keyed by `seed`, on stream number `stream`: separate streams of one seed
/// are independent, so each limb of each key digit can be expanded on its own.
pub fn seeded_stream(seed: &Seed, stream: u64) -> Csprng {
    let mut rng = Csprng::from_seed(*seed);
    rng.set_stream(stream);
    rng
}

/// Fills `out` with uniform ternary values (−1, 0, 1 each with probability 1/3).
pub fn fill_ternary<R: CryptoRng + ?Sized>(rng: &mut R, out: &mut [i8]) {
    let mut filled = 0;
    let mut word = 0u64;
    let mut bits_left = 0;
    while filled < out.len() {
        if bits_left < 2 {
            word = rng.next_u64();
            bits_left = 64;
        }
        let v = (word & 3) as i8;
        word >>= 2;
        bits_left -= 2;
        // Rejection of the fourth value keeps the three outcomes exactly uniform.
        if v < 3 {
            out[filled] = v - 1;
            filled += 1;
        }
    }
    word.zeroize();
}

/// Fills `out` with centred-binomial errors (η = 21): popcount(a) − popcount(b) for two
/// independent 21-bit uniform words. Constant time per sample.
pub fn fill_error<R: CryptoRng + ?Sized>(rng: &mut R, out: &mut [i8]) {
    const MASK: u64 = (1 << CBD_ETA) - 1;
    for x in out.iter_mut() {
        let mut r = rng.next_u64();
        let a = (r & MASK).count_ones() as i8;
        let b = ((r >> CBD_ETA) & MASK).count_ones() as i8;
        *x = a - b;
        r.zeroize();
    }
}

/// Residues uniform modulo a prime, by rejection sampling on bit-masked words: an endless
/// stream, so a limb can be consumed without a buffer.
pub struct UniformResidues<R> {
    rng: R,
    q: u64,
    mask: u64,
}

impl<R: Rng> UniformResidues<R> {
    /// Residues modulo `m` drawn from `rng`.
    pub fn new(rng: R, m: &Modulus) -> Self {
        let mask = if m.bits() == 64 {
            u64::MAX
        } else {
            (1u64 << m.bits()) - 1
        };
        Self {
            rng,
            q: m.value(),
            mask,
        }
    }

    /// The next residue.
    #[inline]
    pub fn next_residue(&mut self) -> u64 {
        loop {
            let v = self.rng.next_u64() & self.mask;
            if v < self.q {
                return v;
            }
        }
    }
}

/// Fills `out` with residues uniform modulo `m` (see [`UniformResidues`]).
pub fn fill_uniform<R: Rng + ?Sized>(rng: &mut R, m: &Modulus, out: &mut [u64]) {
    let mut residues = UniformResidues::new(rng, m);
    for x in out.iter_mut() {
        *x = residues.next_residue();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn rng() -> Csprng {
        Csprng::from_seed([7; 32])
    }

    #[test]
    fn ternary_is_balanced() {
        let mut out = vec![0i8; 30_000];
        fill_ternary(&mut rng(), &mut out);
        for v in [-1i8, 0, 1] {
            let count = out.iter().filter(|&&x| x == v).count();
            assert!((9_500..10_500).contains(&count), "value {v}: {count}");
        }
    }

    #[test]
    fn error_has_the_stated_deviation() {
        let mut out = vec![0i8; 100_000];
        fill_error(&mut rng(), &mut out);
        let mean = out.iter().map(|&x| x as f64).sum::<f64>() / out.len() as f64;
        let var = out.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / out.len() as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!(
            (var.sqrt() - ERROR_STD_DEV).abs() < 0.05,
            "std {}",
            var.sqrt()
        );
        assert!(out.iter().all(|&x| x.unsigned_abs() <= CBD_ETA as u8));
    }

    #[test]
    fn streams_are_deterministic_and_distinct() {
        let m = Modulus::new(1_125_899_906_826_241).unwrap();
        let mut a = vec![0u64; 64];
        let mut b = vec![0u64; 64];
        let mut c = vec![0u64; 64];
        fill_uniform(&mut seeded_stream(&[1; 32], 3), &m, &mut a);
        fill_uniform(&mut seeded_stream(&[1; 32], 3), &m, &mut b);
        fill_uniform(&mut seeded_stream(&[1; 32], 4), &m, &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|&x| x < m.value()));
    }
}
