//! Whole protocol messages, as the server's protocol code builds and consumes them. On the
//! wire each travels as a group of limb frames ([`super::convert`]); the client never builds
//! them (it works limb by limb, `crate::client`).

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::cipher::{Ciphertext, SeededCiphertext};

/// One round of the protocol, server → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundRequest {
    /// Round number, from 0.
    pub round: u32,
    /// Period of the layer's neurons in the slots: signs are read from the first period.
    pub period: u32,
    /// Scale at which the client encodes the signs.
    pub sign_scale: f64,
    /// ReLU messages (one per ciphertext of the layer): masked pre-activations x·r.
    pub relu: Vec<Ciphertext>,
    /// Refresh messages: the layer's ciphertexts plus a random integer-polynomial mask.
    pub refresh: Vec<Ciphertext>,
}

/// The final result, server → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputMessage {
    /// Number of meaningful output values (the first slots).
    pub len: u32,
    /// The output ciphertexts.
    pub output: Vec<Ciphertext>,
}

/// Server → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// A ReLU/refresh round.
    Round(RoundRequest),
    /// The result.
    Output(OutputMessage),
}

/// The client's reply to a round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundReply {
    /// The round answered.
    pub round: u32,
    /// Fresh encryptions of the signs (±1), one per ReLU message.
    pub signs: Vec<SeededCiphertext>,
    /// Top-level re-encryptions of the decrypted refresh messages.
    pub refreshed: Vec<SeededCiphertext>,
}

/// Client → server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// The encrypted input.
    Input(Vec<SeededCiphertext>),
    /// An answer to a round.
    RoundReply(RoundReply),
}

/// Most ciphertexts one message may carry (bounds the work a server can make a client do).
pub const MAX_CIPHERTEXTS_PER_MESSAGE: usize = 64;
