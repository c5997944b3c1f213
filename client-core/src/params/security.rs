//! The 128-bit security bound on log2(QP) per ring dimension.

use crate::error::{Error, Result};

/// Maximum log2(QP) for 128-bit classical security of RLWE with a uniform ternary secret and
/// error of standard deviation ≈ 3.2, from the Homomorphic Encryption Standard (2018), table 1.
pub const fn max_log_qp(log_n: u32) -> Option<u32> {
    match log_n {
        10 => Some(27),
        11 => Some(54),
        12 => Some(109),
        13 => Some(218),
        14 => Some(438),
        15 => Some(881),
        _ => None,
    }
}

/// How far a parameter set is inside the security bound.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SecurityMargin {
    /// log2(QP) of the parameter set.
    pub log_qp: f64,
    /// The bound for its ring dimension.
    pub bound: u32,
}

impl SecurityMargin {
    /// Bits of modulus left before the bound.
    pub fn slack_bits(&self) -> f64 {
        self.bound as f64 - self.log_qp
    }
}

/// Accepts `log_qp` for ring dimension 2^`log_n` if it is within the 128-bit bound.
pub fn check_128_bit(log_n: u32, log_qp: f64) -> Result<SecurityMargin> {
    let bound = max_log_qp(log_n).ok_or(Error::UnsupportedRingDimension { log_n })?;
    if log_qp > bound as f64 {
        return Err(Error::InsecureParams {
            log_n,
            log_qp,
            bound,
        });
    }
    Ok(SecurityMargin { log_qp, bound })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn rejects_with_the_excess_in_the_message() {
        let err = check_128_bit(13, 223.5).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("by 5.50 bits"), "{msg}");
        assert!(check_128_bit(13, 217.9).is_ok());
        assert!(check_128_bit(9, 10.0).is_err());
    }
}
