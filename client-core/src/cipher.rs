//! Encryption and decryption.
//!
//! A ciphertext (c0, c1) at level l decrypts to c0 + c1·s = Δ·m + e modulo q0·…·ql. Both parts
//! are kept in NTT form. A fresh symmetric encryption travels as [`SeededCiphertext`]: c0 and the
//! 32-byte seed of c1 (half the bytes).

use alloc::vec;
use alloc::vec::Vec;

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::encoding::{Encoder, Plaintext};
use crate::error::{Error, Result};
use crate::keys::{a_stream, expand_uniform, ExpandedPublicKey, SecretKey};
use crate::ring::{Basis, Coeff, Context, IntPoly, Ntt, Poly};
use crate::sampling::{fill_error, fill_ternary, fill_uniform, random_seed, seeded_stream, Seed};

/// A ciphertext in NTT form with its scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ciphertext {
    /// c0 = −c1·s + Δ·m + e.
    pub c0: Poly<Ntt>,
    /// c1.
    pub c1: Poly<Ntt>,
    /// The scale Δ of the encrypted message.
    pub scale: f64,
}

/// A fresh symmetric ciphertext: c0 plus the seed from which c1 is expanded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeededCiphertext {
    /// c0 (NTT form).
    pub c0: Poly<Ntt>,
    /// Seed of c1 (digit 0 streams).
    pub seed: Seed,
    /// Scale of the message.
    pub scale: f64,
}

fn check_scale(scale: f64) -> Result<()> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidScale)
    }
}

fn check_ciphertext_basis(ctx: &Context, basis: Basis) -> Result<()> {
    ctx.check_basis(basis)?;
    if basis.p != 0 || basis.q == 0 {
        return Err(Error::BasisMismatch {
            expected: ctx.top_basis(),
            found: basis,
        });
    }
    Ok(())
}

impl Ciphertext {
    /// Level (number of ciphertext primes − 1).
    pub fn level(&self) -> usize {
        self.c0.basis().q as usize - 1
    }

    /// Checks both parts against `ctx`: same ciphertext basis, lengths, residues, scale.
    pub fn validate(&self, ctx: &Context) -> Result<()> {
        check_ciphertext_basis(ctx, self.c0.basis())?;
        self.c0.validate(ctx)?;
        self.c1.validate_basis(ctx, self.c0.basis())?;
        check_scale(self.scale)
    }

    /// [`Ciphertext::validate`] plus a check of the level.
    pub fn validate_level(&self, ctx: &Context, level: usize) -> Result<()> {
        self.c0.expect_basis(Basis::level(level))?;
        self.validate(ctx)
    }

    /// Drops primes above `level` (no rescaling: the scale is unchanged).
    pub fn drop_to_level(&mut self, ctx: &Context, level: usize) -> Result<()> {
        self.c0.drop_to_level(ctx, level)?;
        self.c1.drop_to_level(ctx, level)
    }
}

impl SeededCiphertext {
    /// Level of the ciphertext.
    pub fn level(&self) -> usize {
        self.c0.basis().q as usize - 1
    }

    /// Validates c0 and expands c1 from the seed.
    pub fn expand(&self, ctx: &Context) -> Result<Ciphertext> {
        check_ciphertext_basis(ctx, self.c0.basis())?;
        self.c0.validate(ctx)?;
        check_scale(self.scale)?;
        let c1 = expand_uniform(ctx, &self.seed, 0, self.c0.basis())?;
        Ok(Ciphertext {
            c0: self.c0.clone(),
            c1,
            scale: self.scale,
        })
    }
}

/// Symmetric encryption of an integer polynomial (coefficient form, over the ciphertext primes
/// of its level) under the secret key. The result's c1 is uniform from a fresh seed.
pub fn encrypt_symmetric<R: CryptoRng + ?Sized>(
    ctx: &Context,
    sk: &SecretKey,
    pt: &Plaintext,
    rng: &mut R,
) -> Result<SeededCiphertext> {
    check_scale(pt.scale)?;
    let basis = pt.poly.basis();
    check_ciphertext_basis(ctx, basis)?;
    pt.poly.validate(ctx)?;
    let seed = random_seed(rng);
    let mut e = Zeroizing::new(vec![0i8; ctx.n()]);
    fill_error(rng, &mut e);
    let mut m_plus_e = pt.poly.clone();
    m_plus_e.add_signed(ctx, &e)?;
    let mut c0 = m_plus_e.into_ntt(ctx)?;
    // c0 −= a·s limb by limb: a is expanded one limb at a time into a reused buffer.
    let mut a = vec![0u64; ctx.n()];
    let mut a_s = Zeroizing::new(vec![0u64; ctx.n()]);
    for pos in 0..basis.len() {
        let pi = ctx.prime_index(basis, pos);
        let m = ctx.modulus_at(pi);
        fill_uniform(&mut seeded_stream(&seed, a_stream(0, pi)), m, &mut a);
        a_s.fill(0);
        ctx.plan_at(pi)
            .mul_accumulate(&mut a_s, &a, sk.ntt_limb(pi));
        for (c, &x) in c0.limb_mut(pos).iter_mut().zip(a_s.iter()) {
            *c = m.sub(*c, x);
        }
    }
    Ok(SeededCiphertext {
        c0,
        seed,
        scale: pt.scale,
    })
}

/// Public-key encryption: (b·u + e0 + m, a·u + e1) with a fresh ternary u. The server uses it
/// (with m = 0) to re-randomise ciphertexts.
pub fn encrypt_public<R: CryptoRng + ?Sized>(
    ctx: &Context,
    pk: &ExpandedPublicKey,
    pt: &Plaintext,
    rng: &mut R,
) -> Result<Ciphertext> {
    check_scale(pt.scale)?;
    let basis = pt.poly.basis();
    check_ciphertext_basis(ctx, basis)?;
    pt.poly.validate(ctx)?;
    pk.b.expect_basis(ctx.top_basis())?;
    pk.a.expect_basis(ctx.top_basis())?;
    let n = ctx.n();

    let mut small = Zeroizing::new(vec![0i8; n]);
    fill_ternary(rng, &mut small);
    let mut u = Poly::<Coeff>::zero(ctx, basis)?;
    u.add_signed(ctx, &small)?;
    let u = Zeroizing::new(u.into_ntt(ctx)?);

    fill_error(rng, &mut small);
    let mut c0 = pt.poly.clone();
    c0.add_signed(ctx, &small)?;
    let mut c0 = c0.into_ntt(ctx)?;

    fill_error(rng, &mut small);
    let mut c1 = Poly::<Coeff>::zero(ctx, basis)?;
    c1.add_signed(ctx, &small)?;
    let mut c1 = c1.into_ntt(ctx)?;

    // The key is over the top level; the limbs of the lower primes are the key at this level.
    for pos in 0..basis.len() {
        let plan = ctx.plan(basis, pos);
        plan.mul_accumulate(c0.limb_mut(pos), pk.b.limb(pos), u.limb(pos));
        plan.mul_accumulate(c1.limb_mut(pos), pk.a.limb(pos), u.limb(pos));
    }

    Ok(Ciphertext {
        c0,
        c1,
        scale: pt.scale,
    })
}

/// c0 + c1·s in coefficient form (Δ·m + e modulo the ciphertext's primes).
pub fn decrypt(ctx: &Context, sk: &SecretKey, ct: &Ciphertext) -> Result<Poly<Coeff>> {
    ct.validate(ctx)?;
    let basis = ct.c0.basis();
    let mut acc = ct.c0.clone();
    for pos in 0..basis.len() {
        let pi = ctx.prime_index(basis, pos);
        ctx.plan_at(pi)
            .mul_accumulate(acc.limb_mut(pos), ct.c1.limb(pos), sk.ntt_limb(pi));
    }
    acc.into_coeff(ctx)
}

/// Decryption to the centred integer polynomial Δ·m + e.
pub fn decrypt_int(ctx: &Context, sk: &SecretKey, ct: &Ciphertext) -> Result<IntPoly> {
    let mut poly = decrypt(ctx, sk, ct)?;
    let out = IntPoly::reconstruct(ctx, &poly);
    poly.zeroize();
    out
}

/// Decryption and decoding to the N/2 slot values.
pub fn decrypt_slots(
    ctx: &Context,
    encoder: &Encoder,
    sk: &SecretKey,
    ct: &Ciphertext,
) -> Result<Vec<f64>> {
    let int = decrypt_int(ctx, sk, ct)?;
    encoder.decode(&int, ct.scale)
}

/// Re-encrypts an integer polynomial at `level` (normally the top) without decoding or
/// re-encoding: the new ciphertext decrypts to exactly `int` plus fresh encryption noise. This is
/// the client's half of HeRefresh.
pub fn reencrypt<R: CryptoRng + ?Sized>(
    ctx: &Context,
    sk: &SecretKey,
    int: &IntPoly,
    scale: f64,
    level: usize,
    rng: &mut R,
) -> Result<SeededCiphertext> {
    if level >= ctx.num_q() {
        return Err(Error::LevelOutOfRange {
            level,
            max: ctx.num_q() - 1,
        });
    }
    let poly = int.reduce_into(ctx, Basis::level(level))?;
    let mut pt = Plaintext { poly, scale };
    let out = encrypt_symmetric(ctx, sk, &pt, rng);
    pt.poly.zeroize();
    out
}
