//! Re-randomisation and flooding of ciphertexts sent to the client.

mod common;

use client_core::params::{COMPACT_N8192, DEFAULT_N16384};
use client_core::rand_core::SeedableRng;
use client_core::sampling::Csprng;
use common::{assert_precision, Harness};
use server::eval::EvalError;

#[test]
fn rerandomised_ciphertexts_decrypt_and_have_fresh_c1() {
    let mut h = Harness::new(&COMPACT_N8192, &[], 21);
    let x = h.values(h.slots(), 4.0);
    let (cx, _) = h.encrypt(&x);
    let mut rng = Csprng::from_seed([5; 32]);
    let r = h.eval.rerandomize(&cx, &h.keys, &mut rng).unwrap();
    assert_ne!(r.clone().into_ciphertext().c1, cx.into_ciphertext().c1);
    assert_precision("rerandomised", &x, &h.decrypt(&r), 18.0);
}

#[test]
fn flooding_meets_the_statistical_target_and_keeps_high_scale_values() {
    for spec in [&DEFAULT_N16384, &COMPACT_N8192] {
        let mut h = Harness::new(spec, &[], 22);
        let handoff = h.params.handoff_level();
        let log_q = h.params.log_q(handoff);
        // A message at a scale far above the flooding noise (what the protocol must produce).
        let scale = 2f64.powf((log_q - 12.0).min(110.0));
        let x = h.values(h.slots(), 4.0);
        let (cx, _) = h.encrypt_at(&x, scale, h.params.top_level());
        let mut rng = Csprng::from_seed([6; 32]);
        let (out, report) = h
            .eval
            .prepare_outgoing(&cx, handoff, &h.keys, &mut rng)
            .unwrap();
        assert_eq!(out.level(), handoff);
        let stat = h.params.stat_sec_bits() as f64;
        assert!(
            report.stat_bits >= stat,
            "flooding reaches only 2^-{:.1}",
            report.stat_bits
        );
        // B ≥ N·E·2^(s−1) with E the tracked bound of everything before flooding.
        let n_bits = h.params.log_n() as f64;
        assert!(report.flood_bits >= report.hidden_bits + n_bits + stat - 1.0);
        // The measured pre-flood noise is below the bound that flooding was sized for.
        let bits = assert_precision("flooded", &x, &h.decrypt(&out), 10.0);
        eprintln!(
            "{}: hides 2^{:.1} with 2^{:.0} flooding (2^-{:.1}); message at 2^{:.0} keeps {bits:.1} bits",
            h.params.name(),
            report.hidden_bits,
            report.flood_bits,
            report.stat_bits,
            scale.log2()
        );
    }
}

#[test]
fn flooding_that_cannot_fit_is_an_error() {
    let mut h = Harness::new(&COMPACT_N8192, &[], 23);
    let (cx, _) = h.encrypt(&[1.0]);
    let bottom = h.eval.drop_to_level(&cx, 0).unwrap();
    let mut rng = Csprng::from_seed([7; 32]);
    // 2^-60 statistical security over a 50-bit modulus cannot fit.
    assert!(matches!(
        h.eval.flood(&bottom, 60, &mut rng),
        Err(EvalError::FloodingDoesNotFit { .. })
    ));
}
