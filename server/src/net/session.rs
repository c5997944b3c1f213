//! One client session on the server, sans I/O: feed it the client's frames, send what it
//! returns. Transports (TCP, tests) only move frames.
//!
//! States: hello → (key upload) → ready ⇄ inference. Any error ends the session with an error
//! frame carrying a stable [`ErrorCode`]; the caller closes the connection after sending it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use client_core::keys::{galois_element_for_rotation, KeyKind};
use client_core::protocol::{ClientMessage, ServerMessage};
use client_core::sampling::Seed;
use client_core::wire::convert::{server_frames, ClientMessageAssembler};
use client_core::wire::messages::{ClientFrame, KeyId, ServerFrame};
use client_core::wire::{ErrorCode, PROTOCOL_VERSION};
use sha2::{Digest, Sha256};

use super::key_upload::{KeyUpload, KeyUploadError};
use crate::eval::{EvalKeys, Evaluator};
use crate::protocol::{CompiledModel, Inference, ProtocolConfig, ProtocolError};

/// What a session failed with: the code and message of the error frame to send.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionError {
    /// Stable code.
    pub code: ErrorCode,
    /// Detail for the peer and the log (no secrets, no ciphertext bytes).
    pub message: String,
}

impl SessionError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
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
        Self::new(ErrorCode::BadKey, e.to_string())
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
    store: Mutex<HashMap<KeyId, Arc<EvalKeys>>>,
}

impl Service {
    /// A service for `model` with the evaluator's parameters and the planner's configuration.
    pub fn new(
        eval: Evaluator,
        model: CompiledModel,
        cfg: ProtocolConfig,
    ) -> Result<Self, ProtocolError> {
        let params = eval.ctx().params();
        let rotations = model.rotation_steps(params.slots())?;
        let n = eval.ctx().n();
        let mut requested = vec![KeyKind::Relinearization];
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
            store: Mutex::new(HashMap::new()),
        })
    }

    /// The evaluator (its context holds the parameters).
    pub fn eval(&self) -> &Evaluator {
        &self.eval
    }

    fn known_keys(&self, id: &KeyId) -> Option<Arc<EvalKeys>> {
        self.store.lock().ok()?.get(id).cloned()
    }

    fn remember(&self, id: KeyId, keys: Arc<EvalKeys>) {
        if let Ok(mut store) = self.store.lock() {
            store.insert(id, keys);
        }
    }
}

enum State<'a> {
    AwaitHello,
    Keys(KeyUpload<'a>),
    Ready(Arc<EvalKeys>),
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
    /// Inferences completed.
    pub inferences: u64,
}

impl<'a> ServerSession<'a> {
    /// A session whose inferences are seeded from `seed` (the server's entropy source).
    pub fn new(svc: &'a Service, seed: Seed) -> Self {
        Self {
            svc,
            state: State::AwaitHello,
            assembler: ClientMessageAssembler::default(),
            next_seed: seed,
            inferences: 0,
        }
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
                    Some(keys) => State::Ready(keys),
                    None => State::Keys(KeyUpload::new(ctx, svc.requested.clone())),
                };
                Ok(vec![ServerFrame::Hello {
                    version: PROTOCOL_VERSION,
                    preset: preset.into(),
                    model_id: svc.model_id,
                    input: svc.model.input_spec(ctx.params(), &svc.cfg),
                    rotations: svc.rotations.clone(),
                    rounds: svc.model.rounds() as u32,
                    keys_known,
                }])
            }
            (State::Keys(mut up), frame) => {
                match frame {
                    ClientFrame::PublicKeyLimb { seed, limb } => up.public_limb(seed, &limb)?,
                    ClientFrame::KeyBegin { kind, seed } => up.key_begin(kind, seed)?,
                    ClientFrame::KeyChunk(chunk) => up.chunk(chunk)?,
                    ClientFrame::KeysDone { key_id } => {
                        let keys = Arc::new(up.finish(&key_id)?);
                        svc.remember(key_id, keys.clone());
                        self.state = State::Ready(keys);
                        return Ok(vec![ServerFrame::KeysAccepted]);
                    }
                    _ => return Err(unexpected("expected key upload frames")),
                }
                self.state = State::Keys(up);
                Ok(Vec::new())
            }
            (State::Ready(keys), frame) => {
                let msg = self.assembler.push(ctx, frame).map_err(malformed)?;
                let Some(msg) = msg else {
                    self.state = State::Ready(keys);
                    return Ok(Vec::new());
                };
                let ClientMessage::Input(input) = msg else {
                    return Err(unexpected("expected an input"));
                };
                let seed = self.seed();
                let mut inference = Inference::new(&svc.eval, keys, &svc.model, &svc.cfg, seed);
                let reply = inference.on_input(&input).map_err(protocol_error)?;
                self.finish_step(inference, reply)
            }
            (State::Running(mut inference), frame) => {
                let msg = self.assembler.push(ctx, frame).map_err(malformed)?;
                let Some(msg) = msg else {
                    self.state = State::Running(inference);
                    return Ok(Vec::new());
                };
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
            State::Ready(inference.keys())
        } else {
            State::Running(inference)
        };
        Ok(frames)
    }
}
