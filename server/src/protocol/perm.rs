//! HePerm: every inference hides the order and the signs of each hidden layer's neurons.
//!
//! Hidden layer i's output position t goes to a fresh random position π_i(t) and is multiplied by
//! a fresh random sign ρ_i(t); the padding positions hold dummy neurons (copies of random neurons
//! times random factors in [1/2, 1]), so the client can tell neither which neuron is which nor
//! which values are padding. π and ρ are drawn when the inference starts, before any input.
//!
//! A layer whose output fits one ciphertext has π, ρ and the dummies folded into its matrix (and
//! the previous layer's π into its columns). A layer spread over several ciphertexts is evaluated
//! unpermuted and then permuted by the three stages of a Clos network ([`clos`]).

pub(super) mod clos;

use client_core::rand_core::Rng;
use client_core::sampling::Csprng;

use super::config::ProtocolConfig;
use super::ProtocolError;
use crate::eval::{BlockTransform, Ct, EvalKeys, Evaluator, LinearTransform, Matrix};
use crate::model::{CompiledModel, LayerPlan};

/// This inference's π_i and ρ_i for every hidden layer.
pub(super) struct Permutations {
    /// π_i over the layer's positions: a period, or all positions of its ciphertexts.
    perms: Vec<Vec<usize>>,
    /// ρ_i ∈ {±1} over the same positions: the sign of the ReLU multiplier, folded into the
    /// layer's rows so the server sends y' = ρ∘y and the client sees sign(y').
    signs: Vec<Vec<f64>>,
    /// |r_i| over the same positions, uniform in [1, 2^spread]: under the sign-magnitude round
    /// the ReLU multiplier's magnitude is folded into the layer's rows too, and 1/(2|r_i|)
    /// into the next layer's columns. Empty under the refresh round (HeReLU draws r there).
    magnitudes: Vec<Vec<f64>>,
}

impl Permutations {
    /// Draws π_i for every hidden layer, then ρ_i for every hidden layer, then under the
    /// sign-magnitude round (`spread_bits` given) |r_i| for every hidden layer.
    pub(super) fn draw(model: &CompiledModel, rng: &mut Csprng, spread_bits: Option<u32>) -> Self {
        let hidden: Vec<usize> = model
            .shapes()
            .iter()
            .zip(&model.model().layers)
            .zip(model.ciphertexts_per_layer())
            .filter(|((_, l), _)| l.relu)
            .map(|((s, _), cts)| {
                if cts > 1 {
                    cts * s.out_period
                } else {
                    s.out_period
                }
            })
            .collect();
        let perms = hidden.iter().map(|&n| random_permutation(rng, n)).collect();
        let signs = hidden
            .iter()
            .map(|&n| (0..n).map(|_| random_sign(rng)).collect())
            .collect();
        let magnitudes = match spread_bits {
            Some(bits) => {
                let spread = 2f64.powi(bits as i32);
                hidden
                    .iter()
                    .map(|&n| {
                        (0..n)
                            .map(|_| 1.0 + super::uniform(rng) * (spread - 1.0))
                            .collect()
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        Self {
            perms,
            signs,
            magnitudes,
        }
    }

    /// The factor folded into hidden layer `layer`'s row at position `t`: ρ, times |r| under
    /// the sign-magnitude round.
    fn row_factor(&self, layer: usize, t: usize) -> f64 {
        let rho = self.signs[layer][t];
        match self.magnitudes.get(layer) {
            Some(r) => rho * r[t],
            None => rho,
        }
    }

    /// Where the previous layer's neuron `k` sits in layer `i`'s input, with its factors:
    /// in order for the first layer; at π_{i−1}(k) times ½ under the refresh round
    /// (ReLU = ½·z'∘(σ' + ρ)); at π_{i−1}(k) times ρ/(2|r|) and at p + π_{i−1}(k) times
    /// 1/(2|r|) under the sign-magnitude round, since (ρv + |v|)/(2|r|) = ReLU(y) for
    /// v = ρ·y·|r|.
    fn columns(&self, i: usize, k: usize, prev_period: usize) -> ([(usize, f64); 2], usize) {
        if i == 0 {
            return ([(k, 1.0), (0, 0.0)], 1);
        }
        let t = self.perms[i - 1][k];
        match self.magnitudes.get(i - 1) {
            Some(r) => {
                let half = 0.5 / r[t];
                let rho = self.signs[i - 1][t];
                ([(t, rho * half), (prev_period + t, half)], 2)
            }
            None => ([(t, 0.5), (0, 0.0)], 1),
        }
    }

    /// π of hidden layer `layer`.
    pub(super) fn permutation(&self, layer: usize) -> Option<&[usize]> {
        self.perms.get(layer).map(Vec::as_slice)
    }

    /// ρ of hidden layer `layer` (empty for the output layer).
    pub(super) fn signs(&self, layer: usize) -> &[f64] {
        self.signs.get(layer).map_or(&[], Vec::as_slice)
    }
}

fn random_permutation(rng: &mut Csprng, n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

fn random_sign(rng: &mut Csprng) -> f64 {
    if rng.next_u32() & 1 == 0 {
        1.0
    } else {
        -1.0
    }
}

/// The factor of a dummy neuron: its value is a real neuron's times a factor uniform in
/// [1/2, 1], so it stays within the calibrated bound and looks like a neuron.
fn dummy_factor(rng: &mut Csprng) -> f64 {
    0.5 + 0.5 * super::uniform(rng)
}

/// A layer with this inference's permutation and signs folded in, and its bias over the
/// output positions (random dummies at the padding).
pub(super) enum PermutedLayer {
    Single(LinearTransform, Vec<f64>),
    Folded(BlockTransform, Vec<f64>),
    /// The unpermuted transform, then for a hidden layer the three permutation stages (the
    /// last carries ρ).
    Spread(BlockTransform, Option<Box<[BlockTransform; 3]>>, Vec<f64>),
}

impl PermutedLayer {
    /// Layer `i` of `model` with `perms` folded in; draws its dummies from `rng`. A hidden
    /// layer's output position t is multiplied by ρ_i[t].
    pub(super) fn new(
        model: &CompiledModel,
        perms: &Permutations,
        i: usize,
        slots: usize,
        rng: &mut Csprng,
    ) -> Result<Self, ProtocolError> {
        let layer = &model.model().layers[i];
        let shape = model.shapes()[i];
        let (m, n) = (layer.weights.rows, layer.weights.cols);
        // ½ of ReLU = ½(z + z·sign z) is folded into the next layer.
        let (col_pos, col_scale): (Vec<usize>, f64) = if i == 0 {
            ((0..n).collect(), 1.0)
        } else {
            (perms.perms[i - 1][..n].to_vec(), 0.5)
        };
        let plan = model.plan(i);
        if let LayerPlan::Spread { outputs, .. } = plan {
            if !layer.relu {
                // The output layer: class order, no dummies.
                let transform = model.spread_transform(i, &col_pos, col_scale, &[], slots)?;
                let mut bias = layer.bias.clone();
                bias.resize(outputs * slots, 0.0);
                return Ok(Self::Spread(transform, None, bias));
            }
            // Every source is drawn before any factor.
            let sources =
                model.spread_dummy_sources(i, slots, |n| (rng.next_u64() % n as u64) as usize);
            let dummies: Vec<(usize, f64)> = sources
                .into_iter()
                .map(|j| (j, dummy_factor(rng)))
                .collect();
            let transform = model.spread_transform(i, &col_pos, col_scale, &dummies, slots)?;
            let pi = &perms.perms[i];
            let rho = &perms.signs[i];
            let width = clos::grid_width(slots);
            let [s1, s2, s3] = clos::decompose(pi, width)?;
            let stages = [
                clos::stage_transform(0, &s1, |_| 1.0, slots, width)?,
                clos::stage_transform(1, &s2, |_| 1.0, slots, width)?,
                clos::stage_transform(2, &s3, |d| rho[d], slots, width)?,
            ];
            let mut bias = vec![0.0; outputs * slots];
            let sources = (0..m).map(|g| (g, 1.0)).chain(dummies.iter().copied());
            for (g, (j, f)) in sources.enumerate() {
                bias[pi[g]] = layer.bias[j] * f * rho[pi[g]];
            }
            return Ok(Self::Spread(transform, Some(Box::new(stages)), bias));
        }
        let cols = match plan {
            LayerPlan::Folded { inputs } => inputs * slots,
            _ => shape.in_period,
        };
        let row_pos: Vec<usize> = if layer.relu {
            perms.perms[i][..m].to_vec()
        } else {
            (0..m).collect()
        };
        // (position, source row, factor): the real rows, then at every padding position of a
        // hidden layer a dummy copying a random real row times a random factor, so that the
        // client cannot tell dummies from neurons by their values.
        let mut rows: Vec<(usize, usize, f64)> = row_pos
            .iter()
            .enumerate()
            .map(|(j, &r)| (r, j, 1.0))
            .collect();
        if layer.relu {
            let mut taken = vec![false; shape.rows];
            for &r in &row_pos {
                taken[r] = true;
            }
            for (r, _) in taken.iter().enumerate().filter(|(_, &t)| !t) {
                let j = (rng.next_u64() % m as u64) as usize;
                rows.push((r, j, dummy_factor(rng)));
            }
        }
        let row_factor = |r: usize| {
            if layer.relu {
                perms.row_factor(i, r)
            } else {
                1.0
            }
        };
        let prev_period = i.checked_sub(1).map_or(0, |p| model.shapes()[p].out_period);
        let placements: Vec<([(usize, f64); 2], usize)> =
            (0..n).map(|k| perms.columns(i, k, prev_period)).collect();
        let mut data = vec![0.0; shape.rows * cols];
        let mut bias = vec![0.0; shape.rows];
        for &(r, j, f) in &rows {
            let scale = row_factor(r) * f;
            for (k, (places, used)) in placements.iter().enumerate() {
                for &(c, factor) in &places[..*used] {
                    data[r * cols + c] = layer.weights.get(j, k) * scale * factor;
                }
            }
            bias[r] = layer.bias[j] * scale;
        }
        let matrix = Matrix {
            rows: shape.rows,
            cols,
            data,
        };
        Ok(match plan {
            LayerPlan::Folded { inputs } => {
                Self::Folded(BlockTransform::folded(&matrix, slots, inputs)?, bias)
            }
            _ => Self::Single(model.transform(i, &matrix, slots)?, bias),
        })
    }

    /// Encodes the layer's plaintexts for an input at `level`; the first layer's input is the
    /// client's (laid out for the transform), later ones are plain periodic under the refresh
    /// round and the client's under the sign-magnitude round.
    pub(super) fn prepare(
        &self,
        eval: &Evaluator,
        first: bool,
        level: usize,
        cfg: &ProtocolConfig,
    ) -> Result<(), ProtocolError> {
        let primes = cfg.rescale_primes;
        if cfg.sign_magnitude_round() {
            let Self::Single(lt, _) = self else {
                return Err(ProtocolError::Model(
                    "the sign-magnitude round runs single-ciphertext layers only".into(),
                ));
            };
            lt.prepare_unrescaled(eval, level, cfg.weight_bits)?;
            return Ok(());
        }
        match self {
            Self::Single(lt, _) if first => lt.prepare(eval, level, primes)?,
            Self::Single(lt, _) => lt.prepare_from_periodic(eval, level, primes)?,
            Self::Folded(bt, _) => bt.prepare(eval, level, primes)?,
            Self::Spread(bt, stages, _) => {
                bt.prepare(eval, level, primes)?;
                for (k, stage) in stages.iter().flat_map(|s| s.iter()).enumerate() {
                    stage.prepare(eval, level - primes - k, 1)?;
                }
            }
        }
        Ok(())
    }

    /// W'·x + b'.
    pub(super) fn apply(
        &self,
        eval: &Evaluator,
        keys: &EvalKeys,
        first: bool,
        xs: &[Ct],
        cfg: &ProtocolConfig,
    ) -> Result<Vec<Ct>, ProtocolError> {
        let primes = cfg.rescale_primes;
        fn single(xs: &[Ct]) -> Result<&Ct, ProtocolError> {
            match xs {
                [x] => Ok(x),
                _ => Err(ProtocolError::Violation("expected one ciphertext")),
            }
        }
        let (ys, bias, period) = match self {
            Self::Single(lt, bias) => {
                let x = single(xs)?;
                let y = if cfg.sign_magnitude_round() {
                    lt.apply_unrescaled(eval, x, keys, cfg.weight_bits)?
                } else if first {
                    lt.apply_rescaling(eval, x, keys, primes)?
                } else {
                    lt.apply_from_periodic(eval, x, keys, primes)?
                };
                (vec![y], bias, lt.output_period())
            }
            Self::Folded(bt, bias) => (bt.apply(eval, xs, keys, primes)?, bias, bt.output_period()),
            Self::Spread(bt, stages, bias) => {
                let mut ys = bt.apply(eval, xs, keys, primes)?;
                for stage in stages.iter().flat_map(|s| s.iter()) {
                    ys = stage.apply(eval, &ys, keys, 1)?;
                }
                (ys, bias, bt.output_period())
            }
        };
        ys.into_iter()
            .enumerate()
            .map(|(c, y)| {
                let one_period: Vec<f64> = (0..period)
                    .map(|t| bias.get(c * period + t).copied().unwrap_or(0.0))
                    .collect();
                let b = eval.encode_periodic(&one_period, y.scale(), y.level())?;
                Ok(eval.add_plain(&y, &b)?)
            })
            .collect()
    }
}
