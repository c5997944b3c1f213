//! Ciphertexts leaving the server: mod-switch to the hand-off level, re-randomise, flood.
//!
//! Without this, c1 and the error of a computed ciphertext are functions of the model's weights
//! and the client could solve for them. Re-randomisation adds a fresh public-key encryption of
//! zero (c1 becomes fresh), and flooding adds uniform integers in [−B, B] to c0 with
//! B ≥ N·E·2^(s−1), where E bounds the error before flooding: each coefficient's error is then
//! hidden with statistical distance ≤ E/(2B), and the whole ciphertext with ≤ N·E/(2B) ≤ 2^-s.

use client_core::cipher::encrypt_public;
use client_core::encoding::Plaintext;
use client_core::rand_core::CryptoRng;
use client_core::ring::{Basis, Coeff, Poly};

use super::ops::public_key_noise_var;
use super::{Ct, EvalError, EvalKeys, EvalResult, Evaluator};

/// What flooding did to a ciphertext.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FloodReport {
    /// log2 of the error bound E that the flooding hides.
    pub hidden_bits: f64,
    /// log2 of the flooding bound B.
    pub flood_bits: f64,
    /// Statistical security reached: −log2(N·E/(2B)).
    pub stat_bits: f64,
}

impl Evaluator {
    /// Adds a fresh public-key encryption of zero at the ciphertext's level.
    pub fn rerandomize<R: CryptoRng + ?Sized>(
        &self,
        ct: &Ct,
        keys: &EvalKeys,
        rng: &mut R,
    ) -> EvalResult<Ct> {
        let pk = keys.public.as_ref().ok_or(EvalError::MissingPublicKey)?;
        let ctx = self.ctx();
        let zero = Plaintext {
            poly: Poly::<Coeff>::zero(ctx, Basis::level(ct.level()))?,
            scale: ct.scale,
        };
        let fresh = encrypt_public(ctx, pk, &zero, rng)?;
        let mut out = ct.clone();
        out.c0.add_assign(ctx, &fresh.c0)?;
        out.c1.add_assign(ctx, &fresh.c1)?;
        out.noise_var += public_key_noise_var(ctx.n());
        Ok(out)
    }

    /// Adds uniform flooding noise to c0 for statistical security `stat_bits` (see the module
    /// docs). Fails if the flooding would not fit below a quarter of the modulus.
    pub fn flood<R: CryptoRng + ?Sized>(
        &self,
        ct: &Ct,
        stat_bits: u32,
        rng: &mut R,
    ) -> EvalResult<(Ct, FloodReport)> {
        let ctx = self.ctx();
        let n = ctx.n();
        let hidden = ct.noise_bound().max(1.0);
        let flood_bits = (n as f64 * hidden).log2() + stat_bits as f64 - 1.0;
        let flood_bits = flood_bits.ceil();
        let log_q = ctx.params().log_q(ct.level());
        if flood_bits + 2.0 > log_q || flood_bits > 120.0 {
            return Err(EvalError::FloodingDoesNotFit {
                needed_bits: flood_bits,
                modulus_bits: log_q,
            });
        }
        let bound: u128 = 1u128 << flood_bits as u32;
        let width = 2 * bound + 1;
        let mask = width.next_power_of_two() - 1;
        let mut noise = vec![0i128; n];
        for x in noise.iter_mut() {
            *x = loop {
                let v = ((rng.next_u64() as u128) << 64 | rng.next_u64() as u128) & mask;
                if v < width {
                    break v as i128 - bound as i128;
                }
            };
        }
        let basis = ct.c0.basis();
        let mut flood = Poly::<Coeff>::zero(ctx, basis)?;
        for pos in 0..basis.len() {
            let m = *ctx.modulus(basis, pos);
            for (o, &x) in flood.limb_mut(pos).iter_mut().zip(&noise) {
                *o = m.reduce_i128(x);
            }
        }
        let flood = flood.into_ntt(ctx)?;
        let mut out = ct.clone();
        out.c0.add_assign(ctx, &flood)?;
        let b = bound as f64;
        out.noise_var += b * b / 3.0;
        let report = FloodReport {
            hidden_bits: hidden.log2(),
            flood_bits,
            stat_bits: -((n as f64 * hidden).log2() - flood_bits - 1.0),
        };
        Ok((out, report))
    }

    /// Prepares a ciphertext for the client: drop to `level`, re-randomise, flood to the
    /// parameter set's statistical security.
    pub fn prepare_outgoing<R: CryptoRng + ?Sized>(
        &self,
        ct: &Ct,
        level: usize,
        keys: &EvalKeys,
        rng: &mut R,
    ) -> EvalResult<(Ct, FloodReport)> {
        let dropped = self.drop_to_level(ct, level)?;
        let fresh = self.rerandomize(&dropped, keys, rng)?;
        self.flood(&fresh, self.ctx().params().stat_sec_bits(), rng)
    }
}
