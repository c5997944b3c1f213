//! Where the client's per-prime arithmetic comes from: the one seam between the host and the
//! device. Everything the protocol does with the secret key is limb-wise arithmetic modulo one
//! prime at a time (NTT, `c0 + c1·s`, `−a·s + e`), so the session asks its backend for the
//! tools of one prime and never holds more than that.
//!
//! - [`HostBackend`]: a [`Context`] with every prime's NTT plan and the secret in NTT form over
//!   all primes (9 × 512 KB + 9 × 128 KB at N = 2^14); nothing is rebuilt.
//! - [`DeviceBackend`]: the ring constants, the ternary secret (N bytes) and, for **one** prime,
//!   a [`CompactNtt`] (about 4 KB of tables instead of a plan's 32·N bytes) with the secret in
//!   NTT form, rebuilt when the next limb needs another prime (one NTT's worth of work). This
//!   is the microcontroller's memory profile.
//!
//! Both give the same residues, so a session sends the same bytes whichever backend it runs on
//! (tested in `tests/client_session.rs`).

use alloc::vec::Vec;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::arith::Modulus;
use crate::error::{Error, Result};
use crate::keys::{PrimeTools, SecretKey, Transform};
use crate::params::Params;
use crate::ring::{CompactNtt, Context, Ring};
use crate::sampling::fill_ternary;

mod sealed {
    pub trait Sealed {}
}

/// The arithmetic of one prime, borrowed from a backend together with the ring and the secret.
pub struct Prime<'a> {
    pub(crate) tools: PrimeTools<'a>,
    pub(crate) ring: &'a Ring,
    pub(crate) secret: &'a [i8],
}

/// A source of per-prime tools for [`super::ClientSession`]. Sealed: the two implementations
/// here are the ones whose outputs the tests compare byte for byte.
pub trait Backend: sealed::Sealed {
    /// The ring constants (moduli, parameters).
    fn ring(&self) -> &Ring;

    /// The tools of global prime `pi`.
    fn prime(&mut self, pi: usize) -> Result<Prime<'_>>;

    /// The NTT of global prime `pi` alone (no secret limb is built for it).
    fn transform(&mut self, pi: usize) -> Result<Transform<'_>>;

    /// Drops the secret's limb of the current prime but keeps its NTT (memory while the rest of
    /// a limb arrives).
    fn forget_secret_limb(&mut self) {}

    /// Drops what is cached for the current prime, if anything (memory between messages).
    fn release(&mut self) {}

    /// Per-prime transforms built so far (0 for a backend that builds them all up front).
    fn plan_builds(&self) -> u32 {
        0
    }
}

/// Every prime's tools at hand: the host's backend.
pub struct HostBackend<'a> {
    ctx: &'a Context,
    sk: &'a SecretKey,
}

impl<'a> HostBackend<'a> {
    /// A backend over a full context and a secret key of it.
    pub fn new(ctx: &'a Context, sk: &'a SecretKey) -> Self {
        Self { ctx, sk }
    }

    /// The context.
    pub fn ctx(&self) -> &'a Context {
        self.ctx
    }
}

impl sealed::Sealed for HostBackend<'_> {}

impl Backend for HostBackend<'_> {
    fn ring(&self) -> &Ring {
        self.ctx.ring()
    }

    fn prime(&mut self, pi: usize) -> Result<Prime<'_>> {
        if pi >= self.ctx.num_primes() {
            return Err(Error::IndexOutOfRange {
                what: "prime",
                index: pi,
                len: self.ctx.num_primes(),
            });
        }
        Ok(Prime {
            tools: PrimeTools::of(self.ctx, self.sk, pi),
            ring: self.ctx.ring(),
            secret: self.sk.coeffs(),
        })
    }

    fn transform(&mut self, pi: usize) -> Result<Transform<'_>> {
        self.prime(pi).map(|p| p.tools.ntt)
    }
}

/// The transform and the secret (NTT form, built when first asked for) of the one prime in
/// use.
struct CurrentPrime {
    pi: usize,
    ntt: CompactNtt,
    s_ntt: Option<Zeroizing<Vec<u64>>>,
}

/// One prime at a time: the microcontroller's backend.
pub struct DeviceBackend {
    ring: Ring,
    secret: Zeroizing<Vec<i8>>,
    current: Option<CurrentPrime>,
    builds: u32,
}

impl DeviceBackend {
    /// A backend with a secret drawn from `rng` (the same draws as
    /// [`SecretKey::generate`]) for `params`, checked for 128-bit security.
    pub fn new<R: CryptoRng + ?Sized>(params: &Params, rng: &mut R) -> Result<Self> {
        params.validate()?;
        Self::new_insecure(params, rng)
    }

    /// [`DeviceBackend::new`] without the security check, for test rings only.
    pub fn new_insecure<R: CryptoRng + ?Sized>(params: &Params, rng: &mut R) -> Result<Self> {
        let ring = Ring::new(params)?;
        let mut secret = Zeroizing::new(alloc::vec![0i8; ring.n()]);
        fill_ternary(rng, &mut secret);
        Ok(Self {
            ring,
            secret,
            current: None,
            builds: 0,
        })
    }
}

impl DeviceBackend {
    /// Makes `pi` the current prime (its NTT built, no secret limb yet) unless it is already.
    fn switch_to(&mut self, pi: usize) -> Result<()> {
        if self.current.as_ref().map(|c| c.pi) == Some(pi) {
            return Ok(());
        }
        // Free the old secret limb before building the new one: the peak is one limb.
        self.current = None;
        if pi >= self.ring.num_primes() {
            return Err(Error::IndexOutOfRange {
                what: "prime",
                index: pi,
                len: self.ring.num_primes(),
            });
        }
        let ntt = CompactNtt::new(self.ring.modulus_at(pi), self.ring.params().log_n())?;
        self.current = Some(CurrentPrime {
            pi,
            ntt,
            s_ntt: None,
        });
        self.builds += 1;
        Ok(())
    }
}

impl sealed::Sealed for DeviceBackend {}

impl Backend for DeviceBackend {
    fn ring(&self) -> &Ring {
        &self.ring
    }

    fn prime(&mut self, pi: usize) -> Result<Prime<'_>> {
        self.switch_to(pi)?;
        let cur = self
            .current
            .as_mut()
            .ok_or(Error::InvalidParams("no prime"))?;
        if cur.s_ntt.is_none() {
            let m = cur.ntt.modulus();
            let mut s_ntt: Zeroizing<Vec<u64>> = Zeroizing::new(
                self.secret
                    .iter()
                    .map(|&x| m.reduce_i64(x as i64))
                    .collect(),
            );
            cur.ntt.forward(&mut s_ntt);
            cur.s_ntt = Some(s_ntt);
        }
        let cur = self
            .current
            .as_ref()
            .ok_or(Error::InvalidParams("no prime"))?;
        let m: &Modulus = self.ring.modulus_at(pi);
        Ok(Prime {
            tools: PrimeTools {
                pi,
                m,
                ntt: Transform::Compact(&cur.ntt),
                s_ntt: cur.s_ntt.as_deref().map_or(&[], |v| v.as_slice()),
            },
            ring: &self.ring,
            secret: &self.secret,
        })
    }

    fn transform(&mut self, pi: usize) -> Result<Transform<'_>> {
        self.switch_to(pi)?;
        self.current
            .as_ref()
            .map(|c| Transform::Compact(&c.ntt))
            .ok_or(Error::InvalidParams("no prime"))
    }

    fn forget_secret_limb(&mut self) {
        if let Some(c) = self.current.as_mut() {
            c.s_ntt = None;
        }
    }

    fn release(&mut self) {
        self.current = None;
    }

    fn plan_builds(&self) -> u32 {
        self.builds
    }
}
