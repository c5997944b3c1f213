//! Ring arithmetic against schoolbook definitions.

mod common;

use client_core::ring::{Basis, Coeff, IntPoly, Poly};
use client_core::Error;
use proptest::prelude::*;

/// Negacyclic schoolbook product modulo q.
fn schoolbook(a: &[u64], b: &[u64], q: u64) -> Vec<u64> {
    let n = a.len();
    let mut out = vec![0u128; n];
    for (i, &ai) in a.iter().enumerate() {
        for (j, &bj) in b.iter().enumerate() {
            let prod = ai as u128 * bj as u128 % q as u128;
            let k = i + j;
            if k < n {
                out[k] = (out[k] + prod) % q as u128;
            } else {
                out[k - n] = (out[k - n] + q as u128 - prod) % q as u128;
            }
        }
    }
    out.into_iter().map(|x| x as u64).collect()
}

fn random_poly(ctx: &client_core::ring::Context, basis: Basis, words: &[u64]) -> Poly<Coeff> {
    let n = ctx.n();
    let mut data = Vec::with_capacity(n * basis.len());
    for pos in 0..basis.len() {
        let q = ctx.modulus(basis, pos).value();
        data.extend(words[pos * n..(pos + 1) * n].iter().map(|w| w % q));
    }
    Poly::from_data(ctx, basis, data).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn ntt_product_equals_schoolbook(
        log_n in 4u32..=6,
        words in proptest::collection::vec(any::<u64>(), 2 * 4 * 64),
    ) {
        let ctx = common::small_ctx(log_n);
        let basis = ctx.full_basis();
        let n = ctx.n();
        let a = random_poly(&ctx, basis, &words[..4 * n]);
        let b = random_poly(&ctx, basis, &words[4 * 64..4 * 64 + 4 * n]);
        let mut prod = a.clone().into_ntt(&ctx).unwrap();
        let b_ntt = b.clone().into_ntt(&ctx).unwrap();
        prod.validate(&ctx).unwrap();
        prod.mul_assign(&ctx, &b_ntt).unwrap();
        let mut acc = Poly::zero(&ctx, basis).unwrap();
        acc.mul_acc(&ctx, &a.clone().into_ntt(&ctx).unwrap(), &b_ntt).unwrap();
        let prod = prod.into_coeff(&ctx).unwrap();
        let acc = acc.into_coeff(&ctx).unwrap();
        for pos in 0..basis.len() {
            let q = ctx.modulus(basis, pos).value();
            let want = schoolbook(a.limb(pos), b.limb(pos), q);
            prop_assert_eq!(prod.limb(pos), &want[..]);
            prop_assert_eq!(acc.limb(pos), &want[..]);
        }
    }

    #[test]
    fn automorphism_is_a_ring_homomorphism(
        words in proptest::collection::vec(any::<u64>(), 2 * 4 * 32),
        k in 0u64..32,
    ) {
        let ctx = common::small_ctx(5);
        let basis = ctx.full_basis();
        let g = 2 * k + 1;
        let a = random_poly(&ctx, basis, &words[..4 * 32]);
        let b = random_poly(&ctx, basis, &words[4 * 32..]);
        let mut ab = a.clone().into_ntt(&ctx).unwrap();
        ab.mul_assign(&ctx, &b.clone().into_ntt(&ctx).unwrap()).unwrap();
        let lhs = ab.into_coeff(&ctx).unwrap().automorphism(&ctx, g).unwrap();
        let mut rhs = a.automorphism(&ctx, g).unwrap().into_ntt(&ctx).unwrap();
        rhs.mul_assign(&ctx, &b.automorphism(&ctx, g).unwrap().into_ntt(&ctx).unwrap()).unwrap();
        prop_assert_eq!(lhs, rhs.into_coeff(&ctx).unwrap());
    }

    #[test]
    fn crt_reconstructs_and_rereduces_centred_integers(
        raw in proptest::collection::vec(any::<i128>(), 16),
    ) {
        let ctx = common::small_ctx(4);
        // Three primes of 40 + 35 + 30 bits: |t| < 2^104.
        let values: Vec<i128> = raw.iter().map(|v| v >> 25).collect();
        let int = IntPoly::from_i128(&ctx, 2, &values).unwrap();
        let poly = int.reduce_into(&ctx, Basis::level(2)).unwrap();
        let back = IntPoly::reconstruct(&ctx, &poly).unwrap();
        for (i, &v) in values.iter().enumerate() {
            prop_assert_eq!(back.coeff_i128(i), Some(v));
            let f = back.coeff_f64(i);
            prop_assert!((f - v as f64).abs() <= (v as f64).abs() * 1e-15);
        }
        // Re-reduction into a basis with the special prime agrees with direct reduction.
        let wide = int.reduce_into(&ctx, ctx.full_basis()).unwrap();
        for pos in 0..ctx.full_basis().len() {
            let m = ctx.modulus(ctx.full_basis(), pos);
            for (i, &v) in values.iter().enumerate() {
                prop_assert_eq!(wide.limb(pos)[i], m.reduce_i128(v));
            }
        }
    }
}

#[test]
fn add_sub_neg_and_scalar() {
    let ctx = common::small_ctx(4);
    let basis = Basis::level(2);
    let a = Poly::<Coeff>::from_signed(
        &ctx,
        basis,
        &(0..16).map(|i| i * 1000 - 7000).collect::<Vec<_>>(),
    )
    .unwrap();
    let b =
        Poly::<Coeff>::from_signed(&ctx, basis, &(0..16).map(|i| 3 - i * i).collect::<Vec<_>>())
            .unwrap();
    let mut s = a.clone();
    s.add_assign(&ctx, &b).unwrap();
    s.sub_assign(&ctx, &b).unwrap();
    assert_eq!(s, a);
    let mut neg = a.clone();
    neg.neg_assign(&ctx).unwrap();
    neg.add_assign(&ctx, &a).unwrap();
    assert_eq!(neg, Poly::zero(&ctx, basis).unwrap());
    let mut tripled = a.clone();
    tripled.mul_scalar_assign(&ctx, -3).unwrap();
    let want: Vec<i64> = (0..16).map(|i| -3 * (i * 1000 - 7000)).collect();
    assert_eq!(tripled, Poly::from_signed(&ctx, basis, &want).unwrap());
}

#[test]
fn drop_to_level_keeps_the_right_limbs() {
    let ctx = common::small_ctx(4);
    let vals: Vec<i64> = (0..16).map(|i| i - 8).collect();
    let mut full = Poly::<Coeff>::from_signed(&ctx, ctx.full_basis(), &vals).unwrap();
    full.drop_to_level(&ctx, 0).unwrap();
    assert_eq!(full.basis(), Basis { q: 1, p: 1 });
    let want = Poly::<Coeff>::from_signed(&ctx, Basis { q: 1, p: 1 }, &vals).unwrap();
    assert_eq!(full, want);
    assert!(matches!(
        full.drop_to_level(&ctx, 2),
        Err(Error::LevelOutOfRange { .. })
    ));
}

#[test]
fn hostile_polynomials_give_errors() {
    let ctx = common::small_ctx(4);
    let basis = Basis::level(1);
    let q0 = ctx.modulus(basis, 0).value();
    let mut data = vec![0u64; 32];
    data[5] = q0;
    assert!(matches!(
        Poly::<Coeff>::from_data(&ctx, basis, data),
        Err(Error::ResidueOutOfRange { limb: 0, index: 5 })
    ));
    assert!(matches!(
        Poly::<Coeff>::from_data(&ctx, basis, vec![0; 31]),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(Poly::<Coeff>::zero(&ctx, Basis { q: 9, p: 0 }).is_err());
    let a = Poly::<Coeff>::zero(&ctx, basis).unwrap();
    let mut b = Poly::<Coeff>::zero(&ctx, Basis::level(2)).unwrap();
    assert!(matches!(
        b.add_assign(&ctx, &a),
        Err(Error::BasisMismatch { .. })
    ));
    assert!(matches!(
        a.automorphism(&ctx, 4),
        Err(Error::InvalidGaloisElement(4))
    ));
    assert!(matches!(
        a.automorphism(&ctx, 33),
        Err(Error::InvalidGaloisElement(33))
    ));
    assert!(IntPoly::from_i128(&ctx, 0, &[1i128 << 80; 16]).is_err());
}
