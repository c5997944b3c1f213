//! In-process private inference: the client session and the server's protocol in one process,
//! every message crossing as the frames TCP would carry (so the byte counts are the wire's),
//! with timings per side and per layer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use client_core::client::{ClientSession, ClientStep, HostBackend, InProcessClient, ServerInfo};
use client_core::keys::{galois_element_for_rotation, KeyKind, SecretKey};
use client_core::params::Params;
use client_core::rand_core::{Rng, SeedableRng};
use client_core::ring::Context;
use client_core::sampling::{random_seed, Csprng};
use client_core::wire::assembled::ClientMessage;
use client_core::wire::messages::{ClientFrame, ServerFrame};
use client_core::wire::{decode_payload, encode_frame, PROTOCOL_VERSION};

use crate::eval::{EvalKeys, Evaluator};
use crate::model::{CompiledModel, Model};
use crate::net::{KeyUpload, KeyUploadError};
use crate::protocol::{Inference, ProtocolConfig, ProtocolError};

/// What one inference cost.
#[derive(Clone, Debug, Default)]
pub struct InferenceReport {
    /// Decrypted output values.
    pub output: Vec<f64>,
    /// Wall time of the online exchange (client input to decrypted output).
    pub total: Duration,
    /// Server time preparing the inference before the query (permuted, encoded layers).
    pub prepare: Duration,
    /// Client compute time.
    pub client: Duration,
    /// Server compute time.
    pub server: Duration,
    /// Bytes client → server.
    pub bytes_up: usize,
    /// Bytes server → client.
    pub bytes_down: usize,
    /// Round trips.
    pub rounds: usize,
    /// Per layer: (server ms, client ms, bytes up, bytes down).
    pub layers: Vec<LayerReport>,
}

/// Per-layer figures of one inference.
#[derive(Clone, Copy, Debug, Default)]
pub struct LayerReport {
    /// Server time for the layer (evaluation and outgoing messages).
    pub server: Duration,
    /// Client time answering the layer's message.
    pub client: Duration,
    /// Bytes the client sent for the layer (input or round reply).
    pub bytes_up: usize,
    /// Bytes the server sent after the layer (round or output).
    pub bytes_down: usize,
}

/// The client and server of a private inference, with keys already exchanged.
pub struct Session {
    /// Ring context.
    pub ctx: Arc<Context>,
    sk: SecretKey,
    eval: Evaluator,
    keys: Arc<EvalKeys>,
    /// The compiled model.
    pub model: CompiledModel,
    /// Protocol scales and bounds.
    pub cfg: ProtocolConfig,
    client_rng: Csprng,
    server_rng: Csprng,
    /// Bytes of the key upload (public, relinearisation and Galois keys, seeded).
    pub key_bytes: usize,
    /// Time the client spent generating keys.
    pub keygen: Duration,
}

/// The client's side of key setup, for one process holding both parties (demos, tests,
/// benchmarks): the client session uploads its public, relinearisation and Galois keys for
/// `rotation_steps` as it would over TCP, and the server's key upload checks and expands them.
/// Returns the server's keys and the bytes of the upload's frames.
pub fn generate_keys(
    ctx: &Context,
    sk: &SecretKey,
    rotation_steps: &[i64],
    rng: &mut Csprng,
) -> Result<(EvalKeys, usize), ProtocolError> {
    let n = ctx.n();
    // Only the refresh round multiplies ciphertexts.
    let mut requested = Vec::new();
    if ctx.params().round() == client_core::params::RoundKind::Refresh {
        requested.push(KeyKind::Relinearization);
    }
    requested.extend(
        rotation_steps
            .iter()
            .map(|&s| KeyKind::Galois(galois_element_for_rotation(n, s))),
    );
    let public_key_rng = Csprng::from_seed(random_seed(rng));
    let mut client = ClientSession::new(HostBackend::new(ctx, sk), public_key_rng);
    let mut upload = KeyUpload::new(ctx, requested);
    let (mut bytes, mut key_id, mut refused) = (0usize, None, None::<KeyUploadError>);
    let mut buf = Vec::new();
    let hello = ServerFrame::Hello {
        version: PROTOCOL_VERSION,
        preset: ctx.params().name().into(),
        model_id: [0; 32],
        input: client_core::wire::input::InputSpec {
            len: 1,
            period: 1,
            shift: 0,
            copies: 1,
            scale: 1.0,
            level: 0,
            gather: None,
        },
        rotations: rotation_steps.to_vec(),
        rounds: 0,
        round_inputs: Vec::new(),
        keys_known: false,
    };
    client.hello(|_| Ok(()))?;
    let sent = client.on_frame(hello, rng, |frame| {
        // Each frame crosses the wire's encoding, as over TCP.
        buf.clear();
        encode_frame(frame, &mut buf)?;
        bytes += buf.len();
        let frame: ClientFrame = decode_payload(&buf[client_core::wire::LEN_PREFIX..])?;
        match upload.on_frame(frame) {
            Ok(Some(id)) => key_id = Some(id),
            Ok(None) => {}
            Err(e) => {
                refused = Some(e);
                return Err(client_core::Error::Decode("key upload refused"));
            }
        }
        Ok(())
    });
    if let Some(e) = refused {
        return Err(ProtocolError::Model(format!("key upload: {e}")));
    }
    sent?;
    let key_id = key_id.ok_or(ProtocolError::Violation("key upload incomplete"))?;
    let keys = upload
        .finish(&key_id)
        .map_err(|e| ProtocolError::Model(format!("key upload: {e}")))?;
    Ok((keys, bytes))
}

impl Session {
    /// Generates the client's keys and compiles `model`. Entropy: `client_seed` and
    /// `server_seed` stand for each party's own entropy source.
    pub fn new(
        params: &Params,
        model: Model,
        cfg: ProtocolConfig,
        client_seed: [u8; 32],
        server_seed: [u8; 32],
    ) -> Result<Self, ProtocolError> {
        let ctx = Arc::new(Context::new(params)?);
        let eval = Evaluator::new(ctx.clone())?;
        let model = CompiledModel::for_round(model, params.slots(), cfg.round)?;
        let mut client_rng = Csprng::from_seed(client_seed);
        let start = Instant::now();
        let sk = SecretKey::generate(&ctx, &mut client_rng)?;
        let steps = model.rotation_steps(params.slots())?;
        let (keys, key_bytes) = generate_keys(&ctx, &sk, &steps, &mut client_rng)?;
        let keygen = start.elapsed();
        Ok(Self {
            ctx,
            sk,
            eval,
            keys: Arc::new(keys),
            model,
            cfg,
            client_rng,
            server_rng: Csprng::from_seed(server_seed),
            key_bytes,
            keygen,
        })
    }

    /// Runs one private inference on `input`.
    pub fn infer(&mut self, input: &[f64]) -> Result<InferenceReport, ProtocolError> {
        let mut report = InferenceReport::default();
        let mut seed = [0u8; 32];
        self.server_rng.fill_bytes(&mut seed);
        let mut server =
            Inference::new(&self.eval, self.keys.clone(), &self.model, &self.cfg, seed);
        // The offline part: permuted layers encoded before the query (see Inference::prepare).
        let t = Instant::now();
        server.prepare()?;
        report.prepare = t.elapsed();
        let start = Instant::now();
        let info = ServerInfo::in_process(server.input_spec(), self.model.rounds() as u32)
            .with_round_inputs(server.round_input_specs());
        let mut client = InProcessClient::new(&self.ctx, &self.sk, info).with_clock(nanos);
        let mut sent = (0, 0);
        let mut bytes = |client: &InProcessClient<'_>| {
            let now = (client.bytes_up, client.bytes_down);
            let delta = (now.0 - sent.0, now.1 - sent.1);
            sent = now;
            delta
        };

        let t = Instant::now();
        let (framing, first) = (
            client.transport_ticks,
            client.start(input, &mut self.client_rng)?,
        );
        let mut layer = LayerReport {
            client: t
                .elapsed()
                .saturating_sub(Duration::from_nanos(client.transport_ticks - framing)),
            bytes_up: bytes(&client).0,
            ..LayerReport::default()
        };
        let ClientMessage::Input(cts) = first else {
            return Err(ProtocolError::Violation("client did not send its input"));
        };
        let t = Instant::now();
        let mut msg = server.on_input(&cts)?;
        layer.server = t.elapsed();
        loop {
            let (t, framing) = (Instant::now(), client.transport_ticks);
            let step = client.handle(&msg, &mut self.client_rng)?;
            // The frames' encoding and decoding is the transport's, as over TCP.
            let client_time = t
                .elapsed()
                .saturating_sub(Duration::from_nanos(client.transport_ticks - framing));
            let (up, down) = bytes(&client);
            layer.bytes_down = down;
            report.layers.push(layer);
            layer = LayerReport {
                client: client_time,
                bytes_up: up,
                ..LayerReport::default()
            };
            match step {
                ClientStep::Done(out) => {
                    report.output = out;
                    break;
                }
                ClientStep::Reply(reply) => {
                    let ClientMessage::RoundReply(reply) = reply else {
                        return Err(ProtocolError::Violation("unexpected client message"));
                    };
                    report.rounds += 1;
                    let t = Instant::now();
                    msg = server.on_reply(&reply)?;
                    layer.server = t.elapsed();
                }
            }
        }
        // The last "layer" entry is the client's output decryption.
        if let Some(last) = report.layers.last_mut() {
            last.client += layer.client;
        }
        report.total = start.elapsed();
        report.client = report.layers.iter().map(|l| l.client).sum();
        report.server = report.layers.iter().map(|l| l.server).sum();
        report.bytes_up = report.layers.iter().map(|l| l.bytes_up).sum();
        report.bytes_down = report.layers.iter().map(|l| l.bytes_down).sum();
        Ok(report)
    }
}

/// Nanoseconds on a monotonic clock, for the in-process transport's accounting.
fn nanos() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Index of the largest value.
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
