//! Prints every parameter preset: primes, log2(QP) against its bound, hand-off modulus, scale.
//!
//! `cargo run -p client-core --example presets`

use client_core::params::{Params, PRESETS};

fn main() -> Result<(), client_core::Error> {
    for spec in PRESETS {
        let params = Params::from_spec(spec)?;
        let margin = params.validate()?;
        println!("{} (N = {})", params.name(), params.n());
        println!("  q  = {:?}", params.q());
        println!("  P  = {:?}", params.p());
        println!(
            "  log2(QP) = {:.2} <= {} (slack {:.2} bits); digits of {} primes",
            margin.log_qp,
            margin.bound,
            margin.slack_bits(),
            params.digit_size()
        );
        println!(
            "  hand-off level {} (log2 Q = {:.2}); scale 2^{}; statistical security 2^-{}",
            params.handoff_level(),
            params.log_q(params.handoff_level()),
            params.scale_bits(),
            params.stat_sec_bits()
        );
    }
    Ok(())
}
