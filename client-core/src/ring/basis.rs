//! Which primes a polynomial lives over.

use core::fmt;

use serde::{Deserialize, Serialize};

/// An RNS basis: the first `q` ciphertext primes (q0 … q_{q-1}) followed by the first `p`
/// special primes. Ciphertexts at level l have basis `{ q: l + 1, p: 0 }`; key-switching keys
/// and extended polynomials carry the special primes too.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Basis {
    /// Number of ciphertext primes (a prefix of the chain).
    pub q: u16,
    /// Number of special primes (a prefix of the special primes).
    pub p: u16,
}

impl Basis {
    /// Basis of a ciphertext at `level` (level + 1 primes, no special primes).
    pub const fn level(level: usize) -> Self {
        Self {
            q: level as u16 + 1,
            p: 0,
        }
    }

    /// Basis of a ciphertext at `level` extended by `p` special primes.
    pub const fn extended(level: usize, p: usize) -> Self {
        Self {
            q: level as u16 + 1,
            p: p as u16,
        }
    }

    /// Number of limbs.
    pub const fn len(&self) -> usize {
        self.q as usize + self.p as usize
    }

    /// True if the basis has no primes.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Level of the ciphertext primes in the basis (q − 1), or `None` without any.
    pub const fn q_level(&self) -> Option<usize> {
        if self.q == 0 {
            None
        } else {
            Some(self.q as usize - 1)
        }
    }
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} q-primes + {} p-primes", self.q, self.p)
    }
}
