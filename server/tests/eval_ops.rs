//! Evaluator operations against plaintext arithmetic on random vectors: precision in bits, and
//! the tracked noise estimate checked as an upper bound of the measured noise.

mod common;

use client_core::params::{COMPACT_N8192, DEFAULT_N16384};
use common::{assert_precision, Harness};
use server::eval::EvalError;

fn presets() -> [(&'static str, &'static client_core::params::ParamSpec); 2] {
    [("default", &DEFAULT_N16384), ("compact", &COMPACT_N8192)]
}

#[test]
fn additions_and_plaintext_products() {
    for (name, spec) in presets() {
        let mut h = Harness::new(spec, &[], 1);
        let slots = h.slots();
        let x = h.values(slots, 4.0);
        let y = h.values(slots, 4.0);
        let (cx, sx) = h.encrypt(&x);
        let (cy, sy) = h.encrypt(&y);
        let top = h.params.top_level();

        let sum = h.eval.add(&cx, &cy).unwrap();
        let want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
        let bits = assert_precision(&format!("{name} ct+ct"), &want, &h.decrypt(&sum), 25.0);
        h.check_noise("ct+ct", &sum, &h.eval.add(&sx, &sy).unwrap());
        eprintln!("{name}: ct+ct {bits:.1} bits");

        let diff = h.eval.sub(&cx, &cy).unwrap();
        let want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a - b).collect();
        assert_precision(&format!("{name} ct-ct"), &want, &h.decrypt(&diff), 25.0);

        let p = h.plain(&y, cx.scale(), top);
        let sum = h.eval.add_plain(&cx, &p).unwrap();
        let want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
        assert_precision(&format!("{name} ct+pt"), &want, &h.decrypt(&sum), 25.0);

        // ct × pt with the plaintext at scale q_top, so the rescale restores the scale exactly.
        let q_top = h.ctx.modulus_at(top).value() as f64;
        let w = h.plain(&y, q_top, top);
        let prod = h.eval.mul_plain(&cx, &w).unwrap();
        let shadow = h.eval.mul_plain(&sx, &w).unwrap();
        h.check_noise("ct*pt", &prod, &shadow);
        let prod = h.eval.rescale(&prod).unwrap();
        let shadow = h.eval.rescale(&shadow).unwrap();
        assert_eq!(prod.level(), top - 1);
        assert_eq!(prod.scale(), cx.scale());
        let (m, b) = h.check_noise("ct*pt+rescale", &prod, &shadow);
        let want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
        let bits = assert_precision(&format!("{name} ct*pt"), &want, &h.decrypt(&prod), 20.0);
        eprintln!("{name}: ct*pt+rescale {bits:.1} bits, noise 2^{m:.1} <= 2^{b:.1}");

        let tripled = h.eval.mul_int(&cx, -3).unwrap();
        let want: Vec<f64> = x.iter().map(|a| -3.0 * a).collect();
        assert_precision(&format!("{name} ct*int"), &want, &h.decrypt(&tripled), 25.0);
        assert_eq!(tripled.level(), top);
    }
}

#[test]
fn ciphertext_products_with_relinearisation() {
    for (name, spec) in presets() {
        let mut h = Harness::new(spec, &[], 2);
        let slots = h.slots();
        let x = h.values(slots, 2.0);
        let y = h.values(slots, 2.0);
        let (cx, sx) = h.encrypt(&x);
        let (cy, sy) = h.encrypt(&y);
        let prod = h.eval.mul(&cx, &cy, 2.0, 2.0, &h.keys).unwrap();
        let shadow = h.eval.mul(&sx, &sy, 2.0, 2.0, &h.keys).unwrap();
        h.check_noise("ct*ct+relin", &prod, &shadow);
        let prod = h.eval.rescale(&prod).unwrap();
        let shadow = h.eval.rescale(&shadow).unwrap();
        let (m, b) = h.check_noise("ct*ct+relin+rescale", &prod, &shadow);
        let want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
        let bits = assert_precision(&format!("{name} ct*ct"), &want, &h.decrypt(&prod), 18.0);
        eprintln!("{name}: ct*ct+relin+rescale {bits:.1} bits, noise 2^{m:.1} <= 2^{b:.1}");
        // And a second product one level down (x·y)·y.
        let (cy2, _) = h.encrypt_at(&y, prod.scale(), prod.level());
        let prod2 = h
            .eval
            .rescale(&h.eval.mul(&prod, &cy2, 4.0, 2.0, &h.keys).unwrap())
            .unwrap();
        let want: Vec<f64> = want.iter().zip(&y).map(|(a, b)| a * b).collect();
        assert_precision(&format!("{name} depth 2"), &want, &h.decrypt(&prod2), 14.0);
    }
}

#[test]
fn rotation_by_every_step_with_a_key() {
    for (name, spec) in presets() {
        let slots_total = 1i64 << (spec.log_n - 1);
        let steps = [1i64, 2, 3, 5, 16, 100, -1, -7, slots_total - 1];
        let mut h = Harness::new(spec, &steps, 3);
        let slots = h.slots();
        let x = h.values(slots, 1.0);
        let (cx, sx) = h.encrypt(&x);
        for &s in &steps {
            let rot = h.eval.rotate(&cx, s, &h.keys).unwrap();
            let want: Vec<f64> = (0..slots)
                .map(|j| x[(j as i64 + s).rem_euclid(slots as i64) as usize])
                .collect();
            let bits =
                assert_precision(&format!("{name} rotate {s}"), &want, &h.decrypt(&rot), 20.0);
            let shadow = h.eval.rotate(&sx, s, &h.keys).unwrap();
            let (m, b) = h.check_noise("rotation", &rot, &shadow);
            if s == 1 {
                eprintln!("{name}: rotate 1: {bits:.1} bits, noise 2^{m:.1} <= 2^{b:.1}");
            }
        }
        // Hoisted rotations agree with single rotations.
        let hoisted = h.eval.rotate_hoisted(&cx, &steps, &h.keys).unwrap();
        for (&s, r) in steps.iter().zip(&hoisted) {
            let want: Vec<f64> = (0..slots)
                .map(|j| x[(j as i64 + s).rem_euclid(slots as i64) as usize])
                .collect();
            assert_precision(&format!("{name} hoisted {s}"), &want, &h.decrypt(r), 20.0);
        }
        // Rotations at a lower level.
        let low = h.eval.drop_to_level(&cx, 1).unwrap();
        let rot = h.eval.rotate(&low, 3, &h.keys).unwrap();
        let want: Vec<f64> = (0..slots).map(|j| x[(j + 3) % slots]).collect();
        assert_precision(
            &format!("{name} rotate at level 1"),
            &want,
            &h.decrypt(&rot),
            20.0,
        );
    }
}

#[test]
fn rotation_sums_with_one_mod_down_match_the_plain_sum() {
    for (name, spec) in presets() {
        let steps = [0i64, 1, 5, 100, -7];
        let mut h = Harness::new(spec, &steps, 4);
        let slots = h.slots();
        let level = h.params.top_level();
        let x = h.values(slots, 1.0);
        let (cx, sx) = h.encrypt(&x);
        let period = 256;
        let scale = h.eval.ctx().modulus_at(level).value() as f64;
        let ps: Vec<Vec<f64>> = steps.iter().map(|_| h.values(period, 1.0)).collect();
        let plains: Vec<_> = ps
            .iter()
            .map(|p| h.eval.encode_periodic_ext(p, scale, level).unwrap())
            .collect();
        let terms: Vec<_> = steps.iter().copied().zip(plains.iter()).collect();
        let sum = h.eval.rotate_mul_sum(&cx, &terms, &h.keys).unwrap();
        let shadow = h.eval.rotate_mul_sum(&sx, &terms, &h.keys).unwrap();
        let (m, b) = h.check_noise("lazy rotation sum", &sum, &shadow);
        let want: Vec<f64> = (0..slots)
            .map(|j| {
                steps
                    .iter()
                    .zip(&ps)
                    .map(|(&s, p)| {
                        p[j % period] * x[(j as i64 + s).rem_euclid(slots as i64) as usize]
                    })
                    .sum()
            })
            .collect();
        let got = h.decrypt(&h.eval.rescale(&sum).unwrap());
        let bits = assert_precision(&format!("{name} lazy sum"), &want, &got, 20.0);
        // The same sum with one ModDown per rotation is less precise: each rotation's rounding is
        // multiplied by its plaintext.
        let rotated = h.eval.rotate_hoisted(&cx, &steps, &h.keys).unwrap();
        let mut eager = None;
        for (r, p) in rotated.iter().zip(&plains) {
            h.eval
                .mul_plain_accumulate(&mut eager, r, p.plain())
                .unwrap();
        }
        let eager_bits = assert_precision(
            &format!("{name} eager sum"),
            &want,
            &h.decrypt(&h.eval.rescale(&eager.unwrap()).unwrap()),
            20.0,
        );
        assert!(
            bits >= eager_bits,
            "lazy {bits:.1} vs eager {eager_bits:.1} bits"
        );
        eprintln!(
            "{name}: lazy sum {bits:.1} bits (eager {eager_bits:.1}), noise 2^{m:.1} <= 2^{b:.1}"
        );
        // Plaintexts at another level are an error, not a wrong result.
        let low = h.eval.drop_to_level(&cx, level - 1).unwrap();
        assert!(h.eval.rotate_mul_sum(&low, &terms, &h.keys).is_err());
        assert!(h.eval.rotate_mul_sum(&cx, &[], &h.keys).is_err());
    }
}

#[test]
fn wrong_levels_scales_and_keys_are_errors() {
    let mut h = Harness::new(&COMPACT_N8192, &[1], 4);
    let x = h.values(8, 1.0);
    let (cx, _) = h.encrypt(&x);
    let low = h.eval.drop_to_level(&cx, 1).unwrap();
    assert!(matches!(
        h.eval.add(&cx, &low),
        Err(EvalError::LevelMismatch(3, 1))
    ));
    let (other_scale, _) = h.encrypt_at(&x, 2f64.powi(30), h.params.top_level());
    assert!(matches!(
        h.eval.add(&cx, &other_scale),
        Err(EvalError::ScaleMismatch(..))
    ));
    assert!(matches!(
        h.eval.rotate(&cx, 2, &h.keys),
        Err(EvalError::MissingGaloisKey(_))
    ));
    let bottom = h.eval.drop_to_level(&cx, 0).unwrap();
    assert!(matches!(
        h.eval.rescale(&bottom),
        Err(EvalError::NoLevelLeft)
    ));
    let no_keys = server::eval::EvalKeys::default();
    assert!(matches!(
        h.eval.mul(&cx, &cx, 1.0, 1.0, &no_keys),
        Err(EvalError::MissingRelinKey)
    ));
    let p = h.plain(&x, 1e6, 1);
    assert!(matches!(
        h.eval.mul_plain(&cx, &p),
        Err(EvalError::LevelMismatch(3, 1))
    ));
    // A Galois key from another client's secret does not rotate this client's ciphertext.
    let mut other = Harness::new(&COMPACT_N8192, &[1], 5);
    let rot = h.eval.rotate(&cx, 1, &other.keys).unwrap();
    let got = h.decrypt(&rot);
    let want: Vec<f64> = (0..8).map(|j| x[(j + 1) % 8]).collect();
    assert!(client_core::encoding::precision_bits(&want, &got[..8]) < 1.0);
    let _ = other.values(1, 1.0);
}

#[test]
fn single_and_multi_threaded_results_agree() {
    let mut h = Harness::new(&COMPACT_N8192, &[1, 2, 3], 6);
    let x = h.values(h.slots(), 1.0);
    let (cx, _) = h.encrypt(&x);
    let one = server::eval::thread_pool(1).unwrap();
    let two = server::eval::thread_pool(2).unwrap();
    let a = one.install(|| h.eval.rotate_hoisted(&cx, &[1, 2, 3], &h.keys).unwrap());
    let b = two.install(|| h.eval.rotate_hoisted(&cx, &[1, 2, 3], &h.keys).unwrap());
    for (p, q) in a.iter().zip(&b) {
        // Deterministic arithmetic: identical ciphertexts whatever the thread count.
        assert_eq!(p.clone().into_ciphertext(), q.clone().into_ciphertext());
    }
}

#[test]
fn periodic_encoding_equals_full_encoding() {
    for (name, spec) in presets() {
        let mut h = Harness::new(spec, &[], 7);
        let slots = h.slots();
        for period in [8usize, 64, 1024, slots] {
            let v = h.values(period, 3.0);
            let full: Vec<f64> = (0..slots).map(|t| v[t % period]).collect();
            let level = h.params.top_level();
            let a = h.eval.encode(&full, 2f64.powi(30), level).unwrap();
            let b = h.eval.encode_periodic(&v, 2f64.powi(30), level).unwrap();
            // Both round the same real coefficients; the fast path must give the same plaintext.
            assert_eq!(a.poly, b.poly, "{name}, period {period}");
            assert!((a.sq_norm / b.sq_norm - 1.0).abs() < 1e-6);
        }
    }
}
