//! Ops that only move values (or pad with a constant): the map's rows are picked, reordered or
//! joined, never mixed. On constants they fold.

use tract_onnx::pb::NodeProto;

use super::{
    attr_f, attr_i, attr_ints, attr_s, input, optional_constant, usizes, OpError, OpResult,
};
use crate::model::onnx::affine::{Source, SparseAffine};
use crate::model::onnx::operand::{axis, count, strides, unravel, Const, Operand, Value};

/// Integers from input `i` (opset ≥ 10–13 style) or else attribute `name` (older opsets).
fn ints_from(
    node: &NodeProto,
    inputs: &[Option<&Operand>],
    i: usize,
    name: &str,
) -> Result<Option<Vec<i64>>, OpError> {
    match optional_constant(inputs, i)? {
        Some(c) => Ok(Some(c.ints()?)),
        None => Ok(attr_ints(node, name)),
    }
}

fn with_dims(x: &Operand, dims: Vec<usize>) -> Operand {
    match x {
        Operand::Const(c) => Operand::Const(Const {
            dims,
            values: c.values.clone(),
        }),
        Operand::Value(v) => Operand::Value(Value {
            map: v.map.clone(),
            dims,
            segment: v.segment,
            nonnegative: v.nonnegative,
        }),
    }
}

/// Flatten, Reshape, Squeeze, Unsqueeze: the same elements in the same order, a new shape.
pub(super) fn reshape(node: &NodeProto, inputs: &[Option<&Operand>]) -> OpResult {
    let x = input(inputs, 0)?;
    let dims = x.dims().to_vec();
    let total = count(&dims);
    let out: Vec<usize> = match node.op_type.as_str() {
        "Flatten" => {
            // Axis in [−r, r]: a negative one counts from the back, r flattens everything.
            let a = attr_i(node, "axis").unwrap_or(1);
            let r = dims.len() as i64;
            let a = if a < 0 { a + r } else { a };
            if !(0..=r).contains(&a) {
                return Err(OpError::Invalid(format!(
                    "Flatten axis out of range for {dims:?}"
                )));
            }
            let a = a as usize;
            vec![count(&dims[..a]), count(&dims[a..])]
        }
        "Reshape" => {
            let target = ints_from(node, inputs, 1, "shape")?
                .ok_or_else(|| OpError::Invalid("no target shape".into()))?;
            let allow_zero = attr_i(node, "allowzero").unwrap_or(0) != 0;
            let mut out = Vec::with_capacity(target.len());
            let mut infer = None;
            for (i, &t) in target.iter().enumerate() {
                match t {
                    -1 if infer.is_none() => {
                        infer = Some(i);
                        out.push(1);
                    }
                    0 if !allow_zero => out.push(*dims.get(i).ok_or_else(|| {
                        OpError::Invalid(format!("shape {target:?}: no dimension {i} to copy"))
                    })?),
                    t if t >= 0 => out.push(t as usize),
                    _ => return Err(OpError::Invalid(format!("bad target shape {target:?}"))),
                }
            }
            if let Some(i) = infer {
                let known = count(&out);
                if known == 0 || !total.is_multiple_of(known) {
                    return Err(OpError::Invalid(format!(
                        "cannot reshape {dims:?} to {target:?}"
                    )));
                }
                out[i] = total / known;
            }
            out
        }
        "Squeeze" => match ints_from(node, inputs, 1, "axes")? {
            None => dims.iter().copied().filter(|&d| d != 1).collect(),
            Some(axes) => {
                let axes = axes
                    .iter()
                    .map(|&a| axis(a, dims.len()))
                    .collect::<Result<Vec<_>, _>>()?;
                if axes.iter().any(|&a| dims[a] != 1) {
                    return Err(OpError::Invalid(format!("squeezing {axes:?} of {dims:?}")));
                }
                dims.iter()
                    .enumerate()
                    .filter(|(i, _)| !axes.contains(i))
                    .map(|(_, &d)| d)
                    .collect()
            }
        },
        _ => {
            let axes = ints_from(node, inputs, 1, "axes")?
                .ok_or_else(|| OpError::Invalid("no axes".into()))?;
            let rank = dims.len() + axes.len();
            let axes = axes
                .iter()
                .map(|&a| axis(a, rank))
                .collect::<Result<Vec<_>, _>>()?;
            let mut rest = dims.iter();
            (0..rank)
                .map(|i| {
                    if axes.contains(&i) {
                        1
                    } else {
                        rest.next().copied().unwrap_or(1)
                    }
                })
                .collect()
        }
    };
    if count(&out) != total {
        return Err(OpError::Invalid(format!(
            "{dims:?} has {total} elements, {out:?} has {}",
            count(&out)
        )));
    }
    Ok(vec![with_dims(x, out)])
}

/// A tensor of shape `out` whose element at each multi-index is the input's element at the
/// flat index `from(index)`, or `fill` where it returns `None`.
fn remap(
    x: &Operand,
    out: Vec<usize>,
    fill: f64,
    from: impl Fn(&[usize]) -> Option<usize>,
) -> Operand {
    let sources: Vec<Option<usize>> = (0..count(&out)).map(|i| from(&unravel(i, &out))).collect();
    match x {
        Operand::Const(c) => Operand::Const(Const {
            dims: out,
            values: sources
                .iter()
                .map(|s| s.map_or(fill, |j| c.values[j]))
                .collect(),
        }),
        Operand::Value(v) => {
            let sources: Vec<Source> = sources
                .iter()
                .map(|s| s.map_or(Source::Constant(fill), |j| Source::Row(0, j)))
                .collect();
            Operand::Value(Value {
                map: SparseAffine::gather(v.map.inputs(), &[&v.map], &sources),
                dims: out,
                segment: v.segment,
                nonnegative: false,
            })
        }
    }
}

fn flat(idx: &[usize], dims: &[usize]) -> usize {
    idx.iter().zip(strides(dims)).map(|(i, s)| i * s).sum()
}

pub(super) fn transpose(node: &NodeProto, inputs: &[Option<&Operand>]) -> OpResult {
    let x = input(inputs, 0)?;
    let dims = x.dims().to_vec();
    let perm = match attr_ints(node, "perm") {
        Some(p) => usizes(&p, "perm")?,
        None => (0..dims.len()).rev().collect(),
    };
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    if sorted != (0..dims.len()).collect::<Vec<_>>() {
        return Err(OpError::Invalid(format!(
            "perm {perm:?} for rank {}",
            dims.len()
        )));
    }
    let out: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    Ok(vec![remap(x, out, 0.0, |o| {
        let mut idx = vec![0; dims.len()];
        for (k, &p) in perm.iter().enumerate() {
            idx[p] = o[k];
        }
        Some(flat(&idx, &dims))
    })])
}

pub(super) fn concat(node: &NodeProto, inputs: &[Option<&Operand>]) -> OpResult {
    let parts: Vec<&Operand> = inputs.iter().flatten().copied().collect();
    let first = parts
        .first()
        .ok_or_else(|| OpError::Invalid("nothing to concatenate".into()))?;
    let rank = first.dims().len();
    let a = axis(
        attr_i(node, "axis").ok_or_else(|| OpError::Invalid("no axis".into()))?,
        rank,
    )?;
    let mut out = first.dims().to_vec();
    out[a] = 0;
    for p in &parts {
        let d = p.dims();
        if d.len() != rank || (0..rank).any(|i| i != a && d[i] != first.dims()[i]) {
            return Err(OpError::Invalid(format!(
                "concatenating {:?} and {d:?} along axis {a}",
                first.dims()
            )));
        }
        out[a] += d[a];
    }
    // (part, index within the part) for each position along the axis.
    let mut along = Vec::with_capacity(out[a]);
    for (k, p) in parts.iter().enumerate() {
        along.extend((0..p.dims()[a]).map(|j| (k, j)));
    }
    let locate = |o: &[usize]| {
        let (k, j) = along[o[a]];
        let mut idx = o.to_vec();
        idx[a] = j;
        (k, flat(&idx, parts[k].dims()))
    };
    let values: Vec<&Value> = parts
        .iter()
        .filter_map(|p| match p {
            Operand::Value(v) => Some(v),
            Operand::Const(_) => None,
        })
        .collect();
    let Some(v0) = values.first() else {
        let values = (0..count(&out))
            .map(|i| {
                let (k, j) = locate(&unravel(i, &out));
                match parts[k] {
                    Operand::Const(c) => c.values[j],
                    Operand::Value(_) => unreachable!("all parts are constants"),
                }
            })
            .collect();
        return Ok(vec![Operand::Const(Const { dims: out, values })]);
    };
    if values.iter().any(|v| v.segment != v0.segment) {
        return Err(OpError::Invalid(
            "a skip connection across an activation (not supported yet)".into(),
        ));
    }
    // Value parts are numbered in the order they appear.
    let mut value_index = vec![usize::MAX; parts.len()];
    let mut next = 0;
    for (k, p) in parts.iter().enumerate() {
        if matches!(p, Operand::Value(_)) {
            value_index[k] = next;
            next += 1;
        }
    }
    let maps: Vec<&SparseAffine> = values.iter().map(|v| &v.map).collect();
    let sources: Vec<Source> = (0..count(&out))
        .map(|i| {
            let (k, j) = locate(&unravel(i, &out));
            match parts[k] {
                Operand::Const(c) => Source::Constant(c.values[j]),
                Operand::Value(_) => Source::Row(value_index[k], j),
            }
        })
        .collect();
    Ok(vec![Operand::Value(Value {
        map: SparseAffine::gather(v0.map.inputs(), &maps, &sources),
        dims: out,
        segment: v0.segment,
        nonnegative: false,
    })])
}

/// Pad (constant, reflect or edge; negative pads crop).
pub(super) fn pad(node: &NodeProto, inputs: &[Option<&Operand>]) -> OpResult {
    let x = input(inputs, 0)?;
    let dims = x.dims().to_vec();
    let rank = dims.len();
    let pads =
        ints_from(node, inputs, 1, "pads")?.ok_or_else(|| OpError::Invalid("no pads".into()))?;
    let fill = match optional_constant(inputs, 2)? {
        Some(c) => *c
            .values
            .first()
            .ok_or_else(|| OpError::Invalid("empty constant_value".into()))?,
        None => attr_f(node, "value").unwrap_or(0.0),
    };
    let axes: Vec<usize> = match optional_constant(inputs, 3)? {
        Some(c) => c
            .ints()?
            .iter()
            .map(|&a| axis(a, rank))
            .collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(OpError::Invalid(format!(
            "{} pads for {} axes",
            pads.len(),
            axes.len()
        )));
    }
    let mut begin = vec![0i64; rank];
    let mut end = vec![0i64; rank];
    for (k, &a) in axes.iter().enumerate() {
        begin[a] = pads[k];
        end[a] = pads[k + axes.len()];
    }
    let mut out = Vec::with_capacity(rank);
    for a in 0..rank {
        let d = dims[a] as i64 + begin[a] + end[a];
        if d < 0 {
            return Err(OpError::Invalid(format!(
                "pads {pads:?} crop {dims:?} below zero"
            )));
        }
        out.push(d as usize);
    }
    let mode = attr_s(node, "mode").unwrap_or_else(|| "constant".into());
    if !matches!(mode.as_str(), "constant" | "reflect" | "edge") {
        return Err(OpError::Invalid(format!("pad mode {mode}")));
    }
    if mode == "reflect" && (0..rank).any(|a| (begin[a] > 0 || end[a] > 0) && dims[a] < 2) {
        return Err(OpError::Invalid(
            "reflect padding of an axis of length 1".into(),
        ));
    }
    Ok(vec![remap(x, out, fill, |o| {
        let mut idx = vec![0; rank];
        for a in 0..rank {
            let d = dims[a] as i64;
            let mut i = o[a] as i64 - begin[a];
            if !(0..d).contains(&i) {
                match mode.as_str() {
                    "edge" => i = i.clamp(0, d - 1),
                    "reflect" => {
                        let period = 2 * (d - 1);
                        i = i.rem_euclid(period);
                        if i >= d {
                            i = period - i;
                        }
                    }
                    _ => return None,
                }
            }
            idx[a] = i as usize;
        }
        Some(flat(&idx, &dims))
    })])
}

/// Slice with starts, ends, axes and steps (clamped as ONNX specifies).
pub(super) fn slice(node: &NodeProto, inputs: &[Option<&Operand>]) -> OpResult {
    let x = input(inputs, 0)?;
    let dims = x.dims().to_vec();
    let rank = dims.len();
    let starts = ints_from(node, inputs, 1, "starts")?
        .ok_or_else(|| OpError::Invalid("no starts".into()))?;
    let ends =
        ints_from(node, inputs, 2, "ends")?.ok_or_else(|| OpError::Invalid("no ends".into()))?;
    let axes: Vec<usize> = match ints_from(node, inputs, 3, "axes")? {
        Some(a) => a.iter().map(|&a| axis(a, rank)).collect::<Result<_, _>>()?,
        None => (0..starts.len()).collect(),
    };
    let steps = ints_from(node, inputs, 4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(OpError::Invalid(
            "starts, ends, axes and steps differ in length".into(),
        ));
    }
    let mut first = vec![0i64; rank];
    let mut step = vec![1i64; rank];
    let mut out = dims.clone();
    for k in 0..starts.len() {
        let (a, d, s) = (axes[k], dims[axes[k]] as i64, steps[k]);
        if s == 0 {
            return Err(OpError::Invalid("slice step 0".into()));
        }
        let norm = |v: i64| if v < 0 { v + d } else { v };
        let (lo, hi) = if s > 0 { (0, d) } else { (-1, d - 1) };
        let b = norm(starts[k]).clamp(lo, hi);
        let e = norm(ends[k]).clamp(lo, hi);
        let n = if s > 0 {
            (e - b + s - 1).div_euclid(s).max(0)
        } else {
            (b - e + (-s) - 1).div_euclid(-s).max(0)
        };
        first[a] = b;
        step[a] = s;
        out[a] = n as usize;
    }
    Ok(vec![remap(x, out, 0.0, |o| {
        let idx: Vec<usize> = (0..rank)
            .map(|a| (first[a] + o[a] as i64 * step[a]) as usize)
            .collect();
        Some(flat(&idx, &dims))
    })])
}
