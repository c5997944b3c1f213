//! The client's session logic (`ClientSession` on the device backend) on arbitrary server frame
//! sequences (`fuzz_harness::drive_client_session`): nothing may panic or allocate without
//! bound; an error ends the session.
#![no_main]

use libfuzzer_sys::fuzz_target;
use server::fuzz_harness;

fuzz_target!(|data: &[u8]| {
    fuzz_harness::drive_client_session(data);
});
