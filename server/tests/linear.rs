//! Linear transforms against plaintext matrix products.

mod common;

use client_core::params::{ParamSpec, COMPACT_N8192, DEFAULT_N16384};
use client_core::rand_core::Rng;
use common::{assert_precision, Harness};
use server::eval::{Layout, LinearTransform, Matrix};

fn random_matrix(h: &mut Harness, rows: usize, cols: usize, bound: f64) -> Matrix {
    let data = h.values(rows * cols, bound);
    Matrix { rows, cols, data }
}

/// Encrypts x with period `period` across all slots, period b rotated left by
/// (b mod copies)·shift.
fn encrypt_periodic(
    h: &mut Harness,
    x: &[f64],
    period: usize,
    (shift, copies): (usize, usize),
) -> (server::eval::Ct, server::eval::Ct) {
    let slots = h.slots();
    let full: Vec<f64> = (0..slots)
        .map(|t| {
            let i = (t % period + ((t / period) % copies) * shift) % period;
            x.get(i).copied().unwrap_or(0.0)
        })
        .collect();
    h.encrypt(&full)
}

/// Which constructor a test uses.
#[derive(Clone, Copy)]
enum Build {
    Periodic,
    /// Input laid out as shifted replicas by the encryptor.
    Replicated,
    /// Plain periodic input, re-laid out by the server for at most this many replicas.
    FromPeriodic(usize),
}

/// Runs W·x encrypted and checks every period of the output against the plaintext product.
fn check(
    spec: &ParamSpec,
    name: &str,
    make: impl Fn(&mut Harness) -> Matrix,
    period: usize,
    min_bits: f64,
    build: Build,
) -> LinearTransform {
    // Keys are generated for exactly the steps the transform asks for.
    let mut probe = Harness::new(spec, &[], 40);
    let w = make(&mut probe);
    let slots = probe.slots();
    let lt = match build {
        Build::Periodic => LinearTransform::new(&w, period, slots),
        Build::Replicated => LinearTransform::new_replicated(&w, period, slots),
        Build::FromPeriodic(max) => LinearTransform::new_replicated_with(&w, period, slots, max),
    }
    .unwrap();
    let relayout = matches!(build, Build::FromPeriodic(_));
    let steps = if relayout {
        lt.rotation_steps_from_periodic()
    } else {
        lt.rotation_steps()
    };
    let mut h = Harness::new(spec, &steps, 41);
    let x = h.values(w.cols, 1.0);
    let layout = if relayout {
        (0, 1)
    } else {
        (lt.input_shift(), lt.input_copies())
    };
    let (ct, shadow) = encrypt_periodic(&mut h, &x, period, layout);
    let apply = |ct: &server::eval::Ct| {
        if relayout {
            lt.apply_from_periodic(&h.eval, ct, &h.keys, 1).unwrap()
        } else {
            lt.apply(&h.eval, ct, &h.keys).unwrap()
        }
    };
    let y = apply(&ct);
    let (noise, bound) = h.check_noise(name, &y, &apply(&shadow));
    let levels = 1 + if relayout { lt.relayout_levels() } else { 0 };
    assert_eq!(y.level(), ct.level() - levels);
    assert_eq!(y.scale(), ct.scale());
    let want = w.apply_plain(&x);
    let got = h.decrypt(&y);
    let out_period = lt.output_period();
    let mut worst = f64::INFINITY;
    for start in (0..slots).step_by(out_period) {
        let bits = assert_precision(
            &format!("{name} at slot {start}"),
            &want,
            &got[start..],
            min_bits,
        );
        worst = worst.min(bits);
    }
    let cost = lt.cost(h.ctx.n(), h.params.top_level() + 1);
    eprintln!(
        "{} {name}: {:?}, {} rotation keys, {} rotations, {} pt-mults, {:.1} MB cached; worst {worst:.1} bits, noise 2^{noise:.1} <= 2^{bound:.1}",
        h.params.name(),
        lt.layout(),
        steps.len(),
        cost.rotations,
        cost.plaintext_multiplies,
        cost.cached_bytes_top_level as f64 / 1e6
    );
    lt
}

#[test]
fn dense_1024_by_1024() {
    for spec in [&COMPACT_N8192, &DEFAULT_N16384] {
        check(
            spec,
            "dense 1024x1024",
            |h| random_matrix(h, 1024, 1024, 1.0 / 32.0),
            1024,
            12.0,
            Build::Periodic,
        );
    }
}

#[test]
fn random_permutation() {
    check(
        &COMPACT_N8192,
        "permutation 1024",
        |h| {
            let n = 1024;
            let mut perm: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                let j = (h.rng.next_u64() % (i as u64 + 1)) as usize;
                perm.swap(i, j);
            }
            let mut data = vec![0.0; n * n];
            for (r, &c) in perm.iter().enumerate() {
                data[r * n + c] = 1.0;
            }
            Matrix {
                rows: n,
                cols: n,
                data,
            }
        },
        1024,
        14.0,
        Build::Periodic,
    );
}

/// MNIST 28×28 → 5 channels of 13×13 with 3×3 kernels, stride 2 (no padding).
fn strided_conv(h: &mut Harness) -> Matrix {
    let kernels = h.values(5 * 9, 0.5);
    let (rows, cols) = (5 * 13 * 13, 28 * 28);
    let mut data = vec![0.0; rows * cols];
    for c in 0..5 {
        for y in 0..13 {
            for x in 0..13 {
                let r = c * 169 + y * 13 + x;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let col = (2 * y + dy) * 28 + 2 * x + dx;
                        data[r * cols + col] = kernels[c * 9 + dy * 3 + dx];
                    }
                }
            }
        }
    }
    Matrix { rows, cols, data }
}

#[test]
fn strided_convolution_matrix() {
    check(
        &COMPACT_N8192,
        "conv 5x3x3 stride 2",
        strided_conv,
        1024,
        14.0,
        Build::Periodic,
    );
}

#[test]
fn wide_matrix_uses_extended_diagonals() {
    let mut h = Harness::new(&COMPACT_N8192, &[], 42);
    let w = random_matrix(&mut h, 100, 845, 0.05);
    let lt = LinearTransform::new(&w, 1024, h.slots()).unwrap();
    assert_eq!(lt.layout(), Layout::Wide { out_period: 128 });
    check(
        &COMPACT_N8192,
        "FC 845->100",
        |h| random_matrix(h, 100, 845, 0.05),
        1024,
        14.0,
        Build::Periodic,
    );
}

/// Rows of `w` in a random order (what HePerm does to a layer).
fn permute_rows(h: &mut Harness, w: &Matrix, padded_rows: usize) -> Matrix {
    let mut perm: Vec<usize> = (0..padded_rows).collect();
    for i in (1..padded_rows).rev() {
        let j = (h.rng.next_u64() % (i as u64 + 1)) as usize;
        perm.swap(i, j);
    }
    let mut data = vec![0.0; padded_rows * w.cols];
    for (r, &to) in perm.iter().enumerate().take(w.rows) {
        data[to * w.cols..(to + 1) * w.cols].copy_from_slice(&w.data[r * w.cols..(r + 1) * w.cols]);
    }
    Matrix {
        rows: padded_rows,
        cols: w.cols,
        data,
    }
}

#[test]
fn replicated_dense_and_permuted_convolution() {
    for spec in [&COMPACT_N8192, &DEFAULT_N16384] {
        let lt = check(
            spec,
            "replicated dense 1024x1024",
            |h| random_matrix(h, 1024, 1024, 1.0 / 32.0),
            1024,
            12.0,
            Build::Replicated,
        );
        assert!(matches!(lt.layout(), Layout::Replicated { .. }));
    }
    let lt = check(
        &DEFAULT_N16384,
        "replicated permuted conv",
        |h| {
            let w = strided_conv(h);
            permute_rows(h, &w, 1024)
        },
        1024,
        14.0,
        Build::Replicated,
    );
    // 8 replicas of period 1024 in 8192 slots: 128 products instead of 1024.
    assert_eq!(
        lt.layout(),
        Layout::Replicated {
            blocks: 8,
            shift: 128,
            out_period: 1024
        }
    );
    assert_eq!(lt.cost(16384, 7).plaintext_multiplies, 128);
}

#[test]
fn server_side_relayout_of_periodic_inputs() {
    // Wide (extended diagonals) and square transforms fed a plain periodic vector, as hidden
    // layers are: the server re-lays it out into shifted replicas first.
    let lt = check(
        &DEFAULT_N16384,
        "FC 845->100 from periodic",
        |h| random_matrix(h, 100, 845, 0.05),
        1024,
        14.0,
        Build::FromPeriodic(8),
    );
    assert_eq!(
        lt.layout(),
        Layout::Replicated {
            blocks: 8,
            shift: 16,
            out_period: 128
        }
    );
    assert_eq!(lt.cost(16384, 7).plaintext_multiplies, 16);
    let lt = check(
        &COMPACT_N8192,
        "square 256 from periodic",
        |h| random_matrix(h, 256, 256, 1.0 / 16.0),
        256,
        14.0,
        Build::FromPeriodic(4),
    );
    assert_eq!(
        lt.layout(),
        Layout::Replicated {
            blocks: 4,
            shift: 64,
            out_period: 256
        }
    );
}

#[test]
fn relayout_of_a_period_below_eight() {
    // A 2×2 layer: its block masks span 4 slots, shorter than the small-ring encoder's minimum.
    let lt = check(
        &COMPACT_N8192,
        "2x2 from periodic",
        |h| random_matrix(h, 2, 2, 1.0),
        2,
        14.0,
        Build::FromPeriodic(2),
    );
    assert_eq!(
        lt.layout(),
        Layout::Replicated {
            blocks: 2,
            shift: 1,
            out_period: 2
        }
    );
}

#[test]
fn replicated_small_period_caps_the_replicas() {
    // 4096 slots / period 16 would be 256 replicas; at most 16 (one diagonal each) are used and
    // the layout repeats every 256 slots.
    let lt = check(
        &COMPACT_N8192,
        "replicated 16x16",
        |h| random_matrix(h, 16, 16, 0.25),
        16,
        14.0,
        Build::Replicated,
    );
    assert_eq!(
        lt.layout(),
        Layout::Replicated {
            blocks: 16,
            shift: 1,
            out_period: 16
        }
    );
}

#[test]
fn replicated_wide_matrix_with_few_diagonals() {
    // 10×100 in period 128: 16 extended diagonals, so only 16 of the 32 possible copies are
    // used and the copy pattern repeats every 16·128 slots.
    let lt = check(
        &COMPACT_N8192,
        "replicated 10x100",
        |h| random_matrix(h, 10, 100, 0.1),
        128,
        14.0,
        Build::Replicated,
    );
    assert_eq!(
        lt.layout(),
        Layout::Replicated {
            blocks: 16,
            shift: 1,
            out_period: 16
        }
    );
    assert_eq!(lt.input_copies(), 16);
}

#[test]
fn bad_shapes_are_errors() {
    let w = Matrix {
        rows: 3,
        cols: 5,
        data: vec![1.0; 15],
    };
    assert!(LinearTransform::new(&w, 4, 4096).is_err());
    assert!(LinearTransform::new(&w, 6, 4096).is_err());
    assert!(LinearTransform::new(&w, 8192, 4096).is_err());
    let bad = Matrix {
        rows: 3,
        cols: 5,
        data: vec![1.0; 14],
    };
    assert!(LinearTransform::new(&bad, 8, 4096).is_err());
}
