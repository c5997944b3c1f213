//! Encryption and decryption one limb at a time, the only way the session touches ciphertexts:
//! an outgoing ciphertext is produced limb by limb straight into frames, and an incoming one is
//! decrypted as its limbs arrive.

use alloc::vec;
use alloc::vec::Vec;

use rand_core::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use super::backend::Backend;
use super::key_upload::take_words;
use crate::encoding::reduce_coefficient;
use crate::error::{Error, Result};
use crate::ring::IntPoly;
use crate::sampling::{fill_error, random_seed};
use crate::wire::messages::{ClientFrame, Limb, Purpose};

/// What a fresh encryption encrypts: encoded slot values (Δ·m as integer-valued f64
/// coefficients), or an integer polynomial as is (a refresh).
pub(crate) enum Message<'a> {
    Coefficients(&'a [f64]),
    Integers(&'a IntPoly),
}

/// Where an outgoing ciphertext goes: ciphertext `ct` of a group of `count` for `purpose`.
#[derive(Clone, Copy)]
pub(crate) struct Target {
    pub purpose: Purpose,
    pub ct: u16,
    pub count: u16,
}

/// A fresh symmetric encryption of `msg` at `level`, sent limb by limb: c0 = NTT(m + e) − a·s,
/// with c1 = a expanded from the seed by the server. Opens the group first if `ct` is 0.
/// Returns the limb frames sent.
pub(crate) fn send_encryption<B, R, F>(
    backend: &mut B,
    target: Target,
    msg: &Message<'_>,
    scale: f64,
    level: usize,
    rng: &mut R,
    send: &mut F,
) -> Result<u32>
where
    B: Backend,
    R: CryptoRng + ?Sized,
    F: FnMut(&ClientFrame) -> Result<()>,
{
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::InvalidScale);
    }
    let n = backend.ring().n();
    let seed = random_seed(rng);
    let mut e = Zeroizing::new(vec![0i8; n]);
    fill_error(rng, &mut e);
    if target.ct == 0 {
        send(&ClientFrame::CiphertextsBegin {
            purpose: target.purpose,
            count: target.count,
        })?;
    }
    let mut words = vec![0u64; n];
    for pos in 0..=level {
        let prime = backend.prime(pos)?;
        let m = prime.tools.m;
        match msg {
            Message::Coefficients(c) => {
                for (w, &x) in words.iter_mut().zip(c.iter()) {
                    *w = reduce_coefficient(m, x);
                }
            }
            Message::Integers(int) => int.reduce_limb(m, &mut words)?,
        }
        for (w, &x) in words.iter_mut().zip(e.iter()) {
            *w = m.add(*w, m.reduce_i64(x as i64));
        }
        prime.tools.ntt_minus_a_s(&seed, 0, &mut words);
        let frame = ClientFrame::SeededLimb {
            ct: target.ct,
            seed,
            scale,
            limbs: (level + 1) as u16,
            limb: Limb {
                index: pos as u16,
                words,
            },
        };
        let sent = send(&frame);
        words = take_words(frame);
        sent?;
    }
    Ok((level + 1) as u32)
}

/// One incoming ciphertext being decrypted limb by limb: c0's limbs are kept until c1's
/// arrive, then each limb becomes c0 + c1·s in coefficient form.
pub(crate) struct Incoming {
    limbs: usize,
    scale: f64,
    /// c0's limbs, then the decrypted residues.
    acc: Vec<u64>,
    /// (component, limb) expected next.
    next: (u8, usize),
}

impl Incoming {
    /// A ciphertext of `limbs` limbs, which must be the hand-off level's `expected`.
    pub fn new(limbs: usize, expected: usize, scale: f64, n: usize) -> Result<Self> {
        if limbs != expected {
            return Err(Error::Decode("ciphertext not at the hand-off level"));
        }
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::InvalidScale);
        }
        Ok(Self {
            limbs,
            scale,
            acc: vec![0; limbs * n],
            next: (0, 0),
        })
    }

    /// The scale of the message.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Takes one limb (and frees it: on a device it is a large share of the peak while the
    /// reply that may follow is computed); returns the decrypted integers once the last one is
    /// in.
    pub fn absorb<B: Backend>(
        &mut self,
        backend: &mut B,
        component: u8,
        scale: f64,
        limbs: u16,
        limb: Limb,
    ) -> Result<Option<IntPoly>> {
        let n = backend.ring().n();
        if (component, usize::from(limb.index)) != self.next || usize::from(limbs) != self.limbs {
            return Err(Error::Decode(
                "ciphertext limb missing, repeated or out of order",
            ));
        }
        if scale.to_bits() != self.scale.to_bits() {
            return Err(Error::Decode("scale changed within a ciphertext"));
        }
        if limb.words.len() != n {
            return Err(Error::LengthMismatch {
                expected: n,
                found: limb.words.len(),
            });
        }
        let pos = usize::from(limb.index);
        let q = backend.ring().modulus_at(pos).value();
        if let Some(index) = limb.words.iter().position(|&x| x >= q) {
            return Err(Error::ResidueOutOfRange { limb: pos, index });
        }
        let acc = &mut self.acc[pos * n..(pos + 1) * n];
        if component == 0 {
            acc.copy_from_slice(&limb.words);
        } else {
            let prime = backend.prime(pos)?;
            let plan = prime.tools.plan;
            plan.mul_accumulate(acc, &limb.words, prime.tools.s_ntt);
            plan.inv(acc);
            plan.normalize(acc);
        }
        drop(limb);
        self.next = if pos + 1 < self.limbs {
            (component, pos + 1)
        } else {
            (component + 1, 0)
        };
        if self.next.0 < 2 {
            return Ok(None);
        }
        // What follows (CRT, decoding, and the next message, which starts at the first prime
        // again) does not need this prime's plan: free it for the decoding buffers.
        backend.release();
        let residues = core::mem::take(&mut self.acc);
        Ok(Some(IntPoly::from_residues(backend.ring(), residues)?))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.acc.zeroize();
    }
}
