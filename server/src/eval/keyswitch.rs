//! Hybrid key switching: digit decomposition, ModUp to Q_l·P, inner product with the key, ModDown.
//!
//! A polynomial d at level l is split into digits d_j = d mod D_j (D_j the product of the α
//! ciphertext primes of digit j). Each digit is extended to all primes of Q_l·P by fast basis
//! conversion (off by a small multiple of D_j, which the key's CRT-idempotent factor absorbs),
//! multiplied with the key's (b_j, a_j), summed, and divided by P with rounding (ModDown).
//! Hoisting keeps the extended digits so that several automorphisms reuse one decomposition.

use client_core::arith::Modulus;
use client_core::keys::ExpandedSwitchingKey;
use client_core::ring::{Basis, Context, Ntt, Poly};
use rayon::prelude::*;

use super::EvalError;

/// Fast basis conversion x ↦ Σ_i [x_i·(D/d_i)^-1]_{d_i}·(D/d_i) from source to target primes.
///
/// The terms [·]_{d_i} are taken in (−d_i/2, d_i/2], so the result is x + u·D with x and u
/// symmetric around zero. Unsigned representatives would give the ModUp digits a mean of D/2 and
/// the ModDown rounding a mean of about one; multiplied by the key error or by s, such a bias
/// becomes a correlated, low-frequency error that piles up in the slots next to ζ ≈ 1
/// (measured: 22.8 instead of 27.3 bits after one rotation at the default preset).
struct BasisConversion {
    /// Per source: its modulus, (D/d_i)^-1 mod d_i and the Shoup form.
    sources: Vec<(Modulus, u64, u64)>,
    /// Per target: its modulus, (D/d_i) mod t for every source i, and D mod t.
    targets: Vec<(Modulus, Vec<u64>, u64)>,
}

fn product_except(m: &Modulus, primes: &[Modulus], skip: usize) -> u64 {
    primes
        .iter()
        .enumerate()
        .filter(|&(k, _)| k != skip)
        .fold(1 % m.value(), |acc, (_, o)| {
            m.mul(acc, m.reduce_u64(o.value()))
        })
}

impl BasisConversion {
    fn new(ctx: &Context, sources: &[usize], targets: &[usize]) -> Result<Self, EvalError> {
        let src: Vec<Modulus> = sources.iter().map(|&i| *ctx.modulus_at(i)).collect();
        let mut s = Vec::with_capacity(src.len());
        for (i, m) in src.iter().enumerate() {
            let inv = m
                .inv(product_except(m, &src, i))
                .ok_or(EvalError::Internal("primes not coprime"))?;
            s.push((*m, inv, m.shoup(inv)));
        }
        let t = targets
            .iter()
            .map(|&pi| {
                let t = *ctx.modulus_at(pi);
                let hats = (0..src.len())
                    .map(|i| product_except(&t, &src, i))
                    .collect();
                let d_mod_t = product_except(&t, &src, usize::MAX);
                (t, hats, d_mod_t)
            })
            .collect();
        Ok(Self {
            sources: s,
            targets: t,
        })
    }

    /// First step, shared by all targets: y_i = x_i·(D/d_i)^-1 mod d_i, into `scratch`.
    fn prepare(&self, src: &[&[u64]], n: usize, scratch: &mut Vec<u64>) {
        scratch.resize(self.sources.len() * n, 0);
        for (i, ((m, inv, inv_shoup), x)) in self.sources.iter().zip(src).enumerate() {
            for (y, &v) in scratch[i * n..(i + 1) * n].iter_mut().zip(x.iter()) {
                *y = m.mul_shoup(v, *inv, *inv_shoup);
            }
        }
    }

    /// Second step for target `t`: out = Σ_i y_i·(D/d_i) mod t (coefficient form).
    ///
    /// Source-major over contiguous slices with Shoup products, so the inner loops have no
    /// 128-bit arithmetic and no bounds checks. A term y_i > d_i/2 stands for y_i − d_i; since
    /// d_i·(D/d_i) = D, it contributes an extra −D ≡ t − (D mod t), added branch-free.
    fn finish(&self, t: usize, scratch: &[u64], out: &mut [u64]) {
        let n = out.len();
        let (m, hats, d_mod_t) = &self.targets[t];
        let q = m.value();
        let minus_d = m.neg(*d_mod_t);
        out.fill(0);
        for ((src, _, _), (&h, y)) in self
            .sources
            .iter()
            .zip(hats.iter().zip(scratch.chunks_exact(n)))
        {
            let half = src.value() / 2;
            let h_shoup = m.shoup(h);
            for (o, &v) in out.iter_mut().zip(y) {
                // mul_shoup < 2q; with the correction < 3q; the running sum stays far below 2^64.
                let term = m.mul_shoup_lazy(v, h, h_shoup) + if v > half { minus_d } else { 0 };
                *o += term;
            }
        }
        let bound_terms = 3 * self.sources.len() as u64;
        debug_assert!(q.checked_mul(bound_terms).is_some());
        for o in out.iter_mut() {
            *o = m.reduce_u64(*o);
        }
    }
}

/// ModUp of one digit at one level: which limbs are copied and which are converted.
struct DigitPlan {
    /// Positions (in the extended basis Q_l·P) of the digit's own primes.
    own: Vec<usize>,
    /// Positions and global prime indices of the converted limbs.
    converted: Vec<(usize, usize)>,
    conv: BasisConversion,
}

/// ModDown constants for one level: P → q_0 … q_l, then multiply by P^-1.
struct ModDownPlan {
    conv: BasisConversion,
    /// P^-1 mod q_i and its Shoup form.
    p_inv: Vec<(u64, u64)>,
    /// h = (P − 1)/2 mod q_i: adding h before dividing turns floor into rounding.
    half_p_mod_q: Vec<u64>,
}

/// Precomputed key-switching plans for every level.
pub struct KeySwitcher {
    num_p: usize,
    top: usize,
    /// digits[l][j].
    digits: Vec<Vec<DigitPlan>>,
    mod_down: Vec<ModDownPlan>,
}

/// The extended digits of a decomposed polynomial (NTT form over Q_l·P): the hoistable part of
/// a key switch.
pub struct Decomposed {
    /// Level of the decomposed polynomial.
    pub level: usize,
    /// One extended polynomial per digit.
    pub digits: Vec<Poly<Ntt>>,
}

impl KeySwitcher {
    /// Builds the plans of every level of `ctx`.
    pub fn new(ctx: &Context) -> Result<Self, EvalError> {
        let params = ctx.params();
        let num_q = ctx.num_q();
        let num_p = ctx.num_p();
        let special: Vec<usize> = (num_q..num_q + num_p).collect();
        let mut digits = Vec::with_capacity(num_q);
        let mut mod_down = Vec::with_capacity(num_q);
        for level in 0..num_q {
            let ext = Basis::extended(level, num_p);
            let mut plans = Vec::new();
            for d in 0..params.digit_count(level) {
                let range = params.digit_range(d, level);
                let own: Vec<usize> = range.clone().collect();
                let converted: Vec<(usize, usize)> = (0..ext.len())
                    .map(|pos| (pos, ctx.prime_index(ext, pos)))
                    .filter(|&(_, pi)| !range.contains(&pi))
                    .collect();
                let targets: Vec<usize> = converted.iter().map(|&(_, pi)| pi).collect();
                let conv = BasisConversion::new(ctx, &own, &targets)?;
                plans.push(DigitPlan {
                    own,
                    converted,
                    conv,
                });
            }
            digits.push(plans);
            let q_targets: Vec<usize> = (0..=level).collect();
            let conv = BasisConversion::new(ctx, &special, &q_targets)?;
            let mut p_inv = Vec::with_capacity(level + 1);
            let mut half_p_mod_q = Vec::with_capacity(level + 1);
            for i in 0..=level {
                let m = ctx.modulus_at(i);
                let p_mod = ctx.p_mod_q(i);
                let inv = m
                    .inv(p_mod)
                    .ok_or(EvalError::Internal("P not invertible"))?;
                p_inv.push((inv, m.shoup(inv)));
                let inv2 = m.inv(2).ok_or(EvalError::Internal("even modulus"))?;
                half_p_mod_q.push(m.mul(m.sub(p_mod, 1), inv2));
            }
            mod_down.push(ModDownPlan {
                conv,
                p_inv,
                half_p_mod_q,
            });
        }
        Ok(Self {
            num_p,
            top: num_q - 1,
            digits,
            mod_down,
        })
    }

    /// Decomposes `c` (NTT form, ciphertext primes only) into extended digits.
    pub fn decompose(&self, ctx: &Context, c: &Poly<Ntt>) -> Result<Decomposed, EvalError> {
        let level = c
            .basis()
            .q_level()
            .filter(|_| c.basis().p == 0)
            .ok_or(EvalError::Core(client_core::Error::BasisMismatch {
                expected: ctx.top_basis(),
                found: c.basis(),
            }))?;
        let coeff = c.clone().into_coeff(ctx)?;
        let ext = Basis::extended(level, self.num_p);
        let n = ctx.n();
        // Digits, and the converted limbs within a digit, are independent: both run in parallel.
        let digits = self.digits[level]
            .par_iter()
            .map(|plan| {
                let mut d = Poly::<Ntt>::zero(ctx, ext)?;
                let mut scratch = Vec::new();
                let src: Vec<&[u64]> = plan.own.iter().map(|&pos| coeff.limb(pos)).collect();
                plan.conv.prepare(&src, n, &mut scratch);
                let mut work: Vec<(usize, usize, &mut [u64])> = Vec::new();
                for (pos, limb) in d.limbs_mut().enumerate() {
                    if plan.own.contains(&pos) {
                        limb.copy_from_slice(c.limb(pos));
                    } else if let Some(t) = plan.converted.iter().position(|&(p, _)| p == pos) {
                        work.push((t, plan.converted[t].1, limb));
                    }
                }
                work.par_iter_mut().for_each(|(t, pi, limb)| {
                    plan.conv.finish(*t, &scratch, limb);
                    ctx.plan_at(*pi).fwd(limb);
                });
                Ok(d)
            })
            .collect::<Result<Vec<_>, EvalError>>()?;
        Ok(Decomposed { level, digits })
    }

    /// Σ_j digit_j ⊙ (b_j, a_j) over Q_l·P, where digit_j may have been permuted by an
    /// automorphism first (hoisting).
    pub fn inner_product(
        &self,
        ctx: &Context,
        digits: &[Poly<Ntt>],
        level: usize,
        key: &ExpandedSwitchingKey,
    ) -> Result<(Poly<Ntt>, Poly<Ntt>), EvalError> {
        let ext = Basis::extended(level, self.num_p);
        if digits.len() > key.b.len() || digits.len() != self.digits[level].len() {
            return Err(EvalError::Internal("digit count does not match the key"));
        }
        for d in digits {
            d.expect_basis(ext)?;
        }
        let mut acc0 = Poly::<Ntt>::zero(ctx, ext)?;
        let mut acc1 = Poly::<Ntt>::zero(ctx, ext)?;
        let mut limbs: Vec<(usize, &mut [u64], &mut [u64])> = acc0
            .limbs_mut()
            .zip(acc1.limbs_mut())
            .enumerate()
            .map(|(pos, (a, b))| (pos, a, b))
            .collect();
        limbs.par_iter_mut().for_each(|(pos, a0, a1)| {
            let pos = *pos;
            // Key limbs are over all primes: q_0 … q_L then P.
            let key_pos = if pos <= level {
                pos
            } else {
                self.top + 1 + (pos - level - 1)
            };
            let plan = ctx.plan(ext, pos);
            for (j, d) in digits.iter().enumerate() {
                plan.mul_accumulate(a0, d.limb(pos), key.b[j].limb(key_pos));
                plan.mul_accumulate(a1, d.limb(pos), key.a[j].limb(key_pos));
            }
        });
        Ok((acc0, acc1))
    }

    /// round(x/P): from Q_l·P back to Q_l. Computed as (x + h − [x + h]_P)/P with
    /// h = (P − 1)/2, where [x + h]_P's residues are [x]_{p_k} + (p_k − 1)/2.
    pub fn mod_down(&self, ctx: &Context, x: &Poly<Ntt>) -> Result<Poly<Ntt>, EvalError> {
        let level = x
            .basis()
            .q_level()
            .ok_or(EvalError::Internal("mod_down of an empty basis"))?;
        x.expect_basis(Basis::extended(level, self.num_p))?;
        let n = ctx.n();
        let plan = &self.mod_down[level];
        let p_coeff: Vec<Vec<u64>> = (0..self.num_p)
            .map(|k| {
                let pos = level + 1 + k;
                let mut limb = x.limb(pos).to_vec();
                let ntt = ctx.plan(x.basis(), pos);
                ntt.inv(&mut limb);
                ntt.normalize(&mut limb);
                let m = ctx.modulus(x.basis(), pos);
                let h = (m.value() - 1) / 2;
                for v in limb.iter_mut() {
                    *v = m.add(*v, h);
                }
                limb
            })
            .collect();
        let src: Vec<&[u64]> = p_coeff.iter().map(|v| v.as_slice()).collect();
        let mut scratch = Vec::new();
        plan.conv.prepare(&src, n, &mut scratch);
        let mut out = x.clone();
        out.drop_special(ctx)?;
        let mut limbs: Vec<(usize, &mut [u64])> = out.limbs_mut().enumerate().collect();
        limbs.par_iter_mut().for_each(|(i, limb)| {
            let i = *i;
            let mut t = vec![0u64; n];
            plan.conv.finish(i, &scratch, &mut t);
            let m = ctx.modulus_at(i);
            // t = [x + h]_P − h (mod q_i).
            let h = plan.half_p_mod_q[i];
            for v in t.iter_mut() {
                *v = m.sub(*v, h);
            }
            ctx.plan_at(i).fwd(&mut t);
            let (inv, inv_shoup) = plan.p_inv[i];
            for (o, &v) in limb.iter_mut().zip(&t) {
                *o = m.mul_shoup(m.sub(*o, v), inv, inv_shoup);
            }
        });
        Ok(out)
    }

    /// Full key switch of `c` (level l): returns (ks0, ks1) over Q_l with
    /// ks0 + ks1·s ≈ c·s' where the key switches from s'.
    pub fn switch(
        &self,
        ctx: &Context,
        c: &Poly<Ntt>,
        key: &ExpandedSwitchingKey,
    ) -> Result<(Poly<Ntt>, Poly<Ntt>), EvalError> {
        let dec = self.decompose(ctx, c)?;
        let (a0, a1) = self.inner_product(ctx, &dec.digits, dec.level, key)?;
        Ok((self.mod_down(ctx, &a0)?, self.mod_down(ctx, &a1)?))
    }
}
