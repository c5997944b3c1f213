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
//! * **Replicated** (square, input from the client): with r = S/d replicas of the input in the S
//!   slots and m = d/r, block b of the input holds x rotated left by b·m. Diagonal k = b·m + i'
//!   is handled by block b:  y = BlockSum(Σ_{i'<m} rot_{i'}(E_{i'} ⊙ X)) with
//!   E_{i'}[b·d + u] = diag_{b·m+i'}[(u − i') mod d], and BlockSum = log2(r) rotate-and-add steps
//!   by S/2, …, d. Because the final sum adds every slot congruent mod d, rotations may carry
//!   values across block boundaries freely. r× fewer products and baby/giant steps; the output has
//!   period d (all replicas equal).
//!
//! Baby-step/giant-step: with k = n1·j + i, y = Σ_j rot_{n1·j}(Σ_i pdiag_{j,i} ⊙ rot_i(x)), where
//! pdiag_{j,i} is diag_{n1·j+i} rotated right by n1·j. The rotations rot_i(x) share one
//! decomposition (hoisting). Only non-zero diagonals are encoded; encoded diagonals are cached in
//! NTT form per level, at scale q_level so that the final rescale restores the input scale
//! exactly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::{Ct, EvalError, EvalKeys, EvalResult, Evaluator, PlainExt, PlainNtt};

/// A dense matrix in row-major order: the evaluator's input type for linear transforms
/// ([`LinearTransform`], [`super::BlockTransform::folded`]), which read its entries to build
/// their diagonals. It lives here rather than with the model so that the evaluator depends on
/// nothing above it; the model's layers hold their weights in it.
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
    /// Square or extended diagonals shared out over replicas of a pre-shifted input.
    Replicated {
        /// Number of replicas r (at most slots / period).
        blocks: usize,
        /// Block b of the input is rotated left by b·shift.
        shift: usize,
        /// Output period (the period, or m' for a wide matrix).
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
    /// Hoisted rotations of the re-layout from a plain periodic input (replicated layouts).
    pub relayout_rotations: usize,
    /// Hoisted baby-step rotations (included in `rotations`).
    pub baby_rotations: usize,
    /// Bytes of cached NTT-form plaintexts at the top level.
    pub cached_bytes_top_level: usize,
}

/// Encoded diagonals at one level: (giant step j, [(baby step i, plaintext)]).
type EncodedDiagonals = Arc<Vec<(usize, Vec<(usize, PlainNtt)>)>>;

/// The scale a transform's diagonals are encoded at, and so what follows the products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum DiagScale {
    /// The product of the top `n` primes, rescaled away after the sum: `n` levels consumed,
    /// the input's scale kept.
    Primes(usize),
    /// 2^bits, not rescaled: no level consumed, the output at the input's scale times 2^bits
    /// (the sign-magnitude round, whose every layer reads a fresh top-level input).
    PowerOfTwo(u32),
}

/// A compiled linear transform.
pub struct LinearTransform {
    rows: usize,
    cols: usize,
    period: usize,
    layout: Layout,
    n1: usize,
    /// Giant steps summed Horner-style with the one rotation n1 (see
    /// [`LinearTransform::new_replicated_compact`]).
    horner: bool,
    /// Pre-rotated non-zero diagonals grouped by giant step: j → [(i, values over one period)].
    groups: BTreeMap<usize, Vec<(usize, Vec<f64>)>>,
    cache: Mutex<HashMap<(usize, DiagScale), EncodedDiagonals>>,
    /// Block masks of the re-layout, per level.
    masks: Mutex<HashMap<usize, Arc<Vec<PlainExt>>>>,
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

fn check_shape(w: &Matrix, period: usize, slots: usize) -> EvalResult<()> {
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
    Ok(())
}

/// Diagonal k over one period d: entry i is W[row_of(i)][(i + k) mod d] (zero outside W).
fn diagonal(w: &Matrix, d: usize, k: usize, row_of: impl Fn(usize) -> usize) -> Vec<f64> {
    (0..d)
        .map(|i| {
            let (r, c) = (row_of(i), (i + k) % d);
            if r < w.rows && c < w.cols {
                w.get(r, c)
            } else {
                0.0
            }
        })
        .collect()
}

fn prev_pow2(x: usize) -> usize {
    if x == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - x.leading_zeros())
    }
}

/// About √count baby steps, a power of two, at most `max`.
fn baby_step_count(count: usize, max: usize) -> usize {
    next_pow2(((count as f64).sqrt().ceil()) as usize).min(max)
}

impl LinearTransform {
    /// Compiles `w` for inputs of period `period` (≥ cols, power of two) in `slots` slots.
    /// Wide matrices (rows < cols) use extended diagonals.
    pub fn new(w: &Matrix, period: usize, slots: usize) -> EvalResult<Self> {
        check_shape(w, period, slots)?;
        let d = period;
        let out_period = next_pow2(w.rows);
        let layout = if out_period < d && w.rows < w.cols {
            Layout::Wide { out_period }
        } else {
            Layout::Square
        };
        let count = match layout {
            Layout::Wide { out_period } => out_period,
            _ => d,
        };
        let row_of = |i: usize| match layout {
            Layout::Wide { out_period } => i % out_period,
            _ => i,
        };
        let diags: BTreeMap<usize, Vec<f64>> = (0..count)
            .filter_map(|k| {
                let diag = diagonal(w, d, k, row_of);
                diag.iter().any(|&v| v != 0.0).then_some((k, diag))
            })
            .collect();
        // Baby-step count: about √(number of possible diagonals), a power of two. It depends on the
        // layout only, not on which diagonals are non-zero, so every matrix of one shape (e.g.
        // each per-inference permutation of a layer) needs the same Galois keys.
        let n1 = baby_step_count(count, d);
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
            horner: false,
            groups,
            cache: Mutex::new(HashMap::new()),
            masks: Mutex::new(HashMap::new()),
        })
    }

    /// Compiles a transform for an input laid out as r replicas, block b rotated left by b·m
    /// (see [`LinearTransform::input_shift`]); r·m is the number of (square or extended)
    /// diagonals. Falls back to [`LinearTransform::new`] when there is no room for two replicas.
    /// The shifted input comes from the client, or from [`LinearTransform::apply_from_periodic`].
    pub fn new_replicated(w: &Matrix, period: usize, slots: usize) -> EvalResult<Self> {
        Self::new_replicated_with(w, period, slots, usize::MAX)
    }

    /// [`LinearTransform::new_replicated`] with at most `max_blocks` replicas.
    pub fn new_replicated_with(
        w: &Matrix,
        period: usize,
        slots: usize,
        max_blocks: usize,
    ) -> EvalResult<Self> {
        Self::build_replicated(w, period, slots, max_blocks, false)
    }

    /// [`LinearTransform::new_replicated_with`] for a client with few Galois keys: about half
    /// the baby steps, and the giant steps summed Horner-style,
    /// G_0 + rot_n1(G_1 + rot_n1(G_2 + …)), so they all use the one key of n1. As many
    /// rotations, fewer of them hoisted and none in parallel: a little more server time for
    /// a key set a microcontroller can upload.
    pub fn new_replicated_compact(
        w: &Matrix,
        period: usize,
        slots: usize,
        max_blocks: usize,
    ) -> EvalResult<Self> {
        Self::build_replicated(w, period, slots, max_blocks, true)
    }

    fn build_replicated(
        w: &Matrix,
        period: usize,
        slots: usize,
        max_blocks: usize,
        compact: bool,
    ) -> EvalResult<Self> {
        check_shape(w, period, slots)?;
        let d = period;
        let out_period = next_pow2(w.rows);
        let wide = out_period < d && w.rows < w.cols;
        // Square diagonals, or extended ones for a wide matrix (rows taken mod m').
        let (count, row_mod) = if wide {
            (out_period, out_period)
        } else {
            (d, d)
        };
        let blocks = (slots / d).min(count).min(prev_pow2(max_blocks));
        if blocks < 2 {
            return Self::new(w, period, slots);
        }
        let m = count / blocks;
        let diags: Vec<Vec<f64>> = (0..count)
            .map(|k| diagonal(w, d, k, |i| i % row_mod))
            .collect();
        let n1 = match compact {
            true => (baby_step_count(m, m) / 2).max(1),
            false => baby_step_count(m, m),
        };
        let mut groups: BTreeMap<usize, Vec<(usize, Vec<f64>)>> = BTreeMap::new();
        for i in 0..m {
            // E_i[b·d + u] = diag_{b·m+i}[(u − i) mod d], then rotated left by the baby step j
            // so that rot_{g·n1}(F ⊙ rot_j(X)) = rot_i(E_i ⊙ X).
            let zero = (0..blocks).all(|b| diags[b * m + i].iter().all(|&v| v == 0.0));
            if zero {
                continue;
            }
            let (g, j) = (i / n1, i % n1);
            let e = |t: usize| {
                let (b, u) = (t / d, t % d);
                diags[b * m + i][(u + d - i) % d]
            };
            let span = blocks * d;
            let f: Vec<f64> = (0..slots).map(|t| e((t + j) % span)).collect();
            groups.entry(g).or_default().push((j, f));
        }
        Ok(Self {
            rows: w.rows,
            cols: w.cols,
            period: d,
            layout: Layout::Replicated {
                blocks,
                shift: m,
                out_period: if wide { out_period } else { d },
            },
            n1,
            horner: compact,
            groups,
            cache: Mutex::new(HashMap::new()),
            masks: Mutex::new(HashMap::new()),
        })
    }

    /// For a replicated transform, the left rotation of input block b is b times this; 0 for an
    /// ordinary periodic input.
    pub fn input_shift(&self) -> usize {
        match self.layout {
            Layout::Replicated { shift, .. } => shift,
            _ => 0,
        }
    }

    /// Number of distinct input copies: copy b sits at slots [b·period, (b+1)·period) and the
    /// pattern of copies repeats every copies·period slots. 1 for an ordinary periodic input.
    pub fn input_copies(&self) -> usize {
        match self.layout {
            Layout::Replicated { blocks, .. } => blocks,
            _ => 1,
        }
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
            Layout::Wide { out_period } | Layout::Replicated { out_period, .. } => out_period,
        }
    }

    fn baby_steps(&self) -> BTreeSet<usize> {
        self.groups
            .values()
            .flat_map(|g| g.iter().map(|(i, _)| *i))
            .collect()
    }

    /// Rotate-and-add steps after the rescale: halving from `from / 2` down to `to`.
    fn fold_steps(&self) -> Vec<usize> {
        let (from, to) = match self.layout {
            Layout::Square => return Vec::new(),
            Layout::Wide { out_period } => (self.period, out_period),
            Layout::Replicated {
                blocks, out_period, ..
            } => (blocks * self.period, out_period),
        };
        let mut steps = Vec::new();
        let mut s = from / 2;
        while s >= to {
            steps.push(s);
            s /= 2;
        }
        steps
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
        if self.horner {
            if self.groups.keys().any(|&j| j != 0) {
                steps.insert(self.n1 as i64);
            }
        } else {
            steps.extend(
                self.groups
                    .keys()
                    .filter(|&&j| j != 0)
                    .map(|&j| (j * self.n1) as i64),
            );
        }
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
            relayout_rotations: self.relayout_steps().len(),
            baby_rotations: baby,
            cached_bytes_top_level: diags * n * top_limbs * 8,
        }
    }

    /// A relative estimate of the online cost of [`LinearTransform::apply_from_periodic`] (or of
    /// [`LinearTransform::apply_rescaling`] without `relayout`), in units of one key-switched
    /// rotation: a hoisted baby step counts half, a re-layout rotation (hoisted and summed before
    /// a single ModDown) a quarter, a plaintext product 1/30 (measured ratios at N = 2^14).
    pub fn online_cost(&self, relayout: bool) -> f64 {
        let c = self.cost(1, 1);
        let relayout = if relayout { c.relayout_rotations } else { 0 };
        let single = c.rotations - c.baby_rotations;
        0.5 * c.baby_rotations as f64
            + 0.25 * relayout as f64
            + single as f64
            + c.plaintext_multiplies as f64 / 30.0
    }

    /// The encoded diagonals at `level` and `scale` (cached).
    fn encoded(
        &self,
        eval: &Evaluator,
        level: usize,
        diag_scale: DiagScale,
    ) -> EvalResult<EncodedDiagonals> {
        let mut cache = self.cache.lock().map_err(|_| EvalError::Poisoned)?;
        if let Some(e) = cache.get(&(level, diag_scale)) {
            return Ok(e.clone());
        }
        let scale = match diag_scale {
            DiagScale::Primes(primes) => rescale_divisor(eval, level, primes),
            DiagScale::PowerOfTwo(bits) => 2f64.powi(bits as i32),
        };
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
        cache.insert((level, diag_scale), out.clone());
        Ok(out)
    }

    /// Rotation steps of the re-layout from a plain periodic input: b·m for every block b > 0.
    fn relayout_steps(&self) -> Vec<usize> {
        match self.layout {
            Layout::Replicated { blocks, shift, .. } => (1..blocks).map(|b| b * shift).collect(),
            _ => Vec::new(),
        }
    }

    /// Every rotation step [`LinearTransform::apply_from_periodic`] needs.
    pub fn rotation_steps_from_periodic(&self) -> Vec<i64> {
        let mut steps: BTreeSet<i64> = self.rotation_steps().into_iter().collect();
        steps.extend(self.relayout_steps().into_iter().map(|s| s as i64));
        steps.into_iter().collect()
    }

    /// Levels [`LinearTransform::apply_from_periodic`] consumes on top of the diagonals' primes.
    pub fn relayout_levels(&self) -> usize {
        usize::from(matches!(self.layout, Layout::Replicated { .. }))
    }

    /// The 0/1 indicators of each block (at the scale of the prime that the re-layout rescales
    /// away, over Q_level and Q_level·P), cached per level. They depend on the shape only.
    fn block_masks(&self, eval: &Evaluator, level: usize) -> EvalResult<Arc<Vec<PlainExt>>> {
        let Layout::Replicated { blocks, .. } = self.layout else {
            return Err(EvalError::Internal("no re-layout for this transform"));
        };
        let mut cache = self.masks.lock().map_err(|_| EvalError::Poisoned)?;
        if let Some(m) = cache.get(&level) {
            return Ok(m.clone());
        }
        let d = self.period;
        let span = blocks * d;
        let scale = rescale_divisor(eval, level, 1);
        let masks = (0..blocks)
            .into_par_iter()
            .map(|b| {
                let values: Vec<f64> = (0..span)
                    .map(|t| if t / d == b { 1.0 } else { 0.0 })
                    .collect();
                eval.encode_periodic_ext(&values, scale, level)
            })
            .collect::<EvalResult<Vec<_>>>()?;
        let masks = Arc::new(masks);
        cache.insert(level, masks.clone());
        Ok(masks)
    }

    /// Turns a plain periodic input into the shifted replicas a replicated transform reads:
    /// X = Σ_b mask_b ⊙ rot_{b·m}(x), one prime consumed. The rotations share one decomposition
    /// and one ModDown ([`Evaluator::rotate_mul_sum`]).
    fn relayout(&self, eval: &Evaluator, x: &Ct, keys: &EvalKeys) -> EvalResult<Ct> {
        let level = x.level();
        if level < 1 {
            return Err(EvalError::NoLevelLeft);
        }
        let masks = self.block_masks(eval, level)?;
        let steps = std::iter::once(0).chain(self.relayout_steps());
        let terms: Vec<(i64, &PlainExt)> = steps.map(|s| s as i64).zip(masks.iter()).collect();
        let acc = eval.rotate_mul_sum(x, &terms, keys)?;
        eval.rescale(&acc)
    }

    /// Encodes what [`LinearTransform::apply_from_periodic`] needs for inputs at `level`.
    pub fn prepare_from_periodic(
        &self,
        eval: &Evaluator,
        level: usize,
        primes: usize,
    ) -> EvalResult<()> {
        let extra = self.relayout_levels();
        if extra > 0 {
            self.block_masks(eval, level)?;
        }
        let inner = level.checked_sub(extra).ok_or(EvalError::NoLevelLeft)?;
        self.prepare(eval, inner, primes)
    }

    /// y = W·x for a plain periodic `x` (the output of an earlier layer): re-lays it out first
    /// if the transform is replicated (one more level consumed, see
    /// [`LinearTransform::relayout_levels`]).
    pub fn apply_from_periodic(
        &self,
        eval: &Evaluator,
        x: &Ct,
        keys: &EvalKeys,
        primes: usize,
    ) -> EvalResult<Ct> {
        if self.relayout_levels() == 0 {
            return self.apply_rescaling(eval, x, keys, primes);
        }
        let shifted = self.relayout(eval, x, keys)?;
        self.apply_rescaling(eval, &shifted, keys, primes)
    }

    /// Encodes the diagonals for inputs at `level` ahead of [`LinearTransform::apply_rescaling`].
    pub fn prepare(&self, eval: &Evaluator, level: usize, primes: usize) -> EvalResult<()> {
        self.encoded(eval, level, DiagScale::Primes(primes))
            .map(|_| ())
    }

    /// Encodes the diagonals for inputs at `level` ahead of
    /// [`LinearTransform::apply_unrescaled`].
    pub fn prepare_unrescaled(
        &self,
        eval: &Evaluator,
        level: usize,
        weight_bits: u32,
    ) -> EvalResult<()> {
        self.encoded(eval, level, DiagScale::PowerOfTwo(weight_bits))
            .map(|_| ())
    }

    /// y = W·x with the diagonals at scale 2^`weight_bits` and no rescale: the output stays at
    /// `x`'s level, at `x`'s scale times 2^`weight_bits`.
    pub fn apply_unrescaled(
        &self,
        eval: &Evaluator,
        x: &Ct,
        keys: &EvalKeys,
        weight_bits: u32,
    ) -> EvalResult<Ct> {
        self.apply_scaled(eval, x, keys, DiagScale::PowerOfTwo(weight_bits))
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
        if primes == 0 || x.level() < primes {
            return Err(EvalError::NoLevelLeft);
        }
        self.apply_scaled(eval, x, keys, DiagScale::Primes(primes))
    }

    fn apply_scaled(
        &self,
        eval: &Evaluator,
        x: &Ct,
        keys: &EvalKeys,
        scale: DiagScale,
    ) -> EvalResult<Ct> {
        let level = x.level();
        let diags = self.encoded(eval, level, scale)?;
        let baby: Vec<usize> = self.baby_steps().into_iter().collect();
        let steps: Vec<i64> = baby.iter().map(|&i| i as i64).collect();
        let rotated = eval.rotate_hoisted(x, &steps, keys)?;
        let by_step: HashMap<usize, &Ct> = baby.iter().copied().zip(rotated.iter()).collect();
        // Giant-step groups are independent until the final sum: evaluate them in parallel.
        let partials = diags
            .par_iter()
            .map(|(j, group)| -> EvalResult<(usize, Option<Ct>)> {
                // Σ_i pdiag ⊙ rot_i(x), accumulated in place with the SIMD multiply-accumulate.
                let mut inner: Option<Ct> = None;
                for (i, pt) in group {
                    let xi = by_step
                        .get(i)
                        .ok_or(EvalError::Internal("missing baby step"))?;
                    eval.mul_plain_accumulate(&mut inner, xi, pt)?;
                }
                match inner {
                    None => Ok((*j, None)),
                    Some(inner) if *j == 0 || self.horner => Ok((*j, Some(inner))),
                    Some(inner) => Ok((*j, Some(eval.rotate(&inner, (j * self.n1) as i64, keys)?))),
                }
            })
            .collect::<EvalResult<Vec<_>>>()?;
        let mut total: Option<Ct> = None;
        if self.horner {
            // From the last giant step down: total ← rot_n1(total) + G_j.
            let last = partials.iter().map(|(j, _)| *j).max().unwrap_or(0);
            let mut by_j: BTreeMap<usize, Ct> = partials
                .into_iter()
                .filter_map(|(j, g)| g.map(|g| (j, g)))
                .collect();
            for j in (0..=last).rev() {
                if let Some(acc) = total.take() {
                    total = Some(eval.rotate(&acc, self.n1 as i64, keys)?);
                }
                if let Some(g) = by_j.remove(&j) {
                    match total.as_mut() {
                        None => total = Some(g),
                        Some(acc) => eval.add_assign(acc, &g)?,
                    }
                }
            }
        } else {
            for (_, shifted) in partials {
                let Some(shifted) = shifted else { continue };
                match total.as_mut() {
                    None => total = Some(shifted),
                    Some(acc) => eval.add_assign(acc, &shifted)?,
                }
            }
        }
        let mut y = total.ok_or(EvalError::Internal("transform without non-zero diagonals"))?;
        if let DiagScale::Primes(primes) = scale {
            for _ in 0..primes {
                y = eval.rescale(&y)?;
            }
        }
        for s in self.fold_steps() {
            let r = eval.rotate(&y, s as i64, keys)?;
            eval.add_assign(&mut y, &r)?;
        }
        Ok(y)
    }
}
