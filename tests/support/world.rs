//! A client, the server and a small random network, for protocol-level tests.

use std::sync::Arc;

use client_core::client::{ClientStep, InProcessClient, KeySeed, ServerInfo};
use client_core::encoding::Encoder;
use client_core::keys::SecretKey;
use client_core::params::{ParamSpec, Params, RoundKind, HEFUN_N16384};
use client_core::rand_core::{Rng, SeedableRng};
use client_core::ring::Context;
use client_core::sampling::Csprng;
use client_core::wire::assembled::ClientMessage;
use server::eval::{EvalKeys, Evaluator, Matrix};
use server::model::{CompiledModel, Layer, Model};
use server::protocol::{HidingAudit, Inference, ProtocolConfig};

pub struct World {
    pub ctx: Arc<Context>,
    pub encoder: Encoder,
    /// The client's key seed; `sk` derives from it.
    pub key_seed: KeySeed,
    pub sk: SecretKey,
    pub eval: Evaluator,
    pub keys: Arc<EvalKeys>,
    pub model: CompiledModel,
    pub cfg: ProtocolConfig,
    pub rng: Csprng,
}

pub fn random_layer(rng: &mut Csprng, rows: usize, cols: usize, relu: bool) -> Layer {
    let scale = 2.0 / (cols as f64).sqrt();
    let mut v = || (rng.next_u64() as f64 / u64::MAX as f64 * 2.0 - 1.0) * scale;
    let data = (0..rows * cols).map(|_| v()).collect();
    let bias = (0..rows).map(|_| v()).collect();
    Layer {
        weights: Matrix { rows, cols, data },
        bias,
        relu,
    }
}

/// A random 64–40–20–10 network with two ReLU layers.
pub fn random_network(rng: &mut Csprng) -> Model {
    Model {
        input_len: 64,
        layers: vec![
            random_layer(rng, 40, 64, true),
            random_layer(rng, 20, 40, true),
            random_layer(rng, 10, 20, false),
        ],
        first_conv: None,
    }
}

pub fn world() -> World {
    world_with(random_network)
}

/// A world for the model `make` draws.
pub fn world_with(make: impl FnOnce(&mut Csprng) -> Model) -> World {
    world_on(&HEFUN_N16384, make)
}

/// A world on preset `spec` for the model `make` draws. Under the sign-magnitude round the
/// protocol configuration is the planner's for pre-activations up to 16.
pub fn world_on(spec: &ParamSpec, make: impl FnOnce(&mut Csprng) -> Model) -> World {
    let params = Params::from_spec(spec).unwrap();
    let ctx = Arc::new(Context::new(&params).unwrap());
    let encoder = Encoder::new(params.log_n());
    let mut rng = Csprng::from_seed([77; 32]);
    let key_seed = KeySeed::new(zeroize::Zeroizing::new([78; 32]));
    let sk = SecretKey::generate(&ctx, &mut key_seed.secret_key_rng()).unwrap();
    let model = make(&mut rng);
    let model = CompiledModel::for_round(model, params.slots(), params.round()).unwrap();
    let eval = Evaluator::new(ctx.clone()).unwrap();
    let steps = model.rotation_steps(params.slots()).unwrap();
    let (keys, _) = server::demo::generate_keys(&ctx, &sk, &steps, &mut rng).unwrap();
    let cfg = match params.round() {
        RoundKind::Refresh => ProtocolConfig::for_params(&params, 2, 16.0),
        RoundKind::SignMagnitude => {
            server::protocol::plan_sign_magnitude(spec, &model, 16.0, 40, 10.0)
                .unwrap()
                .cfg
        }
    };
    World {
        ctx,
        encoder,
        key_seed,
        sk,
        eval,
        keys: Arc::new(keys),
        model,
        cfg,
        rng,
    }
}

/// Everything one inference showed.
pub struct Trace {
    /// The decrypted output.
    pub output: Vec<f64>,
    /// The server's permutation of the first hidden layer.
    pub perm: Vec<usize>,
    /// Round trips.
    pub rounds: usize,
    /// How the server hid each outgoing message.
    pub audits: Vec<HidingAudit>,
    /// Everything the client sent (the server's view).
    pub client_messages: Vec<ClientMessage>,
}

/// Runs one inference with server seed `seed`.
pub fn infer(w: &mut World, x: &[f64], seed: u8) -> Trace {
    let mut server = Inference::new(&w.eval, w.keys.clone(), &w.model, &w.cfg, [seed; 32]);
    let perm = server.permutation(0).unwrap().to_vec();
    let info = ServerInfo::in_process(server.input_spec(), w.model.rounds() as u32)
        .with_round_inputs(server.round_input_specs());
    let mut client = InProcessClient::new(&w.ctx, &w.sk, info);
    let first = client.start(x, &mut w.rng).unwrap();
    let mut client_messages = vec![first.clone()];
    let ClientMessage::Input(input) = first else {
        panic!("expected input")
    };
    let mut msg = server.on_input(&input).unwrap();
    let mut rounds = 0;
    loop {
        match client.handle(&msg, &mut w.rng).unwrap() {
            ClientStep::Reply(reply) => {
                client_messages.push(reply.clone());
                let ClientMessage::RoundReply(reply) = reply else {
                    panic!("input twice")
                };
                rounds += 1;
                msg = server.on_reply(&reply).unwrap();
            }
            ClientStep::Done(output) => {
                assert!(server.is_done());
                return Trace {
                    output,
                    perm,
                    rounds,
                    audits: server.audits.clone(),
                    client_messages,
                };
            }
        }
    }
}
