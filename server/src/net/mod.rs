//! The networked service's protocol logic, independent of the transport: what a session does
//! with each frame (see `docs/protocol.md`).

mod key_upload;

pub use key_upload::{KeyUpload, KeyUploadError};
