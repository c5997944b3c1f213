//! The server's half of HeFUN: HeRefresh, HeReLU and HePerm around the evaluator.
//!
//! Per hidden layer, one round trip:
//!
//! 1. The layer's output y (slots [0, p) of every period p, permuted by a fresh π, dummy
//!    positions holding random values) goes out twice: as a **refresh message** (mod-switched to
//!    the hand-off level, re-randomised, plus an integer-polynomial mask R with |R| ≤ A,
//!    A ≥ N·B·2^(s−1) for coefficient bound B), and as a **ReLU message** y∘r with r a fresh
//!    per-slot multiplier (random sign, magnitude uniform in [1, 2^spread]) that is zero outside
//!    the first period, re-randomised and flooded.
//! 2. The client answers with a fresh encryption of the signs σ (repeated over all periods) and
//!    the refresh message re-encrypted at the top level.
//! 3. The server removes R exactly (z = y at the top level), computes z∘σ with one ciphertext
//!    product (σ encrypted at the scale of the primes the product's rescale removes, so σ's
//!    relative precision is ≈ 2^-83), and applies the next layer W as
//!    W·ReLU(z) = ½·W·z + ½·(W·diag ρ)·(z∘σ), since sign(z) = σ·ρ with ρ = sign(r). The sign
//!    correction thus lives in the plaintext weights, where it costs no precision; correcting σ
//!    with a plaintext product instead would cap the product's precision at the encoding scale
//!    of ρ (≈ 2^-40), which flooding in the next round cannot afford.
//!
//! The last layer is not permuted: its output goes to the client flooded, and only the client
//! can decrypt it.

mod mask;
mod model;
mod planner;
mod session;

pub use mask::IntegerMask;
pub use model::{Layer, Model};
pub use planner::{plan, plan_with, Margins, Plan};
pub use session::{CompiledModel, HidingAudit, Inference, ProtocolConfig, RoundCost};

use crate::eval::EvalError;

/// Errors of the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// From the evaluator.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// From the CKKS core.
    #[error(transparent)]
    Core(#[from] client_core::Error),
    /// The model is malformed.
    #[error("model: {0}")]
    Model(String),
    /// A parameter budget (mask room, flooding room, scale) does not fit.
    #[error("budget: {0}")]
    Budget(String),
    /// A message arrived that the protocol state does not allow.
    #[error("protocol violation: {0}")]
    Violation(&'static str),
}
