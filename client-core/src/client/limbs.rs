//! Encryption and decryption one limb at a time, the only way the session touches ciphertexts:
//! an outgoing ciphertext is produced limb by limb straight into frames, and an incoming one is
//! decrypted as its limbs arrive.

use alloc::vec;
use alloc::vec::Vec;

use rand_core::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use super::backend::Backend;
use super::key_upload::take_words;
use crate::encoding::{Coefficients, Fixed};
use crate::error::{Error, Result};
use crate::ring::{IntPoly, Ring};
use crate::sampling::{fill_error, random_seed};
use crate::wire::convert::ARRIVAL_ORDER;
use crate::wire::messages::{ClientFrame, Limb, Purpose};

/// What a fresh encryption encrypts: encoded slot values (Δ·m as integer-valued f64
/// coefficients), or an integer polynomial as is (a refresh).
pub(crate) enum Message<'a> {
    Coefficients(&'a Coefficients),
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
            Message::Coefficients(c) => c.reduce_into(m, &mut words),
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

/// What an incoming ciphertext is decrypted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decryption {
    /// The exact centred integers (a refresh polynomial, re-encrypted as it is).
    Integers,
    /// The fractions m/Q mod 1 of the coefficients, for decoding to slot values. Each limb's
    /// residues are folded into one 64-bit fraction per coefficient as they arrive
    /// (m/Q ≡ Σ_i y_i/q_i mod 1 with y_i = m_i·(Q/q_i)^-1 mod q_i, each term floored to
    /// 2^-64, summed with wrap-around), so a device holds N words in the FFT's layout instead
    /// of every limb. The decoder keeps 2^-50 of it, so this is only used where Q/Δ is at
    /// most 2^[`MAX_POINTS_HEADROOM_BITS`] (error ≤ 2^-30·Δ per coefficient, far below the
    /// flooding noise of any message the server sends); otherwise the ciphertext is decrypted
    /// exactly, which holds every limb.
    Points,
}

/// Largest log₂(Q/Δ) of a ciphertext decrypted the [`Decryption::Points`] way (the light
/// preset's hand-off ciphertexts have 13; a refresh preset's have 60 or more).
pub(crate) const MAX_POINTS_HEADROOM_BITS: f64 = 20.0;

/// A decrypted ciphertext.
pub(crate) enum Decrypted {
    Integers(IntPoly),
    /// The fraction m_t/Q mod 1 (units of 2^-64, as i64) at point t (real part) and that of
    /// coefficient t + N/2 (imaginary part), with Q/Δ: ready for the fixed-point decoder.
    Points(Vec<Fixed>, f64),
}

/// One incoming ciphertext being decrypted limb by limb, in the server's arrival order (for
/// each limb c1, then c0): c1 is multiplied by the secret's limb as it arrives, the secret's
/// limb is dropped, and c0 completes c0 + c1·s, which is brought to coefficients and folded
/// into the result. At most two limbs and the result are held at once.
pub(crate) struct Incoming {
    limbs: usize,
    scale: f64,
    mode: Decryption,
    /// (limb, step in [`ARRIVAL_ORDER`]) expected next.
    next: (usize, usize),
    /// c1·s of the current limb until its c0 arrives.
    pending: Vec<u64>,
    /// [`Decryption::Integers`]: the decrypted residues, limb-major.
    residues: Vec<u64>,
    /// [`Decryption::Points`]: Σ_i y_i/q_i mod 1, FFT layout.
    points: Vec<Fixed>,
}

impl Incoming {
    /// A ciphertext of `limbs` limbs, which must be the hand-off level's `expected`, to be
    /// decrypted as `want` asks if its precision allows (see [`Decryption::Points`]); an exact
    /// decryption only if `allow_exact`.
    pub fn new(
        limbs: usize,
        expected: usize,
        scale: f64,
        ring: &Ring,
        want: Decryption,
        allow_exact: bool,
    ) -> Result<Self> {
        if limbs != expected || limbs == 0 || limbs > ring.num_q() {
            return Err(Error::Decode("ciphertext not at the hand-off level"));
        }
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::InvalidScale);
        }
        let n = ring.n();
        let log_q: f64 = (0..limbs)
            .map(|j| libm::log2(ring.modulus_at(j).value() as f64))
            .sum();
        let mode = match want {
            Decryption::Points if log_q - libm::log2(scale) <= MAX_POINTS_HEADROOM_BITS => {
                Decryption::Points
            }
            _ => Decryption::Integers,
        };
        if mode == Decryption::Integers && !allow_exact {
            return Err(Error::Decode(
                "a message that only an exact decryption can read, which this client has no memory for",
            ));
        }
        let (residues, points) = match mode {
            Decryption::Integers => (Vec::with_capacity(limbs * n), Vec::new()),
            Decryption::Points => (Vec::new(), vec![Fixed::default(); n / 2]),
        };
        Ok(Self {
            limbs,
            scale,
            mode,
            next: (0, 0),
            pending: Vec::new(),
            residues,
            points,
        })
    }

    /// The scale of the message.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Takes one limb (and frees it as soon as it is folded in); returns the decryption once
    /// the last one is in.
    pub fn absorb<B: Backend>(
        &mut self,
        backend: &mut B,
        component: u8,
        scale: f64,
        limbs: u16,
        limb: Limb,
    ) -> Result<Option<Decrypted>> {
        let n = backend.ring().n();
        let (pos, step) = self.next;
        if (component, usize::from(limb.index)) != (ARRIVAL_ORDER[step], pos)
            || usize::from(limbs) != self.limbs
        {
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
        let m = *backend.ring().modulus_at(pos);
        if let Some(index) = limb.words.iter().position(|&x| x >= m.value()) {
            return Err(Error::ResidueOutOfRange { limb: pos, index });
        }
        let mut words = limb.words;
        if step == 0 {
            let prime = backend.prime(pos)?;
            for (w, &s) in words.iter_mut().zip(prime.tools.s_ntt) {
                *w = m.mul(*w, s);
            }
            backend.forget_secret_limb();
            self.pending = words;
            self.next = (pos, 1);
            return Ok(None);
        }
        for (w, &p) in words.iter_mut().zip(self.pending.iter()) {
            *w = m.add(*w, p);
        }
        self.pending.zeroize();
        self.pending = Vec::new();
        backend.transform(pos)?.inverse(&mut words);
        match self.mode {
            Decryption::Integers => self.residues.extend_from_slice(&words),
            Decryption::Points => self.fold(backend, pos, &words),
        }
        words.zeroize();
        drop(words);
        self.next = (pos + 1, 0);
        if pos + 1 < self.limbs {
            return Ok(None);
        }
        // What follows (CRT, decoding, and the next message, which starts at the first prime
        // again) does not need this prime's tools: free them for the decoding buffers.
        backend.release();
        match self.mode {
            Decryption::Integers => {
                let residues = core::mem::take(&mut self.residues);
                Ok(Some(Decrypted::Integers(IntPoly::from_residues(
                    backend.ring(),
                    residues,
                )?)))
            }
            Decryption::Points => {
                let ring = backend.ring();
                let q: f64 = (0..self.limbs)
                    .map(|j| ring.modulus_at(j).value() as f64)
                    .product();
                let points = core::mem::take(&mut self.points);
                Ok(Some(Decrypted::Points(points, q / self.scale)))
            }
        }
    }

    /// Adds y_i/q_i of limb `pos` (coefficient form) to the points.
    fn fold<B: Backend>(&mut self, backend: &B, pos: usize, words: &[u64]) {
        let ring = backend.ring();
        let m = ring.modulus_at(pos);
        // (Q/q_pos)^-1 mod q_pos; the primes are distinct, so the inverse exists.
        let q_hat = (0..self.limbs).filter(|&j| j != pos).fold(1u64, |acc, j| {
            m.mul(acc, m.reduce_u64(ring.modulus_at(j).value()))
        });
        let q_hat_inv = m.inv(q_hat).unwrap_or(0);
        let q_hat_inv_shoup = m.shoup_fast(q_hat_inv);
        // ⌊y·2^64/q⌋ is y's Shoup constant.
        let fraction = |x: u64| m.shoup_fast(m.mul_shoup(x, q_hat_inv, q_hat_inv_shoup)) as i64;
        let h = self.points.len();
        let (low, high) = words.split_at(h);
        for ((p, &a), &b) in self.points.iter_mut().zip(low).zip(high) {
            p.re = p.re.wrapping_add(fraction(a));
            p.im = p.im.wrapping_add(fraction(b));
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.pending.zeroize();
        self.residues.zeroize();
        for p in self.points.iter_mut() {
            *p = Fixed::default();
        }
        core::hint::black_box(&self.points);
    }
}
