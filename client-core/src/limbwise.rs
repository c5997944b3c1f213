//! The client for devices that cannot hold a [`crate::ring::Context`]: the same protocol as
//! [`crate::protocol::InferenceClient`] plus the key upload, speaking frames directly and
//! working one prime (limb) at a time.
//!
//! A `Context` keeps an NTT plan for every prime (9 × 512 KB for the `hefun-n16384` preset) and
//! the secret in NTT form over all of them. This client keeps the ternary secret (N bytes), the
//! constants of a [`Ring`], and **one** plan with the secret modulo that prime; it rebuilds them
//! when the next limb needs another prime (about one NTT's worth of work). Everything it sends
//! is produced limb by limb straight into a frame, and every ciphertext it receives is
//! decrypted as its limbs arrive, so the largest buffers are one plan (32·N bytes), the c0 limbs
//! of one incoming ciphertext, and the integer polynomial of one refresh message.
//!
//! With the same random generator it sends exactly the bytes of the host client
//! ([`crate::keys`], [`crate::cipher`], [`crate::protocol`]); the tests check that.
//!
//! Limitation: ReLU and refresh messages of more than one ciphertext are refused (the networks
//! this client is meant for have one ciphertext per layer); outputs may span several.

use alloc::vec;
use alloc::vec::Vec;

use rand_core::CryptoRng;
use tfhe_ntt::prime64::Plan;
use zeroize::{Zeroize, Zeroizing};

use crate::encoding::{max_coefficient, reduce_coefficient, Encoder};
use crate::error::{Error, Result};
use crate::keys::{
    galois_element_for_rotation, switching_limb, KeyChunk, KeyIdHasher, KeyKind, PrimeTools,
};
use crate::params::Params;
use crate::protocol::{check_period, periodic, InputSpec};
use crate::ring::{check_galois_element, IntPoly, Ring};
use crate::sampling::{fill_error, fill_ternary, random_seed};
use crate::wire::messages::{ClientFrame, KeyId, Limb, Purpose, ServerFrame};

/// The plan and the secret (NTT form) of the one prime currently in use.
struct CurrentPrime {
    pi: usize,
    plan: Plan,
    s_ntt: Zeroizing<Vec<u64>>,
}

/// Builds [`PrimeTools`] on demand, keeping only the last prime's.
#[derive(Default)]
struct PrimeCache {
    current: Option<CurrentPrime>,
    builds: u32,
}

impl PrimeCache {
    fn tools<'a>(&'a mut self, ring: &'a Ring, s: &[i8], pi: usize) -> Result<PrimeTools<'a>> {
        if self.current.as_ref().map(|c| c.pi) != Some(pi) {
            // Free the old plan before building the new one: peak memory is one plan.
            self.current = None;
            let plan = ring.build_plan(pi)?;
            let m = ring.modulus_at(pi);
            let mut s_ntt: Zeroizing<Vec<u64>> =
                Zeroizing::new(s.iter().map(|&x| m.reduce_i64(x as i64)).collect());
            plan.fwd(&mut s_ntt);
            self.current = Some(CurrentPrime { pi, plan, s_ntt });
            self.builds += 1;
        }
        let cur = self
            .current
            .as_ref()
            .ok_or(Error::InvalidParams("no prime"))?;
        Ok(PrimeTools {
            pi,
            m: ring.modulus_at(pi),
            plan: &cur.plan,
            s_ntt: &cur.s_ntt,
        })
    }
}

/// What a fresh encryption encrypts: encoded slot values (Δ·m as integer-valued f64
/// coefficients), or an integer polynomial as is.
enum Message<'a> {
    Coefficients(Zeroizing<Vec<f64>>),
    Integers(&'a IntPoly),
}

/// One incoming ciphertext being decrypted limb by limb: c0's limbs are kept until c1's
/// arrive, then each limb becomes c0 + c1·s in coefficient form.
struct Incoming {
    limbs: usize,
    scale: f64,
    /// c0's limbs, then the decrypted residues.
    acc: Vec<u64>,
    /// (component, limb) expected next.
    next: (u8, usize),
}

/// The client's state between frames.
enum State {
    /// Keys not yet generated or no inference running.
    Idle,
    /// Waiting for round `round`'s ReLU message or for the output.
    Awaiting { round: u32 },
    /// Receiving a ReLU (`signs` empty) or refresh (`signs` set) message.
    Round {
        round: u32,
        period: usize,
        sign_scale: f64,
        refresh: bool,
        signs: Vec<bool>,
        ct: Option<Incoming>,
    },
    /// Receiving the output.
    Output {
        len: usize,
        count: usize,
        values: Vec<f64>,
        ct: Option<Incoming>,
    },
}

/// Work done so far, for footprint reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// NTT plans built (one per switch of prime).
    pub plan_builds: u32,
    /// Limb frames sent.
    pub limbs_sent: u32,
    /// Limb frames received.
    pub limbs_received: u32,
}

/// The limb-wise client: secret key, key upload and the inference protocol over frames.
pub struct LimbwiseClient {
    ring: Ring,
    encoder: Encoder,
    secret: Zeroizing<Vec<i8>>,
    primes: PrimeCache,
    state: State,
    limbs_sent: u32,
    limbs_received: u32,
}

impl LimbwiseClient {
    /// A client with a fresh secret key for `params` (checked for 128-bit security).
    pub fn new<R: CryptoRng + ?Sized>(params: &Params, rng: &mut R) -> Result<Self> {
        params.validate()?;
        Self::new_insecure(params, rng)
    }

    /// [`LimbwiseClient::new`] without the security check, for test rings only.
    pub fn new_insecure<R: CryptoRng + ?Sized>(params: &Params, rng: &mut R) -> Result<Self> {
        let ring = Ring::new(params)?;
        let mut secret = Zeroizing::new(vec![0i8; ring.n()]);
        fill_ternary(rng, &mut secret);
        Ok(Self {
            encoder: Encoder::new(params.log_n()),
            ring,
            secret,
            primes: PrimeCache::default(),
            state: State::Idle,
            limbs_sent: 0,
            limbs_received: 0,
        })
    }

    /// The ring constants.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Work done so far.
    pub fn counters(&self) -> Counters {
        Counters {
            plan_builds: self.primes.builds,
            limbs_sent: self.limbs_sent,
            limbs_received: self.limbs_received,
        }
    }

    /// True between an inference's messages: after the input or a round reply was sent and
    /// before the next message's first frame.
    pub fn awaiting_group(&self) -> bool {
        matches!(self.state, State::Awaiting { .. })
    }

    /// Frees the current plan (about 32·N bytes) until the next limb needs one.
    pub fn release_plan(&mut self) {
        self.primes.current = None;
    }

    /// Sends the public key, then the relinearisation key and the Galois keys of `rotations`
    /// (the server's hello lists them), then `KeysDone`. Returns the key id.
    pub fn upload_keys<R, F>(
        &mut self,
        rotations: &[i64],
        rng: &mut R,
        mut send: F,
    ) -> Result<KeyId>
    where
        R: CryptoRng + ?Sized,
        F: FnMut(&ClientFrame) -> Result<()>,
    {
        let n = self.ring.n();
        let mut words = vec![0u64; n];

        let seed = random_seed(rng);
        let mut e = Zeroizing::new(vec![0i8; n]);
        fill_error(rng, &mut e);
        let mut id = KeyIdHasher::new(self.ring.params().name(), &seed);
        for pos in 0..self.ring.top_basis().len() {
            let tools = self.primes.tools(&self.ring, &self.secret, pos)?;
            tools.rlwe_limb(&seed, 0, &e, &mut words);
            id.limb(&words);
            let frame = ClientFrame::PublicKeyLimb {
                seed,
                limb: Limb {
                    index: pos as u16,
                    words,
                },
            };
            self.sent(&frame, &mut send)?;
            words = take_words(frame);
        }
        let key_id = id.finish();

        let mut kinds = vec![KeyKind::Relinearization];
        for &r in rotations {
            let g = galois_element_for_rotation(n, r);
            check_galois_element(n, g)?;
            kinds.push(KeyKind::Galois(g));
        }
        let digits = self
            .ring
            .params()
            .digit_count(self.ring.params().top_level());
        let basis = self.ring.full_basis();
        for kind in kinds {
            let seed = random_seed(rng);
            let noise_seed = Zeroizing::new(random_seed(rng));
            send(&ClientFrame::KeyBegin { kind, seed })?;
            for digit in 0..digits {
                for limb in 0..basis.len() {
                    let pi = self.ring.prime_index(basis, limb);
                    let tools = self.primes.tools(&self.ring, &self.secret, pi)?;
                    let seeds = (&seed, &*noise_seed);
                    switching_limb(
                        &self.ring,
                        &tools,
                        &self.secret,
                        kind,
                        seeds,
                        digit,
                        &mut words,
                    )?;
                    let frame = ClientFrame::KeyChunk(KeyChunk {
                        digit: digit as u16,
                        limb: limb as u16,
                        data: words,
                    });
                    self.sent(&frame, &mut send)?;
                    words = take_words(frame);
                }
            }
        }
        send(&ClientFrame::KeysDone { key_id })?;
        Ok(key_id)
    }

    /// Encrypts the input as the server's `spec` asks and sends it; then feed the server's
    /// frames to [`LimbwiseClient::on_frame`].
    pub fn start_inference<R, F>(
        &mut self,
        input: &[f64],
        spec: &InputSpec,
        rng: &mut R,
        mut send: F,
    ) -> Result<()>
    where
        R: CryptoRng + ?Sized,
        F: FnMut(&ClientFrame) -> Result<()>,
    {
        if !matches!(self.state, State::Idle) {
            return Err(Error::Decode("inference already started"));
        }
        let level = spec.level as usize;
        if level > self.ring.params().top_level() {
            return Err(Error::InvalidParams("input level above the top level"));
        }
        let layout = Zeroizing::new(spec.layout(input, self.ring.params().slots())?);
        let count = layout.len() as u16;
        for (ct, values) in layout.iter().enumerate() {
            let msg = Message::Coefficients(self.encode(values, spec.scale, level)?);
            let target = (Purpose::Input, ct as u16, count);
            self.send_encryption(target, &msg, spec.scale, level, rng, &mut send)?;
        }
        self.state = State::Awaiting { round: 0 };
        Ok(())
    }

    /// Handles one server frame of a running inference. Round replies go out through `send`
    /// as soon as a round's refresh message is complete; returns the output values once the
    /// output has arrived (then the client is idle again).
    pub fn on_frame<R, F>(
        &mut self,
        frame: ServerFrame,
        rng: &mut R,
        mut send: F,
    ) -> Result<Option<Vec<f64>>>
    where
        R: CryptoRng + ?Sized,
        F: FnMut(&ClientFrame) -> Result<()>,
    {
        frame.validate()?;
        match frame {
            ServerFrame::CiphertextsBegin {
                purpose,
                count,
                len,
                sign_scale,
            } => {
                self.begin_group(purpose, count, len, sign_scale)?;
                Ok(None)
            }
            ServerFrame::CiphertextLimb {
                ct,
                component,
                scale,
                limbs,
                limb,
            } => {
                self.limbs_received += 1;
                self.on_limb(ct, component, scale, limbs, limb, rng, &mut send)
            }
            ServerFrame::Error { .. } => {
                self.state = State::Idle;
                Err(Error::Decode(
                    "the server ended the inference with an error",
                ))
            }
            _ => Err(Error::Decode("unexpected frame during an inference")),
        }
    }

    fn begin_group(
        &mut self,
        purpose: Purpose,
        count: u16,
        len: u32,
        sign_scale: f64,
    ) -> Result<()> {
        let slots = self.ring.params().slots();
        let state = core::mem::replace(&mut self.state, State::Idle);
        self.state = match (state, purpose) {
            (State::Awaiting { round }, Purpose::Relu(r)) if r == round => {
                if count != 1 {
                    return Err(Error::Decode(
                        "the limb-wise client takes one ciphertext per ReLU message",
                    ));
                }
                if !(sign_scale.is_finite() && sign_scale > 0.0) {
                    return Err(Error::InvalidScale);
                }
                State::Round {
                    round,
                    period: check_period(len, slots)?,
                    sign_scale,
                    refresh: false,
                    signs: Vec::new(),
                    ct: None,
                }
            }
            (
                State::Round {
                    round,
                    period,
                    sign_scale: round_sign_scale,
                    refresh: false,
                    signs,
                    ct: None,
                },
                Purpose::Refresh(r),
            ) if r == round && !signs.is_empty() => {
                if count != 1 {
                    return Err(Error::Decode(
                        "the limb-wise client takes one ciphertext per refresh message",
                    ));
                }
                if len as usize != period || sign_scale.to_bits() != round_sign_scale.to_bits() {
                    return Err(Error::Decode(
                        "refresh header differs from its ReLU message's",
                    ));
                }
                State::Round {
                    round,
                    period,
                    sign_scale: round_sign_scale,
                    refresh: true,
                    signs,
                    ct: None,
                }
            }
            (State::Awaiting { .. }, Purpose::Output) => {
                let count = usize::from(count);
                let len = len as usize;
                // Every ciphertext carries slots values except the last.
                if len == 0 || len.div_ceil(slots) != count {
                    return Err(Error::Decode("bad output length"));
                }
                State::Output {
                    len,
                    count,
                    values: Vec::with_capacity(len.min(slots)),
                    ct: None,
                }
            }
            _ => return Err(Error::Decode("unexpected ciphertext group")),
        };
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn on_limb<R, F>(
        &mut self,
        ct: u16,
        component: u8,
        scale: f64,
        limbs: u16,
        limb: Limb,
        rng: &mut R,
        send: &mut F,
    ) -> Result<Option<Vec<f64>>>
    where
        R: CryptoRng + ?Sized,
        F: FnMut(&ClientFrame) -> Result<()>,
    {
        let state = core::mem::replace(&mut self.state, State::Idle);
        match state {
            State::Round {
                round,
                period,
                sign_scale,
                refresh,
                mut signs,
                ct: incoming,
            } => {
                // One ciphertext per message: once the ReLU message is decrypted, only the
                // refresh message's header may follow.
                if ct != 0 || (!refresh && !signs.is_empty() && incoming.is_none()) {
                    return Err(Error::Decode("ciphertext index out of order"));
                }
                let mut incoming = self.continue_or_start(incoming, limbs, scale)?;
                let Some(int) = self.absorb(&mut incoming, component, scale, limbs, limb)? else {
                    self.state = State::Round {
                        round,
                        period,
                        sign_scale,
                        refresh,
                        signs,
                        ct: Some(incoming),
                    };
                    return Ok(None);
                };
                if !refresh {
                    let mut int = int;
                    let decoded = self.encoder.decode(&int, incoming.scale);
                    int.zeroize();
                    let mut values = decoded?;
                    // Same rule as the host client (NaN counts as positive).
                    signs = values[..period]
                        .iter()
                        .map(|&v| v.partial_cmp(&0.0) != Some(core::cmp::Ordering::Less))
                        .collect();
                    values.zeroize();
                    self.state = State::Round {
                        round,
                        period,
                        sign_scale,
                        refresh: false,
                        signs,
                        ct: None,
                    };
                    return Ok(None);
                }
                self.reply(
                    round,
                    period,
                    sign_scale,
                    &signs,
                    int,
                    incoming.scale,
                    rng,
                    send,
                )?;
                self.state = State::Awaiting { round: round + 1 };
                Ok(None)
            }
            State::Output {
                len,
                count,
                mut values,
                ct: incoming,
            } => {
                let index = values.len() / self.ring.params().slots();
                if usize::from(ct) != index || index >= count {
                    return Err(Error::Decode("ciphertext index out of order"));
                }
                let mut incoming = self.continue_or_start(incoming, limbs, scale)?;
                let Some(int) = self.absorb(&mut incoming, component, scale, limbs, limb)? else {
                    self.state = State::Output {
                        len,
                        count,
                        values,
                        ct: Some(incoming),
                    };
                    return Ok(None);
                };
                let mut int = int;
                let decoded = self.encoder.decode(&int, incoming.scale);
                int.zeroize();
                let mut decoded = decoded?;
                let take = (len - values.len()).min(decoded.len());
                values.extend_from_slice(&decoded[..take]);
                decoded.zeroize();
                if values.len() == len {
                    self.release_plan();
                    return Ok(Some(values));
                }
                self.state = State::Output {
                    len,
                    count,
                    values,
                    ct: None,
                };
                Ok(None)
            }
            _ => Err(Error::Decode("ciphertext limb outside a ciphertext group")),
        }
    }

    /// The ciphertext being received, or a new one at the hand-off level.
    fn continue_or_start(
        &self,
        incoming: Option<Incoming>,
        limbs: u16,
        scale: f64,
    ) -> Result<Incoming> {
        match incoming {
            Some(i) => Ok(i),
            None => {
                let handoff_limbs = self.ring.params().handoff_level() + 1;
                Incoming::new(usize::from(limbs), handoff_limbs, scale, self.ring.n())
            }
        }
    }

    /// Takes one limb of an incoming ciphertext; returns the decrypted integers once the last
    /// one is in.
    fn absorb(
        &mut self,
        incoming: &mut Incoming,
        component: u8,
        scale: f64,
        limbs: u16,
        limb: Limb,
    ) -> Result<Option<IntPoly>> {
        let n = self.ring.n();
        if (component, usize::from(limb.index)) != incoming.next
            || usize::from(limbs) != incoming.limbs
        {
            return Err(Error::Decode(
                "ciphertext limb missing, repeated or out of order",
            ));
        }
        if scale.to_bits() != incoming.scale.to_bits() {
            return Err(Error::Decode("scale changed within a ciphertext"));
        }
        if limb.words.len() != n {
            return Err(Error::LengthMismatch {
                expected: n,
                found: limb.words.len(),
            });
        }
        let pos = usize::from(limb.index);
        let q = self.ring.modulus_at(pos).value();
        if let Some(index) = limb.words.iter().position(|&x| x >= q) {
            return Err(Error::ResidueOutOfRange { limb: pos, index });
        }
        let acc = &mut incoming.acc[pos * n..(pos + 1) * n];
        if component == 0 {
            acc.copy_from_slice(&limb.words);
        } else {
            let tools = self.primes.tools(&self.ring, &self.secret, pos)?;
            tools.plan.mul_accumulate(acc, &limb.words, tools.s_ntt);
            tools.plan.inv(acc);
            tools.plan.normalize(acc);
        }
        incoming.next = if pos + 1 < incoming.limbs {
            (component, pos + 1)
        } else {
            (component + 1, 0)
        };
        if incoming.next.0 < 2 {
            return Ok(None);
        }
        // What follows (CRT, decoding, and the next message, which starts at the first prime
        // again) does not need this prime's plan: free it for the decoding buffers.
        self.release_plan();
        let residues = core::mem::take(&mut incoming.acc);
        Ok(Some(IntPoly::from_residues(&self.ring, residues)?))
    }

    #[allow(clippy::too_many_arguments)]
    fn reply<R, F>(
        &mut self,
        round: u32,
        period: usize,
        sign_scale: f64,
        signs: &[bool],
        mut refresh: IntPoly,
        scale: f64,
        rng: &mut R,
        send: &mut F,
    ) -> Result<()>
    where
        R: CryptoRng + ?Sized,
        F: FnMut(&ClientFrame) -> Result<()>,
    {
        let slots = self.ring.params().slots();
        let top = self.ring.params().top_level();
        let first: Zeroizing<Vec<f64>> =
            Zeroizing::new(signs.iter().map(|&p| if p { 1.0 } else { -1.0 }).collect());
        let values = Zeroizing::new(periodic(&first, period, slots));
        drop(first);
        let msg = Message::Coefficients(self.encode(&values, sign_scale, top)?);
        drop(values);
        self.send_encryption(
            (Purpose::Signs(round), 0, 1),
            &msg,
            sign_scale,
            top,
            rng,
            send,
        )?;
        let msg = Message::Integers(&refresh);
        let sent = self.send_encryption(
            (Purpose::Refreshed(round), 0, 1),
            &msg,
            scale,
            top,
            rng,
            send,
        );
        refresh.zeroize();
        sent
    }

    /// A fresh symmetric encryption of `msg` at `level`, sent as a one-ciphertext group: c0
    /// limb by limb (NTT(m + e) − a·s), with c1 = a expanded from the seed by the server.
    /// Sends ciphertext `ct` of a group of `count` (`target`), opening the group first if `ct`
    /// is 0.
    fn send_encryption<R, F>(
        &mut self,
        (purpose, ct, count): (Purpose, u16, u16),
        msg: &Message<'_>,
        scale: f64,
        level: usize,
        rng: &mut R,
        send: &mut F,
    ) -> Result<()>
    where
        R: CryptoRng + ?Sized,
        F: FnMut(&ClientFrame) -> Result<()>,
    {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::InvalidScale);
        }
        let n = self.ring.n();
        let seed = random_seed(rng);
        let mut e = Zeroizing::new(vec![0i8; n]);
        fill_error(rng, &mut e);
        if ct == 0 {
            send(&ClientFrame::CiphertextsBegin { purpose, count })?;
        }
        let mut words = vec![0u64; n];
        for pos in 0..=level {
            let tools = self.primes.tools(&self.ring, &self.secret, pos)?;
            let m = tools.m;
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
            tools.ntt_minus_a_s(&seed, 0, &mut words);
            let frame = ClientFrame::SeededLimb {
                ct,
                seed,
                scale,
                limbs: (level + 1) as u16,
                limb: Limb {
                    index: pos as u16,
                    words,
                },
            };
            self.sent(&frame, send)?;
            words = take_words(frame);
        }
        Ok(())
    }

    /// Δ·m for `values` at `scale`, checked to fit below Q_level / 2.
    fn encode(&self, values: &[f64], scale: f64, level: usize) -> Result<Zeroizing<Vec<f64>>> {
        let max = max_coefficient(self.ring.params(), level);
        Ok(Zeroizing::new(
            self.encoder.scaled_coefficients(values, scale, max)?,
        ))
    }

    fn sent<F: FnMut(&ClientFrame) -> Result<()>>(
        &mut self,
        frame: &ClientFrame,
        send: &mut F,
    ) -> Result<()> {
        self.limbs_sent += 1;
        send(frame)
    }
}

impl Incoming {
    fn new(limbs: usize, expected: usize, scale: f64, n: usize) -> Result<Self> {
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
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.acc.zeroize();
    }
}

/// The limb buffer of a frame just sent, for reuse.
fn take_words(frame: ClientFrame) -> Vec<u64> {
    match frame {
        ClientFrame::PublicKeyLimb { limb, .. } | ClientFrame::SeededLimb { limb, .. } => {
            limb.words
        }
        ClientFrame::KeyChunk(c) => c.data,
        _ => Vec::new(),
    }
}
