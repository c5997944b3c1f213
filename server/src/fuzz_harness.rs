//! What the fuzz targets run (`fuzz/`), shared with the regression test that replays their
//! findings in CI (`tests/fuzz_regressions.rs`).

use client_core::wire::messages::{ClientFrame, ServerFrame};
use client_core::wire::{decode_payload, encode_frame, read_frame, split_frame};
use serde::de::DeserializeOwned;
use serde::Serialize;

use std::sync::Arc;

use client_core::client::{ClientSession, DeviceBackend, Event, KeySeed};
use client_core::params::{ParamSpec, Params, HEFUN_N16384};
use client_core::rand_core::SeedableRng;
use client_core::ring::Context;
use client_core::sampling::Csprng;

use crate::eval::{Evaluator, Matrix};
use crate::model::{CompiledModel, Layer, Model};
use crate::net::{ServerSession, Service};
use crate::protocol::{ProtocolConfig, ProtocolError};

fn layer(rows: usize, cols: usize, relu: bool) -> Layer {
    let data = (0..rows * cols)
        .map(|i| ((i * 37 % 11) as f64 - 5.0) / 20.0)
        .collect();
    Layer {
        weights: Matrix { rows, cols, data },
        bias: vec![0.1; rows],
        relu,
    }
}

/// A service for a small two-layer model (16 → 8 → 4) at the hefun preset.
pub fn small_service() -> Result<Service, ProtocolError> {
    let params = Params::from_spec(&HEFUN_N16384)?;
    let ctx = Arc::new(Context::new(&params)?);
    let model = Model {
        input_len: 16,
        layers: vec![layer(8, 16, true), layer(4, 8, false)],
        first_conv: None,
    };
    let model = CompiledModel::new(model, params.slots())?;
    let cfg = ProtocolConfig::for_params(&params, 2, 16.0);
    Service::new(Evaluator::new(ctx)?, model, cfg)
}

/// Whatever decodes re-encodes to a frame that decodes to the same bytes again (bytes, not
/// `==`: a NaN scale is not equal to itself). Panics otherwise.
fn roundtrip<T: Serialize + DeserializeOwned>(payload: &[u8]) -> bool {
    let Ok(msg) = decode_payload::<T>(payload) else {
        return false;
    };
    let mut once = Vec::new();
    encode_frame(&msg, &mut once).expect("a decoded message encodes");
    let (body, rest) = split_frame(&once).expect("valid").expect("complete");
    assert!(rest.is_empty());
    let again = decode_payload::<T>(body).expect("re-decodes");
    let mut twice = Vec::new();
    encode_frame(&again, &mut twice).expect("encodes again");
    assert_eq!(once, twice);
    true
}

/// Splits `data` into frames and decodes each as a client and a server message, validating
/// what decodes; also reads `data` with the streaming reader. Returns the frames decoded.
pub fn decode_frames(data: &[u8]) -> usize {
    let mut decoded = 0;
    let mut rest = data;
    while let Ok(Some((payload, tail))) = split_frame(rest) {
        rest = tail;
        decoded += usize::from(roundtrip::<ClientFrame>(payload));
        decoded += usize::from(roundtrip::<ServerFrame>(payload));
        if let Ok(f) = decode_payload::<ClientFrame>(payload) {
            let _ = f.validate();
        }
        if let Ok(f) = decode_payload::<ServerFrame>(payload) {
            let _ = f.validate();
        }
    }
    let mut reader = data;
    let mut buf = Vec::new();
    while read_frame::<_, ClientFrame>(&mut reader, &mut buf).is_ok() {}
    decoded
}

/// Feeds the frames in `data` to a fresh session until one fails to decode, the session errs or
/// it closes. Returns the server frames it answered with.
pub fn drive_session(svc: &Service, data: &[u8]) -> Vec<ServerFrame> {
    let mut session = ServerSession::new(svc, [7; 32]);
    let mut answers = Vec::new();
    let mut rest = data;
    while let Ok(Some((payload, tail))) = split_frame(rest) {
        rest = tail;
        let Ok(frame) = decode_payload::<ClientFrame>(payload) else {
            break;
        };
        match session.on_frame(frame) {
            Ok(frames) => answers.extend(frames),
            Err(e) => {
                answers.push(e.frame());
                break;
            }
        }
        if session.is_closed() {
            break;
        }
        if session.wants_prepare() {
            session.prepare_next();
        }
    }
    answers
}

/// The hefun preset's structure on a ring small enough to fuzz the client quickly.
pub const FUZZ_CLIENT_PARAMS: ParamSpec = HEFUN_N16384.on_ring("fuzz-hefun-n1024", 10);

/// Feeds the frames in `data` to a fresh device client session (after its hello) until one
/// fails to decode or the session errs; whatever the session sends is discarded. Between
/// frames, a session that becomes ready starts an inference, so round and output frames are
/// reachable. Returns the events other than `Pending`.
pub fn drive_client_session(data: &[u8]) -> Vec<Event> {
    let Ok(params) = Params::from_spec_insecure(&FUZZ_CLIENT_PARAMS) else {
        return Vec::new();
    };
    let seed = KeySeed::new(zeroize::Zeroizing::new([3; 32]));
    let Ok(backend) = DeviceBackend::new_insecure(&params, &mut seed.secret_key_rng()) else {
        return Vec::new();
    };
    let mut session = ClientSession::new(backend, seed.public_key_rng());
    let mut rng = Csprng::from_seed([4; 32]);
    let mut events = Vec::new();
    if session.hello(|_| Ok(())).is_err() {
        return events;
    }
    let mut rest = data;
    while let Ok(Some((payload, tail))) = split_frame(rest) {
        rest = tail;
        let Ok(frame) = decode_payload::<ServerFrame>(payload) else {
            break;
        };
        match session.on_frame(frame, &mut rng, |_| Ok(())) {
            Ok(Event::Pending) => {}
            Ok(event) => events.push(event),
            Err(_) => break,
        }
        if session.is_ready() {
            let len = session.server().map_or(0, |s| s.input.len as usize);
            // A hostile hello may ask for any input length: stay within the frame's bounds.
            if len > 1 << 16 {
                break;
            }
            match session.start_inference(&vec![0.25; len], &mut rng, |_| Ok(())) {
                Ok(event) => events.push(event),
                Err(_) => break,
            }
        }
    }
    events
}
