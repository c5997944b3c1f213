//! A whole inference with every message cut into limb frames, encoded to bytes, decoded and
//! reassembled — and the assemblers refusing limbs that are out of order or out of range.

use client_core::client::{ClientStep, InProcessClient, ServerInfo};
use client_core::wire::assembled::{ClientMessage, ServerMessage};
use client_core::wire::convert::{
    client_frames, server_frames, ClientMessageAssembler, ServerMessageAssembler,
};
use client_core::wire::messages::{ClientFrame, ServerFrame};
use client_core::wire::{decode_payload, encode_frame, split_frame, MAX_FRAME_LEN};
use hefun_tests::world::world;
use server::protocol::Inference;

/// Through bytes and back, checking every frame's size.
fn over_the_wire<T: serde::Serialize + serde::de::DeserializeOwned>(frames: Vec<T>) -> Vec<T> {
    let mut bytes = Vec::new();
    for f in &frames {
        encode_frame(f, &mut bytes).unwrap();
    }
    let mut rest = &bytes[..];
    let mut out = Vec::new();
    while let Some((payload, tail)) = split_frame(rest).unwrap() {
        assert!(payload.len() <= MAX_FRAME_LEN);
        out.push(decode_payload(payload).unwrap());
        rest = tail;
    }
    assert!(rest.is_empty());
    out
}

fn to_server(w: &hefun_tests::world::World, msg: &ClientMessage) -> ClientMessage {
    let mut asm = ClientMessageAssembler::default();
    let frames = over_the_wire(client_frames(msg, w.ctx.n()).unwrap());
    let last = frames.len() - 1;
    let mut result = None;
    for (i, f) in frames.into_iter().enumerate() {
        let got = asm.push(&w.ctx, f).unwrap();
        assert_eq!(
            got.is_some(),
            i == last,
            "message complete only at the last frame"
        );
        result = got;
    }
    result.unwrap()
}

fn to_client(w: &hefun_tests::world::World, msg: &ServerMessage) -> ServerMessage {
    let mut asm = ServerMessageAssembler::default();
    let mut result = None;
    for f in over_the_wire(server_frames(msg, w.ctx.n()).unwrap()) {
        result = asm.push(&w.ctx, f).unwrap().or(result);
    }
    result.unwrap()
}

#[test]
fn an_inference_through_frames_matches_the_plaintext_model() {
    let mut w = world();
    let x: Vec<f64> = (0..64)
        .map(|i| ((i * 37) % 17) as f64 / 17.0 - 0.5)
        .collect();
    let mut server = Inference::new(&w.eval, w.keys.clone(), &w.model, &w.cfg, [3; 32]);
    let info = ServerInfo::in_process(server.input_spec(), w.model.rounds() as u32);
    let mut client = InProcessClient::new(&w.ctx, &w.sk, info);
    let first = client.start(&x, &mut w.rng).unwrap();
    let ClientMessage::Input(input) = to_server(&w, &first) else {
        panic!("expected the input")
    };
    let mut msg = server.on_input(&input).unwrap();
    let output = loop {
        let received = to_client(&w, &msg);
        assert_eq!(
            received, msg,
            "server messages survive the frames unchanged"
        );
        match client.handle(&received, &mut w.rng).unwrap() {
            ClientStep::Done(out) => break out,
            ClientStep::Reply(reply) => {
                let ClientMessage::RoundReply(r) = to_server(&w, &reply) else {
                    panic!("expected a round reply")
                };
                msg = server.on_reply(&r).unwrap();
            }
        }
    };
    let want = w.model.model().eval_plain(&x);
    for (o, e) in output.iter().zip(&want) {
        assert!((o - e).abs() < 1e-2, "{o} vs {e}");
    }
}

#[test]
fn limbs_out_of_order_or_out_of_range_are_refused() {
    let mut w = world();
    let server = Inference::new(&w.eval, w.keys.clone(), &w.model, &w.cfg, [4; 32]);
    let info = ServerInfo::in_process(server.input_spec(), w.model.rounds() as u32);
    let mut client = InProcessClient::new(&w.ctx, &w.sk, info);
    let x = vec![0.25; 64];
    let msg = client.start(&x, &mut w.rng).unwrap();
    let frames = client_frames(&msg, w.ctx.n()).unwrap();
    assert!(frames.len() >= 3);

    let feed = |frames: Vec<ClientFrame>| {
        let mut asm = ClientMessageAssembler::default();
        frames
            .into_iter()
            .try_for_each(|f| asm.push(&w.ctx, f).map(|_| ()))
    };
    feed(frames.clone()).unwrap();
    // Swapped, repeated and missing limbs.
    let mut swapped = frames.clone();
    swapped.swap(1, 2);
    assert!(feed(swapped).is_err());
    let mut repeated = frames.clone();
    repeated.insert(2, frames[1].clone());
    assert!(feed(repeated).is_err());
    let mut missing = frames.clone();
    missing.remove(1);
    assert!(feed(missing).is_err());
    // A residue not below its prime.
    let mut bad = frames.clone();
    if let ClientFrame::SeededLimb { limb, .. } = &mut bad[1] {
        limb.words[0] = u64::MAX;
    }
    assert!(feed(bad).is_err());
    // More limbs than the top level has, and a limb with the wrong length.
    let mut too_many = frames.clone();
    for f in too_many.iter_mut().skip(1) {
        if let ClientFrame::SeededLimb { limbs, .. } = f {
            *limbs = 99;
        }
    }
    assert!(feed(too_many).is_err());
    let mut short = frames.clone();
    if let ClientFrame::SeededLimb { limb, .. } = &mut short[1] {
        limb.words.truncate(5);
    }
    assert!(feed(short).is_err());
    // A limb before any group.
    assert!(feed(frames[1..].to_vec()).is_err());
    // A refreshed group without signs is a sign-magnitude round's reply: the frames are fine,
    // and a refresh-round inference refuses the reply (`Inference::on_reply`).
    let refreshed_first = ClientFrame::CiphertextsBegin {
        purpose: client_core::wire::messages::Purpose::Refreshed(0),
        count: 1,
    };
    assert!(feed(vec![refreshed_first]).is_ok());
    // The server side refuses a limb of a third component.
    let mut asm = ServerMessageAssembler::default();
    asm.push(
        &w.ctx,
        ServerFrame::CiphertextsBegin {
            purpose: client_core::wire::messages::Purpose::Output,
            count: 1,
            len: 10,
            sign_scale: 0.0,
        },
    )
    .unwrap();
    let third = ServerFrame::CiphertextLimb {
        ct: 0,
        component: 2,
        scale: 1.0,
        limbs: 1,
        limb: client_core::wire::messages::Limb {
            index: 0,
            words: vec![0; w.ctx.n()],
        },
    };
    assert!(asm.push(&w.ctx, third).is_err());
}
