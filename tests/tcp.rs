//! The server over real loopback sockets: a healthy client infers, reconnects without
//! re-uploading its keys, and keeps inferring while hostile peers get the right error frame (or
//! are dropped); memory does not grow with their number, and the metrics count them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use client_core::client::{ClientStep, InProcessClient, ServerInfo};
use client_core::host::tcp::Connection;
use client_core::keys::PublicKey;
use client_core::wire::assembled::ClientMessage;
use client_core::wire::convert::{client_frames, public_key_frames, ServerMessageAssembler};
use client_core::wire::input::InputSpec;
use client_core::wire::messages::{ClientFrame, KeyId, Purpose, ServerFrame};
use client_core::wire::{
    decode_payload, encode_frame, frame_len, ErrorCode, LEN_PREFIX, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use hefun_tests::world::{world, World};
use server::net::metrics::Metrics;
use server::net::tcp::{Background, Limits};
use server::net::Service;

/// Starts a server on a free loopback port.
fn start(w: &World, limits: Limits) -> (Background, &'static Metrics) {
    start_with_uploads(w, limits, server::net::DEFAULT_MAX_UPLOADS)
}

fn start_with_uploads(w: &World, limits: Limits, uploads: usize) -> (Background, &'static Metrics) {
    let eval = server::eval::Evaluator::new(w.ctx.clone()).unwrap();
    let model =
        server::model::CompiledModel::new(w.model.model().clone(), w.ctx.params().slots()).unwrap();
    let svc: &'static Service = Box::leak(Box::new(
        Service::new(eval, model, w.cfg.clone())
            .unwrap()
            .with_memory_limits(uploads, server::net::DEFAULT_MAX_PREPARED),
    ));
    let metrics: &'static Metrics = Box::leak(Box::default());
    (
        Background::start(svc, "127.0.0.1:0", limits, metrics).unwrap(),
        metrics,
    )
}

/// Reads frames until an error frame or the end of the stream.
fn error_code(stream: &mut TcpStream) -> Option<ErrorCode> {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    loop {
        let mut prefix = [0u8; LEN_PREFIX];
        stream.read_exact(&mut prefix).ok()?;
        let mut body = vec![0u8; frame_len(prefix).ok()?];
        stream.read_exact(&mut body).ok()?;
        if let ServerFrame::Error { code, .. } = decode_payload(&body).ok()? {
            return Some(code);
        }
    }
}

fn healthy_inference(w: &mut World, addr: &str) -> usize {
    let x: Vec<f64> = (0..64)
        .map(|i| ((i * 13) % 11) as f64 / 11.0 - 0.5)
        .collect();
    let want = w.model.model().eval_plain(&x);
    let mut conn = Connection::open(addr, &w.ctx, &w.sk, &w.key_seed, &mut w.rng).unwrap();
    let (out, _) = conn.infer(&x, &mut w.rng).unwrap();
    for (o, e) in out.iter().zip(&want) {
        assert!((o - e).abs() < 1e-2, "{o} vs {e}");
    }
    let uploaded = conn.key_upload as usize;
    conn.close().unwrap();
    uploaded
}

/// A client speaking raw frames, for sequences the real client never sends.
struct Raw(TcpStream);

impl Raw {
    fn connect(addr: &str) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Raw(s)
    }

    fn send(&mut self, frames: &[ClientFrame]) {
        let mut bytes = Vec::new();
        for f in frames {
            encode_frame(f, &mut bytes).unwrap();
        }
        // The server may already have closed; the error frame is what the test reads.
        let _ = self.0.write_all(&bytes);
    }

    fn receive(&mut self) -> ServerFrame {
        let mut prefix = [0u8; LEN_PREFIX];
        self.0.read_exact(&mut prefix).unwrap();
        let mut body = vec![0u8; frame_len(prefix).unwrap()];
        self.0.read_exact(&mut body).unwrap();
        decode_payload(&body).unwrap()
    }

    /// Hello with a key id the server knows; returns the input layout.
    fn hello(w: &World, addr: &str, pk: &PublicKey) -> (Self, InputSpec) {
        let mut raw = Self::connect(addr);
        raw.send(&[hello(w, Some(pk.key_id(&w.ctx)), PROTOCOL_VERSION)]);
        match raw.receive() {
            ServerFrame::Hello {
                input, keys_known, ..
            } => {
                assert!(keys_known);
                (raw, input)
            }
            other => panic!("expected hello, got {other:?}"),
        }
    }

    fn error_code(&mut self) -> Option<ErrorCode> {
        error_code(&mut self.0)
    }
}

fn hello(w: &World, key_id: Option<KeyId>, version: u16) -> ClientFrame {
    ClientFrame::Hello {
        version,
        presets: vec![w.ctx.params().name().into()],
        key_id,
    }
}

/// Damage done to one frame.
type Corruption = dyn Fn(&mut ClientFrame);

/// The input's frames with one limb replaced by `bad`.
fn input_frames(
    w: &mut World,
    spec: &InputSpec,
    bad: impl Fn(&mut ClientFrame),
) -> Vec<ClientFrame> {
    let mut client = InProcessClient::new(&w.ctx, &w.sk, ServerInfo::in_process(spec.clone(), 2));
    let x = vec![0.25; 64];
    let msg = client.start(&x, &mut w.rng).unwrap();
    let mut frames = client_frames(&msg, w.ctx.n()).unwrap();
    bad(&mut frames[1]);
    frames
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Every hostile case once; each must end with the expected code (or a close).
fn hostile_round(w: &mut World, addr: &str, pk: &PublicKey) {
    // Garbage: "GET " read as a length is far above the frame limit.
    let mut s = Raw::connect(addr);
    s.0.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(s.error_code(), Some(ErrorCode::FrameTooLarge));

    // A frame just over the size limit.
    let mut s = Raw::connect(addr);
    s.0.write_all(&((MAX_FRAME_LEN + 1) as u32).to_le_bytes())
        .unwrap();
    assert_eq!(s.error_code(), Some(ErrorCode::FrameTooLarge));

    // A well-sized frame of garbage, and an unknown message type (variant 200).
    let mut s = Raw::connect(addr);
    s.0.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff]).unwrap();
    assert_eq!(s.error_code(), Some(ErrorCode::Malformed));
    let mut s = Raw::connect(addr);
    s.0.write_all(&[2, 0, 0, 0, 0xc8, 0x01]).unwrap();
    assert_eq!(s.error_code(), Some(ErrorCode::Malformed));

    // A truncated frame, then silence: the handshake timeout ends it.
    let mut s = Raw::connect(addr);
    s.0.write_all(&[100, 0, 0, 0, 1, 2]).unwrap();
    assert_eq!(s.error_code(), Some(ErrorCode::Timeout));

    // A client that sends nothing at all.
    let mut s = Raw::connect(addr);
    assert_eq!(s.error_code(), Some(ErrorCode::Timeout));

    // A client that disconnects mid-frame.
    let mut s = Raw::connect(addr);
    s.0.write_all(&[100, 0, 0]).unwrap();
    drop(s);

    // Wrong version.
    let mut s = Raw::connect(addr);
    s.send(&[hello(w, None, PROTOCOL_VERSION + 1)]);
    assert_eq!(s.error_code(), Some(ErrorCode::UnsupportedVersion));

    // Key upload limbs out of order, duplicated, and missing (done before the keys are all in).
    let pk_frames = public_key_frames(pk, w.ctx.n());
    let mut swapped = pk_frames.clone();
    swapped.swap(0, 1);
    let mut duplicated = pk_frames.clone();
    duplicated.insert(1, pk_frames[0].clone());
    let mut missing = pk_frames.clone();
    missing.push(ClientFrame::KeysDone {
        key_id: pk.key_id(&w.ctx),
    });
    for frames in [swapped, duplicated, missing] {
        let mut s = Raw::connect(addr);
        s.send(&[hello(w, None, PROTOCOL_VERSION)]);
        s.send(&frames);
        assert_eq!(s.error_code(), Some(ErrorCode::BadKey));
    }

    // The input ciphertext at the wrong level, with a limb of the wrong length, with residues
    // not below their primes, and more ciphertexts than a session may hold.
    let n = w.ctx.n();
    let cases: Vec<(Box<Corruption>, ErrorCode)> = vec![
        (
            Box::new(|f| {
                if let ClientFrame::SeededLimb { limbs, .. } = f {
                    *limbs += 1;
                }
            }),
            ErrorCode::BadCiphertext,
        ),
        (
            Box::new(|f| {
                if let ClientFrame::SeededLimb { limb, .. } = f {
                    limb.words.pop();
                }
            }),
            ErrorCode::BadCiphertext,
        ),
        (
            Box::new(move |f| {
                if let ClientFrame::SeededLimb { limb, .. } = f {
                    limb.words = vec![u64::MAX >> 1; n];
                }
            }),
            ErrorCode::BadCiphertext,
        ),
    ];
    for (bad, code) in cases {
        let (mut s, spec) = Raw::hello(w, addr, pk);
        let frames = input_frames(w, &spec, bad);
        s.send(&frames);
        assert_eq!(s.error_code(), Some(code));
    }
    let (mut s, _) = Raw::hello(w, addr, pk);
    s.send(&[ClientFrame::CiphertextsBegin {
        purpose: Purpose::Input,
        count: 64,
    }]);
    assert_eq!(s.error_code(), Some(ErrorCode::LimitExceeded));

    // A reply to a round that was not asked, a client that leaves mid-round, and one that never
    // answers its round.
    for (leave, silent) in [(false, false), (true, false), (false, true)] {
        let (mut s, spec) = Raw::hello(w, addr, pk);
        let rounds = w.model.rounds() as u32;
        let mut client = InProcessClient::new(&w.ctx, &w.sk, ServerInfo::in_process(spec, rounds));
        let msg = client.start(&[0.5; 64], &mut w.rng).unwrap();
        s.send(&client_frames(&msg, n).unwrap());
        let mut asm = ServerMessageAssembler::default();
        let round = loop {
            if let Some(m) = asm.push(&w.ctx, s.receive()).unwrap() {
                break m;
            }
        };
        if leave {
            drop(s);
            continue;
        }
        if silent {
            assert_eq!(s.error_code(), Some(ErrorCode::Timeout));
            continue;
        }
        let ClientStep::Reply(ClientMessage::RoundReply(mut reply)) =
            client.handle(&round, &mut w.rng).unwrap()
        else {
            panic!("expected a round reply");
        };
        reply.round += 7;
        s.send(&client_frames(&ClientMessage::RoundReply(reply), n).unwrap());
        assert_eq!(s.error_code(), Some(ErrorCode::UnknownRound));
    }
}

#[test]
fn loopback_sessions_and_broken_peers() {
    let mut w = world();
    let limits = Limits {
        handshake_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(5),
        round_timeout: Duration::from_secs(1),
        max_message_bytes: 4 << 20,
        ..Limits::default()
    };
    let (server, metrics) = start(&w, limits);
    let addr = server.addr.to_string();
    let pk = PublicKey::generate(&w.ctx, &w.sk, &mut w.key_seed.public_key_rng()).unwrap();

    // First session uploads the keys (the size `hefun inspect` predicts, to 1 %), the second
    // does not.
    let uploaded = healthy_inference(&mut w, &addr) as f64;
    let predicted = w.model.key_upload_bytes(w.ctx.params()).unwrap() as f64;
    assert!(
        uploaded > 1e6 && (uploaded - predicted).abs() < 0.01 * predicted,
        "uploaded {uploaded} bytes, predicted {predicted}"
    );
    assert_eq!(healthy_inference(&mut w, &addr), 0);

    // A healthy client keeps inferring while the hostile ones come and go.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let healthy = {
        let (addr, stop) = (addr.clone(), stop.clone());
        let mut w2 = world();
        std::thread::spawn(move || {
            let mut done = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || done == 0 {
                assert_eq!(healthy_inference(&mut w2, &addr), 0);
                done += 1;
            }
            done
        })
    };
    hostile_round(&mut w, &addr, &pk);
    // Memory must not grow with the number of broken sessions.
    let before = rss_bytes();
    for _ in 0..3 {
        hostile_round(&mut w, &addr, &pk);
    }
    let grown = rss_bytes().saturating_sub(before);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let healthy_done = healthy.join().unwrap();
    assert!(healthy_done >= 1);
    assert!(
        grown < 64 << 20,
        "resident memory grew by {} MB over 3 rounds of hostile sessions",
        grown >> 20
    );

    // The server is still serving, and counted what happened.
    assert_eq!(healthy_inference(&mut w, &addr), 0);
    let text = metrics.render();
    // Errors per hostile round, times the four rounds.
    for (code, per_round) in [
        ("FrameTooLarge", 2),
        ("Malformed", 2),
        ("Timeout", 3),
        ("UnsupportedVersion", 1),
        ("BadKey", 3),
        ("BadCiphertext", 3),
        ("LimitExceeded", 1),
        ("UnknownRound", 1),
    ] {
        let line = format!("hefun_errors_total{{code=\"{code}\"}} {}", 4 * per_round);
        assert!(text.contains(&line), "no `{line}` in\n{text}");
    }
    // The server counts an inference once its output is written, so the client may read the
    // output a moment before the count moves: wait for it (and never past it).
    let inferences = 3 + healthy_done as u64;
    let counted = format!("hefun_inferences_total {inferences}\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !metrics.render().contains(&counted) {
        assert!(
            std::time::Instant::now() < deadline,
            "no `{counted}` in\n{}",
            metrics.render()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(text.contains("hefun_key_uploads_total 1\n"), "{text}");
    // Every session, hostile or not, has ended and released its slot.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !metrics.render().contains("hefun_sessions_active 0\n") {
        assert!(std::time::Instant::now() < deadline, "{}", metrics.render());
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop().unwrap();
}

#[test]
fn busy_server_refuses_extra_sessions_and_uploads() {
    let w = world();
    let limits = Limits {
        max_sessions: 2,
        ..Limits::default()
    };
    let (server, _) = start_with_uploads(&w, limits, 1);
    let addr = server.addr.to_string();
    // The first session starts an upload: the only upload permit.
    let mut first = Raw::connect(&addr);
    first.send(&[hello(&w, None, PROTOCOL_VERSION)]);
    assert!(matches!(first.receive(), ServerFrame::Hello { .. }));
    // A second upload at the same time is refused.
    let mut second = Raw::connect(&addr);
    second.send(&[hello(&w, None, PROTOCOL_VERSION)]);
    assert_eq!(second.error_code(), Some(ErrorCode::Busy));
    // Sessions beyond the limit are refused at accept.
    let _third = Raw::connect(&addr);
    let mut fourth = Raw::connect(&addr);
    assert_eq!(fourth.error_code(), Some(ErrorCode::Busy));
    server.stop().unwrap();
}
