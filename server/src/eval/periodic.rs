//! Fast encoding of periodic plaintexts.
//!
//! A slot vector with period d (d | N/2) is the encoding of its first d values in the ring of
//! dimension N' = 2d, spread out: m(X) = m'(X^g) with g = N/N'. (Slot j of m is m'(ζ'^(5^j)) with
//! ζ' = ζ^g, and 5 has order d modulo 4d, so the slots repeat with period d.) The NTT of m follows
//! from the size-N' NTT of m': m(ψ_j) = m'(ψ_j^g), a gather through a precomputed index map.
//! So a plaintext of period d costs an FFT of size d and NTTs of size 2d instead of N/2 and N:
//! every BSGS diagonal is periodic, and the server re-encodes them every inference.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use client_core::encoding::Encoder;
use client_core::ring::{Basis, Context, Ntt, Poly};
use tfhe_ntt::prime64::Plan;

use super::{EvalError, EvalResult, PlainNtt};

/// A size-N' NTT plan for one prime and the gather map from its slots to the size-N NTT slots.
type SmallPlan = Arc<(Plan, Vec<u32>)>;

/// Small-ring encoders, NTT plans and index maps, built on first use.
#[derive(Default)]
pub struct PeriodicEncoder {
    encoders: Mutex<HashMap<usize, Arc<Encoder>>>,
    /// (global prime index, N') → (plan of size N', gather map of length N).
    plans: Mutex<HashMap<(usize, usize), SmallPlan>>,
}

impl PeriodicEncoder {
    fn encoder(&self, period: usize) -> EvalResult<Arc<Encoder>> {
        let mut map = self.encoders.lock().map_err(|_| EvalError::Poisoned)?;
        Ok(map
            .entry(period)
            .or_insert_with(|| Arc::new(Encoder::new(period.trailing_zeros() + 1)))
            .clone())
    }

    fn plan(&self, ctx: &Context, pi: usize, small_n: usize) -> EvalResult<SmallPlan> {
        let mut map = self.plans.lock().map_err(|_| EvalError::Poisoned)?;
        if let Some(p) = map.get(&(pi, small_n)) {
            return Ok(p.clone());
        }
        let m = ctx.modulus_at(pi);
        let q = m.value();
        let plan = Plan::try_new(small_n, q).ok_or(EvalError::Internal("no small NTT plan"))?;
        // The evaluation points of both transforms, read off the NTT of the monomial.
        let mut y = vec![0u64; small_n];
        y[1] = 1;
        plan.fwd(&mut y);
        let index: HashMap<u64, u32> = y.iter().enumerate().map(|(k, &v)| (v, k as u32)).collect();
        let n = ctx.n();
        let mut x = vec![0u64; n];
        x[1] = 1;
        ctx.plan_at(pi).fwd(&mut x);
        let g = (n / small_n) as u64;
        let gather = x
            .iter()
            .map(|&psi| {
                index
                    .get(&m.pow(psi, g))
                    .copied()
                    .ok_or(EvalError::Internal("NTT points do not match"))
            })
            .collect::<EvalResult<Vec<u32>>>()?;
        let entry = Arc::new((plan, gather));
        map.insert((pi, small_n), entry.clone());
        Ok(entry)
    }

    /// Encodes `values` (one period; the slot vector repeats it) at `scale` over the primes of
    /// `basis` (Q_l, or Q_l·P for products taken before ModDown).
    pub fn encode(
        &self,
        ctx: &Context,
        values: &[f64],
        scale: f64,
        basis: Basis,
    ) -> EvalResult<PlainNtt> {
        let level = basis.q_level().ok_or(EvalError::Internal(
            "plaintext basis without ciphertext primes",
        ))?;
        let period = values.len();
        let slots = ctx.params().slots();
        if period == 0 || !period.is_power_of_two() || period > slots || period < 8 {
            return Err(EvalError::BadPeriod {
                period,
                rows: period,
                cols: period,
                slots,
            });
        }
        let small_n = 2 * period;
        // Bounded by Q_l even over Q_l·P: the Q_l projection of the same integers must not wrap.
        let max_abs = 2f64.powf((ctx.params().log_q(level) - 1.0).min(126.0));
        let coeffs = self
            .encoder(period)?
            .scaled_coefficients(values, scale, max_abs)?;
        // Convert once (f64 → i128 is a library call), reduce per limb.
        let coeffs: Vec<i128> = coeffs.iter().map(|&c| c as i128).collect();
        let mut poly = Poly::<Ntt>::zero(ctx, basis)?;
        let mut small = vec![0u64; small_n];
        for pos in 0..basis.len() {
            let pi = ctx.prime_index(basis, pos);
            let m = ctx.modulus_at(pi);
            for (o, &c) in small.iter_mut().zip(&coeffs) {
                *o = m.reduce_i128(c);
            }
            let entry = self.plan(ctx, pi, small_n)?;
            let (plan, gather) = (&entry.0, &entry.1);
            plan.fwd(&mut small);
            for (o, &k) in poly.limb_mut(pos).iter_mut().zip(gather.iter()) {
                *o = small[k as usize];
            }
        }
        // Parseval over all slots: (2/N)·Δ²·(N/2)/d·Σ_period v² = Δ²·Σ v²/d, plus rounding.
        let n = ctx.n() as f64;
        let sq_norm =
            scale * scale * values.iter().map(|v| v * v).sum::<f64>() / period as f64 + n / 4.0;
        Ok(PlainNtt {
            poly,
            scale,
            sq_norm,
        })
    }
}
