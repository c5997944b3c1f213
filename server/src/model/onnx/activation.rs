//! Activations as ReLUs of affine maps, all in the one round that closes the segment:
//!
//! ```text
//! Relu(y)          = ReLU(y)
//! LeakyRelu(y)     = ReLU(y) − a·ReLU(−y)
//! PRelu(y; s)      = ReLU(y) − s∘ReLU(−y)          (s broadcast, e.g. per channel)
//! Clip(y; lo, hi)  = lo + ReLU(y − lo) − ReLU(y − hi)   (hi − ReLU(hi − y) without lo)
//! ```
//!
//! The protocol evaluates ReLU exactly, so each is exact; a neuron costs one or two slots of
//! the round.

use tract_onnx::pb::NodeProto;

use super::affine::SparseAffine;
use super::operand::{broadcast_values, count, Const, Operand, Value};
use super::ops::{attr_f, OpError};

/// An activation as `offset + Σ_k coeff_k ∘ ReLU(pre_k)`.
pub(crate) struct Activation {
    /// The pre-activations the round takes, each as long as the output.
    pub pre: Vec<(SparseAffine, Vec<f64>)>,
    /// The constant term.
    pub offset: Vec<f64>,
    /// Whether the output is ≥ 0.
    pub nonnegative: bool,
}

/// Activations that close a segment.
pub(crate) fn is_activation(op: &str) -> bool {
    matches!(op, "Relu" | "LeakyRelu" | "PRelu" | "Clip")
}

fn shifted(map: &SparseAffine, sign: f64, shift: f64) -> SparseAffine {
    let mut m = if sign < 0.0 {
        map.combine(map, -2.0)
    } else {
        map.clone()
    };
    for b in &mut m.b {
        *b += shift;
    }
    m
}

/// A bound of Clip: input `i` (opset ≥ 11) or attribute `name` (older opsets).
fn bound(
    node: &NodeProto,
    inputs: &[Option<&Operand>],
    i: usize,
    name: &str,
) -> Result<Option<f64>, OpError> {
    match inputs.get(i).copied().flatten() {
        Some(Operand::Const(c)) => Ok(c.values.first().copied()),
        Some(Operand::Value(_)) => Err(OpError::Invalid(
            "a Clip bound computed from the input".into(),
        )),
        None => Ok(attr_f(node, name)),
    }
}

/// The activation of `node` on the value `v`.
pub(crate) fn activation(
    node: &NodeProto,
    v: &Value,
    inputs: &[Option<&Operand>],
) -> Result<Activation, OpError> {
    let n = v.map.outputs();
    let ones = vec![1.0; n];
    Ok(match node.op_type.as_str() {
        "Relu" => Activation {
            pre: vec![(v.map.clone(), ones)],
            offset: vec![0.0; n],
            nonnegative: true,
        },
        "LeakyRelu" | "PRelu" => {
            let slope = if node.op_type == "LeakyRelu" {
                vec![attr_f(node, "alpha").unwrap_or(0.01); n]
            } else {
                let Some(Operand::Const(s)) = inputs.get(1).copied().flatten() else {
                    return Err(OpError::Invalid("PRelu needs a constant slope".into()));
                };
                prelu_slope(s, &v.dims)?
            };
            Activation {
                pre: vec![
                    (v.map.clone(), ones),
                    (
                        shifted(&v.map, -1.0, 0.0),
                        slope.iter().map(|a| -a).collect(),
                    ),
                ],
                offset: vec![0.0; n],
                nonnegative: slope.iter().all(|&a| a == 0.0),
            }
        }
        _ => {
            let lo = bound(node, inputs, 1, "min")?.filter(|x| x.is_finite() && *x > -3.0e38);
            let hi = bound(node, inputs, 2, "max")?.filter(|x| x.is_finite() && *x < 3.0e38);
            match (lo, hi) {
                (Some(lo), Some(hi)) if lo <= hi => Activation {
                    pre: vec![
                        (shifted(&v.map, 1.0, -lo), ones.clone()),
                        (shifted(&v.map, 1.0, -hi), vec![-1.0; n]),
                    ],
                    offset: vec![lo; n],
                    nonnegative: lo >= 0.0,
                },
                (Some(lo), None) => Activation {
                    pre: vec![(shifted(&v.map, 1.0, -lo), ones)],
                    offset: vec![lo; n],
                    nonnegative: lo >= 0.0,
                },
                (None, Some(hi)) => Activation {
                    pre: vec![(shifted(&v.map, -1.0, hi), vec![-1.0; n])],
                    offset: vec![hi; n],
                    nonnegative: false,
                },
                (Some(lo), Some(hi)) => {
                    return Err(OpError::Invalid(format!("Clip with min {lo} > max {hi}")))
                }
                (None, None) => {
                    return Err(OpError::Invalid("Clip without bounds".into()));
                }
            }
        }
    })
}

/// PRelu's slope broadcast to the value: ONNX broadcasts it unidirectionally, and exporters
/// write per-channel slopes as [C] or [C, 1, 1].
fn prelu_slope(s: &Const, dims: &[usize]) -> Result<Vec<f64>, OpError> {
    if let Ok(v) = broadcast_values(s, dims) {
        return Ok(v);
    }
    // A [C] slope against [1, C, H, W]: per channel (axis 1).
    if dims.len() >= 2 && s.values.len() == dims[1] {
        let inner: usize = dims[2..].iter().product();
        return Ok((0..count(dims))
            .map(|i| s.values[(i / inner) % dims[1]])
            .collect());
    }
    Err(OpError::Invalid(format!(
        "a slope of shape {:?} for a value of shape {dims:?}",
        s.dims
    )))
}
