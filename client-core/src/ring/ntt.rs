//! A negacyclic NTT modulo one prime in about 4·√N words of tables: the device's transform.
//!
//! `tfhe-ntt`'s plan keeps four N-word tables (256 KB per prime at N = 2^13), more than a whole
//! device budget. Here a twiddle ψ^e is a product of two table entries, ψ^(e mod L) and
//! ψ^(L·⌊e/L⌋) with L ≈ √N, computed once per butterfly group with its Shoup constant (N − 1
//! of each per transform against N/2·log N butterflies, which then cost one Shoup product). The transform is the same as `tfhe-ntt`'s: the same primitive
//! 2N-th root ψ (found by the same chain of square roots of −1) and the same bit-reversed output
//! order, so a device and a server agree on every word of the NTT domain (tested against
//! `tfhe-ntt` below). The inverse is the inverse of that map, normalised.

use alloc::vec::Vec;

use crate::arith::Modulus;
use crate::error::{Error, Result};

/// Powers ψ^e for 0 ≤ e < N of one root, as two tables.
#[derive(Clone, Debug)]
struct Powers {
    /// ψ^e for e < L.
    lo: Vec<u64>,
    /// ψ^(L·e) for e < N / L, and their Shoup forms.
    hi: Vec<u64>,
    hi_shoup: Vec<u64>,
}

impl Powers {
    fn new(m: &Modulus, root: u64, n: usize, split: u32) -> Self {
        let geometric = |base: u64, len: usize| {
            let mut x = 1u64;
            (0..len)
                .map(|_| {
                    let y = x;
                    x = m.mul(x, base);
                    y
                })
                .collect::<Vec<u64>>()
        };
        let lo = geometric(root, 1 << split);
        let hi = geometric(m.pow(root, 1 << split), n >> split);
        let hi_shoup = hi.iter().map(|&w| m.shoup_fast(w)).collect();
        Self { lo, hi, hi_shoup }
    }

    #[inline(always)]
    fn get(&self, m: &Modulus, e: usize, split: u32) -> u64 {
        let h = e >> split;
        m.mul_shoup(
            self.lo[e & ((1 << split) - 1)],
            self.hi[h],
            self.hi_shoup[h],
        )
    }
}

/// The negacyclic NTT of ring dimension N modulo one prime.
#[derive(Clone, Debug)]
pub struct CompactNtt {
    m: Modulus,
    log_n: u32,
    split: u32,
    fwd: Powers,
    inv: Powers,
    n_inv: u64,
    n_inv_shoup: u64,
}

impl CompactNtt {
    /// The transform of dimension 2^`log_n` modulo `m` (a prime ≡ 1 mod 2N).
    pub fn new(m: &Modulus, log_n: u32) -> Result<Self> {
        let n = 1usize << log_n;
        let root = negacyclic_root(m, log_n)?;
        let root_inv = m.inv(root).ok_or(Error::InvalidParams("no NTT root"))?;
        let split = log_n.div_ceil(2);
        let n_inv = m
            .inv(m.reduce_u64(n as u64))
            .ok_or(Error::InvalidParams("N not invertible"))?;
        Ok(Self {
            m: *m,
            log_n,
            split,
            fwd: Powers::new(m, root, n, split),
            inv: Powers::new(m, root_inv, n, split),
            n_inv,
            n_inv_shoup: m.shoup(n_inv),
        })
    }

    /// The modulus.
    pub fn modulus(&self) -> &Modulus {
        &self.m
    }

    /// Bytes of tables held.
    pub fn table_bytes(&self) -> usize {
        let words = |p: &Powers| p.lo.len() + p.hi.len() + p.hi_shoup.len();
        8 * (words(&self.fwd) + words(&self.inv))
    }

    /// Bit reversal of `i` over log N bits.
    #[inline(always)]
    fn rev(&self, i: usize) -> usize {
        i.reverse_bits() >> (usize::BITS - self.log_n)
    }

    /// Coefficients in natural order → evaluations in bit-reversed order, in place.
    ///
    /// Harvey's lazy butterflies: words stay below 4q between stages (q < 2^62), products
    /// below 2q, and one pass at the end brings everything below q.
    pub fn forward(&self, a: &mut [u64]) {
        let m = &self.m;
        let q = m.value();
        let two_q = 2 * q;
        let n = 1usize << self.log_n;
        debug_assert_eq!(a.len(), n);
        let (mut groups, mut t) = (1usize, n);
        while groups < n {
            t /= 2;
            for i in 0..groups {
                let w = self.fwd.get(m, self.rev(groups + i), self.split);
                let w_shoup = m.shoup_fast(w);
                let (x, y) = a[2 * i * t..2 * (i + 1) * t].split_at_mut(t);
                for (u, v) in x.iter_mut().zip(y.iter_mut()) {
                    let mut s = *u;
                    if s >= two_q {
                        s -= two_q;
                    }
                    let p = m.mul_shoup_lazy(*v, w, w_shoup);
                    (*u, *v) = (s + p, s + two_q - p);
                }
            }
            groups *= 2;
        }
        for x in a.iter_mut() {
            if *x >= two_q {
                *x -= two_q;
            }
            if *x >= q {
                *x -= q;
            }
        }
    }

    /// Inverse of [`CompactNtt::forward`] (divided by N), in place.
    pub fn inverse(&self, a: &mut [u64]) {
        let m = &self.m;
        let n = 1usize << self.log_n;
        debug_assert_eq!(a.len(), n);
        let two_q = 2 * m.value();
        let (mut groups, mut t) = (n / 2, 1usize);
        // Lazy as the forward transform: words below 2q between stages.
        while groups >= 1 {
            for i in 0..groups {
                let w = self.inv.get(m, self.rev(groups + i), self.split);
                let w_shoup = m.shoup_fast(w);
                let (x, y) = a[2 * i * t..2 * (i + 1) * t].split_at_mut(t);
                for (u, v) in x.iter_mut().zip(y.iter_mut()) {
                    let mut s = *u + *v;
                    if s >= two_q {
                        s -= two_q;
                    }
                    let d = *u + two_q - *v;
                    (*u, *v) = (s, m.mul_shoup_lazy(d, w, w_shoup));
                }
            }
            t *= 2;
            groups /= 2;
        }
        for x in a.iter_mut() {
            *x = m.mul_shoup(*x, self.n_inv, self.n_inv_shoup);
        }
    }
}

/// The primitive 2N-th root of unity `tfhe-ntt` uses: starting from −1, log₂(2N) − 1 square
/// roots, each the one Tonelli–Shanks gives with the least quadratic non-residue.
pub fn negacyclic_root(m: &Modulus, log_n: u32) -> Result<u64> {
    let q = m.value();
    let two_n = 2u64 << log_n;
    if !(q - 1).is_multiple_of(two_n) {
        return Err(Error::InvalidParams("prime is not 1 mod 2N"));
    }
    let s = (q - 1).trailing_zeros();
    let odd = (q - 1) >> s;
    let half = (q - 1) / 2;
    let z = (2..q)
        .find(|&z| m.pow(z, half) == q - 1)
        .ok_or(Error::InvalidParams("no quadratic non-residue"))?;
    let mut root = q - 1;
    for _ in 0..=log_n - 1 {
        root = sqrt_mod(m, root, (odd, s), z).ok_or(Error::InvalidParams("no NTT root"))?;
    }
    Ok(root)
}

/// A square root of `a` modulo the prime (Tonelli–Shanks), q − 1 = odd·2^s, `z` a non-residue.
fn sqrt_mod(m: &Modulus, a: u64, (odd, s): (u64, u32), z: u64) -> Option<u64> {
    if a == 0 {
        return Some(0);
    }
    let mut bits = s;
    let mut c = m.pow(z, odd);
    let mut t = m.pow(a, odd);
    let mut r = m.pow(a, odd.div_ceil(2));
    while t != 1 {
        // The least i with t^(2^i) = 1.
        let mut i = 0;
        let mut t2 = t;
        while t2 != 1 {
            t2 = m.mul(t2, t2);
            i += 1;
            if i == bits {
                return None;
            }
        }
        let b = m.pow(c, 1 << (bits - i - 1));
        bits = i;
        c = m.mul(b, b);
        t = m.mul(t, c);
        r = m.mul(r, b);
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Params, PRESETS};
    use tfhe_ntt::prime64::Plan;

    fn random_limb(q: u64, n: usize, mut x: u64) -> Vec<u64> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % q
            })
            .collect()
    }

    #[test]
    fn the_compact_transform_is_tfhe_ntts_for_every_preset_prime() {
        for spec in PRESETS {
            let params = Params::from_spec(spec).unwrap();
            let log_n = params.log_n();
            let n = params.n();
            for &q in params.q().iter().chain(params.p()) {
                let m = Modulus::new(q).unwrap();
                let ntt = CompactNtt::new(&m, log_n).unwrap();
                let plan = Plan::try_new(n, q).unwrap();
                let a = random_limb(q, n, q ^ 0x9e37_79b9);
                let (mut ours, mut theirs) = (a.clone(), a.clone());
                ntt.forward(&mut ours);
                plan.fwd(&mut theirs);
                assert_eq!(ours, theirs, "{} prime {q}", spec.name);
                ntt.inverse(&mut ours);
                assert_eq!(ours, a);
                assert!(ntt.table_bytes() < 16 * 1024);
            }
        }
    }

    #[test]
    fn small_rings_and_bad_primes() {
        // 786433 = 3·2^18 + 1: NTT-friendly up to N = 2^17.
        let q = 786_433;
        let m = Modulus::new(q).unwrap();
        for log_n in 1..=12 {
            let ntt = CompactNtt::new(&m, log_n).unwrap();
            let n = 1 << log_n;
            let mut a = random_limb(q, n, 77 + log_n as u64);
            let plan = (n >= 16).then(|| Plan::try_new(n, q).unwrap());
            let orig = a.clone();
            ntt.forward(&mut a);
            if let Some(plan) = plan {
                let mut b = orig.clone();
                plan.fwd(&mut b);
                assert_eq!(a, b, "N = {n}");
            }
            ntt.inverse(&mut a);
            assert_eq!(a, orig);
        }
        assert!(CompactNtt::new(&m, 18).is_err());
    }
}
