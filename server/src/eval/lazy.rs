//! Sums of rotated ciphertexts times plaintexts with a single ModDown ("lazy ModDown").
//!
//! A hoisted rotation spends most of its time in its two ModDowns (per polynomial: an INTT per
//! special prime, a basis conversion, l+1 NTTs and scalar passes; about 1 ms each at level 4 of
//! `hefun-n16384`), not in the shared decomposition or the key inner product. When the
//! rotations are only multiplied by plaintexts and added up, the key-switch outputs can stay over
//! Q_l·P: (a0, a1) satisfies a0 + a1·s ≡ P·σ(c1)·σ(s) + e (mod Q_l·P), so multiplying by p and
//! summing before dividing by P gives Σ p ⊙ σ(c1)·σ(s) + Σ p·e/P, the same result with one
//! ModDown per polynomial for the whole sum instead of one per rotation, and one rounding error
//! instead of one per term (each of which the plaintext would have multiplied).

use client_core::ring::{Basis, Context, Ntt, Poly};
use rayon::prelude::*;

use super::ops::{check_scales, key_switch_noise_var};
use super::{Ct, EvalError, EvalKeys, EvalResult, Evaluator, PlainNtt};

/// A plaintext in both bases a lazy sum needs: over Q_l (for the parts of a ciphertext that never
/// leave Q_l, and the noise and scale bookkeeping) and over Q_l·P (for key-switch outputs).
/// Both forms come from one encoding, so they are the same integer polynomial.
pub struct PlainExt {
    plain: PlainNtt,
    ext: Poly<Ntt>,
}

impl PlainExt {
    /// Level of the plaintext.
    pub fn level(&self) -> usize {
        self.plain.level()
    }

    /// The plaintext over Q_l.
    pub fn plain(&self) -> &PlainNtt {
        &self.plain
    }
}

/// One worker's share of a lazy sum: the parts over Q_l and the key-switch outputs over Q_l·P.
struct Partial {
    c0: Poly<Ntt>,
    c1: Poly<Ntt>,
    e0: Poly<Ntt>,
    e1: Poly<Ntt>,
    noise_var: f64,
}

impl Partial {
    fn add(mut self, ctx: &Context, other: Self) -> EvalResult<Self> {
        self.c0.add_assign(ctx, &other.c0)?;
        self.c1.add_assign(ctx, &other.c1)?;
        self.e0.add_assign(ctx, &other.e0)?;
        self.e1.add_assign(ctx, &other.e1)?;
        self.noise_var += other.noise_var;
        Ok(self)
    }
}

impl Evaluator {
    /// Encodes a periodic slot vector (see [`Evaluator::encode_periodic`]) over Q_level and
    /// over Q_level·P.
    pub fn encode_periodic_ext(
        &self,
        values: &[f64],
        scale: f64,
        level: usize,
    ) -> EvalResult<PlainExt> {
        let ext_basis = Basis::extended(level, self.ctx().num_p());
        let ext = self.encode_periodic_in(values, scale, ext_basis)?;
        let mut q = ext.poly.clone();
        q.drop_special(self.ctx())?;
        Ok(PlainExt {
            plain: PlainNtt {
                poly: q,
                scale: ext.scale,
                sq_norm: ext.sq_norm,
            },
            ext: ext.poly,
        })
    }

    /// Σ_k p_k ⊙ rot_{s_k}(a): one decomposition of a.c1 shared by every rotation and one ModDown
    /// per output polynomial. Every plaintext must be at a's level and share one scale; a step of
    /// 0 multiplies a itself. The result's scale is a's times the plaintexts'.
    pub fn rotate_mul_sum(
        &self,
        a: &Ct,
        terms: &[(i64, &PlainExt)],
        keys: &EvalKeys,
    ) -> EvalResult<Ct> {
        let ctx = self.ctx();
        let level = a.level();
        let ext_basis = Basis::extended(level, ctx.num_p());
        let scale = terms
            .first()
            .map(|(_, p)| p.plain.scale)
            .ok_or(EvalError::Internal("empty rotation sum"))?;
        for (_, p) in terms {
            if p.level() != level {
                return Err(EvalError::LevelMismatch(level, p.level()));
            }
            check_scales(scale, p.plain.scale)?;
            p.ext.expect_basis(ext_basis)?;
        }
        let dec = if terms.iter().any(|&(s, _)| s != 0) {
            Some(self.switcher().decompose(ctx, &a.c1)?)
        } else {
            None
        };
        // Terms are independent until the final sums: each rayon worker accumulates its own
        // share, and the shares are added before the ModDown.
        let zero = || -> EvalResult<Partial> {
            Ok(Partial {
                c0: Poly::<Ntt>::zero(ctx, a.c0.basis())?,
                c1: Poly::<Ntt>::zero(ctx, a.c1.basis())?,
                e0: Poly::<Ntt>::zero(ctx, ext_basis)?,
                e1: Poly::<Ntt>::zero(ctx, ext_basis)?,
                noise_var: 0.0,
            })
        };
        let sum = terms
            .par_iter()
            .try_fold(
                || None,
                |acc: Option<Partial>, &(steps, p)| {
                    let mut acc = match acc {
                        Some(acc) => acc,
                        None => zero()?,
                    };
                    if steps == 0 {
                        acc.c0.mul_acc(ctx, &a.c0, &p.plain.poly)?;
                        acc.c1.mul_acc(ctx, &a.c1, &p.plain.poly)?;
                        acc.noise_var += a.noise_var * p.plain.sq_norm;
                        return Ok::<_, EvalError>(Some(acc));
                    }
                    let dec = dec
                        .as_ref()
                        .ok_or(EvalError::Internal("no decomposition"))?;
                    let (g, a0, a1) = self.rotated_key_product(dec, steps, keys)?;
                    acc.e0.mul_acc(ctx, &a0, &p.ext)?;
                    acc.e1.mul_acc(ctx, &a1, &p.ext)?;
                    let rc0 = self.galois().apply(ctx, &a.c0, g)?;
                    acc.c0.mul_acc(ctx, &rc0, &p.plain.poly)?;
                    // The eager estimate (a ModDown rounding per term) on purpose: a few per
                    // cent high, and flooding is sized from it.
                    acc.noise_var +=
                        (a.noise_var + key_switch_noise_var(ctx, level)) * p.plain.sq_norm;
                    Ok(Some(acc))
                },
            )
            .try_reduce(
                || None,
                |x, y| match (x, y) {
                    (Some(x), Some(y)) => x.add(ctx, y).map(Some),
                    (x, None) => Ok(x),
                    (None, y) => Ok(y),
                },
            )?
            .ok_or(EvalError::Internal("empty rotation sum"))?;
        let Partial {
            mut c0,
            mut c1,
            e0,
            e1,
            noise_var,
        } = sum;
        if dec.is_some() {
            c0.add_assign(ctx, &self.switcher().mod_down(ctx, &e0)?)?;
            c1.add_assign(ctx, &self.switcher().mod_down(ctx, &e1)?)?;
        }
        Ok(Ct {
            c0,
            c1,
            scale: a.scale * scale,
            noise_var,
        })
    }
}
