//! The secret key.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;
use zeroize::Zeroize;

use crate::error::Result;
use crate::ring::{Coeff, Context, Ntt, Poly};
use crate::sampling::fill_ternary;

/// A uniform ternary secret s ∈ {−1, 0, 1}^N (no fixed Hamming weight), kept in coefficient form
/// and in NTT form over every prime (ciphertext and special).
///
/// Zeroized on drop; not serialisable (the optional `secret-key-export` feature adds an explicit
/// export for a client's own key file); `Debug` prints nothing secret.
pub struct SecretKey {
    coeffs: Vec<i8>,
    ntt: Poly<Ntt>,
}

impl SecretKey {
    /// Samples a fresh secret key.
    pub fn generate<R: CryptoRng + ?Sized>(ctx: &Context, rng: &mut R) -> Result<Self> {
        let mut coeffs = vec![0i8; ctx.n()];
        fill_ternary(rng, &mut coeffs);
        Self::from_coeffs(ctx, coeffs)
    }

    fn from_coeffs(ctx: &Context, coeffs: Vec<i8>) -> Result<Self> {
        let mut coeff_poly = Poly::<Coeff>::zero(ctx, ctx.full_basis())?;
        coeff_poly.add_signed(ctx, &coeffs)?;
        let ntt = coeff_poly.into_ntt(ctx)?;
        Ok(Self { coeffs, ntt })
    }

    /// Ternary coefficients.
    pub(crate) fn coeffs(&self) -> &[i8] {
        &self.coeffs
    }

    /// s in NTT form modulo global prime `prime_index`.
    pub(crate) fn ntt_limb(&self, prime_index: usize) -> &[u64] {
        // The NTT copy is over the full basis, whose limb order is the global prime order.
        self.ntt.limb(prime_index)
    }

    /// s in NTT form over `basis` (a prefix of ciphertext primes and of special primes).
    #[cfg(test)]
    pub(crate) fn ntt_over(&self, ctx: &Context, basis: crate::ring::Basis) -> Result<Poly<Ntt>> {
        let mut s = self.ntt.clone();
        if (basis.p as usize) < ctx.num_p() {
            s.drop_special(ctx)?;
            if basis.p != 0 {
                return Err(crate::error::Error::InvalidParams(
                    "secret over a partial special basis",
                ));
            }
        }
        s.drop_to_level(ctx, basis.q as usize - 1)?;
        Ok(s)
    }

    /// Exports the ternary coefficients, two bits each, for the client's own key file.
    #[cfg(feature = "secret-key-export")]
    pub fn export_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut out = zeroize::Zeroizing::new(vec![0u8; self.coeffs.len().div_ceil(4)]);
        for (i, &c) in self.coeffs.iter().enumerate() {
            out[i / 4] |= ((c + 1) as u8) << (2 * (i % 4));
        }
        out
    }

    /// Imports a key written by [`SecretKey::export_bytes`].
    #[cfg(feature = "secret-key-export")]
    pub fn import_bytes(ctx: &Context, bytes: &[u8]) -> Result<Self> {
        let n = ctx.n();
        if bytes.len() != n.div_ceil(4) {
            return Err(crate::error::Error::LengthMismatch {
                expected: n.div_ceil(4),
                found: bytes.len(),
            });
        }
        let mut coeffs = vec![0i8; n];
        for (i, c) in coeffs.iter_mut().enumerate() {
            let v = (bytes[i / 4] >> (2 * (i % 4))) & 3;
            if v == 3 {
                coeffs.zeroize();
                return Err(crate::error::Error::Decode(
                    "secret key byte is not ternary",
                ));
            }
            *c = v as i8 - 1;
        }
        Self::from_coeffs(ctx, coeffs)
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.coeffs.zeroize();
        self.ntt.zeroize();
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}
