//! HeFUN end to end, in process: the client state machine against the server's rounds.

use std::sync::Arc;

use client_core::encoding::Encoder;
use client_core::keys::{PublicKey, SecretKey, SwitchingKey};
use client_core::params::{Params, HEFUN_N16384};
use client_core::protocol::{ClientMessage, ClientStep, InferenceClient, ServerMessage};
use client_core::rand_core::{Rng, SeedableRng};
use client_core::ring::Context;
use client_core::sampling::Csprng;
use server::eval::{EvalKeys, Evaluator, Matrix};
use server::protocol::{CompiledModel, Inference, Layer, Model, ProtocolConfig, ProtocolError};

struct World {
    ctx: Arc<Context>,
    encoder: Encoder,
    sk: SecretKey,
    eval: Evaluator,
    keys: EvalKeys,
    model: CompiledModel,
    cfg: ProtocolConfig,
    rng: Csprng,
}

fn random_layer(rng: &mut Csprng, rows: usize, cols: usize, relu: bool) -> Layer {
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

fn world() -> World {
    let params = Params::from_spec(&HEFUN_N16384).unwrap();
    let ctx = Arc::new(Context::new(&params).unwrap());
    let encoder = Encoder::new(params.log_n());
    let mut rng = Csprng::from_seed([77; 32]);
    let sk = SecretKey::generate(&ctx, &mut rng).unwrap();
    let model = Model {
        input_len: 64,
        layers: vec![
            random_layer(&mut rng, 40, 64, true),
            random_layer(&mut rng, 20, 40, true),
            random_layer(&mut rng, 10, 20, false),
        ],
    };
    let model = CompiledModel::new(model, params.slots()).unwrap();
    let eval = Evaluator::new(ctx.clone()).unwrap();
    let mut keys = EvalKeys::default();
    keys.set_public(&ctx, &PublicKey::generate(&ctx, &sk, &mut rng).unwrap())
        .unwrap();
    keys.add_switching(
        &ctx,
        &SwitchingKey::relinearization(&ctx, &sk, &mut rng).unwrap(),
    )
    .unwrap();
    for step in model.rotation_steps(params.slots()).unwrap() {
        keys.add_switching(
            &ctx,
            &SwitchingKey::rotation(&ctx, &sk, step, &mut rng).unwrap(),
        )
        .unwrap();
    }
    let cfg = ProtocolConfig::for_params(&params, 2, 16.0);
    World {
        ctx,
        encoder,
        sk,
        eval,
        keys,
        model,
        cfg,
        rng,
    }
}

/// Runs one inference; returns the output and the server's permutation of the first layer.
fn infer(w: &mut World, x: &[f64], seed: u8) -> (Vec<f64>, Vec<usize>, usize) {
    let mut server = Inference::new(&w.eval, &w.keys, &w.model, &w.cfg, [seed; 32]);
    let perm = server.permutation(0).unwrap().to_vec();
    let mut client = InferenceClient::new(&w.ctx, &w.encoder, &w.sk);
    let spec = w.model.input_spec(&w.cfg);
    let ClientMessage::Input(input) = client.start(x, &spec, &mut w.rng).unwrap() else {
        panic!("expected input")
    };
    let mut msg = server.on_input(&input).unwrap();
    let mut rounds = 0;
    loop {
        match client.handle(&msg, &mut w.rng).unwrap() {
            ClientStep::Reply(ClientMessage::RoundReply(reply)) => {
                rounds += 1;
                msg = server.on_reply(&reply).unwrap();
            }
            ClientStep::Reply(ClientMessage::Input(_)) => panic!("input twice"),
            ClientStep::Done(out) => {
                assert!(server.is_done());
                return (out, perm, rounds);
            }
        }
    }
}

#[test]
fn encrypted_inference_matches_plaintext() {
    let mut w = world();
    for trial in 0..3u8 {
        let x: Vec<f64> = (0..64)
            .map(|_| w.rng.next_u64() as f64 / u64::MAX as f64)
            .collect();
        let want = w.model.model().eval_plain(&x);
        let (got, _, rounds) = infer(&mut w, &x, trial);
        assert_eq!(rounds, 2);
        assert_eq!(got.len(), 10);
        let bits = client_core::encoding::precision_bits(&want, &got);
        eprintln!("trial {trial}: output precision {bits:.1} bits");
        assert!(
            bits >= 12.0,
            "trial {trial}: {bits:.1} bits\nwant {want:?}\ngot  {got:?}"
        );
    }
}

#[test]
fn permutations_are_fresh_per_inference() {
    let mut w = world();
    let x = vec![0.5; 64];
    let (a, pa, _) = infer(&mut w, &x, 1);
    let (b, pb, _) = infer(&mut w, &x, 2);
    assert_ne!(pa, pb, "the same permutation twice");
    assert!(client_core::encoding::precision_bits(&a, &b) >= 12.0);
}

#[test]
fn out_of_order_messages_are_rejected() {
    let mut w = world();
    let mut server = Inference::new(&w.eval, &w.keys, &w.model, &w.cfg, [9; 32]);
    let mut client = InferenceClient::new(&w.ctx, &w.encoder, &w.sk);
    let spec = w.model.input_spec(&w.cfg);
    let x = vec![0.25; 64];
    let ClientMessage::Input(input) = client.start(&x, &spec, &mut w.rng).unwrap() else {
        panic!()
    };
    let msg = server.on_input(&input).unwrap();
    assert!(matches!(
        server.on_input(&input),
        Err(ProtocolError::Violation(_))
    ));
    let ServerMessage::Round(round) = &msg else {
        panic!()
    };
    let ClientStep::Reply(ClientMessage::RoundReply(mut reply)) =
        client.handle(&msg, &mut w.rng).unwrap()
    else {
        panic!()
    };
    // The client refuses a replayed round.
    assert!(client.handle(&msg, &mut w.rng).is_err());
    // The server refuses a reply to another round, and the inference ends.
    reply.round = round.round + 1;
    assert!(matches!(
        server.on_reply(&reply),
        Err(ProtocolError::Violation(_))
    ));
    reply.round = round.round;
    assert!(server.on_reply(&reply).is_err());
}
