//! Evaluator benchmarks: `cargo bench -p server`.
//!
//! Every operation runs single-threaded ("1t") and on all cores ("all") at both presets.
//! `HEFUN_BENCH_QUICK=1` shortens measurement for smoke runs. The `seal-params` groups run the
//! basic operations at Microsoft SEAL's parameters (`-- seal-params` runs only those).

use std::sync::Arc;
use std::time::Duration;

use client_core::cipher::encrypt_symmetric;
use client_core::keys::SecretKey;
use client_core::params::{ParamSpec, Params, COMPACT_N8192, DEFAULT_N16384};
use client_core::rand_core::{Rng, SeedableRng};
use client_core::ring::Context;
use client_core::sampling::Csprng;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use server::eval::{Ct, EvalKeys, Evaluator, LinearTransform, Matrix, PlainNtt};

// The server binary uses mimalloc too: multi-megabyte temporaries on the default allocator cost
// page faults on every operation.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bench {
    eval: Evaluator,
    keys: EvalKeys,
    x: Ct,
    y: Ct,
    rng: Csprng,
    slots: usize,
}

fn values(rng: &mut Csprng, n: usize, bound: f64) -> Vec<f64> {
    (0..n)
        .map(|_| (rng.next_u64() as f64 / u64::MAX as f64 * 2.0 - 1.0) * bound)
        .collect()
}

fn setup(spec: &ParamSpec, rotations: &[i64]) -> Bench {
    let params = Params::from_spec(spec).unwrap();
    let ctx = Arc::new(Context::new(&params).unwrap());
    let eval = Evaluator::new(ctx.clone()).unwrap();
    let mut rng = Csprng::from_seed([9; 32]);
    let sk = SecretKey::generate(&ctx, &mut rng).unwrap();
    let (keys, _) = server::demo::generate_keys(&ctx, &sk, rotations, &mut rng).unwrap();
    let slots = params.slots();
    let enc = |rng: &mut Csprng| {
        let v = values(rng, slots, 1.0);
        let pt = eval
            .encoder()
            .encode(&ctx, &v, params.default_scale(), params.top_level())
            .unwrap();
        let ct = encrypt_symmetric(&ctx, &sk, &pt, rng)
            .unwrap()
            .expand(&ctx)
            .unwrap();
        Ct::from_fresh(&ctx, ct).unwrap()
    };
    let x = enc(&mut rng);
    let y = enc(&mut rng);
    Bench {
        eval,
        keys,
        x,
        y,
        rng,
        slots,
    }
}

/// Criterion settings of every group. `criterion_group!` applies the command line (the name filter
/// among it) on top of them; a `Criterion` built inside a group would ignore the filter.
fn configure() -> Criterion {
    let quick = std::env::var("HEFUN_BENCH_QUICK").is_ok();
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(if quick { 200 } else { 1000 }))
        .measurement_time(Duration::from_secs(if quick { 1 } else { 3 }))
}

fn pools() -> Vec<(&'static str, rayon::ThreadPool)> {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    vec![
        (
            "1t",
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap(),
        ),
        (
            "all",
            rayon::ThreadPoolBuilder::new()
                .num_threads(all)
                .build()
                .unwrap(),
        ),
    ]
}

/// A plaintext of random values at the top level, at scale q_top (so a rescale restores the scale).
fn top_plaintext(b: &mut Bench) -> PlainNtt {
    let top = b.x.level();
    let q_top = b.eval.ctx().modulus_at(top).value() as f64;
    let w = values(&mut b.rng, b.slots, 1.0);
    b.eval.encode(&w, q_top, top).unwrap()
}

/// Registers ct*pt, ct*ct + relin + rescale, one rotation by one slot and rescale in `g`, each
/// call run inside `pool` (the benchmark group is not Send, so each call enters the pool itself).
fn core_ops(
    g: &mut BenchmarkGroup<'_, WallTime>,
    b: &Bench,
    pt: &PlainNtt,
    pool: &rayon::ThreadPool,
) {
    let run = |f: &(dyn Fn() + Sync)| pool.install(f);
    g.bench_function("ct*pt", |bn| {
        bn.iter(|| run(&|| drop(b.eval.mul_plain(&b.x, pt).unwrap())))
    });
    g.bench_function("ct*ct+relin+rescale", |bn| {
        bn.iter(|| {
            run(&|| {
                let p = b.eval.mul(&b.x, &b.y, 1.0, 1.0, &b.keys).unwrap();
                drop(b.eval.rescale(&p).unwrap())
            })
        })
    });
    g.bench_function("rescale", |bn| {
        bn.iter(|| run(&|| drop(b.eval.rescale(&b.x).unwrap())))
    });
    g.bench_function("rotate", |bn| {
        bn.iter(|| run(&|| drop(b.eval.rotate(&b.x, 1, &b.keys).unwrap())))
    });
}

fn primitives(c: &mut Criterion) {
    for (name, spec) in [("n16384", &DEFAULT_N16384), ("n8192", &COMPACT_N8192)] {
        let hoisted: Vec<i64> = (1..=8).collect();
        let mut b = setup(spec, &hoisted);
        let pt = top_plaintext(&mut b);
        for (threads, pool) in pools() {
            let mut g = c.benchmark_group(format!("eval/{name}/{threads}"));
            core_ops(&mut g, &b, &pt, &pool);
            g.bench_with_input(
                BenchmarkId::new("hoisted-rotations", 8),
                &hoisted,
                |bn, steps| {
                    bn.iter(|| {
                        pool.install(|| drop(b.eval.rotate_hoisted(&b.x, steps, &b.keys).unwrap()))
                    })
                },
            );
            g.finish();
        }
    }
}

fn transforms(c: &mut Criterion) {
    for (name, spec) in [("n16384", &DEFAULT_N16384), ("n8192", &COMPACT_N8192)] {
        let mut rng = Csprng::from_seed([10; 32]);
        let slots = 1usize << (spec.log_n - 1);
        let n = 1024;
        let dense = Matrix {
            rows: n,
            cols: n,
            data: values(&mut rng, n * n, 1.0 / 32.0),
        };
        let mut perm: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            perm.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let mut pdata = vec![0.0; n * n];
        for (r, &col) in perm.iter().enumerate() {
            pdata[r * n + col] = 1.0;
        }
        let permutation = Matrix {
            rows: n,
            cols: n,
            data: pdata,
        };
        let kernels = values(&mut rng, 45, 0.5);
        let mut cdata = vec![0.0; 845 * 784];
        for ch in 0..5 {
            for y in 0..13 {
                for x in 0..13 {
                    for dy in 0..3 {
                        for dx in 0..3 {
                            cdata[(ch * 169 + y * 13 + x) * 784 + (2 * y + dy) * 28 + 2 * x + dx] =
                                kernels[ch * 9 + dy * 3 + dx];
                        }
                    }
                }
            }
        }
        let conv = Matrix {
            rows: 845,
            cols: 784,
            data: cdata,
        };
        let lts: Vec<(&str, LinearTransform)> = [
            ("dense1024", &dense),
            ("perm1024", &permutation),
            ("conv-mnist", &conv),
        ]
        .into_iter()
        .map(|(k, m)| (k, LinearTransform::new(m, 1024, slots).unwrap()))
        .collect();
        let mut steps: Vec<i64> = lts.iter().flat_map(|(_, lt)| lt.rotation_steps()).collect();
        steps.sort_unstable();
        steps.dedup();
        let b = setup(spec, &steps);
        for (threads, pool) in pools() {
            let mut g = c.benchmark_group(format!("linear/{name}/{threads}"));
            for (k, lt) in &lts {
                // The first call encodes and caches the diagonals; measure the steady state.
                lt.apply(&b.eval, &b.x, &b.keys).unwrap();
                g.bench_function(*k, |bn| {
                    bn.iter(|| pool.install(|| drop(lt.apply(&b.eval, &b.x, &b.keys).unwrap())))
                });
            }
            g.finish();
        }
    }
}

/// SEAL's usual CKKS parameters, for a comparison at equal parameters (docs/benchmarks-server.md):
/// ciphertext primes as in SEAL's `CoeffModulus::Create(N, bits)` without its last entry, one
/// 60-bit special prime (SEAL's last prime), and one prime per key-switching digit as in SEAL.
/// tfhe-ntt runs its IFMA kernels on the 40-bit primes only; the 60-bit ones take its 64-bit
/// AVX-512 path (the presets keep every prime below 2^50 for that reason).
const SEAL_N8192: ParamSpec = ParamSpec {
    name: "seal-n8192",
    log_n: 13,
    q_bits: &[60, 40, 40],
    p_bits: &[60],
    digit_size: 1,
    handoff_level: 0,
    scale_bits: 40,
    stat_sec_bits: 0,
    round: client_core::params::RoundKind::Refresh,
};

/// See [`SEAL_N8192`]: N = 2^14 with primes [60, 40, 40, 40, 40 | 60].
const SEAL_N16384: ParamSpec = ParamSpec {
    name: "seal-n16384",
    log_n: 14,
    q_bits: &[60, 40, 40, 40, 40],
    p_bits: &[60],
    digit_size: 1,
    handoff_level: 0,
    scale_bits: 40,
    stat_sec_bits: 0,
    round: client_core::params::RoundKind::Refresh,
};

/// The operations of `tools/seal_reference.py --evaluator` at SEAL's parameters, on a top-level
/// ciphertext: ct*pt, ct*ct + relinearisation + rescale, one rotation by one slot, rescale.
fn seal_params(c: &mut Criterion) {
    for (name, spec) in [("n8192", &SEAL_N8192), ("n16384", &SEAL_N16384)] {
        let mut b = setup(spec, &[1]);
        let pt = top_plaintext(&mut b);
        for (threads, pool) in pools() {
            let mut g = c.benchmark_group(format!("seal-params/{name}/{threads}"));
            core_ops(&mut g, &b, &pt, &pool);
            g.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = configure();
    targets = primitives, transforms, seal_params
}
criterion_main!(benches);
