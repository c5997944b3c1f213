//! The client's side of the protocol, written once: [`ClientSession`], a sans-I/O state machine
//! over frames, on one of two [`Backend`]s (host: every NTT plan at hand; device: one prime at a
//! time), driven over a byte stream by [`Link`] or in-process by [`InProcessClient`].
//!
//! ```text
//! ClientSession ── hello, key upload, input, rounds, output (session.rs)
//!   ├── key_upload.rs   key id and the key upload, limb by limb
//!   ├── limbs.rs        encryption into frames, decryption as limbs arrive
//!   ├── seed_record.rs  the key seed as a device stores it across reboots
//!   └── backend.rs      per-prime tools: HostBackend | DeviceBackend
//! Link (driver.rs)      the frame loop over embedded-io (UART, TCP)
//! InProcessClient       whole messages ⇄ frames, for a server in the same process
//! ```

mod backend;
mod driver;
mod in_process;
mod key_upload;
mod limbs;
mod seed_record;
mod session;

pub use backend::{Backend, DeviceBackend, HostBackend, Prime};
pub use driver::Link;
pub use in_process::{ClientStep, InProcessClient};
pub use key_upload::KeySeed;
pub use seed_record::{SeedRecordError, SEED_RECORD_BYTES};
pub use session::{ClientSession, Counters, Event, Limits, ServerInfo};
