//! Selection of NTT-friendly primes (p ≡ 1 mod 2N).

use alloc::vec::Vec;

use crate::arith::{is_prime, MAX_PRIME_BITS, MIN_PRIME_BITS};
use crate::error::{Error, Result};

/// Returns, for each requested bit size in order, the largest prime p < 2^bits with
/// p ≡ 1 (mod 2N) that is not already in `taken` or chosen earlier in this call.
///
/// Being the largest below a power of two keeps every prime within a hair of its nominal size,
/// so the sizes in a parameter spec are also its log2(QP) budget. The choice is deterministic:
/// client and server derive the same chain from the same spec.
pub fn ntt_primes(log_n: u32, bit_sizes: &[u32], taken: &[u64]) -> Result<Vec<u64>> {
    let two_n = 1u64 << (log_n + 1);
    let mut chosen: Vec<u64> = Vec::with_capacity(bit_sizes.len());
    for &bits in bit_sizes {
        if !(MIN_PRIME_BITS..=MAX_PRIME_BITS).contains(&bits) || bits <= log_n + 1 {
            return Err(Error::InvalidParams(
                "prime size out of the supported range",
            ));
        }
        let upper = 1u64 << bits;
        let lower = 1u64 << (bits - 1);
        // Largest candidate of the form k·2N + 1 below 2^bits.
        let mut candidate = ((upper - 2) / two_n) * two_n + 1;
        loop {
            if candidate < lower {
                return Err(Error::NoPrime { bits });
            }
            if is_prime(candidate) && !taken.contains(&candidate) && !chosen.contains(&candidate) {
                chosen.push(candidate);
                break;
            }
            candidate -= two_n;
        }
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_are_ntt_friendly_distinct_and_sized() {
        let sizes = [50, 50, 50, 45, 45, 45];
        let q = ntt_primes(14, &sizes, &[]).unwrap();
        let p = ntt_primes(14, &[50, 50, 50], &q).unwrap();
        for (&prime, &bits) in q
            .iter()
            .chain(p.iter())
            .zip(sizes.iter().chain(&[50, 50, 50]))
        {
            assert!(is_prime(prime));
            assert_eq!(prime % (1 << 15), 1);
            assert_eq!(64 - prime.leading_zeros(), bits);
        }
        let mut all: Vec<u64> = q.iter().chain(p.iter()).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 9);
    }

    #[test]
    fn rejects_unsupported_sizes() {
        assert!(ntt_primes(13, &[62], &[]).is_err());
        assert!(ntt_primes(13, &[14], &[]).is_err());
    }
}
