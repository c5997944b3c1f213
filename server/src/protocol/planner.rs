//! The parameter planner: given a model's calibrated value bound and the security targets,
//! choose the parameter set and protocol scales and verify every budget, or name the one that
//! fails.
//!
//! Budgets, at the hand-off level with modulus Q_h (bits as log2):
//! * **security**: log QP within the 128-bit bound of N;
//! * **levels**: a round (ReLU product, re-layout, transform) must fit between the top level and
//!   the hand-off level;
//! * **refresh room**: the mask A = N·B·2^(s−1), B = Δ·Y + E, must leave A + B < Q_h/2;
//! * **flooding room**: the ReLU message Δ·Δ_r·Y·2^spread and its flooding N·E_r·2^(s−1) must fit
//!   below Q_h/2;
//! * **sign precision**: how small |y|/Y may be for sign(y·r) to survive flooding;
//! * **output precision**: absolute precision of the logits after flooding.
//!
//! E is the noise bound of a layer output (two rescales by 44-bit primes leave rounding noise of
//! about √N; the planner uses 2^13, above every value measured in the tests, 2^8–2^11).

use client_core::params::{ParamSpec, Params, RoundKind, HEFUN_N16384, HEFUN_N8192};

use super::{ProtocolConfig, ProtocolError};
use crate::model::CompiledModel;

/// Noise bound (log2) assumed for a layer's output before re-randomisation.
const LAYER_NOISE_BITS: f64 = 13.0;

/// The verified margins of a plan, in bits (all must be ≥ 0 except the precisions, which are
/// reported as achieved).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Margins {
    /// Bits left below the 128-bit bound on log2(QP).
    pub security_slack: f64,
    /// Levels left over in each round.
    pub spare_levels: usize,
    /// Bits left above refresh mask + message at the hand-off level.
    pub refresh_room: f64,
    /// Bits left above the flooded ReLU message at the hand-off level.
    pub flood_room: f64,
    /// The sign of y·r is reliable for |y| ≥ Y·2^-sign_precision.
    pub sign_precision: f64,
    /// Absolute precision of the output values after flooding.
    pub output_precision: f64,
    /// log2 of the refresh mask bound A the protocol will use (at most).
    pub mask_bits: f64,
    /// log2 of the flooding bound of the ReLU message.
    pub flood_bits: f64,
}

/// A verified choice of parameters and protocol scales.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The parameter set.
    pub params: Params,
    /// The protocol configuration.
    pub cfg: ProtocolConfig,
    /// What was verified.
    pub margins: Margins,
}

/// Plans for `model` with pre-activations bounded by `value_bound`, statistical security
/// `stat_bits` and sign precision at least `min_sign_bits`.
pub fn plan(
    model: &CompiledModel,
    value_bound: f64,
    stat_bits: u32,
    min_sign_bits: f64,
) -> Result<Plan, ProtocolError> {
    plan_with(&HEFUN_N16384, model, value_bound, stat_bits, min_sign_bits)
}

/// [`plan`] for a given preset (its default scale spans two primes per rescale).
pub fn plan_with(
    spec: &ParamSpec,
    model: &CompiledModel,
    value_bound: f64,
    stat_bits: u32,
    min_sign_bits: f64,
) -> Result<Plan, ProtocolError> {
    let params = Params::from_spec(spec)?;
    if !(value_bound.is_finite() && value_bound > 0.0) {
        return Err(ProtocolError::Budget("value bound must be positive".into()));
    }
    let slots = params.slots();
    model.rotation_steps(slots)?;
    let mut cfg = ProtocolConfig::for_params(&params, 2, value_bound);
    cfg.stat_bits = stat_bits;
    let n = params.log_n() as f64;
    let s = stat_bits as f64;
    let log_qh = params.log_q(params.handoff_level());
    let delta = cfg.scale.log2();
    let y = value_bound.log2();
    let r_scale = cfg.r_scale.log2();
    let spread = cfg.r_spread_bits as f64;
    // Re-randomisation adds public-key noise of ≈ 10·√(10.5·(1 + 4N/3)) ≈ 2^12.2 at N = 2^14.
    let e = (2f64.powf(LAYER_NOISE_BITS) + 2f64.powf(12.2)).log2();

    let security_slack = params.security()?.slack_bits();
    let available = params.top_level() - params.handoff_level();
    let needed = model.round_levels(&cfg).max(cfg.rescale_primes);
    let spare_levels = available.checked_sub(needed).ok_or_else(|| {
        ProtocolError::Budget(format!(
            "levels: a round needs {needed} levels, {} has {available} between the top and the hand-off",
            params.name()
        ))
    })?;

    let input_level = model.input_level(&params, &cfg);
    if input_level > params.top_level() {
        return Err(ProtocolError::Budget(format!(
            "levels: the first layer needs its input at level {input_level}, {} tops out at {}",
            params.name(),
            params.top_level()
        )));
    }

    // Refresh: A = N·B·2^(s−1), B = Δ·Y + E.
    let b = (2f64.powf(delta + y) + 2f64.powf(e)).log2();
    let mask_bits = (n + b + s - 1.0).ceil();
    let refresh_room = (log_qh - 2.0) - (mask_bits + 1.0);
    if refresh_room < 0.0 {
        return Err(ProtocolError::Budget(format!(
            "refresh mask: needs 2^{mask_bits:.0} for |y| ≤ {value_bound} at 2^-{stat_bits}, the hand-off modulus leaves 2^{:.1}",
            log_qh - 3.0
        )));
    }

    // ReLU message: noise E·‖r_pt‖ with ‖r_pt‖ ≈ Δ_r·rms(r) ≤ Δ_r·2^spread, then flooding.
    let e_r = e + r_scale + spread;
    let flood_bits = (n + e_r + s - 1.0).ceil();
    let message_bits = delta + r_scale + y + spread;
    let flood_room = (log_qh - 2.0) - (message_bits.max(flood_bits) + 1.0);
    if flood_room < 0.0 {
        return Err(ProtocolError::Budget(format!(
            "flooding: the ReLU message needs 2^{:.0}, the hand-off modulus leaves 2^{:.1}",
            message_bits.max(flood_bits) + 1.0,
            log_qh - 2.0
        )));
    }
    // Slot noise of flooding ≈ 2^flood·√(N/3)/(Δ·Δ_r) in value units; |r| ≥ 1.
    let slot_noise = flood_bits + (n - 3f64.log2()) / 2.0 - delta - r_scale;
    let sign_precision = y - slot_noise;
    if sign_precision < min_sign_bits {
        return Err(ProtocolError::Budget(format!(
            "sign precision: signs are reliable only for |y| ≥ Y·2^-{sign_precision:.1}, {min_sign_bits} bits were asked"
        )));
    }
    // Output: flooding of noise E at scale Δ.
    let out_flood = (n + e + s - 1.0).ceil();
    let output_precision = delta - out_flood - (n - 3f64.log2()) / 2.0;
    Ok(Plan {
        params,
        cfg,
        margins: Margins {
            security_slack,
            spare_levels,
            refresh_room,
            flood_room,
            sign_precision,
            output_precision,
            mask_bits,
            flood_bits,
        },
    })
}

/// log2 of the weights' scale Δ_w under the sign-magnitude round. The weights' encoding error
/// is absolute in the slots (≈ √(N/12)/Δ_w per diagonal entry) and multiplies the layer's whole
/// input (v, |v|), whose norm reaches 2^10 for MNIST: 2^30 keeps it near 2^-13.
pub const SIGN_MAGNITUDE_WEIGHT_BITS: u32 = 30;

/// Noise bound (log2, coefficient units, over Δ_w) assumed for a layer's output under the
/// sign-magnitude round, after re-randomisation: the client's fresh encryption noise times the
/// weights' plaintext norms, plus key-switching noise. The protocol tests check it against the
/// evaluator's estimate of every message sent.
const SIGN_MAGNITUDE_NOISE_BITS: f64 = 16.0;

/// Plans `model` (laid out for the sign-magnitude round) on [`HEFUN_N8192`].
pub fn plan_light(
    model: &CompiledModel,
    value_bound: f64,
    stat_bits: u32,
    min_sign_bits: f64,
) -> Result<Plan, ProtocolError> {
    plan_sign_magnitude(&HEFUN_N8192, model, value_bound, stat_bits, min_sign_bits)
}

/// The sign-magnitude round's budgets on `spec`, which must be one level (nothing is
/// rescaled): the client scale Δ_c is chosen as large as the modulus allows, since it alone
/// sets the activations' precision.
///
/// * **message**: Δ_c·Δ_w·Y·2^spread (the layer output times |r|) below Q/2 with room for the
///   flooding;
/// * **flooding**: N·E·2^(s−1) for the output noise E ≤ Δ_w·2^16, below Q/2;
/// * **sign precision**: the flooding's slot noise √(N/3)·2^flood/(Δ_c·Δ_w) against Y; this
///   is also the absolute error |ε| ≥ |ε|/|r| carried into the next layer's activations;
/// * **output precision**: the same noise on the logits.
pub fn plan_sign_magnitude(
    spec: &ParamSpec,
    model: &CompiledModel,
    value_bound: f64,
    stat_bits: u32,
    min_sign_bits: f64,
) -> Result<Plan, ProtocolError> {
    let params = Params::from_spec(spec)?;
    if params.round() != RoundKind::SignMagnitude || !model.paired() {
        return Err(ProtocolError::Budget(format!(
            "{} and the model's layout must both be for the sign-magnitude round",
            params.name()
        )));
    }
    if !(value_bound.is_finite() && value_bound > 0.0) {
        return Err(ProtocolError::Budget("value bound must be positive".into()));
    }
    model.rotation_steps(params.slots())?;
    let security_slack = params.security()?.slack_bits();
    let n = params.log_n() as f64;
    let s = stat_bits as f64;
    let w = SIGN_MAGNITUDE_WEIGHT_BITS as f64;
    let y = value_bound.log2();
    let spread = 4.0;
    let log_q = params.log_q(params.top_level());
    let e = w + SIGN_MAGNITUDE_NOISE_BITS;
    let flood_bits = (n + e + s - 1.0).ceil();
    // The largest Δ_c whose message keeps one bit of room under Q/4 (flooding adds to it).
    let c = (log_q - 3.0 - w - y - spread).floor() - 1.0;
    if c < 20.0 {
        return Err(ProtocolError::Budget(format!(
            "message: |y| ≤ {value_bound} leaves the client a scale of 2^{c:.0} on {}",
            params.name()
        )));
    }
    let message_bits = c + w + y + spread;
    let flood_room = (log_q - 2.0) - (message_bits.max(flood_bits) + 1.0);
    if flood_room < 0.0 {
        return Err(ProtocolError::Budget(format!(
            "flooding: the ReLU message needs 2^{:.0}, the modulus leaves 2^{:.1}",
            message_bits.max(flood_bits) + 1.0,
            log_q - 2.0
        )));
    }
    let slot_noise = flood_bits + (n - 3f64.log2()) / 2.0 - c - w;
    let sign_precision = y - slot_noise;
    if sign_precision < min_sign_bits {
        return Err(ProtocolError::Budget(format!(
            "sign precision: signs are reliable only for |y| ≥ Y·2^-{sign_precision:.1}, {min_sign_bits} bits were asked"
        )));
    }
    let mut cfg =
        ProtocolConfig::sign_magnitude(&params, c as u32, SIGN_MAGNITUDE_WEIGHT_BITS, value_bound);
    cfg.stat_bits = stat_bits;
    Ok(Plan {
        params,
        cfg,
        margins: Margins {
            security_slack,
            spare_levels: 0,
            refresh_room: flood_room,
            flood_room,
            sign_precision,
            output_precision: -slot_noise,
            mask_bits: 0.0,
            flood_bits,
        },
    })
}
