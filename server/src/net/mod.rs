//! The networked service's protocol logic, independent of the transport: what a session does
//! with each frame (see `docs/protocol.md`).

mod key_store;
mod key_upload;
pub mod metrics;
mod session;
mod slots;
pub mod tcp;

pub use key_store::{KeyStore, KeyStoreError, DEFAULT_MAX_STORED, KEY_STORE_FILE};
pub use key_upload::{KeyUpload, KeyUploadError};
pub use session::{
    ServerSession, Service, SessionError, DEFAULT_KEY_CACHE, DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_PREPARED, DEFAULT_MAX_UPLOADS,
};
