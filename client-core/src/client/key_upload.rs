//! The client's key material on the wire: the key id (a hash of the public key) and the key
//! upload, produced limb by limb from a backend so no whole key is ever held.
//!
//! A device keeps one 32-byte [`KeySeed`]. The secret and the public key's randomness are
//! derived from it, so the same seed always gives the same public key and key id: a client that
//! restarts can name its keys in its hello and skip the upload. The switching keys' randomness
//! comes from the caller's generator (they are never recomputed, only uploaded once).

use alloc::vec;
use alloc::vec::Vec;

use rand_core::{CryptoRng, SeedableRng};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::backend::Backend;
use crate::error::Result;
use crate::keys::{galois_element_for_rotation, switching_limb, KeyChunk, KeyIdHasher, KeyKind};
use crate::ring::check_galois_element;
use crate::sampling::{fill_error, random_seed, Csprng, Seed};
use crate::wire::messages::{ClientFrame, KeyId, Limb};

/// A client's long-term key seed: the secret key and the public key derive from it.
pub struct KeySeed(Zeroizing<Seed>);

impl KeySeed {
    /// Wraps 32 bytes of entropy (or a seed kept in a key file or in flash).
    pub fn new(seed: Zeroizing<Seed>) -> Self {
        Self(seed)
    }

    /// The generator the secret key is drawn from.
    pub fn secret_key_rng(&self) -> Csprng {
        self.derived(b"secret key")
    }

    /// The generator the public key is drawn from.
    pub fn public_key_rng(&self) -> Csprng {
        self.derived(b"public key")
    }

    /// The 32 seed bytes (for the stored record).
    pub(crate) fn seed(&self) -> &Seed {
        &self.0
    }

    fn derived(&self, purpose: &[u8]) -> Csprng {
        let mut h = Sha256::new();
        h.update(b"hefun key file v1\0");
        h.update(purpose);
        h.update(*self.0);
        let mut derived = Zeroizing::new(Seed::default());
        derived.copy_from_slice(&h.finalize());
        Csprng::from_seed(*derived)
    }
}

/// The public key's randomness: the seed of `a` and the error `e` (secret).
pub(crate) struct PublicKeyDraws {
    pub seed: Seed,
    pub e: Zeroizing<Vec<i8>>,
}

impl PublicKeyDraws {
    /// Draws from `rng` as [`crate::keys::PublicKey::generate`] does.
    pub fn draw<R: CryptoRng + ?Sized>(rng: &mut R, n: usize) -> Self {
        let seed = random_seed(rng);
        let mut e = Zeroizing::new(vec![0i8; n]);
        fill_error(rng, &mut e);
        Self { seed, e }
    }
}

/// Computes the public key limb by limb, handing each limb to `each`; returns the key id.
pub(crate) fn public_key_limbs<B: Backend>(
    backend: &mut B,
    draws: &PublicKeyDraws,
    words: &mut Vec<u64>,
    mut each: impl FnMut(&mut Vec<u64>, usize) -> Result<()>,
) -> Result<KeyId> {
    let n = backend.ring().n();
    let limbs = backend.ring().top_basis().len();
    let mut id = KeyIdHasher::new(backend.ring().params().name(), &draws.seed);
    words.resize(n, 0);
    for pos in 0..limbs {
        let prime = backend.prime(pos)?;
        prime.tools.rlwe_limb(&draws.seed, 0, &draws.e, words);
        id.limb(words);
        each(words, pos)?;
    }
    Ok(id.finish())
}

/// Sends the public key, the relinearisation key and the Galois keys of `rotations`, then
/// `KeysDone`. Returns the key id and the number of limb frames sent.
pub(crate) fn upload<B, R, F>(
    backend: &mut B,
    draws: PublicKeyDraws,
    rotations: &[i64],
    rng: &mut R,
    send: &mut F,
) -> Result<(KeyId, u32)>
where
    B: Backend,
    R: CryptoRng + ?Sized,
    F: FnMut(&ClientFrame) -> Result<()>,
{
    let n = backend.ring().n();
    let mut words = Vec::with_capacity(n);
    let mut frames = 0u32;
    let key_id = public_key_limbs(backend, &draws, &mut words, |w, pos| {
        let frame = ClientFrame::PublicKeyLimb {
            seed: draws.seed,
            limb: Limb {
                index: pos as u16,
                words: core::mem::take(w),
            },
        };
        frames += 1;
        let sent = send(&frame);
        *w = take_words(frame);
        sent
    })?;
    // The public key's error is not needed again: free it for the switching keys.
    drop(draws);

    // Only the refresh round multiplies ciphertexts.
    let mut kinds = Vec::with_capacity(rotations.len() + 1);
    if backend.ring().params().round() == crate::params::RoundKind::Refresh {
        kinds.push(KeyKind::Relinearization);
    }
    for &r in rotations {
        let g = galois_element_for_rotation(n, r);
        check_galois_element(n, g)?;
        kinds.push(KeyKind::Galois(g));
    }
    let params = backend.ring().params().clone();
    let digits = params.digit_count(params.top_level());
    let basis = backend.ring().full_basis();
    for kind in kinds {
        let seed = random_seed(rng);
        let noise_seed = Zeroizing::new(random_seed(rng));
        send(&ClientFrame::KeyBegin { kind, seed })?;
        for digit in 0..digits {
            for limb in 0..basis.len() {
                let pi = backend.ring().prime_index(basis, limb);
                let prime = backend.prime(pi)?;
                switching_limb(
                    prime.ring,
                    &prime.tools,
                    prime.secret,
                    kind,
                    (&seed, &noise_seed),
                    digit,
                    &mut words,
                )?;
                let frame = ClientFrame::KeyChunk(KeyChunk {
                    digit: digit as u16,
                    limb: limb as u16,
                    data: core::mem::take(&mut words),
                });
                frames += 1;
                let sent = send(&frame);
                words = take_words(frame);
                sent?;
            }
        }
    }
    send(&ClientFrame::KeysDone { key_id })?;
    Ok((key_id, frames))
}

/// The limb buffer of a frame just sent, for reuse.
pub(crate) fn take_words(frame: ClientFrame) -> Vec<u64> {
    match frame {
        ClientFrame::PublicKeyLimb { limb, .. } | ClientFrame::SeededLimb { limb, .. } => {
            limb.words
        }
        ClientFrame::KeyChunk(c) => c.data,
        _ => Vec::new(),
    }
}
