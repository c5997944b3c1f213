//! y = W·x for a plaintext matrix W with the baby-step/giant-step diagonal method.
//!
//! Layout: vectors are *periodic* in the slots. An input of length n occupies slots [0, n) and
//! repeats with period d (a power of two dividing the slot count), so a rotation of the whole
//! ciphertext by k is a cyclic rotation by k of every period.
//!
//! * **Square** (m, n ≤ d): y_i = Σ_k diag_k[i]·x[(i + k) mod d] with diag_k[i] = W[i][(i+k) mod d].
//!   The output has period d.
//! * **Wide** (m < n, "extended diagonals"): with m' the power of two ≥ m and d ≥ n,
//!   z = Σ_{k<m'} ext_k ⊙ rot_k(x) with ext_k[i] = W[i mod m'][(i + k) mod d], then
//!   log2(d/m') rotate-and-add steps fold z so that every slot t holds y[t mod m']: the output
//!   has period m'. Only m' diagonals instead of d.
//!
//! Baby-step/giant-step: with k = n1·j + i, y = Σ_j rot_{n1·j}(Σ_i pdiag_{j,i} ⊙ rot_i(x)), where
//! pdiag_{j,i} is diag_{n1·j+i} rotated right by n1·j. The rotations rot_i(x) share one
//! decomposition (hoisting). Only non-zero diagonals are encoded; encoded diagonals are cached in
//! NTT form per level, at scale q_level so that the final rescale restores the input scale
//! exactly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use client_core::ring::{Ntt, Poly};
use rayon::prelude::*;

use super::{Ct, EvalError, EvalKeys, EvalResult, Evaluator, PlainNtt};

/// A matrix in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    /// Number of rows (outputs).
    pub rows: usize,
    /// Number of columns (inputs).
    pub cols: usize,
    /// Entries, row-major.
    pub data: Vec<f64>,
}

impl Matrix {
    /// Entry (r, c).
    pub fn get(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.cols + c]
    }

    /// W·x in plain arithmetic (the reference).
    pub fn apply_plain(&self, x: &[f64]) -> Vec<f64> {
        (0..self.rows)
            .map(|r| (0..self.cols).map(|c| self.get(r, c) * x[c]).sum())
            .collect()
    }
}

/// Which diagonal layout a transform uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Square diagonals over period d.
    Square,
    /// Extended diagonals for wide matrices, folded to period m'.
    Wide {
        /// Output period m'.
        out_period: usize,
    },
}

/// Cost of one application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransformCost {
    /// Key-switched rotations (hoisted baby steps count one each).
    pub rotations: usize,
    /// Plaintext–ciphertext products.
    pub plaintext_multiplies: usize,
    /// Bytes of cached NTT-form plaintexts at the top level.
    pub cached_bytes_top_level: usize,
}

/// Encoded diagonals at one level: (giant step j, [(baby step i, plaintext)]).
type EncodedDiagonals = Arc<Vec<(usize, Vec<(usize, PlainNtt)>)>>;

/// A compiled linear transform.
pub struct LinearTransform {
    rows: usize,
    cols: usize,
    period: usize,
    layout: Layout,
    n1: usize,
    /// Pre-rotated non-zero diagonals grouped by giant step: j → [(i, values over one period)].
    groups: BTreeMap<usize, Vec<(usize, Vec<f64>)>>,
    cache: Mutex<HashMap<(usize, usize), EncodedDiagonals>>,
}

/// Product of the top `primes` primes at `level` (the scale that rescaling by them removes).
pub fn rescale_divisor(eval: &Evaluator, level: usize, primes: usize) -> f64 {
    (0..primes)
        .map(|k| eval.ctx().modulus_at(level - k).value() as f64)
        .product()
}

fn next_pow2(x: usize) -> usize {
    x.max(1).next_power_of_two()
}

impl LinearTransform {
    /// Compiles `w` for inputs of period `period` (≥ cols, power of two) in `slots` slots.
    /// Wide matrices (rows < cols) use extended diagonals.
    pub fn new(w: &Matrix, period: usize, slots: usize) -> EvalResult<Self> {
        if w.data.len() != w.rows * w.cols || w.rows == 0 || w.cols == 0 {
            return Err(EvalError::Internal("matrix shape does not match its data"));
        }
        let d = period;
        if !d.is_power_of_two() || d > slots || d < w.cols || d < w.rows {
            return Err(EvalError::BadPeriod {
                period: d,
                rows: w.rows,
                cols: w.cols,
                slots,
            });
        }
        let out_period = next_pow2(w.rows);
        let layout = if out_period < d && w.rows < w.cols {
            Layout::Wide { out_period }
        } else {
            Layout::Square
        };
        let count = match layout {
            Layout::Square => d,
            Layout::Wide { out_period } => out_period,
        };
        // diagonal k as a vector over one period.
        let mut diags: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for k in 0..count {
            let diag: Vec<f64> = (0..d)
                .map(|i| {
                    let r = match layout {
                        Layout::Square => i,
                        Layout::Wide { out_period } => i % out_period,
                    };
                    let c = (i + k) % d;
                    if r < w.rows && c < w.cols {
                        w.get(r, c)
                    } else {
                        0.0
                    }
                })
                .collect();
            if diag.iter().any(|&v| v != 0.0) {
                diags.insert(k, diag);
            }
        }
        // Baby-step count: about √(number of possible diagonals), a power of two. It depends on the
        // layout only, not on which diagonals are non-zero, so every matrix of one shape (e.g.
        // each per-inference permutation of a layer) needs the same Galois keys.
        let n1 = next_pow2(((count as f64).sqrt().ceil()) as usize).min(d);
        let mut groups: BTreeMap<usize, Vec<(usize, Vec<f64>)>> = BTreeMap::new();
        for (k, diag) in diags {
            let (j, i) = (k / n1, k % n1);
            let shift = n1 * j;
            // Pre-rotate right by n1·j: pdiag[t] = diag[(t − shift) mod d].
            let pre: Vec<f64> = (0..d).map(|t| diag[(t + d - shift % d) % d]).collect();
            groups.entry(j).or_default().push((i, pre));
        }
        Ok(Self {
            rows: w.rows,
            cols: w.cols,
            period: d,
            layout,
            n1,
            groups,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Output length.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input length.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The layout chosen.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Period of the output vector in the slots.
    pub fn output_period(&self) -> usize {
        match self.layout {
            Layout::Square => self.period,
            Layout::Wide { out_period } => out_period,
        }
    }

    fn baby_steps(&self) -> BTreeSet<usize> {
        self.groups
            .values()
            .flat_map(|g| g.iter().map(|(i, _)| *i))
            .collect()
    }

    fn fold_steps(&self) -> Vec<usize> {
        match self.layout {
            Layout::Square => Vec::new(),
            Layout::Wide { out_period } => {
                let mut steps = Vec::new();
                let mut s = self.period / 2;
                while s >= out_period {
                    steps.push(s);
                    s /= 2;
                }
                steps
            }
        }
    }

    /// Every rotation step the transform needs: ask the client for exactly these Galois keys.
    pub fn rotation_steps(&self) -> Vec<i64> {
        let mut steps: BTreeSet<i64> = BTreeSet::new();
        steps.extend(
            self.baby_steps()
                .into_iter()
                .filter(|&i| i != 0)
                .map(|i| i as i64),
        );
        steps.extend(
            self.groups
                .keys()
                .filter(|&&j| j != 0)
                .map(|&j| (j * self.n1) as i64),
        );
        steps.extend(self.fold_steps().into_iter().map(|s| s as i64));
        steps.into_iter().collect()
    }

    /// Cost of one application for a parameter set with `top_limbs` ciphertext primes at the top
    /// and ring dimension `n`.
    pub fn cost(&self, n: usize, top_limbs: usize) -> TransformCost {
        let diags: usize = self.groups.values().map(Vec::len).sum();
        let baby = self.baby_steps().into_iter().filter(|&i| i != 0).count();
        let giant = self.groups.keys().filter(|&&j| j != 0).count();
        TransformCost {
            rotations: baby + giant + self.fold_steps().len(),
            plaintext_multiplies: diags,
            cached_bytes_top_level: diags * n * top_limbs * 8,
        }
    }

    /// The encoded diagonals at `level`, at the scale of the top `primes` primes (cached).
    fn encoded(
        &self,
        eval: &Evaluator,
        level: usize,
        primes: usize,
    ) -> EvalResult<EncodedDiagonals> {
        let mut cache = self.cache.lock().map_err(|_| EvalError::Poisoned)?;
        if let Some(e) = cache.get(&(level, primes)) {
            return Ok(e.clone());
        }
        let scale = rescale_divisor(eval, level, primes);
        // Diagonals are independent: encode them in parallel.
        let out = self
            .groups
            .par_iter()
            .map(|(&j, group)| {
                let encoded = group
                    .par_iter()
                    .map(|(i, values)| Ok((*i, eval.encode_periodic(values, scale, level)?)))
                    .collect::<EvalResult<Vec<_>>>()?;
                Ok((j, encoded))
            })
            .collect::<EvalResult<Vec<_>>>()?;
        let out = Arc::new(out);
        cache.insert((level, primes), out.clone());
        Ok(out)
    }

    /// y = W·x: `x` holds the input with period `period`; the result is rescaled once (one level
    /// consumed, scale unchanged) and has period [`LinearTransform::output_period`].
    pub fn apply(&self, eval: &Evaluator, x: &Ct, keys: &EvalKeys) -> EvalResult<Ct> {
        self.apply_rescaling(eval, x, keys, 1)
    }

    /// [`LinearTransform::apply`] with diagonals at the scale of the top `primes` primes, rescaled
    /// by all of them: `primes` levels consumed, scale unchanged.
    pub fn apply_rescaling(
        &self,
        eval: &Evaluator,
        x: &Ct,
        keys: &EvalKeys,
        primes: usize,
    ) -> EvalResult<Ct> {
        let level = x.level();
        if primes == 0 || level < primes {
            return Err(EvalError::NoLevelLeft);
        }
        let diags = self.encoded(eval, level, primes)?;
        let baby: Vec<usize> = self.baby_steps().into_iter().collect();
        let steps: Vec<i64> = baby.iter().map(|&i| i as i64).collect();
        let rotated = eval.rotate_hoisted(x, &steps, keys)?;
        let by_step: HashMap<usize, &Ct> = baby.iter().copied().zip(rotated.iter()).collect();
        // Giant-step groups are independent until the final sum: evaluate them in parallel.
        let partials = diags
            .par_iter()
            .map(|(j, group)| -> EvalResult<Option<Ct>> {
                // Σ_i pdiag ⊙ rot_i(x), accumulated in place with the SIMD multiply-accumulate.
                let mut inner: Option<Ct> = None;
                for (i, pt) in group {
                    let xi = by_step
                        .get(i)
                        .ok_or(EvalError::Internal("missing baby step"))?;
                    let acc = match inner.as_mut() {
                        Some(acc) => acc,
                        None => inner.insert(Ct {
                            c0: Poly::<Ntt>::zero(eval.ctx(), xi.c0.basis())?,
                            c1: Poly::<Ntt>::zero(eval.ctx(), xi.c1.basis())?,
                            scale: xi.scale * pt.scale,
                            noise_var: 0.0,
                        }),
                    };
                    acc.c0.mul_acc(eval.ctx(), &xi.c0, &pt.poly)?;
                    acc.c1.mul_acc(eval.ctx(), &xi.c1, &pt.poly)?;
                    acc.noise_var += xi.noise_var * pt.sq_norm;
                }
                match inner {
                    None => Ok(None),
                    Some(inner) if *j == 0 => Ok(Some(inner)),
                    Some(inner) => Ok(Some(eval.rotate(&inner, (j * self.n1) as i64, keys)?)),
                }
            })
            .collect::<EvalResult<Vec<_>>>()?;
        let mut total: Option<Ct> = None;
        for shifted in partials.into_iter().flatten() {
            match total.as_mut() {
                None => total = Some(shifted),
                Some(acc) => eval.add_assign(acc, &shifted)?,
            }
        }
        let mut y = total.ok_or(EvalError::Internal("transform without non-zero diagonals"))?;
        for _ in 0..primes {
            y = eval.rescale(&y)?;
        }
        for s in self.fold_steps() {
            let r = eval.rotate(&y, s as i64, keys)?;
            eval.add_assign(&mut y, &r)?;
        }
        Ok(y)
    }
}
