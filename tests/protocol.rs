//! HeFUN end to end, in process: the client state machine against the server's rounds.

use client_core::client::{ClientStep, InProcessClient, ServerInfo};
use client_core::params::HEFUN_N8192;
use client_core::rand_core::Rng;
use client_core::wire::assembled::{ClientMessage, ServerMessage};
use hefun_tests::world::{infer, random_layer, random_network, world, world_on, world_with, World};
use server::protocol::{Inference, ProtocolError};

/// Output precision against the plaintext model. The output's flooding follows the tracked noise
/// bound, which counts the dummy rows (copies of real rows) of the hidden layers: 12.3–12.4 bits
/// measured, 11.9 in the worst trial.
const MIN_OUTPUT_BITS: f64 = 11.5;

/// The sign-magnitude round on the light preset, with the same random network as [`world`].
fn light_world() -> World {
    world_on(&HEFUN_N8192, random_network)
}

#[test]
fn encrypted_inference_matches_plaintext() {
    matches_plaintext(world());
}

#[test]
fn sign_magnitude_inference_matches_plaintext() {
    matches_plaintext(light_world());
}

fn matches_plaintext(mut w: World) {
    for trial in 0..3u8 {
        let x: Vec<f64> = (0..64)
            .map(|_| w.rng.next_u64() as f64 / u64::MAX as f64)
            .collect();
        let want = w.model.model().eval_plain(&x);
        let trace = infer(&mut w, &x, trial);
        let (got, rounds) = (trace.output, trace.rounds);
        assert_eq!(rounds, 2);
        assert_eq!(got.len(), 10);
        let bits = client_core::encoding::precision_bits(&want, &got);
        eprintln!("trial {trial}: output precision {bits:.1} bits");
        assert!(
            bits >= MIN_OUTPUT_BITS,
            "trial {trial}: {bits:.1} bits\nwant {want:?}\ngot  {got:?}"
        );
    }
}

#[test]
fn permutations_are_fresh_per_inference() {
    fresh_permutations(world());
}

#[test]
fn sign_magnitude_permutations_are_fresh_per_inference() {
    fresh_permutations(light_world());
}

fn fresh_permutations(mut w: World) {
    let x = vec![0.5; 64];
    let t1 = infer(&mut w, &x, 1);
    let t2 = infer(&mut w, &x, 2);
    let (a, pa, b, pb) = (t1.output, t1.perm, t2.output, t2.perm);
    assert_ne!(pa, pb, "the same permutation twice");
    assert!(client_core::encoding::precision_bits(&a, &b) >= MIN_OUTPUT_BITS);
}

#[test]
fn out_of_order_messages_are_rejected() {
    let mut w = world();
    let mut server = Inference::new(&w.eval, w.keys.clone(), &w.model, &w.cfg, [9; 32]);
    let rounds = w.model.rounds() as u32;
    let spec = server.input_spec();
    let mut client =
        InProcessClient::new(&w.ctx, &w.sk, ServerInfo::in_process(spec.clone(), rounds));
    let x = vec![0.25; 64];
    let ClientMessage::Input(input) = client.start(&x, &mut w.rng).unwrap() else {
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

#[test]
fn an_output_wider_than_one_ciphertext_comes_back_in_class_order() {
    // 9,000 outputs: two output ciphertexts, not permuted.
    let mut w = world_with(|rng| server::model::Model {
        input_len: 16,
        layers: vec![
            random_layer(rng, 8, 16, true),
            random_layer(rng, 9000, 8, false),
        ],
        first_conv: None,
    });
    assert_eq!(w.model.ciphertexts_per_layer(), vec![1, 2]);
    let x: Vec<f64> = (0..16).map(|i| (i as f64 / 16.0) - 0.4).collect();
    let want = w.model.model().eval_plain(&x);
    let trace = infer(&mut w, &x, 9);
    assert_eq!(trace.output.len(), 9000);
    let bits = client_core::encoding::precision_bits(&want, &trace.output);
    eprintln!("wide output: {bits:.1} bits");
    // The worst of 9,000 values rather than of 10: 11.3 bits measured.
    assert!(bits >= 10.0, "{bits:.1} bits");
}

/// Every message of the sign-magnitude round is flooded to the preset's statistical security,
/// and no more than the planner budgeted for: the evaluator's noise estimate of each outgoing
/// ciphertext (re-randomisation included) stays under the planner's assumed bound.
#[test]
fn sign_magnitude_flooding_meets_the_plan() {
    let mut w = light_world();
    let plan =
        server::protocol::plan_sign_magnitude(&HEFUN_N8192, &w.model, 16.0, 40, 10.0).unwrap();
    let x: Vec<f64> = (0..64)
        .map(|_| w.rng.next_u64() as f64 / u64::MAX as f64)
        .collect();
    let trace = infer(&mut w, &x, 5);
    // Two rounds and the output.
    assert_eq!(trace.audits.len(), 3);
    for audit in &trace.audits {
        let f = audit.flood;
        assert!(f.stat_bits >= 40.0, "{audit:?}");
        assert!(
            f.flood_bits <= plan.margins.flood_bits,
            "layer {}: flooding 2^{} above the plan's 2^{}",
            audit.layer,
            f.flood_bits,
            plan.margins.flood_bits
        );
        // No refresh mask in this round.
        assert_eq!(audit.mask_bits, 0.0);
    }
    // The client answered with fresh encryptions only: no signs group.
    for msg in &trace.client_messages[1..] {
        let ClientMessage::RoundReply(r) = msg else {
            panic!("expected a round reply")
        };
        assert!(r.signs.is_empty());
        assert_eq!(r.refreshed.len(), 1);
    }
}
