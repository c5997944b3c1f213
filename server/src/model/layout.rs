//! A model laid out in the slots: periods, padded rows, replicas per layer and how each layer's
//! input and output sit in ciphertexts, and the evaluator transforms that follow from them.
//!
//! What the layout costs under the protocol (levels per round, the client's input level, the
//! Galois keys of every permutation) depends on the protocol's configuration and on HePerm, and
//! is worked out in `crate::protocol` (`CompiledModel::round_levels`, `input_spec`,
//! `rotation_steps`).

use client_core::params::RoundKind;

use super::layers::Model;
use super::ModelError;
use crate::eval::{BlockTransform, Bsgs, LinearTransform, Matrix};

/// Where a layer's vectors sit in the slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LayerShape {
    /// Period of the input vector.
    pub(crate) in_period: usize,
    /// Period the transform works with (≥ in_period when a layer widens).
    pub(crate) lt_period: usize,
    /// Rows of the (permuted, padded) matrix.
    pub(crate) rows: usize,
    /// Period of the output vector.
    pub(crate) out_period: usize,
}

/// How a layer's input and output sit in ciphertexts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LayerPlan {
    /// One ciphertext in, one out: a [`LinearTransform`] with the permutation folded in.
    Single,
    /// Input over `inputs` full ciphertexts, output folded into one: a [`BlockTransform`] with
    /// the permutation folded into its (dense) rows and columns.
    Folded {
        /// Input ciphertexts.
        inputs: usize,
    },
    /// Output over `outputs` full ciphertexts: an unpermuted [`BlockTransform`], followed for a
    /// hidden layer by the three permutation stages of HePerm's Clos network (three more
    /// levels; the output layer keeps the class order).
    Spread {
        /// Input ciphertexts.
        inputs: usize,
        /// Output ciphertexts.
        outputs: usize,
        /// The input is the client's im2col gather for [`Model::first_conv`].
        gathered: bool,
        /// A hidden layer: permuted, with dummies.
        permuted: bool,
    },
}

/// A model with its slot layout worked out.
pub struct CompiledModel {
    model: Model,
    shapes: Vec<LayerShape>,
    plans: Vec<LayerPlan>,
    /// (shift, copies) of each layer's input as the client lays it out: the first layer's,
    /// and under the sign-magnitude round every layer's ((0, 1) where the server lays it out).
    input_layouts: Vec<(usize, usize)>,
    /// Most replicas each layer's transform may use.
    replicas: Vec<usize>,
    /// Every layer after the first reads the pairs (v, |v|) of the previous layer's masked
    /// output from the client (the sign-magnitude round): twice the columns, client layout.
    paired: bool,
}

fn next_pow2(x: usize) -> usize {
    x.max(1).next_power_of_two()
}

impl CompiledModel {
    /// Lays `model` out for `slots` slots under the refresh round.
    pub fn new(model: Model, slots: usize) -> Result<Self, ModelError> {
        Self::for_round(model, slots, RoundKind::Refresh)
    }

    /// Lays `model` out for `slots` slots under `round`. Under the sign-magnitude round every
    /// hidden layer's input is the client's fresh encryption of the pairs (v, |v|) of the
    /// previous layer's ReLU message: period and columns doubled, laid out by the client.
    pub fn for_round(model: Model, slots: usize, round: RoundKind) -> Result<Self, ModelError> {
        model.validate()?;
        let paired = round == RoundKind::SignMagnitude;
        let mut d = next_pow2(model.input_len);
        // Input ciphertexts of the next layer (full ones when more than one).
        let mut inputs = 1;
        let mut shapes = Vec::with_capacity(model.layers.len());
        let mut plans = Vec::with_capacity(model.layers.len());
        for (i, layer) in model.layers.iter().enumerate() {
            let m = layer.weights.rows;
            // Hidden layers are padded to a power of two: the padding holds dummies.
            let rows = if layer.relu { next_pow2(m) } else { m };
            let gathered = i == 0 && model.first_conv.is_some() && d.max(next_pow2(rows)) > slots;
            if gathered {
                let conv = model.first_conv.as_ref().map(|c| c.gather.gathered_len());
                inputs = conv.transpose()?.unwrap_or(0).div_ceil(slots);
                d = slots;
            } else if d > slots {
                inputs = model.input_len.div_ceil(slots);
                d = slots;
            }
            let outputs = m.div_ceil(slots);
            let pairs = if paired && i > 0 { 2 } else { 1 };
            let columns = if gathered {
                0
            } else {
                pairs * layer.weights.cols
            };
            if columns > inputs * d {
                return Err(ModelError::Malformed(format!(
                    "layer {i}: {columns} inputs do not fit {inputs} ciphertext(s) of period {d}"
                )));
            }
            // A gathered input always goes through block transforms, whatever its size.
            let (plan, shape) = if outputs > 1 || gathered {
                let shape = LayerShape {
                    in_period: d,
                    lt_period: slots,
                    rows: outputs * slots,
                    out_period: slots,
                };
                (
                    LayerPlan::Spread {
                        inputs,
                        outputs,
                        gathered,
                        permuted: layer.relu,
                    },
                    shape,
                )
            } else if inputs > 1 {
                let p = next_pow2(rows);
                if 2 * p > slots {
                    return Err(ModelError::Malformed(format!(
                        "layer {i}: {m} outputs of a layer over {inputs} ciphertexts must fit half a ciphertext ({slots} slots)"
                    )));
                }
                let shape = LayerShape {
                    in_period: d,
                    lt_period: slots,
                    rows,
                    out_period: p,
                };
                (LayerPlan::Folded { inputs }, shape)
            } else {
                let lt_period = d.max(next_pow2(rows));
                let p = next_pow2(rows);
                let out_period = if p < lt_period && rows < d {
                    p
                } else {
                    lt_period
                };
                let shape = LayerShape {
                    in_period: d,
                    lt_period,
                    rows,
                    out_period,
                };
                (LayerPlan::Single, shape)
            };
            if paired && plan != LayerPlan::Single {
                return Err(ModelError::Malformed(format!(
                    "layer {i}: the sign-magnitude round needs every layer's input and output in one ciphertext of {slots} slots; use the refresh-round preset hefun-n16384 for this model"
                )));
            }
            inputs = match plan {
                LayerPlan::Spread { outputs, .. } => outputs,
                _ => 1,
            };
            d = shape.out_period;
            if paired {
                // The next layer reads (v, |v|) side by side.
                d *= 2;
                if d > slots {
                    return Err(ModelError::Malformed(format!(
                        "layer {i}: its {m} outputs and their magnitudes do not fit one ciphertext of {slots} slots; use the refresh-round preset hefun-n16384 for this model"
                    )));
                }
            }
            shapes.push(shape);
            plans.push(plan);
        }
        let mut replicas = Vec::with_capacity(shapes.len());
        for (i, s) in shapes.iter().enumerate() {
            if plans[i] != LayerPlan::Single {
                replicas.push(1);
                continue;
            }
            let dense = Matrix {
                rows: s.rows,
                cols: s.in_period,
                data: vec![1.0; s.rows * s.in_period],
            };
            // The client's shifted input costs the server nothing: use every replica there.
            if i == 0 || paired {
                replicas.push(usize::MAX);
                continue;
            }
            let mut best = (f64::INFINITY, 1);
            let mut blocks = 1;
            while blocks <= slots / s.lt_period {
                let lt = LinearTransform::new_replicated_with(&dense, s.lt_period, slots, blocks)?;
                let cost = lt.online_cost(true);
                if cost < best.0 {
                    best = (cost, blocks);
                }
                blocks *= 2;
            }
            replicas.push(best.1);
        }
        let layers = shapes.len();
        let mut compiled = Self {
            model,
            shapes,
            plans,
            input_layouts: vec![(0, 1); layers],
            replicas,
            paired,
        };
        let client_laid = if paired { layers } else { 1 };
        for i in 0..client_laid {
            if compiled.plans[i] != LayerPlan::Single {
                continue;
            }
            let s = compiled.shapes[i];
            let probe = Matrix {
                rows: s.rows,
                cols: s.in_period,
                data: vec![1.0; s.rows * s.in_period],
            };
            let lt = compiled.transform(i, &probe, slots)?;
            compiled.input_layouts[i] = (lt.input_shift(), lt.input_copies());
        }
        Ok(compiled)
    }

    /// Layer `i`'s transform for `matrix` (the layer's weights with permutations folded in).
    /// Layers share their diagonals out over replicas of a shifted input (see
    /// [`LinearTransform::new_replicated`]): the client lays out the first layer's input that
    /// way, later inputs are re-laid out by the server, with as many replicas as minimise the
    /// estimated online cost (re-layout rotations against fewer products and steps).
    pub(crate) fn transform(
        &self,
        i: usize,
        matrix: &Matrix,
        slots: usize,
    ) -> Result<LinearTransform, ModelError> {
        let period = self.shapes[i].lt_period;
        // The light client uploads few Galois keys (see `new_replicated_compact`).
        let build = match self.paired {
            true => LinearTransform::new_replicated_compact,
            false => LinearTransform::new_replicated_with,
        };
        Ok(build(matrix, period, slots, self.replicas[i])?)
    }

    /// Sources of the dummy rows of a [`LayerPlan::Spread`] layer `i` (rows m … outputs·S): each
    /// copies a real row j, drawn by `pick` from the rows it may copy. A gathered convolution's
    /// dummy at row g must copy a row at the same position (g mod P) so that its diagonals stay
    /// those of a convolution.
    pub(crate) fn spread_dummy_sources(
        &self,
        i: usize,
        slots: usize,
        mut pick: impl FnMut(usize) -> usize,
    ) -> Vec<usize> {
        let LayerPlan::Spread {
            outputs,
            gathered,
            permuted: true,
            ..
        } = self.plans[i]
        else {
            return Vec::new();
        };
        let m = self.model.layers[i].weights.rows;
        match (&self.model.first_conv, gathered) {
            (Some(conv), true) => {
                let positions = m / conv.out_channels.max(1);
                (m..outputs * slots)
                    .map(|g| pick(conv.out_channels) * positions + g % positions)
                    .collect()
            }
            _ => (m..outputs * slots).map(|_| pick(m)).collect(),
        }
    }

    /// Layer `i` of a [`LayerPlan::Spread`] plan without its permutation: rows in model order,
    /// columns at the previous layer's positions `col_pos` (empty: in order) times `col_scale`,
    /// then the dummy rows: row m + u is `dummies[u]` = (source row, factor) times the factor.
    /// A gathered first convolution is Σ_t w[c][t]·patch_t: row c·P + p reads entry t·P + p.
    pub(crate) fn spread_transform(
        &self,
        i: usize,
        col_pos: &[usize],
        col_scale: f64,
        dummies: &[(usize, f64)],
        slots: usize,
    ) -> Result<BlockTransform, ModelError> {
        let LayerPlan::Spread {
            inputs,
            outputs,
            gathered,
            ..
        } = self.plans[i]
        else {
            return Err(ModelError::Malformed(format!("layer {i} is not spread")));
        };
        let in_period = self.shapes[i].in_period;
        let layer = &self.model.layers[i];
        let entries: Vec<(usize, usize, f64)> = match (&self.model.first_conv, gathered) {
            (Some(conv), true) => {
                let (oh, ow) = conv.gather.output_dims()?;
                let positions = oh * ow;
                let window = conv.kernel.len() / conv.out_channels.max(1);
                let m = conv.out_channels * positions;
                // (row, source row, factor) for real rows and dummies alike.
                let rows = (0..m)
                    .map(|r| (r, r, 1.0))
                    .chain(dummies.iter().enumerate().map(|(u, &(j, f))| (m + u, j, f)));
                rows.flat_map(|(g, j, f)| {
                    let c = j / positions;
                    (0..window).map(move |t| {
                        let w = conv.kernel[c * window + t] * f;
                        (g, t * positions + g % positions, w)
                    })
                })
                .collect()
            }
            _ => {
                let w = &layer.weights;
                let rows = (0..w.rows).map(|r| (r, r, 1.0)).chain(
                    dummies
                        .iter()
                        .enumerate()
                        .map(|(u, &(j, f))| (w.rows + u, j, f)),
                );
                rows.flat_map(|(g, j, f)| (0..w.cols).map(move |c| (g, j, f, c)))
                    .map(|(g, j, f, c)| {
                        let col = col_pos.get(c).copied().unwrap_or(c);
                        (g, col, w.get(j, c) * col_scale * f)
                    })
                    .collect()
            }
        };
        Ok(BlockTransform::from_entries(
            slots,
            inputs,
            in_period,
            outputs,
            entries,
            Bsgs::balanced(1, in_period),
        )?)
    }

    /// Number of ciphertexts of every hidden layer's output, and of the output.
    pub fn ciphertexts_per_layer(&self) -> Vec<usize> {
        self.plans
            .iter()
            .map(|p| match p {
                LayerPlan::Spread { outputs, .. } => *outputs,
                _ => 1,
            })
            .collect()
    }

    /// The plaintext model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Where every layer's vectors sit in the slots.
    pub(crate) fn shapes(&self) -> &[LayerShape] {
        &self.shapes
    }

    /// How layer `i`'s input and output sit in ciphertexts.
    pub(crate) fn plan(&self, i: usize) -> LayerPlan {
        self.plans[i]
    }

    /// Whether the server re-lays out layer `i`'s input into replicas (one more level).
    pub(crate) fn relayouts(&self, i: usize) -> bool {
        i > 0 && !self.paired && self.replicas[i] >= 2
    }

    /// (shift, copies) of the client's input layout.
    pub(crate) fn input_layout(&self) -> (usize, usize) {
        self.input_layouts[0]
    }

    /// (shift, copies) of layer `i`'s input as the client lays it out.
    pub(crate) fn layer_input_layout(&self, i: usize) -> (usize, usize) {
        self.input_layouts.get(i).copied().unwrap_or((0, 1))
    }

    /// Whether every layer after the first reads (v, |v|) pairs (the sign-magnitude round).
    pub fn paired(&self) -> bool {
        self.paired
    }

    /// Number of rounds (hidden layers).
    pub fn rounds(&self) -> usize {
        self.model.layers.len() - 1
    }
}
