//! The messages of a session, one per frame. Objects larger than a frame travel one limb per
//! frame ([`Limb`]), so neither side has to hold a whole key or ciphertext to send or receive it.
//!
//! A session: `Hello` ⇄ `Hello`; if the server does not know the client's key id, the public key
//! and the switching keys it listed, limb by limb, then `KeysDone`; then any number of
//! inferences, each an input, one round per hidden layer, and the output. See
//! `docs/protocol.md` for the state machine and sizes.
//!
//! Every variable-length field has a limit checked by `validate` right after decoding (the frame
//! limit already bounds allocation; these bound the work a message can ask for).

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::input::InputSpec;
use super::ErrorCode;
use crate::error::{Error, Result};
use crate::keys::{KeyChunk, KeyKind};
use crate::sampling::Seed;

/// Identifies a client's key set: a hash of its public key.
pub type KeyId = [u8; 32];

/// Most presets a client may offer.
pub const MAX_PRESETS: usize = 8;
/// Longest preset name.
pub const MAX_NAME_LEN: usize = 32;
/// Most rotation keys a server may ask for.
pub const MAX_ROTATIONS: usize = 256;
/// Longest human-readable error message.
pub const MAX_MESSAGE_LEN: usize = 256;
/// Most ciphertexts in one protocol message.
pub const MAX_CIPHERTEXTS: u16 = 64;
/// Most rounds (hidden layers) a server may announce.
pub const MAX_ROUNDS: usize = 64;

/// One limb of a polynomial (NTT form): little-endian 64-bit words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limb {
    /// Position of the limb in the polynomial's basis.
    pub index: u16,
    /// The residues.
    #[serde(with = "crate::ring::serde_limbs")]
    pub words: Vec<u64>,
}

/// What a group of ciphertexts is for.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    /// The encrypted input of an inference.
    Input,
    /// Signs of round `n` (client → server).
    Signs(u32),
    /// Re-encrypted refresh messages of round `n` (client → server).
    Refreshed(u32),
    /// ReLU messages of round `n` (server → client).
    Relu(u32),
    /// Refresh messages of round `n` (server → client).
    Refresh(u32),
    /// The output (server → client).
    Output,
}

/// Client → server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// Opens the session.
    Hello {
        /// [`super::PROTOCOL_VERSION`] of the client.
        version: u16,
        /// Presets the client can run, best first.
        presets: Vec<String>,
        /// The key set the client uploaded before, if any.
        key_id: Option<KeyId>,
    },
    /// One limb of the public key's `b` (top level); `a` is expanded from `seed`.
    PublicKeyLimb {
        /// Seed of `a`.
        seed: Seed,
        /// The limb.
        limb: Limb,
    },
    /// Starts a switching key; its chunks follow in (digit, limb) order.
    KeyBegin {
        /// Relinearisation or a Galois element.
        kind: KeyKind,
        /// Seed of the key's `a` polynomials.
        seed: Seed,
    },
    /// One limb of one digit of the current switching key.
    KeyChunk(KeyChunk),
    /// All keys sent; `key_id` must match the hash of the public key.
    KeysDone {
        /// The key id the client will use from now on.
        key_id: KeyId,
    },
    /// Starts `count` seeded ciphertexts for `purpose`.
    CiphertextsBegin {
        /// What they are.
        purpose: Purpose,
        /// How many.
        count: u16,
    },
    /// One limb of c0 of a seeded ciphertext (c1 is expanded from `seed`).
    SeededLimb {
        /// Index of the ciphertext in its group.
        ct: u16,
        /// Seed of c1.
        seed: Seed,
        /// Scale of the message.
        scale: f64,
        /// Number of limbs (the ciphertext's level + 1).
        limbs: u16,
        /// The limb.
        limb: Limb,
    },
    /// Ends the session.
    Bye,
}

/// Server → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// Answers the client's hello.
    Hello {
        /// [`super::PROTOCOL_VERSION`] of the server.
        version: u16,
        /// The preset chosen among the client's.
        preset: String,
        /// Identifies the model (a hash of its weights); the client cannot learn more from it.
        model_id: [u8; 32],
        /// How to lay out the input.
        input: InputSpec,
        /// Rotation steps whose Galois keys the server needs.
        rotations: Vec<i64>,
        /// Rounds per inference.
        rounds: u32,
        /// For a preset with the sign-magnitude round, how to lay out each round's reply
        /// (one per round: the pair (v, |v|) as the next layer's input); empty otherwise.
        round_inputs: Vec<InputSpec>,
        /// Whether the server already holds the client's keys (skip the upload).
        keys_known: bool,
    },
    /// The keys were received and checked.
    KeysAccepted,
    /// Starts `count` ciphertexts for `purpose`. For ReLU messages, `period` and `sign_scale`
    /// say how to answer; for the output, `len` is the number of values.
    CiphertextsBegin {
        /// What they are.
        purpose: Purpose,
        /// How many.
        count: u16,
        /// Period of the neurons in the slots (rounds) or number of outputs (output).
        len: u32,
        /// Scale at which the client encodes its signs (rounds).
        sign_scale: f64,
    },
    /// One limb of one component of a ciphertext.
    CiphertextLimb {
        /// Index of the ciphertext in its group.
        ct: u16,
        /// 0 for c0, 1 for c1.
        component: u8,
        /// Scale of the message.
        scale: f64,
        /// Number of limbs.
        limbs: u16,
        /// The limb.
        limb: Limb,
    },
    /// The session ends with an error.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// Human-readable detail (no secrets, no ciphertext bytes).
        message: String,
    },
}

fn check(ok: bool, what: &'static str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Decode(what))
    }
}

impl ClientFrame {
    /// Checks the limits on variable-length fields.
    pub fn validate(&self) -> Result<()> {
        match self {
            ClientFrame::Hello { presets, .. } => {
                check(presets.len() <= MAX_PRESETS, "too many presets")?;
                check(
                    presets.iter().all(|p| p.len() <= MAX_NAME_LEN),
                    "preset name too long",
                )
            }
            ClientFrame::CiphertextsBegin { count, .. } => check(
                (1..=MAX_CIPHERTEXTS).contains(count),
                "bad ciphertext count",
            ),
            ClientFrame::SeededLimb {
                ct, limbs, limb, ..
            } => {
                check(*ct < MAX_CIPHERTEXTS, "ciphertext index out of range")?;
                check(limb.index < *limbs, "limb index out of range")
            }
            _ => Ok(()),
        }
    }
}

impl ServerFrame {
    /// Checks the limits on variable-length fields.
    pub fn validate(&self) -> Result<()> {
        match self {
            ServerFrame::Hello {
                preset,
                rotations,
                round_inputs,
                ..
            } => {
                check(preset.len() <= MAX_NAME_LEN, "preset name too long")?;
                check(rotations.len() <= MAX_ROTATIONS, "too many rotation keys")?;
                check(round_inputs.len() <= MAX_ROUNDS, "too many rounds")
            }
            ServerFrame::CiphertextsBegin { count, .. } => check(
                (1..=MAX_CIPHERTEXTS).contains(count),
                "bad ciphertext count",
            ),
            ServerFrame::CiphertextLimb {
                ct,
                component,
                limbs,
                limb,
                ..
            } => {
                check(*ct < MAX_CIPHERTEXTS, "ciphertext index out of range")?;
                check(*component < 2, "bad ciphertext component")?;
                check(limb.index < *limbs, "limb index out of range")
            }
            ServerFrame::Error { message, .. } => {
                check(message.len() <= MAX_MESSAGE_LEN, "error message too long")
            }
            _ => Ok(()),
        }
    }

    /// An error frame, with the message cut to [`MAX_MESSAGE_LEN`] bytes at a character boundary.
    pub fn error(code: ErrorCode, message: &str) -> Self {
        let mut end = message.len().min(MAX_MESSAGE_LEN);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        ServerFrame::Error {
            code,
            message: String::from(&message[..end]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode_payload, encode_frame, split_frame, MAX_FRAME_LEN};
    use super::*;
    use alloc::vec;

    fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + core::fmt::Debug>(
        msg: &T,
    ) -> usize {
        let mut buf = Vec::new();
        encode_frame(msg, &mut buf).unwrap();
        let (payload, rest) = split_frame(&buf).unwrap().unwrap();
        assert!(rest.is_empty());
        assert_eq!(&decode_payload::<T>(payload).unwrap(), msg);
        buf.len()
    }

    #[test]
    fn a_limb_at_n16384_fits_one_frame() {
        let limb = Limb {
            index: 6,
            words: vec![(1 << 50) - 1; 16384],
        };
        let frame = ServerFrame::CiphertextLimb {
            ct: 0,
            component: 1,
            scale: 2f64.powi(88),
            limbs: 7,
            limb: limb.clone(),
        };
        let len = round_trip(&frame);
        // 50 bits per word plus a few bytes of header; a 64-bit limb fits as well.
        assert!(len > 16384 * 50 / 8 && len < 16384 * 50 / 8 + 64, "{len}");
        let wide = ServerFrame::CiphertextLimb {
            ct: 0,
            component: 1,
            scale: 1.0,
            limbs: 7,
            limb: Limb {
                index: 0,
                words: vec![u64::MAX; 16384],
            },
        };
        assert!(round_trip(&wide) <= MAX_FRAME_LEN);
        let seeded = ClientFrame::SeededLimb {
            ct: 0,
            seed: [3; 32],
            scale: 1.0,
            limbs: 7,
            limb,
        };
        assert!(round_trip(&seeded) < 16384 * 50 / 8 + 96);
        frame.validate().unwrap();
        seeded.validate().unwrap();
    }

    #[test]
    fn limits_are_enforced() {
        let hello = ClientFrame::Hello {
            version: 1,
            presets: vec![String::from("x"); MAX_PRESETS + 1],
            key_id: None,
        };
        round_trip(&hello);
        assert!(hello.validate().is_err());
        let bad_limb = ServerFrame::CiphertextLimb {
            ct: 0,
            component: 0,
            scale: 1.0,
            limbs: 3,
            limb: Limb {
                index: 3,
                words: vec![],
            },
        };
        assert!(bad_limb.validate().is_err());
        let bad_component = ServerFrame::CiphertextLimb {
            ct: 0,
            component: 2,
            scale: 1.0,
            limbs: 3,
            limb: Limb {
                index: 0,
                words: vec![],
            },
        };
        assert!(bad_component.validate().is_err());
        let none = ClientFrame::CiphertextsBegin {
            purpose: Purpose::Input,
            count: 0,
        };
        assert!(none.validate().is_err());
        // Long messages are cut, even inside a multi-byte character.
        let e = ServerFrame::error(ErrorCode::Internal, &"é".repeat(200));
        e.validate().unwrap();
        let ServerFrame::Error { message, .. } = round_trip_owned(e) else {
            panic!()
        };
        assert!(message.len() <= MAX_MESSAGE_LEN && message.starts_with('é'));
    }

    fn round_trip_owned(msg: ServerFrame) -> ServerFrame {
        round_trip(&msg);
        msg
    }

    #[test]
    fn limbs_cut_short_are_rejected() {
        let mut buf = Vec::new();
        encode_frame(
            &ClientFrame::PublicKeyLimb {
                seed: [0; 32],
                limb: Limb {
                    index: 0,
                    words: vec![5, 6],
                },
            },
            &mut buf,
        )
        .unwrap();
        // Two 3-bit words: one byte. Drop it and fix up the byte-string length: the header's
        // count and width no longer match the bytes.
        let payload = &buf[super::super::LEN_PREFIX..];
        let mut cut = payload[..payload.len() - 1].to_vec();
        let len_pos = cut.len() - 1;
        assert_eq!(cut[len_pos], 1);
        cut[len_pos] = 0;
        assert!(decode_payload::<ClientFrame>(&cut).is_err());
    }
}
