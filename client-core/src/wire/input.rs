//! The input layout the server's hello asks for: how the client places its values in the
//! slots of its input ciphertexts (repetition, shifted copies, an im2col gather for a first
//! convolution, several ciphertexts for long inputs).

use alloc::vec;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::assembled::MAX_CIPHERTEXTS_PER_MESSAGE;
use crate::error::{Error, Result};

/// How the client lays out its input. The `len` values are first gathered if `gather` asks
/// for it (the server then reads a convolution's patches side by side). A gathered vector that
/// fits in `period` is zero-padded to it and repeated over all slots, copy b (slots
/// [b·period, (b+1)·period)) rotated left by (b mod `copies`)·`shift` (shifted copies let the
/// server split the first layer's diagonals among the copies). A longer one needs `period` =
/// the slot count and is cut into consecutive ciphertexts of that many values. Encoded at
/// `scale`, encrypted at `level`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Number of input values.
    pub len: u32,
    /// Period of the repetition (a power of two ≥ the laid-out length, dividing the slot
    /// count), or the slot count for an input over several ciphertexts.
    pub period: u32,
    /// Left rotation of each copy relative to the previous one (0: plain repetition).
    pub shift: u32,
    /// Number of distinct copies; the pattern repeats every `copies`·`period` slots.
    pub copies: u32,
    /// Encoding scale.
    pub scale: f64,
    /// Level at which the input is encrypted (at most the top level).
    pub level: u32,
    /// A patch gather to apply before the layout.
    pub gather: Option<Im2col>,
}

/// The patches of a one-channel `height`×`width` image (row-major) under a `kernel_h`×`kernel_w`
/// window moved by the strides, without padding: entry t·P + p of the gathered vector is pixel
/// (stride_h·i + t / kernel_w, stride_w·j + t mod kernel_w) for output position p = i·W' + j
/// (P = H'·W' positions). A convolution is then Σ_t w[c][t]·patch_t: whole blocks, no gather
/// left to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Im2col {
    /// Image height.
    pub height: u32,
    /// Image width.
    pub width: u32,
    /// Window height.
    pub kernel_h: u32,
    /// Window width.
    pub kernel_w: u32,
    /// Vertical step.
    pub stride_h: u32,
    /// Horizontal step.
    pub stride_w: u32,
}

impl Im2col {
    /// (output height, output width), or an error for an empty or oversized window.
    pub fn output_dims(&self) -> Result<(usize, usize)> {
        let (h, w) = (self.height as usize, self.width as usize);
        let (kh, kw) = (self.kernel_h as usize, self.kernel_w as usize);
        let (sh, sw) = (self.stride_h as usize, self.stride_w as usize);
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 || kh > h || kw > w {
            return Err(Error::InvalidParams("im2col window does not fit the image"));
        }
        Ok(((h - kh) / sh + 1, (w - kw) / sw + 1))
    }

    /// Length of the gathered vector.
    pub fn gathered_len(&self) -> Result<usize> {
        let (oh, ow) = self.output_dims()?;
        (self.kernel_h as usize)
            .checked_mul(self.kernel_w as usize)
            .and_then(|k| k.checked_mul(oh))
            .and_then(|k| k.checked_mul(ow))
            .ok_or(Error::InvalidParams("im2col gather too large"))
    }

    /// Index into the image of every entry of the gathered vector.
    pub fn source(&self, entry: usize) -> Result<usize> {
        let (oh, ow) = self.output_dims()?;
        let positions = oh * ow;
        let (t, p) = (entry / positions, entry % positions);
        let kw = self.kernel_w as usize;
        if t >= self.kernel_h as usize * kw {
            return Err(Error::InvalidParams(
                "im2col entry past the gathered vector",
            ));
        }
        let (i, j) = (p / ow, p % ow);
        let y = self.stride_h as usize * i + t / kw;
        let x = self.stride_w as usize * j + t % kw;
        Ok(y * self.width as usize + x)
    }
}

impl InputSpec {
    /// Number of ciphertexts the input takes.
    pub fn ciphertexts(&self, slots: usize) -> Result<usize> {
        let len = self.laid_out_len()?;
        let period = check_period(self.period, slots)?;
        if len <= period {
            return Ok(1);
        }
        if period != slots || self.copies != 1 || self.shift != 0 {
            return Err(Error::InvalidParams(
                "an input over several ciphertexts must fill whole ciphertexts, unshifted",
            ));
        }
        let cts = len.div_ceil(slots);
        if cts > MAX_CIPHERTEXTS_PER_MESSAGE {
            return Err(Error::InvalidParams("input needs too many ciphertexts"));
        }
        Ok(cts)
    }

    fn laid_out_len(&self) -> Result<usize> {
        match &self.gather {
            None => Ok(self.len as usize),
            Some(g) => {
                if (g.height as usize).checked_mul(g.width as usize) != Some(self.len as usize) {
                    return Err(Error::InvalidParams(
                        "im2col image size is not the input length",
                    ));
                }
                g.gathered_len()
            }
        }
    }

    /// The slot vectors of every input ciphertext for `input` (which must hold `len` values):
    /// see [`InputSpec`].
    pub fn layout(&self, input: &[f64], slots: usize) -> Result<Vec<Vec<f64>>> {
        if input.len() != self.len as usize {
            return Err(Error::LengthMismatch {
                expected: self.len as usize,
                found: input.len(),
            });
        }
        let cts = self.ciphertexts(slots)?;
        let Some(g) = &self.gather else {
            // Nothing to gather: laid out straight from the input (no copy of it).
            return self.place(input, cts, slots);
        };
        // Allocated once at its final size: a growing vector would leave copies of the input
        // in freed memory.
        let len = self.laid_out_len()?;
        let mut gathered = Vec::with_capacity(len);
        for e in 0..len {
            match g.source(e) {
                Ok(i) => gathered.push(input.get(i).copied().unwrap_or(0.0)),
                Err(err) => {
                    gathered.zeroize();
                    return Err(err);
                }
            }
        }
        let laid_out = self.place(&gathered, cts, slots);
        gathered.zeroize();
        laid_out
    }

    fn place(&self, gathered: &[f64], cts: usize, slots: usize) -> Result<Vec<Vec<f64>>> {
        if cts > 1 {
            return Ok((0..cts)
                .map(|c| {
                    (0..slots)
                        .map(|t| gathered.get(c * slots + t).copied().unwrap_or(0.0))
                        .collect()
                })
                .collect());
        }
        let period = self.period as usize;
        let shift = self.shift as usize;
        if shift >= period {
            return Err(Error::InvalidParams("input shift must be below the period"));
        }
        let copies = self.copies as usize;
        if copies == 0 || copies > slots / period {
            return Err(Error::InvalidParams(
                "input copies must be between 1 and slots / period",
            ));
        }
        Ok(vec![(0..slots)
            .map(|t| {
                let (block, s) = ((t / period) % copies, t % period);
                let i = (s + (block * shift) % period) % period;
                gathered.get(i).copied().unwrap_or(0.0)
            })
            .collect()])
    }
}

/// The period `period` checked against the slot count.
pub(crate) fn check_period(period: u32, slots: usize) -> Result<usize> {
    let p = period as usize;
    if p == 0 || !p.is_power_of_two() || p > slots {
        return Err(Error::InvalidParams(
            "period must be a power of two not above the slot count",
        ));
    }
    Ok(p)
}

/// `values` repeated with period `period` over `slots` slots (zero beyond its length).
pub(crate) fn periodic(values: &[f64], period: usize, slots: usize) -> Vec<f64> {
    (0..slots)
        .map(|t| values.get(t % period).copied().unwrap_or(0.0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(len: u32, period: u32, shift: u32, copies: u32) -> InputSpec {
        InputSpec {
            len,
            period,
            shift,
            copies,
            scale: 1.0,
            level: 0,
            gather: None,
        }
    }

    #[test]
    fn input_layout_rotates_copies_and_repeats() {
        let x = [1.0, 2.0, 3.0];
        // Period 4, 4 copies in 32 slots, each rotated one further left; the pattern repeats
        // after 16 slots.
        let v = spec(3, 4, 1, 4).layout(&x, 32).unwrap().remove(0);
        let first = [1.0, 2.0, 3.0, 0.0, 2.0, 3.0, 0.0, 1.0];
        assert_eq!(&v[..8], &first);
        assert_eq!(&v[8..12], &[3.0, 0.0, 1.0, 2.0]);
        assert_eq!(&v[16..24], &first);
        // Plain repetition.
        let v = spec(3, 4, 0, 1).layout(&x, 16).unwrap().remove(0);
        assert!(v.chunks(4).all(|c| c == [1.0, 2.0, 3.0, 0.0]));
    }

    #[test]
    fn bad_input_layouts_are_errors() {
        let x = [1.0, 2.0, 3.0];
        assert!(spec(3, 4, 4, 1).layout(&x, 16).is_err()); // shift ≥ period
        assert!(spec(3, 4, 1, 0).layout(&x, 16).is_err()); // no copies
        assert!(spec(3, 4, 1, 5).layout(&x, 16).is_err()); // more copies than fit
        assert!(spec(3, 3, 0, 1).layout(&x, 16).is_err()); // period not a power of two
        assert!(spec(2, 4, 0, 1).layout(&x, 16).is_err()); // wrong length
        let long = [1.0; 40];
        assert!(spec(40, 16, 1, 1).layout(&long, 16).is_err()); // several, not whole periods
        assert!(spec(40, 16, 0, 1).layout(&long, 32).is_err()); // several, period below slots
    }

    #[test]
    fn long_inputs_fill_consecutive_ciphertexts() {
        let x: Vec<f64> = (0..40).map(f64::from).collect();
        let cts = spec(40, 16, 0, 1).layout(&x, 16).unwrap();
        assert_eq!(cts.len(), 3);
        assert_eq!(cts[1][0], 16.0);
        assert_eq!(cts[2][7], 39.0);
        assert_eq!(cts[2][8], 0.0);
    }

    #[test]
    fn im2col_gathers_patches_block_by_block() {
        // 3×4 image, 2×2 window, stride 1: 2×3 positions, 4 offsets.
        let img: Vec<f64> = (0..12).map(f64::from).collect();
        let mut s = spec(12, 32, 0, 1);
        s.gather = Some(Im2col {
            height: 3,
            width: 4,
            kernel_h: 2,
            kernel_w: 2,
            stride_h: 1,
            stride_w: 1,
        });
        let v = s.layout(&img, 32).unwrap().remove(0);
        // Offset (0, 0): the top-left pixels of the six windows; offset (1, 1): bottom-right.
        assert_eq!(&v[..6], &[0.0, 1.0, 2.0, 4.0, 5.0, 6.0]);
        assert_eq!(&v[18..24], &[5.0, 6.0, 7.0, 9.0, 10.0, 11.0]);
        assert_eq!(v[24], 0.0);
        s.gather = Some(Im2col {
            kernel_h: 4,
            ..s.gather.unwrap()
        });
        assert!(s.layout(&img, 32).is_err()); // window taller than the image
    }
}
