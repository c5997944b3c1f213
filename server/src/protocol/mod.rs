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
//!
//! Each step has its file: `perm` (HePerm: π, ρ, dummies, and the Clos network for layers over
//! several ciphertexts), `refresh` (HeRefresh: the mask R, on the way out and back) and `relu`
//! (HeReLU: the ReLU message, the client's signs, the product). `inference` runs them in order
//! for one inference; `planner` checks the budgets they need, and `requirements` works out the
//! levels, input layout and Galois keys a model needs under the protocol. The model and its slot
//! layout are in [`crate::model`].

mod config;
mod inference;
mod magnitude;
mod perm;
mod planner;
mod refresh;
mod relu;
mod requirements;

pub use config::ProtocolConfig;
pub use inference::{HidingAudit, Inference, RoundCost};
pub use planner::{
    plan, plan_light, plan_sign_magnitude, plan_with, Margins, Plan, SIGN_MAGNITUDE_WEIGHT_BITS,
};
pub use refresh::IntegerMask;

use client_core::rand_core::Rng;

use crate::eval::EvalError;
use crate::model::ModelError;

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

impl From<ModelError> for ProtocolError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Malformed(m) => Self::Model(m),
            ModelError::Eval(e) => Self::Eval(e),
            ModelError::Core(e) => Self::Core(e),
        }
    }
}

/// A uniform draw in [0, 1) (53 bits), for the random factors of HePerm's dummies and of
/// HeReLU's multiplier.
fn uniform<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}
