//! The server's session logic on arbitrary frame sequences
//! (`fuzz_harness::drive_session`): nothing may panic, and an error must end the
//! session. The service is built once: a small two-layer model at the hefun preset.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use server::fuzz_harness;
use server::net::Service;

fn service() -> &'static Service {
    static SVC: OnceLock<Service> = OnceLock::new();
    SVC.get_or_init(|| fuzz_harness::small_service().expect("service"))
}

fuzz_target!(|data: &[u8]| {
    fuzz_harness::drive_session(service(), data);
});
