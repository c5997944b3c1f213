//! What a laid-out model needs under this protocol: the levels of a round, the level and layout
//! of the client's input, and the Galois keys of every layer and of HePerm's stages. These
//! depend on the protocol's configuration and on HePerm, so they live here rather than with the
//! layout in `crate::model`.

use client_core::params::Params;
use client_core::wire::input::InputSpec;

use super::config::ProtocolConfig;
use super::perm::clos::{self, STAGE_LEVELS};
use super::ProtocolError;
use crate::eval::{BlockTransform, Bsgs, Matrix};
use crate::model::{CompiledModel, LayerPlan};

impl CompiledModel {
    /// Levels one round consumes at most, from the client's top-level re-encryption to the
    /// next hand-off: the ReLU product, the re-layout if the next layer has one, the transform.
    pub fn round_levels(&self, cfg: &ProtocolConfig) -> usize {
        (1..self.shapes().len())
            .map(|i| cfg.sign_primes + self.layer_levels(i, cfg))
            .max()
            .unwrap_or(0)
    }

    /// Levels layer `i` consumes: its transform, a re-layout before it, permutation stages
    /// after it.
    fn layer_levels(&self, i: usize, cfg: &ProtocolConfig) -> usize {
        match self.plan(i) {
            LayerPlan::Single => usize::from(self.relayouts(i)) + cfg.rescale_primes,
            LayerPlan::Folded { .. } => cfg.rescale_primes,
            LayerPlan::Spread { permuted, .. } => {
                cfg.rescale_primes + if permuted { STAGE_LEVELS } else { 0 }
            }
        }
    }

    /// Level of the client's input: high enough for the first layer to land at the hand-off
    /// level (a smaller upload and a cheaper first layer than the top level).
    pub(super) fn input_level(&self, params: &Params, cfg: &ProtocolConfig) -> usize {
        if cfg.sign_magnitude_round() {
            return params.top_level();
        }
        params.handoff_level() + self.layer_levels(0, cfg)
    }

    /// Under the sign-magnitude round, the layout of each round's reply: the pairs (v, |v|) of
    /// hidden layer k's ReLU message as layer k + 1's input, at the top level and the client's
    /// scale. Empty under the refresh round.
    pub fn round_input_specs(&self, params: &Params, cfg: &ProtocolConfig) -> Vec<InputSpec> {
        if !cfg.sign_magnitude_round() {
            return Vec::new();
        }
        (1..self.shapes().len())
            .map(|i| {
                let (shift, copies) = self.layer_input_layout(i);
                let period = self.shapes()[i].in_period;
                InputSpec {
                    len: period as u32,
                    period: period as u32,
                    shift: shift as u32,
                    copies: copies as u32,
                    scale: cfg.scale,
                    level: params.top_level() as u32,
                    gather: None,
                }
            })
            .collect()
    }

    /// The input layout the client must use. The input is encrypted just high enough for the
    /// first layer to land at the hand-off level: a smaller upload and cheaper first layer.
    pub fn input_spec(&self, params: &Params, cfg: &ProtocolConfig) -> InputSpec {
        let gather = match self.plan(0) {
            LayerPlan::Spread { gathered: true, .. } => {
                self.model().first_conv.as_ref().map(|c| c.gather)
            }
            _ => None,
        };
        let (shift, copies) = self.input_layout();
        InputSpec {
            len: self.model().input_len as u32,
            period: self.shapes()[0].in_period as u32,
            shift: shift as u32,
            copies: copies as u32,
            scale: cfg.scale,
            level: self.input_level(params, cfg).min(params.top_level()) as u32,
            gather,
        }
    }

    /// Bytes of the key upload this model asks a client for on `params`, frame headers aside:
    /// the public key's limbs at the top level (its `a` travels as a seed), then for each
    /// switching key (the rotations', and relinearisation under the refresh round) every digit
    /// over every prime of Q·P, each limb bit-packed to its prime's width.
    pub fn key_upload_bytes(&self, params: &Params) -> Result<u64, ProtocolError> {
        let n = params.n() as u64;
        let limb = |q: &u64| (n * u64::from(64 - q.leading_zeros())).div_ceil(8);
        let q: u64 = params.q().iter().map(limb).sum();
        let p: u64 = params.p().iter().map(limb).sum();
        let digits = params.digit_count(params.top_level()) as u64;
        let relin = u64::from(params.round() == client_core::params::RoundKind::Refresh);
        let keys = self.rotation_steps(params.slots())?.len() as u64 + relin;
        Ok(q + keys * digits * (q + p))
    }

    /// Every rotation step any inference can need (the Galois keys to ask the client for).
    /// Dense stand-ins have every diagonal, so each per-inference permutation needs a subset.
    pub fn rotation_steps(&self, slots: usize) -> Result<Vec<i64>, ProtocolError> {
        let mut steps = Vec::new();
        for (i, s) in self.shapes().iter().enumerate() {
            match self.plan(i) {
                LayerPlan::Single => {}
                LayerPlan::Folded { inputs } => {
                    let dense = Matrix {
                        rows: s.rows,
                        cols: inputs * slots,
                        data: vec![1.0; s.rows * inputs * slots],
                    };
                    steps.extend(BlockTransform::folded(&dense, slots, inputs)?.rotation_steps());
                    continue;
                }
                LayerPlan::Spread {
                    outputs,
                    gathered,
                    permuted,
                    ..
                } => {
                    if gathered {
                        // A gathered convolution's diagonals depend on the model and the
                        // shape only (dummies copy a kernel at their own position).
                        let dummies: Vec<(usize, f64)> = self
                            .spread_dummy_sources(i, slots, |_| 0)
                            .into_iter()
                            .map(|j| (j, 1.0))
                            .collect();
                        let t = self.spread_transform(i, &[], 1.0, &dummies, slots)?;
                        steps.extend(t.rotation_steps());
                    } else {
                        // Columns at the previous layer's random positions: any diagonal.
                        let bsgs = Bsgs::balanced(1, s.in_period);
                        steps.extend((1..bsgs.n1.min(s.in_period)).map(|b| b as i64));
                        let giants = s.in_period.div_ceil(bsgs.n1);
                        steps.extend((1..giants).map(|g| (g * bsgs.n1) as i64));
                    }
                    if permuted {
                        steps.extend(clos::rotation_steps(
                            outputs,
                            slots,
                            clos::grid_width(slots),
                        )?);
                    }
                    continue;
                }
            }
            let dense = Matrix {
                rows: s.rows,
                cols: s.in_period,
                data: vec![1.0; s.rows * s.in_period],
            };
            let lt = self.transform(i, &dense, slots)?;
            if i == 0 || self.paired() {
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
