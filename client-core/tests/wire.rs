//! Postcard round trips of everything that crosses the wire, and hostile inputs: every
//! malformed object must be rejected with an error, never a panic.

mod common;

use client_core::cipher::{encrypt_symmetric, Ciphertext, SeededCiphertext};
use client_core::keys::{KeyChunk, KeyKind, PublicKey, SwitchingKey, SwitchingKeyGenerator};
use client_core::params::{Params, COMPACT_N8192};
use client_core::ring::Basis;
use client_core::Error;
use serde::{Deserialize, Serialize};

/// Same wire layout as `Poly` (postcard encodes a byte string and a `Vec<u8>` identically).
#[derive(Clone, Serialize, Deserialize)]
struct RawPoly {
    basis: Basis,
    #[serde(with = "client_core::ring::serde_limbs")]
    data: Vec<u64>,
}

#[derive(Clone, Serialize, Deserialize)]
struct RawCiphertext {
    c0: RawPoly,
    c1: RawPoly,
    scale: f64,
}

#[derive(Clone, Serialize, Deserialize)]
struct RawSeeded {
    c0: RawPoly,
    seed: [u8; 32],
    scale: f64,
}

#[derive(Clone, Serialize, Deserialize)]
struct RawPublicKey {
    b: RawPoly,
    seed: [u8; 32],
}

fn roundtrip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(value: &T) {
    let bytes = postcard::to_allocvec(value).unwrap();
    let back: T = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(&back, value);
}

fn fresh_ciphertext(s: &mut common::Setup) -> Ciphertext {
    let pt = s
        .encoder
        .encode(
            &s.ctx,
            &[1.0, 2.0],
            s.params.default_scale(),
            s.params.top_level(),
        )
        .unwrap();
    encrypt_symmetric(&s.ctx, &s.sk, &pt, &mut s.rng)
        .unwrap()
        .expand(&s.ctx)
        .unwrap()
}

fn decode_ct(raw: &RawCiphertext) -> Ciphertext {
    postcard::from_bytes(&postcard::to_allocvec(raw).unwrap()).unwrap()
}

#[test]
fn postcard_roundtrips() {
    let mut s = common::setup(&COMPACT_N8192, 9);
    roundtrip(&s.params);
    let ct = fresh_ciphertext(&mut s);
    roundtrip(&ct);
    let pt = s.encoder.encode(&s.ctx, &[3.0], 1e6, 0).unwrap();
    let seeded = encrypt_symmetric(&s.ctx, &s.sk, &pt, &mut s.rng).unwrap();
    roundtrip(&seeded);
    roundtrip(&PublicKey::generate(&s.ctx, &s.sk, &mut s.rng).unwrap());
    let generator =
        SwitchingKeyGenerator::new(&s.ctx, &s.sk, KeyKind::Galois(5), &mut s.rng).unwrap();
    let chunk = generator.chunks().next().unwrap().unwrap();
    roundtrip(&chunk);
    // One limb on the wire is N words of 8 bytes plus a few bytes of framing.
    let chunk_bytes = postcard::to_allocvec(&chunk).unwrap().len();
    assert!(chunk_bytes <= 8 * s.ctx.n() + 8, "{chunk_bytes}");
    roundtrip(&generator.generate().unwrap());
}

#[test]
fn hostile_ciphertexts_are_rejected() {
    let mut s = common::setup(&COMPACT_N8192, 10);
    let ct = fresh_ciphertext(&mut s);
    let raw: RawCiphertext = postcard::from_bytes(&postcard::to_allocvec(&ct).unwrap()).unwrap();
    assert!(decode_ct(&raw).validate(&s.ctx).is_ok());

    // A residue ≥ q.
    let mut bad = raw.clone();
    bad.c1.data[17] = u64::MAX;
    assert!(matches!(
        decode_ct(&bad).validate(&s.ctx),
        Err(Error::ResidueOutOfRange { limb: 0, index: 17 })
    ));
    // Too few words.
    let mut bad = raw.clone();
    bad.c0.data.truncate(bad.c0.data.len() - 1);
    assert!(matches!(
        decode_ct(&bad).validate(&s.ctx),
        Err(Error::LengthMismatch { .. })
    ));
    // Packed bytes cut short: the decoder itself refuses.
    let bytes = postcard::to_allocvec(&raw).unwrap();
    assert!(postcard::from_bytes::<Ciphertext>(&bytes[..bytes.len() - 1]).is_err());
    // c0 and c1 at different levels.
    let mut bad = raw.clone();
    bad.c1.basis = Basis::level(0);
    bad.c1.data.truncate(s.ctx.n());
    assert!(matches!(
        decode_ct(&bad).validate(&s.ctx),
        Err(Error::BasisMismatch { .. })
    ));
    // A basis the parameters do not have, or special primes in a ciphertext.
    let mut bad = raw.clone();
    bad.c0.basis = Basis { q: 40, p: 0 };
    assert!(decode_ct(&bad).validate(&s.ctx).is_err());
    let mut bad = raw.clone();
    bad.c0.basis = Basis { q: 3, p: 1 };
    assert!(decode_ct(&bad).validate(&s.ctx).is_err());
    // Wrong level for the protocol step.
    assert!(matches!(
        decode_ct(&raw).validate_level(&s.ctx, s.params.handoff_level()),
        Err(Error::BasisMismatch { .. })
    ));
    // Non-finite or negative scale.
    for scale in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
        let mut bad = raw.clone();
        bad.scale = scale;
        assert!(matches!(
            decode_ct(&bad).validate(&s.ctx),
            Err(Error::InvalidScale)
        ));
    }
    // Truncated frames.
    let bytes = postcard::to_allocvec(&ct).unwrap();
    for cut in [0, 1, 5, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            postcard::from_bytes::<Ciphertext>(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    // Random garbage decodes to an error or to something validation rejects.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        let garbage: Vec<u8> = (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if let Ok(ct) = postcard::from_bytes::<Ciphertext>(&garbage) {
            assert!(ct.validate(&s.ctx).is_err());
        }
        if let Ok(ct) = postcard::from_bytes::<SeededCiphertext>(&garbage) {
            assert!(ct.expand(&s.ctx).is_err());
        }
    }
}

#[test]
fn hostile_keys_and_params_are_rejected() {
    let mut s = common::setup(&COMPACT_N8192, 11);
    // Seeded ciphertext at the wrong level or with a bad residue.
    let pt = s.encoder.encode(&s.ctx, &[1.0], 1e6, 0).unwrap();
    let seeded = encrypt_symmetric(&s.ctx, &s.sk, &pt, &mut s.rng).unwrap();
    assert_eq!(seeded.level(), 0);
    assert!(seeded.expand(&s.ctx).is_ok());
    let mut raw: RawSeeded =
        postcard::from_bytes(&postcard::to_allocvec(&seeded).unwrap()).unwrap();
    let q0 = s.ctx.modulus_at(0).value();
    raw.c0.data[0] = q0;
    let bad: SeededCiphertext =
        postcard::from_bytes(&postcard::to_allocvec(&raw).unwrap()).unwrap();
    assert!(matches!(
        bad.expand(&s.ctx),
        Err(Error::ResidueOutOfRange { limb: 0, index: 0 })
    ));

    // Galois keys for even elements cannot even be requested.
    assert!(matches!(
        SwitchingKeyGenerator::new(&s.ctx, &s.sk, KeyKind::Galois(4), &mut s.rng),
        Err(Error::InvalidGaloisElement(4))
    ));
    // A key whose chunks are short.
    let generator =
        SwitchingKeyGenerator::new(&s.ctx, &s.sk, KeyKind::Relinearization, &mut s.rng).unwrap();
    let mut chunks: Vec<KeyChunk> = generator.chunks().map(Result::unwrap).collect();
    chunks[3].data.pop();
    assert!(matches!(
        SwitchingKey::from_chunks(&s.ctx, generator.kind(), generator.seed(), chunks),
        Err(Error::LengthMismatch { .. })
    ));
    // A deserialised key claiming an invalid Galois element.
    let key = generator.generate().unwrap();
    let mut bytes = postcard::to_allocvec(&key).unwrap();
    // KeyKind is the first field: variant 1 (Galois) then the varint element.
    bytes[0] = 1;
    bytes.insert(1, 6);
    let tampered: SwitchingKey = postcard::from_bytes(&bytes).unwrap();
    assert!(matches!(
        tampered.validate(&s.ctx),
        Err(Error::InvalidGaloisElement(6))
    ));
    // A public key at the wrong level.
    let pk = PublicKey::generate(&s.ctx, &s.sk, &mut s.rng).unwrap();
    assert!(pk.expand(&s.ctx).is_ok());
    let mut raw: RawPublicKey = postcard::from_bytes(&postcard::to_allocvec(&pk).unwrap()).unwrap();
    raw.b.basis = Basis::level(0);
    raw.b.data.truncate(s.ctx.n());
    let bad: PublicKey = postcard::from_bytes(&postcard::to_allocvec(&raw).unwrap()).unwrap();
    assert!(matches!(
        bad.expand(&s.ctx),
        Err(Error::BasisMismatch { .. })
    ));

    // Parameters with a composite "prime" or an insecure chain.
    let good = Params::from_spec(&COMPACT_N8192).unwrap();
    let bytes = postcard::to_allocvec(&good).unwrap();
    let back: Params = postcard::from_bytes(&bytes).unwrap();
    assert!(back.validate().is_ok());
    let insecure = client_core::params::ParamSpec {
        q_bits: &[50, 50, 50, 50],
        ..COMPACT_N8192
    };
    let params = Params::from_spec_insecure(&insecure).unwrap();
    let err = params.validate().unwrap_err();
    assert!(
        err.to_string().contains("exceeds the 128-bit bound 218"),
        "{err}"
    );
}
