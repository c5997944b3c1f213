//! Shared set-up for the integration tests.
#![allow(dead_code)]

use client_core::encoding::Encoder;
use client_core::keys::SecretKey;
use client_core::params::{ParamSpec, Params, COMPACT_N8192, DEFAULT_N16384};
use client_core::rand_core::SeedableRng;
use client_core::ring::Context;
use client_core::sampling::Csprng;

pub struct Setup {
    pub params: Params,
    pub ctx: Context,
    pub encoder: Encoder,
    pub sk: SecretKey,
    pub rng: Csprng,
}

pub fn setup(spec: &ParamSpec, seed: u8) -> Setup {
    let params = Params::from_spec(spec).expect("preset is valid");
    let ctx = Context::new(&params).expect("context");
    let encoder = Encoder::new(params.log_n());
    let mut rng = Csprng::from_seed([seed; 32]);
    let sk = SecretKey::generate(&ctx, &mut rng).expect("secret key");
    Setup {
        params,
        ctx,
        encoder,
        sk,
        rng,
    }
}

pub fn presets() -> [(&'static str, &'static ParamSpec); 2] {
    [("default", &DEFAULT_N16384), ("compact", &COMPACT_N8192)]
}

/// A small insecure ring for exhaustive / property tests.
pub fn small_ctx(log_n: u32) -> Context {
    let spec = ParamSpec {
        name: "test-small",
        log_n,
        q_bits: &[40, 35, 30],
        p_bits: &[41],
        digit_size: 1,
        handoff_level: 0,
        scale_bits: 20,
        stat_sec_bits: 0,
        round: client_core::params::RoundKind::Refresh,
    };
    Context::new(&Params::from_spec_insecure(&spec).unwrap()).unwrap()
}

/// Deterministic pseudo-random values in [-bound, bound].
pub fn values(rng: &mut Csprng, count: usize, bound: f64) -> Vec<f64> {
    use client_core::rand_core::Rng;
    (0..count)
        .map(|_| (rng.next_u64() as f64 / u64::MAX as f64 * 2.0 - 1.0) * bound)
        .collect()
}
