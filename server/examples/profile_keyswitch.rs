//! Times the phases of one key switch (decompose, inner product, ModDown) at every preset, and a
//! re-layout of 16 blocks (15 masked rotations) with one ModDown per rotation against one ModDown
//! for the whole sum (`Evaluator::rotate_mul_sum`), at level 4 of `hefun-n16384`.
//! `cargo run --release -p server --example profile_keyswitch`
use std::sync::Arc;
use std::time::Instant;

use client_core::cipher::Ciphertext;
use client_core::keys::{SecretKey, SwitchingKey};
use client_core::params::{Params, COMPACT_N8192, DEFAULT_N16384, HEFUN_N16384};
use client_core::rand_core::SeedableRng;
use client_core::ring::{Context, Ntt, Poly};
use client_core::sampling::{fill_uniform, Csprng};
use server::eval::{Ct, Evaluator, PlainExt};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn time<T>(what: &str, iters: u32, mut f: impl FnMut() -> T) -> T {
    let mut out = f();
    let t = Instant::now();
    for _ in 0..iters {
        out = f();
    }
    println!(
        "  {what:<24} {:>9.1} us",
        t.elapsed().as_secs_f64() * 1e6 / iters as f64
    );
    out
}

fn main() {
    for spec in [&DEFAULT_N16384, &COMPACT_N8192, &HEFUN_N16384] {
        let params = Params::from_spec(spec).unwrap();
        let ctx = Arc::new(Context::new(&params).unwrap());
        let eval = Evaluator::new(ctx.clone()).unwrap();
        let mut rng = Csprng::from_seed([1; 32]);
        let sk = SecretKey::generate(&ctx, &mut rng).unwrap();
        let key = SwitchingKey::relinearization(&ctx, &sk, &mut rng)
            .unwrap()
            .expand(&ctx)
            .unwrap();
        let mut c = Poly::<Ntt>::zero(&ctx, ctx.top_basis()).unwrap();
        for pos in 0..ctx.num_q() {
            let m = *ctx.modulus_at(pos);
            fill_uniform(&mut rng, &m, c.limb_mut(pos));
        }
        println!("{}", params.name());
        let ks = eval.switcher();
        let dec = time("decompose", 50, || ks.decompose(&ctx, &c).unwrap());
        let (a0, _a1) = time("inner product", 50, || {
            ks.inner_product(&ctx, &dec.digits, dec.level, &key)
                .unwrap()
        });
        time("mod down (one part)", 50, || {
            ks.mod_down(&ctx, &a0).unwrap()
        });
        time("into_coeff (all limbs)", 50, || {
            c.clone().into_coeff(&ctx).unwrap()
        });
        time("clone", 50, || c.clone());
        time("galois apply", 50, || {
            eval.galois().apply(&ctx, &c, 5).unwrap()
        });
    }
    relayout();
}

/// 16 block masks times copies rotated by 8·b, at level 4 of `hefun-n16384` (the re-layout of a
/// 100×300 layer's input).
fn relayout() {
    let params = Params::from_spec(&HEFUN_N16384).unwrap();
    let ctx = Arc::new(Context::new(&params).unwrap());
    let eval = Evaluator::new(ctx.clone()).unwrap();
    let mut rng = Csprng::from_seed([2; 32]);
    let sk = SecretKey::generate(&ctx, &mut rng).unwrap();
    let steps: Vec<i64> = (1..16).map(|b| b * 8).collect();
    let (keys, _) = server::demo::generate_keys(&ctx, &sk, &steps, &mut rng).unwrap();
    let level = 4;
    let basis = client_core::ring::Basis::level(level);
    let mut random = || {
        let mut p = Poly::<Ntt>::zero(&ctx, basis).unwrap();
        for pos in 0..=level {
            let m = *ctx.modulus_at(pos);
            fill_uniform(&mut rng, &m, p.limb_mut(pos));
        }
        p
    };
    let random_ct = Ciphertext {
        c0: random(),
        c1: random(),
        scale: params.default_scale(),
    };
    let x = Ct::from_fresh(&ctx, random_ct).unwrap();
    let scale = ctx.modulus_at(level).value() as f64;
    let masks: Vec<PlainExt> = (0..16)
        .map(|b| {
            let v: Vec<f64> = (0..8192)
                .map(|t| if t / 512 == b { 1.0 } else { 0.0 })
                .collect();
            eval.encode_periodic_ext(&v, scale, level).unwrap()
        })
        .collect();
    println!("re-layout, 16 blocks, hefun-n16384 level {level}");
    time("one ModDown per rotation", 10, || {
        let rotated = eval.rotate_hoisted(&x, &steps, &keys).unwrap();
        let mut acc = Some(eval.mul_plain(&x, masks[0].plain()).unwrap());
        for (r, m) in rotated.iter().zip(&masks[1..]) {
            eval.mul_plain_accumulate(&mut acc, r, m.plain()).unwrap();
        }
        acc
    });
    let terms: Vec<(i64, &PlainExt)> = std::iter::once(0)
        .chain(steps.iter().copied())
        .zip(&masks)
        .collect();
    time("one ModDown for the sum", 10, || {
        eval.rotate_mul_sum(&x, &terms, &keys).unwrap()
    });
}
