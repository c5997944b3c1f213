//! The networked service's protocol logic, independent of the transport: what a session does
//! with each frame (see `docs/protocol.md`).

pub mod client;
mod key_upload;
mod session;
pub mod tcp;

pub use key_upload::{KeyUpload, KeyUploadError};
pub use session::{ServerSession, Service, SessionError};
