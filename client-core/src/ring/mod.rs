//! RNS polynomials over Z_Q[X]/(X^N + 1).
//!
//! A polynomial is stored limb by limb: its residues modulo each prime of its [`Basis`], N words
//! per limb. The representation (coefficients or NTT evaluations) is part of the type
//! ([`Poly<Coeff>`] and [`Poly<Ntt>`]), so a product of polynomials in the wrong domain does not
//! compile. Everything that can fail on foreign data (lengths, residues, bases) returns an error.

mod basis;
mod context;
mod crt;
mod ntt;
mod poly;
pub mod serde_limbs;

pub use basis::Basis;
pub use context::{Context, Ring};
pub use crt::IntPoly;
pub use ntt::{negacyclic_root, CompactNtt};
pub use poly::{automorphism_signed, check_galois_element, Coeff, Form, Ntt, Poly};
