//! Centred integer polynomials: CRT reconstruction and re-reduction into another basis.
//!
//! Decrypting at a level with several limbs gives residues of an integer t with |t| < Q/2.
//! [`IntPoly`] keeps each coefficient as a sign and the mixed-radix digits of |t|
//! (|t| = d0 + d1·q0 + d2·q0·q1 + …), found with Garner's algorithm. That needs only word
//! arithmetic, so it runs on a microcontroller, works for any number of limbs, and makes both
//! uses cheap: converting to f64 for decoding, and reducing modulo other primes for HeRefresh's
//! re-encryption at the top level.

use alloc::vec;
use alloc::vec::Vec;

use zeroize::Zeroize;

use super::{Basis, Coeff, Context, Poly, Ring};
use crate::arith::Modulus;
use crate::error::{Error, Result};

/// A polynomial with centred integer coefficients, |t| < Q/2 for the Q it was reconstructed
/// modulo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntPoly {
    moduli: Vec<u64>,
    /// Mixed-radix digits of |t|, digit-major: digit i of coefficient c at [i·N + c], so that
    /// Garner's steps run over contiguous slices.
    digits: Vec<u64>,
    negative: Vec<bool>,
}

impl Zeroize for IntPoly {
    fn zeroize(&mut self) {
        self.digits.zeroize();
        self.negative.zeroize();
    }
}

// Decrypted integers are secret: wiped on every path, errors included.
impl Drop for IntPoly {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for IntPoly {}

impl IntPoly {
    /// Reconstructs the centred integers whose residues `poly` holds (ciphertext primes only).
    pub fn reconstruct(ctx: &Context, poly: &Poly<Coeff>) -> Result<Self> {
        poly.validate(ctx)?;
        let basis = poly.basis();
        if basis.p != 0 {
            return Err(Error::BasisMismatch {
                expected: Basis { q: basis.q, p: 0 },
                found: basis,
            });
        }
        Self::from_residues(ctx, poly.data().to_vec())
    }

    /// Reconstructs in place from coefficient-form residues modulo the first k ciphertext
    /// primes, limb-major (k = `residues.len()` / N). Every residue must be below its prime.
    pub fn from_residues(ring: &Ring, mut residues: Vec<u64>) -> Result<Self> {
        let n = ring.n();
        let k = residues.len() / n;
        if k == 0 || k * n != residues.len() || k > ring.num_q() {
            let found = residues.len();
            residues.zeroize();
            return Err(Error::LengthMismatch {
                expected: n * k.clamp(1, ring.num_q()),
                found,
            });
        }
        let moduli: Vec<u64> = (0..k).map(|i| ring.modulus_at(i).value()).collect();
        let in_range = residues
            .chunks_exact(n)
            .zip(&moduli)
            .all(|(limb, &q)| limb.iter().all(|&x| x < q));
        if !in_range {
            residues.zeroize();
            return Err(Error::Decode("residue not below its prime"));
        }

        // t is negative iff t > (Q − 1)/2.
        let half = half_digits(&moduli);

        // Garner, digit-major, in place: d_0 = x_0; d_i = ((x_i − d_0)·q_0^-1 − d_1)·q_1^-1 …
        // mod q_i.
        let mut digits = residues;
        for i in 1..k {
            let m = ring.modulus_at(i);
            let (done, rest) = digits.split_at_mut(i * n);
            let t = &mut rest[..n];
            for (j, dj) in done.chunks_exact(n).enumerate() {
                let inv = ring.garner_inv(i, j);
                let inv_shoup = m.shoup(inv);
                for (x, &d) in t.iter_mut().zip(dj) {
                    *x = m.mul_shoup(m.sub(*x, m.reduce_u64(d)), inv, inv_shoup);
                }
            }
        }
        let mut negative = vec![false; n];
        for (c, neg) in negative.iter_mut().enumerate() {
            let mut order = core::cmp::Ordering::Equal;
            for i in (0..k).rev() {
                order = digits[i * n + c].cmp(&half[i]);
                if order != core::cmp::Ordering::Equal {
                    break;
                }
            }
            if order == core::cmp::Ordering::Greater {
                // |t| = Q − t = (Q − 1 − t) + 1; Q − 1 has digits (q_i − 1).
                for (i, &q) in moduli.iter().enumerate() {
                    digits[i * n + c] = q - 1 - digits[i * n + c];
                }
                for (i, &q) in moduli.iter().enumerate() {
                    let d = &mut digits[i * n + c];
                    *d += 1;
                    if *d < q {
                        break;
                    }
                    *d = 0;
                }
                *neg = true;
            }
        }
        Ok(Self {
            moduli,
            digits,
            negative,
        })
    }

    /// Builds an integer polynomial from exact signed values, relative to the first
    /// `levels + 1` ciphertext primes (|value| must be below Q/2).
    pub fn from_i128(ctx: &Context, level: usize, values: &[i128]) -> Result<Self> {
        if level >= ctx.num_q() {
            return Err(Error::LevelOutOfRange {
                level,
                max: ctx.num_q() - 1,
            });
        }
        if values.len() != ctx.n() {
            return Err(Error::LengthMismatch {
                expected: ctx.n(),
                found: values.len(),
            });
        }
        let k = level + 1;
        let n = values.len();
        let moduli: Vec<u64> = (0..k).map(|i| ctx.modulus_at(i).value()).collect();
        let mut digits = vec![0u64; n * k];
        let mut negative = vec![false; n];
        for (c, &v) in values.iter().enumerate() {
            let mut mag = v.unsigned_abs();
            for (i, &q) in moduli.iter().enumerate() {
                digits[i * n + c] = (mag % q as u128) as u64;
                mag /= q as u128;
            }
            if mag != 0 {
                return Err(Error::ValueOutOfRange);
            }
            negative[c] = v < 0;
        }
        let out = Self {
            moduli,
            digits,
            negative,
        };
        // Centred form needs |t| ≤ (Q − 1)/2.
        let half = half_digits(&out.moduli);
        let half_ok = (0..out.len()).all(|c| {
            out.coeff_digits(c).rev().cmp(half.iter().copied().rev())
                != core::cmp::Ordering::Greater
        });
        if !half_ok {
            return Err(Error::ValueOutOfRange);
        }
        Ok(out)
    }

    /// Number of coefficients (N).
    pub fn len(&self) -> usize {
        self.negative.len()
    }

    /// True if there are no coefficients.
    pub fn is_empty(&self) -> bool {
        self.negative.is_empty()
    }

    /// The primes the integers were reconstructed modulo.
    pub fn moduli(&self) -> &[u64] {
        &self.moduli
    }

    /// Digits of coefficient c, least significant first.
    fn coeff_digits(
        &self,
        c: usize,
    ) -> impl DoubleEndedIterator<Item = u64> + ExactSizeIterator + '_ {
        let n = self.negative.len();
        (0..self.moduli.len()).map(move |i| self.digits[i * n + c])
    }

    /// Coefficient `c` as f64 (relative error 2^-53).
    pub fn coeff_f64(&self, c: usize) -> f64 {
        let mut acc = 0.0f64;
        for (d, &q) in self.coeff_digits(c).zip(&self.moduli).rev() {
            acc = acc * q as f64 + d as f64;
        }
        if self.negative[c] {
            -acc
        } else {
            acc
        }
    }

    /// Coefficient `c` exactly, if it fits in an i128.
    pub fn coeff_i128(&self, c: usize) -> Option<i128> {
        let mut acc: i128 = 0;
        for (d, &q) in self.coeff_digits(c).zip(&self.moduli).rev() {
            acc = acc.checked_mul(q as i128)?.checked_add(d as i128)?;
        }
        Some(if self.negative[c] { -acc } else { acc })
    }

    /// All coefficients as f64.
    pub fn to_f64(&self) -> Vec<f64> {
        (0..self.len()).map(|c| self.coeff_f64(c)).collect()
    }

    /// The same integers reduced into `basis` (exact, no rounding): what HeRefresh re-encrypts.
    pub fn reduce_into(&self, ctx: &Context, basis: Basis) -> Result<Poly<Coeff>> {
        if self.len() != ctx.n() {
            return Err(Error::LengthMismatch {
                expected: ctx.n(),
                found: self.len(),
            });
        }
        let mut out = Poly::<Coeff>::zero(ctx, basis)?;
        for pos in 0..basis.len() {
            self.reduce_limb(ctx.modulus(basis, pos), out.limb_mut(pos))?;
        }
        Ok(out)
    }
}

impl IntPoly {
    /// The integers modulo one prime `m`, into `out` (length N): one limb of
    /// [`IntPoly::reduce_into`], for clients that work limb by limb.
    pub fn reduce_limb(&self, m: &Modulus, out: &mut [u64]) -> Result<()> {
        let n = self.len();
        if out.len() != n {
            return Err(Error::LengthMismatch {
                expected: n,
                found: out.len(),
            });
        }
        out.fill(0);
        // Σ_i d_i·(q0·…·q_{i−1} mod m), keeping each partial sum below 2m.
        let q = m.value();
        let mut radix = 1 % q;
        for (digit, &qi) in self.digits.chunks_exact(n).zip(&self.moduli) {
            let radix_shoup = m.shoup(radix);
            for (x, &d) in out.iter_mut().zip(digit) {
                let s = *x + m.mul_shoup_lazy(d, radix, radix_shoup);
                *x = if s >= 2 * q { s - 2 * q } else { s };
            }
            radix = m.mul(radix, m.reduce_u64(qi));
        }
        for (x, &neg) in out.iter_mut().zip(&self.negative) {
            let v = if *x >= q { *x - q } else { *x };
            *x = if neg { m.neg(v) } else { v };
        }
        Ok(())
    }
}

/// Mixed-radix digits of (Q − 1)/2: halve the digits (q_i − 1) of Q − 1 from the top down.
fn half_digits(moduli: &[u64]) -> Vec<u64> {
    let mut d: Vec<u64> = moduli.iter().map(|&q| q - 1).collect();
    let mut rem = 0u128;
    for i in (0..moduli.len()).rev() {
        let cur = rem * moduli[i] as u128 + d[i] as u128;
        d[i] = (cur / 2) as u64;
        rem = cur % 2;
    }
    d
}
