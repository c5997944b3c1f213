//! Re-randomisation hides the server's computation from the client: the textbook attack that
//! recovers plaintext weights from c1 works on a bare product and fails on a re-randomised one.
//! (The protocol-level hiding claims are tested end to end in the top-level `tests/security.rs`.)

mod common;

use client_core::encoding::precision_bits;
use client_core::params::COMPACT_N8192;
use client_core::rand_core::SeedableRng;
use client_core::ring::{IntPoly, Ntt, Poly};
use client_core::sampling::Csprng;
use common::Harness;
use server::eval::Ct;

/// The client's attack: W ≈ c1(y)·c1(x)^-1, decoded at the plaintext's scale.
fn recover_weights(h: &Harness, x: &Ct, y: &Ct, scale: f64) -> Vec<f64> {
    let ctx = &h.ctx;
    let (x, y) = (x.clone().into_ciphertext(), y.clone().into_ciphertext());
    let basis = y.c1.basis();
    let mut w = Poly::<Ntt>::zero(ctx, basis).unwrap();
    for pos in 0..basis.len() {
        let m = ctx.modulus(basis, pos);
        let (cx, cy) = (x.c1.limb(pos), y.c1.limb(pos));
        for (o, (&a, &b)) in w.limb_mut(pos).iter_mut().zip(cx.iter().zip(cy)) {
            *o = m.mul(b, m.inv(a).unwrap_or(0));
        }
    }
    let int = IntPoly::reconstruct(ctx, &w.into_coeff(ctx).unwrap()).unwrap();
    h.eval.encoder().decode(&int, scale).unwrap()
}

#[test]
fn weights_leak_without_rerandomisation_and_not_with_it() {
    let mut h = Harness::new(&COMPACT_N8192, &[], 31);
    let slots = h.slots();
    let x = h.values(slots, 1.0);
    let weights = h.values(slots, 1.0);
    let (cx, _) = h.encrypt(&x);
    let top = cx.level();
    let scale = h.ctx.modulus_at(top).value() as f64;
    let w_pt = h.plain(&weights, scale, top);
    let y = h.eval.mul_plain(&cx, &w_pt).unwrap();

    // Naive reply: the attack recovers the weights to high precision.
    let stolen = recover_weights(&h, &cx, &y, scale);
    let bits = precision_bits(&weights, &stolen);
    assert!(
        bits > 20.0,
        "attack on the naive reply recovered only {bits:.1} bits"
    );

    // Real path: re-randomised and flooded at the top level (same level, so the attack applies).
    let mut rng = Csprng::from_seed([8; 32]);
    let (out, _) = h.eval.prepare_outgoing(&y, top, &h.keys, &mut rng).unwrap();
    let stolen = recover_weights(&h, &cx, &out, scale);
    let bits = precision_bits(&weights, &stolen);
    assert!(
        bits < 1.0,
        "attack on the protected reply still recovered {bits:.1} bits"
    );
}
