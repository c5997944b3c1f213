//! The CKKS evaluator: arithmetic on ciphertexts with exact scale and level tracking, hybrid key
//! switching, rotations (single and hoisted), and a heuristic noise estimate carried with every
//! ciphertext.
//!
//! Noise model: `noise_var` is the variance of each coefficient of the decryption error
//! (central-limit heuristic, coefficients treated as independent); [`Ct::noise_bound`] is
//! 10 standard deviations, which a Gaussian exceeds with probability below 2^-70 per coefficient.

mod blocks;
mod galois;
mod keyswitch;
mod lazy;
mod linear;
mod ops;
mod outgoing;
mod periodic;

use std::collections::HashMap;
use std::sync::Arc;

use client_core::cipher::{Ciphertext, SeededCiphertext};
use client_core::encoding::Encoder;
use client_core::keys::{
    ExpandedPublicKey, ExpandedSwitchingKey, KeyKind, PublicKey, SwitchingKey,
};
use client_core::ring::{Basis, Context, Ntt, Poly};
use client_core::sampling::ERROR_STD_DEV;

pub use blocks::{BlockOutput, BlockTransform, Bsgs};
pub use galois::GaloisTables;
pub use keyswitch::{Decomposed, KeySwitcher};
pub use lazy::PlainExt;
pub use linear::{rescale_divisor, Layout, LinearTransform, Matrix, TransformCost};
pub use ops::{public_key_noise_var, Ct3};
pub use outgoing::FloodReport;
pub use periodic::PeriodicEncoder;

/// Errors of the evaluator.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// An error from the CKKS core (shapes, residues, levels, parameters).
    #[error(transparent)]
    Core(#[from] client_core::Error),
    /// Two operands are at different levels.
    #[error("level mismatch: {0} vs {1}")]
    LevelMismatch(usize, usize),
    /// Two operands carry different scales.
    #[error("scale mismatch: 2^{0:.3} vs 2^{1:.3}")]
    ScaleMismatch(f64, f64),
    /// A ciphertext at level 0 cannot be rescaled.
    #[error("no level left to rescale")]
    NoLevelLeft,
    /// No relinearisation key was uploaded.
    #[error("missing relinearisation key")]
    MissingRelinKey,
    /// No Galois key for this element was uploaded.
    #[error("missing Galois key for element {0}")]
    MissingGaloisKey(u64),
    /// No public key was uploaded.
    #[error("missing public key")]
    MissingPublicKey,
    /// A key of the wrong kind was offered.
    #[error("wrong key kind")]
    WrongKeyKind,
    /// A lock was poisoned by a panicking thread.
    #[error("internal lock poisoned")]
    Poisoned,
    /// The flooding noise needed for the statistical target does not fit in the modulus.
    #[error(
        "flooding needs {needed_bits:.0}-bit noise but the modulus has only {modulus_bits:.1} bits"
    )]
    FloodingDoesNotFit {
        /// log2 of the flooding bound.
        needed_bits: f64,
        /// log2 of the ciphertext modulus.
        modulus_bits: f64,
    },
    /// A vector period that cannot hold the matrix or does not divide the slot count.
    #[error("period {period} cannot hold a {rows}×{cols} matrix in {slots} slots (needs a power of two ≥ both dimensions)")]
    BadPeriod {
        /// The requested period.
        period: usize,
        /// Matrix rows.
        rows: usize,
        /// Matrix columns.
        cols: usize,
        /// Slot count.
        slots: usize,
    },
    /// An internal invariant failed (a bug).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// Result alias of the evaluator.
pub type EvalResult<T> = Result<T, EvalError>;

/// A ciphertext on the server: (c0, c1) in NTT form with its scale and tracked noise.
///
/// The parts are private to the evaluator: a `Ct` is only made from a validated ciphertext
/// ([`Ct::from_client`], [`Ct::from_fresh`]) or by evaluator operations, so its residues, level
/// and scale are always consistent and its noise estimate follows every change to c0 and c1.
#[derive(Clone, Debug)]
pub struct Ct {
    c0: Poly<Ntt>,
    c1: Poly<Ntt>,
    /// Scale Δ of the message.
    scale: f64,
    /// Estimated variance of each error coefficient.
    noise_var: f64,
}

/// Variance of a fresh symmetric encryption's error (centred binomial, η = 21).
pub const FRESH_NOISE_VAR: f64 = ERROR_STD_DEV * ERROR_STD_DEV;

impl Ct {
    /// Wraps a freshly encrypted ciphertext after validating it (symmetric-encryption noise).
    pub fn from_fresh(ctx: &Context, ct: Ciphertext) -> EvalResult<Self> {
        ct.validate(ctx)?;
        Ok(Self::fresh(ct))
    }

    /// The one entry point for a ciphertext from the network: expands c1 from the seed and
    /// checks the basis, every residue, the scale's validity and that it is at `level`, once.
    /// The scale's value is the protocol's to check (see [`Ct::scale`]).
    pub fn from_client(
        ctx: &Context,
        ct: &SeededCiphertext,
        level: usize,
    ) -> Result<Self, client_core::Error> {
        let ct = ct.expand(ctx)?;
        ct.validate_level(ctx, level)?;
        Ok(Self::fresh(ct))
    }

    fn fresh(ct: Ciphertext) -> Self {
        Self {
            c0: ct.c0,
            c1: ct.c1,
            scale: ct.scale,
            noise_var: FRESH_NOISE_VAR,
        }
    }

    /// Scale Δ of the message.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Estimated variance of each error coefficient.
    pub fn noise_var(&self) -> f64 {
        self.noise_var
    }

    /// Accounts for error the ciphertext carries from before its encryption: a client's
    /// re-encryption of a decrypted message keeps that message's error, which the fresh
    /// encryption's estimate does not include.
    pub fn add_noise_variance(&mut self, var: f64) {
        self.noise_var += var;
    }

    /// The wire form (drops the noise estimate).
    pub fn into_ciphertext(self) -> Ciphertext {
        Ciphertext {
            c0: self.c0,
            c1: self.c1,
            scale: self.scale,
        }
    }

    /// Level of the ciphertext.
    pub fn level(&self) -> usize {
        self.c0.basis().q as usize - 1
    }

    /// High-probability bound on the error coefficients (10 standard deviations).
    pub fn noise_bound(&self) -> f64 {
        10.0 * self.noise_var.sqrt()
    }
}

/// A plaintext pre-encoded in NTT form at a level, with the statistics the noise model needs.
#[derive(Clone, Debug)]
pub struct PlainNtt {
    /// Δ·m in NTT form over the ciphertext primes up to its level.
    pub poly: Poly<Ntt>,
    /// Its scale.
    pub scale: f64,
    /// Σ of the squared integer coefficients (for the noise of products).
    pub sq_norm: f64,
}

impl PlainNtt {
    /// Level of the plaintext.
    pub fn level(&self) -> usize {
        self.poly.basis().q as usize - 1
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.poly.data().len() * 8
    }
}

/// Evaluation keys of one client, expanded.
#[derive(Default)]
pub struct EvalKeys {
    /// Public key (for re-randomisation).
    pub public: Option<ExpandedPublicKey>,
    /// Relinearisation key.
    pub relin: Option<ExpandedSwitchingKey>,
    /// Galois keys by element.
    pub galois: HashMap<u64, ExpandedSwitchingKey>,
}

impl EvalKeys {
    /// Validates and adds a public key.
    pub fn set_public(&mut self, ctx: &Context, pk: &PublicKey) -> EvalResult<()> {
        self.public = Some(pk.expand(ctx)?);
        Ok(())
    }

    /// Validates and adds a switching key (relinearisation or Galois).
    pub fn add_switching(&mut self, ctx: &Context, key: &SwitchingKey) -> EvalResult<()> {
        let expanded = key.expand(ctx)?;
        match key.kind() {
            KeyKind::Relinearization => self.relin = Some(expanded),
            KeyKind::Galois(g) => {
                self.galois.insert(g, expanded);
            }
        }
        Ok(())
    }
}

/// A thread pool for evaluator work. Key switching, hoisted rotations and linear transforms
/// split their work with rayon; run them inside `pool.install(|| …)` to bound the threads used
/// (`threads = 1` gives the single-threaded figures of the README).
pub fn thread_pool(threads: usize) -> EvalResult<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("hefun-eval-{i}"))
        .build()
        .map_err(|_| EvalError::Internal("cannot start the evaluator thread pool"))
}

/// The evaluator for one parameter set. Shareable across threads; keys are passed per call so
/// one evaluator serves many clients.
pub struct Evaluator {
    ctx: Arc<Context>,
    encoder: Encoder,
    switcher: KeySwitcher,
    galois: GaloisTables,
    periodic: PeriodicEncoder,
}

impl Evaluator {
    /// Precomputes everything for `ctx`.
    pub fn new(ctx: Arc<Context>) -> EvalResult<Self> {
        let encoder = Encoder::new(ctx.params().log_n());
        let switcher = KeySwitcher::new(&ctx)?;
        let galois = GaloisTables::new(&ctx)?;
        Ok(Self {
            ctx,
            encoder,
            switcher,
            galois,
            periodic: PeriodicEncoder::default(),
        })
    }

    /// The ring context.
    pub fn ctx(&self) -> &Context {
        &self.ctx
    }

    /// The encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The key switcher.
    pub fn switcher(&self) -> &KeySwitcher {
        &self.switcher
    }

    /// Encodes a slot vector that repeats `values` (one period, a power of two) at `scale`
    /// and `level`; much cheaper than [`Evaluator::encode`] for short periods.
    pub fn encode_periodic(
        &self,
        values: &[f64],
        scale: f64,
        level: usize,
    ) -> EvalResult<PlainNtt> {
        if values.len() < 8 {
            let slots = self.ctx.params().slots();
            let full: Vec<f64> = (0..slots)
                .map(|t| values[t % values.len().max(1)])
                .collect();
            return self.encode(&full, scale, level);
        }
        self.encode_periodic_in(values, scale, Basis::level(level))
    }

    /// [`Evaluator::encode_periodic`] over the primes of `basis` (Q_l, or Q_l·P for products
    /// taken before ModDown). A power-of-two period below 8 is also a period of 8: it is repeated
    /// to 8 values, which the small-ring encoder needs.
    pub(super) fn encode_periodic_in(
        &self,
        values: &[f64],
        scale: f64,
        basis: Basis,
    ) -> EvalResult<PlainNtt> {
        if values.len() < 8 && values.len().is_power_of_two() {
            let repeated: Vec<f64> = (0..8).map(|t| values[t % values.len()]).collect();
            return self.periodic.encode(&self.ctx, &repeated, scale, basis);
        }
        self.periodic.encode(&self.ctx, values, scale, basis)
    }

    /// The NTT-domain automorphism tables.
    pub fn galois(&self) -> &GaloisTables {
        &self.galois
    }
}
