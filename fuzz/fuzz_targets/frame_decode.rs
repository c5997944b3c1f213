//! Frame decoding on arbitrary bytes (`server::fuzz_harness::decode_frames`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    server::fuzz_harness::decode_frames(data);
});
