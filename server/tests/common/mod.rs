//! Test harness: a client (secret key) and the evaluator with uploaded keys.
#![allow(dead_code)]

use std::sync::Arc;

use client_core::cipher::{decrypt, decrypt_slots, encrypt_symmetric, Ciphertext};
use client_core::encoding::precision_bits;
use client_core::keys::SecretKey;
use client_core::params::{ParamSpec, Params};
use client_core::rand_core::{Rng, SeedableRng};
use client_core::ring::{Context, IntPoly, Ntt, Poly};
use client_core::sampling::Csprng;
use server::eval::{Ct, EvalKeys, Evaluator, PlainNtt};

pub struct Harness {
    pub params: Params,
    pub ctx: Arc<Context>,
    pub eval: Evaluator,
    pub sk: SecretKey,
    pub keys: EvalKeys,
    pub rng: Csprng,
}

impl Harness {
    pub fn new(spec: &ParamSpec, rotations: &[i64], seed: u8) -> Self {
        let params = Params::from_spec(spec).unwrap();
        let ctx = Arc::new(Context::new(&params).unwrap());
        let eval = Evaluator::new(ctx.clone()).unwrap();
        let mut rng = Csprng::from_seed([seed; 32]);
        let sk = SecretKey::generate(&ctx, &mut rng).unwrap();
        let (keys, _) = server::demo::generate_keys(&ctx, &sk, rotations, &mut rng).unwrap();
        Self {
            params,
            ctx,
            eval,
            sk,
            keys,
            rng,
        }
    }

    pub fn slots(&self) -> usize {
        self.params.slots()
    }

    pub fn values(&mut self, count: usize, bound: f64) -> Vec<f64> {
        (0..count)
            .map(|_| (self.rng.next_u64() as f64 / u64::MAX as f64 * 2.0 - 1.0) * bound)
            .collect()
    }

    /// Encrypts at the top level with the default scale; also returns the noiseless shadow.
    pub fn encrypt(&mut self, values: &[f64]) -> (Ct, Ct) {
        self.encrypt_at(values, self.params.default_scale(), self.params.top_level())
    }

    pub fn encrypt_at(&mut self, values: &[f64], scale: f64, level: usize) -> (Ct, Ct) {
        let pt = self
            .eval
            .encoder()
            .encode(&self.ctx, values, scale, level)
            .unwrap();
        let ct = encrypt_symmetric(&self.ctx, &self.sk, &pt, &mut self.rng)
            .unwrap()
            .expand(&self.ctx)
            .unwrap();
        // The noiseless shadow is a trivial encryption (c1 = 0) of the same plaintext.
        let trivial = Ciphertext {
            c0: pt.poly.into_ntt(&self.ctx).unwrap(),
            c1: Poly::<Ntt>::zero(&self.ctx, ct.c0.basis()).unwrap(),
            scale,
        };
        let shadow = Ct::from_fresh(&self.ctx, trivial).unwrap();
        (Ct::from_fresh(&self.ctx, ct).unwrap(), shadow)
    }

    pub fn decrypt(&self, ct: &Ct) -> Vec<f64> {
        decrypt_slots(
            &self.ctx,
            self.eval.encoder(),
            &self.sk,
            &ct.clone().into_ciphertext(),
        )
        .unwrap()
    }

    /// Largest |error coefficient| of `ct` against its noiseless shadow.
    pub fn measured_noise(&self, ct: &Ct, shadow: &Ct) -> f64 {
        let mut d = decrypt(&self.ctx, &self.sk, &ct.clone().into_ciphertext()).unwrap();
        let s = shadow
            .clone()
            .into_ciphertext()
            .c0
            .into_coeff(&self.ctx)
            .unwrap();
        d.sub_assign(&self.ctx, &s).unwrap();
        let e = IntPoly::reconstruct(&self.ctx, &d).unwrap();
        (0..e.len())
            .map(|i| e.coeff_f64(i).abs())
            .fold(0.0, f64::max)
    }

    /// Asserts the noise estimate bounds the measured noise, and returns log2 of both.
    pub fn check_noise(&self, what: &str, ct: &Ct, shadow: &Ct) -> (f64, f64) {
        let measured = self.measured_noise(ct, shadow);
        let bound = ct.noise_bound();
        assert!(
            measured <= bound,
            "{what}: measured noise 2^{:.1} exceeds the estimate's bound 2^{:.1}",
            measured.log2(),
            bound.log2()
        );
        (measured.log2(), bound.log2())
    }

    pub fn plain(&self, values: &[f64], scale: f64, level: usize) -> PlainNtt {
        self.eval.encode(values, scale, level).unwrap()
    }
}

pub fn assert_precision(what: &str, want: &[f64], got: &[f64], min_bits: f64) -> f64 {
    let bits = precision_bits(want, &got[..want.len()]);
    assert!(
        bits >= min_bits,
        "{what}: precision {bits:.1} bits < {min_bits}"
    );
    bits
}
