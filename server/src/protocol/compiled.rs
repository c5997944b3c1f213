//! A model laid out in the slots: periods, padded rows, replicas per layer, the client's input
//! layout and the Galois keys every inference can need.

use client_core::params::Params;
use client_core::protocol::InputSpec;

use super::config::ProtocolConfig;
use super::model::Model;
use super::ProtocolError;
use crate::eval::{LinearTransform, Matrix};

/// Where a layer's vectors sit in the slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LayerShape {
    /// Period of the input vector.
    pub(super) in_period: usize,
    /// Period the transform works with (≥ in_period when a layer widens).
    pub(super) lt_period: usize,
    /// Rows of the (permuted, padded) matrix.
    pub(super) rows: usize,
    /// Period of the output vector.
    pub(super) out_period: usize,
}

/// A model with its slot layout worked out.
pub struct CompiledModel {
    pub(super) model: Model,
    pub(super) shapes: Vec<LayerShape>,
    /// (shift, copies) of the client's input layout.
    input_layout: (usize, usize),
    /// Most replicas each layer's transform may use.
    replicas: Vec<usize>,
}

/// Level of the client's input: the first layer consumes `rescale_primes` levels and its output
/// goes to the hand-off level.
pub(super) fn input_level(params: &Params, cfg: &ProtocolConfig) -> usize {
    (params.handoff_level() + cfg.rescale_primes).min(params.top_level())
}

fn next_pow2(x: usize) -> usize {
    x.max(1).next_power_of_two()
}

impl CompiledModel {
    /// Lays `model` out for `slots` slots.
    pub fn new(model: Model, slots: usize) -> Result<Self, ProtocolError> {
        model.validate()?;
        let mut d = next_pow2(model.input_len);
        let mut shapes = Vec::with_capacity(model.layers.len());
        for (i, layer) in model.layers.iter().enumerate() {
            let m = layer.weights.rows;
            // Hidden layers are padded to a power of two: the padding holds dummies.
            let rows = if layer.relu { next_pow2(m) } else { m };
            let lt_period = d.max(next_pow2(rows));
            if lt_period > slots {
                return Err(ProtocolError::Model(format!(
                    "layer {i} needs {lt_period} slots; one ciphertext has {slots}"
                )));
            }
            let p = next_pow2(rows);
            let out_period = if p < lt_period && rows < d {
                p
            } else {
                lt_period
            };
            shapes.push(LayerShape {
                in_period: d,
                lt_period,
                rows,
                out_period,
            });
            d = out_period;
        }
        let mut replicas = Vec::with_capacity(shapes.len());
        for (i, s) in shapes.iter().enumerate() {
            let dense = Matrix {
                rows: s.rows,
                cols: s.in_period,
                data: vec![1.0; s.rows * s.in_period],
            };
            // The client's shifted input costs the server nothing: use every replica there.
            if i == 0 {
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
        let mut compiled = Self {
            model,
            shapes,
            input_layout: (0, 1),
            replicas,
        };
        let s0 = compiled.shapes[0];
        let probe = Matrix {
            rows: s0.rows,
            cols: s0.in_period,
            data: vec![1.0; s0.rows * s0.in_period],
        };
        let first = compiled.transform(0, &probe, slots)?;
        compiled.input_layout = (first.input_shift(), first.input_copies());
        Ok(compiled)
    }

    /// Layer `i`'s transform for `matrix` (the layer's weights with permutations folded in).
    /// Layers share their diagonals out over replicas of a shifted input (see
    /// [`LinearTransform::new_replicated`]): the client lays out the first layer's input that
    /// way, later inputs are re-laid out by the server, with as many replicas as minimise the
    /// estimated online cost (re-layout rotations against fewer products and steps).
    pub(super) fn transform(
        &self,
        i: usize,
        matrix: &Matrix,
        slots: usize,
    ) -> Result<LinearTransform, ProtocolError> {
        let period = self.shapes[i].lt_period;
        Ok(LinearTransform::new_replicated_with(
            matrix,
            period,
            slots,
            self.replicas[i],
        )?)
    }

    /// Levels one round consumes at most, from the client's top-level re-encryption to the
    /// next hand-off: the ReLU product, the re-layout if the next layer has one, the transform.
    pub fn round_levels(&self, cfg: &ProtocolConfig) -> usize {
        (1..self.shapes.len())
            .map(|i| cfg.sign_primes + usize::from(self.replicas[i] >= 2) + cfg.rescale_primes)
            .max()
            .unwrap_or(0)
    }

    /// The plaintext model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Number of rounds (hidden layers).
    pub fn rounds(&self) -> usize {
        self.model.layers.len() - 1
    }

    /// The input layout the client must use. The input is encrypted just high enough for the
    /// first layer to land at the hand-off level: a smaller upload and cheaper first layer.
    pub fn input_spec(&self, params: &Params, cfg: &ProtocolConfig) -> InputSpec {
        InputSpec {
            len: self.model.input_len as u32,
            period: self.shapes[0].in_period as u32,
            shift: self.input_layout.0 as u32,
            copies: self.input_layout.1 as u32,
            scale: cfg.scale,
            level: input_level(params, cfg) as u32,
        }
    }

    /// Every rotation step any inference can need (the Galois keys to ask the client for).
    /// Dense stand-ins have every diagonal, so each per-inference permutation needs a subset.
    pub fn rotation_steps(&self, slots: usize) -> Result<Vec<i64>, ProtocolError> {
        let mut steps = Vec::new();
        for (i, s) in self.shapes.iter().enumerate() {
            let dense = Matrix {
                rows: s.rows,
                cols: s.in_period,
                data: vec![1.0; s.rows * s.in_period],
            };
            let lt = self.transform(i, &dense, slots)?;
            if i == 0 {
                steps.extend(lt.rotation_steps());
            } else {
                steps.extend(lt.rotation_steps_from_periodic());
            }
        }
        steps.sort_unstable();
        steps.dedup();
        Ok(steps)
    }
}
