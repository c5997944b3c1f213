//! The sign-magnitude round (`docs/light-client.md`): one message each way per hidden layer.
//!
//! The layer's rows already carry π, the dummies, ρ and the ReLU multiplier's magnitude |r|
//! (HePerm, `perm`), so its output is v = ρ∘y∘|r| at scale Δ·Δ_w, never rescaled. It goes to
//! the client re-randomised and flooded: the same ReLU message as in the refresh round, and
//! the only one. The client returns one fresh encryption of the pairs (v, |v|) at the top level,
//! laid out as the next layer reads them; that layer's columns carry ρ/(2|r|) and 1/(2|r|), so
//! it computes W·ReLU(y) + b with the flooding noise ε as the only error (|ε|/|r| per neuron).
//! No refresh mask, no ciphertext product, no relinearisation key.

use client_core::cipher::SeededCiphertext;
use client_core::rand_core::CryptoRng;

use super::config::ProtocolConfig;
use super::ProtocolError;
use crate::eval::{Ct, EvalKeys, Evaluator, FloodReport};

/// The ReLU message of a layer output `y` (at the top level, |r| already in its rows):
/// re-randomised and flooded.
pub(super) fn magnitude_message<R: CryptoRng + ?Sized>(
    eval: &Evaluator,
    keys: &EvalKeys,
    y: &Ct,
    rng: &mut R,
) -> Result<(Ct, FloodReport), ProtocolError> {
    Ok(eval.prepare_outgoing(y, y.level(), keys, rng)?)
}

/// The client's reply: `expected` fresh top-level encryptions of (v, |v|) at the client's
/// scale, checked.
pub(super) fn client_pairs(
    eval: &Evaluator,
    cfg: &ProtocolConfig,
    reply: &[SeededCiphertext],
    expected: usize,
) -> Result<Vec<Ct>, ProtocolError> {
    if reply.len() != expected {
        return Err(ProtocolError::Violation(
            "wrong number of ciphertexts in the round's reply",
        ));
    }
    let ctx = eval.ctx();
    let top = ctx.params().top_level();
    reply
        .iter()
        .map(|seeded| {
            let ct = Ct::from_client(ctx, seeded, top)?;
            if ct.scale() != cfg.scale {
                return Err(ProtocolError::Violation("reply at the wrong scale"));
            }
            Ok(ct)
        })
        .collect()
}
