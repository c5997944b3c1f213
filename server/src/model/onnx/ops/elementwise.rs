//! Per-element arithmetic: by a constant (broadcast NumPy-style, e.g. a per-channel mean), or
//! between two values of the same segment (a residual sum); and BatchNormalization, which is a
//! per-channel scale and shift at inference.

use tract_onnx::pb::NodeProto;

use super::{apply, attr_f, constant_input, input, OpError, OpResult};
use crate::model::onnx::affine::SparseAffine;
use crate::model::onnx::operand::{broadcast_shape, broadcast_values, count, Const, Operand};

fn fold(op: &str, a: &Const, b: &Const) -> Result<Const, String> {
    let dims = broadcast_shape(&a.dims, &b.dims)?;
    let (x, y) = (broadcast_values(a, &dims)?, broadcast_values(b, &dims)?);
    let values = x
        .iter()
        .zip(&y)
        .map(|(&p, &q)| match op {
            "Add" => p + q,
            "Sub" => p - q,
            "Mul" => p * q,
            _ => p / q,
        })
        .collect();
    Ok(Const { dims, values })
}

/// A diagonal scale then shift: x ↦ s∘x + t.
fn scale_shift(s: &[f64], t: Vec<f64>) -> SparseAffine {
    let n = s.len();
    let entries = s.iter().enumerate().map(|(i, &v)| (i, i, v)).collect();
    SparseAffine::from_triplets(n, n, &entries, t)
}

pub(super) fn binary(node: &NodeProto, inputs: &[Option<&Operand>]) -> OpResult {
    let op = node.op_type.as_str();
    let (a, b) = (input(inputs, 0)?, input(inputs, 1)?);
    match (a, b) {
        (Operand::Const(x), Operand::Const(y)) => Ok(vec![Operand::Const(fold(op, x, y)?)]),
        (Operand::Value(v), Operand::Const(c)) | (Operand::Const(c), Operand::Value(v)) => {
            let value_first = matches!(a, Operand::Value(_));
            let dims = broadcast_shape(&v.dims, &c.dims)?;
            if dims != v.dims {
                return Err(OpError::Invalid(format!(
                    "a constant of shape {:?} would grow the value of shape {:?} to {dims:?}",
                    c.dims, v.dims
                )));
            }
            let k = broadcast_values(c, &dims)?;
            let n = count(&dims);
            let (s, t): (Vec<f64>, Vec<f64>) = match (op, value_first) {
                ("Add", _) => (vec![1.0; n], k),
                ("Sub", true) => (vec![1.0; n], k.iter().map(|x| -x).collect()),
                ("Sub", false) => (vec![-1.0; n], k),
                ("Mul", _) => (k, vec![0.0; n]),
                ("Div", true) => {
                    if k.contains(&0.0) {
                        return Err(OpError::Invalid("division by zero".into()));
                    }
                    (k.iter().map(|x| 1.0 / x).collect(), vec![0.0; n])
                }
                _ => {
                    return Err(OpError::Invalid(
                        "a constant divided by a value is not affine".into(),
                    ))
                }
            };
            let Operand::Value(v) = (if value_first { a } else { b }) else {
                unreachable!("one operand is a value")
            };
            Ok(vec![apply(v, &scale_shift(&s, t), dims)])
        }
        (Operand::Value(x), Operand::Value(y)) => {
            let sign = match op {
                "Add" => 1.0,
                "Sub" => -1.0,
                _ => {
                    return Err(OpError::Invalid(format!(
                        "{op} of two values computed from the input is not affine"
                    )))
                }
            };
            if x.dims != y.dims {
                return Err(OpError::Invalid(format!(
                    "sum of values of shapes {:?} and {:?} (only equal shapes are supported)",
                    x.dims, y.dims
                )));
            }
            if x.segment != y.segment {
                return Err(OpError::Invalid(
                    "a skip connection across an activation (not supported yet)".into(),
                ));
            }
            Ok(vec![Operand::Value(crate::model::onnx::operand::Value {
                map: x.map.combine(&y.map, sign),
                dims: x.dims.clone(),
                segment: x.segment,
                nonnegative: false,
            })])
        }
    }
}

pub(super) fn neg(inputs: &[Option<&Operand>]) -> OpResult {
    match input(inputs, 0)? {
        Operand::Const(c) => Ok(vec![Operand::Const(Const {
            dims: c.dims.clone(),
            values: c.values.iter().map(|x| -x).collect(),
        })]),
        Operand::Value(v) => {
            let n = count(&v.dims);
            Ok(vec![apply(
                v,
                &scale_shift(&vec![-1.0; n], vec![0.0; n]),
                v.dims.clone(),
            )])
        }
    }
}

/// y = γ·(x − μ)/√(σ² + ε) + β per channel (axis 1).
pub(super) fn batch_norm(node: &NodeProto, inputs: &[Option<&Operand>]) -> OpResult {
    let Operand::Value(v) = input(inputs, 0)? else {
        return Err(OpError::Invalid("batch normalisation of a constant".into()));
    };
    if v.dims.len() < 2 {
        return Err(OpError::Invalid(
            "batch normalisation needs a channel axis".into(),
        ));
    }
    let eps = attr_f(node, "epsilon").unwrap_or(1e-5);
    let channels = v.dims[1];
    let per = |i| -> Result<Vec<f64>, OpError> {
        let c = constant_input(inputs, i)?;
        if c.values.len() != channels {
            return Err(OpError::Invalid(format!(
                "input {i} has {} values for {channels} channels",
                c.values.len()
            )));
        }
        Ok(c.values.clone())
    };
    let (gamma, beta, mean, var) = (per(1)?, per(2)?, per(3)?, per(4)?);
    let inner: usize = v.dims[2..].iter().product();
    let n = count(&v.dims);
    let mut s = vec![0.0; n];
    let mut t = vec![0.0; n];
    for i in 0..n {
        let ch = (i / inner) % channels;
        let k = gamma[ch] / (var[ch] + eps).sqrt();
        s[i] = k;
        t[i] = beta[ch] - k * mean[ch];
    }
    Ok(vec![apply(v, &scale_shift(&s, t), v.dims.clone())])
}
