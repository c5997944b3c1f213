//! Galois automorphisms X → X^g applied directly in the NTT domain, as permutations.
//!
//! `tfhe-ntt` stores the evaluations of a polynomial at the primitive 2N-th roots of unity in its
//! own (bit-reversed) order. Transforming the monomial X reveals that order: slot j holds the
//! root ψ^(e_j). Then (σ_g a)(ψ^(e_j)) = a(ψ^(e_j·g)), so σ_g is the permutation j → pos(e_j·g).
//! The exponent order is derived per prime and checked to be the same for all primes, so one
//! permutation per Galois element serves every limb.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use client_core::ring::{check_galois_element, Context, Ntt, Poly};

use super::EvalError;

/// Exponent order of the NTT slots and a cache of permutations per Galois element.
pub struct GaloisTables {
    n: usize,
    /// e_j: slot j of the NTT holds the evaluation at ψ^(e_j) (e_j odd, below 2N).
    exponents: Vec<u32>,
    /// pos[e / 2] = slot holding ψ^e, for odd e.
    position: Vec<u32>,
    cache: RwLock<HashMap<u64, Arc<Vec<u32>>>>,
}

impl GaloisTables {
    /// Derives the NTT slot order of `ctx`'s primes.
    pub fn new(ctx: &Context) -> Result<Self, EvalError> {
        let n = ctx.n();
        let mut reference: Option<Vec<u32>> = None;
        for pi in 0..ctx.num_q() + ctx.num_p() {
            let exps = slot_exponents(ctx, pi)?;
            match &reference {
                None => reference = Some(exps),
                Some(r) if *r == exps => {}
                Some(_) => {
                    return Err(EvalError::Internal("NTT slot order differs between primes"))
                }
            }
        }
        let exponents = reference.ok_or(EvalError::Internal("no primes"))?;
        let mut position = vec![u32::MAX; n];
        for (j, &e) in exponents.iter().enumerate() {
            position[(e / 2) as usize] = j as u32;
        }
        if position.contains(&u32::MAX) {
            return Err(EvalError::Internal(
                "NTT slots are not the odd powers of a root",
            ));
        }
        Ok(Self {
            n,
            exponents,
            position,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// The slot permutation of σ_g: out[j] = in[perm[j]].
    pub fn permutation(&self, g: u64) -> Result<Arc<Vec<u32>>, EvalError> {
        check_galois_element(self.n, g)?;
        if let Some(p) = self.cache.read().map_err(|_| EvalError::Poisoned)?.get(&g) {
            return Ok(p.clone());
        }
        let two_n = 2 * self.n as u64;
        let perm: Vec<u32> = self
            .exponents
            .iter()
            .map(|&e| {
                let target = (e as u64 * g) % two_n;
                self.position[(target / 2) as usize]
            })
            .collect();
        let perm = Arc::new(perm);
        self.cache
            .write()
            .map_err(|_| EvalError::Poisoned)?
            .insert(g, perm.clone());
        Ok(perm)
    }

    /// σ_g of an NTT-form polynomial (every limb).
    pub fn apply(&self, ctx: &Context, a: &Poly<Ntt>, g: u64) -> Result<Poly<Ntt>, EvalError> {
        let perm = self.permutation(g)?;
        let mut out = Poly::<Ntt>::zero(ctx, a.basis())?;
        for pos in 0..a.num_limbs() {
            let src = a.limb(pos);
            for (o, &p) in out.limb_mut(pos).iter_mut().zip(perm.iter()) {
                *o = src[p as usize];
            }
        }
        Ok(out)
    }
}

/// Exponents e_j (relative to the root in slot 0) of the NTT slots of prime `pi`.
fn slot_exponents(ctx: &Context, pi: usize) -> Result<Vec<u32>, EvalError> {
    let n = ctx.n();
    let m = ctx.modulus_at(pi);
    let mut x = vec![0u64; n];
    x[1] = 1;
    ctx.plan_at(pi).fwd(&mut x);
    // Slot 0 holds some primitive 2N-th root ψ0; every slot is an odd power of it.
    let psi = x[0];
    let psi_sq = m.mul(psi, psi);
    let mut by_value: HashMap<u64, u32> = HashMap::with_capacity(n);
    let mut power = psi;
    for k in 0..n {
        by_value.insert(power, (2 * k + 1) as u32);
        power = m.mul(power, psi_sq);
    }
    x.iter()
        .map(|v| {
            by_value
                .get(v)
                .copied()
                .ok_or(EvalError::Internal("NTT slot is not a root of X^N + 1"))
        })
        .collect()
}
