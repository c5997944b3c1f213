//! Parameter presets. They are plain data so that the parameter planner can replace them.
//!
//! Budget reasoning (DESIGN §4–§5). Per hidden layer the server needs two rescales above the
//! hand-off level (the ReLU product x·sign(x) and the next linear layer); the per-slot ReLU mask r
//! is multiplied without a rescale. At the hand-off level the modulus must hold
//!
//! * a refresh mask: uniform on ±2^(s + log2 N) · B for a message bound B, so that the whole
//!   ciphertext is hidden with statistical distance ≤ 2^-s, and
//! * flooding noise 2^(s + log2 N) times the computation noise, with the masked ReLU values
//!   still well above it.
//!
//! All primes are below 2^50 so that `tfhe-ntt` can use its AVX-512 IFMA kernels on the server.

/// A parameter preset, as bit sizes. [`crate::params::Params::from_spec`] turns it into primes.
#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    /// Name that identifies the preset on the wire and in reports.
    pub name: &'static str,
    /// log2 of the ring dimension N.
    pub log_n: u32,
    /// Bit sizes of the ciphertext primes q0 … qL, bottom first.
    pub q_bits: &'static [u32],
    /// Bit sizes of the special primes for hybrid key switching.
    pub p_bits: &'static [u32],
    /// Ciphertext primes per gadget digit (α).
    pub digit_size: u32,
    /// Level at which the server hands ciphertexts to the client.
    pub handoff_level: u32,
    /// log2 of the default scale.
    pub scale_bits: u32,
    /// Statistical security parameter of refresh masks and noise flooding.
    pub stat_sec_bits: u32,
    /// How a hidden layer's round goes.
    pub round: RoundKind,
}

/// How one round (one hidden layer's activation) goes between server and client.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RoundKind {
    /// HeFUN as published: a ReLU message and a masked refresh message down; fresh signs and
    /// the re-encrypted refresh message up; the server multiplies them (one ct×ct product and
    /// two rescales per round).
    Refresh,
    /// The sign-magnitude round (`docs/light-client.md`): only the flooded ReLU message
    /// v = ρ·y·|r| + ε goes down; the client returns one fresh encryption of (v, |v|) laid out
    /// as the next layer asks, and the server folds ρ/2|r| and 1/2|r| into that layer's
    /// columns. No refresh mask, no ciphertext product, no rescale: one level.
    SignMagnitude,
}

impl ParamSpec {
    /// The same chain on a ring of 2^`log_n` under another name: the preset's structure at a
    /// size tests and fuzzers can run quickly (insecure below the preset's own N; use
    /// `Params::from_spec_insecure`).
    pub const fn on_ring(self, name: &'static str, log_n: u32) -> Self {
        Self {
            name,
            log_n,
            ..self
        }
    }
}

/// Default preset: N = 2^14, meets every target of DESIGN §4.
///
/// * q = 3 × 50-bit (hand-off level 2: 150 bits) + 3 × 45-bit computation primes; P = 3 × 50 bits;
///   α = 3 (two digits at the top level). log2(QP) ≈ 435 ≤ 438.
/// * At the hand-off level a 2^-40 refresh mask needs 40 + 14 + log2 B + 1 bits, so messages up to
///   B ≈ 2^94 fit (2^45 scale × values up to 2^49); flooding at 2^-40 over noise ≤ 2^20 leaves the
///   masked ReLU values more than 2^40 of head-room.
pub const DEFAULT_N16384: ParamSpec = ParamSpec {
    name: "default-n16384",
    log_n: 14,
    q_bits: &[50, 50, 50, 45, 45, 45],
    p_bits: &[50, 50, 50],
    digit_size: 3,
    handoff_level: 2,
    scale_bits: 45,
    stat_sec_bits: 40,
    round: RoundKind::Refresh,
};

/// Compact preset for small microcontrollers: N = 2^13, 128-bit RLWE security, but it **lowers the
/// statistical security parameter of refresh masks and noise flooding from 40 to 30 bits**
/// (statistical distance ≤ 2^-30 per ciphertext instead of 2^-40).
///
/// * q = 50 + 40 bits (hand-off level 1: 90 bits) + 2 × 38-bit computation primes; P = 50 bits;
///   α = 1. log2(QP) ≈ 216 ≤ 218.
/// * Why 30: a 2^-s refresh mask at N = 2^13 with messages up to 2^45 (2^38 scale × values up to
///   2^7) needs s + 13 + 45 + 1 ≤ 90 bits, so s ≤ 31; the same head-room bounds flooding.
pub const COMPACT_N8192: ParamSpec = ParamSpec {
    name: "compact-n8192-stat30",
    log_n: 13,
    q_bits: &[50, 40, 38, 38],
    p_bits: &[50],
    digit_size: 1,
    handoff_level: 1,
    scale_bits: 38,
    stat_sec_bits: 30,
    round: RoundKind::Refresh,
};

/// The HeFUN protocol preset at N = 2^14: scales of two primes, so that the ReLU message keeps
/// its signs after 2^-40 flooding.
///
/// Flooding hides the computation noise E with noise of about N·E·2^40, i.e. ≈ 54 bits above E;
/// after the slot transform the sign of x·r survives only if the ciphertext's message-to-noise
/// ratio is well above 2^64. Rescaling by one 45-bit prime keeps ≈ 2^36; rescaling by pairs of
/// 44-bit primes at Δ = 2^88 keeps ≈ 2^78.
///
/// * q = 3 × 50-bit (hand-off level 2: 150 bits) + 4 × 44-bit (two rescales of 2^88: the ReLU
///   product and the next linear layer); P = 2 × 50 bits; α = 2 (four digits at the top).
///   log2(QP) ≈ 426 ≤ 438.
/// * Refresh mask at the hand-off level: 40 + 14 + log2(Δ·Y) + 1 ≤ 149 bits holds for
///   pre-activations (and dummies) up to |Y| = 2^6.
pub const HEFUN_N16384: ParamSpec = ParamSpec {
    name: "hefun-n16384",
    log_n: 14,
    q_bits: &[50, 50, 50, 44, 44, 44, 44],
    p_bits: &[50, 50],
    digit_size: 2,
    handoff_level: 2,
    scale_bits: 88,
    stat_sec_bits: 40,
    round: RoundKind::Refresh,
};

/// The light-client preset (issue 16): the sign-magnitude round on N = 2^13, one level.
///
/// * q = 3 × 43-bit primes, all at the top (nothing is ever rescaled), P = 2 × 43 bits, α = 2
///   (two digits; P covers the larger). log2(QP) ≈ 215 ≤ 218: 128-bit secure.
/// * The scale is the client's Δ_c (inputs and every round's reply; a power of two, not a prime
///   product); the server's weights are at Δ_w = 2^30. A layer's output sits at Δ_c·Δ_w and must
///   hold |y|·|r| below Q/2 = 2^128 with its 2^-40 flooding: the planner
///   (`plan_sign_magnitude`) picks Δ_c per model as large as that allows, since the flooding
///   noise that reaches the activations, |ε|/|r|, shrinks by one bit per bit of Δ_c.
///   `scale_bits` is the default it starts from.
/// * No relinearisation key; every switching key is 2 digits × 5 limbs.
pub const HEFUN_N8192: ParamSpec = ParamSpec {
    name: "hefun-n8192",
    log_n: 13,
    q_bits: &[43, 43, 43],
    p_bits: &[43, 43],
    digit_size: 2,
    handoff_level: 2,
    scale_bits: 86,
    stat_sec_bits: 40,
    round: RoundKind::SignMagnitude,
};

/// All presets, default first.
pub const PRESETS: &[&ParamSpec] = &[&HEFUN_N8192, &DEFAULT_N16384, &COMPACT_N8192, &HEFUN_N16384];
