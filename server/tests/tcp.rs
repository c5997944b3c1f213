//! The server over real loopback sockets: a healthy client infers, reconnects without
//! re-uploading its keys, and broken peers get an error frame (or are dropped) while the server
//! keeps serving.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use client_core::keys::PublicKey;
use client_core::wire::messages::ServerFrame;
use client_core::wire::{decode_payload, frame_len, ErrorCode, LEN_PREFIX};
use common::world::{world, World};
use server::net::client::Connection;
use server::net::tcp::{serve, Limits};
use server::net::Service;

/// Starts a server on a free loopback port; returns its address and a shutdown handle.
fn start(w: &World, limits: Limits) -> (String, tokio::sync::oneshot::Sender<()>) {
    let eval = server::eval::Evaluator::new(w.ctx.clone()).unwrap();
    let model =
        server::protocol::CompiledModel::new(w.model.model().clone(), w.ctx.params().slots())
            .unwrap();
    let svc: &'static Service =
        Box::leak(Box::new(Service::new(eval, model, w.cfg.clone()).unwrap()));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            serve(svc, listener, limits, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
    });
    (addr_rx.recv().unwrap().to_string(), tx)
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

fn healthy_inference(w: &mut World, addr: &str, pk: &PublicKey) -> usize {
    let x: Vec<f64> = (0..64)
        .map(|i| ((i * 13) % 11) as f64 / 11.0 - 0.5)
        .collect();
    let want = w.model.model().eval_plain(&x);
    let mut conn = Connection::open(addr, &w.ctx, &w.encoder, &w.sk, pk, &mut w.rng).unwrap();
    let (out, _) = conn.infer(&x, &mut w.rng).unwrap();
    for (o, e) in out.iter().zip(&want) {
        assert!((o - e).abs() < 1e-2, "{o} vs {e}");
    }
    let uploaded = conn.key_upload;
    conn.close().unwrap();
    uploaded
}

#[test]
fn loopback_sessions_and_broken_peers() {
    let mut w = world();
    let limits = Limits {
        handshake_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (addr, stop) = start(&w, limits);
    let pk = PublicKey::generate(&w.ctx, &w.sk, &mut w.rng).unwrap();

    // First session uploads the keys, the second does not.
    assert!(healthy_inference(&mut w, &addr, &pk) > 1_000_000);
    assert_eq!(healthy_inference(&mut w, &addr, &pk), 0);

    // Garbage: "GET " read as a length is far above the frame limit.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(error_code(&mut s), Some(ErrorCode::FrameTooLarge));

    // A well-sized frame of garbage.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff]).unwrap();
    assert_eq!(error_code(&mut s), Some(ErrorCode::Malformed));

    // A truncated frame, then silence: the handshake timeout ends it.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(&[100, 0, 0, 0, 1, 2]).unwrap();
    assert_eq!(error_code(&mut s), Some(ErrorCode::Timeout));

    // A client that disconnects mid-frame.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(&[100, 0, 0]).unwrap();
    drop(s);

    // The server is still serving.
    assert_eq!(healthy_inference(&mut w, &addr, &pk), 0);
    stop.send(()).unwrap();
}
