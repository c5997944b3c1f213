//! The server's half of HeFUN: HeRefresh, HeReLU and HePerm around the evaluator.
//!
//! Per hidden layer i, one round trip:
//!
//! 1. The layer's output y' = ρ∘π(y) (neurons in a fresh random order π, multiplied by fresh
//!    random signs ρ folded into the layer's rows, padding positions holding dummies: copies of
//!    random neurons times random factors in [1/2, 1], so their values look like neurons')
//!    goes out twice: as a **refresh message** (at the hand-off level, re-randomised, plus an
//!    integer-polynomial mask R with |R| ≤ A, A ≥ N·B·2^(s−1) for coefficient bound B), and as a
//!    **ReLU message** y'∘|r| with |r| a fresh per-slot magnitude uniform in [1, 2^spread], zero
//!    outside the first period, re-randomised and flooded.
//! 2. The client answers with a fresh encryption of σ' = sign(y') (repeated over all periods,
//!    at a scale spanning two primes so that its noise stays negligible next to Δ·Y) and the
//!    refresh message re-encrypted at the top level.
//! 3. The server removes R exactly (z' = y' at the top level) and computes
//!    ReLU(y) = ½·z'∘(σ' + ρ) with one ciphertext product: σ' + ρ = ρ·(1 + sign y), and
//!    ρ·ρ = 1. Adding the plaintext ρ costs no level and the ½ is folded into the next layer,
//!    which is then one transform.
//!
//! The last layer is not permuted: its output goes to the client flooded, and only the client
//! can decrypt it.

mod clos;
mod compiled;
mod config;
mod mask;
mod model;
mod planner;
mod session;

pub use compiled::CompiledModel;
pub use config::ProtocolConfig;
pub use mask::IntegerMask;
pub use model::{FirstConv, Layer, Model, ACTIVATION_CAP};
pub use planner::{plan, plan_with, Margins, Plan};
pub use session::{HidingAudit, Inference, RoundCost};

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
