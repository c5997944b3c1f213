//! The host's client (`std` feature): a [`ClientSession`](crate::client::ClientSession) over a
//! TCP socket with retry classification ([`tcp`]), and the key file a host client keeps its key
//! seed in ([`key_file`]).

pub mod key_file;
pub mod tcp;
