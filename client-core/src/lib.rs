//! # hefun client core
//!
//! Everything of the HeFUN private-inference protocol that touches the CKKS secret key, small
//! enough for a Cortex-M4 microcontroller: parameter sets, RNS polynomial arithmetic over
//! NTT-friendly primes (`tfhe-ntt`), sampling from a ChaCha20 CSPRNG, the canonical-embedding
//! encoder, key generation (streamed limb by limb), encryption, decryption, and the
//! re-encryption of an integer polynomial that the protocol's refresh step needs.
//!
//! `#![no_std]` with `alloc`; the `std` feature (default) only turns on runtime SIMD detection in
//! `tfhe-ntt` for hosts.
//!
//! ```
//! use client_core::{cipher, encoding::Encoder, keys::SecretKey, params, ring::Context};
//! use client_core::sampling::Csprng;
//! use rand_core::SeedableRng;
//!
//! let params = params::Params::from_spec(&params::COMPACT_N8192)?;
//! let ctx = Context::new(&params)?;
//! let encoder = Encoder::new(params.log_n());
//! // The caller supplies entropy; a fixed seed is for the example only.
//! let mut rng = Csprng::from_seed([42; 32]);
//! let sk = SecretKey::generate(&ctx, &mut rng)?;
//! let pt = encoder.encode(&ctx, &[1.5, -2.25], params.default_scale(), params.top_level())?;
//! let ct = cipher::encrypt_symmetric(&ctx, &sk, &pt, &mut rng)?.expand(&ctx)?;
//! let slots = cipher::decrypt_slots(&ctx, &encoder, &sk, &ct)?;
//! assert!((slots[0] - 1.5).abs() < 1e-6 && (slots[1] + 2.25).abs() < 1e-6);
//! # Ok::<(), client_core::Error>(())
//! ```
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(all(feature = "std", not(test)))]
extern crate std;

pub mod arith;
pub mod cipher;
pub mod client;
pub mod encoding;
mod error;
#[cfg(feature = "std")]
pub mod host;
pub mod keys;
pub mod params;
pub mod ring;
pub mod sampling;
pub mod wire;

pub use error::{Error, Result};
/// Re-exported so callers can name the RNG traits this crate takes.
pub use rand_core;
/// Re-exported so callers can wrap key seeds the way this crate takes them.
pub use zeroize;
