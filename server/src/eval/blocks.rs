//! y = W·x for vectors spread over several ciphertexts.
//!
//! Global index g of a vector sits in ciphertext g / S at slot g mod S (S = slot count). An input
//! may instead be *periodic* with period d < S in one ciphertext (slot t holds x[t mod d]). The
//! matrix is cut into blocks, one per (output ciphertext o, input ciphertext j); each block is a
//! set of diagonals: diag_k[t] = W[row of slot t of o][column read from slot t + k of j]. Two
//! kinds of output:
//!
//! * **Full** (`Full`): output ciphertext o holds rows [o·S, (o+1)·S); diagonals are square
//!   (k = column slot − row slot mod the input period). Sparse matrices (a convolution on an
//!   im2col input, a permutation stage) keep only their non-zero diagonals.
//! * **Folded** (`Folded { out_period }`): one output ciphertext with m ≤ m' = out_period rows,
//!   m' < S; *extended* diagonals ext_k[t] = W[t mod m'][column at slot t + k], k < m', summed
//!   over all input ciphertexts, then log2(S/m') rotate-and-add steps fold every slot t onto
//!   y[t mod m'] (see [`super::LinearTransform`]'s wide layout).
//!
//! Baby-step/giant-step with a stride s: diagonal k = s·(n1·j + i). Baby-step rotations of each
//! input ciphertext are hoisted (one decomposition) and shared by every output ciphertext; each
//! (output, giant step) sum collects the products of all input ciphertexts before its single
//! giant rotation, so a giant rotation is paid per output ciphertext, not per block.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::linear::rescale_divisor;
use super::{Ct, EvalError, EvalKeys, EvalResult, Evaluator, Matrix, PlainNtt};

/// How the rows of a block transform sit in its output ciphertexts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockOutput {
    /// Row g in ciphertext g / S, slot g mod S.
    Full {
        /// Number of output ciphertexts.
        cts: usize,
    },
    /// One ciphertext, rows repeated with period `out_period` after folding.
    Folded {
        /// Output period m' (a power of two below the slot count).
        out_period: usize,
    },
}

/// Baby-step/giant-step split of the diagonal index: k = stride·(n1·j + i).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bsgs {
    /// Every non-zero diagonal index is a multiple of this.
    pub stride: usize,
    /// Baby steps per giant step.
    pub n1: usize,
}

impl Bsgs {
    /// About √count baby steps (a power of two) for `count` possible diagonals k = stride·m,
    /// m < count.
    pub fn balanced(stride: usize, count: usize) -> Self {
        let n1 = ((count.max(1) as f64).sqrt().ceil() as usize)
            .next_power_of_two()
            .min(count.max(1).next_power_of_two());
        Self { stride, n1 }
    }
}

/// Diagonals of one output ciphertext: giant step j → [(input ciphertext, baby step i, values)].
type Groups = BTreeMap<usize, Vec<(usize, usize, Vec<f64>)>>;
/// One encoded giant-step group: (giant step, [(input ciphertext, baby step, plaintext)]).
type EncodedGroup = (usize, Vec<(usize, usize, PlainNtt)>);
/// Encoded form of [`Groups`] at one level, per output ciphertext.
type Encoded = Arc<Vec<Vec<EncodedGroup>>>;

/// A compiled multi-ciphertext linear transform.
pub struct BlockTransform {
    slots: usize,
    inputs: usize,
    in_period: usize,
    output: BlockOutput,
    bsgs: Bsgs,
    /// Per output ciphertext.
    groups: Vec<Groups>,
    cache: Mutex<HashMap<(usize, usize), Encoded>>,
}

/// Checks that `d` is a power of two dividing `slots`.
fn check_period(d: usize, slots: usize) -> EvalResult<()> {
    if d == 0 || !d.is_power_of_two() || d > slots || !slots.is_power_of_two() {
        return Err(EvalError::Internal(
            "periods must be powers of two up to the slot count",
        ));
    }
    Ok(())
}

impl BlockTransform {
    /// Square diagonals from the non-zero `entries` (row, column, value) of a matrix whose
    /// columns are read from `inputs` ciphertexts of period `in_period` (several ciphertexts
    /// only with `in_period` = S) and whose rows fill `out_cts` ciphertexts. Entries at the
    /// same place add up.
    pub fn from_entries(
        slots: usize,
        inputs: usize,
        in_period: usize,
        out_cts: usize,
        entries: impl IntoIterator<Item = (usize, usize, f64)>,
        bsgs: Bsgs,
    ) -> EvalResult<Self> {
        check_period(in_period, slots)?;
        if inputs == 0 || out_cts == 0 || (inputs > 1 && in_period != slots) {
            return Err(EvalError::Internal(
                "several input ciphertexts need the full period",
            ));
        }
        let mut diags: HashMap<(usize, usize, usize), Vec<f64>> = HashMap::new();
        for (row, col, value) in entries {
            let (o, t) = (row / slots, row % slots);
            let (j, c) = (col / in_period, col % in_period);
            if o >= out_cts || j >= inputs {
                return Err(EvalError::Internal("matrix entry outside the blocks"));
            }
            if value == 0.0 {
                continue;
            }
            let k = (c + in_period - t % in_period) % in_period;
            diags.entry((o, j, k)).or_insert_with(|| vec![0.0; slots])[t] += value;
        }
        Self::assemble(
            slots,
            inputs,
            in_period,
            BlockOutput::Full { cts: out_cts },
            diags,
            bsgs,
        )
    }

    /// Extended diagonals of a dense `w` (rows ≤ S/2) whose columns span `inputs` full
    /// ciphertexts; the output is folded to period next_pow2(rows).
    pub fn folded(w: &Matrix, slots: usize, inputs: usize) -> EvalResult<Self> {
        let out_period = w.rows.max(1).next_power_of_two();
        check_period(out_period, slots)?;
        if out_period >= slots || w.cols > inputs * slots || w.data.len() != w.rows * w.cols {
            return Err(EvalError::Internal(
                "matrix does not fit a folded transform",
            ));
        }
        let mut diags = HashMap::new();
        for j in 0..inputs {
            for k in 0..out_period {
                let values: Vec<f64> = (0..slots)
                    .map(|t| {
                        let (r, c) = (t % out_period, j * slots + (t + k) % slots);
                        if r < w.rows && c < w.cols {
                            w.get(r, c)
                        } else {
                            0.0
                        }
                    })
                    .collect();
                if values.iter().any(|&v| v != 0.0) {
                    diags.insert((0, j, k), values);
                }
            }
        }
        Self::assemble(
            slots,
            inputs,
            slots,
            BlockOutput::Folded { out_period },
            diags,
            Bsgs::balanced(1, out_period),
        )
    }

    fn assemble(
        slots: usize,
        inputs: usize,
        in_period: usize,
        output: BlockOutput,
        diags: HashMap<(usize, usize, usize), Vec<f64>>,
        bsgs: Bsgs,
    ) -> EvalResult<Self> {
        if bsgs.stride == 0 || bsgs.n1 == 0 {
            return Err(EvalError::Internal("empty baby-step split"));
        }
        let out_cts = match output {
            BlockOutput::Full { cts } => cts,
            BlockOutput::Folded { .. } => 1,
        };
        let mut groups: Vec<Groups> = (0..out_cts).map(|_| BTreeMap::new()).collect();
        let mut keys: Vec<_> = diags.keys().copied().collect();
        keys.sort_unstable();
        for key @ (o, j, k) in keys {
            if k % bsgs.stride != 0 {
                return Err(EvalError::Internal("diagonal off the baby-step stride"));
            }
            let m = k / bsgs.stride;
            let (g, i) = (m / bsgs.n1, m % bsgs.n1);
            let shift = bsgs.stride * bsgs.n1 * g;
            let diag = diags
                .get(&key)
                .ok_or(EvalError::Internal("diagonal vanished"))?;
            // Pre-rotate right by the giant step so that rot_giant(F ⊙ rot_baby(x)) = D ⊙ rot_k(x).
            let pre: Vec<f64> = (0..slots)
                .map(|t| diag[(t + slots - shift % slots) % slots])
                .collect();
            groups[o].entry(g).or_default().push((j, i, pre));
        }
        Ok(Self {
            slots,
            inputs,
            in_period,
            output,
            bsgs,
            groups,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Number of input ciphertexts.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Number of output ciphertexts.
    pub fn outputs(&self) -> usize {
        self.groups.len()
    }

    /// Period of the input ciphertexts.
    pub fn in_period(&self) -> usize {
        self.in_period
    }

    /// Period of the output (S for full outputs).
    pub fn output_period(&self) -> usize {
        match self.output {
            BlockOutput::Full { .. } => self.slots,
            BlockOutput::Folded { out_period } => out_period,
        }
    }

    /// Baby steps used with each input ciphertext.
    fn baby_steps(&self) -> Vec<BTreeSet<usize>> {
        let mut steps = vec![BTreeSet::new(); self.inputs];
        for groups in &self.groups {
            for group in groups.values() {
                for &(j, i, _) in group {
                    steps[j].insert(i * self.bsgs.stride);
                }
            }
        }
        steps
    }

    fn giant_steps(&self) -> BTreeSet<usize> {
        self.groups
            .iter()
            .flat_map(|g| g.keys().copied())
            .map(|g| g * self.bsgs.stride * self.bsgs.n1)
            .collect()
    }

    fn fold_steps(&self) -> Vec<usize> {
        let BlockOutput::Folded { out_period } = self.output else {
            return Vec::new();
        };
        let mut steps = Vec::new();
        let mut s = self.slots / 2;
        while s >= out_period {
            steps.push(s);
            s /= 2;
        }
        steps
    }

    /// Every rotation step the transform needs.
    pub fn rotation_steps(&self) -> Vec<i64> {
        let mut steps: BTreeSet<usize> = self.baby_steps().into_iter().flatten().collect();
        steps.extend(self.giant_steps());
        steps.extend(self.fold_steps());
        steps.remove(&0);
        steps.into_iter().map(|s| s as i64).collect()
    }

    /// Number of plaintext products per application.
    pub fn plaintext_multiplies(&self) -> usize {
        self.groups
            .iter()
            .flat_map(|g| g.values())
            .map(Vec::len)
            .sum()
    }

    fn encoded(&self, eval: &Evaluator, level: usize, primes: usize) -> EvalResult<Encoded> {
        let mut cache = self.cache.lock().map_err(|_| EvalError::Poisoned)?;
        if let Some(e) = cache.get(&(level, primes)) {
            return Ok(e.clone());
        }
        let scale = rescale_divisor(eval, level, primes);
        let out = self
            .groups
            .par_iter()
            .map(|groups| {
                groups
                    .par_iter()
                    .map(|(&g, group)| {
                        let encoded = group
                            .par_iter()
                            .map(|(j, i, values)| {
                                Ok((*j, *i, eval.encode_periodic(values, scale, level)?))
                            })
                            .collect::<EvalResult<Vec<_>>>()?;
                        Ok((g, encoded))
                    })
                    .collect::<EvalResult<Vec<_>>>()
            })
            .collect::<EvalResult<Vec<_>>>()?;
        let out = Arc::new(out);
        cache.insert((level, primes), out.clone());
        Ok(out)
    }

    /// Encodes the diagonals for inputs at `level` ahead of [`BlockTransform::apply`].
    pub fn prepare(&self, eval: &Evaluator, level: usize, primes: usize) -> EvalResult<()> {
        self.encoded(eval, level, primes).map(|_| ())
    }

    /// y = W·x: diagonals at the scale of the top `primes` primes, rescaled by all of them
    /// (`primes` levels consumed, scale unchanged).
    pub fn apply(
        &self,
        eval: &Evaluator,
        xs: &[Ct],
        keys: &EvalKeys,
        primes: usize,
    ) -> EvalResult<Vec<Ct>> {
        if xs.len() != self.inputs {
            return Err(EvalError::Internal("wrong number of input ciphertexts"));
        }
        let level = xs[0].level();
        if xs
            .iter()
            .any(|x| x.level() != level || x.scale != xs[0].scale)
        {
            return Err(EvalError::Internal("input ciphertexts at different levels"));
        }
        if primes == 0 || level < primes {
            return Err(EvalError::NoLevelLeft);
        }
        let encoded = self.encoded(eval, level, primes)?;
        let rotated: Vec<HashMap<usize, Ct>> = self
            .baby_steps()
            .into_iter()
            .zip(xs)
            .map(|(steps, x)| {
                let steps: Vec<usize> = steps.into_iter().collect();
                let list: Vec<i64> = steps.iter().map(|&s| s as i64).collect();
                let rotated = eval.rotate_hoisted(x, &list, keys)?;
                Ok(steps
                    .iter()
                    .map(|&s| s / self.bsgs.stride)
                    .zip(rotated)
                    .collect())
            })
            .collect::<EvalResult<_>>()?;
        let giant = self.bsgs.stride * self.bsgs.n1;
        let tasks: Vec<(usize, &EncodedGroup)> = encoded
            .iter()
            .enumerate()
            .flat_map(|(o, groups)| groups.iter().map(move |g| (o, g)))
            .collect();
        let partials = tasks
            .par_iter()
            .map(|(o, (g, group))| -> EvalResult<(usize, Ct)> {
                let mut inner: Option<Ct> = None;
                for (j, i, pt) in group {
                    let xi = rotated[*j]
                        .get(i)
                        .ok_or(EvalError::Internal("missing baby step"))?;
                    eval.mul_plain_accumulate(&mut inner, xi, pt)?;
                }
                let inner = inner.ok_or(EvalError::Internal("empty giant-step group"))?;
                let shifted = if *g == 0 {
                    inner
                } else {
                    eval.rotate(&inner, ((g * giant) % self.slots) as i64, keys)?
                };
                Ok((*o, shifted))
            })
            .collect::<EvalResult<Vec<_>>>()?;
        let mut totals: Vec<Option<Ct>> = (0..self.outputs()).map(|_| None).collect();
        for (o, ct) in partials {
            match totals[o].as_mut() {
                None => totals[o] = Some(ct),
                Some(acc) => eval.add_assign(acc, &ct)?,
            }
        }
        let mut out = Vec::with_capacity(totals.len());
        for total in totals {
            let mut y = match total {
                Some(y) => y,
                // A block row without entries: an encryption of zero at the right level.
                None => {
                    let x = &xs[0];
                    let mut zero = eval.sub(x, x)?;
                    zero.scale = x.scale * rescale_divisor(eval, level, primes);
                    zero
                }
            };
            for _ in 0..primes {
                y = eval.rescale(&y)?;
            }
            for s in self.fold_steps() {
                let r = eval.rotate(&y, s as i64, keys)?;
                eval.add_assign(&mut y, &r)?;
            }
            out.push(y);
        }
        Ok(out)
    }
}
