//! In-process private inference: one client and the server exchanging the protocol's wire
//! messages (postcard-encoded, so byte counts are real), with timings per side and per layer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use client_core::encoding::Encoder;
use client_core::keys::{PublicKey, SecretKey, SwitchingKey};
use client_core::params::Params;
use client_core::protocol::{ClientMessage, ClientStep, InferenceClient};
use client_core::rand_core::{Rng, SeedableRng};
use client_core::ring::Context;
use client_core::sampling::Csprng;
use serde::{de::DeserializeOwned, Serialize};

use crate::eval::{EvalKeys, Evaluator};
use crate::model::{CompiledModel, Model};
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
    encoder: Encoder,
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

fn wire<T: Serialize + DeserializeOwned>(msg: &T) -> Result<(T, usize), ProtocolError> {
    // Round-trip through postcard: the exchange uses exactly what would cross the network.
    let bytes = postcard::to_allocvec(msg).map_err(|_| ProtocolError::Violation("encode"))?;
    let back = postcard::from_bytes(&bytes).map_err(|_| ProtocolError::Violation("decode"))?;
    Ok((back, bytes.len()))
}

/// The client's side of key setup, for one process holding both parties (demos, tests,
/// benchmarks): a public key, a relinearisation key and the Galois keys for `rotation_steps`,
/// each passed through the wire encoding and validated as the server would. Returns the server's
/// expanded keys and the bytes uploaded.
pub fn generate_keys(
    ctx: &Context,
    sk: &SecretKey,
    rotation_steps: &[i64],
    rng: &mut Csprng,
) -> Result<(EvalKeys, usize), ProtocolError> {
    let mut keys = EvalKeys::default();
    let (pk, mut bytes) = wire(&PublicKey::generate(ctx, sk, rng)?)?;
    keys.set_public(ctx, &pk)?;
    let (relin, n) = wire(&SwitchingKey::relinearization(ctx, sk, rng)?)?;
    bytes += n;
    keys.add_switching(ctx, &relin)?;
    for &step in rotation_steps {
        let (key, n) = wire(&SwitchingKey::rotation(ctx, sk, step, rng)?)?;
        bytes += n;
        keys.add_switching(ctx, &key)?;
    }
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
        let encoder = Encoder::new(params.log_n());
        let eval = Evaluator::new(ctx.clone())?;
        let model = CompiledModel::new(model, params.slots())?;
        let mut client_rng = Csprng::from_seed(client_seed);
        let start = Instant::now();
        let sk = SecretKey::generate(&ctx, &mut client_rng)?;
        let steps = model.rotation_steps(params.slots())?;
        let (keys, key_bytes) = generate_keys(&ctx, &sk, &steps, &mut client_rng)?;
        let keygen = start.elapsed();
        Ok(Self {
            ctx,
            encoder,
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
        let mut client = InferenceClient::new(&self.ctx, &self.encoder, &self.sk);
        let spec = server.input_spec();

        let t = Instant::now();
        let first = client.start(input, &spec, &mut self.client_rng)?;
        let mut layer = LayerReport {
            client: t.elapsed(),
            ..LayerReport::default()
        };
        let (first, up) = wire(&first)?;
        layer.bytes_up = up;
        let ClientMessage::Input(cts) = first else {
            return Err(ProtocolError::Violation("client did not send its input"));
        };
        let t = Instant::now();
        let mut msg = server.on_input(&cts)?;
        layer.server = t.elapsed();
        loop {
            let (m, down) = wire(&msg)?;
            layer.bytes_down = down;
            report.layers.push(layer);
            layer = LayerReport::default();
            let t = Instant::now();
            let step = client.handle(&m, &mut self.client_rng)?;
            layer.client = t.elapsed();
            match step {
                ClientStep::Done(out) => {
                    report.output = out;
                    break;
                }
                ClientStep::Reply(reply) => {
                    let (reply, up) = wire(&reply)?;
                    layer.bytes_up = up;
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
