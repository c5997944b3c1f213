//! One client session on the server, sans I/O: feed it the client's frames, send what it
//! returns. Transports (TCP, tests) only move frames.
//!
//! States: hello → (key upload) → ready ⇄ inference. Any error ends the session with an error
//! frame carrying a stable [`ErrorCode`]; the caller closes the connection after sending it.

use std::sync::Arc;

use client_core::keys::{galois_element_for_rotation, KeyKind};
use client_core::sampling::Seed;
use client_core::wire::assembled::{ClientMessage, ServerMessage};
use client_core::wire::convert::{server_frames, ClientMessageAssembler};
use client_core::wire::messages::{ClientFrame, KeyId, ServerFrame};
use client_core::wire::{decode_payload, encode_frame, split_frame, ErrorCode, PROTOCOL_VERSION};
use sha2::{Digest, Sha256};

use super::key_store::KeyStore;
use super::key_upload::{KeyUpload, KeyUploadError};
use super::slots::{Slot, Slots};
use crate::eval::{EvalKeys, Evaluator};
use crate::model::CompiledModel;
use crate::protocol::{Inference, ProtocolConfig, ProtocolError};

/// What a session failed with: the code and message of the error frame to send.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionError {
    /// Stable code.
    pub code: ErrorCode,
    /// Detail for the peer and the log (no secrets, no ciphertext bytes).
    pub message: String,
}

impl SessionError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The error frame to send.
    pub fn frame(&self) -> ServerFrame {
        ServerFrame::error(self.code, &self.message)
    }
}

impl From<KeyUploadError> for SessionError {
    fn from(e: KeyUploadError) -> Self {
        let code = match e {
            KeyUploadError::NotKeyFrame => ErrorCode::UnexpectedMessage,
            _ => ErrorCode::BadKey,
        };
        Self::new(code, e.to_string())
    }
}

fn protocol_error(e: ProtocolError) -> SessionError {
    let code = match &e {
        ProtocolError::Violation(_) => ErrorCode::UnexpectedMessage,
        ProtocolError::Core(_) => ErrorCode::BadCiphertext,
        ProtocolError::Eval(_) => ErrorCode::BadCiphertext,
        ProtocolError::Model(_) | ProtocolError::Budget(_) => ErrorCode::Internal,
    };
    SessionError::new(code, e.to_string())
}

fn malformed(e: client_core::Error) -> SessionError {
    SessionError::new(ErrorCode::BadCiphertext, e.to_string())
}

/// What every session of one server shares: the model, its parameters and the key store.
pub struct Service {
    eval: Evaluator,
    model: CompiledModel,
    cfg: ProtocolConfig,
    model_id: [u8; 32],
    rotations: Vec<i64>,
    requested: Vec<KeyKind>,
    store: KeyStore,
    uploads: Slots,
    prepared: Slots,
}

/// Key sets kept expanded in memory unless the server says otherwise.
pub const DEFAULT_KEY_CACHE: usize = 4;
/// Key uploads in progress at once (each holds a few hundred MB until it completes).
pub const DEFAULT_MAX_UPLOADS: usize = 2;
/// Inferences prepared ahead of their input at once, over all sessions.
pub const DEFAULT_MAX_PREPARED: usize = 8;

impl Service {
    /// A service for `model` with the evaluator's parameters and the planner's configuration;
    /// keys are kept in memory only ([`Service::with_key_store`] to persist them).
    pub fn new(
        eval: Evaluator,
        model: CompiledModel,
        cfg: ProtocolConfig,
    ) -> Result<Self, ProtocolError> {
        let params = eval.ctx().params();
        let rotations = model.rotation_steps(params.slots())?;
        let n = eval.ctx().n();
        // Only the refresh round multiplies ciphertexts.
        let mut requested = Vec::new();
        if params.round() == client_core::params::RoundKind::Refresh {
            requested.push(KeyKind::Relinearization);
        }
        requested.extend(
            rotations
                .iter()
                .map(|&s| KeyKind::Galois(galois_element_for_rotation(n, s))),
        );
        let mut h = Sha256::new();
        h.update(b"hefun model id v1\0");
        for layer in &model.model().layers {
            for w in layer.weights.data.iter().chain(&layer.bias) {
                h.update(w.to_le_bytes());
            }
            h.update([u8::from(layer.relu)]);
        }
        Ok(Self {
            eval,
            model,
            cfg,
            model_id: h.finalize().into(),
            rotations,
            requested,
            store: KeyStore::memory(DEFAULT_KEY_CACHE),
            uploads: Slots::new(DEFAULT_MAX_UPLOADS),
            prepared: Slots::new(DEFAULT_MAX_PREPARED),
        })
    }

    /// At most `uploads` key uploads in progress (further ones get `Busy`) and `prepared`
    /// inferences prepared ahead (further sessions prepare when their input arrives).
    pub fn with_memory_limits(mut self, uploads: usize, prepared: usize) -> Self {
        self.uploads = Slots::new(uploads);
        self.prepared = Slots::new(prepared);
        self
    }

    /// Uses `store` for uploaded keys.
    pub fn with_key_store(mut self, store: KeyStore) -> Self {
        self.store = store;
        self
    }

    /// The key store.
    pub fn key_store(&self) -> &KeyStore {
        &self.store
    }

    /// The evaluator (its context holds the parameters).
    pub fn eval(&self) -> &Evaluator {
        &self.eval
    }

    /// The keys of `id`: cached, or replayed from the store (checked like a fresh upload).
    fn known_keys(&self, id: &KeyId) -> Option<Arc<EvalKeys>> {
        if let Some(keys) = self.store.cached(id) {
            return Some(keys);
        }
        let upload = match self.store.stored(id, &self.model_id) {
            Ok(Some(upload)) => upload,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "key store read failed");
                return None;
            }
        };
        match self.replay(id, &upload) {
            Ok(keys) => {
                let keys = Arc::new(keys);
                self.store.remember(*id, keys.clone());
                Some(keys)
            }
            Err(e) => {
                tracing::warn!(error = %e, "stored keys refused; the client will upload again");
                None
            }
        }
    }

    fn replay(&self, id: &KeyId, mut upload: &[u8]) -> Result<EvalKeys, KeyUploadError> {
        let mut keys = KeyUpload::new(self.eval.ctx(), self.requested.clone());
        while let Some((payload, rest)) = split_frame(upload)? {
            upload = rest;
            if let Some(claimed) = keys.on_frame(decode_payload(payload)?)? {
                if claimed != *id || !upload.is_empty() {
                    return Err(KeyUploadError::KeyId);
                }
                return keys.finish(id);
            }
        }
        Err(KeyUploadError::Order("stored upload is incomplete"))
    }
}

enum State<'a> {
    AwaitHello,
    /// The upload so far, its frames as received when the store persists them, and its permit.
    Keys(KeyUpload<'a>, Vec<u8>, Slot<'a>),
    /// Keys known; the next inference, once prepared ahead of its input, with its permit.
    Ready(Arc<EvalKeys>, Option<(Inference<'a>, Slot<'a>)>),
    Running(Inference<'a>),
    Closed,
}

/// The server's side of one session.
pub struct ServerSession<'a> {
    svc: &'a Service,
    state: State<'a>,
    assembler: ClientMessageAssembler,
    /// Seeds each inference's CSPRNG; drawn from the server's entropy per session.
    next_seed: Seed,
    /// Largest ciphertext message accepted (bytes of residues held until it is complete).
    max_message_bytes: usize,
    /// Bytes announced for the message being received.
    in_flight: usize,
    /// Inferences completed.
    pub inferences: u64,
}

/// Default cap on one incoming ciphertext message: room for 16 ciphertexts at the top level of
/// the largest preset (an MNIST input is one, 1.1 MB at hefun-n16384).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 << 20;

impl<'a> ServerSession<'a> {
    /// A session whose inferences are seeded from `seed` (the server's entropy source).
    pub fn new(svc: &'a Service, seed: Seed) -> Self {
        Self {
            svc,
            state: State::AwaitHello,
            assembler: ClientMessageAssembler::default(),
            next_seed: seed,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            in_flight: 0,
            inferences: 0,
        }
    }

    /// Caps the bytes of one incoming ciphertext message (the session's bytes in flight).
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// True while an inference is under way (the server waits for a round reply).
    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running(_))
    }

    /// True while the client uploads its keys.
    pub fn is_uploading_keys(&self) -> bool {
        matches!(self.state, State::Keys(..))
    }

    /// True once the session has ended (after `Bye` or an error).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Handles one frame; on error the session is closed and the caller sends
    /// [`SessionError::frame`].
    pub fn on_frame(&mut self, frame: ClientFrame) -> Result<Vec<ServerFrame>, SessionError> {
        let result = self.step(frame);
        if result.is_err() {
            self.state = State::Closed;
        }
        result
    }

    fn seed(&mut self) -> Seed {
        // Each inference gets a seed derived from the session seed and a counter.
        let mut h = Sha256::new();
        h.update(self.next_seed);
        h.update(self.inferences.to_le_bytes());
        let seed: Seed = h.finalize().into();
        self.next_seed = seed;
        seed
    }

    fn step(&mut self, frame: ClientFrame) -> Result<Vec<ServerFrame>, SessionError> {
        frame
            .validate()
            .map_err(|e| SessionError::new(ErrorCode::Malformed, e.to_string()))?;
        let svc = self.svc;
        let ctx = svc.eval.ctx();
        let unexpected = |what: &str| SessionError::new(ErrorCode::UnexpectedMessage, what);
        let receiving = matches!(self.state, State::Ready(..) | State::Running(_));
        if let (true, ClientFrame::CiphertextsBegin { count, .. }) = (receiving, &frame) {
            // A round reply's two groups count together: the first is held until the second ends.
            let bytes = usize::from(*count) * ctx.top_basis().len() * ctx.n() * 8;
            self.in_flight += bytes;
            if self.in_flight > self.max_message_bytes {
                return Err(SessionError::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "{} bytes of ciphertexts in one message exceed the limit of {} bytes",
                        self.in_flight, self.max_message_bytes
                    ),
                ));
            }
        }
        match (std::mem::replace(&mut self.state, State::Closed), frame) {
            (_, ClientFrame::Bye) => Ok(Vec::new()),
            (
                State::AwaitHello,
                ClientFrame::Hello {
                    version,
                    presets,
                    key_id,
                },
            ) => {
                if version != PROTOCOL_VERSION {
                    return Err(SessionError::new(
                        ErrorCode::UnsupportedVersion,
                        format!("server speaks version {PROTOCOL_VERSION}, client {version}"),
                    ));
                }
                let preset = ctx.params().name();
                if !presets.iter().any(|p| p == preset) {
                    return Err(SessionError::new(
                        ErrorCode::UnsupportedVersion,
                        format!("the model needs preset {preset}"),
                    ));
                }
                let known = key_id.and_then(|id| svc.known_keys(&id));
                let keys_known = known.is_some();
                self.state = match known {
                    Some(keys) => State::Ready(keys, None),
                    None => {
                        let slot = svc.uploads.try_take().ok_or_else(|| {
                            SessionError::new(ErrorCode::Busy, "too many key uploads in progress")
                        })?;
                        State::Keys(KeyUpload::new(ctx, svc.requested.clone()), Vec::new(), slot)
                    }
                };
                Ok(vec![ServerFrame::Hello {
                    version: PROTOCOL_VERSION,
                    preset: preset.into(),
                    model_id: svc.model_id,
                    input: svc.model.input_spec(ctx.params(), &svc.cfg),
                    rotations: svc.rotations.clone(),
                    rounds: svc.model.rounds() as u32,
                    round_inputs: svc.model.round_input_specs(ctx.params(), &svc.cfg),
                    keys_known,
                }])
            }
            (State::Keys(mut up, mut record, slot), frame) => {
                if svc.store.is_persistent() {
                    // Bounded like the upload itself: a frame that does not fit ends the session.
                    encode_frame(&frame, &mut record)
                        .map_err(|e| SessionError::new(ErrorCode::Internal, e.to_string()))?;
                }
                let Some(key_id) = up.on_frame(frame)? else {
                    self.state = State::Keys(up, record, slot);
                    return Ok(Vec::new());
                };
                let keys = Arc::new(up.finish(&key_id)?);
                if let Err(e) = svc.store.persist(&key_id, &svc.model_id, &record) {
                    // The session goes on; the client uploads again after a restart.
                    tracing::warn!(error = %e, "uploaded keys not persisted");
                }
                svc.store.remember(key_id, keys.clone());
                self.state = State::Ready(keys, None);
                Ok(vec![ServerFrame::KeysAccepted])
            }
            (State::Ready(keys, prepared), frame) => {
                let msg = self.assembler.push(ctx, frame).map_err(malformed)?;
                let Some(msg) = msg else {
                    self.state = State::Ready(keys, prepared);
                    return Ok(Vec::new());
                };
                self.in_flight = 0;
                let ClientMessage::Input(input) = msg else {
                    return Err(unexpected("expected an input"));
                };
                // The prepared inference's permit goes back once it runs.
                let mut inference = match prepared {
                    Some((inference, _slot)) => inference,
                    None => self.new_inference(keys),
                };
                let reply = inference.on_input(&input).map_err(protocol_error)?;
                self.finish_step(inference, reply)
            }
            (State::Running(mut inference), frame) => {
                let msg = self.assembler.push(ctx, frame).map_err(malformed)?;
                let Some(msg) = msg else {
                    self.state = State::Running(inference);
                    return Ok(Vec::new());
                };
                self.in_flight = 0;
                let ClientMessage::RoundReply(reply) = msg else {
                    return Err(unexpected("expected a round reply"));
                };
                if reply.round != inference.rounds_sent().saturating_sub(1) {
                    return Err(SessionError::new(
                        ErrorCode::UnknownRound,
                        format!("reply to round {}", reply.round),
                    ));
                }
                let next = inference.on_reply(&reply).map_err(protocol_error)?;
                self.finish_step(inference, next)
            }
            (State::AwaitHello, _) => Err(unexpected("expected hello")),
            (State::Closed, _) => Err(unexpected("session closed")),
        }
    }

    fn new_inference(&mut self, keys: Arc<EvalKeys>) -> Inference<'a> {
        let seed = self.seed();
        Inference::new(&self.svc.eval, keys, &self.svc.model, &self.svc.cfg, seed)
    }

    /// True when the session waits for an input, has not prepared its next inference, and a
    /// prepare permit is free.
    pub fn wants_prepare(&self) -> bool {
        matches!(self.state, State::Ready(_, None))
            && self.assembler.is_idle()
            && self.svc.prepared.available()
    }

    /// True when the keys are known and no inference is under way.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready(..))
    }

    /// Prepares the next inference (fresh permutations, encoded layers) before its input
    /// arrives: server work that needs nothing from the client, taken off the latency.
    pub fn prepare_next(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Closed);
        let State::Ready(keys, None) = state else {
            self.state = state;
            return;
        };
        let Some(slot) = self.svc.prepared.try_take() else {
            self.state = State::Ready(keys, None);
            return;
        };
        let mut inference = self.new_inference(keys.clone());
        self.state = match inference.prepare() {
            Ok(()) => State::Ready(keys, Some((inference, slot))),
            Err(e) => {
                // on_input prepares what is missing and reports the error to the client.
                tracing::warn!(error = %e, "preparing ahead failed");
                State::Ready(keys, None)
            }
        };
    }

    /// Frames for `msg`; the inference goes on unless this was its output.
    fn finish_step(
        &mut self,
        inference: Inference<'a>,
        msg: ServerMessage,
    ) -> Result<Vec<ServerFrame>, SessionError> {
        let frames = server_frames(&msg, self.svc.eval.ctx().n())
            .map_err(|e| SessionError::new(ErrorCode::Internal, e.to_string()))?;
        self.state = if inference.is_done() {
            self.inferences += 1;
            State::Ready(inference.keys(), None)
        } else {
            State::Running(inference)
        };
        Ok(frames)
    }
}
