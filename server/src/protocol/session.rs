//! One inference on the server: per-inference permutations, layer evaluation, rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use client_core::cipher::SeededCiphertext;
use client_core::protocol::{InputSpec, OutputMessage, RoundReply, RoundRequest, ServerMessage};
use client_core::rand_core::{Rng, SeedableRng};
use client_core::ring::Basis;
use client_core::sampling::{Csprng, Seed};

use super::clos;
use super::compiled::{CompiledModel, LayerPlan};
use super::config::ProtocolConfig;
use super::mask::IntegerMask;
use super::ProtocolError;
use crate::eval::{
    rescale_divisor, BlockTransform, Ct, EvalKeys, Evaluator, FloodReport, LinearTransform, Matrix,
};

/// What the server used to hide one outgoing round or output (for audits and tests).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HidingAudit {
    /// Layer whose output was sent.
    pub layer: usize,
    /// log2 of the bound B on the refresh message's coefficients (Δ·Y + noise); 0 for outputs.
    pub refresh_coeff_bound_bits: f64,
    /// log2 of the refresh mask bound A; 0 for outputs.
    pub mask_bits: f64,
    /// Flooding of the ReLU message (or of the output).
    pub flood: FloodReport,
}

/// Server time spent on one layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoundCost {
    /// Layer index.
    pub layer: usize,
    /// Time to compile the layer's permuted transform and evaluate it (with the ReLU before it).
    pub eval: Duration,
    /// Time to build the outgoing messages.
    pub messages: Duration,
}

enum State {
    AwaitInput,
    AwaitRound {
        round: u32,
        layer: usize,
        /// One per ciphertext of the layer.
        masks: Vec<IntegerMask>,
        scale: f64,
        noise_vars: Vec<f64>,
        sign_scale: f64,
    },
    Done,
}

/// The server's state for one inference.
pub struct Inference<'a> {
    eval: &'a Evaluator,
    keys: Arc<EvalKeys>,
    model: &'a CompiledModel,
    cfg: &'a ProtocolConfig,
    rng: Csprng,
    /// π_i for every hidden layer, over [0, out_period).
    perms: Vec<Vec<usize>>,
    /// ρ_i ∈ {±1} for every hidden layer, over [0, out_period): the sign of the ReLU multiplier,
    /// folded into the layer's rows so the server sends y' = ρ∘y and the client sees sign(y').
    signs: Vec<Vec<f64>>,
    state: State,
    rounds_sent: u32,
    /// Layers compiled and encoded ahead by [`Inference::prepare`].
    prepared: Vec<Option<PermutedLayer>>,
    /// How every outgoing message was hidden.
    pub audits: Vec<HidingAudit>,
    /// Per-layer server time.
    pub costs: Vec<RoundCost>,
}

/// A layer with this inference's permutation and signs folded in, and its bias over the
/// output positions (random dummies at the padding).
enum PermutedLayer {
    Single(LinearTransform, Vec<f64>),
    Folded(BlockTransform, Vec<f64>),
    /// The unpermuted transform, then for a hidden layer the three permutation stages (the
    /// last carries ρ).
    Spread(BlockTransform, Option<Box<[BlockTransform; 3]>>, Vec<f64>),
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
    0.5 + 0.5 * uniform(rng)
}

fn uniform(rng: &mut Csprng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

impl<'a> Inference<'a> {
    /// Starts an inference; `seed` must come from the server's entropy source. Draws the fresh
    /// permutations of every hidden layer.
    pub fn new(
        eval: &'a Evaluator,
        keys: Arc<EvalKeys>,
        model: &'a CompiledModel,
        cfg: &'a ProtocolConfig,
        seed: Seed,
    ) -> Self {
        let mut rng = Csprng::from_seed(seed);
        // Positions of every hidden layer: a period, or whole ciphertexts.
        let hidden: Vec<usize> = model
            .shapes
            .iter()
            .zip(&model.model.layers)
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
        let perms = hidden
            .iter()
            .map(|&n| random_permutation(&mut rng, n))
            .collect();
        let signs = hidden
            .iter()
            .map(|&n| (0..n).map(|_| random_sign(&mut rng)).collect())
            .collect();
        Self {
            eval,
            keys,
            model,
            cfg,
            rng,
            perms,
            signs,
            state: State::AwaitInput,
            rounds_sent: 0,
            audits: Vec::new(),
            costs: Vec::new(),
            prepared: Vec::new(),
        }
    }

    /// Compiles every layer with this inference's permutations and signs and encodes its
    /// plaintexts, so that the online phase only evaluates. The permutations are fixed when the
    /// inference is created, before any input exists, so this can run ahead of the query (e.g.
    /// while the server is idle). Costs memory: the NTT-form plaintexts of every layer.
    pub fn prepare(&mut self) -> Result<(), ProtocolError> {
        let params = self.eval.ctx().params();
        let primes = self.cfg.rescale_primes;
        let mut prepared = Vec::with_capacity(self.model.model.layers.len());
        for i in 0..self.model.model.layers.len() {
            let layer = self.permuted_layer(i)?;
            let level = if i == 0 {
                self.model.input_level(params, self.cfg)
            } else {
                params.top_level() - self.cfg.sign_primes
            };
            match &layer {
                PermutedLayer::Single(lt, _) if i == 0 => lt.prepare(self.eval, level, primes)?,
                PermutedLayer::Single(lt, _) => {
                    lt.prepare_from_periodic(self.eval, level, primes)?
                }
                PermutedLayer::Folded(bt, _) => bt.prepare(self.eval, level, primes)?,
                PermutedLayer::Spread(bt, stages, _) => {
                    bt.prepare(self.eval, level, primes)?;
                    for (k, stage) in stages.iter().flat_map(|s| s.iter()).enumerate() {
                        stage.prepare(self.eval, level - primes - k, 1)?;
                    }
                }
            }
            prepared.push(Some(layer));
        }
        self.prepared = prepared;
        Ok(())
    }

    /// The input layout this inference expects.
    pub fn input_spec(&self) -> InputSpec {
        self.model.input_spec(self.eval.ctx().params(), self.cfg)
    }

    /// The permutation of hidden layer `layer` (for tests of HePerm).
    pub fn permutation(&self, layer: usize) -> Option<&[usize]> {
        self.perms.get(layer).map(Vec::as_slice)
    }

    /// Layer `i` with this inference's permutation and signs folded in. A hidden layer's
    /// output position t is multiplied by ρ_i[t].
    fn permuted_layer(&mut self, i: usize) -> Result<PermutedLayer, ProtocolError> {
        let layer = &self.model.model.layers[i];
        let shape = self.model.shapes[i];
        let (m, n) = (layer.weights.rows, layer.weights.cols);
        let slots = self.eval.ctx().params().slots();
        // ½ of ReLU = ½(z + z·sign z) is folded into the next layer.
        let (col_pos, col_scale): (Vec<usize>, f64) = if i == 0 {
            ((0..n).collect(), 1.0)
        } else {
            (self.perms[i - 1][..n].to_vec(), 0.5)
        };
        let plan = self.model.plans[i];
        if let LayerPlan::Spread { outputs, .. } = plan {
            if !layer.relu {
                // The output layer: class order, no dummies.
                let transform = self
                    .model
                    .spread_transform(i, &col_pos, col_scale, &[], slots)?;
                let mut bias = layer.bias.clone();
                bias.resize(outputs * slots, 0.0);
                return Ok(PermutedLayer::Spread(transform, None, bias));
            }
            let rng = &mut self.rng;
            let sources = self
                .model
                .spread_dummy_sources(i, slots, |n| (rng.next_u64() % n as u64) as usize);
            let dummies: Vec<(usize, f64)> = sources
                .into_iter()
                .map(|j| (j, dummy_factor(&mut self.rng)))
                .collect();
            let transform = self
                .model
                .spread_transform(i, &col_pos, col_scale, &dummies, slots)?;
            let pi = &self.perms[i];
            let rho = &self.signs[i];
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
            return Ok(PermutedLayer::Spread(
                transform,
                Some(Box::new(stages)),
                bias,
            ));
        }
        let cols = match plan {
            LayerPlan::Folded { inputs } => inputs * slots,
            _ => shape.in_period,
        };
        let row_pos: Vec<usize> = if layer.relu {
            self.perms[i][..m].to_vec()
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
                let j = (self.rng.next_u64() % m as u64) as usize;
                rows.push((r, j, dummy_factor(&mut self.rng)));
            }
        }
        let row_sign = |r: usize| {
            if layer.relu {
                self.signs[i][r]
            } else {
                1.0
            }
        };
        let mut data = vec![0.0; shape.rows * cols];
        let mut bias = vec![0.0; shape.rows];
        for &(r, j, f) in &rows {
            let scale = col_scale * row_sign(r) * f;
            for (k, &c) in col_pos.iter().enumerate() {
                data[r * cols + c] = layer.weights.get(j, k) * scale;
            }
            bias[r] = layer.bias[j] * row_sign(r) * f;
        }
        let matrix = Matrix {
            rows: shape.rows,
            cols,
            data,
        };
        Ok(match plan {
            LayerPlan::Folded { inputs } => {
                PermutedLayer::Folded(BlockTransform::folded(&matrix, slots, inputs)?, bias)
            }
            _ => PermutedLayer::Single(self.model.transform(i, &matrix, slots)?, bias),
        })
    }

    /// W'·x + b' for layer `i`.
    fn apply_layer(&mut self, i: usize, xs: &[Ct]) -> Result<Vec<Ct>, ProtocolError> {
        let layer = match self.prepared.get_mut(i).and_then(Option::take) {
            Some(prepared) => prepared,
            None => self.permuted_layer(i)?,
        };
        let primes = self.cfg.rescale_primes;
        let eval = self.eval;
        fn single(xs: &[Ct]) -> Result<&Ct, ProtocolError> {
            match xs {
                [x] => Ok(x),
                _ => Err(ProtocolError::Violation("expected one ciphertext")),
            }
        }
        let (ys, bias, period) = match &layer {
            PermutedLayer::Single(lt, bias) => {
                let x = single(xs)?;
                let y = if i == 0 {
                    lt.apply_rescaling(eval, x, &self.keys, primes)?
                } else {
                    lt.apply_from_periodic(eval, x, &self.keys, primes)?
                };
                (vec![y], bias, lt.output_period())
            }
            PermutedLayer::Folded(bt, bias) => (
                bt.apply(eval, xs, &self.keys, primes)?,
                bias,
                bt.output_period(),
            ),
            PermutedLayer::Spread(bt, stages, bias) => {
                let mut ys = bt.apply(eval, xs, &self.keys, primes)?;
                for stage in stages.iter().flat_map(|s| s.iter()) {
                    ys = stage.apply(eval, &ys, &self.keys, 1)?;
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

    /// Receives the encrypted input and answers with the first round (or the output).
    pub fn on_input(&mut self, input: &[SeededCiphertext]) -> Result<ServerMessage, ProtocolError> {
        if !matches!(self.state, State::AwaitInput) {
            return Err(ProtocolError::Violation(
                "input after the inference started",
            ));
        }
        let ctx = self.eval.ctx();
        let spec = self.input_spec();
        if Ok(input.len()) != spec.ciphertexts(ctx.params().slots()) {
            return Err(ProtocolError::Violation(
                "wrong number of input ciphertexts",
            ));
        }
        let level = spec.level as usize;
        let mut xs = Vec::with_capacity(input.len());
        for seeded in input {
            let ct = Ct::from_client(ctx, seeded, level)?;
            if ct.scale() != self.cfg.scale {
                return Err(ProtocolError::Violation("input at the wrong scale"));
            }
            xs.push(ct);
        }
        let start = Instant::now();
        let ys = self.apply_layer(0, &xs)?;
        let eval = start.elapsed();
        self.emit(0, ys, eval)
    }

    /// Sends layer `layer`'s output: a round if ReLU follows, else the result.
    fn emit(
        &mut self,
        layer: usize,
        ys: Vec<Ct>,
        eval_time: Duration,
    ) -> Result<ServerMessage, ProtocolError> {
        let start = Instant::now();
        let ctx = self.eval.ctx();
        let h = ctx.params().handoff_level();
        let ys_h = ys
            .iter()
            .map(|y| self.eval.drop_to_level(y, h))
            .collect::<Result<Vec<_>, _>>()?;
        let msg = if !self.model.model.layers[layer].relu {
            let mut output = Vec::with_capacity(ys_h.len());
            for y_h in &ys_h {
                let (out, flood) = self
                    .eval
                    .prepare_outgoing(y_h, h, &self.keys, &mut self.rng)?;
                self.audits.push(HidingAudit {
                    layer,
                    refresh_coeff_bound_bits: 0.0,
                    mask_bits: 0.0,
                    flood,
                });
                output.push(out.into_ciphertext());
            }
            self.state = State::Done;
            ServerMessage::Output(OutputMessage {
                len: self.model.model.output_len() as u32,
                output,
            })
        } else {
            self.round_message(layer, ys_h)?
        };
        self.costs.push(RoundCost {
            layer,
            eval: eval_time,
            messages: start.elapsed(),
        });
        Ok(msg)
    }

    fn round_message(
        &mut self,
        layer: usize,
        ys_h: Vec<Ct>,
    ) -> Result<ServerMessage, ProtocolError> {
        let ctx = self.eval.ctx();
        let params = ctx.params();
        let n = ctx.n();
        let h = params.handoff_level();
        let round = self.rounds_sent;
        let period = self.model.shapes[layer].out_period;
        let slots = params.slots();
        let spread = 2f64.powi(self.cfg.r_spread_bits as i32);
        let room = params.log_q(h) - 2.0;
        let (mut masks, mut noise_vars) = (Vec::new(), Vec::new());
        let (mut relus, mut refreshes) = (Vec::new(), Vec::new());
        let scale = ys_h.first().map_or(self.cfg.scale, Ct::scale);
        for y_h in &ys_h {
            // HeRefresh: A ≥ N·B·2^(s−1) for the coefficient bound B of Δ·y + e.
            let coeff_bound = y_h.scale() * self.cfg.value_bound + y_h.noise_bound();
            let log_a = ((n as f64 * coeff_bound).log2() + self.cfg.stat_bits as f64 - 1.0).ceil();
            if log_a + 1.0 > room {
                return Err(ProtocolError::Budget(format!(
                    "refresh mask needs 2^{log_a:.0} but the hand-off modulus leaves 2^{room:.1}"
                )));
            }
            let mask = IntegerMask::sample(n, log_a as u32, &mut self.rng)?;
            let mut refresh = self.eval.rerandomize(y_h, &self.keys, &mut self.rng)?;
            let r_poly = mask.residues(ctx, Basis::level(h))?.into_ntt(ctx)?;
            self.eval.add_integer_mask(&mut refresh, &r_poly)?;

            // HeReLU: y'∘|r| (y' = ρ∘y already carries the random sign) with |r| zero outside
            // the first period, flooded.
            let mut r = vec![0.0; slots];
            for r_t in r.iter_mut().take(period) {
                *r_t = 1.0 + uniform(&mut self.rng) * (spread - 1.0);
            }
            let r_pt = self.eval.encode(&r, self.cfg.r_scale, h)?;
            let masked = self.eval.mul_plain(y_h, &r_pt)?;
            let (relu, flood) =
                self.eval
                    .prepare_outgoing(&masked, h, &self.keys, &mut self.rng)?;
            self.audits.push(HidingAudit {
                layer,
                refresh_coeff_bound_bits: coeff_bound.log2(),
                mask_bits: log_a,
                flood,
            });
            masks.push(mask);
            noise_vars.push(y_h.noise_var());
            relus.push(relu.into_ciphertext());
            refreshes.push(refresh.into_ciphertext());
        }

        let top = params.top_level();
        let sign_scale = rescale_divisor(self.eval, top, self.cfg.sign_primes);
        self.rounds_sent += 1;
        self.state = State::AwaitRound {
            round,
            layer,
            masks,
            scale,
            noise_vars,
            sign_scale,
        };
        Ok(ServerMessage::Round(RoundRequest {
            round,
            period: period as u32,
            sign_scale,
            relu: relus,
            refresh: refreshes,
        }))
    }

    /// Receives the client's answer to the current round and continues.
    pub fn on_reply(&mut self, reply: &RoundReply) -> Result<ServerMessage, ProtocolError> {
        // Any error ends the inference: the state is taken out and not put back.
        let State::AwaitRound {
            round,
            layer,
            masks,
            scale,
            noise_vars,
            sign_scale,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ProtocolError::Violation("no round in progress"));
        };
        if reply.round != round {
            return Err(ProtocolError::Violation("reply to another round"));
        }
        if reply.signs.len() != masks.len() || reply.refreshed.len() != masks.len() {
            return Err(ProtocolError::Violation(
                "expected one ciphertext of each kind per ciphertext sent",
            ));
        }
        let start = Instant::now();
        let ctx = self.eval.ctx();
        let top = ctx.params().top_level();
        let eval = self.eval;
        let period = self.model.shapes[layer].out_period;
        let mut products = Vec::with_capacity(masks.len());
        for (c, mask) in masks.iter().enumerate() {
            // Remove the mask exactly: z = Δ·y + e at the top level.
            let mut z = Ct::from_client(ctx, &reply.refreshed[c], top)?;
            if z.scale() != scale {
                return Err(ProtocolError::Violation(
                    "refreshed ciphertext at the wrong scale",
                ));
            }
            z.add_noise_variance(noise_vars[c]);
            let r_top = mask.residues(ctx, Basis::level(top))?.into_ntt(ctx)?;
            eval.sub_integer_mask(&mut z, &r_top)?;

            let sigma = Ct::from_client(ctx, &reply.signs[c], top)?;
            if sigma.scale() != sign_scale {
                return Err(ProtocolError::Violation("signs at the wrong scale"));
            }

            // z' = ρ∘y and σ' = sign(z'), so ReLU(y) = ½·z'∘(σ' + ρ): one ct×ct product, and
            // the ½ is folded into the next layer. σ' + ρ ∈ {0, ±2}; adding ρ costs no level.
            let rho_c = self.signs[layer]
                .get(c * period..(c + 1) * period)
                .ok_or(ProtocolError::Violation("more ciphertexts than positions"))?;
            let rho = eval.encode_periodic(rho_c, sign_scale, top)?;
            let factor = eval.add_plain(&sigma, &rho)?;
            let prod = eval.mul(&z, &factor, self.cfg.value_bound, 2.0, &self.keys)?;
            // Δ_σ is exactly the product of the primes rescaled away, so the scale returns to
            // the activation scale.
            products.push(eval.rescale_to(&prod, self.cfg.sign_primes, scale)?);
        }
        let next = layer + 1;
        let ys = self.apply_layer(next, &products)?;
        let eval_time = start.elapsed();
        self.emit(next, ys, eval_time)
    }

    /// Rounds sent so far.
    pub fn rounds_sent(&self) -> u32 {
        self.rounds_sent
    }

    /// The client's evaluation keys this inference uses.
    pub fn keys(&self) -> Arc<EvalKeys> {
        self.keys.clone()
    }

    /// True once the output has been sent.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}
