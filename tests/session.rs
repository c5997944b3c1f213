//! The server's sans-I/O session driven frame by frame: handshake, key upload, inferences, a
//! second session that skips the upload, and hostile sequences answered with the right code.

use client_core::client::{ClientStep, InProcessClient, ServerInfo};
use client_core::keys::{PublicKey, SwitchingKeyGenerator};
use client_core::wire::convert::{client_frames, public_key_frames, ServerMessageAssembler};
use client_core::wire::input::InputSpec;
use client_core::wire::messages::{ClientFrame, KeyId, ServerFrame};
use client_core::wire::{ErrorCode, PROTOCOL_VERSION};
use hefun_tests::world::{world, World};
use server::net::{ServerSession, Service, SessionError};

fn hello(w: &World, key_id: Option<KeyId>) -> ClientFrame {
    ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        presets: vec![w.ctx.params().name().into()],
        key_id,
    }
}

fn send(
    s: &mut ServerSession<'_>,
    frames: Vec<ClientFrame>,
) -> Result<Vec<ServerFrame>, SessionError> {
    let mut out = Vec::new();
    for f in frames {
        out.extend(s.on_frame(f)?);
    }
    Ok(out)
}

/// Uploads the public key and every key the server's hello asked for.
fn upload(w: &mut World, s: &mut ServerSession<'_>, rotations: &[i64]) -> KeyId {
    let pk = PublicKey::generate(&w.ctx, &w.sk, &mut w.rng).unwrap();
    let n = w.ctx.n();
    let mut frames = public_key_frames(&pk, n);
    let mut kinds = vec![client_core::keys::KeyKind::Relinearization];
    kinds.extend(rotations.iter().map(|&r| {
        client_core::keys::KeyKind::Galois(client_core::keys::galois_element_for_rotation(n, r))
    }));
    for kind in kinds {
        let g = SwitchingKeyGenerator::new(&w.ctx, &w.sk, kind, &mut w.rng).unwrap();
        frames.push(ClientFrame::KeyBegin {
            kind,
            seed: g.seed(),
        });
        frames.extend(g.chunks().map(|c| ClientFrame::KeyChunk(c.unwrap())));
    }
    let id = pk.key_id(&w.ctx);
    frames.push(ClientFrame::KeysDone { key_id: id });
    let out = send(s, frames).unwrap();
    assert_eq!(out, vec![ServerFrame::KeysAccepted]);
    id
}

/// One inference through the session; returns the decrypted output.
fn infer(w: &mut World, s: &mut ServerSession<'_>, spec: &InputSpec, x: &[f64]) -> Vec<f64> {
    let rounds = w.model.rounds() as u32;
    let mut client =
        InProcessClient::new(&w.ctx, &w.sk, ServerInfo::in_process(spec.clone(), rounds));
    let mut outgoing = client.start(x, &mut w.rng).unwrap();
    loop {
        let frames = send(s, client_frames(&outgoing, w.ctx.n()).unwrap()).unwrap();
        let mut asm = ServerMessageAssembler::default();
        let mut msg = None;
        for f in frames {
            msg = asm.push(&w.ctx, f).unwrap().or(msg);
        }
        match client.handle(&msg.unwrap(), &mut w.rng).unwrap() {
            ClientStep::Done(out) => return out,
            ClientStep::Reply(r) => outgoing = r,
        }
    }
}

fn service(w: &World) -> Service {
    let eval = server::eval::Evaluator::new(w.ctx.clone()).unwrap();
    let model =
        server::model::CompiledModel::new(w.model.model().clone(), w.ctx.params().slots()).unwrap();
    Service::new(eval, model, w.cfg.clone()).unwrap()
}

#[test]
fn sessions_upload_keys_once_and_infer() {
    let mut w = world();
    let svc = service(&w);
    let x: Vec<f64> = (0..64).map(|i| (i as f64 * 0.37).sin() * 0.5).collect();
    let want = w.model.model().eval_plain(&x);

    let mut s = ServerSession::new(&svc, [1; 32]);
    let reply = s.on_frame(hello(&w, None)).unwrap();
    let [ServerFrame::Hello {
        input,
        rotations,
        keys_known,
        rounds,
        ..
    }] = &reply[..]
    else {
        panic!("expected the server hello, got {reply:?}")
    };
    assert!(!keys_known);
    assert_eq!(*rounds, 2);
    let id = upload(&mut w, &mut s, rotations);
    for _ in 0..2 {
        let out = infer(&mut w, &mut s, input, &x);
        for (o, e) in out.iter().zip(&want) {
            assert!((o - e).abs() < 1e-2, "{o} vs {e}");
        }
    }
    assert_eq!(s.inferences, 2);
    s.on_frame(ClientFrame::Bye).unwrap();

    // A new session with the key id goes straight to inference.
    let mut s = ServerSession::new(&svc, [2; 32]);
    let reply = s.on_frame(hello(&w, Some(id))).unwrap();
    let [ServerFrame::Hello {
        input, keys_known, ..
    }] = &reply[..]
    else {
        panic!()
    };
    assert!(keys_known);
    let out = infer(&mut w, &mut s, input, &x);
    assert!((out[0] - want[0]).abs() < 1e-2);
}

#[test]
fn hostile_sequences_get_the_right_error_code() {
    let mut w = world();
    let svc = service(&w);
    let code = |r: Result<Vec<ServerFrame>, SessionError>| r.unwrap_err().code;

    // Wrong version, wrong preset.
    let mut s = ServerSession::new(&svc, [3; 32]);
    let old = ClientFrame::Hello {
        version: PROTOCOL_VERSION + 1,
        presets: vec![w.ctx.params().name().into()],
        key_id: None,
    };
    assert_eq!(code(s.on_frame(old)), ErrorCode::UnsupportedVersion);
    assert!(s.is_closed());
    let mut s = ServerSession::new(&svc, [3; 32]);
    let other = ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        presets: vec!["compact-n8192-stat30".into()],
        key_id: None,
    };
    assert_eq!(code(s.on_frame(other)), ErrorCode::UnsupportedVersion);

    // Anything before hello; an input before the keys; an unknown key id means upload.
    let mut s = ServerSession::new(&svc, [3; 32]);
    assert_eq!(
        code(s.on_frame(ClientFrame::KeysDone { key_id: [0; 32] })),
        ErrorCode::UnexpectedMessage
    );
    let mut s = ServerSession::new(&svc, [3; 32]);
    let reply = s.on_frame(hello(&w, Some([9; 32]))).unwrap();
    let [ServerFrame::Hello {
        input,
        rotations,
        keys_known,
        ..
    }] = &reply[..]
    else {
        panic!()
    };
    assert!(!keys_known, "an unknown key id must not skip the upload");
    let (input, rotations) = (input.clone(), rotations.clone());
    let rounds = w.model.rounds() as u32;
    let mut client =
        InProcessClient::new(&w.ctx, &w.sk, ServerInfo::in_process(input.clone(), rounds));
    let early = client.start(&[0.0; 64], &mut w.rng).unwrap();
    let frames = client_frames(&early, w.ctx.n()).unwrap();
    assert_eq!(code(send(&mut s, frames)), ErrorCode::UnexpectedMessage);

    // A replayed round reply.
    let mut s = ServerSession::new(&svc, [4; 32]);
    s.on_frame(hello(&w, None)).unwrap();
    upload(&mut w, &mut s, &rotations);
    let rounds = w.model.rounds() as u32;
    let mut client =
        InProcessClient::new(&w.ctx, &w.sk, ServerInfo::in_process(input.clone(), rounds));
    let first = client.start(&[0.1; 64], &mut w.rng).unwrap();
    let frames = send(&mut s, client_frames(&first, w.ctx.n()).unwrap()).unwrap();
    let mut asm = ServerMessageAssembler::default();
    let mut msg = None;
    for f in frames {
        msg = asm.push(&w.ctx, f).unwrap().or(msg);
    }
    let ClientStep::Reply(reply) = client.handle(&msg.unwrap(), &mut w.rng).unwrap() else {
        panic!()
    };
    let reply_frames = client_frames(&reply, w.ctx.n()).unwrap();
    send(&mut s, reply_frames.clone()).unwrap();
    assert_eq!(code(send(&mut s, reply_frames)), ErrorCode::UnknownRound);
    assert!(s.is_closed());
    assert_eq!(
        code(s.on_frame(hello(&w, None))),
        ErrorCode::UnexpectedMessage
    );
}
