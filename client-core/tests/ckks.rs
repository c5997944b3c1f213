//! Encoding and encryption precision at both presets, seeded expansion, and exact
//! re-encryption. Precision is asserted in bits, with the measured value in the message.

mod common;

use client_core::cipher::{
    decrypt, decrypt_int, decrypt_slots, encrypt_public, encrypt_symmetric, reencrypt,
};
use client_core::encoding::precision_bits;
use client_core::keys::{galois_element_for_rotation, PublicKey};
use client_core::ring::IntPoly;
use client_core::sampling::CBD_ETA;

/// Minimum bits of precision (absolute, values in [-8, 8]) that encode→decode must keep.
const ENCODE_MIN_BITS: f64 = 30.0;

#[test]
fn encode_decode_precision() {
    for (name, spec) in common::presets() {
        let mut s = common::setup(spec, 1);
        let want = common::values(&mut s.rng, s.params.slots(), 8.0);
        for level in [s.params.top_level(), s.params.handoff_level(), 0] {
            let pt = s
                .encoder
                .encode(&s.ctx, &want, s.params.default_scale(), level)
                .unwrap();
            let got = s.encoder.decode_poly(&s.ctx, &pt.poly, pt.scale).unwrap();
            let bits = precision_bits(&want, &got);
            assert!(
                bits >= ENCODE_MIN_BITS,
                "{name} level {level}: encode→decode precision {bits:.1} bits < {ENCODE_MIN_BITS}"
            );
            eprintln!("{name} level {level}: encode→decode {bits:.1} bits");
        }
    }
}

#[test]
fn encryption_precision_symmetric_and_public_key() {
    for (name, spec) in common::presets() {
        let mut s = common::setup(spec, 2);
        let pk = PublicKey::generate(&s.ctx, &s.sk, &mut s.rng)
            .unwrap()
            .expand(&s.ctx)
            .unwrap();
        let want = common::values(&mut s.rng, s.params.slots(), 8.0);
        let scale = s.params.default_scale();
        // Fresh-noise bounds: symmetric |e| ≤ 21 per coefficient; public-key noise
        // e·u + e0 + e1·s grows by about √N, so it keeps ≈ log2(√N) bits less.
        let sym_min = s.params.scale_bits() as f64 - 15.0;
        let pk_min = sym_min - (s.params.log_n() as f64 / 2.0 + 2.0);
        for level in [s.params.top_level(), s.params.handoff_level()] {
            let pt = s.encoder.encode(&s.ctx, &want, scale, level).unwrap();
            let ct = encrypt_symmetric(&s.ctx, &s.sk, &pt, &mut s.rng).unwrap();
            let got =
                decrypt_slots(&s.ctx, &s.encoder, &s.sk, &ct.expand(&s.ctx).unwrap()).unwrap();
            let bits = precision_bits(&want, &got);
            assert!(
                bits >= sym_min,
                "{name} level {level}: symmetric {bits:.1} bits < {sym_min}"
            );
            eprintln!("{name} level {level}: symmetric encrypt→decrypt {bits:.1} bits");

            let ct = encrypt_public(&s.ctx, &pk, &pt, &mut s.rng).unwrap();
            let got = decrypt_slots(&s.ctx, &s.encoder, &s.sk, &ct).unwrap();
            let bits = precision_bits(&want, &got);
            assert!(
                bits >= pk_min,
                "{name} level {level}: public-key {bits:.1} bits < {pk_min}"
            );
            eprintln!("{name} level {level}: public-key encrypt→decrypt {bits:.1} bits");
        }
    }
}

#[test]
fn seeded_ciphertext_expands_to_the_whole_ciphertext() {
    let mut s = common::setup(&client_core::params::COMPACT_N8192, 3);
    let pt = s
        .encoder
        .encode(
            &s.ctx,
            &[0.5, 0.25],
            s.params.default_scale(),
            s.params.top_level(),
        )
        .unwrap();
    let seeded = encrypt_symmetric(&s.ctx, &s.sk, &pt, &mut s.rng).unwrap();
    let whole = seeded.expand(&s.ctx).unwrap();
    let seeded_bytes = postcard::to_allocvec(&seeded).unwrap();
    let whole_bytes = postcard::to_allocvec(&whole).unwrap();
    let seeded_back: client_core::cipher::SeededCiphertext =
        postcard::from_bytes(&seeded_bytes).unwrap();
    let whole_back: client_core::cipher::Ciphertext = postcard::from_bytes(&whole_bytes).unwrap();
    assert_eq!(seeded_back.expand(&s.ctx).unwrap(), whole_back);
    assert_eq!(
        decrypt(&s.ctx, &s.sk, &whole_back).unwrap(),
        decrypt(&s.ctx, &s.sk, &seeded_back.expand(&s.ctx).unwrap()).unwrap()
    );
    // The seed halves the transfer.
    assert!(
        seeded_bytes.len() * 2 < whole_bytes.len() + 128,
        "{} vs {}",
        seeded_bytes.len(),
        whole_bytes.len()
    );
}

#[test]
fn reencrypting_a_decrypted_integer_polynomial_is_exact() {
    for (name, spec) in common::presets() {
        let mut s = common::setup(spec, 4);
        let handoff = s.params.handoff_level();
        let top = s.params.top_level();
        let want = common::values(&mut s.rng, s.params.slots(), 4.0);
        let pt = s
            .encoder
            .encode(&s.ctx, &want, s.params.default_scale(), handoff)
            .unwrap();
        let ct = encrypt_symmetric(&s.ctx, &s.sk, &pt, &mut s.rng)
            .unwrap()
            .expand(&s.ctx)
            .unwrap();
        let t = decrypt_int(&s.ctx, &s.sk, &ct).unwrap();
        let fresh = reencrypt(&s.ctx, &s.sk, &t, ct.scale, top, &mut s.rng).unwrap();
        assert_eq!(fresh.level(), top);
        let t2 = decrypt_int(&s.ctx, &s.sk, &fresh.expand(&s.ctx).unwrap()).unwrap();
        // Exactly t plus a fresh error: every coefficient differs by at most the CBD bound.
        let max_diff = (0..t.len())
            .map(|i| (t2.coeff_i128(i).unwrap() - t.coeff_i128(i).unwrap()).abs())
            .max()
            .unwrap();
        assert!(
            max_diff <= CBD_ETA as i128,
            "{name}: re-encryption moved a coefficient by {max_diff}"
        );
        // A large masked integer (as HeRefresh sends) survives exactly too.
        let big: Vec<i128> = (0..s.ctx.n() as i128)
            .map(|i| (i - 77) * (1i128 << 70) + i)
            .collect();
        let big = IntPoly::from_i128(&s.ctx, handoff, &big).unwrap();
        let fresh = reencrypt(&s.ctx, &s.sk, &big, 1.0, top, &mut s.rng).unwrap();
        let back = decrypt_int(&s.ctx, &s.sk, &fresh.expand(&s.ctx).unwrap()).unwrap();
        for i in 0..big.len() {
            let d = back.coeff_i128(i).unwrap() - big.coeff_i128(i).unwrap();
            assert!(
                d.abs() <= CBD_ETA as i128,
                "{name}: coefficient {i} off by {d}"
            );
        }
    }
}

#[test]
fn galois_element_five_rotates_slots() {
    let mut s = common::setup(&client_core::params::COMPACT_N8192, 5);
    let slots = s.params.slots();
    let want = common::values(&mut s.rng, slots, 1.0);
    let pt = s
        .encoder
        .encode(&s.ctx, &want, s.params.default_scale(), 0)
        .unwrap();
    for steps in [1i64, 5, -2] {
        let g = galois_element_for_rotation(s.ctx.n(), steps);
        let rotated = pt.poly.automorphism(&s.ctx, g).unwrap();
        let got = s.encoder.decode_poly(&s.ctx, &rotated, pt.scale).unwrap();
        let expected: Vec<f64> = (0..slots)
            .map(|j| want[(j as i64 + steps).rem_euclid(slots as i64) as usize])
            .collect();
        let bits = precision_bits(&expected, &got);
        assert!(bits >= 30.0, "rotation by {steps}: {bits:.1} bits");
    }
}
