//! Constants and the shape arithmetic exporters write around them (PyTorch's `x.view(x.size(0),
//! -1)` becomes Shape → Gather → Unsqueeze → Concat → Reshape): folded here, so the Reshape sees
//! a constant target shape.

use tract_onnx::data_resolver::FopenDataResolver;
use tract_onnx::pb::NodeProto;

use super::{attr_i, input, OpError, OpResult};
use crate::model::onnx::operand::{axis, count, strides, unravel, Const, Operand};

pub(super) fn constant(node: &NodeProto) -> OpResult {
    let attr = node
        .attribute
        .first()
        .ok_or_else(|| OpError::Invalid("a constant without a value".into()))?;
    let c = match attr.name.as_str() {
        "value" => {
            let t = attr
                .t
                .as_ref()
                .ok_or_else(|| OpError::Invalid("value without a tensor".into()))?;
            let tensor = tract_onnx::tensor::load_tensor(&FopenDataResolver, t, None)
                .map_err(|e| OpError::Invalid(e.to_string()))?;
            Const::from_tensor(&tensor)?
        }
        "value_float" => Const::scalar(f64::from(attr.f)),
        "value_int" => Const::scalar(attr.i as f64),
        "value_floats" => Const {
            dims: vec![attr.floats.len()],
            values: attr.floats.iter().map(|&f| f64::from(f)).collect(),
        },
        "value_ints" => Const {
            dims: vec![attr.ints.len()],
            values: attr.ints.iter().map(|&i| i as f64).collect(),
        },
        other => return Err(OpError::Invalid(format!("constant attribute {other}"))),
    };
    Ok(vec![Operand::Const(c)])
}

/// The shape of a value or constant (start/end attributes of opset 15 included).
pub(super) fn shape(node: &NodeProto, inputs: &[Option<&Operand>]) -> OpResult {
    let dims = input(inputs, 0)?.dims();
    let r = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(attr_i(node, "start").unwrap_or(0));
    let end = clamp(attr_i(node, "end").unwrap_or(r));
    let picked: Vec<f64> = dims[start..end.max(start)]
        .iter()
        .map(|&d| d as f64)
        .collect();
    Ok(vec![Operand::Const(Const {
        dims: vec![picked.len()],
        values: picked,
    })])
}

/// Gather with constant data and indices (a value gathered by constant indices is a row pick).
pub(super) fn gather(node: &NodeProto, inputs: &[Option<&Operand>]) -> OpResult {
    let data = input(inputs, 0)?;
    let Operand::Const(indices) = input(inputs, 1)? else {
        return Err(OpError::Invalid("indices computed from the input".into()));
    };
    let dims = data.dims().to_vec();
    let a = axis(attr_i(node, "axis").unwrap_or(0), dims.len())?;
    let idx: Vec<usize> = indices
        .ints()?
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + dims[a] as i64 } else { i };
            usize::try_from(j)
                .ok()
                .filter(|&j| j < dims[a])
                .ok_or_else(|| OpError::Invalid(format!("index {i} out of range")))
        })
        .collect::<Result<_, _>>()?;
    let mut out = dims[..a].to_vec();
    out.extend(&indices.dims);
    out.extend(&dims[a + 1..]);
    let src_strides = strides(&dims);
    let k = indices.dims.len();
    let from = |o: &[usize]| -> usize {
        let pos = if k == 0 {
            0
        } else {
            o[a..a + k]
                .iter()
                .zip(strides(&indices.dims))
                .map(|(i, s)| i * s)
                .sum()
        };
        let mut flat = idx[pos] * src_strides[a];
        for (d, &i) in o[..a].iter().enumerate() {
            flat += i * src_strides[d];
        }
        for (d, &i) in o[a + k..].iter().enumerate() {
            flat += i * src_strides[a + 1 + d];
        }
        flat
    };
    match data {
        Operand::Const(c) => Ok(vec![Operand::Const(Const {
            values: (0..count(&out))
                .map(|i| c.values[from(&unravel(i, &out))])
                .collect(),
            dims: out,
        })]),
        Operand::Value(v) => {
            use crate::model::onnx::affine::{Source, SparseAffine};
            let sources: Vec<Source> = (0..count(&out))
                .map(|i| Source::Row(0, from(&unravel(i, &out))))
                .collect();
            Ok(vec![Operand::Value(crate::model::onnx::operand::Value {
                map: SparseAffine::gather(v.map.inputs(), &[&v.map], &sources),
                dims: out,
                segment: v.segment,
                nonnegative: false,
            })])
        }
    }
}

/// Cast: constants keep their values (as f64); a value may only be cast to a float type.
pub(super) fn cast(node: &NodeProto, inputs: &[Option<&Operand>]) -> OpResult {
    let x = input(inputs, 0)?;
    // ONNX TensorProto data types: FLOAT, FLOAT16, DOUBLE, BFLOAT16.
    const FLOATS: [i64; 4] = [1, 10, 11, 16];
    match x {
        Operand::Const(c) => {
            let to = attr_i(node, "to").unwrap_or(1);
            let values = if FLOATS.contains(&to) || to == 9 {
                c.values.clone()
            } else {
                c.values.iter().map(|v| v.trunc()).collect()
            };
            Ok(vec![Operand::Const(Const {
                dims: c.dims.clone(),
                values,
            })])
        }
        Operand::Value(_) if attr_i(node, "to").is_some_and(|t| FLOATS.contains(&t)) => {
            Ok(vec![x.clone()])
        }
        Operand::Value(_) => Err(OpError::Invalid(
            "casting a value to an integer type is not affine".into(),
        )),
    }
}

pub(super) fn constant_of_shape(node: &NodeProto, inputs: &[Option<&Operand>]) -> OpResult {
    let Operand::Const(shape) = input(inputs, 0)? else {
        return Err(OpError::Invalid("shape computed from the input".into()));
    };
    let dims: Vec<usize> = shape
        .ints()?
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| OpError::Invalid(format!("dimension {d}"))))
        .collect::<Result<_, _>>()?;
    let fill = match node
        .attribute
        .iter()
        .find(|a| a.name == "value")
        .and_then(|a| a.t.as_ref())
    {
        Some(t) => {
            let tensor = tract_onnx::tensor::load_tensor(&FopenDataResolver, t, None)
                .map_err(|e| OpError::Invalid(e.to_string()))?;
            Const::from_tensor(&tensor)?
                .values
                .first()
                .copied()
                .unwrap_or(0.0)
        }
        None => 0.0,
    };
    if count(&dims) > 1 << 26 {
        return Err(OpError::Invalid(format!("a constant of shape {dims:?}")));
    }
    Ok(vec![Operand::Const(Const {
        values: vec![fill; count(&dims)],
        dims,
    })])
}
