//! Per-parameter-set precomputation: moduli and constants ([`Ring`]), and the NTT plans on top
//! ([`Context`]).

use alloc::vec::Vec;
use core::ops::Deref;

use tfhe_ntt::prime64::Plan;

use super::Basis;
use crate::arith::Modulus;
use crate::error::{Error, Result};
use crate::params::Params;

/// The constants of a [`Params`] that need no NTT plan: moduli, the gadget factor and Garner's
/// inverses. O(L²) words, so a microcontroller can hold it and build one plan at a time
/// ([`Ring::build_plan`], see [`crate::client::DeviceBackend`]).
pub struct Ring {
    params: Params,
    n: usize,
    /// Ciphertext primes then special primes.
    moduli: Vec<Modulus>,
    /// P mod q_i (the gadget factor of the key-switching keys), per ciphertext prime.
    p_mod_q: Vec<u64>,
    /// q_j^-1 mod q_i for j < i, row-major (i, j), for Garner's CRT.
    garner_inv: Vec<u64>,
}

/// A [`Ring`] with the NTT plans of all its primes: everything arithmetic needs.
///
/// Memory: one `tfhe-ntt` plan per prime, 32·N bytes each (512 KB per prime at N = 2^14). A
/// microcontroller client uses a [`Ring`] and builds plans limb by limb instead.
pub struct Context {
    ring: Ring,
    plans: Vec<Plan>,
}

impl Deref for Context {
    type Target = Ring;

    fn deref(&self) -> &Ring {
        &self.ring
    }
}

impl Context {
    /// Builds the context of a validated parameter set.
    pub fn new(params: &Params) -> Result<Self> {
        let ring = Ring::new(params)?;
        let plans = (0..ring.moduli.len())
            .map(|pi| ring.build_plan(pi))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { ring, plans })
    }

    /// The constants without the plans.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// NTT plan of the `pos`-th limb of `basis`.
    #[inline]
    pub fn plan(&self, basis: Basis, pos: usize) -> &Plan {
        &self.plans[self.prime_index(basis, pos)]
    }

    /// NTT plan by global prime index.
    #[inline]
    pub fn plan_at(&self, prime_index: usize) -> &Plan {
        &self.plans[prime_index]
    }
}

impl Ring {
    /// The constants of a parameter set (its structure is validated).
    pub fn new(params: &Params) -> Result<Self> {
        params.validate_structure()?;
        let n = params.n();
        let moduli = params
            .q()
            .iter()
            .chain(params.p())
            .map(|&prime| Modulus::new(prime).ok_or(Error::InvalidParams("prime size")))
            .collect::<Result<Vec<_>>>()?;
        let num_q = params.q().len();
        let p_mod_q = moduli[..num_q]
            .iter()
            .map(|m| {
                params
                    .p()
                    .iter()
                    .fold(1u64, |acc, &p| m.mul(acc, m.reduce_u64(p)))
            })
            .collect();
        let mut garner_inv = Vec::with_capacity(num_q * num_q);
        for i in 0..num_q {
            for j in 0..num_q {
                let inv = if j < i {
                    moduli[i]
                        .inv(moduli[i].reduce_u64(moduli[j].value()))
                        .ok_or(Error::InvalidParams("primes are not coprime"))?
                } else {
                    0
                };
                garner_inv.push(inv);
            }
        }
        Ok(Self {
            params: params.clone(),
            n,
            moduli,
            p_mod_q,
            garner_inv,
        })
    }

    /// Builds the NTT plan of global prime `prime_index` (32·N bytes).
    pub fn build_plan(&self, prime_index: usize) -> Result<Plan> {
        let m = self.moduli.get(prime_index).ok_or(Error::IndexOutOfRange {
            what: "prime",
            index: prime_index,
            len: self.moduli.len(),
        })?;
        Plan::try_new(self.n, m.value()).ok_or(Error::InvalidParams("no NTT plan for prime"))
    }

    /// Number of primes (ciphertext and special).
    pub fn num_primes(&self) -> usize {
        self.moduli.len()
    }

    /// The parameter set.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Ring dimension N.
    #[inline]
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of ciphertext primes.
    #[inline]
    pub fn num_q(&self) -> usize {
        self.params.q().len()
    }

    /// Number of special primes.
    #[inline]
    pub fn num_p(&self) -> usize {
        self.params.p().len()
    }

    /// The largest basis: all ciphertext and special primes.
    pub fn full_basis(&self) -> Basis {
        Basis::extended(self.num_q() - 1, self.num_p())
    }

    /// Basis of a fresh ciphertext (top level).
    pub fn top_basis(&self) -> Basis {
        Basis::level(self.num_q() - 1)
    }

    /// Checks that a basis fits in this context.
    pub fn check_basis(&self, basis: Basis) -> Result<()> {
        if basis.q as usize > self.num_q() || basis.p as usize > self.num_p() || basis.is_empty() {
            return Err(Error::BasisMismatch {
                expected: self.full_basis(),
                found: basis,
            });
        }
        Ok(())
    }

    /// Index into the context's prime list of the `pos`-th limb of `basis`.
    #[inline]
    pub fn prime_index(&self, basis: Basis, pos: usize) -> usize {
        if pos < basis.q as usize {
            pos
        } else {
            self.num_q() + pos - basis.q as usize
        }
    }

    /// Modulus of the `pos`-th limb of `basis`.
    #[inline]
    pub fn modulus(&self, basis: Basis, pos: usize) -> &Modulus {
        &self.moduli[self.prime_index(basis, pos)]
    }

    /// Modulus by global prime index (ciphertext primes first).
    #[inline]
    pub fn modulus_at(&self, prime_index: usize) -> &Modulus {
        &self.moduli[prime_index]
    }

    /// P mod q_i.
    #[inline]
    pub fn p_mod_q(&self, i: usize) -> u64 {
        self.p_mod_q[i]
    }

    /// q_j^-1 mod q_i for j < i.
    #[inline]
    pub(crate) fn garner_inv(&self, i: usize, j: usize) -> u64 {
        self.garner_inv[i * self.num_q() + j]
    }
}
