//! Transforms over several ciphertexts against plaintext matrix products: a sparse matrix over
//! three input and two output ciphertexts, and a dense one folded into one ciphertext.

mod common;

use client_core::params::COMPACT_N8192;
use client_core::rand_core::Rng;
use common::{assert_precision, Harness};
use server::eval::{BlockTransform, Bsgs, Ct, Matrix};

/// Encrypts `x` cut into ciphertexts of `slots` values.
fn encrypt_spread(h: &mut Harness, x: &[f64], cts: usize) -> Vec<Ct> {
    let slots = h.slots();
    (0..cts)
        .map(|c| {
            let chunk: Vec<f64> = (0..slots)
                .map(|t| x.get(c * slots + t).copied().unwrap_or(0.0))
                .collect();
            h.encrypt(&chunk).0
        })
        .collect()
}

#[test]
fn sparse_blocks_over_several_ciphertexts_match_the_plain_product() {
    let mut probe = Harness::new(&COMPACT_N8192, &[], 50);
    let slots = probe.slots();
    let (inputs, outputs) = (3, 2);
    let (cols, rows) = (2 * slots + 100, slots + 300);
    // A band of diagonals plus scattered entries, crossing block boundaries both ways.
    let mut entries = Vec::new();
    for r in 0..rows {
        for d in [0usize, 7, slots - 3] {
            let c = (2 * r + d) % cols;
            entries.push((r, c, probe.values(1, 1.0)[0]));
        }
    }
    let bsgs = Bsgs::balanced(1, slots);
    let bt =
        BlockTransform::from_entries(slots, inputs, slots, outputs, entries.clone(), bsgs).unwrap();
    let mut h = Harness::new(&COMPACT_N8192, &bt.rotation_steps(), 51);
    let x = h.values(cols, 1.0);
    let xs = encrypt_spread(&mut h, &x, inputs);
    let ys = bt.apply(&h.eval, &xs, &h.keys, 1).unwrap();
    assert_eq!(ys.len(), outputs);
    let mut want = vec![0.0; outputs * slots];
    for &(r, c, v) in &entries {
        want[r] += v * x[c];
    }
    let got: Vec<f64> = ys.iter().flat_map(|y| h.decrypt(y)).collect();
    assert_precision("sparse blocks", &want, &got, 14.0);
}

#[test]
fn dense_rows_over_two_ciphertexts_fold_into_one() {
    let mut probe = Harness::new(&COMPACT_N8192, &[], 52);
    let slots = probe.slots();
    let (rows, cols) = (20, slots + 500);
    let w = Matrix {
        rows,
        cols,
        data: probe.values(rows * cols, 1.0 / 64.0),
    };
    let bt = BlockTransform::folded(&w, slots, 2).unwrap();
    assert_eq!(bt.output_period(), 32);
    let mut h = Harness::new(&COMPACT_N8192, &bt.rotation_steps(), 53);
    let x = h.values(cols, 1.0);
    let xs = encrypt_spread(&mut h, &x, 2);
    let y = bt.apply(&h.eval, &xs, &h.keys, 1).unwrap().remove(0);
    let got = h.decrypt(&y);
    let want = w.apply_plain(&x);
    // Every period of the folded output holds the rows.
    let skip = (h.rng.next_u32() as usize % (slots / 32)) * 32;
    assert_precision("folded", &want, &got[skip..skip + rows], 14.0);
    assert_precision("folded (first)", &want, &got[..rows], 14.0);
}

#[test]
fn periodic_input_and_strided_diagonals_match_the_plain_product() {
    let mut probe = Harness::new(&COMPACT_N8192, &[], 54);
    let slots = probe.slots();
    // A 256-periodic input read by two output ciphertexts, only diagonals that are multiples
    // of 16 (baby steps 16·i, giant steps 64·j).
    let period = 256;
    let mut entries = Vec::new();
    for r in 0..2 * slots {
        let k = 16 * (r % 11);
        entries.push((r, (r + k) % period, probe.values(1, 1.0)[0]));
    }
    let bsgs = Bsgs { stride: 16, n1: 4 };
    let bt = BlockTransform::from_entries(slots, 1, period, 2, entries.clone(), bsgs).unwrap();
    assert!(bt.rotation_steps().iter().all(|s| s % 16 == 0));
    let mut h = Harness::new(&COMPACT_N8192, &bt.rotation_steps(), 55);
    let x = h.values(period, 1.0);
    let repeated: Vec<f64> = (0..slots).map(|t| x[t % period]).collect();
    let (ct, _) = h.encrypt(&repeated);
    let ys = bt.apply(&h.eval, &[ct], &h.keys, 1).unwrap();
    let mut want = vec![0.0; 2 * slots];
    for &(r, c, v) in &entries {
        want[r] += v * x[c];
    }
    let got: Vec<f64> = ys.iter().flat_map(|y| h.decrypt(y)).collect();
    assert_precision("strided, periodic", &want, &got, 14.0);
}
