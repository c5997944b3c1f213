//! Canonical-embedding encoder: N/2 real slots ↔ integer polynomials at a scale.
//!
//! Slot j holds m(ζ^(5^j)) / Δ with ζ = exp(iπ/N), so the automorphism X → X^5 rotates the slots
//! by one. Because 5^j ≡ 1 (mod 4), m(ζ^k) is a length-N/2 transform of w_t = m_t + i·m_(t+N/2),
//! which the "special" FFT below evaluates in O(N log N).
//!
//! Tables: the 2N-th roots of unity ζ^k as products of two tables of about √(2N) entries each
//! (4 KB at N = 2^13, where a full table would be 32–64 KB of a device's RAM); each FFT stage
//! computes each of its roots once. The powers of 5 are generated on the fly. Each call uses one
//! working buffer of N/2 complex values (8·N bytes), which is also where a device accumulates
//! the coefficients it decrypts and where encoded coefficients are read from: no second
//! N-sized buffer. All transcendental functions come from `libm`.

use alloc::vec;
use alloc::vec::Vec;

use crate::arith::Modulus;
use crate::error::{Error, Result};
use crate::params::Params;
use crate::ring::{Basis, Coeff, Context, IntPoly, Poly};

/// One FFT point: coefficients t (real part) and t + N/2 (imaginary part) of a polynomial, or
/// one slot.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Complex {
    pub re: f64,
    pub im: f64,
}

impl Complex {
    #[inline]
    fn add(self, o: Self) -> Self {
        Self {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
    #[inline]
    fn sub(self, o: Self) -> Self {
        Self {
            re: self.re - o.re,
            im: self.im - o.im,
        }
    }
    #[inline]
    fn mul(self, o: Self) -> Self {
        Self {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
}

/// An encoded plaintext: integer polynomial (coefficient form) and the scale it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Plaintext {
    /// Δ·m, rounded, over the ciphertext primes up to the plaintext's level.
    pub poly: Poly<Coeff>,
    /// The scale Δ.
    pub scale: f64,
}

/// Δ·m of encoded slot values, held in the FFT's layout: point t carries coefficients t and
/// t + N/2 (integer-valued f64).
pub struct Coefficients(Vec<Complex>);

impl Coefficients {
    /// Coefficient `t` (0 ≤ t < N).
    #[inline]
    pub fn get(&self, t: usize) -> f64 {
        let h = self.0.len();
        if t < h {
            self.0[t].re
        } else {
            self.0[t - h].im
        }
    }

    /// Number of coefficients (N).
    pub fn len(&self) -> usize {
        2 * self.0.len()
    }

    /// True for the empty ring (never).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Coefficients {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Overwrites secret points (encoded inputs, decrypted slots).
pub(crate) fn wipe(buf: &mut [Complex]) {
    for c in buf.iter_mut() {
        *c = Complex::default();
    }
    core::hint::black_box(buf);
}

/// Encoder/decoder for one ring dimension.
#[derive(Clone, Debug)]
pub struct Encoder {
    log_n: u32,
    /// ζ^k for k < 2^split.
    lo: Vec<Complex>,
    /// ζ^(k·2^split) for k < 2N / 2^split.
    hi: Vec<Complex>,
    split: u32,
}

impl Encoder {
    /// Precomputes the root tables for ring dimension 2^`log_n` (log_n ≥ 2).
    pub fn new(log_n: u32) -> Self {
        let m = 2usize << log_n;
        let m_log2 = log_n + 1;
        let split = m_log2.div_ceil(2);
        let at = |k: usize| {
            let theta = 2.0 * core::f64::consts::PI * k as f64 / m as f64;
            Complex {
                re: libm::cos(theta),
                im: libm::sin(theta),
            }
        };
        let lo = (0..1usize << split).map(at).collect();
        let hi = (0..m >> split).map(|k| at(k << split)).collect();
        Self {
            log_n,
            lo,
            hi,
            split,
        }
    }

    /// Number of slots (N/2).
    pub fn slots(&self) -> usize {
        1 << (self.log_n - 1)
    }

    /// Bytes held by the precomputed tables.
    pub fn table_bytes(&self) -> usize {
        (self.lo.len() + self.hi.len()) * size_of::<Complex>()
    }

    /// ζ^idx with ζ = exp(2πi / 2N), as ζ^(idx mod 2^split) · ζ^(2^split·⌊idx / 2^split⌋).
    #[inline(always)]
    fn root(&self, idx: usize) -> Complex {
        let idx = idx & ((2usize << self.log_n) - 1);
        self.lo[idx & ((1 << self.split) - 1)].mul(self.hi[idx >> self.split])
    }

    /// Evaluates w at the slot points: out_j = Σ_t w_t ζ^(5^j·t), in place.
    pub(crate) fn special_fft(&self, vals: &mut [Complex]) {
        let size = vals.len();
        let m = 2usize << self.log_n;
        bit_reverse(vals);
        let mut len = 2;
        while len <= size {
            let half = len / 2;
            let lenq = len * 4;
            let gap = m / lenq;
            let mut rot = 1usize;
            // Root-major: each of the stage's roots is computed once.
            for j in 0..half {
                let w = self.root(rot * gap);
                for start in (0..size).step_by(len) {
                    let u = vals[start + j];
                    let v = vals[start + j + half].mul(w);
                    vals[start + j] = u.add(v);
                    vals[start + j + half] = u.sub(v);
                }
                rot = (rot * 5) % lenq;
            }
            len *= 2;
        }
    }

    /// Inverse of [`Encoder::special_fft`], in place.
    fn special_ifft(&self, vals: &mut [Complex]) {
        let size = vals.len();
        let m = 2usize << self.log_n;
        let mut len = size;
        while len >= 2 {
            let half = len / 2;
            let lenq = len * 4;
            let gap = m / lenq;
            let mut rot = 1usize;
            for j in 0..half {
                let w = self.root((lenq - rot) * gap);
                for start in (0..size).step_by(len) {
                    let (a, b) = (vals[start + j], vals[start + j + half]);
                    vals[start + j] = a.add(b);
                    vals[start + j + half] = a.sub(b).mul(w);
                }
                rot = (rot * 5) % lenq;
            }
            len /= 2;
        }
        bit_reverse(vals);
        let inv = 1.0 / size as f64;
        for v in vals.iter_mut() {
            v.re *= inv;
            v.im *= inv;
        }
    }

    /// Rounded integer coefficients Δ·m of the real slot values (unused slots are zero), in
    /// the FFT's layout, each an integer-valued f64 below `max_abs`. Fails on non-finite
    /// values, more values than slots, or a coefficient too large.
    pub fn encode_coefficients(
        &self,
        values: &[f64],
        scale: f64,
        max_abs: f64,
    ) -> Result<Coefficients> {
        let slots = self.slots();
        if values.len() > slots {
            return Err(Error::TooManySlots {
                max: slots,
                found: values.len(),
            });
        }
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::InvalidScale);
        }
        let mut buf = Coefficients(vec![Complex::default(); slots]);
        for (b, &v) in buf.0.iter_mut().zip(values) {
            if !v.is_finite() {
                return Err(Error::ValueOutOfRange);
            }
            b.re = v;
        }
        self.special_ifft(&mut buf.0);
        for w in buf.0.iter_mut() {
            for part in [&mut w.re, &mut w.im] {
                let c = libm::round(*part * scale);
                if c.is_nan() || libm::fabs(c) >= max_abs {
                    return Err(Error::ValueOutOfRange);
                }
                *part = c;
            }
        }
        Ok(buf)
    }

    /// Δ·m rounded, as integer-valued f64 coefficients (N of them), for callers that reduce
    /// into their own bases (e.g. a server encoding periodic plaintexts in a smaller ring).
    /// Fails on non-finite values, more values than slots, or |coefficient| ≥ `max_abs`.
    pub fn scaled_coefficients(
        &self,
        values: &[f64],
        scale: f64,
        max_abs: f64,
    ) -> Result<Vec<f64>> {
        let coeffs = self.encode_coefficients(values, scale, max_abs)?;
        Ok((0..coeffs.len()).map(|t| coeffs.get(t)).collect())
    }

    /// Encodes real values into a plaintext over the ciphertext primes up to `level`, at
    /// `scale`. Fails if a scaled coefficient would not fit below Q_level / 2.
    pub fn encode(
        &self,
        ctx: &Context,
        values: &[f64],
        scale: f64,
        level: usize,
    ) -> Result<Plaintext> {
        if ctx.params().log_n() != self.log_n {
            return Err(Error::InvalidParams(
                "encoder and context ring dimensions differ",
            ));
        }
        if level >= ctx.num_q() {
            return Err(Error::LevelOutOfRange {
                level,
                max: ctx.num_q() - 1,
            });
        }
        let basis = Basis::level(level);
        let mut poly = Poly::<Coeff>::zero(ctx, basis)?;
        let max_abs = max_coefficient(ctx.params(), level);
        let n = ctx.n();
        let moduli: Vec<_> = (0..basis.len())
            .map(|pos| *ctx.modulus(basis, pos))
            .collect();
        let coeffs = self.encode_coefficients(values, scale, max_abs)?;
        for (limb, m) in poly.data_mut().chunks_exact_mut(n).zip(&moduli) {
            for (t, x) in limb.iter_mut().enumerate() {
                *x = reduce_coefficient(m, coeffs.get(t));
            }
        }
        Ok(Plaintext { poly, scale })
    }

    /// Decodes centred integer coefficients at `scale` into N/2 real slot values.
    pub fn decode(&self, int: &IntPoly, scale: f64) -> Result<Vec<f64>> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::InvalidScale);
        }
        let slots = self.slots();
        if int.len() != 2 * slots {
            return Err(Error::LengthMismatch {
                expected: 2 * slots,
                found: int.len(),
            });
        }
        let inv = 1.0 / scale;
        let buf: Vec<Complex> = (0..slots)
            .map(|t| Complex {
                re: int.coeff_f64(t) * inv,
                im: int.coeff_f64(t + slots) * inv,
            })
            .collect();
        Ok(self.decode_points(buf))
    }

    /// The slot values of a polynomial whose coefficients divided by Δ are in `buf` (FFT
    /// layout); the buffer is wiped.
    pub(crate) fn decode_points(&self, mut buf: Vec<Complex>) -> Vec<f64> {
        self.special_fft(&mut buf);
        let values = buf.iter().map(|c| c.re).collect();
        // The buffer holds the decrypted slots (and their imaginary parts).
        wipe(&mut buf);
        values
    }

    /// Decodes a coefficient-form polynomial over ciphertext primes (reconstructs the centred
    /// integers first).
    pub fn decode_poly(&self, ctx: &Context, poly: &Poly<Coeff>, scale: f64) -> Result<Vec<f64>> {
        let int = IntPoly::reconstruct(ctx, poly)?;
        self.decode(&int, scale)
    }
}

/// Largest |coefficient| a plaintext at `level` may have: below Q_level / 2 and inside i128.
pub fn max_coefficient(params: &Params, level: usize) -> f64 {
    libm::exp2((params.log_q(level) - 1.0).min(126.0))
}

/// An integer-valued f64 coefficient (|c| < 2^126) modulo `m`.
#[inline]
pub fn reduce_coefficient(m: &Modulus, c: f64) -> u64 {
    // Most coefficients fit an i64, whose conversion is a single instruction; the i128 one is a
    // library call.
    if libm::fabs(c) < 9.2e18 {
        m.reduce_i64(c as i64)
    } else {
        m.reduce_i128(c as i128)
    }
}

fn bit_reverse<T>(vals: &mut [T]) {
    let n = vals.len();
    let mut j = 0usize;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            vals.swap(i, j);
        }
    }
}

/// Bits of precision of `got` against `want`: −log2 of the largest absolute error (capped at 64).
pub fn precision_bits(want: &[f64], got: &[f64]) -> f64 {
    let err = want
        .iter()
        .zip(got)
        .map(|(a, b)| libm::fabs(a - b))
        .fold(0.0f64, f64::max);
    if err == 0.0 {
        64.0
    } else {
        -libm::log2(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_fft_is_the_canonical_embedding() {
        // Compare with direct evaluation of w at ζ^(5^j) for N = 32.
        let log_n = 5;
        let enc = Encoder::new(log_n);
        let slots = enc.slots();
        let m = 2usize << log_n;
        let w: Vec<Complex> = (0..slots)
            .map(|t| Complex {
                re: (t as f64 * 0.37).sin(),
                im: (t as f64 * 0.11).cos(),
            })
            .collect();
        let mut fast = w.clone();
        enc.special_fft(&mut fast);
        let mut rot = 1usize;
        for f in fast.iter() {
            let mut acc = Complex::default();
            for (t, wt) in w.iter().enumerate() {
                acc = acc.add(wt.mul(enc.root(rot * t % m)));
            }
            assert!((acc.re - f.re).abs() < 1e-9 && (acc.im - f.im).abs() < 1e-9);
            rot = rot * 5 % m;
        }
        let mut back = fast;
        enc.special_ifft(&mut back);
        for (a, b) in back.iter().zip(&w) {
            assert!((a.re - b.re).abs() < 1e-12 && (a.im - b.im).abs() < 1e-12);
        }
    }

    #[test]
    fn roots_match_libm() {
        let enc = Encoder::new(4);
        let m = 32;
        for k in 0..2 * m {
            let r = enc.root(k);
            let theta = 2.0 * core::f64::consts::PI * k as f64 / m as f64;
            assert!((r.re - theta.cos()).abs() < 1e-13, "cos at {k}");
            assert!((r.im - theta.sin()).abs() < 1e-13, "sin at {k}");
        }
    }
}
