//! The limb-wise client sends exactly what the host client sends (same generator, same
//! secret), and refuses malformed server frames.

use client_core::cipher::{decrypt_slots, encrypt_symmetric, Ciphertext};
use client_core::encoding::Encoder;
use client_core::keys::{
    galois_element_for_rotation, KeyKind, PublicKey, SecretKey, SwitchingKeyGenerator,
};
use client_core::limbwise::LimbwiseClient;
use client_core::params::{ParamSpec, Params};
use client_core::protocol::{
    ClientStep, InferenceClient, InputSpec, OutputMessage, RoundRequest, ServerMessage,
};
use client_core::ring::Context;
use client_core::sampling::Csprng;
use client_core::wire::convert::{client_frames, public_key_frames, server_frames};
use client_core::wire::messages::{ClientFrame, ServerFrame};
use rand_core::SeedableRng;

/// The hefun preset's structure (7 + 2 primes, two primes per digit, hand-off level 2, Δ = 2^88)
/// on a ring small enough for a quick test.
const SMALL_HEFUN: ParamSpec = ParamSpec {
    name: "test-hefun-n1024",
    log_n: 10,
    q_bits: &[50, 50, 50, 44, 44, 44, 44],
    p_bits: &[50, 50],
    digit_size: 2,
    handoff_level: 2,
    scale_bits: 88,
    stat_sec_bits: 40,
};

struct Setup {
    params: Params,
    ctx: Context,
    encoder: Encoder,
}

fn setup() -> Setup {
    let params = Params::from_spec_insecure(&SMALL_HEFUN).unwrap();
    let ctx = Context::new(&params).unwrap();
    let encoder = Encoder::new(params.log_n());
    Setup {
        params,
        ctx,
        encoder,
    }
}

fn collect(
    frames: &mut Vec<ClientFrame>,
) -> impl FnMut(&ClientFrame) -> client_core::Result<()> + '_ {
    |f| {
        frames.push(f.clone());
        Ok(())
    }
}

#[test]
fn key_upload_equals_the_host_clients() {
    let s = setup();
    let rotations = [1i64, -3, 17];

    let mut rng = Csprng::from_seed([5; 32]);
    let mut client = LimbwiseClient::new_insecure(&s.params, &mut rng).unwrap();
    let mut got = Vec::new();
    let id = client
        .upload_keys(&rotations, &mut rng, collect(&mut got))
        .unwrap();

    let mut rng = Csprng::from_seed([5; 32]);
    let sk = SecretKey::generate(&s.ctx, &mut rng).unwrap();
    let pk = PublicKey::generate(&s.ctx, &sk, &mut rng).unwrap();
    let mut want = public_key_frames(&pk, s.ctx.n());
    let mut kinds = vec![KeyKind::Relinearization];
    kinds.extend(
        rotations
            .iter()
            .map(|&r| KeyKind::Galois(galois_element_for_rotation(s.ctx.n(), r))),
    );
    for kind in kinds {
        let g = SwitchingKeyGenerator::new(&s.ctx, &sk, kind, &mut rng).unwrap();
        want.push(ClientFrame::KeyBegin {
            kind,
            seed: g.seed(),
        });
        want.extend(g.chunks().map(|c| ClientFrame::KeyChunk(c.unwrap())));
    }
    want.push(ClientFrame::KeysDone {
        key_id: pk.key_id(&s.ctx),
    });
    assert_eq!(id, pk.key_id(&s.ctx));
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "frame {i} differs");
    }
    // Every frame but the key headers and `KeysDone` is a limb, and in the host's (digit, limb)
    // order each limb needs another prime, so another plan.
    let counters = client.counters();
    assert_eq!(
        counters.limbs_sent as usize,
        want.len() - (1 + rotations.len()) - 1
    );
    assert_eq!(counters.plan_builds, counters.limbs_sent);
}

fn encrypt_at(
    s: &Setup,
    sk: &SecretKey,
    values: &[f64],
    scale: f64,
    rng: &mut Csprng,
) -> Ciphertext {
    let level = s.params.handoff_level();
    let pt = s.encoder.encode(&s.ctx, values, scale, level).unwrap();
    encrypt_symmetric(&s.ctx, sk, &pt, rng)
        .unwrap()
        .expand(&s.ctx)
        .unwrap()
}

/// Runs one inference (input, one round, output) through both clients and compares every
/// frame they send and the output they return.
#[test]
fn inference_equals_the_host_clients() {
    let s = setup();
    let slots = s.params.slots();
    let scale = 2f64.powi(88);
    let spec = InputSpec {
        len: 10,
        period: 16,
        shift: 1,
        copies: 4,
        scale: 2f64.powi(60),
        level: 6,
        gather: None,
    };
    let input: Vec<f64> = (0..10).map(|i| i as f64 / 10.0 - 0.3).collect();

    let mut rng = Csprng::from_seed([9; 32]);
    let mut client = LimbwiseClient::new_insecure(&s.params, &mut rng).unwrap();
    let mut host_rng = Csprng::from_seed([9; 32]);
    let sk = SecretKey::generate(&s.ctx, &mut host_rng).unwrap();
    let mut host = InferenceClient::new(&s.ctx, &s.encoder, &sk);

    let mut got = Vec::new();
    client
        .start_inference(&input, &spec, &mut rng, collect(&mut got))
        .unwrap();
    let want = client_frames(
        &host.start(&input, &spec, &mut host_rng).unwrap(),
        s.ctx.n(),
    )
    .unwrap();
    assert_eq!(got, want, "input frames");

    // A round: pre-activations with both signs, and a refresh message.
    let mut server_rng = Csprng::from_seed([11; 32]);
    let pre: Vec<f64> = (0..slots)
        .map(|i| ((i * 7919) % 23) as f64 - 11.3)
        .collect();
    let round = RoundRequest {
        round: 0,
        period: 32,
        sign_scale: 2f64.powi(40),
        relu: vec![encrypt_at(&s, &sk, &pre, scale, &mut server_rng)],
        refresh: vec![encrypt_at(&s, &sk, &pre, scale, &mut server_rng)],
    };
    let msg = ServerMessage::Round(round);
    let mut got = Vec::new();
    for frame in server_frames(&msg, s.ctx.n()).unwrap() {
        let out = client.on_frame(frame, &mut rng, collect(&mut got)).unwrap();
        assert!(out.is_none());
    }
    let ClientStep::Reply(reply) = host.handle(&msg, &mut host_rng).unwrap() else {
        panic!("the host client finished early");
    };
    let want = client_frames(&reply, s.ctx.n()).unwrap();
    assert_eq!(got, want, "round reply frames");
    // The signs are right (not only the same as the host's).
    let client_core::protocol::ClientMessage::RoundReply(r) = &reply else {
        panic!("not a round reply")
    };
    let signs =
        decrypt_slots(&s.ctx, &s.encoder, &sk, &r.signs[0].expand(&s.ctx).unwrap()).unwrap();
    for (t, (&sg, &x)) in signs.iter().zip(&pre).enumerate() {
        let want = if pre[t % 32] < 0.0 { -1.0 } else { 1.0 };
        assert!((sg - want).abs() < 1e-6, "slot {t}: sign {sg} for {x}");
    }

    // The output.
    let out_values: Vec<f64> = (0..slots).map(|i| (i % 10) as f64 * 0.37 - 1.0).collect();
    let msg = ServerMessage::Output(OutputMessage {
        len: 10,
        output: vec![encrypt_at(&s, &sk, &out_values, scale, &mut server_rng)],
    });
    let mut result = None;
    for frame in server_frames(&msg, s.ctx.n()).unwrap() {
        result = client.on_frame(frame, &mut rng, collect(&mut got)).unwrap();
    }
    let ClientStep::Done(want) = host.handle(&msg, &mut host_rng).unwrap() else {
        panic!("the host client did not finish");
    };
    let result = result.expect("the limb-wise client returns the output");
    assert_eq!(result, want);
    for (a, b) in result.iter().zip(&out_values) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }
}

fn round_frames(s: &Setup, sk: &SecretKey, rng: &mut Csprng, cts: usize) -> Vec<ServerFrame> {
    let values = vec![1.0; s.params.slots()];
    let ct = encrypt_at(s, sk, &values, 2f64.powi(88), rng);
    let msg = ServerMessage::Round(RoundRequest {
        round: 0,
        period: 32,
        sign_scale: 2f64.powi(40),
        relu: vec![ct.clone(); cts],
        refresh: vec![ct; cts],
    });
    server_frames(&msg, s.ctx.n()).unwrap()
}

fn started(s: &Setup, seed: u8) -> (LimbwiseClient, SecretKey, Csprng) {
    let mut rng = Csprng::from_seed([seed; 32]);
    let mut client = LimbwiseClient::new_insecure(&s.params, &mut rng).unwrap();
    let sk = SecretKey::generate(&s.ctx, &mut Csprng::from_seed([seed; 32])).unwrap();
    let spec = InputSpec {
        len: 4,
        period: 4,
        shift: 0,
        copies: 1,
        scale: 2f64.powi(40),
        level: 6,
        gather: None,
    };
    client
        .start_inference(&[0.5; 4], &spec, &mut rng, |_| Ok(()))
        .unwrap();
    (client, sk, rng)
}

/// Feeds `frames` until the first error.
fn first_error(
    client: &mut LimbwiseClient,
    rng: &mut Csprng,
    frames: Vec<ServerFrame>,
) -> Option<client_core::Error> {
    for f in frames {
        if let Err(e) = client.on_frame(f, rng, |_| Ok(())) {
            return Some(e);
        }
    }
    None
}

#[test]
fn malformed_server_frames_are_refused() {
    let s = setup();

    // Control: a well-formed round goes through.
    let (mut client, sk, mut rng) = started(&s, 1);
    let frames = round_frames(&s, &sk, &mut rng, 1);
    assert_eq!(first_error(&mut client, &mut rng, frames), None);

    // Two ciphertexts per message: refused with a clear error, not a panic.
    let (mut client, sk, mut rng) = started(&s, 2);
    let frames = round_frames(&s, &sk, &mut rng, 2);
    assert!(first_error(&mut client, &mut rng, frames).is_some());

    // A limb skipped, or repeated.
    for edit in [1usize, 2] {
        let (mut client, sk, mut rng) = started(&s, 3);
        let mut frames = round_frames(&s, &sk, &mut rng, 1);
        if edit == 1 {
            frames.remove(2);
        } else {
            let dup = frames[2].clone();
            frames.insert(2, dup);
        }
        assert!(
            first_error(&mut client, &mut rng, frames).is_some(),
            "edit {edit}"
        );
    }

    // A residue not below its prime.
    let (mut client, sk, mut rng) = started(&s, 4);
    let mut frames = round_frames(&s, &sk, &mut rng, 1);
    if let ServerFrame::CiphertextLimb { limb, .. } = &mut frames[1] {
        limb.words[5] = u64::MAX;
    }
    assert_eq!(
        first_error(&mut client, &mut rng, frames),
        Some(client_core::Error::ResidueOutOfRange { limb: 0, index: 5 })
    );

    // An output whose length does not match its ciphertext count.
    let (mut client, _, mut rng) = started(&s, 6);
    let bad_output = ServerFrame::CiphertextsBegin {
        purpose: client_core::wire::messages::Purpose::Output,
        count: 2,
        len: 10,
        sign_scale: 0.0,
    };
    assert!(first_error(&mut client, &mut rng, vec![bad_output]).is_some());

    // The output before any round was expected is fine; a refresh before its ReLU is not.
    let (mut client, sk, mut rng) = started(&s, 5);
    let frames = round_frames(&s, &sk, &mut rng, 1);
    let refresh_start = frames
        .iter()
        .rposition(|f| matches!(f, ServerFrame::CiphertextsBegin { .. }))
        .unwrap();
    assert!(first_error(&mut client, &mut rng, frames[refresh_start..].to_vec()).is_some());

    // A refresh header whose period differs from its ReLU message's.
    let (mut client, sk, mut rng) = started(&s, 7);
    let mut frames = round_frames(&s, &sk, &mut rng, 1);
    if let ServerFrame::CiphertextsBegin { len, .. } = &mut frames[refresh_start] {
        *len = 64;
    }
    assert_eq!(
        first_error(&mut client, &mut rng, frames),
        Some(client_core::Error::Decode(
            "refresh header differs from its ReLU message's"
        ))
    );
}
