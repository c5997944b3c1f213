//! [`ClientSession`]: the client's whole side of a session as a sans-I/O state machine over
//! frames, mirroring the server's `ServerSession`.
//!
//! Hello → (key upload) → ready ⇄ inference. Per inference the client (1) encrypts its input in
//! the layout the server's hello asked for; (2) for each hidden layer answers one round;
//! (3) decrypts the output. A round goes as the preset says ([`RoundKind`]):
//!
//! * **sign-magnitude** (the default preset): the client decrypts the ReLU messages' first
//!   period v and returns one fresh encryption of the pairs (v, |v|), laid out as the hello's
//!   `round_inputs` say;
//! * **refresh** (HeFUN as published): it keeps the signs of the ReLU messages' first period,
//!   decrypts the refresh messages to integer polynomials, then returns fresh encryptions of
//!   the signs and the refresh polynomials re-encrypted at the top level (no decoding).
//!
//! It never sees weights, the neuron order, or unmasked pre-activations.
//!
//! Frames go out through a `send` callback as they are produced (a key upload is thousands of
//! frames; nothing is buffered), and incoming ciphertexts are decrypted as their limbs arrive.

use alloc::string::String;
use alloc::vec::Vec;

use rand_core::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use super::backend::Backend;
use super::key_upload::{public_key_limbs, upload, PublicKeyDraws};
use super::limbs::{send_encryption, Decrypted, Decryption, Incoming, Message, Target};
use crate::encoding::{max_coefficient, Coefficients, Encoder};
use crate::error::{Error, Result};
use crate::params::RoundKind;
use crate::ring::IntPoly;
use crate::sampling::Csprng;
use crate::wire::input::{check_period, periodic, InputSpec};
use crate::wire::messages::{ClientFrame, KeyId, Purpose, ServerFrame, MAX_CIPHERTEXTS};
use crate::wire::{ErrorCode, PROTOCOL_VERSION};

/// What the server's hello told the client.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerInfo {
    /// The model's id.
    pub model_id: [u8; 32],
    /// How to lay out the input.
    pub input: InputSpec,
    /// Rotation steps whose keys the server asked for.
    pub rotations: Vec<i64>,
    /// Rounds per inference.
    pub rounds: u32,
    /// The layout of each round's reply under the sign-magnitude round (empty under the
    /// refresh round).
    pub round_inputs: Vec<InputSpec>,
    /// Whether the server already held the client's keys.
    pub keys_known: bool,
}

impl ServerInfo {
    /// What a server in the same process that holds the client's keys would say: input
    /// layout `input`, `rounds` rounds.
    pub fn in_process(input: InputSpec, rounds: u32) -> Self {
        Self {
            model_id: [0; 32],
            input,
            rotations: Vec::new(),
            rounds,
            round_inputs: Vec::new(),
            keys_known: true,
        }
    }

    /// The same with the sign-magnitude round's reply layouts.
    pub fn with_round_inputs(mut self, round_inputs: Vec<InputSpec>) -> Self {
        self.round_inputs = round_inputs;
        self
    }
}

/// What a frame (or a call) led to.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The frame was taken; nothing to report yet.
    Pending,
    /// The hello went out.
    HelloSent,
    /// The server's hello was taken and the whole key upload sent; the server's verdict
    /// follows.
    KeysSent {
        /// Limb frames of the upload.
        limbs: u32,
    },
    /// Keys known or accepted: inferences may start.
    Ready,
    /// The input was encrypted and sent.
    InputSent,
    /// Round `n` was answered.
    RoundAnswered(u32),
    /// The inference's output values; the session is ready for the next one.
    Output(Vec<f64>),
}

/// Bounds on what a server may ask of this client (its memory).
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most ciphertexts in one ReLU or refresh message (each refresh polynomial is held until
    /// the round's last one is in).
    pub max_round_ciphertexts: u16,
    /// Whether a ciphertext may be decrypted to exact integers, which holds all its limbs at
    /// once (8·N bytes per limb): what a refresh polynomial, or a message whose scale is far
    /// below Q, needs. A device with little RAM says no, and such a message is refused with an
    /// error instead of exhausting its heap.
    pub exact_decryption: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_round_ciphertexts: MAX_CIPHERTEXTS,
            exact_decryption: true,
        }
    }
}

/// Work done so far, for footprint reports.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// NTT plans built (one per switch of prime on a device).
    pub plan_builds: u32,
    /// Limb frames sent.
    pub limbs_sent: u32,
    /// Limb frames received.
    pub limbs_received: u32,
}

/// The round being received.
struct Round {
    round: u32,
    period: usize,
    sign_scale: f64,
    count: u16,
    /// Signs (true: non-negative) of the first period of each ReLU message taken so far
    /// (refresh round).
    signs: Vec<bool>,
    /// The first period of each ReLU message taken so far (sign-magnitude round).
    values: Vec<f64>,
    /// Refresh messages decrypted so far.
    refreshed: Vec<(IntPoly, f64)>,
    /// False while ReLU messages arrive, true once the refresh group began.
    refresh: bool,
    ct: Option<Incoming>,
}

enum State {
    /// [`ClientSession::hello`] not called yet.
    Start,
    AwaitHello,
    AwaitKeysAccepted,
    Ready,
    /// Waiting for round `round`'s ReLU messages or for the output.
    AwaitGroup {
        round: u32,
    },
    Round(Round),
    Output {
        len: usize,
        count: usize,
        values: Vec<f64>,
        ct: Option<Incoming>,
    },
    Closed,
}

/// The client's side of one session with a server, over a [`Backend`].
pub struct ClientSession<B: Backend> {
    backend: B,
    encoder: Encoder,
    /// Generator of the public key (derived from the key seed, so the key id is stable). Never
    /// advanced: cloned for each use. (`rand_chacha` does not zeroize its state.)
    public_key_rng: Csprng,
    limits: Limits,
    state: State,
    server: Option<ServerInfo>,
    refusal: Option<(ErrorCode, String)>,
    limbs_sent: u32,
    limbs_received: u32,
}

impl<B: Backend> ClientSession<B> {
    /// A session over `backend`, whose public key is drawn from `public_key_rng`
    /// ([`super::KeySeed::public_key_rng`] of the seed the backend's secret came from).
    pub fn new(backend: B, public_key_rng: Csprng) -> Self {
        let log_n = backend.ring().params().log_n();
        Self {
            backend,
            encoder: Encoder::new(log_n),
            public_key_rng,
            limits: Limits::default(),
            state: State::Start,
            server: None,
            refusal: None,
            limbs_sent: 0,
            limbs_received: 0,
        }
    }

    /// A session that skips the handshake, for a server whose hello is `server` and which
    /// holds the keys (in-process runs where both parties share one process).
    pub fn ready(backend: B, public_key_rng: Csprng, server: ServerInfo) -> Self {
        let mut s = Self::new(backend, public_key_rng);
        s.server = Some(server);
        s.state = State::Ready;
        s
    }

    /// Bounds what the server may ask of this client.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// What the server's hello said, once it arrived.
    pub fn server(&self) -> Option<&ServerInfo> {
        self.server.as_ref()
    }

    /// The server's error frame, if it ended the session with one.
    pub fn refusal(&self) -> Option<(ErrorCode, &str)> {
        self.refusal.as_ref().map(|(c, m)| (*c, m.as_str()))
    }

    /// Work done so far.
    pub fn counters(&self) -> Counters {
        Counters {
            plan_builds: self.backend.plan_builds(),
            limbs_sent: self.limbs_sent,
            limbs_received: self.limbs_received,
        }
    }

    /// True when keys are settled and no inference is under way.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready)
    }

    /// True between an inference's messages: after the input or a round reply was sent and
    /// before the next message's first frame.
    pub fn awaiting_group(&self) -> bool {
        matches!(self.state, State::AwaitGroup { .. })
    }

    /// Frees the backend's per-prime cache until the next limb needs one.
    pub fn release(&mut self) {
        self.backend.release();
    }

    /// The key id: a hash of the public key, which derives from the key seed.
    pub fn key_id(&mut self) -> Result<KeyId> {
        let n = self.backend.ring().n();
        let draws = PublicKeyDraws::draw(&mut self.public_key_rng.clone(), n);
        let mut words = Vec::new();
        let id = public_key_limbs(&mut self.backend, &draws, &mut words, |_, _| Ok(()));
        words.zeroize();
        id
    }

    /// Opens the session: sends the hello, naming the key id so a server that stored the keys
    /// skips the upload.
    pub fn hello<F>(&mut self, mut send: F) -> Result<Event>
    where
        F: FnMut(&ClientFrame) -> Result<()>,
    {
        if !matches!(self.state, State::Start) {
            return Err(Error::Decode("hello sent twice"));
        }
        let key_id = self.key_id()?;
        self.backend.release();
        send(&ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            presets: alloc::vec![String::from(self.backend.ring().params().name())],
            key_id: Some(key_id),
        })?;
        self.state = State::AwaitHello;
        Ok(Event::HelloSent)
    }

    /// Encrypts `input` as the server asked and sends it; then feed the server's frames to
    /// [`ClientSession::on_frame`].
    pub fn start_inference<R, F>(
        &mut self,
        input: &[f64],
        rng: &mut R,
        mut send: F,
    ) -> Result<Event>
    where
        R: CryptoRng + ?Sized,
        F: FnMut(&ClientFrame) -> Result<()>,
    {
        if !matches!(self.state, State::Ready) {
            return Err(Error::Decode("not ready for an inference"));
        }
        let spec = match &self.server {
            Some(s) => s.input.clone(),
            None => return Err(Error::Decode("no server hello")),
        };
        let params = self.backend.ring().params();
        let level = spec.level as usize;
        if level > params.top_level() {
            return Err(Error::InvalidParams("input level above the top level"));
        }
        let mut layout = Layout::new(spec.layout(input, params.slots())?);
        let count = u16::try_from(layout.len())
            .map_err(|_| Error::InvalidParams("input needs too many ciphertexts"))?;
        for ct in 0..layout.len() {
            let coeffs = self.encode(&layout.take(ct), spec.scale, level)?;
            let target = Target {
                purpose: Purpose::Input,
                ct: ct as u16,
                count,
            };
            let msg = Message::Coefficients(&coeffs);
            self.limbs_sent += send_encryption(
                &mut self.backend,
                target,
                &msg,
                spec.scale,
                level,
                rng,
                &mut send,
            )?;
        }
        self.state = State::AwaitGroup { round: 0 };
        Ok(Event::InputSent)
    }

    /// Handles one server frame. Whatever it causes to be sent (the key upload, a round's
    /// reply) goes out through `send` before this returns. Any error ends the session.
    pub fn on_frame<R, F>(&mut self, frame: ServerFrame, rng: &mut R, mut send: F) -> Result<Event>
    where
        R: CryptoRng + ?Sized,
        F: FnMut(&ClientFrame) -> Result<()>,
    {
        let result = self.step(frame, rng, &mut send);
        if result.is_err() {
            self.state = State::Closed;
        }
        result
    }

    fn step<R, F>(&mut self, frame: ServerFrame, rng: &mut R, send: &mut F) -> Result<Event>
    where
        R: CryptoRng + ?Sized,
        F: FnMut(&ClientFrame) -> Result<()>,
    {
        frame.validate()?;
        if let ServerFrame::Error { code, message } = frame {
            self.refusal = Some((code, message));
            return Err(Error::Refused(code));
        }
        match (core::mem::replace(&mut self.state, State::Closed), frame) {
            (
                State::AwaitHello,
                ServerFrame::Hello {
                    version,
                    preset,
                    model_id,
                    input,
                    rotations,
                    rounds,
                    round_inputs,
                    keys_known,
                },
            ) => {
                if version != PROTOCOL_VERSION {
                    return Err(Error::Decode("the server speaks another protocol version"));
                }
                if preset != self.backend.ring().params().name() {
                    return Err(Error::Decode(
                        "the server chose a preset this client did not offer",
                    ));
                }
                let slots = self.backend.ring().params().slots();
                input.ciphertexts(slots)?;
                self.check_round_inputs(rounds, &round_inputs)?;
                self.server = Some(ServerInfo {
                    model_id,
                    input,
                    rotations,
                    rounds,
                    round_inputs,
                    keys_known,
                });
                if keys_known {
                    self.state = State::Ready;
                    return Ok(Event::Ready);
                }
                let n = self.backend.ring().n();
                let draws = PublicKeyDraws::draw(&mut self.public_key_rng.clone(), n);
                let rotations = self
                    .server
                    .as_ref()
                    .map(|s| s.rotations.as_slice())
                    .unwrap_or(&[]);
                let (_, limbs) = upload(&mut self.backend, draws, rotations, rng, send)?;
                self.backend.release();
                self.limbs_sent += limbs;
                self.state = State::AwaitKeysAccepted;
                Ok(Event::KeysSent { limbs })
            }
            (State::AwaitKeysAccepted, ServerFrame::KeysAccepted) => {
                self.state = State::Ready;
                Ok(Event::Ready)
            }
            (
                state,
                ServerFrame::CiphertextsBegin {
                    purpose,
                    count,
                    len,
                    sign_scale,
                },
            ) => {
                self.state = self.begin_group(state, purpose, count, len, sign_scale)?;
                Ok(Event::Pending)
            }
            (
                state,
                ServerFrame::CiphertextLimb {
                    ct,
                    component,
                    scale,
                    limbs,
                    limb,
                },
            ) => {
                self.limbs_received += 1;
                let (state, event) =
                    self.on_limb(state, ct, component, scale, limbs, limb, rng, send)?;
                self.state = state;
                Ok(event)
            }
            (State::Closed, _) => Err(Error::Decode("session closed")),
            _ => Err(Error::Decode("unexpected frame")),
        }
    }

    fn begin_group(
        &self,
        state: State,
        purpose: Purpose,
        count: u16,
        len: u32,
        sign_scale: f64,
    ) -> Result<State> {
        let slots = self.backend.ring().params().slots();
        let rounds = self.server.as_ref().map_or(0, |s| s.rounds);
        match (state, purpose) {
            (State::AwaitGroup { round }, Purpose::Relu(r)) if r == round && round < rounds => {
                if count > self.limits.max_round_ciphertexts {
                    return Err(Error::Decode(
                        "a round of more ciphertexts than this client can hold",
                    ));
                }
                if !(sign_scale.is_finite() && sign_scale > 0.0) {
                    return Err(Error::InvalidScale);
                }
                Ok(State::Round(Round {
                    round,
                    period: check_period(len, slots)?,
                    sign_scale,
                    count,
                    signs: Vec::new(),
                    values: Vec::new(),
                    refreshed: Vec::new(),
                    refresh: false,
                    ct: None,
                }))
            }
            (State::Round(mut r), Purpose::Refresh(n))
                if n == r.round
                    && !r.refresh
                    && r.ct.is_none()
                    && r.done() == usize::from(r.count) =>
            {
                if count != r.count
                    || len as usize != r.period
                    || sign_scale.to_bits() != r.sign_scale.to_bits()
                {
                    return Err(Error::Decode(
                        "refresh header differs from its ReLU message's",
                    ));
                }
                r.refresh = true;
                Ok(State::Round(r))
            }
            (State::AwaitGroup { round }, Purpose::Output) if round == rounds => {
                let count = usize::from(count);
                let len = len as usize;
                // Every ciphertext carries `slots` values except the last.
                if len == 0 || len.div_ceil(slots) != count {
                    return Err(Error::Decode("bad output length"));
                }
                Ok(State::Output {
                    len,
                    count,
                    values: Vec::with_capacity(len.min(slots)),
                    ct: None,
                })
            }
            _ => Err(Error::Decode("unexpected ciphertext group")),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_limb<R, F>(
        &mut self,
        state: State,
        ct: u16,
        component: u8,
        scale: f64,
        limbs: u16,
        limb: crate::wire::messages::Limb,
        rng: &mut R,
        send: &mut F,
    ) -> Result<(State, Event)>
    where
        R: CryptoRng + ?Sized,
        F: FnMut(&ClientFrame) -> Result<()>,
    {
        let handoff_limbs = self.backend.ring().params().handoff_level() + 1;
        match state {
            State::Round(mut r) => {
                if usize::from(ct) != r.done() || r.done() >= usize::from(r.count) {
                    return Err(Error::Decode("ciphertext index out of order"));
                }
                let mut incoming = match r.ct.take() {
                    Some(i) => i,
                    None => {
                        // Only a refresh polynomial is needed exactly.
                        let mode = match r.refresh {
                            true => Decryption::Integers,
                            false => Decryption::Points,
                        };
                        let ring = self.backend.ring();
                        let exact = self.limits.exact_decryption;
                        Incoming::new(usize::from(limbs), handoff_limbs, scale, ring, mode, exact)?
                    }
                };
                let Some(decrypted) =
                    incoming.absorb(&mut self.backend, component, scale, limbs, limb)?
                else {
                    r.ct = Some(incoming);
                    return Ok((State::Round(r), Event::Pending));
                };
                if self.sign_magnitude() {
                    let mut values = self.decode(decrypted, incoming.scale())?;
                    // A value that is not finite is answered as 0: the reply stays well-formed
                    // whatever arrives.
                    r.values.extend(values[..r.period].iter().map(|&v| {
                        if v.is_finite() {
                            v
                        } else {
                            0.0
                        }
                    }));
                    values.zeroize();
                    // Freed before the reply is encoded: a device's peak is during the reply.
                    drop(values);
                    if r.values.len() < r.period * usize::from(r.count) {
                        return Ok((State::Round(r), Event::Pending));
                    }
                    let round = r.round;
                    self.reply_sign_magnitude(r, rng, send)?;
                    return Ok((
                        State::AwaitGroup { round: round + 1 },
                        Event::RoundAnswered(round),
                    ));
                }
                if !r.refresh {
                    let mut values = self.decode(decrypted, incoming.scale())?;
                    // NaN counts as non-negative: the answer stays well-formed whatever arrives.
                    r.signs.extend(
                        values[..r.period]
                            .iter()
                            .map(|&v| v.partial_cmp(&0.0) != Some(core::cmp::Ordering::Less)),
                    );
                    values.zeroize();
                    return Ok((State::Round(r), Event::Pending));
                }
                let Decrypted::Integers(int) = decrypted else {
                    return Err(Error::Decode("refresh polynomial not decrypted exactly"));
                };
                r.refreshed.push((int, incoming.scale()));
                if r.refreshed.len() < usize::from(r.count) {
                    return Ok((State::Round(r), Event::Pending));
                }
                let round = r.round;
                self.reply(r, rng, send)?;
                Ok((
                    State::AwaitGroup { round: round + 1 },
                    Event::RoundAnswered(round),
                ))
            }
            State::Output {
                len,
                count,
                mut values,
                ct: incoming,
            } => {
                let slots = self.backend.ring().params().slots();
                let index = values.len() / slots;
                if usize::from(ct) != index || index >= count {
                    return Err(Error::Decode("ciphertext index out of order"));
                }
                let mut incoming = match incoming {
                    Some(i) => i,
                    None => Incoming::new(
                        usize::from(limbs),
                        handoff_limbs,
                        scale,
                        self.backend.ring(),
                        Decryption::Points,
                        self.limits.exact_decryption,
                    )?,
                };
                let Some(decrypted) =
                    incoming.absorb(&mut self.backend, component, scale, limbs, limb)?
                else {
                    let state = State::Output {
                        len,
                        count,
                        values,
                        ct: Some(incoming),
                    };
                    return Ok((state, Event::Pending));
                };
                let mut decoded = self.decode(decrypted, incoming.scale())?;
                let take = (len - values.len()).min(decoded.len());
                values.extend_from_slice(&decoded[..take]);
                decoded.zeroize();
                if values.len() == len {
                    self.backend.release();
                    return Ok((State::Ready, Event::Output(values)));
                }
                let state = State::Output {
                    len,
                    count,
                    values,
                    ct: None,
                };
                Ok((state, Event::Pending))
            }
            _ => Err(Error::Decode("ciphertext limb outside a ciphertext group")),
        }
    }

    /// Sends the round's reply: the signs of every ReLU message, then every refresh polynomial
    /// re-encrypted at the top level.
    fn reply<R, F>(&mut self, mut r: Round, rng: &mut R, send: &mut F) -> Result<()>
    where
        R: CryptoRng + ?Sized,
        F: FnMut(&ClientFrame) -> Result<()>,
    {
        let slots = self.backend.ring().params().slots();
        let top = self.backend.ring().params().top_level();
        let count = r.count;
        for (c, signs) in r.signs.chunks(r.period).enumerate() {
            let first: Zeroizing<Vec<f64>> =
                Zeroizing::new(signs.iter().map(|&p| if p { 1.0 } else { -1.0 }).collect());
            let values = Zeroizing::new(periodic(&first, r.period, slots));
            drop(first);
            let coeffs = self.encode(&values, r.sign_scale, top)?;
            drop(values);
            let target = Target {
                purpose: Purpose::Signs(r.round),
                ct: c as u16,
                count,
            };
            self.limbs_sent += send_encryption(
                &mut self.backend,
                target,
                &Message::Coefficients(&coeffs),
                r.sign_scale,
                top,
                rng,
                send,
            )?;
        }
        r.signs.zeroize();
        let mut result = Ok(());
        for (c, (int, scale)) in r.refreshed.iter().enumerate() {
            let target = Target {
                purpose: Purpose::Refreshed(r.round),
                ct: c as u16,
                count,
            };
            let msg = Message::Integers(int);
            match send_encryption(&mut self.backend, target, &msg, *scale, top, rng, send) {
                Ok(limbs) => self.limbs_sent += limbs,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        for (int, _) in r.refreshed.iter_mut() {
            int.zeroize();
        }
        result
    }

    /// True when this client's preset runs the sign-magnitude round.
    fn sign_magnitude(&self) -> bool {
        self.backend.ring().params().round() == RoundKind::SignMagnitude
    }

    /// Checks a hello's reply layouts against the preset's round and this client's limits.
    fn check_round_inputs(&self, rounds: u32, round_inputs: &[InputSpec]) -> Result<()> {
        let params = self.backend.ring().params();
        if !self.sign_magnitude() {
            return match round_inputs.is_empty() {
                true => Ok(()),
                false => Err(Error::Decode("reply layouts for a refresh-round preset")),
            };
        }
        if round_inputs.len() != rounds as usize {
            return Err(Error::Decode("one reply layout per round expected"));
        }
        for spec in round_inputs {
            let cts = spec.ciphertexts(params.slots())?;
            if cts > usize::from(self.limits.max_round_ciphertexts) {
                return Err(Error::Decode(
                    "a round of more ciphertexts than this client can hold",
                ));
            }
            if spec.level as usize > params.top_level() {
                return Err(Error::InvalidParams("reply level above the top level"));
            }
            if spec.gather.is_some() || spec.len % 2 != 0 {
                return Err(Error::Decode("a reply layout must hold pairs (v, |v|)"));
            }
        }
        Ok(())
    }

    /// The sign-magnitude round's reply: the ReLU messages' values v and their magnitudes |v|,
    /// side by side, laid out as the next layer asks and freshly encrypted.
    fn reply_sign_magnitude<R, F>(&mut self, mut r: Round, rng: &mut R, send: &mut F) -> Result<()>
    where
        R: CryptoRng + ?Sized,
        F: FnMut(&ClientFrame) -> Result<()>,
    {
        let spec = self
            .server
            .as_ref()
            .and_then(|s| s.round_inputs.get(r.round as usize))
            .cloned()
            .ok_or(Error::Decode("no reply layout for this round"))?;
        let params = self.backend.ring().params();
        let slots = params.slots();
        let mut pairs: Zeroizing<Vec<f64>> = Zeroizing::new(Vec::with_capacity(2 * r.values.len()));
        for values in r.values.chunks(r.period) {
            pairs.extend_from_slice(values);
            pairs.extend(values.iter().map(|v| v.abs()));
        }
        // Wiped and freed before the layout and the encoding take their memory.
        r.values.zeroize();
        r.values = Vec::new();
        if pairs.len() != spec.len as usize {
            return Err(Error::Decode(
                "the round's values do not match its reply layout",
            ));
        }
        let mut layout = Layout::new(spec.layout(&pairs, slots)?);
        drop(pairs);
        let count = u16::try_from(layout.len())
            .map_err(|_| Error::InvalidParams("reply needs too many ciphertexts"))?;
        let level = spec.level as usize;
        for ct in 0..layout.len() {
            let coeffs = self.encode(&layout.take(ct), spec.scale, level)?;
            let target = Target {
                purpose: Purpose::Refreshed(r.round),
                ct: ct as u16,
                count,
            };
            self.limbs_sent += send_encryption(
                &mut self.backend,
                target,
                &Message::Coefficients(&coeffs),
                spec.scale,
                level,
                rng,
                send,
            )?;
        }
        Ok(())
    }

    /// Δ·m for `values` at `scale`, checked to fit below Q_level / 2.
    fn encode(&self, values: &[f64], scale: f64, level: usize) -> Result<Coefficients> {
        let max = max_coefficient(self.backend.ring().params(), level);
        self.encoder.encode_fixed(values, scale, max)
    }

    /// The slot values of a decrypted message at `scale`.
    fn decode(&self, decrypted: Decrypted, scale: f64) -> Result<Vec<f64>> {
        match decrypted {
            Decrypted::Points(points, q_over_scale) => {
                Ok(self.encoder.decode_fixed(points, q_over_scale))
            }
            // IntPoly wipes itself on drop.
            Decrypted::Integers(int) => self.encoder.decode(&int, scale),
        }
    }
}

/// The per-ciphertext slot values of a message, handed out one ciphertext at a time and wiped
/// as they go, so that only one ciphertext's values and encoding are held at once.
struct Layout(Vec<Vec<f64>>);

impl Layout {
    fn new(cts: Vec<Vec<f64>>) -> Self {
        Self(cts)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Ciphertext `ct`'s values (left empty behind).
    fn take(&mut self, ct: usize) -> Zeroizing<Vec<f64>> {
        Zeroizing::new(self.0.get_mut(ct).map(core::mem::take).unwrap_or_default())
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        for v in self.0.iter_mut() {
            v.zeroize();
        }
    }
}

impl Round {
    /// Ciphertexts of the current group fully taken.
    fn done(&self) -> usize {
        if self.refresh {
            self.refreshed.len()
        } else {
            // One of the two is used, by the round's kind.
            (self.signs.len() + self.values.len()) / self.period
        }
    }
}
