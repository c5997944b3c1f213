//! Word-sized modular arithmetic for NTT-friendly primes below 2^62.
//!
//! Vector products in the NTT domain go through `tfhe-ntt` (SIMD); this module covers the scalar
//! work around it: reductions of signed and wide integers, Barrett products, Shoup products by
//! precomputed constants, inverses, and primality.

/// Largest prime size supported. `tfhe-ntt`'s fast paths need p < 2^62 and the lazy reductions
/// below need 3p < 2^64.
pub const MAX_PRIME_BITS: u32 = 61;
/// Smallest prime size supported (smaller primes make no sense for CKKS and break Barrett's
/// bounds below).
pub const MIN_PRIME_BITS: u32 = 17;

/// A prime modulus with precomputed reduction constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modulus {
    q: u64,
    bits: u32,
    /// floor(2^(bits + 63) / q), for Barrett reduction of products below q^2.
    barrett: u64,
    /// floor(2^64 / q), for reducing arbitrary u64.
    barrett64: u64,
    /// 2^64 mod q and its Shoup form, for reducing 128-bit values.
    two64: u64,
    two64_shoup: u64,
}

impl Modulus {
    /// Builds the constants for `q`. Returns `None` unless `q` is odd and has between
    /// [`MIN_PRIME_BITS`] and [`MAX_PRIME_BITS`] bits (primality is checked elsewhere).
    pub fn new(q: u64) -> Option<Self> {
        let bits = 64 - q.leading_zeros();
        if !(MIN_PRIME_BITS..=MAX_PRIME_BITS).contains(&bits) || q.is_multiple_of(2) {
            return None;
        }
        let barrett = ((1u128 << (bits + 63)) / q as u128) as u64;
        let barrett64 = ((1u128 << 64) / q as u128) as u64;
        let two64 = ((1u128 << 64) % q as u128) as u64;
        let two64_shoup = (((two64 as u128) << 64) / q as u128) as u64;
        Some(Self {
            q,
            bits,
            barrett,
            barrett64,
            two64,
            two64_shoup,
        })
    }

    /// The modulus value.
    #[inline]
    pub fn value(&self) -> u64 {
        self.q
    }

    /// Number of bits of the modulus.
    #[inline]
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// (a + b) mod q for a, b < q.
    #[inline]
    pub fn add(&self, a: u64, b: u64) -> u64 {
        let s = a + b;
        if s >= self.q {
            s - self.q
        } else {
            s
        }
    }

    /// (a - b) mod q for a, b < q.
    #[inline]
    pub fn sub(&self, a: u64, b: u64) -> u64 {
        if a >= b {
            a - b
        } else {
            a + self.q - b
        }
    }

    /// (-a) mod q for a < q.
    #[inline]
    pub fn neg(&self, a: u64) -> u64 {
        if a == 0 {
            0
        } else {
            self.q - a
        }
    }

    /// x mod q for any u64.
    #[inline]
    pub fn reduce_u64(&self, x: u64) -> u64 {
        let est = mul_wide(x, self.barrett64).0;
        let mut r = x - est * self.q;
        // The estimate is short by at most 2 (q < 2^62 keeps r below 2^64).
        if r >= self.q {
            r -= self.q;
        }
        if r >= self.q {
            r -= self.q;
        }
        r
    }

    /// x mod q for a signed value.
    #[inline]
    pub fn reduce_i64(&self, x: i64) -> u64 {
        let r = self.reduce_u64(x.unsigned_abs());
        if x < 0 {
            self.neg(r)
        } else {
            r
        }
    }

    /// x mod q for any u128 (hi·2^64 + lo ≡ hi·(2^64 mod q) + lo), without a 128-bit division.
    #[inline]
    pub fn reduce_u128(&self, x: u128) -> u64 {
        let hi = self.reduce_u64((x >> 64) as u64);
        let lo = self.reduce_u64(x as u64);
        self.add(self.mul_shoup(hi, self.two64, self.two64_shoup), lo)
    }

    /// x mod q for a signed 128-bit value.
    #[inline]
    pub fn reduce_i128(&self, x: i128) -> u64 {
        if let Ok(small) = i64::try_from(x) {
            return self.reduce_i64(small);
        }
        let r = self.reduce_u128(x.unsigned_abs());
        if x < 0 {
            self.neg(r)
        } else {
            r
        }
    }

    /// x mod q for a product x < q^2 (Barrett).
    #[inline]
    pub fn reduce_product(&self, x: u128) -> u64 {
        let hi = (x >> (self.bits - 1)) as u64;
        let est = ((hi as u128 * self.barrett as u128) >> 64) as u64;
        let mut r = (x as u64).wrapping_sub(est.wrapping_mul(self.q));
        if r >= self.q {
            r -= self.q;
        }
        if r >= self.q {
            r -= self.q;
        }
        r
    }

    /// x mod q for a sum of products x < 2^(bits + 63) (e.g. up to 2^13 products of two residues
    /// below 2^50): lets basis conversion accumulate several products before one reduction.
    #[inline]
    pub fn reduce_wide(&self, x: u128) -> u64 {
        debug_assert!(x >> (self.bits + 63) == 0);
        let hi = (x >> (self.bits - 1)) as u64;
        let est = ((hi as u128 * self.barrett as u128) >> 64) as u64;
        let mut r = (x as u64).wrapping_sub(est.wrapping_mul(self.q));
        // The estimate is short by at most 3 here.
        for _ in 0..3 {
            if r >= self.q {
                r -= self.q;
            }
        }
        r
    }

    /// (a * b) mod q for a, b < q.
    #[inline]
    pub fn mul(&self, a: u64, b: u64) -> u64 {
        // Barrett as in `reduce_product`, on 64-bit halves: a 32-bit core has no 128-bit
        // multiply, and a generic u128 product there is a library call.
        let (hi, lo) = mul_wide(a, b);
        let top = (hi << (65 - self.bits)) | (lo >> (self.bits - 1));
        let est = mul_wide(top, self.barrett).0;
        let mut r = lo.wrapping_sub(est.wrapping_mul(self.q));
        if r >= self.q {
            r -= self.q;
        }
        if r >= self.q {
            r -= self.q;
        }
        r
    }

    /// Shoup's precomputation for multiplying many values by the constant `w < q`.
    #[inline]
    pub fn shoup(&self, w: u64) -> u64 {
        (((w as u128) << 64) / self.q as u128) as u64
    }

    /// [`Modulus::shoup`] without a 128-bit division (a library call of hundreds of
    /// instructions on a 32-bit core): estimated from the Barrett constant, then corrected.
    #[inline]
    pub fn shoup_fast(&self, w: u64) -> u64 {
        let (hi, lo) = mul_wide(w, self.barrett);
        // w·barrett / 2^(bits − 1) falls short of w·2^64/q by less than 3.
        let mut est = (hi << (65 - self.bits)) | (lo >> (self.bits - 1));
        loop {
            let (h, l) = mul_wide(est + 1, self.q);
            if h < w || (h == w && l == 0) {
                est += 1;
            } else {
                return est;
            }
        }
    }

    /// (a * w) mod q given `w_shoup = self.shoup(w)`, for any a < 2^64.
    #[inline]
    pub fn mul_shoup(&self, a: u64, w: u64, w_shoup: u64) -> u64 {
        let est = mul_wide(a, w_shoup).0;
        let r = a.wrapping_mul(w).wrapping_sub(est.wrapping_mul(self.q));
        if r >= self.q {
            r - self.q
        } else {
            r
        }
    }

    /// (a * w) mod q up to one extra q (result < 2q), given `w_shoup = self.shoup(w)`: for sums
    /// that are reduced once at the end.
    #[inline]
    pub fn mul_shoup_lazy(&self, a: u64, w: u64, w_shoup: u64) -> u64 {
        let est = mul_wide(a, w_shoup).0;
        a.wrapping_mul(w).wrapping_sub(est.wrapping_mul(self.q))
    }

    /// a^e mod q.
    pub fn pow(&self, mut a: u64, mut e: u64) -> u64 {
        let mut acc = 1 % self.q;
        a %= self.q;
        while e > 0 {
            if e & 1 == 1 {
                acc = self.mul(acc, a);
            }
            a = self.mul(a, a);
            e >>= 1;
        }
        acc
    }

    /// a^-1 mod q (q prime), or `None` for a ≡ 0.
    pub fn inv(&self, a: u64) -> Option<u64> {
        let a = a % self.q;
        if a == 0 {
            None
        } else {
            Some(self.pow(a, self.q - 2))
        }
    }
}

/// The 128-bit product of `a` and `b` as (high, low) words. On 32-bit targets it is built from
/// four 32 × 32 → 64-bit products (one `UMULL` each on a Cortex-M4).
#[inline(always)]
pub fn mul_wide(a: u64, b: u64) -> (u64, u64) {
    #[cfg(target_pointer_width = "64")]
    {
        let p = a as u128 * b as u128;
        ((p >> 64) as u64, p as u64)
    }
    #[cfg(not(target_pointer_width = "64"))]
    {
        mul_wide_halves(a, b)
    }
}

/// [`mul_wide`] from 32-bit halves (what 32-bit targets run; tested on hosts too).
#[inline(always)]
pub fn mul_wide_halves(a: u64, b: u64) -> (u64, u64) {
    {
        let (a0, a1) = (a & 0xffff_ffff, a >> 32);
        let (b0, b1) = (b & 0xffff_ffff, b >> 32);
        let p00 = a0 * b0;
        let p01 = a0 * b1;
        let p10 = a1 * b0;
        let p11 = a1 * b1;
        let mid = (p00 >> 32) + (p01 & 0xffff_ffff) + (p10 & 0xffff_ffff);
        let lo = (p00 & 0xffff_ffff) | (mid << 32);
        let hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
        (hi, lo)
    }
}

fn mul_mod_u64(a: u64, b: u64, m: u64) -> u64 {
    ((a as u128 * b as u128) % m as u128) as u64
}

fn pow_mod_u64(mut a: u64, mut e: u64, m: u64) -> u64 {
    let mut acc = 1 % m;
    a %= m;
    while e > 0 {
        if e & 1 == 1 {
            acc = mul_mod_u64(acc, a, m);
        }
        a = mul_mod_u64(a, a, m);
        e >>= 1;
    }
    acc
}

/// Deterministic Miller–Rabin for all 64-bit integers (the first twelve primes as bases are a
/// proven witness set below 3.3·10^24).
pub fn is_prime(n: u64) -> bool {
    const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    if n < 2 {
        return false;
    }
    for &p in &BASES {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    'witness: for &a in &BASES {
        let mut x = pow_mod_u64(a, d, n);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul_mod_u64(x, x, n);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const Q: u64 = 1_152_921_504_606_830_593; // 2^60 - 2^14 + 1, a 60-bit NTT prime

    proptest! {
        #[test]
        fn fast_shoup_constants_are_exact(w: u64, bits in 17u32..=61, k: u64) {
            // An odd modulus of `bits` bits (primality does not matter here).
            let q = (1u64 << (bits - 1)) | (k & ((1u64 << (bits - 1)) - 1)) | 1;
            let m = Modulus::new(q).unwrap();
            let w = w % q;
            prop_assert_eq!(m.shoup_fast(w), m.shoup(w));
        }

        #[test]
        fn products_from_halves_are_exact(a: u64, b: u64) {
            let p = a as u128 * b as u128;
            prop_assert_eq!(mul_wide_halves(a, b), ((p >> 64) as u64, p as u64));
        }
    }

    #[test]
    fn primality_of_known_values() {
        assert!(is_prime(Q));
        assert!(is_prime(65537));
        assert!(!is_prime(65537 * 65539));
        assert!(!is_prime(3_215_031_751)); // strong pseudoprime to bases 2, 3, 5, 7
        assert!(!is_prime(1));
        assert!(is_prime(2));
    }

    proptest! {
        #[test]
        fn barrett_and_shoup_match_u128(a in 0..Q, b in 0..Q, x: u64, y: i128) {
            let m = Modulus::new(Q).unwrap();
            let want = ((a as u128 * b as u128) % Q as u128) as u64;
            prop_assert_eq!(m.mul(a, b), want);
            prop_assert_eq!(m.mul_shoup(a, b, m.shoup(b)), want);
            prop_assert_eq!(m.reduce_u64(x), x % Q);
            prop_assert_eq!(m.reduce_i128(y) as i128, y.rem_euclid(Q as i128));
        }

        #[test]
        fn wide_reduction_of_sums(xs in proptest::collection::vec((0..(1u64 << 50), 0..(1u64 << 50)), 1..64)) {
            let m = Modulus::new(1_125_899_904_679_937).unwrap();
            let sum: u128 = xs.iter().map(|&(a, b)| a as u128 * b as u128).sum();
            prop_assert_eq!(m.reduce_wide(sum) as u128, sum % m.value() as u128);
        }

        #[test]
        fn barrett_on_small_primes(a in 0u64..65537, b in 0u64..65537) {
            let m = Modulus::new(65537).unwrap();
            prop_assert_eq!(m.mul(a, b), a * b % 65537);
        }
    }

    #[test]
    fn inverse_roundtrip() {
        let m = Modulus::new(Q).unwrap();
        for a in [1u64, 2, 12345, Q - 1] {
            let inv = m.inv(a).unwrap();
            assert_eq!(m.mul(a, inv), 1);
        }
        assert!(m.inv(0).is_none());
    }
}
