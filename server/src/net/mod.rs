//! The networked service's protocol logic, independent of the transport: what a session does
//! with each frame (see `docs/protocol.md`).

mod key_upload;
mod session;

pub use key_upload::{KeyUpload, KeyUploadError};
pub use session::{ServerSession, Service, SessionError};
