//! One inference on the server: the state machine that runs the protocol steps in order, from
//! the client's input, through one round per hidden layer, to the output.

use std::sync::Arc;
use std::time::{Duration, Instant};

use client_core::cipher::SeededCiphertext;
use client_core::rand_core::SeedableRng;
use client_core::sampling::{Csprng, Seed};
use client_core::wire::assembled::{OutputMessage, RoundReply, RoundRequest, ServerMessage};
use client_core::wire::input::InputSpec;

use super::config::ProtocolConfig;
use super::magnitude::{client_pairs, magnitude_message};
use super::perm::{Permutations, PermutedLayer};
use super::refresh::{refresh_message, unmask, RefreshSecret};
use super::relu::{client_signs, relu_message, relu_product, sign_scale};
use super::ProtocolError;
use crate::eval::{Ct, EvalKeys, Evaluator, FloodReport};
use crate::model::CompiledModel;

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
        pending: Pending,
    },
    Done,
}

/// What the server keeps of a round until the client's reply.
enum Pending {
    /// The refresh round.
    Refresh {
        /// One per ciphertext of the layer.
        refreshes: Vec<RefreshSecret>,
        scale: f64,
        sign_scale: f64,
    },
    /// The sign-magnitude round: only how many ciphertexts the reply must hold.
    SignMagnitude { reply_ciphertexts: usize },
}

/// The server's state for one inference.
pub struct Inference<'a> {
    eval: &'a Evaluator,
    keys: Arc<EvalKeys>,
    model: &'a CompiledModel,
    cfg: &'a ProtocolConfig,
    rng: Csprng,
    perms: Permutations,
    state: State,
    rounds_sent: u32,
    /// Layers compiled and encoded ahead by [`Inference::prepare`].
    prepared: Vec<Option<PermutedLayer>>,
    /// How every outgoing message was hidden.
    pub audits: Vec<HidingAudit>,
    /// Per-layer server time.
    pub costs: Vec<RoundCost>,
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
        let spread = cfg.sign_magnitude_round().then_some(cfg.r_spread_bits);
        let perms = Permutations::draw(model, &mut rng, spread);
        Self {
            eval,
            keys,
            model,
            cfg,
            rng,
            perms,
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
        let layers = self.model.model().layers.len();
        let mut prepared = Vec::with_capacity(layers);
        for i in 0..layers {
            let layer = self.permuted_layer(i)?;
            let level = if i == 0 {
                self.model.input_level(params, self.cfg)
            } else {
                params.top_level() - self.cfg.sign_primes
            };
            layer.prepare(self.eval, i == 0, level, self.cfg)?;
            prepared.push(Some(layer));
        }
        self.prepared = prepared;
        Ok(())
    }

    /// The input layout this inference expects.
    pub fn input_spec(&self) -> InputSpec {
        self.model.input_spec(self.eval.ctx().params(), self.cfg)
    }

    /// The layouts of the rounds' replies (sign-magnitude round; empty otherwise).
    pub fn round_input_specs(&self) -> Vec<InputSpec> {
        self.model
            .round_input_specs(self.eval.ctx().params(), self.cfg)
    }

    /// The permutation of hidden layer `layer` (for tests of HePerm).
    pub fn permutation(&self, layer: usize) -> Option<&[usize]> {
        self.perms.permutation(layer)
    }

    fn permuted_layer(&mut self, i: usize) -> Result<PermutedLayer, ProtocolError> {
        let slots = self.eval.ctx().params().slots();
        PermutedLayer::new(self.model, &self.perms, i, slots, &mut self.rng)
    }

    /// W'·x + b' for layer `i`, prepared ahead or compiled now.
    fn apply_layer(&mut self, i: usize, xs: &[Ct]) -> Result<Vec<Ct>, ProtocolError> {
        let layer = match self.prepared.get_mut(i).and_then(Option::take) {
            Some(prepared) => prepared,
            None => self.permuted_layer(i)?,
        };
        layer.apply(self.eval, &self.keys, i == 0, xs, self.cfg)
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
        let msg = if !self.model.model().layers[layer].relu {
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
                len: self.model.model().output_len() as u32,
                output,
            })
        } else if self.cfg.sign_magnitude_round() {
            self.magnitude_round(layer, ys_h)?
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

    /// HeRefresh's and HeReLU's messages for every ciphertext of layer `layer`'s output.
    fn round_message(
        &mut self,
        layer: usize,
        ys_h: Vec<Ct>,
    ) -> Result<ServerMessage, ProtocolError> {
        let round = self.rounds_sent;
        let period = self.model.shapes()[layer].out_period;
        let mut secrets = Vec::new();
        let (mut relus, mut refreshes) = (Vec::new(), Vec::new());
        let scale = ys_h.first().map_or(self.cfg.scale, Ct::scale);
        for y_h in &ys_h {
            let refresh = refresh_message(self.eval, &self.keys, self.cfg, y_h, &mut self.rng)?;
            let (relu, flood) =
                relu_message(self.eval, &self.keys, self.cfg, y_h, period, &mut self.rng)?;
            self.audits.push(HidingAudit {
                layer,
                refresh_coeff_bound_bits: refresh.coeff_bound.log2(),
                mask_bits: refresh.mask_bits,
                flood,
            });
            secrets.push(refresh.secret);
            relus.push(relu.into_ciphertext());
            refreshes.push(refresh.message);
        }
        let sign_scale = sign_scale(self.eval, self.cfg);
        self.rounds_sent += 1;
        self.state = State::AwaitRound {
            round,
            layer,
            pending: Pending::Refresh {
                refreshes: secrets,
                scale,
                sign_scale,
            },
        };
        Ok(ServerMessage::Round(RoundRequest {
            round,
            period: period as u32,
            sign_scale,
            relu: relus,
            refresh: refreshes,
        }))
    }

    /// The sign-magnitude round's message for layer `layer`'s output: the flooded ReLU
    /// messages only.
    fn magnitude_round(
        &mut self,
        layer: usize,
        ys: Vec<Ct>,
    ) -> Result<ServerMessage, ProtocolError> {
        let round = self.rounds_sent;
        let period = self.model.shapes()[layer].out_period;
        let mut relus = Vec::with_capacity(ys.len());
        for y in &ys {
            let (relu, flood) = magnitude_message(self.eval, &self.keys, y, &mut self.rng)?;
            self.audits.push(HidingAudit {
                layer,
                refresh_coeff_bound_bits: 0.0,
                mask_bits: 0.0,
                flood,
            });
            relus.push(relu.into_ciphertext());
        }
        let slots = self.eval.ctx().params().slots();
        let reply_ciphertexts = self
            .model
            .round_input_specs(self.eval.ctx().params(), self.cfg)
            .get(round as usize)
            .ok_or(ProtocolError::Violation("more rounds than hidden layers"))?
            .ciphertexts(slots)?;
        self.rounds_sent += 1;
        self.state = State::AwaitRound {
            round,
            layer,
            pending: Pending::SignMagnitude { reply_ciphertexts },
        };
        Ok(ServerMessage::Round(RoundRequest {
            round,
            period: period as u32,
            // The scale of the client's reply.
            sign_scale: self.cfg.scale,
            relu: relus,
            refresh: Vec::new(),
        }))
    }

    /// Receives the client's answer to the current round and continues.
    pub fn on_reply(&mut self, reply: &RoundReply) -> Result<ServerMessage, ProtocolError> {
        // Any error ends the inference: the state is taken out and not put back.
        let State::AwaitRound {
            round,
            layer,
            pending,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ProtocolError::Violation("no round in progress"));
        };
        if reply.round != round {
            return Err(ProtocolError::Violation("reply to another round"));
        }
        let (refreshes, scale, sign_scale) = match pending {
            Pending::Refresh {
                refreshes,
                scale,
                sign_scale,
            } => (refreshes, scale, sign_scale),
            Pending::SignMagnitude { reply_ciphertexts } => {
                if !reply.signs.is_empty() {
                    return Err(ProtocolError::Violation(
                        "signs in a sign-magnitude round's reply",
                    ));
                }
                let start = Instant::now();
                let xs = client_pairs(self.eval, self.cfg, &reply.refreshed, reply_ciphertexts)?;
                let next = layer + 1;
                let ys = self.apply_layer(next, &xs)?;
                let eval_time = start.elapsed();
                return self.emit(next, ys, eval_time);
            }
        };
        if reply.signs.len() != refreshes.len() || reply.refreshed.len() != refreshes.len() {
            return Err(ProtocolError::Violation(
                "expected one ciphertext of each kind per ciphertext sent",
            ));
        }
        let start = Instant::now();
        let period = self.model.shapes()[layer].out_period;
        let mut products = Vec::with_capacity(refreshes.len());
        for (c, secret) in refreshes.iter().enumerate() {
            let z = unmask(self.eval, &reply.refreshed[c], secret, scale)?;
            let sigma = client_signs(self.eval, &reply.signs[c], sign_scale)?;
            let rho = self
                .perms
                .signs(layer)
                .get(c * period..(c + 1) * period)
                .ok_or(ProtocolError::Violation("more ciphertexts than positions"))?;
            products.push(relu_product(
                self.eval, &self.keys, self.cfg, &z, &sigma, rho,
            )?);
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
