//! `ClientSession` on both backends: the device backend (one prime at a time) sends exactly
//! what the host backend sends, and both send what the library's whole-polynomial functions
//! (`keys`, `cipher`) produce; malformed server frames are refused.

use client_core::cipher::{
    decrypt_int, decrypt_slots, encrypt_symmetric, reencrypt, Ciphertext, SeededCiphertext,
};
use client_core::client::{
    Backend, ClientSession, DeviceBackend, Event, HostBackend, KeySeed, Limits, ServerInfo,
};
use client_core::encoding::Encoder;
use client_core::keys::{
    galois_element_for_rotation, KeyKind, PublicKey, SecretKey, SwitchingKeyGenerator,
};
use client_core::params::{ParamSpec, Params, HEFUN_N16384};
use client_core::ring::Context;
use client_core::sampling::Csprng;
use client_core::wire::assembled::{
    ClientMessage, OutputMessage, RoundReply, RoundRequest, ServerMessage,
};
use client_core::wire::convert::{client_frames, public_key_frames, server_frames};
use client_core::wire::input::InputSpec;
use client_core::wire::messages::{ClientFrame, Purpose, ServerFrame};
use client_core::wire::PROTOCOL_VERSION;
use rand_core::SeedableRng;
use zeroize::Zeroizing;

/// The hefun preset's structure (7 + 2 primes, two primes per digit, hand-off level 2, Δ = 2^88)
/// on a ring small enough for a quick test.
const SMALL_HEFUN: ParamSpec = HEFUN_N16384.on_ring("test-hefun-n1024", 10);

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

fn key_seed(b: u8) -> KeySeed {
    KeySeed::new(Zeroizing::new([b; 32]))
}

fn device(s: &Setup, seed: &KeySeed) -> DeviceBackend {
    DeviceBackend::new_insecure(&s.params, &mut seed.secret_key_rng()).unwrap()
}

fn server_hello(rotations: &[i64], keys_known: bool, rounds: u32, input: InputSpec) -> ServerFrame {
    ServerFrame::Hello {
        version: PROTOCOL_VERSION,
        preset: SMALL_HEFUN.name.into(),
        model_id: [1; 32],
        input,
        rotations: rotations.to_vec(),
        rounds,
        round_inputs: Vec::new(),
        keys_known,
    }
}

fn spec4() -> InputSpec {
    InputSpec {
        len: 4,
        period: 4,
        shift: 0,
        copies: 1,
        scale: 2f64.powi(40),
        level: 6,
        gather: None,
    }
}

/// The handshake and key upload of a session, as frames.
fn handshake<B: Backend>(
    session: &mut ClientSession<B>,
    rotations: &[i64],
    rng: &mut Csprng,
) -> Vec<ClientFrame> {
    let mut sent = Vec::new();
    session.hello(collect(&mut sent)).unwrap();
    let event = session
        .on_frame(
            server_hello(rotations, false, 1, spec4()),
            rng,
            collect(&mut sent),
        )
        .unwrap();
    assert!(matches!(event, Event::KeysSent { .. }), "{event:?}");
    let event = session
        .on_frame(ServerFrame::KeysAccepted, rng, collect(&mut sent))
        .unwrap();
    assert_eq!(event, Event::Ready);
    sent
}

#[test]
fn key_upload_equals_the_whole_key_generators_on_both_backends() {
    let s = setup();
    let rotations = [1i64, -3, 17];
    let seed = key_seed(5);

    let mut dev = ClientSession::new(device(&s, &seed), seed.public_key_rng());
    let got = handshake(&mut dev, &rotations, &mut Csprng::from_seed([6; 32]));

    let sk = SecretKey::generate(&s.ctx, &mut seed.secret_key_rng()).unwrap();
    let mut host = ClientSession::new(HostBackend::new(&s.ctx, &sk), seed.public_key_rng());
    let host_frames = handshake(&mut host, &rotations, &mut Csprng::from_seed([6; 32]));
    assert_eq!(got, host_frames, "device and host backends differ");

    // The reference: whole keys from the `keys` module, split into frames.
    let pk = PublicKey::generate(&s.ctx, &sk, &mut seed.public_key_rng()).unwrap();
    let mut want = vec![ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        presets: vec![SMALL_HEFUN.name.into()],
        key_id: Some(pk.key_id(&s.ctx)),
    }];
    want.extend(public_key_frames(&pk, s.ctx.n()));
    let mut kinds = vec![KeyKind::Relinearization];
    kinds.extend(
        rotations
            .iter()
            .map(|&r| KeyKind::Galois(galois_element_for_rotation(s.ctx.n(), r))),
    );
    let mut rng = Csprng::from_seed([6; 32]);
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
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "frame {i} differs");
    }
    // Every frame but the hello, the key headers and `KeysDone` is a limb; in the (digit, limb)
    // order each limb needs another prime, so the device builds another plan, and the key id
    // for the hello costs one plan per top-level prime.
    let counters = dev.counters();
    assert_eq!(
        counters.limbs_sent as usize,
        want.len() - 1 - (1 + rotations.len()) - 1
    );
    let top_limbs = s.params.top_level() as u32 + 1;
    assert_eq!(counters.plan_builds, counters.limbs_sent + top_limbs);
    assert_eq!(host.counters().plan_builds, 0);
}

#[test]
fn a_known_key_id_skips_the_upload() {
    let s = setup();
    let seed = key_seed(8);
    let mut session = ClientSession::new(device(&s, &seed), seed.public_key_rng());
    let mut sent = Vec::new();
    session.hello(collect(&mut sent)).unwrap();
    let event = session
        .on_frame(
            server_hello(&[1], true, 1, spec4()),
            &mut Csprng::from_seed([1; 32]),
            collect(&mut sent),
        )
        .unwrap();
    assert_eq!(event, Event::Ready);
    assert_eq!(sent.len(), 1, "only the hello");
    // The same seed names the same keys after a restart.
    let mut again = ClientSession::new(device(&s, &seed), seed.public_key_rng());
    assert_eq!(again.key_id().unwrap(), session.key_id().unwrap());
    let other = key_seed(9);
    let mut other = ClientSession::new(device(&s, &other), other.public_key_rng());
    assert_ne!(other.key_id().unwrap(), session.key_id().unwrap());
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

fn info(input: InputSpec, rounds: u32) -> ServerInfo {
    ServerInfo {
        model_id: [0; 32],
        input,
        rotations: Vec::new(),
        rounds,
        round_inputs: Vec::new(),
        keys_known: true,
    }
}

/// The reference answer to a round, from the `cipher` module's whole-polynomial functions.
fn reference_reply(
    s: &Setup,
    sk: &SecretKey,
    round: &RoundRequest,
    rng: &mut Csprng,
) -> ClientMessage {
    let slots = s.params.slots();
    let top = s.params.top_level();
    let period = round.period as usize;
    let signs: Vec<SeededCiphertext> = round
        .relu
        .iter()
        .map(|ct| {
            let v = decrypt_slots(&s.ctx, &s.encoder, sk, ct).unwrap();
            let signs: Vec<f64> = (0..slots)
                .map(|t| if v[t % period] < 0.0 { -1.0 } else { 1.0 })
                .collect();
            let pt = s
                .encoder
                .encode_fixed_plaintext(&s.ctx, &signs, round.sign_scale, top)
                .unwrap();
            encrypt_symmetric(&s.ctx, sk, &pt, rng).unwrap()
        })
        .collect();
    let refreshed = round
        .refresh
        .iter()
        .map(|ct| {
            let int = decrypt_int(&s.ctx, sk, ct).unwrap();
            reencrypt(&s.ctx, sk, &int, ct.scale, top, rng).unwrap()
        })
        .collect();
    ClientMessage::RoundReply(RoundReply {
        round: round.round,
        signs,
        refreshed,
    })
}

/// One inference (input, one round of `cts` ciphertexts, output) through the session on both
/// backends: every frame equal between them and to the reference, the signs and the output
/// right.
fn inference_matches(cts: usize) {
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
    let seed = key_seed(9);
    let sk = SecretKey::generate(&s.ctx, &mut seed.secret_key_rng()).unwrap();
    let mut dev = ClientSession::ready(
        device(&s, &seed),
        seed.public_key_rng(),
        info(spec.clone(), 1),
    );
    let mut host = ClientSession::ready(
        HostBackend::new(&s.ctx, &sk),
        seed.public_key_rng(),
        info(spec.clone(), 1),
    );
    let (mut dev_rng, mut host_rng, mut ref_rng) = (
        Csprng::from_seed([3; 32]),
        Csprng::from_seed([3; 32]),
        Csprng::from_seed([3; 32]),
    );

    let (mut got, mut host_got) = (Vec::new(), Vec::new());
    dev.start_inference(&input, &mut dev_rng, collect(&mut got))
        .unwrap();
    host.start_inference(&input, &mut host_rng, collect(&mut host_got))
        .unwrap();
    let values = spec.layout(&input, slots).unwrap().remove(0);
    let pt = s
        .encoder
        .encode_fixed_plaintext(&s.ctx, &values, spec.scale, 6)
        .unwrap();
    let ct = encrypt_symmetric(&s.ctx, &sk, &pt, &mut ref_rng).unwrap();
    let want = client_frames(&ClientMessage::Input(vec![ct]), s.ctx.n()).unwrap();
    assert_eq!(got, want, "input frames");
    assert_eq!(host_got, want, "host input frames");

    // A round: pre-activations with both signs, and a refresh message.
    let mut server_rng = Csprng::from_seed([11; 32]);
    let pre: Vec<f64> = (0..slots)
        .map(|i| ((i * 7919) % 23) as f64 - 11.3)
        .collect();
    let round = RoundRequest {
        round: 0,
        period: 32,
        sign_scale: 2f64.powi(40),
        relu: (0..cts)
            .map(|_| encrypt_at(&s, &sk, &pre, scale, &mut server_rng))
            .collect(),
        refresh: (0..cts)
            .map(|_| encrypt_at(&s, &sk, &pre, scale, &mut server_rng))
            .collect(),
    };
    let want = reference_reply(&s, &sk, &round, &mut ref_rng);
    let msg = ServerMessage::Round(round);
    let (mut got, mut host_got) = (Vec::new(), Vec::new());
    let frames = server_frames(&msg, s.ctx.n()).unwrap();
    let mut events = Vec::new();
    for frame in &frames {
        events.push(
            dev.on_frame(frame.clone(), &mut dev_rng, collect(&mut got))
                .unwrap(),
        );
        host.on_frame(frame.clone(), &mut host_rng, collect(&mut host_got))
            .unwrap();
    }
    assert_eq!(events.last(), Some(&Event::RoundAnswered(0)));
    assert!(events[..events.len() - 1]
        .iter()
        .all(|e| *e == Event::Pending));
    assert_eq!(
        got,
        client_frames(&want, s.ctx.n()).unwrap(),
        "round reply frames"
    );
    assert_eq!(host_got, got, "host round reply frames");
    // The signs are right, not only the same as the reference's.
    let ClientMessage::RoundReply(r) = &want else {
        panic!()
    };
    for sg in &r.signs {
        let signs = decrypt_slots(&s.ctx, &s.encoder, &sk, &sg.expand(&s.ctx).unwrap()).unwrap();
        for (t, &sg) in signs.iter().enumerate() {
            let want = if pre[t % 32] < 0.0 { -1.0 } else { 1.0 };
            assert!((sg - want).abs() < 1e-6, "slot {t}: sign {sg}");
        }
    }

    // The output, over two ciphertexts.
    let out_values: Vec<f64> = (0..slots).map(|i| (i % 10) as f64 * 0.37 - 1.0).collect();
    let msg = ServerMessage::Output(OutputMessage {
        len: (slots + 10) as u32,
        output: vec![
            encrypt_at(&s, &sk, &out_values, scale, &mut server_rng),
            encrypt_at(&s, &sk, &out_values, scale, &mut server_rng),
        ],
    });
    let (mut result, mut host_result) = (None, None);
    for frame in server_frames(&msg, s.ctx.n()).unwrap() {
        if let Event::Output(v) = dev
            .on_frame(frame.clone(), &mut dev_rng, collect(&mut got))
            .unwrap()
        {
            result = Some(v);
        }
        if let Event::Output(v) = host
            .on_frame(frame, &mut host_rng, collect(&mut got))
            .unwrap()
        {
            host_result = Some(v);
        }
    }
    let result = result.expect("the device returns the output");
    assert_eq!(Some(&result), host_result.as_ref());
    assert_eq!(result.len(), slots + 10);
    for (a, b) in result.iter().zip(out_values.iter().cycle()) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }
    assert!(dev.is_ready() && host.is_ready());
}

#[test]
fn inference_equals_the_reference_on_both_backends() {
    inference_matches(1);
}

#[test]
fn rounds_of_several_ciphertexts_are_answered() {
    inference_matches(2);
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

fn started(
    s: &Setup,
    seed: u8,
    limits: Limits,
) -> (ClientSession<DeviceBackend>, SecretKey, Csprng) {
    let key = key_seed(seed);
    let sk = SecretKey::generate(&s.ctx, &mut key.secret_key_rng()).unwrap();
    let mut client = ClientSession::ready(device(s, &key), key.public_key_rng(), info(spec4(), 1))
        .with_limits(limits);
    let mut rng = Csprng::from_seed([seed; 32]);
    client
        .start_inference(&[0.5; 4], &mut rng, |_| Ok(()))
        .unwrap();
    (client, sk, rng)
}

/// Feeds `frames` until the first error.
fn first_error(
    client: &mut ClientSession<DeviceBackend>,
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
    let one = Limits {
        max_round_ciphertexts: 1,
        ..Limits::default()
    };

    // Control: a well-formed round goes through.
    let (mut client, sk, mut rng) = started(&s, 1, one);
    let frames = round_frames(&s, &sk, &mut rng, 1);
    assert_eq!(first_error(&mut client, &mut rng, frames), None);

    // More ciphertexts per round than the client's limit: a clear error, not an allocation.
    let (mut client, sk, mut rng) = started(&s, 2, one);
    let frames = round_frames(&s, &sk, &mut rng, 2);
    assert_eq!(
        first_error(&mut client, &mut rng, frames),
        Some(client_core::Error::Decode(
            "a round of more ciphertexts than this client can hold"
        ))
    );

    // A message that would need an exact decryption (the refresh preset's: Q/Δ far above
    // 2^20), on a client without memory for one: a clear error.
    let tight = Limits {
        exact_decryption: false,
        ..one
    };
    let (mut client, sk, mut rng) = started(&s, 2, tight);
    let frames = round_frames(&s, &sk, &mut rng, 1);
    assert!(matches!(
        first_error(&mut client, &mut rng, frames),
        Some(client_core::Error::Decode(m)) if m.contains("exact decryption")
    ));

    // A limb skipped, or repeated.
    for edit in [1usize, 2] {
        let (mut client, sk, mut rng) = started(&s, 3, one);
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
    let (mut client, sk, mut rng) = started(&s, 4, one);
    let mut frames = round_frames(&s, &sk, &mut rng, 1);
    if let ServerFrame::CiphertextLimb { limb, .. } = &mut frames[1] {
        limb.words[5] = u64::MAX;
    }
    assert_eq!(
        first_error(&mut client, &mut rng, frames),
        Some(client_core::Error::ResidueOutOfRange { limb: 0, index: 5 })
    );

    // An output whose length does not match its ciphertext count; an output before the last
    // round.
    for count in [2u16, 1] {
        let (mut client, _, mut rng) = started(&s, 6, one);
        let bad_output = ServerFrame::CiphertextsBegin {
            purpose: Purpose::Output,
            count,
            len: 10,
            sign_scale: 0.0,
        };
        assert!(first_error(&mut client, &mut rng, vec![bad_output]).is_some());
    }

    // A refresh before its ReLU message.
    let (mut client, sk, mut rng) = started(&s, 5, one);
    let frames = round_frames(&s, &sk, &mut rng, 1);
    let refresh_start = frames
        .iter()
        .rposition(|f| matches!(f, ServerFrame::CiphertextsBegin { .. }))
        .unwrap();
    assert!(first_error(&mut client, &mut rng, frames[refresh_start..].to_vec()).is_some());

    // A refresh header whose period differs from its ReLU message's.
    let (mut client, sk, mut rng) = started(&s, 7, one);
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

    // An error frame ends the session and keeps the server's words.
    let (mut client, _, mut rng) = started(&s, 8, one);
    let refusal = ServerFrame::error(client_core::wire::ErrorCode::Busy, "full");
    assert_eq!(
        first_error(&mut client, &mut rng, vec![refusal]),
        Some(client_core::Error::Refused(
            client_core::wire::ErrorCode::Busy
        ))
    );
    assert_eq!(
        client.refusal(),
        Some((client_core::wire::ErrorCode::Busy, "full"))
    );
    assert!(client
        .on_frame(ServerFrame::KeysAccepted, &mut rng, |_| Ok(()))
        .is_err());
}

/// The light preset's structure on a small ring.
const SMALL_LIGHT: ParamSpec = client_core::params::HEFUN_N8192.on_ring("test-light-n1024", 10);

#[test]
fn hellos_with_bad_reply_layouts_are_refused() {
    let pair_spec = |len: u32, level: u32| InputSpec {
        len,
        period: 2 * len.next_power_of_two(),
        shift: 0,
        copies: 1,
        scale: 2f64.powi(40),
        level,
        gather: None,
    };
    let hello = |preset: &str, rounds: u32, round_inputs: Vec<InputSpec>| ServerFrame::Hello {
        version: PROTOCOL_VERSION,
        preset: preset.into(),
        model_id: [1; 32],
        input: InputSpec {
            level: 0,
            ..spec4()
        },
        rotations: Vec::new(),
        rounds,
        round_inputs,
        keys_known: true,
    };
    let answer = |spec: &ParamSpec, frame: ServerFrame| {
        let params = Params::from_spec_insecure(spec).unwrap();
        let seed = key_seed(5);
        let backend = DeviceBackend::new_insecure(&params, &mut seed.secret_key_rng()).unwrap();
        let mut session = ClientSession::new(backend, seed.public_key_rng()).with_limits(Limits {
            max_round_ciphertexts: 1,
            ..Limits::default()
        });
        let mut sent = Vec::new();
        session.hello(collect(&mut sent)).unwrap();
        let mut rng = Csprng::from_seed([1; 32]);
        session.on_frame(frame, &mut rng, collect(&mut sent))
    };
    let light = SMALL_LIGHT.name;
    // A well-formed hello is taken: one pair layout per round.
    let good = vec![pair_spec(8, 0), pair_spec(4, 0)];
    assert_eq!(
        answer(&SMALL_LIGHT, hello(light, 2, good)).unwrap(),
        Event::Ready
    );
    // One layout per round, no more, no fewer.
    assert!(answer(&SMALL_LIGHT, hello(light, 2, vec![pair_spec(8, 0)])).is_err());
    assert!(answer(&SMALL_LIGHT, hello(light, 1, vec![pair_spec(8, 0); 2])).is_err());
    // Pairs (v, |v|): an even length; a level the ring has; one ciphertext at most here.
    assert!(answer(&SMALL_LIGHT, hello(light, 1, vec![pair_spec(7, 0)])).is_err());
    assert!(answer(&SMALL_LIGHT, hello(light, 1, vec![pair_spec(8, 5)])).is_err());
    let wide = InputSpec {
        len: 4096,
        period: 512,
        ..pair_spec(8, 0)
    };
    assert!(answer(&SMALL_LIGHT, hello(light, 1, vec![wide])).is_err());
    // A refresh-round preset takes no reply layouts.
    let refresh = SMALL_HEFUN.name;
    let spec6 = InputSpec {
        level: 2,
        ..pair_spec(8, 0)
    };
    assert!(answer(&SMALL_HEFUN, hello(refresh, 1, vec![spec6])).is_err());
}

/// The sign-magnitude round as a device answers it (fractions of m/Q, fixed-point decoding
/// and encoding): the same bytes as the host backend, and the reply decrypts to (v, |v|).
#[test]
fn sign_magnitude_replies_are_the_same_on_both_backends_and_hold_the_pairs() {
    let params = Params::from_spec_insecure(&SMALL_LIGHT).unwrap();
    let ctx = Context::new(&params).unwrap();
    let encoder = Encoder::new(params.log_n());
    let s = Setup {
        params,
        ctx,
        encoder,
    };
    let slots = s.params.slots();
    let period = 32u32;
    let reply = InputSpec {
        len: 2 * period,
        period: 2 * period,
        shift: 0,
        copies: 1,
        scale: 2f64.powi(86),
        level: s.params.top_level() as u32,
        gather: None,
    };
    let input = InputSpec {
        level: s.params.top_level() as u32,
        ..spec4()
    };
    let server = info(input, 1).with_round_inputs(vec![reply.clone()]);
    let seed = key_seed(21);
    let sk = SecretKey::generate(&s.ctx, &mut seed.secret_key_rng()).unwrap();
    let mut dev = ClientSession::ready(device(&s, &seed), seed.public_key_rng(), server.clone());
    let mut host =
        ClientSession::ready(HostBackend::new(&s.ctx, &sk), seed.public_key_rng(), server);
    let (mut dev_rng, mut host_rng) = (Csprng::from_seed([4; 32]), Csprng::from_seed([4; 32]));
    let (mut dev_sent, mut host_sent) = (Vec::new(), Vec::new());
    dev.start_inference(&[0.1, 0.2, 0.3, 0.4], &mut dev_rng, collect(&mut dev_sent))
        .unwrap();
    host.start_inference(
        &[0.1, 0.2, 0.3, 0.4],
        &mut host_rng,
        collect(&mut host_sent),
    )
    .unwrap();
    assert_eq!(dev_sent, host_sent, "input frames");

    // A ReLU message as the light preset's server sends it: Q/Δ = 2^13.
    let pre: Vec<f64> = (0..slots)
        .map(|i| ((i * 7919) % 23) as f64 - 11.3)
        .collect();
    let mut server_rng = Csprng::from_seed([12; 32]);
    let msg = ServerMessage::Round(RoundRequest {
        round: 0,
        period,
        sign_scale: 2f64.powi(86),
        relu: vec![encrypt_at(&s, &sk, &pre, 2f64.powi(116), &mut server_rng)],
        refresh: Vec::new(),
    });
    let (mut dev_sent, mut host_sent) = (Vec::new(), Vec::new());
    let mut last = Event::Pending;
    for frame in server_frames(&msg, s.ctx.n()).unwrap() {
        last = dev
            .on_frame(frame.clone(), &mut dev_rng, collect(&mut dev_sent))
            .unwrap();
        host.on_frame(frame, &mut host_rng, collect(&mut host_sent))
            .unwrap();
    }
    assert_eq!(last, Event::RoundAnswered(0));
    assert_eq!(dev_sent, host_sent, "reply frames");

    // The reply: one fresh encryption of v then |v| for the period's values.
    let ClientFrame::SeededLimb {
        seed: a_seed,
        scale,
        limbs,
        ..
    } = &dev_sent[1]
    else {
        panic!("{:?}", dev_sent[1]);
    };
    assert_eq!(usize::from(*limbs), s.params.top_level() + 1);
    let words: Vec<u64> = dev_sent[1..]
        .iter()
        .flat_map(|f| match f {
            ClientFrame::SeededLimb { limb, .. } => limb.words.clone(),
            _ => Vec::new(),
        })
        .collect();
    let c0 = client_core::ring::Poly::from_data(
        &s.ctx,
        client_core::ring::Basis::level(s.params.top_level()),
        words,
    )
    .unwrap();
    let ct = SeededCiphertext {
        c0,
        seed: *a_seed,
        scale: *scale,
    }
    .expand(&s.ctx)
    .unwrap();
    let got = decrypt_slots(&s.ctx, &s.encoder, &sk, &ct).unwrap();
    let p = period as usize;
    for t in 0..p {
        let v = pre[t];
        assert!((got[t] - v).abs() < 1e-6, "v at {t}: {} vs {v}", got[t]);
        assert!(
            (got[p + t] - v.abs()).abs() < 1e-6,
            "|v| at {t}: {}",
            got[p + t]
        );
    }
}
