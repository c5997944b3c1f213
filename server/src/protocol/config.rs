//! Scales and bounds of the protocol.

use client_core::params::{Params, RoundKind};

/// Scales and bounds of the protocol (chosen by the parameter planner).
#[derive(Clone, Debug, PartialEq)]
pub struct ProtocolConfig {
    /// Scale Δ of inputs and activations.
    pub scale: f64,
    /// Primes removed by each rescale (Δ ≈ their product).
    pub rescale_primes: usize,
    /// Primes spanned by the sign scale (the ReLU product is rescaled by them).
    pub sign_primes: usize,
    /// Scale of the ReLU multiplier plaintext r.
    pub r_scale: f64,
    /// |r| is uniform in [1, 2^r_spread_bits].
    pub r_spread_bits: u32,
    /// Bound on |pre-activation| (of neurons and dummies alike).
    pub value_bound: f64,
    /// Statistical security of masks and flooding (bits).
    pub stat_bits: u32,
    /// How a round goes.
    pub round: RoundKind,
    /// log2 of the weights' scale Δ_w under the sign-magnitude round (nothing is rescaled, so
    /// a layer's output is at scale Δ·Δ_w); unused under the refresh round.
    pub weight_bits: u32,
}

impl ProtocolConfig {
    /// The configuration for a parameter set whose default scale spans `scale_primes` primes.
    ///
    /// Linear layers encode their plaintexts at one prime's scale (2^44 is far more precision
    /// than the weights need) and rescale by that prime. The ReLU product's sign scale spans
    /// `scale_primes` primes: the client's fresh encryption noise, relative to Δ_σ, multiplies
    /// Δ·Y, so Δ_σ must be about Δ for that noise to stay negligible.
    pub fn for_params(params: &Params, scale_primes: usize, value_bound: f64) -> Self {
        Self {
            scale: params.default_scale(),
            rescale_primes: 1,
            sign_primes: scale_primes,
            r_scale: 2f64.powi(30),
            r_spread_bits: 4,
            value_bound,
            stat_bits: params.stat_sec_bits(),
            round: RoundKind::Refresh,
            weight_bits: 0,
        }
    }

    /// The configuration of the sign-magnitude round: client scale 2^`scale_bits`, weights at
    /// 2^`weight_bits`, nothing rescaled.
    pub fn sign_magnitude(
        params: &Params,
        scale_bits: u32,
        weight_bits: u32,
        value_bound: f64,
    ) -> Self {
        Self {
            scale: 2f64.powi(scale_bits as i32),
            rescale_primes: 0,
            sign_primes: 0,
            r_scale: 1.0,
            r_spread_bits: 4,
            value_bound,
            stat_bits: params.stat_sec_bits(),
            round: RoundKind::SignMagnitude,
            weight_bits,
        }
    }

    /// True under the sign-magnitude round.
    pub fn sign_magnitude_round(&self) -> bool {
        self.round == RoundKind::SignMagnitude
    }
}
