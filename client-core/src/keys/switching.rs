//! Hybrid key-switching keys (relinearisation and Galois), produced limb by limb.
//!
//! Format, as the server's key switching consumes it: for each gadget digit j (groups of α
//! ciphertext primes, [`crate::params::Params::digit_range`]) one polynomial over all ciphertext
//! and special primes, NTT form,
//!
//!   b_j = −a_j·s + e_j + [i ∈ digit j]·(P mod q_i)·s'   (limb of prime i)
//!
//! with a_j expanded from the key's seed. Decrypting (b_j, a_j) gives e_j + P·g_j·s', g_j being
//! the CRT idempotent of digit j (1 mod its primes, 0 mod the others). s' is s² for
//! relinearisation and σ_g(s) for the Galois element g. At a lower level the server uses the
//! limbs of the primes still present; the identity holds on every prefix of the chain.
//!
//! Each limb can be computed on its own from (secret, seed, noise seed): the error e_j is
//! re-expanded from a secret per-key noise seed, so a client streams a key out one limb at a time.

use alloc::vec;
use alloc::vec::Vec;

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{expand_uniform, PrimeTools, SecretKey};
use crate::error::{Error, Result};
use crate::ring::{check_galois_element, Context, Ntt, Poly, Ring};
use crate::sampling::{fill_error, random_seed, seeded_stream, Seed};

/// Galois element of complex conjugation (X → X^(2N−1)), as a marker: the real value is 2N − 1.
pub const CONJUGATION: i64 = i64::MIN;

/// Galois element that rotates the slots by `steps` to the left (negative: to the right).
pub fn galois_element_for_rotation(n: usize, steps: i64) -> u64 {
    let two_n = 2 * n as u64;
    if steps == CONJUGATION {
        return two_n - 1;
    }
    let slots = (n / 2) as i64;
    let k = steps.rem_euclid(slots) as u64;
    let mut g = 1u64;
    let mut base = 5u64;
    let mut e = k;
    while e > 0 {
        if e & 1 == 1 {
            g = g * base % two_n;
        }
        base = base * base % two_n;
        e >>= 1;
    }
    g
}

/// What a switching key switches from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyKind {
    /// From s² (relinearisation after a ciphertext product).
    Relinearization,
    /// From σ_g(s) (after the automorphism X → X^g).
    Galois(u64),
}

/// A seeded switching key: one `b` polynomial per digit over all primes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchingKey {
    kind: KeyKind,
    seed: Seed,
    b: Vec<Poly<Ntt>>,
}

/// One limb of one digit of a switching key: the unit in which keys stream to the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChunk {
    /// Digit index.
    pub digit: u16,
    /// Position of the limb in the full basis (ciphertext primes, then special primes).
    pub limb: u16,
    /// The residues (NTT form).
    #[serde(with = "crate::ring::serde_limbs")]
    pub data: Vec<u64>,
}

impl SwitchingKey {
    /// What the key switches from.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Seed of the `a_j`.
    pub fn seed(&self) -> &Seed {
        &self.seed
    }

    /// The `b_j`, one per digit.
    pub fn b(&self) -> &[Poly<Ntt>] {
        &self.b
    }

    /// Assembles a key from its chunks, which must be complete, in any order, without
    /// duplicates.
    pub fn from_chunks(
        ctx: &Context,
        kind: KeyKind,
        seed: Seed,
        chunks: impl IntoIterator<Item = KeyChunk>,
    ) -> Result<Self> {
        let digits = ctx.params().digit_count(ctx.params().top_level());
        let basis = ctx.full_basis();
        let n = ctx.n();
        let mut data: Vec<Vec<u64>> = vec![vec![0u64; n * basis.len()]; digits];
        let mut seen = vec![false; digits * basis.len()];
        for chunk in chunks {
            let (d, l) = (chunk.digit as usize, chunk.limb as usize);
            if d >= digits {
                return Err(Error::IndexOutOfRange {
                    what: "key digit",
                    index: d,
                    len: digits,
                });
            }
            if l >= basis.len() {
                return Err(Error::IndexOutOfRange {
                    what: "key limb",
                    index: l,
                    len: basis.len(),
                });
            }
            if chunk.data.len() != n {
                return Err(Error::LengthMismatch {
                    expected: n,
                    found: chunk.data.len(),
                });
            }
            let slot = &mut seen[d * basis.len() + l];
            if *slot {
                return Err(Error::Decode("duplicate key chunk"));
            }
            *slot = true;
            data[d][l * n..(l + 1) * n].copy_from_slice(&chunk.data);
        }
        if seen.iter().any(|s| !s) {
            return Err(Error::Decode("missing key chunk"));
        }
        let b = data
            .into_iter()
            .map(|d| Poly::from_data(ctx, basis, d))
            .collect::<Result<Vec<_>>>()?;
        let key = Self { kind, seed, b };
        key.validate(ctx)?;
        Ok(key)
    }

    /// Checks shape and residues against `ctx`.
    pub fn validate(&self, ctx: &Context) -> Result<()> {
        if let KeyKind::Galois(g) = self.kind {
            check_galois_element(ctx.n(), g)?;
        }
        let digits = ctx.params().digit_count(ctx.params().top_level());
        if self.b.len() != digits {
            return Err(Error::LengthMismatch {
                expected: digits,
                found: self.b.len(),
            });
        }
        for b in &self.b {
            b.validate_basis(ctx, ctx.full_basis())?;
        }
        Ok(())
    }

    /// Validates and expands the `a_j` (the server's form of the key).
    pub fn expand(&self, ctx: &Context) -> Result<ExpandedSwitchingKey> {
        self.validate(ctx)?;
        let a = (0..self.b.len())
            .map(|d| expand_uniform(ctx, &self.seed, d, ctx.full_basis()))
            .collect::<Result<Vec<_>>>()?;
        Ok(ExpandedSwitchingKey {
            kind: self.kind,
            b: self.b.clone(),
            a,
        })
    }
}

/// A switching key with its uniform parts expanded.
#[derive(Clone, Debug)]
pub struct ExpandedSwitchingKey {
    /// What the key switches from.
    pub kind: KeyKind,
    /// b_j per digit.
    pub b: Vec<Poly<Ntt>>,
    /// a_j per digit.
    pub a: Vec<Poly<Ntt>>,
}

/// Limb `tools.pi` of digit `digit` of the switching key of `kind` with public and noise seeds
/// `seeds`, for the secret with coefficients `s` (see the module docs).
pub(crate) fn switching_limb(
    ring: &Ring,
    tools: &PrimeTools<'_>,
    s: &[i8],
    kind: KeyKind,
    seeds: (&Seed, &Seed),
    digit: usize,
    out: &mut [u64],
) -> Result<()> {
    let (seed, noise_seed) = seeds;
    let mut e = Zeroizing::new(vec![0i8; ring.n()]);
    fill_error(&mut seeded_stream(noise_seed, digit as u64), &mut e);
    tools.rlwe_limb(seed, digit, &e, out);

    let pi = tools.pi;
    let top = ring.params().top_level();
    if ring.params().digit_range(digit, top).contains(&pi) {
        let m = tools.m;
        let s_prime = Zeroizing::new(source_secret_limb(tools, s, kind)?);
        let factor = ring.p_mod_q(pi);
        let factor_shoup = m.shoup(factor);
        for (o, &sp) in out.iter_mut().zip(s_prime.iter()) {
            *o = m.add(*o, m.mul_shoup(sp, factor, factor_shoup));
        }
    }
    Ok(())
}

/// s' modulo prime `tools.pi`, NTT form.
fn source_secret_limb(tools: &PrimeTools<'_>, s: &[i8], kind: KeyKind) -> Result<Vec<u64>> {
    let m = tools.m;
    match kind {
        KeyKind::Relinearization => Ok(tools.s_ntt.iter().map(|&x| m.mul(x, x)).collect()),
        KeyKind::Galois(g) => {
            // σ_g(s) straight into residues (no signed copy of the secret besides it).
            let n = s.len();
            check_galois_element(n, g)?;
            let mut limb = vec![0u64; n];
            let (mask, mut idx) = (2 * n - 1, 0usize);
            for &c in s {
                let r = m.reduce_i64(c as i64);
                if idx < n {
                    limb[idx] = r;
                } else {
                    limb[idx - n] = m.neg(r);
                }
                idx = (idx + g as usize) & mask;
            }
            tools.ntt.forward(&mut limb);
            Ok(limb)
        }
    }
}

/// Produces a switching key limb by limb (see the module docs). Holds only O(N) bytes of state
/// besides the secret key.
pub struct SwitchingKeyGenerator<'a> {
    ctx: &'a Context,
    sk: &'a SecretKey,
    kind: KeyKind,
    seed: Seed,
    noise_seed: Zeroizing<Seed>,
}

impl<'a> SwitchingKeyGenerator<'a> {
    /// Starts a key of `kind`, drawing its public seed and secret noise seed from `rng`.
    pub fn new<R: CryptoRng + ?Sized>(
        ctx: &'a Context,
        sk: &'a SecretKey,
        kind: KeyKind,
        rng: &mut R,
    ) -> Result<Self> {
        if let KeyKind::Galois(g) = kind {
            check_galois_element(ctx.n(), g)?;
        }
        Ok(Self {
            ctx,
            sk,
            kind,
            seed: random_seed(rng),
            noise_seed: Zeroizing::new(random_seed(rng)),
        })
    }

    /// The key's public seed.
    pub fn seed(&self) -> Seed {
        self.seed
    }

    /// What the key switches from.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Number of digits.
    pub fn digits(&self) -> usize {
        self.ctx.params().digit_count(self.ctx.params().top_level())
    }

    /// Number of limbs per digit.
    pub fn limbs(&self) -> usize {
        self.ctx.full_basis().len()
    }

    /// Computes limb `limb` of digit `digit` into `out` (length N).
    pub fn limb(&self, digit: usize, limb: usize, out: &mut [u64]) -> Result<()> {
        let ctx = self.ctx;
        let n = ctx.n();
        if digit >= self.digits() {
            return Err(Error::IndexOutOfRange {
                what: "key digit",
                index: digit,
                len: self.digits(),
            });
        }
        if limb >= self.limbs() {
            return Err(Error::IndexOutOfRange {
                what: "key limb",
                index: limb,
                len: self.limbs(),
            });
        }
        if out.len() != n {
            return Err(Error::LengthMismatch {
                expected: n,
                found: out.len(),
            });
        }
        let pi = ctx.prime_index(ctx.full_basis(), limb);
        switching_limb(
            ctx,
            &PrimeTools::of(ctx, self.sk, pi),
            self.sk.coeffs(),
            self.kind,
            (&self.seed, &self.noise_seed),
            digit,
            out,
        )
    }

    /// All chunks of the key, digit-major.
    pub fn chunks(&self) -> impl Iterator<Item = Result<KeyChunk>> + '_ {
        let limbs = self.limbs();
        (0..self.digits()).flat_map(move |d| {
            (0..limbs).map(move |l| {
                let mut data = vec![0u64; self.ctx.n()];
                self.limb(d, l, &mut data)?;
                Ok(KeyChunk {
                    digit: d as u16,
                    limb: l as u16,
                    data,
                })
            })
        })
    }

    /// Computes the whole key.
    pub fn generate(&self) -> Result<SwitchingKey> {
        let chunks = self.chunks().collect::<Result<Vec<_>>>()?;
        SwitchingKey::from_chunks(self.ctx, self.kind, self.seed, chunks)
    }
}

impl SwitchingKey {
    /// Generates a relinearisation key.
    pub fn relinearization<R: CryptoRng + ?Sized>(
        ctx: &Context,
        sk: &SecretKey,
        rng: &mut R,
    ) -> Result<Self> {
        SwitchingKeyGenerator::new(ctx, sk, KeyKind::Relinearization, rng)?.generate()
    }

    /// Generates the Galois key for rotating the slots by `steps`.
    pub fn rotation<R: CryptoRng + ?Sized>(
        ctx: &Context,
        sk: &SecretKey,
        steps: i64,
        rng: &mut R,
    ) -> Result<Self> {
        let g = galois_element_for_rotation(ctx.n(), steps);
        SwitchingKeyGenerator::new(ctx, sk, KeyKind::Galois(g), rng)?.generate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Params, DEFAULT_N16384};
    use crate::ring::automorphism_signed;
    use crate::ring::{Basis, IntPoly};
    use crate::sampling::{Csprng, CBD_ETA};
    use rand_core::SeedableRng;

    /// Decrypts (b_j, a_j) limb by limb with the secret key, removes P·g_j·s', and checks that
    /// what is left is the small error e_j, identical in every limb.
    fn assert_key_encodes(ctx: &Context, sk: &SecretKey, key: &SwitchingKey, s_prime: &[i64]) {
        let expanded = key.expand(ctx).unwrap();
        let top = ctx.params().top_level();
        let basis = ctx.full_basis();
        for (digit, (b, a)) in expanded.b.iter().zip(&expanded.a).enumerate() {
            let mut first_limb_error: Option<Vec<i64>> = None;
            for pos in 0..basis.len() {
                let pi = ctx.prime_index(basis, pos);
                let m = ctx.modulus_at(pi);
                let s = sk.ntt_limb(pi);
                let mut limb: Vec<u64> = b
                    .limb(pos)
                    .iter()
                    .zip(a.limb(pos))
                    .zip(s)
                    .map(|((&b, &a), &s)| m.add(b, m.mul(a, s)))
                    .collect();
                ctx.plan_at(pi).inv(&mut limb);
                ctx.plan_at(pi).normalize(&mut limb);
                if ctx.params().digit_range(digit, top).contains(&pi) {
                    let f = ctx.p_mod_q(pi);
                    for (x, &sp) in limb.iter_mut().zip(s_prime) {
                        *x = m.sub(*x, m.mul(f, m.reduce_i64(sp)));
                    }
                }
                let centred: Vec<i64> = limb
                    .iter()
                    .map(|&x| {
                        if x > m.value() / 2 {
                            x as i64 - m.value() as i64
                        } else {
                            x as i64
                        }
                    })
                    .collect();
                let max = centred.iter().map(|x| x.abs()).max().unwrap();
                assert!(
                    max <= CBD_ETA as i64,
                    "digit {digit} limb {pos}: residual {max} is not a fresh error"
                );
                match &first_limb_error {
                    None => first_limb_error = Some(centred),
                    Some(e) => assert_eq!(e, &centred, "digit {digit}: error differs across limbs"),
                }
            }
        }
    }

    fn setup() -> (Context, SecretKey, Csprng) {
        let params = Params::from_spec(&DEFAULT_N16384).unwrap();
        let ctx = Context::new(&params).unwrap();
        let mut rng = Csprng::from_seed([3; 32]);
        let sk = SecretKey::generate(&ctx, &mut rng).unwrap();
        (ctx, sk, rng)
    }

    #[test]
    fn relinearization_key_encodes_s_squared() {
        let (ctx, sk, mut rng) = setup();
        let key = SwitchingKey::relinearization(&ctx, &sk, &mut rng).unwrap();
        // s² over the integers (negacyclic), from the NTT over q0 with centring: |s²_i| ≤ N.
        let s_ntt = sk.ntt_over(&ctx, Basis::level(0)).unwrap();
        let mut sq = s_ntt.clone();
        sq.mul_assign(&ctx, &s_ntt).unwrap();
        let sq = IntPoly::reconstruct(&ctx, &sq.into_coeff(&ctx).unwrap()).unwrap();
        let s_prime: Vec<i64> = (0..ctx.n())
            .map(|i| sq.coeff_i128(i).unwrap() as i64)
            .collect();
        assert_key_encodes(&ctx, &sk, &key, &s_prime);
    }

    #[test]
    fn galois_keys_encode_rotated_secret() {
        let (ctx, sk, mut rng) = setup();
        for steps in [1i64, -3, CONJUGATION] {
            let key = SwitchingKey::rotation(&ctx, &sk, steps, &mut rng).unwrap();
            let KeyKind::Galois(g) = key.kind() else {
                panic!("not a Galois key")
            };
            let s_prime: Vec<i64> = automorphism_signed(sk.coeffs(), g)
                .unwrap()
                .iter()
                .map(|&x| x as i64)
                .collect();
            assert_key_encodes(&ctx, &sk, &key, &s_prime);
        }
    }

    #[test]
    fn public_key_decrypts_to_small_error() {
        let (ctx, sk, mut rng) = setup();
        let pk = super::super::PublicKey::generate(&ctx, &sk, &mut rng)
            .unwrap()
            .expand(&ctx)
            .unwrap();
        let s = sk.ntt_over(&ctx, ctx.top_basis()).unwrap();
        let mut d = pk.b.clone();
        d.mul_acc(&ctx, &pk.a, &s).unwrap();
        let e = IntPoly::reconstruct(&ctx, &d.into_coeff(&ctx).unwrap()).unwrap();
        let max = (0..ctx.n())
            .map(|i| e.coeff_i128(i).unwrap().abs())
            .max()
            .unwrap();
        assert!(max <= CBD_ETA as i128, "public key error {max}");
    }

    #[test]
    fn streamed_chunks_assemble_to_the_key() {
        let (ctx, sk, mut rng) = setup();
        let generator =
            SwitchingKeyGenerator::new(&ctx, &sk, KeyKind::Relinearization, &mut rng).unwrap();
        let whole = generator.generate().unwrap();
        let mut chunks: Vec<KeyChunk> = generator.chunks().map(|c| c.unwrap()).collect();
        chunks.reverse();
        let again =
            SwitchingKey::from_chunks(&ctx, generator.kind(), generator.seed(), chunks.clone())
                .unwrap();
        assert_eq!(whole, again);

        let mut missing = chunks.clone();
        missing.pop();
        assert!(
            SwitchingKey::from_chunks(&ctx, generator.kind(), generator.seed(), missing).is_err()
        );
        let mut duplicated = chunks.clone();
        duplicated[1] = duplicated[0].clone();
        assert!(
            SwitchingKey::from_chunks(&ctx, generator.kind(), generator.seed(), duplicated)
                .is_err()
        );
        let mut bad_index = chunks;
        bad_index[0].limb = 999;
        assert!(
            SwitchingKey::from_chunks(&ctx, generator.kind(), generator.seed(), bad_index).is_err()
        );
    }
}
