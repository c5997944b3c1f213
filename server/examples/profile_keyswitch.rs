//! Times the phases of one key switch (decompose, inner product, ModDown) at both presets.
//! `cargo run --release -p server --example profile_keyswitch`
use std::sync::Arc;
use std::time::Instant;

use client_core::keys::{SecretKey, SwitchingKey};
use client_core::params::{Params, COMPACT_N8192, DEFAULT_N16384};
use client_core::rand_core::SeedableRng;
use client_core::ring::{Context, Ntt, Poly};
use client_core::sampling::{fill_uniform, Csprng};
use server::eval::Evaluator;

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
    for spec in [&DEFAULT_N16384, &COMPACT_N8192] {
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
}
