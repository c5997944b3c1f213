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

mod fixed;

pub(crate) use fixed::Fixed;

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
/// t + N/2 (exact integers), in f64 ([`Encoder::encode_coefficients`]) or in fixed point
/// ([`Encoder::encode_fixed`], the client's).
pub struct Coefficients(Repr);

enum Repr {
    Float(Vec<Complex>),
    Fixed(fixed::FixedCoefficients),
}

impl Coefficients {
    /// Coefficient `t` (0 ≤ t < N), as f64.
    #[inline]
    pub fn get(&self, t: usize) -> f64 {
        match &self.0 {
            Repr::Float(points) => {
                let h = points.len();
                if t < h {
                    points[t].re
                } else {
                    points[t - h].im
                }
            }
            Repr::Fixed(f) => f.get(t),
        }
    }

    /// Every coefficient modulo `m`, into `out` (N words).
    pub fn reduce_into(&self, m: &Modulus, out: &mut [u64]) {
        match &self.0 {
            Repr::Float(_) => {
                for (t, o) in out.iter_mut().enumerate() {
                    *o = reduce_coefficient(m, self.get(t));
                }
            }
            Repr::Fixed(f) => f.reduce_into(m, out),
        }
    }

    /// Number of coefficients (N).
    pub fn len(&self) -> usize {
        2 * match &self.0 {
            Repr::Float(p) => p.len(),
            Repr::Fixed(f) => f.points.len(),
        }
    }

    /// True for the empty ring (never).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Coefficients {
    fn drop(&mut self) {
        match &mut self.0 {
            Repr::Float(points) => wipe(points),
            Repr::Fixed(f) => {
                for p in f.points.iter_mut() {
                    *p = Fixed::default();
                }
                core::hint::black_box(&f.points);
            }
        }
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
    /// The same roots in Q31, for the client's fixed-point transforms.
    fixed: fixed::Roots,
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
        let lo: Vec<Complex> = (0..1usize << split).map(at).collect();
        let hi: Vec<Complex> = (0..m >> split).map(|k| at(k << split)).collect();
        let fixed = fixed::Roots::new(log_n, split, &lo, &hi);
        Self {
            log_n,
            lo,
            hi,
            split,
            fixed,
        }
    }

    /// [`Encoder::encode_coefficients`] in fixed point: what a client encodes with (an FFT
    /// of 64-bit integers with Q31 roots; the same bits on every platform, and about 20 times
    /// cheaper than f64 on a core without a double-precision unit). The result is within
    /// about 2^-28 of the largest value of the exact encoding, in the slots.
    pub fn encode_fixed(&self, values: &[f64], scale: f64, max_abs: f64) -> Result<Coefficients> {
        let f = fixed::encode(&self.fixed, self.slots(), values, scale, max_abs)?;
        Ok(Coefficients(Repr::Fixed(f)))
    }

    /// A plaintext over the ciphertext primes up to `level` encoded as a client does
    /// ([`Encoder::encode_fixed`]): for references in tests.
    pub fn encode_fixed_plaintext(
        &self,
        ctx: &Context,
        values: &[f64],
        scale: f64,
        level: usize,
    ) -> Result<Plaintext> {
        if level >= ctx.num_q() || ctx.params().log_n() != self.log_n {
            return Err(Error::LevelOutOfRange {
                level,
                max: ctx.num_q() - 1,
            });
        }
        let basis = Basis::level(level);
        let coeffs = self.encode_fixed(values, scale, max_coefficient(ctx.params(), level))?;
        let mut poly = Poly::<Coeff>::zero(ctx, basis)?;
        let n = ctx.n();
        for (pos, limb) in poly.data_mut().chunks_exact_mut(n).enumerate() {
            coeffs.reduce_into(ctx.modulus(basis, pos), limb);
        }
        Ok(Plaintext { poly, scale })
    }

    /// Slot values from decrypted fractions m/Q mod 1 (units of 2^-64, FFT layout) of a
    /// ciphertext with Q/Δ = `q_over_scale`; the buffer is wiped.
    pub(crate) fn decode_fixed(&self, points: Vec<Fixed>, q_over_scale: f64) -> Vec<f64> {
        fixed::decode(&self.fixed, points, q_over_scale)
    }

    /// Number of slots (N/2).
    pub fn slots(&self) -> usize {
        1 << (self.log_n - 1)
    }

    /// Bytes held by the precomputed tables.
    pub fn table_bytes(&self) -> usize {
        (self.lo.len() + self.hi.len()) * size_of::<Complex>() + self.fixed.bytes()
    }

    /// ζ^idx with ζ = exp(2πi / 2N), as ζ^(idx mod 2^split) · ζ^(2^split·⌊idx / 2^split⌋).
    #[inline(always)]
    fn root(&self, idx: usize) -> Complex {
        let idx = idx & ((2usize << self.log_n) - 1);
        self.lo[idx & ((1 << self.split) - 1)].mul(self.hi[idx >> self.split])
    }

    /// Evaluates w at the slot points: out_j = Σ_t w_t ζ^(5^j·t), in place.
    pub(crate) fn special_fft(&self, vals: &mut [Complex]) {
        special_fft(vals, self.log_n, |i| self.root(i));
    }

    /// Inverse of [`Encoder::special_fft`], in place.
    fn special_ifft(&self, vals: &mut [Complex]) {
        special_ifft_unscaled(vals, self.log_n, |i| self.root(i));
        let inv = 1.0 / vals.len() as f64;
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
        let mut points = vec![Complex::default(); slots];
        for (b, &v) in points.iter_mut().zip(values) {
            b.re = v;
        }
        let mut buf = Coefficients(Repr::Float(points));
        let Repr::Float(points) = &mut buf.0 else {
            return Err(Error::ValueOutOfRange);
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::ValueOutOfRange);
        }
        self.special_ifft(points);
        for w in points.iter_mut() {
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

/// A point of the special FFT: f64 ([`Complex`]) or fixed point ([`Fixed`]).
pub(crate) trait Point: Copy {
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    /// Product by a root of unity (of the same representation).
    fn mul(self, w: Self) -> Self;
}

impl Point for Complex {
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Complex::add(self, o)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Complex::sub(self, o)
    }
    #[inline(always)]
    fn mul(self, w: Self) -> Self {
        Complex::mul(self, w)
    }
}

/// The special FFT of a ring of dimension 2^`log_n` over `vals` (N/2 points or fewer), with
/// ζ^i given by `root`. Root-major: each of a stage's roots is computed once.
#[inline(always)]
pub(crate) fn special_fft<P: Point>(vals: &mut [P], log_n: u32, root: impl Fn(usize) -> P) {
    let size = vals.len();
    let m = 2usize << log_n;
    bit_reverse(vals);
    let mut len = 2;
    while len <= size {
        let (half, lenq) = (len / 2, len * 4);
        let gap = m / lenq;
        let mut rot = 1usize;
        for j in 0..half {
            let w = root(rot * gap);
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

/// The inverse of [`special_fft`] times the size (the caller divides).
#[inline(always)]
pub(crate) fn special_ifft_unscaled<P: Point>(
    vals: &mut [P],
    log_n: u32,
    root: impl Fn(usize) -> P,
) {
    let size = vals.len();
    let m = 2usize << log_n;
    let mut len = size;
    while len >= 2 {
        let (half, lenq) = (len / 2, len * 4);
        let gap = m / lenq;
        let mut rot = 1usize;
        for j in 0..half {
            let w = root((lenq - rot) * gap);
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

    /// Slot values from f64 coefficients, exactly as the f64 decoder would.
    fn slots_of(enc: &Encoder, coeff: impl Fn(usize) -> f64, scale: f64) -> Vec<f64> {
        let h = enc.slots();
        let buf = (0..h)
            .map(|t| Complex {
                re: coeff(t) / scale,
                im: coeff(t + h) / scale,
            })
            .collect();
        enc.decode_points(buf)
    }

    #[test]
    fn fixed_point_encoding_is_within_2_to_the_minus_27_of_the_largest_value() {
        for log_n in [4u32, 10, 13] {
            let enc = Encoder::new(log_n);
            let slots = enc.slots();
            for (scale, amp) in [(2f64.powi(86), 300.0), (2f64.powi(40), 1.0), (3e20, 1e-3)] {
                let values: Vec<f64> = (0..slots)
                    .map(|i| amp * libm::sin(i as f64 * 0.731 + 0.2) * ((i % 7) as f64 - 3.0))
                    .collect();
                let max = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let fixed = enc.encode_fixed(&values, scale, 1e300).unwrap();
                let float = enc.encode_coefficients(&values, scale, 1e300).unwrap();
                let got = slots_of(&enc, |t| fixed.get(t), scale);
                let want = slots_of(&enc, |t| float.get(t), scale);
                let bits = precision_bits(&want, &got) + libm::log2(max);
                assert!(bits > 27.0, "N = 2^{log_n}, Δ = {scale:e}: {bits:.1} bits");
                for t in 0..2 * slots {
                    assert_eq!(
                        fixed.get(t),
                        libm::round(fixed.get(t)),
                        "integer coefficients"
                    );
                }
            }
        }
    }

    #[test]
    fn fixed_point_decoding_matches_the_f64_decoder() {
        let log_n = 12;
        let enc = Encoder::new(log_n);
        let slots = enc.slots();
        let values: Vec<f64> = (0..slots)
            .map(|i| ((i * 37) % 101) as f64 / 7.0 - 7.0)
            .collect();
        // Coefficients of Δ·m with Q/Δ = 2^13, as fractions m/Q of 2^64.
        let scale = 2f64.powi(100);
        let q_over_scale = 2f64.powi(13);
        let coeffs = enc.encode_coefficients(&values, scale, 1e300).unwrap();
        let h = slots;
        let frac = |t: usize| {
            let m_over_q = coeffs.get(t) / scale / q_over_scale;
            libm::round(m_over_q * 2f64.powi(64)) as i64
        };
        let points = (0..h)
            .map(|t| Fixed {
                re: frac(t),
                im: frac(t + h),
            })
            .collect();
        let got = enc.decode_fixed(points, q_over_scale);
        let bits = precision_bits(&values, &got);
        assert!(bits > 24.0, "{bits:.1} bits");
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
