//! Criterion benchmarks of the client core at both presets, single-threaded.
//!
//! Run with `cargo bench -p client-core`; results and the SEAL comparison are in
//! `docs/benchmarks-client-core.md`.

use std::hint::black_box;
use std::time::Duration;

use client_core::cipher::{self, Ciphertext};
use client_core::encoding::Encoder;
use client_core::keys::{KeyKind, PublicKey, SecretKey, SwitchingKey, SwitchingKeyGenerator};
use client_core::params::{self, ParamSpec, Params};
use client_core::rand_core::SeedableRng;
use client_core::ring::Context;
use client_core::sampling::Csprng;
use criterion::{criterion_group, criterion_main, Criterion};

/// Level whose ciphertexts have two primes, like SEAL's N = 8192, [60, 40, 60] comparison.
const SEAL_COMPARISON_LEVEL: usize = 1;

fn seeded_rng() -> Csprng {
    Csprng::from_seed([1; 32])
}

/// N/2 deterministic values in [−1, 1].
fn slot_values(slots: usize) -> Vec<f64> {
    (0..slots)
        .map(|i| ((i as f64) * 0.618_033_988_75).fract() * 2.0 - 1.0)
        .collect()
}

/// A copy of `fresh` with the primes above `level` dropped.
fn ciphertext_at(ctx: &Context, fresh: &Ciphertext, level: usize) -> Ciphertext {
    let mut ct = fresh.clone();
    ct.drop_to_level(ctx, level).expect("drop to level");
    ct
}

fn bench_preset(c: &mut Criterion, spec: &ParamSpec) {
    let params = Params::from_spec(spec).expect("preset");
    let ctx = Context::new(&params).expect("context");
    let encoder = Encoder::new(params.log_n());
    let mut rng = seeded_rng();
    let sk = SecretKey::generate(&ctx, &mut rng).expect("secret key");
    let pk = PublicKey::generate(&ctx, &sk, &mut rng).expect("public key");
    let expanded_pk = pk.expand(&ctx).expect("expand public key");
    let values = slot_values(params.slots());
    let scale = params.default_scale();
    let top = params.top_level();
    let handoff = params.handoff_level();
    let pt_top = encoder
        .encode(&ctx, &values, scale, top)
        .expect("encode top");
    let pt_cmp = encoder
        .encode(&ctx, &values, scale, SEAL_COMPARISON_LEVEL)
        .expect("encode comparison level");
    let fresh = cipher::encrypt_public(&ctx, &expanded_pk, &pt_top, &mut rng).expect("encrypt");
    let ct_handoff = ciphertext_at(&ctx, &fresh, handoff);
    let ct_zero = ciphertext_at(&ctx, &fresh, 0);
    let int_handoff = cipher::decrypt_int(&ctx, &sk, &ct_handoff).expect("decrypt_int");

    // Sanity check that the benchmarked pipeline is correct.
    let back = cipher::decrypt_slots(&ctx, &encoder, &sk, &ct_handoff).expect("decrypt_slots");
    let err = values
        .iter()
        .zip(&back)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    assert!(err < 1e-4, "{}: round-trip error {err}", spec.name);

    let relin_gen = SwitchingKeyGenerator::new(&ctx, &sk, KeyKind::Relinearization, &mut rng)
        .expect("relin generator");
    let g1 = client_core::keys::galois_element_for_rotation(ctx.n(), 1);
    let galois_gen = SwitchingKeyGenerator::new(&ctx, &sk, KeyKind::Galois(g1), &mut rng)
        .expect("galois generator");

    let mut group = c.benchmark_group(spec.name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    // Key generation.
    group.bench_function("keygen/secret", |b| {
        let mut rng = seeded_rng();
        b.iter(|| SecretKey::generate(&ctx, &mut rng).expect("secret key"))
    });
    group.bench_function("keygen/public", |b| {
        let mut rng = seeded_rng();
        b.iter(|| PublicKey::generate(&ctx, &sk, &mut rng).expect("public key"))
    });
    group.bench_function("keygen/relin", |b| {
        let mut rng = seeded_rng();
        b.iter(|| SwitchingKey::relinearization(&ctx, &sk, &mut rng).expect("relin key"))
    });
    group.bench_function("keygen/rotation_1", |b| {
        let mut rng = seeded_rng();
        b.iter(|| SwitchingKey::rotation(&ctx, &sk, 1, &mut rng).expect("rotation key"))
    });
    // One key chunk (digit 0, limb 0: carries the P·s' term) — the streaming unit of an MCU.
    group.bench_function("keygen/chunk_relin_d0_l0", |b| {
        let mut out = vec![0u64; ctx.n()];
        b.iter(|| {
            relin_gen
                .limb(black_box(0), black_box(0), &mut out)
                .expect("chunk");
            black_box(&out);
        })
    });
    group.bench_function("keygen/chunk_galois_d0_l0", |b| {
        let mut out = vec![0u64; ctx.n()];
        b.iter(|| {
            galois_gen
                .limb(black_box(0), black_box(0), &mut out)
                .expect("chunk");
            black_box(&out);
        })
    });

    // Encoding and encryption.
    group.bench_function("encode/top", |b| {
        b.iter(|| {
            encoder
                .encode(&ctx, black_box(&values), scale, top)
                .expect("encode")
        })
    });
    group.bench_function("encode/level1", |b| {
        b.iter(|| {
            encoder
                .encode(&ctx, black_box(&values), scale, SEAL_COMPARISON_LEVEL)
                .expect("encode")
        })
    });
    group.bench_function("encrypt_symmetric/top", |b| {
        let mut rng = seeded_rng();
        b.iter(|| cipher::encrypt_symmetric(&ctx, &sk, black_box(&pt_top), &mut rng).expect("enc"))
    });
    group.bench_function("encrypt_symmetric/level1", |b| {
        let mut rng = seeded_rng();
        b.iter(|| cipher::encrypt_symmetric(&ctx, &sk, black_box(&pt_cmp), &mut rng).expect("enc"))
    });
    group.bench_function("encrypt_public/top", |b| {
        let mut rng = seeded_rng();
        b.iter(|| {
            cipher::encrypt_public(&ctx, &expanded_pk, black_box(&pt_top), &mut rng).expect("enc")
        })
    });
    group.bench_function("encrypt_public/level1", |b| {
        let mut rng = seeded_rng();
        b.iter(|| {
            cipher::encrypt_public(&ctx, &expanded_pk, black_box(&pt_cmp), &mut rng).expect("enc")
        })
    });

    // Decryption and decoding.
    group.bench_function("decrypt/handoff", |b| {
        b.iter(|| cipher::decrypt(&ctx, &sk, black_box(&ct_handoff)).expect("decrypt"))
    });
    group.bench_function("decrypt/level0", |b| {
        b.iter(|| cipher::decrypt(&ctx, &sk, black_box(&ct_zero)).expect("decrypt"))
    });
    group.bench_function("decrypt_int/handoff", |b| {
        b.iter(|| cipher::decrypt_int(&ctx, &sk, black_box(&ct_handoff)).expect("decrypt_int"))
    });
    group.bench_function("decode/handoff", |b| {
        b.iter(|| {
            encoder
                .decode(black_box(&int_handoff), ct_handoff.scale)
                .expect("decode")
        })
    });
    group.bench_function("decrypt_slots/handoff", |b| {
        b.iter(|| {
            cipher::decrypt_slots(&ctx, &encoder, &sk, black_box(&ct_handoff)).expect("slots")
        })
    });

    // Setup costs a client pays once per session (for context).
    group.bench_function("setup/expand_public_key", |b| {
        b.iter(|| pk.expand(&ctx).expect("expand"))
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_preset(c, &params::DEFAULT_N16384);
    bench_preset(c, &params::COMPACT_N8192);
}

criterion_group!(ckks, benches);
criterion_main!(ckks);
