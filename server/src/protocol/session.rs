//! One inference on the server: per-inference permutations, layer evaluation, rounds.

use std::time::{Duration, Instant};

use client_core::cipher::SeededCiphertext;
use client_core::params::Params;
use client_core::protocol::{InputSpec, OutputMessage, RoundReply, RoundRequest, ServerMessage};
use client_core::rand_core::{Rng, SeedableRng};
use client_core::ring::Basis;
use client_core::sampling::{Csprng, Seed};

use super::mask::IntegerMask;
use super::model::Model;
use super::ProtocolError;
use crate::eval::{rescale_divisor, Ct, EvalKeys, Evaluator, FloodReport, LinearTransform, Matrix};

/// Scales and bounds of the protocol (chosen by the parameter planner).
#[derive(Clone, Debug, PartialEq)]
pub struct ProtocolConfig {
    /// Scale Δ of inputs and activations.
    pub scale: f64,
    /// Primes removed by each rescale (Δ ≈ their product).
    pub rescale_primes: usize,
    /// Primes spanned by the sign scale (the ReLU product is rescaled by them).
    pub sign_primes: usize,
    /// Scale of the ReLU multiplier plaintext r.
    pub r_scale: f64,
    /// |r| is uniform in [1, 2^r_spread_bits].
    pub r_spread_bits: u32,
    /// Bound on |pre-activation| (dummies are drawn uniformly from ±value_bound).
    pub value_bound: f64,
    /// Statistical security of masks and flooding (bits).
    pub stat_bits: u32,
}

impl ProtocolConfig {
    /// The configuration for a parameter set whose default scale spans `scale_primes` primes.
    ///
    /// Linear layers encode their plaintexts at one prime's scale (2^44 is far more precision
    /// than the weights need) and rescale by that prime. The ReLU product's sign scale spans
    /// `scale_primes` primes: the client's fresh encryption noise, relative to Δ_σ, multiplies
    /// Δ·Y, so Δ_σ must be about Δ for that noise to stay negligible.
    pub fn for_params(params: &Params, scale_primes: usize, value_bound: f64) -> Self {
        Self {
            scale: params.default_scale(),
            rescale_primes: 1,
            sign_primes: scale_primes,
            r_scale: 2f64.powi(30),
            r_spread_bits: 4,
            value_bound,
            stat_bits: params.stat_sec_bits(),
        }
    }
}

/// Where a layer's vectors sit in the slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LayerShape {
    /// Period of the input vector.
    in_period: usize,
    /// Period the transform works with (≥ in_period when a layer widens).
    lt_period: usize,
    /// Rows of the (permuted, padded) matrix.
    rows: usize,
    /// Period of the output vector.
    out_period: usize,
}

/// A model with its slot layout worked out.
pub struct CompiledModel {
    model: Model,
    shapes: Vec<LayerShape>,
    /// (shift, copies) of the client's input layout.
    input_layout: (usize, usize),
    /// Most replicas each layer's transform may use.
    replicas: Vec<usize>,
}

/// Level of the client's input: the first layer consumes `rescale_primes` levels and its output
/// goes to the hand-off level.
fn input_level(params: &Params, cfg: &ProtocolConfig) -> usize {
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
    fn transform(
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
        mask: IntegerMask,
        scale: f64,
        noise_var: f64,
        sign_scale: f64,
    },
    Done,
}

/// The server's state for one inference.
pub struct Inference<'a> {
    eval: &'a Evaluator,
    keys: &'a EvalKeys,
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
    prepared: Vec<Option<(LinearTransform, Vec<f64>)>>,
    /// How every outgoing message was hidden.
    pub audits: Vec<HidingAudit>,
    /// Per-layer server time.
    pub costs: Vec<RoundCost>,
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

fn uniform(rng: &mut Csprng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

impl<'a> Inference<'a> {
    /// Starts an inference; `seed` must come from the server's entropy source. Draws the fresh
    /// permutations of every hidden layer.
    pub fn new(
        eval: &'a Evaluator,
        keys: &'a EvalKeys,
        model: &'a CompiledModel,
        cfg: &'a ProtocolConfig,
        seed: Seed,
    ) -> Self {
        let mut rng = Csprng::from_seed(seed);
        let hidden: Vec<usize> = model
            .shapes
            .iter()
            .zip(&model.model.layers)
            .filter(|(_, l)| l.relu)
            .map(|(s, _)| s.out_period)
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
            let (lt, bias) = self.permuted_layer(i)?;
            if i == 0 {
                lt.prepare(self.eval, input_level(params, self.cfg), primes)?;
            } else {
                let level = params.top_level() - self.cfg.sign_primes;
                lt.prepare_from_periodic(self.eval, level, primes)?;
            }
            prepared.push(Some((lt, bias)));
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

    /// Layer `i` with this inference's permutation and signs folded in: (transform, bias over
    /// the output rows, including random dummies at the padding positions). A hidden layer's
    /// row t is multiplied by ρ_i[t].
    fn permuted_layer(&mut self, i: usize) -> Result<(LinearTransform, Vec<f64>), ProtocolError> {
        let layer = &self.model.model.layers[i];
        let shape = self.model.shapes[i];
        let (m, n) = (layer.weights.rows, layer.weights.cols);
        let cols = shape.in_period;
        let row_pos: Vec<usize> = if layer.relu {
            self.perms[i][..m].to_vec()
        } else {
            (0..m).collect()
        };
        // ½ of ReLU = ½(z + z·sign z) is folded into the next layer.
        let (col_pos, col_scale): (Vec<usize>, f64) = if i == 0 {
            ((0..n).collect(), 1.0)
        } else {
            (self.perms[i - 1][..n].to_vec(), 0.5)
        };
        let mut data = vec![0.0; shape.rows * cols];
        let row_sign = |r: usize| {
            if layer.relu {
                self.signs[i][r]
            } else {
                1.0
            }
        };
        for (j, &r) in row_pos.iter().enumerate() {
            let scale = col_scale * row_sign(r);
            for (k, &c) in col_pos.iter().enumerate() {
                data[r * cols + c] = layer.weights.get(j, k) * scale;
            }
        }
        let mut bias = vec![0.0; shape.rows];
        if layer.relu {
            // Dummies: the padding positions get values the client cannot tell from neurons.
            for b in bias.iter_mut() {
                *b = (2.0 * uniform(&mut self.rng) - 1.0) * self.cfg.value_bound * 0.5;
            }
        }
        for (j, &r) in row_pos.iter().enumerate() {
            bias[r] = layer.bias[j] * row_sign(r);
        }
        let matrix = Matrix {
            rows: shape.rows,
            cols,
            data,
        };
        let slots = self.eval.ctx().params().slots();
        Ok((self.model.transform(i, &matrix, slots)?, bias))
    }

    /// W'·x + b' for layer `i`.
    fn apply_layer(&mut self, i: usize, x: &Ct) -> Result<Ct, ProtocolError> {
        let (lt, bias) = match self.prepared.get_mut(i).and_then(Option::take) {
            Some(prepared) => prepared,
            None => self.permuted_layer(i)?,
        };
        let primes = self.cfg.rescale_primes;
        let y = if i == 0 {
            lt.apply_rescaling(self.eval, x, self.keys, primes)?
        } else {
            lt.apply_from_periodic(self.eval, x, self.keys, primes)?
        };
        let period = lt.output_period();
        let one_period: Vec<f64> = (0..period)
            .map(|t| bias.get(t).copied().unwrap_or(0.0))
            .collect();
        let b = self.eval.encode_periodic(&one_period, y.scale, y.level())?;
        Ok(self.eval.add_plain(&y, &b)?)
    }

    /// Receives the encrypted input and answers with the first round (or the output).
    pub fn on_input(&mut self, input: &[SeededCiphertext]) -> Result<ServerMessage, ProtocolError> {
        if !matches!(self.state, State::AwaitInput) {
            return Err(ProtocolError::Violation(
                "input after the inference started",
            ));
        }
        if input.len() != 1 {
            return Err(ProtocolError::Violation("expected one input ciphertext"));
        }
        let ctx = self.eval.ctx();
        let ct = input[0].expand(ctx)?;
        ct.validate_level(ctx, input_level(ctx.params(), self.cfg))?;
        if ct.scale != self.cfg.scale {
            return Err(ProtocolError::Violation("input at the wrong scale"));
        }
        let x = Ct::from_fresh(ctx, ct)?;
        let start = Instant::now();
        let y = self.apply_layer(0, &x)?;
        let eval = start.elapsed();
        self.emit(0, y, eval)
    }

    /// Sends layer `layer`'s output: a round if ReLU follows, else the result.
    fn emit(
        &mut self,
        layer: usize,
        y: Ct,
        eval_time: Duration,
    ) -> Result<ServerMessage, ProtocolError> {
        let start = Instant::now();
        let ctx = self.eval.ctx();
        let params = ctx.params();
        let h = params.handoff_level();
        let y_h = self.eval.drop_to_level(&y, h)?;
        let msg = if !self.model.model.layers[layer].relu {
            let (out, flood) = self
                .eval
                .prepare_outgoing(&y_h, h, self.keys, &mut self.rng)?;
            self.audits.push(HidingAudit {
                layer,
                refresh_coeff_bound_bits: 0.0,
                mask_bits: 0.0,
                flood,
            });
            self.state = State::Done;
            ServerMessage::Output(OutputMessage {
                len: self.model.model.output_len() as u32,
                output: vec![out.into_ciphertext()],
            })
        } else {
            self.round_message(layer, y_h)?
        };
        self.costs.push(RoundCost {
            layer,
            eval: eval_time,
            messages: start.elapsed(),
        });
        Ok(msg)
    }

    fn round_message(&mut self, layer: usize, y_h: Ct) -> Result<ServerMessage, ProtocolError> {
        let ctx = self.eval.ctx();
        let params = ctx.params();
        let n = ctx.n();
        let h = params.handoff_level();
        let round = self.rounds_sent;
        let period = self.model.shapes[layer].out_period;

        // HeRefresh: A ≥ N·B·2^(s−1) for the coefficient bound B of Δ·y + e.
        let coeff_bound = y_h.scale * self.cfg.value_bound + y_h.noise_bound();
        let log_a = ((n as f64 * coeff_bound).log2() + self.cfg.stat_bits as f64 - 1.0).ceil();
        let room = params.log_q(h) - 2.0;
        if log_a + 1.0 > room {
            return Err(ProtocolError::Budget(format!(
                "refresh mask needs 2^{log_a:.0} but the hand-off modulus leaves 2^{room:.1}"
            )));
        }
        let mask = IntegerMask::sample(n, log_a as u32, &mut self.rng)?;
        let mut refresh = self.eval.rerandomize(&y_h, self.keys, &mut self.rng)?;
        let r_poly = mask.residues(ctx, Basis::level(h))?.into_ntt(ctx)?;
        refresh.c0.add_assign(ctx, &r_poly)?;

        // HeReLU: y'∘|r| (y' = ρ∘y already carries the random sign) with |r| zero outside the
        // first period, flooded.
        let slots = params.slots();
        let spread = 2f64.powi(self.cfg.r_spread_bits as i32);
        let mut r = vec![0.0; slots];
        for r_t in r.iter_mut().take(period) {
            *r_t = 1.0 + uniform(&mut self.rng) * (spread - 1.0);
        }
        let r_pt = self.eval.encode(&r, self.cfg.r_scale, h)?;
        let masked = self.eval.mul_plain(&y_h, &r_pt)?;
        let (relu, flood) = self
            .eval
            .prepare_outgoing(&masked, h, self.keys, &mut self.rng)?;
        self.audits.push(HidingAudit {
            layer,
            refresh_coeff_bound_bits: coeff_bound.log2(),
            mask_bits: log_a,
            flood,
        });

        let top = params.top_level();
        let sign_scale = rescale_divisor(self.eval, top, self.cfg.sign_primes);
        self.rounds_sent += 1;
        self.state = State::AwaitRound {
            round,
            layer,
            mask,
            scale: y_h.scale,
            noise_var: y_h.noise_var,
            sign_scale,
        };
        Ok(ServerMessage::Round(RoundRequest {
            round,
            period: period as u32,
            sign_scale,
            relu: vec![relu.into_ciphertext()],
            refresh: vec![refresh.into_ciphertext()],
        }))
    }

    /// Receives the client's answer to the current round and continues.
    pub fn on_reply(&mut self, reply: &RoundReply) -> Result<ServerMessage, ProtocolError> {
        // Any error ends the inference: the state is taken out and not put back.
        let State::AwaitRound {
            round,
            layer,
            mask,
            scale,
            noise_var,
            sign_scale,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ProtocolError::Violation("no round in progress"));
        };
        if reply.round != round {
            return Err(ProtocolError::Violation("reply to another round"));
        }
        if reply.signs.len() != 1 || reply.refreshed.len() != 1 {
            return Err(ProtocolError::Violation(
                "expected one ciphertext of each kind",
            ));
        }
        let start = Instant::now();
        let ctx = self.eval.ctx();
        let top = ctx.params().top_level();
        let eval = self.eval;

        // Remove the mask exactly: z = Δ·y + e at the top level.
        let z_ct = reply.refreshed[0].expand(ctx)?;
        z_ct.validate_level(ctx, top)?;
        if z_ct.scale != scale {
            return Err(ProtocolError::Violation(
                "refreshed ciphertext at the wrong scale",
            ));
        }
        let mut z = Ct::from_fresh(ctx, z_ct)?;
        z.noise_var += noise_var;
        let r_top = mask.residues(ctx, Basis::level(top))?.into_ntt(ctx)?;
        z.c0.sub_assign(ctx, &r_top)?;

        let s_ct = reply.signs[0].expand(ctx)?;
        s_ct.validate_level(ctx, top)?;
        if s_ct.scale != sign_scale {
            return Err(ProtocolError::Violation("signs at the wrong scale"));
        }
        let sigma = Ct::from_fresh(ctx, s_ct)?;

        // z' = ρ∘y and σ' = sign(z'), so ReLU(y) = ½·z'∘(σ' + ρ): one ct×ct product, and the ½ is
        // folded into the next layer. σ' + ρ ∈ {0, ±2}; adding ρ costs no level.
        let rho = eval.encode_periodic(&self.signs[layer], sign_scale, top)?;
        let factor = eval.add_plain(&sigma, &rho)?;
        let mut prod = eval.mul(&z, &factor, self.cfg.value_bound, 2.0, self.keys)?;
        for _ in 0..self.cfg.sign_primes {
            prod = eval.rescale(&prod)?;
        }
        // Δ_σ is exactly the product of the primes rescaled away, so the scale returns to the
        // activation scale up to f64 rounding; anything more is a bug.
        if (prod.scale / scale - 1.0).abs() > 1e-9 {
            return Err(ProtocolError::Eval(crate::eval::EvalError::ScaleMismatch(
                prod.scale.log2(),
                scale.log2(),
            )));
        }
        prod.scale = scale;
        let next = layer + 1;
        let y = self.apply_layer(next, &prod)?;
        let eval_time = start.elapsed();
        self.emit(next, y, eval_time)
    }

    /// True once the output has been sent.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}
