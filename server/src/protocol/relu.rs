//! HeReLU: the client learns only the signs of the permuted pre-activations, and the server
//! computes ReLU with one ciphertext product.
//!
//! The **ReLU message** is y'∘|r| for the layer's output y' = ρ∘y (HePerm's signs already folded
//! in) and a fresh per-slot magnitude |r| uniform in [1, 2^spread], zero outside the first
//! period, re-randomised and flooded. The client answers with a fresh encryption of
//! σ' = sign(y') at the sign scale Δ_σ. With z' = ρ∘y back from HeRefresh,
//! ReLU(y) = ½·z'∘(σ' + ρ): σ' + ρ = ρ·(1 + sign y) and ρ·ρ = 1, adding the plaintext ρ costs no
//! level, and the ½ is folded into the next layer.

use client_core::cipher::SeededCiphertext;
use client_core::rand_core::CryptoRng;

use super::config::ProtocolConfig;
use super::ProtocolError;
use crate::eval::{rescale_divisor, Ct, EvalKeys, Evaluator, FloodReport};

/// The scale Δ_σ of the client's signs: exactly the product of the top `sign_primes` primes, so
/// that rescaling the ReLU product by them returns it to the activation scale.
pub(super) fn sign_scale(eval: &Evaluator, cfg: &ProtocolConfig) -> f64 {
    rescale_divisor(eval, eval.ctx().params().top_level(), cfg.sign_primes)
}

/// The ReLU message for `y_h` (at the hand-off level) whose first `period` slots hold the
/// layer's output.
pub(super) fn relu_message<R: CryptoRng + ?Sized>(
    eval: &Evaluator,
    keys: &EvalKeys,
    cfg: &ProtocolConfig,
    y_h: &Ct,
    period: usize,
    rng: &mut R,
) -> Result<(Ct, FloodReport), ProtocolError> {
    let params = eval.ctx().params();
    let h = params.handoff_level();
    let spread = 2f64.powi(cfg.r_spread_bits as i32);
    let mut r = vec![0.0; params.slots()];
    for r_t in r.iter_mut().take(period) {
        *r_t = 1.0 + super::uniform(rng) * (spread - 1.0);
    }
    let r_pt = eval.encode(&r, cfg.r_scale, h)?;
    let masked = eval.mul_plain(y_h, &r_pt)?;
    Ok(eval.prepare_outgoing(&masked, h, keys, rng)?)
}

/// The client's σ' for one ciphertext: at the top level and at `sign_scale`.
pub(super) fn client_signs(
    eval: &Evaluator,
    signs: &SeededCiphertext,
    sign_scale: f64,
) -> Result<Ct, ProtocolError> {
    let ctx = eval.ctx();
    let sigma = Ct::from_client(ctx, signs, ctx.params().top_level())?;
    if sigma.scale() != sign_scale {
        return Err(ProtocolError::Violation("signs at the wrong scale"));
    }
    Ok(sigma)
}

/// ReLU(y) = ½·z'∘(σ' + ρ) without the ½ (folded into the next layer), back at z's scale:
/// one ct×ct product rescaled by the sign primes. `rho` is ρ over the ciphertext's period.
pub(super) fn relu_product(
    eval: &Evaluator,
    keys: &EvalKeys,
    cfg: &ProtocolConfig,
    z: &Ct,
    sigma: &Ct,
    rho: &[f64],
) -> Result<Ct, ProtocolError> {
    let top = eval.ctx().params().top_level();
    // σ' + ρ ∈ {0, ±2}.
    let rho = eval.encode_periodic(rho, sigma.scale(), top)?;
    let factor = eval.add_plain(sigma, &rho)?;
    let prod = eval.mul(z, &factor, cfg.value_bound, 2.0, keys)?;
    // Δ_σ is exactly the product of the primes rescaled away, so the scale returns to z's.
    Ok(eval.rescale_to(&prod, cfg.sign_primes, z.scale())?)
}
