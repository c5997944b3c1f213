//! HeRefresh: the client re-encrypts a layer's output at the top level without learning it.
//!
//! The **refresh message** is the layer's output y' at the hand-off level, re-randomised, plus a
//! uniformly random integer polynomial R with coefficients in [−A, A], A ≥ N·B·2^(s−1) for the
//! bound B on the coefficients of Δ·y' + e, so that R hides them with statistical distance
//! 2^-s. The client decrypts and re-encrypts it at the top level; the server removes R exactly.
//!
//! A is a power of two up to 2^190, beyond i128, so each coefficient is kept as X ∈ [0, 2A] in
//! three 64-bit words and R = X − A is reduced into any RNS basis on demand.

use client_core::cipher::{Ciphertext, SeededCiphertext};
use client_core::rand_core::CryptoRng;
use client_core::ring::{Basis, Coeff, Context, Ntt, Poly};
use zeroize::Zeroize;

use super::config::ProtocolConfig;
use super::ProtocolError;
use crate::eval::{Ct, EvalKeys, Evaluator};

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

    /// R in NTT form over the ciphertext primes of `level`.
    fn ntt(&self, ctx: &Context, level: usize) -> Result<Poly<Ntt>, ProtocolError> {
        Ok(self.residues(ctx, Basis::level(level))?.into_ntt(ctx)?)
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

/// What the server keeps of one refresh message until the client's re-encryption returns.
pub(super) struct RefreshSecret {
    mask: IntegerMask,
    /// Noise variance of the message's error, which the re-encryption carries over.
    noise_var: f64,
}

/// One outgoing refresh message.
pub(super) struct RefreshMessage {
    /// For the client.
    pub(super) message: Ciphertext,
    /// For the server, until the reply.
    pub(super) secret: RefreshSecret,
    /// The bound B on the coefficients of Δ·y' + e that the mask hides.
    pub(super) coeff_bound: f64,
    /// log2 of the mask bound A.
    pub(super) mask_bits: f64,
}

/// The refresh message for `y_h` (at the hand-off level): re-randomised, plus a fresh mask
/// R with A ≥ N·B·2^(s−1). Fails if A does not fit the hand-off modulus.
pub(super) fn refresh_message<R: CryptoRng + ?Sized>(
    eval: &Evaluator,
    keys: &EvalKeys,
    cfg: &ProtocolConfig,
    y_h: &Ct,
    rng: &mut R,
) -> Result<RefreshMessage, ProtocolError> {
    let ctx = eval.ctx();
    let n = ctx.n();
    let h = ctx.params().handoff_level();
    let room = ctx.params().log_q(h) - 2.0;
    let coeff_bound = y_h.scale() * cfg.value_bound + y_h.noise_bound();
    let log_a = ((n as f64 * coeff_bound).log2() + cfg.stat_bits as f64 - 1.0).ceil();
    if log_a + 1.0 > room {
        return Err(ProtocolError::Budget(format!(
            "refresh mask needs 2^{log_a:.0} but the hand-off modulus leaves 2^{room:.1}"
        )));
    }
    let mask = IntegerMask::sample(n, log_a as u32, rng)?;
    let mut refresh = eval.rerandomize(y_h, keys, rng)?;
    eval.add_integer_mask(&mut refresh, &mask.ntt(ctx, h)?)?;
    Ok(RefreshMessage {
        message: refresh.into_ciphertext(),
        secret: RefreshSecret {
            mask,
            noise_var: y_h.noise_var(),
        },
        coeff_bound,
        mask_bits: log_a,
    })
}

/// The client's re-encryption of a refresh message with the mask removed exactly:
/// z' = Δ·y' + e at the top level. It must be at the top level and at `scale`, the scale of
/// the message sent.
pub(super) fn unmask(
    eval: &Evaluator,
    reencrypted: &SeededCiphertext,
    secret: &RefreshSecret,
    scale: f64,
) -> Result<Ct, ProtocolError> {
    let ctx = eval.ctx();
    let top = ctx.params().top_level();
    let mut z = Ct::from_client(ctx, reencrypted, top)?;
    if z.scale() != scale {
        return Err(ProtocolError::Violation(
            "refreshed ciphertext at the wrong scale",
        ));
    }
    z.add_noise_variance(secret.noise_var);
    eval.sub_integer_mask(&mut z, &secret.mask.ntt(ctx, top)?)?;
    Ok(z)
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
