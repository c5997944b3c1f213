//! HeRefresh's mask: a uniformly random integer polynomial R with coefficients in [−A, A], added
//! to the refresh message in the coefficient domain and removed exactly after re-encryption.
//!
//! A is a power of two up to 2^190, beyond i128, so each coefficient is kept as X ∈ [0, 2A] in
//! three 64-bit words and R = X − A is reduced into any RNS basis on demand.

use client_core::rand_core::CryptoRng;
use client_core::ring::{Basis, Coeff, Context, Poly};
use zeroize::Zeroize;

use super::ProtocolError;

/// Largest supported log2 of the mask bound.
pub const MAX_MASK_BITS: u32 = 190;

/// A refresh mask (secret of the server for one round).
pub struct IntegerMask {
    log_a: u32,
    /// X = R + A per coefficient, little-endian words.
    words: Vec<[u64; 3]>,
}

impl Drop for IntegerMask {
    fn drop(&mut self) {
        for w in self.words.iter_mut() {
            w.zeroize();
        }
    }
}

impl IntegerMask {
    /// Samples R uniform in [−2^log_a, 2^log_a] for N coefficients.
    pub fn sample<R: CryptoRng + ?Sized>(
        n: usize,
        log_a: u32,
        rng: &mut R,
    ) -> Result<Self, ProtocolError> {
        if log_a == 0 || log_a > MAX_MASK_BITS {
            return Err(ProtocolError::Budget(format!(
                "refresh mask of 2^{log_a} is outside the supported range"
            )));
        }
        // X uniform in [0, 2^(a+1)] by rejection on a + 2 bits.
        let bits = log_a + 2;
        let mut words = Vec::with_capacity(n);
        for _ in 0..n {
            let x = loop {
                let mut w = [rng.next_u64(), rng.next_u64(), rng.next_u64()];
                // Keep `bits` low bits.
                for (i, word) in w.iter_mut().enumerate() {
                    let lo = 64 * i as u32;
                    if lo >= bits {
                        *word = 0;
                    } else if bits - lo < 64 {
                        *word &= (1u64 << (bits - lo)) - 1;
                    }
                }
                if le_power_of_two(&w, log_a + 1) {
                    break w;
                }
            };
            words.push(x);
        }
        Ok(Self { log_a, words })
    }

    /// log2 of the bound A.
    pub fn log_bound(&self) -> u32 {
        self.log_a
    }

    /// R reduced into `basis`.
    pub fn residues(&self, ctx: &Context, basis: Basis) -> Result<Poly<Coeff>, ProtocolError> {
        let mut out = Poly::<Coeff>::zero(ctx, basis)?;
        for pos in 0..basis.len() {
            let m = *ctx.modulus(basis, pos);
            let two64 = (m.reduce_u64(u64::MAX) + 1) % m.value();
            let two128 = m.mul(two64, two64);
            let a = pow2_mod(&m, self.log_a);
            for (o, w) in out.limb_mut(pos).iter_mut().zip(&self.words) {
                let x = m.add(
                    m.add(m.reduce_u64(w[0]), m.mul(m.reduce_u64(w[1]), two64)),
                    m.mul(m.reduce_u64(w[2]), two128),
                );
                *o = m.sub(x, a);
            }
        }
        Ok(out)
    }
}

/// 2^e mod m.
fn pow2_mod(m: &client_core::arith::Modulus, e: u32) -> u64 {
    m.pow(2, e as u64)
}

/// x ≤ 2^e for a three-word little-endian x.
fn le_power_of_two(x: &[u64; 3], e: u32) -> bool {
    let word = (e / 64) as usize;
    let bit = e % 64;
    // Words above the one holding bit e must be zero.
    if x.iter().skip(word + 1).any(|&w| w != 0) {
        return false;
    }
    if word >= 3 {
        return true;
    }
    let limit = 1u64 << bit;
    let below_zero = x.iter().take(word).all(|&w| w == 0);
    x[word] < limit || (x[word] == limit && below_zero)
}

#[cfg(test)]
mod tests {
    use super::*;
    use client_core::params::{Params, HEFUN_N16384};
    use client_core::rand_core::SeedableRng;
    use client_core::ring::IntPoly;
    use client_core::sampling::Csprng;

    #[test]
    fn residues_are_a_centred_integer_within_the_bound() {
        let ctx = Context::new(&Params::from_spec(&HEFUN_N16384).unwrap()).unwrap();
        let mut rng = Csprng::from_seed([1; 32]);
        for log_a in [20u32, 63, 64, 100, 140] {
            let mask = IntegerMask::sample(ctx.n(), log_a, &mut rng).unwrap();
            // Reconstructing from the whole chain (> 2^300) gives back R exactly.
            let poly = mask.residues(&ctx, ctx.top_basis()).unwrap();
            let int = IntPoly::reconstruct(&ctx, &poly).unwrap();
            let bound = 2f64.powi(log_a as i32);
            let vals = int.to_f64();
            assert!(vals.iter().all(|v| v.abs() <= bound), "2^{log_a}");
            let max = vals.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(max > bound / 2.0, "2^{log_a}: mask too small ({max})");
            let negatives = vals.iter().filter(|&&v| v < 0.0).count();
            assert!(
                (7_000..9_400).contains(&negatives),
                "2^{log_a}: {negatives} negatives"
            );
        }
        assert!(IntegerMask::sample(16, 191, &mut rng).is_err());
    }
}
