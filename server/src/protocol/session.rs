//! One inference on the server: per-inference permutations, layer evaluation, rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use client_core::cipher::SeededCiphertext;
use client_core::protocol::{InputSpec, OutputMessage, RoundReply, RoundRequest, ServerMessage};
use client_core::rand_core::{Rng, SeedableRng};
use client_core::ring::Basis;
use client_core::sampling::{Csprng, Seed};

use super::compiled::{input_level, CompiledModel};
use super::config::ProtocolConfig;
use super::mask::IntegerMask;
use super::ProtocolError;
use crate::eval::{rescale_divisor, Ct, EvalKeys, Evaluator, FloodReport, LinearTransform, Matrix};

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
        keys: Arc<EvalKeys>,
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
            lt.apply_rescaling(self.eval, x, &self.keys, primes)?
        } else {
            lt.apply_from_periodic(self.eval, x, &self.keys, primes)?
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
                .prepare_outgoing(&y_h, h, &self.keys, &mut self.rng)?;
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
        let mut refresh = self.eval.rerandomize(&y_h, &self.keys, &mut self.rng)?;
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
            .prepare_outgoing(&masked, h, &self.keys, &mut self.rng)?;
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
        let mut prod = eval.mul(&z, &factor, self.cfg.value_bound, 2.0, &self.keys)?;
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
