//! Security properties that a test can break.
//!
//! (a) Without re-randomisation, a server reply reveals the weights
//!     (`server/tests/rerandomisation.rs`, at the evaluator).
//! (b) Refresh masks and flooding are as large as the statistical target requires.
//! (c) Permutations are fresh per inference (also in tests/protocol.rs).
//! (d) The server sees only fresh ciphertexts: distinct seeds, uniform-looking c0.

use client_core::cipher::SeededCiphertext;
use client_core::wire::assembled::ClientMessage;
use hefun_tests::world::{infer, world};

#[test]
fn masks_and_flooding_meet_the_statistical_target() {
    let mut w = world();
    let x = vec![0.5; 64];
    let trace = infer(&mut w, &x, 4);
    let params = w.ctx.params();
    let s = params.stat_sec_bits() as f64;
    let log_n = params.log_n() as f64;
    assert_eq!(trace.audits.len(), trace.rounds + 1);
    for a in &trace.audits {
        // Every message is flooded to 2^-s over the whole ciphertext.
        assert!(
            a.flood.stat_bits >= s,
            "layer {}: flooding reaches 2^-{:.1}",
            a.layer,
            a.flood.stat_bits
        );
        assert!(a.flood.flood_bits >= a.flood.hidden_bits + log_n + s - 1.0);
        // The planner's static budget covers what the protocol actually used.
        let planned =
            server::protocol::plan(&w.model, w.cfg.value_bound, params.stat_sec_bits(), 10.0)
                .unwrap()
                .margins;
        assert!(
            a.mask_bits <= planned.mask_bits,
            "mask 2^{} above the plan's 2^{}",
            a.mask_bits,
            planned.mask_bits
        );
        if a.layer + 1 < w.model.model().layers.len() {
            assert!(
                a.flood.flood_bits <= planned.flood_bits,
                "flooding 2^{} above the plan's 2^{}",
                a.flood.flood_bits,
                planned.flood_bits
            );
        }
        if a.mask_bits > 0.0 {
            // A ≥ N·B·2^(s−1), and A + B fits below half the hand-off modulus.
            assert!(
                a.mask_bits >= a.refresh_coeff_bound_bits + log_n + s - 1.0,
                "layer {}",
                a.layer
            );
            assert!(a.mask_bits + 1.0 < params.log_q(params.handoff_level()) - 1.0);
        }
    }
}

#[test]
fn permutations_differ_between_inferences_of_the_same_input() {
    let mut w = world();
    let x = vec![0.25; 64];
    let a = infer(&mut w, &x, 11).perm;
    let b = infer(&mut w, &x, 12).perm;
    let fixed = a.iter().zip(&b).filter(|(p, q)| p == q).count();
    // Two uniform permutations of 64 share about one fixed point.
    assert!(fixed < 10, "{fixed} positions kept their place");
}

fn seeded(msgs: &[ClientMessage]) -> Vec<SeededCiphertext> {
    msgs.iter()
        .flat_map(|m| match m {
            ClientMessage::Input(v) => v.clone(),
            ClientMessage::RoundReply(r) => r.signs.iter().chain(&r.refreshed).cloned().collect(),
        })
        .collect()
}

#[test]
fn the_server_sees_only_fresh_ciphertexts() {
    let mut w = world();
    let x = vec![0.75; 64];
    let mut all = seeded(&infer(&mut w, &x, 21).client_messages);
    all.extend(seeded(&infer(&mut w, &x, 22).client_messages));
    // Same input twice, 2 rounds each: 2 × (1 + 2·2) ciphertexts, all with distinct seeds and c0.
    assert_eq!(all.len(), 10);
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a.seed, b.seed);
            assert_ne!(a.c0, b.c0);
        }
    }
    // c0 residues look uniform: mean ≈ q/2 and variance ≈ q²/12 in every limb.
    for ct in &all {
        for (pos, limb) in ct.c0.limbs().enumerate() {
            let q = w.ctx.modulus_at(pos).value() as f64;
            let n = limb.len() as f64;
            let mean = limb.iter().map(|&v| v as f64 / q).sum::<f64>() / n;
            let var = limb
                .iter()
                .map(|&v| (v as f64 / q - mean).powi(2))
                .sum::<f64>()
                / n;
            assert!((mean - 0.5).abs() < 0.02, "limb {pos}: mean {mean}");
            assert!(
                (var - 1.0 / 12.0).abs() < 0.01,
                "limb {pos}: variance {var}"
            );
        }
    }
}
