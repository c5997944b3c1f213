//! Keys: the secret key, and seeded public, relinearisation and Galois (rotation) keys.
//!
//! Every uniform polynomial `a` in a key travels as a 32-byte seed and is expanded directly in the
//! NTT domain (the NTT is a bijection, so a uniform NTT vector is a uniform polynomial). Limb `i`
//! of digit `j` comes from ChaCha20 stream `(j << 32) | i`, so any limb can be expanded alone.

mod secret;
mod switching;

use alloc::vec;
use sha2::{Digest, Sha256};

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use tfhe_ntt::prime64::Plan;

use crate::arith::Modulus;
use crate::error::Result;
use crate::ring::{Basis, CompactNtt, Context, Ntt, Poly};
use crate::sampling::{
    fill_error, fill_uniform, random_seed, seeded_stream, Seed, UniformResidues,
};

pub use secret::SecretKey;

pub(crate) use switching::switching_limb;
pub use switching::{
    galois_element_for_rotation, ExpandedSwitchingKey, KeyChunk, KeyKind, SwitchingKey,
    SwitchingKeyGenerator, CONJUGATION,
};

/// ChaCha20 stream number of limb `prime_index` of digit `digit`.
pub(crate) fn a_stream(digit: usize, prime_index: usize) -> u64 {
    ((digit as u64) << 32) | prime_index as u64
}

/// Expands the uniform polynomial `a` of `seed` over `basis`, digit `digit`, in NTT form.
pub fn expand_uniform(ctx: &Context, seed: &Seed, digit: usize, basis: Basis) -> Result<Poly<Ntt>> {
    let mut a = Poly::<Ntt>::zero(ctx, basis)?;
    for pos in 0..basis.len() {
        let pi = ctx.prime_index(basis, pos);
        let mut rng = seeded_stream(seed, a_stream(digit, pi));
        fill_uniform(&mut rng, ctx.modulus_at(pi), a.limb_mut(pos));
    }
    Ok(a)
}

/// The NTT of one prime: a host's `tfhe-ntt` plan (SIMD, N-word tables) or a device's
/// [`CompactNtt`]. Both compute the same transform.
#[derive(Clone, Copy)]
pub enum Transform<'a> {
    /// A host's plan.
    Plan(&'a Plan),
    /// A device's compact transform.
    Compact(&'a CompactNtt),
}

impl Transform<'_> {
    /// Coefficients → NTT form, in place.
    pub fn forward(&self, a: &mut [u64]) {
        match self {
            Self::Plan(p) => p.fwd(a),
            Self::Compact(c) => c.forward(a),
        }
    }

    /// NTT form → coefficients, in place.
    pub fn inverse(&self, a: &mut [u64]) {
        match self {
            Self::Plan(p) => {
                p.inv(a);
                p.normalize(a);
            }
            Self::Compact(c) => c.inverse(a),
        }
    }
}

/// What limb-wise arithmetic modulo one prime needs: the modulus, its NTT and the secret in
/// NTT form modulo that prime. A [`Context`] has these for every prime at once; a limb-wise
/// client ([`crate::client::DeviceBackend`]) builds them one prime at a time.
pub(crate) struct PrimeTools<'a> {
    /// Global prime index.
    pub pi: usize,
    pub m: &'a Modulus,
    pub ntt: Transform<'a>,
    pub s_ntt: &'a [u64],
}

impl<'a> PrimeTools<'a> {
    /// The tools of global prime `pi` from a full context.
    pub fn of(ctx: &'a Context, sk: &'a SecretKey, pi: usize) -> Self {
        Self {
            pi,
            m: ctx.modulus_at(pi),
            ntt: Transform::Plan(ctx.plan_at(pi)),
            s_ntt: sk.ntt_limb(pi),
        }
    }

    /// out = NTT(out) − a·s, with `a` the limb of digit `digit` expanded from `a_seed`; `out`
    /// holds the coefficients (message plus error) on entry.
    pub fn ntt_minus_a_s(&self, a_seed: &Seed, digit: usize, out: &mut [u64]) {
        let m = self.m;
        self.ntt.forward(out);
        // `a` is consumed as it is drawn: no limb-sized buffer.
        let mut a = UniformResidues::new(seeded_stream(a_seed, a_stream(digit, self.pi)), m);
        for (o, &si) in out.iter_mut().zip(self.s_ntt) {
            *o = m.sub(*o, m.mul(a.next_residue(), si));
        }
    }

    /// One limb of an RLWE sample b = −a·s + e, NTT form. `e` holds the error's coefficients
    /// (the same for every limb of one sample).
    pub fn rlwe_limb(&self, a_seed: &Seed, digit: usize, e: &[i8], out: &mut [u64]) {
        for (o, &x) in out.iter_mut().zip(e) {
            *o = self.m.reduce_i64(x as i64);
        }
        self.ntt_minus_a_s(a_seed, digit, out);
    }
}

/// Streams the key id of a public key (see [`PublicKey::key_id`]) limb by limb.
pub struct KeyIdHasher(Sha256);

impl KeyIdHasher {
    /// Starts the id of a public key of preset `preset` with seed `seed`.
    pub fn new(preset: &str, seed: &Seed) -> Self {
        let mut h = Sha256::new();
        h.update(b"hefun key id v1\0");
        h.update(preset.as_bytes());
        h.update([0]);
        h.update(seed);
        Self(h)
    }

    /// Adds the next limb of `b`.
    pub fn limb(&mut self, words: &[u64]) {
        for w in words {
            self.0.update(w.to_le_bytes());
        }
    }

    /// The id.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// A seeded public key: b = −a·s + e over the ciphertext primes; `a` comes from the seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    b: Poly<Ntt>,
    seed: Seed,
}

/// A public key with `a` expanded, ready for encryption.
#[derive(Clone, Debug)]
pub struct ExpandedPublicKey {
    /// b = −a·s + e.
    pub b: Poly<Ntt>,
    /// The uniform part.
    pub a: Poly<Ntt>,
}

impl PublicKey {
    /// Generates a public key at the top level.
    pub fn generate<R: CryptoRng + ?Sized>(
        ctx: &Context,
        sk: &SecretKey,
        rng: &mut R,
    ) -> Result<Self> {
        let seed = random_seed(rng);
        let mut e = vec![0i8; ctx.n()];
        fill_error(rng, &mut e);
        let basis = ctx.top_basis();
        let mut b = Poly::<Ntt>::zero(ctx, basis)?;
        for pos in 0..basis.len() {
            PrimeTools::of(ctx, sk, pos).rlwe_limb(&seed, 0, &e, b.limb_mut(pos));
        }
        e.zeroize();
        Ok(Self { b, seed })
    }

    /// The seed of `a`.
    pub fn seed(&self) -> &Seed {
        &self.seed
    }

    /// Validates (top-level basis, residues) and expands `a`.
    pub fn expand(&self, ctx: &Context) -> Result<ExpandedPublicKey> {
        self.b.validate_basis(ctx, ctx.top_basis())?;
        let a = expand_uniform(ctx, &self.seed, 0, ctx.top_basis())?;
        Ok(ExpandedPublicKey {
            b: self.b.clone(),
            a,
        })
    }

    /// Size of the key on the wire, in words of limb data.
    pub fn words(&self) -> usize {
        self.b.data().len()
    }

    /// `b` (NTT form, top level): what travels limb by limb.
    pub fn b(&self) -> &Poly<Ntt> {
        &self.b
    }

    /// A public key from its parts as received: `b` must be over the top-level basis with every
    /// residue below its prime.
    pub fn from_parts(ctx: &Context, seed: Seed, b: Poly<Ntt>) -> Result<Self> {
        b.validate_basis(ctx, ctx.top_basis())?;
        Ok(Self { b, seed })
    }

    /// The key id: SHA-256 over a domain label, the preset's name, the seed and `b`. It names a
    /// client's key set on the server without revealing anything the public key does not.
    pub fn key_id(&self, ctx: &Context) -> [u8; 32] {
        let mut h = KeyIdHasher::new(ctx.params().name(), &self.seed);
        h.limb(self.b.data());
        h.finish()
    }
}

impl ExpandedPublicKey {
    /// The key restricted to the primes up to `level`.
    pub fn at_level(&self, ctx: &Context, level: usize) -> Result<Self> {
        let mut out = self.clone();
        out.b.drop_to_level(ctx, level)?;
        out.a.drop_to_level(ctx, level)?;
        Ok(out)
    }
}

/// Words of limb data in `polys` (for size reports).
pub fn total_words(polys: &[Poly<Ntt>]) -> usize {
    polys.iter().map(|p| p.data().len()).sum::<usize>()
}
