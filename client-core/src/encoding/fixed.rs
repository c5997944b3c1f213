//! The client's encoder in fixed point: the same special FFT as the f64 one, on 64-bit integers
//! with Q31 roots of unity.
//!
//! A Cortex-M4F has no double-precision unit: one f64 FFT of N/2 = 4096 points costs about
//! 30 M instructions there in software floating point, against about 1–2 M for integer
//! butterflies (32 × 32 → 64-bit multiplies). Precision: inputs are scaled to below 2^49 (the
//! 12 doublings of 4096 points then stay below 2^61), each product by a root rounds at 2^-31
//! of its operand, so outputs are right to about 2^-28 of the largest output: far below the
//! protocol's noise (its rounds give 20 bits) and the same on every platform, bit for bit
//! (integer arithmetic), so a host and a device send the same bytes.

use alloc::vec;
use alloc::vec::Vec;

use super::Complex;
use crate::arith::Modulus;
use crate::error::{Error, Result};

/// Bits below which FFT inputs are kept (see the module docs).
const INPUT_BITS: i32 = 49;

/// A fixed-point point: integers with an implied scale held by the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fixed {
    pub re: i64,
    pub im: i64,
}

/// x·w / 2^31 for |x| < 2^62 and a Q31 root part |w| ≤ 2^31, without a 128-bit product.
#[inline(always)]
fn mul_q31(x: i64, w: i64) -> i64 {
    let hi = x >> 32;
    let lo = x & 0xffff_ffff;
    (hi * w) * 2 + ((lo * w) >> 31)
}

impl super::Point for Fixed {
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Self {
            re: self.re.wrapping_add(o.re),
            im: self.im.wrapping_add(o.im),
        }
    }

    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Self {
            re: self.re.wrapping_sub(o.re),
            im: self.im.wrapping_sub(o.im),
        }
    }

    /// Product by a Q31 root.
    #[inline(always)]
    fn mul(self, w: Self) -> Self {
        Self {
            re: mul_q31(self.re, w.re).wrapping_sub(mul_q31(self.im, w.im)),
            im: mul_q31(self.re, w.im).wrapping_add(mul_q31(self.im, w.re)),
        }
    }
}

/// The 2N-th roots of unity in Q31, as products of two tables (as [`super::Encoder`]'s).
#[derive(Clone, Debug)]
pub(crate) struct Roots {
    log_n: u32,
    split: u32,
    lo: Vec<Fixed>,
    hi: Vec<Fixed>,
}

fn q31(x: f64) -> i64 {
    libm::round(x * 2_147_483_648.0) as i64
}

impl Roots {
    /// From the f64 tables of an encoder of dimension 2^`log_n`.
    pub fn new(log_n: u32, split: u32, lo: &[Complex], hi: &[Complex]) -> Self {
        let conv = |c: &Complex| Fixed {
            re: q31(c.re),
            im: q31(c.im),
        };
        Self {
            log_n,
            split,
            lo: lo.iter().map(conv).collect(),
            hi: hi.iter().map(conv).collect(),
        }
    }

    /// Bytes of the tables.
    pub fn bytes(&self) -> usize {
        (self.lo.len() + self.hi.len()) * size_of::<Fixed>()
    }

    #[inline(always)]
    fn root(&self, idx: usize) -> Fixed {
        let idx = idx & ((2usize << self.log_n) - 1);
        let (a, b) = (
            self.lo[idx & ((1 << self.split) - 1)],
            self.hi[idx >> self.split],
        );
        // Q31 × Q31: products below 2^62, rounded back to Q31.
        let half = 1i64 << 30;
        Fixed {
            re: (a.re * b.re - a.im * b.im + half) >> 31,
            im: (a.re * b.im + a.im * b.re + half) >> 31,
        }
    }

    /// [`super::Encoder::special_fft`] in fixed point.
    pub fn fft(&self, vals: &mut [Fixed]) {
        super::special_fft(vals, self.log_n, |i| self.root(i));
    }

    /// [`super::Encoder::special_ifft`] in fixed point (with the division by the size, rounded).
    pub fn ifft(&self, vals: &mut [Fixed]) {
        super::special_ifft_unscaled(vals, self.log_n, |i| self.root(i));
        let shift = vals.len().trailing_zeros();
        if shift > 0 {
            let half = 1i64 << (shift - 1);
            for v in vals.iter_mut() {
                v.re = (v.re + half) >> shift;
                v.im = (v.im + half) >> shift;
            }
        }
    }
}

/// Encoded coefficients in fixed point: coefficient t is `points[t].re · 2^shift` (t < N/2) or
/// `points[t − N/2].im · 2^shift`, exact integers.
pub(crate) struct FixedCoefficients {
    pub points: Vec<Fixed>,
    pub shift: u32,
}

impl FixedCoefficients {
    /// Coefficient `t` as f64 (rounded to 53 bits).
    pub fn get(&self, t: usize) -> f64 {
        let h = self.points.len();
        let x = if t < h {
            self.points[t].re
        } else {
            self.points[t - h].im
        };
        libm::ldexp(x as f64, self.shift as i32)
    }

    /// All N coefficients modulo `m` into `out`.
    pub fn reduce_into(&self, m: &Modulus, out: &mut [u64]) {
        let factor = m.pow(2, u64::from(self.shift));
        let factor_shoup = m.shoup_fast(factor);
        let h = self.points.len();
        for (t, o) in out.iter_mut().enumerate() {
            let x = if t < h {
                self.points[t].re
            } else {
                self.points[t - h].im
            };
            *o = m.mul_shoup(m.reduce_i64(x), factor, factor_shoup);
        }
    }
}

/// Δ·m rounded for slot `values` (see [`super::Encoder::encode_coefficients`]), in fixed point.
pub(crate) fn encode(
    roots: &Roots,
    slots: usize,
    values: &[f64],
    scale: f64,
    max_abs: f64,
) -> Result<FixedCoefficients> {
    if values.len() > slots {
        return Err(Error::TooManySlots {
            max: slots,
            found: values.len(),
        });
    }
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::InvalidScale);
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(Error::ValueOutOfRange);
    }
    // Δ = f·2^e with f in [1, 2): f goes into the values, 2^e into the shift.
    let (frac, exp) = libm::frexp(scale);
    let (f, e) = (frac * 2.0, exp - 1);
    let vmax = values.iter().fold(0.0f64, |m, v| m.max(libm::fabs(v * f)));
    let mut points = vec![Fixed::default(); slots];
    if vmax == 0.0 {
        return Ok(FixedCoefficients { points, shift: 0 });
    }
    // Inputs below 2^49: v·f·2^k.
    let k = INPUT_BITS - libm::frexp(vmax).1;
    for (p, &v) in points.iter_mut().zip(values) {
        p.re = libm::round(libm::ldexp(v * f, k)) as i64;
    }
    roots.ifft(&mut points);
    // Coefficient = x·2^(e − k), rounded to an integer.
    let d = e - k;
    let shift = if d < 0 {
        let s = (-d) as u32;
        for p in points.iter_mut() {
            for x in [&mut p.re, &mut p.im] {
                *x = if s >= 63 {
                    0
                } else {
                    (*x + (1i64 << (s - 1))) >> s
                };
            }
        }
        0
    } else {
        d as u32
    };
    let largest = points.iter().fold(0u64, |m, p| {
        m.max(p.re.unsigned_abs()).max(p.im.unsigned_abs())
    });
    if libm::ldexp(largest as f64, shift as i32) >= max_abs {
        return Err(Error::ValueOutOfRange);
    }
    Ok(FixedCoefficients { points, shift })
}

/// Slot values from decrypted fractions: `points` hold m/Q mod 1 in units of 2^-64 (as i64,
/// so centred), and `q_over_scale` is Q/Δ. The buffer is wiped.
pub(crate) fn decode(roots: &Roots, mut points: Vec<Fixed>, q_over_scale: f64) -> Vec<f64> {
    // 2^-64 units to 2^-50: inputs below 2^49.
    const DROP: i32 = 64 - (INPUT_BITS + 1);
    for p in points.iter_mut() {
        p.re >>= DROP;
        p.im >>= DROP;
    }
    roots.fft(&mut points);
    let unit = libm::ldexp(q_over_scale, -(64 - DROP));
    let values = points.iter().map(|p| p.re as f64 * unit).collect();
    for p in points.iter_mut() {
        *p = Fixed::default();
    }
    core::hint::black_box(&points);
    values
}
