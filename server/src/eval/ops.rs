//! Ciphertext arithmetic: additions, plaintext and ciphertext products, relinearisation,
//! rescaling, level drops and rotations (single and hoisted).

use client_core::keys::{galois_element_for_rotation, ExpandedSwitchingKey};
use client_core::ring::{Context, Ntt, Poly};
use rayon::prelude::*;

use super::{Ct, EvalError, EvalKeys, EvalResult, Evaluator, PlainNtt, FRESH_NOISE_VAR};

/// Relative tolerance for "equal" scales: scales are tracked exactly, so only f64 rounding of
/// identical computations is allowed for.
const SCALE_TOLERANCE: f64 = 1e-9;

/// A degree-2 ciphertext (after a tensor product, before relinearisation).
#[derive(Clone, Debug)]
pub struct Ct3 {
    /// Coefficient of 1.
    pub d0: Poly<Ntt>,
    /// Coefficient of s.
    pub d1: Poly<Ntt>,
    /// Coefficient of s².
    pub d2: Poly<Ntt>,
    /// Scale.
    pub scale: f64,
    /// Noise variance estimate.
    pub noise_var: f64,
}

pub(super) fn check_scales(a: f64, b: f64) -> EvalResult<()> {
    if (a - b).abs() > SCALE_TOLERANCE * a.abs().max(b.abs()) {
        return Err(EvalError::ScaleMismatch(a.log2(), b.log2()));
    }
    Ok(())
}

fn check_levels(a: usize, b: usize) -> EvalResult<()> {
    if a != b {
        return Err(EvalError::LevelMismatch(a, b));
    }
    Ok(())
}

/// Noise variance added by a key switch at `level` (digit products divided by P, plus the
/// rounding of ModDown in both parts).
pub(super) fn key_switch_noise_var(ctx: &Context, level: usize) -> f64 {
    let params = ctx.params();
    let n = ctx.n() as f64;
    let log_p: f64 = params.p().iter().map(|&p| (p as f64).log2()).sum();
    let mut digits = 0.0;
    for d in 0..params.digit_count(level) {
        let log_d: f64 = params
            .digit_range(d, level)
            .map(|i| (params.q()[i] as f64).log2())
            .sum();
        // Centred ModUp'd digits are below (α+1)·D/2 in magnitude: second moment ≤ (α+1)²·D²/3
        // (conservative).
        let alpha = params.digit_size() as f64;
        digits += n * FRESH_NOISE_VAR * (alpha + 1.0).powi(2) / 3.0
            * (2.0f64).powf(2.0 * (log_d - log_p));
    }
    let k = params.p().len() as f64;
    let rounding = (k * k / 3.0 + 0.25) * (1.0 + 2.0 * n / 3.0);
    digits + rounding
}

/// Noise variance of a public-key encryption (e·u + e0 + e1·s, u and s ternary).
pub fn public_key_noise_var(n: usize) -> f64 {
    FRESH_NOISE_VAR * (1.0 + 4.0 * n as f64 / 3.0)
}

impl Evaluator {
    /// Encodes real values into an NTT-form plaintext at `level` and `scale`.
    pub fn encode(&self, values: &[f64], scale: f64, level: usize) -> EvalResult<PlainNtt> {
        let pt = self.encoder().encode(self.ctx(), values, scale, level)?;
        // Parseval for the canonical embedding with real slots: Σ m_i² = (2/N)·Δ²·Σ z_j²
        // (plus the rounding, at most N/4, negligible at any useful scale).
        let n = self.ctx().n() as f64;
        let sq_norm = 2.0 / n * scale * scale * values.iter().map(|v| v * v).sum::<f64>() + n / 4.0;
        Ok(PlainNtt {
            poly: pt.poly.into_ntt(self.ctx())?,
            scale,
            sq_norm,
        })
    }

    /// a + b.
    pub fn add(&self, a: &Ct, b: &Ct) -> EvalResult<Ct> {
        let mut out = a.clone();
        self.add_assign(&mut out, b)?;
        Ok(out)
    }

    /// a += b.
    pub fn add_assign(&self, a: &mut Ct, b: &Ct) -> EvalResult<()> {
        check_levels(a.level(), b.level())?;
        check_scales(a.scale, b.scale)?;
        a.c0.add_assign(self.ctx(), &b.c0)?;
        a.c1.add_assign(self.ctx(), &b.c1)?;
        a.noise_var += b.noise_var;
        Ok(())
    }

    /// a − b.
    pub fn sub(&self, a: &Ct, b: &Ct) -> EvalResult<Ct> {
        check_levels(a.level(), b.level())?;
        check_scales(a.scale, b.scale)?;
        let mut out = a.clone();
        out.c0.sub_assign(self.ctx(), &b.c0)?;
        out.c1.sub_assign(self.ctx(), &b.c1)?;
        out.noise_var += b.noise_var;
        Ok(out)
    }

    /// −a.
    pub fn neg(&self, a: &Ct) -> EvalResult<Ct> {
        let mut out = a.clone();
        out.c0.neg_assign(self.ctx())?;
        out.c1.neg_assign(self.ctx())?;
        Ok(out)
    }

    /// a + p (same level and scale).
    pub fn add_plain(&self, a: &Ct, p: &PlainNtt) -> EvalResult<Ct> {
        check_levels(a.level(), p.level())?;
        check_scales(a.scale, p.scale)?;
        let mut out = a.clone();
        out.c0.add_assign(self.ctx(), &p.poly)?;
        Ok(out)
    }

    /// acc += a ⊙ p in place with the SIMD multiply-accumulate (a zero ciphertext at a·p's
    /// scale and basis if `acc` is empty): the inner sums of baby-step/giant-step products.
    pub fn mul_plain_accumulate(
        &self,
        acc: &mut Option<Ct>,
        a: &Ct,
        p: &PlainNtt,
    ) -> EvalResult<()> {
        let ctx = self.ctx();
        let acc = match acc {
            Some(acc) => acc,
            None => acc.insert(Ct {
                c0: Poly::<Ntt>::zero(ctx, a.c0.basis())?,
                c1: Poly::<Ntt>::zero(ctx, a.c1.basis())?,
                scale: a.scale * p.scale,
                noise_var: 0.0,
            }),
        };
        acc.c0.mul_acc(ctx, &a.c0, &p.poly)?;
        acc.c1.mul_acc(ctx, &a.c1, &p.poly)?;
        acc.noise_var += a.noise_var * p.sq_norm;
        Ok(())
    }

    /// a ⊙ p: the scale multiplies; rescale afterwards to consume the level.
    pub fn mul_plain(&self, a: &Ct, p: &PlainNtt) -> EvalResult<Ct> {
        check_levels(a.level(), p.level())?;
        let ctx = self.ctx();
        // Zero + multiply-accumulate uses tfhe-ntt's SIMD (IFMA) product.
        let mut c0 = Poly::<Ntt>::zero(ctx, a.c0.basis())?;
        c0.mul_acc(ctx, &a.c0, &p.poly)?;
        let mut c1 = Poly::<Ntt>::zero(ctx, a.c1.basis())?;
        c1.mul_acc(ctx, &a.c1, &p.poly)?;
        Ok(Ct {
            c0,
            c1,
            scale: a.scale * p.scale,
            noise_var: a.noise_var * p.sq_norm,
        })
    }

    /// a·c for an integer constant: no level consumed, scale unchanged.
    pub fn mul_int(&self, a: &Ct, c: i64) -> EvalResult<Ct> {
        let mut out = a.clone();
        out.c0.mul_scalar_assign(self.ctx(), c)?;
        out.c1.mul_scalar_assign(self.ctx(), c)?;
        out.noise_var = a.noise_var * (c as f64).powi(2);
        Ok(out)
    }

    /// Tensor product (d0, d1, d2) = (a0·b0, a0·b1 + a1·b0, a1·b1). `bound_a` and `bound_b`
    /// bound the slot magnitudes of the messages (for the noise estimate only).
    pub fn tensor(&self, a: &Ct, b: &Ct, bound_a: f64, bound_b: f64) -> EvalResult<Ct3> {
        check_levels(a.level(), b.level())?;
        let ctx = self.ctx();
        let basis = a.c0.basis();
        let mut d0 = Poly::<Ntt>::zero(ctx, basis)?;
        d0.mul_acc(ctx, &a.c0, &b.c0)?;
        let mut d1 = Poly::<Ntt>::zero(ctx, basis)?;
        d1.mul_acc(ctx, &a.c0, &b.c1)?;
        d1.mul_acc(ctx, &a.c1, &b.c0)?;
        let mut d2 = Poly::<Ntt>::zero(ctx, basis)?;
        d2.mul_acc(ctx, &a.c1, &b.c1)?;
        let n = ctx.n() as f64;
        // ‖Δ·m‖² ≤ Δ²·B² for slots bounded by B.
        let ma = (a.scale * bound_a).powi(2);
        let mb = (b.scale * bound_b).powi(2);
        let noise_var = ma * b.noise_var + mb * a.noise_var + n * a.noise_var * b.noise_var;
        Ok(Ct3 {
            d0,
            d1,
            d2,
            scale: a.scale * b.scale,
            noise_var,
        })
    }

    /// Relinearises a degree-2 ciphertext with the relinearisation key.
    pub fn relinearize(&self, ct: &Ct3, keys: &EvalKeys) -> EvalResult<Ct> {
        let key = keys.relin.as_ref().ok_or(EvalError::MissingRelinKey)?;
        let level = ct.d0.basis().q as usize - 1;
        let (k0, k1) = self.switcher().switch(self.ctx(), &ct.d2, key)?;
        let mut c0 = ct.d0.clone();
        c0.add_assign(self.ctx(), &k0)?;
        let mut c1 = ct.d1.clone();
        c1.add_assign(self.ctx(), &k1)?;
        Ok(Ct {
            c0,
            c1,
            scale: ct.scale,
            noise_var: ct.noise_var + key_switch_noise_var(self.ctx(), level),
        })
    }

    /// a·b, relinearised (not rescaled).
    pub fn mul(
        &self,
        a: &Ct,
        b: &Ct,
        bound_a: f64,
        bound_b: f64,
        keys: &EvalKeys,
    ) -> EvalResult<Ct> {
        self.relinearize(&self.tensor(a, b, bound_a, bound_b)?, keys)
    }

    /// Divides by the top prime q_l with rounding: level − 1, scale / q_l.
    pub fn rescale(&self, a: &Ct) -> EvalResult<Ct> {
        let level = a.level();
        if level == 0 {
            return Err(EvalError::NoLevelLeft);
        }
        let ctx = self.ctx();
        let q_l = ctx.modulus_at(level).value() as f64;
        let n = ctx.n() as f64;
        Ok(Ct {
            c0: rescale_poly(ctx, &a.c0)?,
            c1: rescale_poly(ctx, &a.c1)?,
            scale: a.scale / q_l,
            noise_var: a.noise_var / (q_l * q_l) + (1.0 + 2.0 * n / 3.0) / 12.0,
        })
    }

    /// Rescales by the top `primes` primes and labels the result with `scale`, the scale the
    /// caller knows they leave (a product at `scale` times exactly those primes' product).
    /// Dividing by the primes in f64 leaves rounding drift; the known scale is kept bit for bit
    /// so that it does not accumulate over layers and scales compared exactly (such as the one a
    /// client echoes back) still match. More than 1e-9 relative difference is a bug, not
    /// rounding, and is an error.
    pub fn rescale_to(&self, a: &Ct, primes: usize, scale: f64) -> EvalResult<Ct> {
        let mut out = a.clone();
        for _ in 0..primes {
            out = self.rescale(&out)?;
        }
        if (out.scale / scale - 1.0).abs() > SCALE_TOLERANCE {
            return Err(EvalError::ScaleMismatch(out.scale.log2(), scale.log2()));
        }
        out.scale = scale;
        Ok(out)
    }

    /// ct + R for an exact integer polynomial R (NTT form over the ciphertext's primes), added
    /// to c0: the message becomes Δ·m + R. The noise estimate is unchanged, since R is part of
    /// the message, known exactly to whoever added it and removed by
    /// [`Evaluator::sub_integer_mask`].
    pub fn add_integer_mask(&self, ct: &mut Ct, mask: &Poly<Ntt>) -> EvalResult<()> {
        ct.c0.add_assign(self.ctx(), mask)?;
        Ok(())
    }

    /// ct − R for an exact integer polynomial R in NTT form (see
    /// [`Evaluator::add_integer_mask`]); the noise estimate is unchanged.
    pub fn sub_integer_mask(&self, ct: &mut Ct, mask: &Poly<Ntt>) -> EvalResult<()> {
        ct.c0.sub_assign(self.ctx(), mask)?;
        Ok(())
    }

    /// Drops primes above `level` without rescaling (scale unchanged).
    pub fn drop_to_level(&self, a: &Ct, level: usize) -> EvalResult<Ct> {
        let mut out = a.clone();
        out.c0.drop_to_level(self.ctx(), level)?;
        out.c1.drop_to_level(self.ctx(), level)?;
        Ok(out)
    }

    /// The Galois key for a rotation by `steps`.
    pub(super) fn galois_key<'k>(
        &self,
        keys: &'k EvalKeys,
        steps: i64,
    ) -> EvalResult<(u64, &'k ExpandedSwitchingKey)> {
        let g = galois_element_for_rotation(self.ctx().n(), steps);
        let key = keys.galois.get(&g).ok_or(EvalError::MissingGaloisKey(g))?;
        Ok((g, key))
    }

    /// Rotates the slots left by `steps` (negative: right).
    pub fn rotate(&self, a: &Ct, steps: i64, keys: &EvalKeys) -> EvalResult<Ct> {
        let (g, key) = self.galois_key(keys, steps)?;
        let ctx = self.ctx();
        let mut c0 = self.galois().apply(ctx, &a.c0, g)?;
        let c1 = self.galois().apply(ctx, &a.c1, g)?;
        let (k0, k1) = self.switcher().switch(ctx, &c1, key)?;
        c0.add_assign(ctx, &k0)?;
        Ok(Ct {
            c0,
            c1: k1,
            scale: a.scale,
            noise_var: a.noise_var + key_switch_noise_var(ctx, a.level()),
        })
    }

    /// Rotations of one ciphertext by several steps, sharing one decomposition (hoisting).
    /// A step of 0 returns a copy.
    pub fn rotate_hoisted(&self, a: &Ct, steps: &[i64], keys: &EvalKeys) -> EvalResult<Vec<Ct>> {
        let ctx = self.ctx();
        let dec = if steps.iter().any(|&s| s != 0) {
            Some(self.switcher().decompose(ctx, &a.c1)?)
        } else {
            None
        };
        steps
            .par_iter()
            .map(|&s| {
                if s == 0 {
                    return Ok(a.clone());
                }
                let dec = dec
                    .as_ref()
                    .ok_or(EvalError::Internal("no decomposition"))?;
                self.rotate_decomposed(a, dec, s, keys)
            })
            .collect()
    }

    /// The key-switch output of rotating a decomposed c1 by `steps`, still over Q_l·P (before
    /// ModDown), with the Galois element used.
    pub(super) fn rotated_key_product(
        &self,
        dec: &super::Decomposed,
        steps: i64,
        keys: &EvalKeys,
    ) -> EvalResult<(u64, Poly<Ntt>, Poly<Ntt>)> {
        let ctx = self.ctx();
        let (g, key) = self.galois_key(keys, steps)?;
        let digits = dec
            .digits
            .iter()
            .map(|d| self.galois().apply(ctx, d, g))
            .collect::<EvalResult<Vec<_>>>()?;
        let (a0, a1) = self
            .switcher()
            .inner_product(ctx, &digits, dec.level, key)?;
        Ok((g, a0, a1))
    }

    /// One rotation of `a` given its decomposed c1.
    pub fn rotate_decomposed(
        &self,
        a: &Ct,
        dec: &super::Decomposed,
        steps: i64,
        keys: &EvalKeys,
    ) -> EvalResult<Ct> {
        let ctx = self.ctx();
        let (g, a0, a1) = self.rotated_key_product(dec, steps, keys)?;
        let mut c0 = self.galois().apply(ctx, &a.c0, g)?;
        c0.add_assign(ctx, &self.switcher().mod_down(ctx, &a0)?)?;
        Ok(Ct {
            c0,
            c1: self.switcher().mod_down(ctx, &a1)?,
            scale: a.scale,
            noise_var: a.noise_var + key_switch_noise_var(ctx, a.level()),
        })
    }
}

/// (p − [p]_{q_l}) / q_l with the centred remainder: rounding division by the top prime.
fn rescale_poly(ctx: &Context, p: &Poly<Ntt>) -> EvalResult<Poly<Ntt>> {
    let level = p.basis().q as usize - 1;
    if p.basis().p != 0 {
        return Err(EvalError::Internal("rescale of an extended polynomial"));
    }
    let n = ctx.n();
    let m_l = ctx.modulus_at(level);
    let q_l = m_l.value();
    let mut last = p.limb(level).to_vec();
    let plan_l = ctx.plan_at(level);
    plan_l.inv(&mut last);
    plan_l.normalize(&mut last);
    let mut out = p.clone();
    out.drop_to_level(ctx, level - 1)?;
    let mut t = vec![0u64; n];
    for i in 0..level {
        let m = ctx.modulus_at(i);
        let q_l_mod = m.reduce_u64(q_l);
        for (o, &v) in t.iter_mut().zip(&last) {
            let r = m.reduce_u64(v);
            *o = if v > q_l / 2 { m.sub(r, q_l_mod) } else { r };
        }
        ctx.plan_at(i).fwd(&mut t);
        let inv = m
            .inv(q_l_mod)
            .ok_or(EvalError::Internal("q_l not invertible"))?;
        let inv_shoup = m.shoup(inv);
        for (o, &v) in out.limb_mut(i).iter_mut().zip(&t) {
            *o = m.mul_shoup(m.sub(*o, v), inv, inv_shoup);
        }
    }
    Ok(out)
}
