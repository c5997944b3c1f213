//! Replays the fuzzers' seeds and every input they ever found a bug with (`fuzz/seeds`,
//! `fuzz/regressions`) through the same harness the fuzz targets run, so fixed crashes stay
//! fixed without nightly or libFuzzer in CI.

use std::path::Path;

use client_core::wire::messages::ServerFrame;
use server::net::fuzz_harness::{decode_frames, drive_session, small_service};

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
