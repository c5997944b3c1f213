//! Replays the fuzzers' seeds and every input they ever found a bug with (`fuzz/seeds`,
//! `fuzz/regressions`) through the same harness the fuzz targets run, so fixed crashes stay
//! fixed without nightly or libFuzzer in CI.

use std::path::Path;

use client_core::wire::messages::ServerFrame;
use server::fuzz_harness::{decode_frames, drive_session, small_service};

fn inputs(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn seeds_and_past_findings_pass_the_harness() {
    let svc = small_service().unwrap();
    let seeds = inputs("seeds");
    assert!(seeds.len() >= 3, "fuzz/seeds is missing");
    for (name, data) in seeds.iter().chain(&inputs("regressions")) {
        decode_frames(data);
        let answers = drive_session(&svc, data);
        if name.ends_with("hello") {
            assert!(
                matches!(answers.first(), Some(ServerFrame::Hello { .. })),
                "{name}: {answers:?}"
            );
        }
    }
    // The seeds are well-formed frames of both directions.
    let decoded: usize = seeds.iter().map(|(_, d)| decode_frames(d)).sum();
    assert!(decoded >= seeds.len());
}

/// A server hello for the client fuzz target's preset that says the keys are known, then the
/// start of a round: the client becomes ready, sends its input, and takes the round's header.
fn client_seed() -> Vec<u8> {
    use client_core::wire::input::InputSpec;
    use client_core::wire::messages::Purpose;
    use client_core::wire::{encode_frame, PROTOCOL_VERSION};
    use server::fuzz_harness::FUZZ_CLIENT_PARAMS;
    let mut out = Vec::new();
    let hello = ServerFrame::Hello {
        version: PROTOCOL_VERSION,
        preset: FUZZ_CLIENT_PARAMS.name.into(),
        model_id: [0; 32],
        input: InputSpec {
            len: 16,
            period: 16,
            shift: 0,
            copies: 1,
            scale: 2f64.powi(40),
            level: 6,
            gather: None,
        },
        rotations: vec![1, 2],
        rounds: 1,
        round_inputs: Vec::new(),
        keys_known: true,
    };
    encode_frame(&hello, &mut out).unwrap();
    let round = ServerFrame::CiphertextsBegin {
        purpose: Purpose::Relu(0),
        count: 1,
        len: 16,
        sign_scale: 2f64.powi(40),
    };
    encode_frame(&round, &mut out).unwrap();
    out
}

#[test]
fn the_client_session_harness_reaches_an_inference() {
    use client_core::client::Event;
    use server::fuzz_harness::drive_client_session;
    let seed = client_seed();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/client-hello-round");
    if std::env::var_os("HEFUN_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::write(&path, &seed).unwrap();
    }
    assert_eq!(
        std::fs::read(&path).ok(),
        Some(seed.clone()),
        "regenerate {path:?}"
    );
    assert_eq!(
        drive_client_session(&seed),
        vec![Event::Ready, Event::InputSent]
    );
    // Every seed and past finding runs through the client harness too.
    for (_, data) in inputs("seeds").iter().chain(&inputs("regressions")) {
        drive_client_session(data);
    }
}
