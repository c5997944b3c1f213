//! The client's half of HeFUN as a sans-IO state machine: feed it the server's messages, send
//! what it returns. The messages are the wire types.
//!
//! Per inference the client (1) encrypts its input in the layout the server asks for; (2) for
//! each hidden layer answers one round: it decrypts the ReLU message and returns a fresh
//! encryption of the signs of its slots, and decrypts the refresh message to an integer
//! polynomial and returns its re-encryption at the top level (no decoding); (3) decrypts the
//! output. It never sees weights, the neuron order, or unmasked pre-activations.

use alloc::vec;
use alloc::vec::Vec;

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::cipher::{decrypt_int, encrypt_symmetric, reencrypt, Ciphertext, SeededCiphertext};
use crate::encoding::Encoder;
use crate::error::{Error, Result};
use crate::keys::SecretKey;
use crate::ring::Context;

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
        // Allocated once at its final size: a growing vector would leave copies of the input
        // in freed memory.
        let mut gathered: Vec<f64> = match &self.gather {
            None => input.to_vec(),
            Some(g) => {
                let len = self.laid_out_len()?;
                let mut v = Vec::with_capacity(len);
                for e in 0..len {
                    match g.source(e) {
                        Ok(i) => v.push(input.get(i).copied().unwrap_or(0.0)),
                        Err(err) => {
                            v.zeroize();
                            return Err(err);
                        }
                    }
                }
                v
            }
        };
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

/// One round of the protocol, server → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundRequest {
    /// Round number, from 0.
    pub round: u32,
    /// Period of the layer's neurons in the slots: signs are read from the first period.
    pub period: u32,
    /// Scale at which the client encodes the signs.
    pub sign_scale: f64,
    /// ReLU messages (one per ciphertext of the layer): masked pre-activations x·r.
    pub relu: Vec<Ciphertext>,
    /// Refresh messages: the layer's ciphertexts plus a random integer-polynomial mask.
    pub refresh: Vec<Ciphertext>,
}

/// The final result, server → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputMessage {
    /// Number of meaningful output values (the first slots).
    pub len: u32,
    /// The output ciphertexts.
    pub output: Vec<Ciphertext>,
}

/// Server → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// A ReLU/refresh round.
    Round(RoundRequest),
    /// The result.
    Output(OutputMessage),
}

/// The client's reply to a round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundReply {
    /// The round answered.
    pub round: u32,
    /// Fresh encryptions of the signs (±1), one per ReLU message.
    pub signs: Vec<SeededCiphertext>,
    /// Top-level re-encryptions of the decrypted refresh messages.
    pub refreshed: Vec<SeededCiphertext>,
}

/// Client → server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// The encrypted input.
    Input(Vec<SeededCiphertext>),
    /// An answer to a round.
    RoundReply(RoundReply),
}

/// What the client does next.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientStep {
    /// Send this to the server.
    Reply(ClientMessage),
    /// The inference is over: the output values.
    Done(Vec<f64>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    AwaitingRound(u32),
    Finished,
}

/// Most ciphertexts one message may carry (bounds the work a server can make a client do).
pub const MAX_CIPHERTEXTS_PER_MESSAGE: usize = 64;

/// The client's protocol state for one inference.
pub struct InferenceClient<'a> {
    ctx: &'a Context,
    encoder: &'a Encoder,
    sk: &'a SecretKey,
    state: State,
}

pub(crate) fn check_period(period: u32, slots: usize) -> Result<usize> {
    let p = period as usize;
    if p == 0 || !p.is_power_of_two() || p > slots {
        return Err(Error::InvalidParams(
            "period must be a power of two not above the slot count",
        ));
    }
    Ok(p)
}

pub(crate) fn periodic(values: &[f64], period: usize, slots: usize) -> Vec<f64> {
    (0..slots)
        .map(|t| values.get(t % period).copied().unwrap_or(0.0))
        .collect()
}

impl<'a> InferenceClient<'a> {
    /// A client for one inference with the given keys.
    pub fn new(ctx: &'a Context, encoder: &'a Encoder, sk: &'a SecretKey) -> Self {
        Self {
            ctx,
            encoder,
            sk,
            state: State::Idle,
        }
    }

    /// Encrypts the input as `spec` asks.
    pub fn start<R: CryptoRng + ?Sized>(
        &mut self,
        input: &[f64],
        spec: &InputSpec,
        rng: &mut R,
    ) -> Result<ClientMessage> {
        if self.state != State::Idle {
            return Err(Error::Decode("inference already started"));
        }
        let mut cts_values = spec.layout(input, self.ctx.params().slots())?;
        let level = spec.level as usize;
        if level > self.ctx.params().top_level() {
            cts_values.zeroize();
            return Err(Error::InvalidParams("input level above the top level"));
        }
        let mut cts = Vec::with_capacity(cts_values.len());
        for values in &cts_values {
            let pt = self.encoder.encode(self.ctx, values, spec.scale, level);
            let mut pt = match pt {
                Ok(pt) => pt,
                Err(e) => {
                    cts_values.zeroize();
                    return Err(e);
                }
            };
            let ct = encrypt_symmetric(self.ctx, self.sk, &pt, rng);
            pt.poly.zeroize();
            cts.push(ct);
        }
        cts_values.zeroize();
        let cts = cts.into_iter().collect::<Result<Vec<_>>>()?;
        self.state = State::AwaitingRound(0);
        Ok(ClientMessage::Input(cts))
    }

    /// Handles a server message.
    pub fn handle<R: CryptoRng + ?Sized>(
        &mut self,
        msg: &ServerMessage,
        rng: &mut R,
    ) -> Result<ClientStep> {
        let State::AwaitingRound(expected) = self.state else {
            return Err(Error::Decode("no inference in progress"));
        };
        match msg {
            ServerMessage::Round(round) => {
                if round.round != expected {
                    return Err(Error::Decode("unexpected round number"));
                }
                let reply = self.answer_round(round, rng)?;
                self.state = State::AwaitingRound(expected + 1);
                Ok(ClientStep::Reply(ClientMessage::RoundReply(reply)))
            }
            ServerMessage::Output(out) => {
                let values = self.decrypt_output(out)?;
                self.state = State::Finished;
                Ok(ClientStep::Done(values))
            }
        }
    }

    fn check_handoff(&self, cts: &[Ciphertext]) -> Result<()> {
        if cts.is_empty() || cts.len() > MAX_CIPHERTEXTS_PER_MESSAGE {
            return Err(Error::Decode("bad number of ciphertexts"));
        }
        let handoff = self.ctx.params().handoff_level();
        for ct in cts {
            ct.validate_level(self.ctx, handoff)?;
        }
        Ok(())
    }

    fn answer_round<R: CryptoRng + ?Sized>(
        &self,
        round: &RoundRequest,
        rng: &mut R,
    ) -> Result<RoundReply> {
        let slots = self.ctx.params().slots();
        let period = check_period(round.period, slots)?;
        if round.relu.len() != round.refresh.len() {
            return Err(Error::Decode("ReLU and refresh message counts differ"));
        }
        self.check_handoff(&round.relu)?;
        self.check_handoff(&round.refresh)?;
        if !(round.sign_scale.is_finite() && round.sign_scale > 0.0) {
            return Err(Error::InvalidScale);
        }
        let top = self.ctx.params().top_level();
        let mut signs = Vec::with_capacity(round.relu.len());
        for ct in &round.relu {
            let int = decrypt_int(self.ctx, self.sk, ct)?;
            let values = self.encoder.decode(&int, ct.scale)?;
            // Signs of the first period, repeated over all slots (the server zeroes the rest).
            let first: Vec<f64> = values[..period]
                .iter()
                .map(|&v| if v < 0.0 { -1.0 } else { 1.0 })
                .collect();
            let mut pt = self.encoder.encode(
                self.ctx,
                &periodic(&first, period, slots),
                round.sign_scale,
                top,
            )?;
            signs.push(encrypt_symmetric(self.ctx, self.sk, &pt, rng)?);
            pt.poly.zeroize();
        }
        let mut refreshed = Vec::with_capacity(round.refresh.len());
        for ct in &round.refresh {
            let mut int = decrypt_int(self.ctx, self.sk, ct)?;
            refreshed.push(reencrypt(self.ctx, self.sk, &int, ct.scale, top, rng)?);
            int.zeroize();
        }
        Ok(RoundReply {
            round: round.round,
            signs,
            refreshed,
        })
    }

    fn decrypt_output(&self, out: &OutputMessage) -> Result<Vec<f64>> {
        self.check_handoff(&out.output)?;
        let slots = self.ctx.params().slots();
        let len = out.len as usize;
        if len == 0 || len > slots * out.output.len() {
            return Err(Error::Decode("bad output length"));
        }
        let mut values = Vec::with_capacity(len);
        for ct in &out.output {
            let int = decrypt_int(self.ctx, self.sk, ct)?;
            let decoded = self.encoder.decode(&int, ct.scale)?;
            let take = (len - values.len()).min(slots);
            values.extend_from_slice(&decoded[..take]);
        }
        Ok(values)
    }
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
