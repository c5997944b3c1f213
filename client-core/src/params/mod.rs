//! CKKS parameter sets: presets (as data), prime chains, the gadget decomposition for hybrid key
//! switching, and the 128-bit security check.
//!
//! A parameter set is a ring dimension N, a chain of ciphertext primes q0 … qL (q0 at the bottom;
//! rescaling removes primes from the top), special primes p0 … pk-1 used only inside key
//! switching, and the digit size α: key switching splits a polynomial into digits, each the
//! residues modulo a group of α consecutive ciphertext primes.

mod presets;
mod primes;
mod security;

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use serde::{Deserialize, Serialize};

use crate::arith::{is_prime, MAX_PRIME_BITS, MIN_PRIME_BITS};
use crate::error::{Error, Result};

pub use presets::{
    ParamSpec, RoundKind, COMPACT_N8192, DEFAULT_N16384, HEFUN_N16384, HEFUN_N8192, PRESETS,
};
pub use primes::ntt_primes;
pub use security::{check_128_bit, max_log_qp, SecurityMargin};

/// Smallest ring dimension accepted at all (tests use small insecure rings).
pub const MIN_LOG_N: u32 = 4;
/// Largest ring dimension accepted.
pub const MAX_LOG_N: u32 = 16;
/// Most ciphertext or special primes a parameter set may have.
pub const MAX_PRIMES: usize = 32;

/// A concrete parameter set: explicit primes, so that both parties agree without re-deriving.
///
/// Deserialised parameters must be checked with [`Params::validate`] before use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    name: String,
    log_n: u32,
    q: Vec<u64>,
    p: Vec<u64>,
    digit_size: u32,
    handoff_level: u32,
    scale_bits: u32,
    stat_sec_bits: u32,
    round: RoundKind,
}

impl Params {
    /// Builds the parameter set of a spec and checks it against the 128-bit bound.
    pub fn from_spec(spec: &ParamSpec) -> Result<Self> {
        let params = Self::from_spec_insecure(spec)?;
        params.security()?;
        Ok(params)
    }

    /// Builds the parameter set of a spec **without** the security check. For tests with small
    /// rings only; nothing built this way may protect real data.
    pub fn from_spec_insecure(spec: &ParamSpec) -> Result<Self> {
        let q = ntt_primes(spec.log_n, spec.q_bits, &[])?;
        let p = ntt_primes(spec.log_n, spec.p_bits, &q)?;
        let params = Self {
            name: String::from(spec.name),
            log_n: spec.log_n,
            q,
            p,
            digit_size: spec.digit_size,
            handoff_level: spec.handoff_level,
            scale_bits: spec.scale_bits,
            stat_sec_bits: spec.stat_sec_bits,
            round: spec.round,
        };
        params.validate_structure()?;
        Ok(params)
    }

    /// Checks everything a peer could get wrong: structure, primality and NTT-friendliness of
    /// every prime, distinctness, and the 128-bit bound.
    pub fn validate(&self) -> Result<SecurityMargin> {
        self.validate_structure()?;
        self.security()
    }

    /// [`Params::validate`] without the security bound (for test rings).
    pub fn validate_structure(&self) -> Result<()> {
        if !(MIN_LOG_N..=MAX_LOG_N).contains(&self.log_n) {
            return Err(Error::InvalidParams("log_n out of range"));
        }
        if self.q.is_empty() || self.p.is_empty() {
            return Err(Error::InvalidParams(
                "need at least one ciphertext and one special prime",
            ));
        }
        if self.q.len() > MAX_PRIMES || self.p.len() > MAX_PRIMES {
            return Err(Error::InvalidParams("too many primes"));
        }
        let two_n = 2u64 << self.log_n;
        for (i, &prime) in self.q.iter().chain(self.p.iter()).enumerate() {
            let bits = 64 - prime.leading_zeros();
            if !(MIN_PRIME_BITS..=MAX_PRIME_BITS).contains(&bits) {
                return Err(Error::InvalidParams("prime size out of range"));
            }
            if prime % two_n != 1 || !is_prime(prime) {
                return Err(Error::InvalidParams("modulus is not an NTT-friendly prime"));
            }
            if self
                .q
                .iter()
                .chain(self.p.iter())
                .take(i)
                .any(|&o| o == prime)
            {
                return Err(Error::InvalidParams("primes are not distinct"));
            }
        }
        if self.digit_size == 0 || self.digit_size as usize > self.q.len() {
            return Err(Error::InvalidParams(
                "digit size must be in 1..=number of q primes",
            ));
        }
        if self.handoff_level as usize >= self.q.len() {
            return Err(Error::InvalidParams("handoff level above the top level"));
        }
        if self.scale_bits == 0 || self.scale_bits > 100 {
            return Err(Error::InvalidParams("scale out of range"));
        }
        // P must cover the largest digit, or key-switching noise grows by the ratio.
        let log_p: f64 = self.p.iter().map(|&p| log2(p)).sum();
        let max_digit = (0..self.digit_count(self.top_level()))
            .map(|d| {
                self.digit_range(d, self.top_level())
                    .map(|i| log2(self.q[i]))
                    .sum::<f64>()
            })
            .fold(0.0, f64::max);
        if log_p + 1.0 < max_digit {
            return Err(Error::InvalidParams("special primes smaller than a digit"));
        }
        Ok(())
    }

    /// Checks log2(QP) against the 128-bit bound of the ring dimension.
    pub fn security(&self) -> Result<SecurityMargin> {
        check_128_bit(self.log_n, self.log_qp())
    }

    /// Name of the preset this set came from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// log2 of the ring dimension.
    pub fn log_n(&self) -> u32 {
        self.log_n
    }

    /// Ring dimension N.
    pub fn n(&self) -> usize {
        1 << self.log_n
    }

    /// Number of real slots (N/2).
    pub fn slots(&self) -> usize {
        self.n() / 2
    }

    /// Ciphertext primes q0 … qL.
    pub fn q(&self) -> &[u64] {
        &self.q
    }

    /// Special primes used in key switching.
    pub fn p(&self) -> &[u64] {
        &self.p
    }

    /// Level of a fresh ciphertext (L: it has L + 1 limbs).
    pub fn top_level(&self) -> usize {
        self.q.len() - 1
    }

    /// Level at which the server hands ciphertexts to the client (refresh and ReLU messages).
    pub fn handoff_level(&self) -> usize {
        self.handoff_level as usize
    }

    /// The default encoding scale, 2^scale_bits.
    pub fn default_scale(&self) -> f64 {
        libm::exp2(self.scale_bits as f64)
    }

    /// log2 of the default scale.
    pub fn scale_bits(&self) -> u32 {
        self.scale_bits
    }

    /// Statistical security (bits) of refresh masks and noise flooding: each hides what it
    /// covers with statistical distance at most 2^-stat_sec_bits over a whole ciphertext.
    pub fn stat_sec_bits(&self) -> u32 {
        self.stat_sec_bits
    }

    /// How the protocol's rounds go with this set.
    pub fn round(&self) -> RoundKind {
        self.round
    }

    /// Primes per gadget digit (α).
    pub fn digit_size(&self) -> usize {
        self.digit_size as usize
    }

    /// Number of gadget digits of a polynomial at `level`.
    pub fn digit_count(&self, level: usize) -> usize {
        (level + 1).div_ceil(self.digit_size())
    }

    /// Indices of the ciphertext primes in digit `digit` at `level` (a digit may be cut short
    /// at lower levels).
    pub fn digit_range(&self, digit: usize, level: usize) -> Range<usize> {
        let start = digit * self.digit_size();
        let end = ((digit + 1) * self.digit_size()).min(level + 1);
        start..end.max(start)
    }

    /// log2 of the product of the ciphertext primes up to `level`.
    pub fn log_q(&self, level: usize) -> f64 {
        self.q.iter().take(level + 1).map(|&q| log2(q)).sum()
    }

    /// log2(QP) of the whole set.
    pub fn log_qp(&self) -> f64 {
        self.q.iter().chain(self.p.iter()).map(|&q| log2(q)).sum()
    }
}

fn log2(x: u64) -> f64 {
    libm::log2(x as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_secure_and_valid() {
        for spec in PRESETS {
            let params = Params::from_spec(spec).unwrap();
            let margin = params.validate().unwrap();
            assert!(margin.slack_bits() >= 0.0);
            assert!(params.log_q(params.handoff_level()) > 80.0);
        }
    }

    #[test]
    fn rejects_oversized_chain() {
        let spec = ParamSpec {
            q_bits: &[60, 60, 60],
            p_bits: &[60],
            digit_size: 1,
            ..COMPACT_N8192
        };
        let err = Params::from_spec(&spec).unwrap_err();
        assert!(matches!(err, Error::InsecureParams { bound: 218, .. }));
    }

    #[test]
    fn validate_catches_tampering() {
        let good = Params::from_spec(&DEFAULT_N16384).unwrap();
        let mut bad = good.clone();
        bad.q[1] += 2;
        assert!(bad.validate().is_err());
        let mut bad = good.clone();
        bad.p[0] = bad.q[0];
        assert!(bad.validate().is_err());
        let mut bad = good.clone();
        bad.handoff_level = 99;
        assert!(bad.validate().is_err());
        let mut bad = good;
        bad.digit_size = 0;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn digits_partition_each_level() {
        let params = Params::from_spec(&DEFAULT_N16384).unwrap();
        for level in 0..=params.top_level() {
            let mut covered = Vec::new();
            for d in 0..params.digit_count(level) {
                covered.extend(params.digit_range(d, level));
            }
            assert_eq!(covered, (0..=level).collect::<Vec<_>>());
        }
    }
}
