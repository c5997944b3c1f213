//! Scales and bounds of the protocol.

use client_core::params::Params;

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
        }
    }
}
