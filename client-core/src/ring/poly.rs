//! The RNS polynomial type and its arithmetic.

use alloc::vec;
use alloc::vec::Vec;
use core::marker::PhantomData;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::{Basis, Context};
use crate::arith::Modulus;
use crate::error::{Error, Result};

mod sealed {
    pub trait Sealed {}
}

/// Representation of a polynomial: [`Coeff`] or [`Ntt`].
pub trait Form: sealed::Sealed + Clone + Copy + core::fmt::Debug + PartialEq + Eq {}

/// Coefficient representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Coeff;
/// NTT (evaluation) representation, in `tfhe-ntt`'s bit-reversed order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Ntt;

impl sealed::Sealed for Coeff {}
impl sealed::Sealed for Ntt {}
impl Form for Coeff {}
impl Form for Ntt {}

/// A polynomial in RNS form over a [`Basis`], limb-major (limb i holds coefficients i·N … i·N+N−1).
///
/// Deserialised polynomials must pass [`Poly::validate`] (or [`Poly::validate_basis`]) before use;
/// the operations below also check shapes and return errors rather than panic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Poly<F: Form> {
    basis: Basis,
    #[serde(with = "super::serde_limbs")]
    data: Vec<u64>,
    #[serde(skip)]
    form: PhantomData<F>,
}

impl<F: Form> Zeroize for Poly<F> {
    fn zeroize(&mut self) {
        self.data.zeroize();
    }
}

impl<F: Form> Poly<F> {
    /// The zero polynomial over `basis`.
    pub fn zero(ctx: &Context, basis: Basis) -> Result<Self> {
        ctx.check_basis(basis)?;
        Ok(Self {
            basis,
            data: vec![0; ctx.n() * basis.len()],
            form: PhantomData,
        })
    }

    /// Wraps limb data, checking its length and that every residue is below its modulus.
    pub fn from_data(ctx: &Context, basis: Basis, data: Vec<u64>) -> Result<Self> {
        let poly = Self {
            basis,
            data,
            form: PhantomData,
        };
        poly.validate(ctx)?;
        Ok(poly)
    }

    /// Checks that the polynomial fits `ctx`: basis, length and residue ranges.
    pub fn validate(&self, ctx: &Context) -> Result<()> {
        ctx.check_basis(self.basis)?;
        let expected = ctx.n() * self.basis.len();
        if self.data.len() != expected {
            return Err(Error::LengthMismatch {
                expected,
                found: self.data.len(),
            });
        }
        for (pos, limb) in self.data.chunks_exact(ctx.n()).enumerate() {
            let q = ctx.modulus(self.basis, pos).value();
            if let Some(index) = limb.iter().position(|&x| x >= q) {
                return Err(Error::ResidueOutOfRange { limb: pos, index });
            }
        }
        Ok(())
    }

    /// [`Poly::validate`] plus a check that the basis is the expected one.
    pub fn validate_basis(&self, ctx: &Context, expected: Basis) -> Result<()> {
        self.expect_basis(expected)?;
        self.validate(ctx)
    }

    /// Errors unless the polynomial lives over `expected`.
    pub fn expect_basis(&self, expected: Basis) -> Result<()> {
        if self.basis != expected {
            return Err(Error::BasisMismatch {
                expected,
                found: self.basis,
            });
        }
        Ok(())
    }

    /// The basis.
    pub fn basis(&self) -> Basis {
        self.basis
    }

    /// All limbs, limb-major.
    pub fn data(&self) -> &[u64] {
        &self.data
    }

    /// All limbs, mutable. Writing residues ≥ q breaks the type's invariant; callers reduce.
    pub(crate) fn data_mut(&mut self) -> &mut [u64] {
        &mut self.data
    }

    /// Number of limbs.
    pub fn num_limbs(&self) -> usize {
        self.basis.len()
    }

    fn n(&self) -> usize {
        self.data.len() / self.basis.len().max(1)
    }

    /// Limb `pos` (residues modulo the `pos`-th prime of the basis).
    pub fn limb(&self, pos: usize) -> &[u64] {
        let n = self.n();
        &self.data[pos * n..(pos + 1) * n]
    }

    /// Mutable limb `pos`. Writing residues ≥ q breaks the type's invariant; callers reduce.
    pub fn limb_mut(&mut self, pos: usize) -> &mut [u64] {
        let n = self.n();
        &mut self.data[pos * n..(pos + 1) * n]
    }

    /// Iterator over limbs.
    pub fn limbs(&self) -> core::slice::ChunksExact<'_, u64> {
        let n = self.n();
        self.data.chunks_exact(n.max(1))
    }

    /// Mutable iterator over limbs (for limb-parallel work). Writing residues ≥ q breaks the
    /// type's invariant; callers reduce.
    pub fn limbs_mut(&mut self) -> core::slice::ChunksExactMut<'_, u64> {
        let n = self.n();
        self.data.chunks_exact_mut(n.max(1))
    }

    fn check_same_shape(&self, other: &Self) -> Result<()> {
        if self.basis != other.basis {
            return Err(Error::BasisMismatch {
                expected: self.basis,
                found: other.basis,
            });
        }
        if self.data.len() != other.data.len() {
            return Err(Error::LengthMismatch {
                expected: self.data.len(),
                found: other.data.len(),
            });
        }
        Ok(())
    }

    fn check_ctx(&self, ctx: &Context) -> Result<()> {
        ctx.check_basis(self.basis)?;
        let expected = ctx.n() * self.basis.len();
        if self.data.len() != expected {
            return Err(Error::LengthMismatch {
                expected,
                found: self.data.len(),
            });
        }
        Ok(())
    }

    /// Applies `op(modulus, self_limb, other_limb)` limb by limb after checking shapes.
    fn zip_limbs(
        &mut self,
        ctx: &Context,
        other: &Self,
        op: impl Fn(&Modulus, &mut [u64], &[u64]),
    ) -> Result<()> {
        self.check_ctx(ctx)?;
        self.check_same_shape(other)?;
        let n = ctx.n();
        for (pos, (a, b)) in self
            .data
            .chunks_exact_mut(n)
            .zip(other.data.chunks_exact(n))
            .enumerate()
        {
            op(ctx.modulus(self.basis, pos), a, b);
        }
        Ok(())
    }

    /// Applies `op(modulus, limb)` to every limb after checking the shape.
    fn each_limb(&mut self, ctx: &Context, op: impl Fn(&Modulus, &mut [u64])) -> Result<()> {
        self.check_ctx(ctx)?;
        let n = ctx.n();
        for (pos, a) in self.data.chunks_exact_mut(n).enumerate() {
            op(ctx.modulus(self.basis, pos), a);
        }
        Ok(())
    }

    /// self += other.
    pub fn add_assign(&mut self, ctx: &Context, other: &Self) -> Result<()> {
        self.zip_limbs(ctx, other, |m, a, b| {
            for (x, &y) in a.iter_mut().zip(b) {
                *x = m.add(*x, y);
            }
        })
    }

    /// self -= other.
    pub fn sub_assign(&mut self, ctx: &Context, other: &Self) -> Result<()> {
        self.zip_limbs(ctx, other, |m, a, b| {
            for (x, &y) in a.iter_mut().zip(b) {
                *x = m.sub(*x, y);
            }
        })
    }

    /// self = -self.
    pub fn neg_assign(&mut self, ctx: &Context) -> Result<()> {
        self.each_limb(ctx, |m, a| {
            for x in a.iter_mut() {
                *x = m.neg(*x);
            }
        })
    }

    /// self *= c for a signed integer constant (in either representation, since the NTT is
    /// linear). Consumes no level.
    pub fn mul_scalar_assign(&mut self, ctx: &Context, c: i64) -> Result<()> {
        self.each_limb(ctx, |m, a| {
            let w = m.reduce_i64(c);
            let w_shoup = m.shoup(w);
            for x in a.iter_mut() {
                *x = m.mul_shoup(*x, w, w_shoup);
            }
        })
    }

    /// Keeps the first `level + 1` ciphertext primes and all special primes (mod-drop).
    pub fn drop_to_level(&mut self, ctx: &Context, level: usize) -> Result<()> {
        self.check_ctx(ctx)?;
        let old_q = self.basis.q as usize;
        let new_q = level + 1;
        if new_q > old_q {
            return Err(Error::LevelOutOfRange {
                level,
                max: old_q.saturating_sub(1),
            });
        }
        let n = ctx.n();
        // Special limbs sit after the q limbs; slide them down over the dropped ones.
        self.data.copy_within(old_q * n.., new_q * n);
        self.data.truncate((new_q + self.basis.p as usize) * n);
        self.basis.q = new_q as u16;
        Ok(())
    }

    /// Removes the special limbs, keeping the ciphertext limbs.
    pub fn drop_special(&mut self, ctx: &Context) -> Result<()> {
        self.check_ctx(ctx)?;
        self.data.truncate(self.basis.q as usize * ctx.n());
        self.basis.p = 0;
        Ok(())
    }
}

impl Poly<Coeff> {
    /// A polynomial from small signed coefficients (length N), reduced into every limb of
    /// `basis`.
    pub fn from_signed(ctx: &Context, basis: Basis, coeffs: &[i64]) -> Result<Self> {
        let mut poly = Self::zero(ctx, basis)?;
        poly.set_signed(ctx, coeffs)?;
        Ok(poly)
    }

    /// Overwrites every limb with the residues of signed coefficients.
    pub fn set_signed(&mut self, ctx: &Context, coeffs: &[i64]) -> Result<()> {
        self.check_ctx(ctx)?;
        let n = ctx.n();
        if coeffs.len() != n {
            return Err(Error::LengthMismatch {
                expected: n,
                found: coeffs.len(),
            });
        }
        for (pos, limb) in self.data.chunks_exact_mut(n).enumerate() {
            let m = ctx.modulus(self.basis, pos);
            for (x, &c) in limb.iter_mut().zip(coeffs) {
                *x = m.reduce_i64(c);
            }
        }
        Ok(())
    }

    /// Adds small signed coefficients (length N) to every limb.
    pub fn add_signed(&mut self, ctx: &Context, coeffs: &[i8]) -> Result<()> {
        self.check_ctx(ctx)?;
        let n = ctx.n();
        if coeffs.len() != n {
            return Err(Error::LengthMismatch {
                expected: n,
                found: coeffs.len(),
            });
        }
        for (pos, limb) in self.data.chunks_exact_mut(n).enumerate() {
            let m = ctx.modulus(self.basis, pos);
            let q = m.value();
            for (x, &c) in limb.iter_mut().zip(coeffs) {
                // |c| ≤ 128 < q: the residue of c is c or q − |c|, no reduction needed.
                let v = if c < 0 {
                    q - c.unsigned_abs() as u64
                } else {
                    c as u64
                };
                *x = m.add(*x, v);
            }
        }
        Ok(())
    }

    /// Forward NTT of every limb.
    pub fn into_ntt(mut self, ctx: &Context) -> Result<Poly<Ntt>> {
        self.check_ctx(ctx)?;
        let n = ctx.n();
        for (pos, limb) in self.data.chunks_exact_mut(n).enumerate() {
            ctx.plan(self.basis, pos).fwd(limb);
        }
        Ok(Poly {
            basis: self.basis,
            data: core::mem::take(&mut self.data),
            form: PhantomData,
        })
    }

    /// The Galois automorphism X → X^g (g odd, below 2N), in coefficient form.
    pub fn automorphism(&self, ctx: &Context, g: u64) -> Result<Self> {
        self.check_ctx(ctx)?;
        let n = ctx.n();
        check_galois_element(n, g)?;
        let mut out = Self::zero(ctx, self.basis)?;
        let two_n_mask = 2 * n - 1;
        for (pos, (src, dst)) in self
            .data
            .chunks_exact(n)
            .zip(out.data.chunks_exact_mut(n))
            .enumerate()
        {
            let m = ctx.modulus(self.basis, pos);
            let mut idx = 0usize;
            for &x in src {
                // X^i → X^(i·g mod 2N), and X^N = −1.
                if idx < n {
                    dst[idx] = x;
                } else {
                    dst[idx - n] = m.neg(x);
                }
                idx = (idx + g as usize) & two_n_mask;
            }
        }
        Ok(out)
    }
}

/// σ_g applied to small signed coefficients (e.g. a ternary secret): X^i → X^(i·g mod 2N).
pub fn automorphism_signed(coeffs: &[i8], g: u64) -> Result<Vec<i8>> {
    let n = coeffs.len();
    if !n.is_power_of_two() {
        return Err(Error::InvalidParams("length is not a power of two"));
    }
    check_galois_element(n, g)?;
    let mut out = vec![0i8; n];
    let mask = 2 * n - 1;
    let mut idx = 0usize;
    for &c in coeffs {
        if idx < n {
            out[idx] = c;
        } else {
            out[idx - n] = -c;
        }
        idx = (idx + g as usize) & mask;
    }
    Ok(out)
}

/// Checks that `g` is an odd element of Z_{2N}^*.
pub fn check_galois_element(n: usize, g: u64) -> Result<()> {
    if g.is_multiple_of(2) || g >= 2 * n as u64 {
        return Err(Error::InvalidGaloisElement(g));
    }
    Ok(())
}

impl Poly<Ntt> {
    /// Inverse NTT of every limb.
    pub fn into_coeff(mut self, ctx: &Context) -> Result<Poly<Coeff>> {
        self.check_ctx(ctx)?;
        let n = ctx.n();
        for (pos, limb) in self.data.chunks_exact_mut(n).enumerate() {
            let plan = ctx.plan(self.basis, pos);
            plan.inv(limb);
            plan.normalize(limb);
        }
        Ok(Poly {
            basis: self.basis,
            data: core::mem::take(&mut self.data),
            form: PhantomData,
        })
    }

    /// self ⊙= other (negacyclic product).
    pub fn mul_assign(&mut self, ctx: &Context, other: &Self) -> Result<()> {
        self.zip_limbs(ctx, other, |m, a, b| {
            for (x, &y) in a.iter_mut().zip(b) {
                *x = m.mul(*x, y);
            }
        })
    }

    /// self += a ⊙ b (multiply-accumulate, SIMD in `tfhe-ntt`).
    pub fn mul_acc(&mut self, ctx: &Context, a: &Self, b: &Self) -> Result<()> {
        self.check_ctx(ctx)?;
        self.check_same_shape(a)?;
        self.check_same_shape(b)?;
        let n = ctx.n();
        for (pos, ((acc, x), y)) in self
            .data
            .chunks_exact_mut(n)
            .zip(a.data.chunks_exact(n))
            .zip(b.data.chunks_exact(n))
            .enumerate()
        {
            ctx.plan(self.basis, pos).mul_accumulate(acc, x, y);
        }
        Ok(())
    }
}
