//! The crate's error type. Every operation that touches data from outside (the network, a file,
//! a caller) reports problems through it instead of panicking.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::ring::Basis;

/// Errors of the CKKS client core.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The parameter set exceeds the 128-bit security bound of its ring dimension.
    InsecureParams {
        /// log2 of the ring dimension.
        log_n: u32,
        /// log2(QP) of the parameter set.
        log_qp: f64,
        /// The HE-standard bound on log2(QP) for 128-bit security with ternary secrets.
        bound: u32,
    },
    /// The ring dimension has no entry in the security table (it is too small or too large).
    UnsupportedRingDimension {
        /// log2 of the ring dimension.
        log_n: u32,
    },
    /// A parameter set is malformed; the message names the field.
    InvalidParams(&'static str),
    /// Not enough NTT-friendly primes of the requested size exist.
    NoPrime {
        /// Requested bit size.
        bits: u32,
    },
    /// Two operands (or an operand and the expected shape) live over different RNS bases.
    BasisMismatch {
        /// The basis that was expected.
        expected: Basis,
        /// The basis that was found.
        found: Basis,
    },
    /// A buffer has the wrong number of words.
    LengthMismatch {
        /// Expected length.
        expected: usize,
        /// Found length.
        found: usize,
    },
    /// A residue is not below its modulus.
    ResidueOutOfRange {
        /// Index of the limb (position in the basis).
        limb: usize,
        /// Index of the coefficient within the limb.
        index: usize,
    },
    /// A Galois element is even or not below 2N.
    InvalidGaloisElement(u64),
    /// More values were given than the plaintext has slots.
    TooManySlots {
        /// Slot count.
        max: usize,
        /// Number of values given.
        found: usize,
    },
    /// A value (after scaling) does not fit in the modulus, or is not finite.
    ValueOutOfRange,
    /// A scale is not a positive finite number.
    InvalidScale,
    /// A level above the top of the modulus chain (or a basis beyond the context) was requested.
    LevelOutOfRange {
        /// Requested level.
        level: usize,
        /// Highest available level.
        max: usize,
    },
    /// An index (digit or limb) is out of range.
    IndexOutOfRange {
        /// What the index addresses.
        what: &'static str,
        /// The index.
        index: usize,
        /// The number of valid entries.
        len: usize,
    },
    /// A serialized object could not be decoded.
    Decode(&'static str),
    /// A frame's length is zero or above the protocol's maximum.
    FrameTooLarge {
        /// The announced or encoded payload length.
        len: usize,
    },
    /// The transport failed or ended mid-frame.
    Io,
    /// The server ended the session with an error frame of this code.
    Refused(ErrorCode),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InsecureParams {
                log_n,
                log_qp,
                bound,
            } => write!(
                f,
                "insecure parameters: log2(QP) = {log_qp:.2} exceeds the 128-bit bound {bound} for N = 2^{log_n} by {:.2} bits",
                log_qp - *bound as f64
            ),
            Error::UnsupportedRingDimension { log_n } => {
                write!(f, "ring dimension 2^{log_n} has no 128-bit security entry")
            }
            Error::InvalidParams(what) => write!(f, "invalid parameters: {what}"),
            Error::NoPrime { bits } => {
                write!(f, "not enough NTT-friendly primes of {bits} bits")
            }
            Error::BasisMismatch { expected, found } => {
                write!(f, "RNS basis mismatch: expected {expected}, found {found}")
            }
            Error::LengthMismatch { expected, found } => {
                write!(f, "length mismatch: expected {expected} words, found {found}")
            }
            Error::ResidueOutOfRange { limb, index } => {
                write!(f, "residue at limb {limb}, coefficient {index} is not below its modulus")
            }
            Error::InvalidGaloisElement(g) => {
                write!(f, "Galois element {g} is even or not below 2N")
            }
            Error::TooManySlots { max, found } => {
                write!(f, "{found} values given but only {max} slots")
            }
            Error::ValueOutOfRange => write!(f, "value out of range for the modulus"),
            Error::InvalidScale => write!(f, "scale must be a positive finite number"),
            Error::LevelOutOfRange { level, max } => {
                write!(f, "level {level} is above the top level {max}")
            }
            Error::IndexOutOfRange { what, index, len } => {
                write!(f, "{what} index {index} out of range (have {len})")
            }
            Error::Decode(what) => write!(f, "decode error: {what}"),
            Error::FrameTooLarge { len } => {
                write!(f, "frame of {len} bytes is empty or above the frame limit")
            }
            Error::Io => write!(f, "transport error or end of stream inside a frame"),
            Error::Refused(code) => write!(f, "the server refused: {code:?}"),
        }
    }
}

impl core::error::Error for Error {}

/// Result alias of this crate.
pub type Result<T> = core::result::Result<T, Error>;

/// Stable error codes of the wire's error frames (numbers never change meaning; new ones are
/// appended). `crate::wire` re-exports it.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// A frame did not decode, or had trailing bytes.
    Malformed = 1,
    /// A frame's length prefix exceeds `wire::MAX_FRAME_LEN` or is zero.
    FrameTooLarge = 2,
    /// The peer speaks another protocol version.
    UnsupportedVersion = 3,
    /// A message that is not allowed in the current state.
    UnexpectedMessage = 4,
    /// Key material is missing, duplicated, out of order or malformed.
    BadKey = 5,
    /// A ciphertext has the wrong level or length, or residues not below their primes.
    BadCiphertext = 6,
    /// A round id that is unknown or was already answered.
    UnknownRound = 7,
    /// The peer was too slow.
    Timeout = 8,
    /// The server is at its session limit.
    Busy = 9,
    /// The key id is not known to the server (upload the keys).
    UnknownKey = 10,
    /// Something failed on the server that is not the client's fault.
    Internal = 11,
    /// A message larger than the server holds for one session (bytes in flight).
    LimitExceeded = 12,
}
