//! Windowed ops over 1-D or 2-D feature maps (N = 1): Conv with padding, stride, dilation and
//! groups; AveragePool; GlobalAveragePool. A 1-D map is lowered as a 2-D map of height 1.

use client_core::wire::input::Im2col;
use tract_onnx::pb::NodeProto;

use super::{apply, attr_i, attr_ints, attr_s, constant_input, input, optional_constant, usizes};
use super::{OpError, OpResult};
use crate::model::onnx::affine::{SparseAffine, Triplets};
use crate::model::onnx::operand::{count, Const, Operand, Value};
use crate::model::FirstConv;

/// The geometry of one spatial axis.
#[derive(Clone, Copy, Debug)]
struct Axis {
    size: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    /// Size with both pads.
    padded: usize,
    out: usize,
}

/// Per-axis geometry from the node's attributes, for input sizes `sizes` and kernel `kernel`.
fn geometry(
    node: &NodeProto,
    sizes: &[usize],
    kernel: &[usize],
    ceil: bool,
) -> Result<Vec<Axis>, OpError> {
    let k = sizes.len();
    let pick = |name: &str| -> Result<Vec<usize>, OpError> {
        match attr_ints(node, name) {
            // A 1-D op lowered as 2-D: its attributes describe the width only.
            Some(v) if v.len() + 1 == k && k == 2 => {
                let mut u = vec![1];
                u.extend(usizes(&v, name)?);
                Ok(u)
            }
            Some(v) if v.len() == k => usizes(&v, name),
            Some(v) => Err(OpError::Invalid(format!(
                "{name} {v:?} for {k} spatial axes"
            ))),
            None => Ok(vec![1; k]),
        }
    };
    let strides = pick("strides")?;
    let dilations = pick("dilations")?;
    let auto_pad = attr_s(node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
    let pads: Vec<usize> = match attr_ints(node, "pads") {
        Some(p) if p.len() == 2 && k == 2 => vec![0, p[0].max(0) as usize, 0, p[1].max(0) as usize],
        Some(p) if p.len() == 2 * k => usizes(&p, "pads")?,
        Some(p) => return Err(OpError::Invalid(format!("pads {p:?} for {k} spatial axes"))),
        None => vec![0; 2 * k],
    };
    let mut axes = Vec::with_capacity(k);
    for a in 0..k {
        if strides[a] == 0 || dilations[a] == 0 || kernel[a] == 0 {
            return Err(OpError::Invalid("zero stride, dilation or kernel".into()));
        }
        let span = dilations[a] * (kernel[a] - 1) + 1;
        let (begin, end) = match auto_pad.as_str() {
            "NOTSET" => (pads[a], pads[a + k]),
            "VALID" => (0, 0),
            "SAME_UPPER" | "SAME_LOWER" => {
                let out = sizes[a].div_ceil(strides[a]);
                let total = ((out - 1) * strides[a] + span).saturating_sub(sizes[a]);
                if auto_pad == "SAME_UPPER" {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                }
            }
            other => return Err(OpError::Invalid(format!("auto_pad {other}"))),
        };
        let padded = sizes[a] + begin + end;
        if padded < span {
            return Err(OpError::Invalid(format!(
                "a window of {span} does not fit {padded} values"
            )));
        }
        let mut out = (padded - span) / strides[a] + 1;
        // ceil_mode: a last partial window counts if it starts inside the input or left pad.
        if ceil
            && !(padded - span).is_multiple_of(strides[a])
            && (out * strides[a]) < sizes[a] + begin
        {
            out += 1;
        }
        axes.push(Axis {
            size: sizes[a],
            kernel: kernel[a],
            stride: strides[a],
            dilation: dilations[a],
            pad_begin: begin,
            padded,
            out,
        });
    }
    Ok(axes)
}

/// The value input as channels × spatial (height, width), plus the output shape's builder.
fn feature_map(x: &Operand, what: &str) -> Result<(Value, usize, [usize; 2]), OpError> {
    let Operand::Value(v) = x else {
        return Err(OpError::Invalid(format!("{what} of a constant")));
    };
    match v.dims[..] {
        [1, c, h, w] => Ok((v.clone(), c, [h, w])),
        [1, c, l] => Ok((v.clone(), c, [1, l])),
        _ => Err(OpError::Invalid(format!(
            "{what} of shape {:?} (expected [1, C, H, W] or [1, C, L])",
            v.dims
        ))),
    }
}

fn out_dims(rank: usize, c: usize, ax: &[Axis]) -> Vec<usize> {
    if rank == 3 {
        vec![1, c, ax[1].out]
    } else {
        vec![1, c, ax[0].out, ax[1].out]
    }
}

/// Input position (y, x) read by output (oy, ox) at window offset (dy, dx), if inside.
fn tap(ax: &[Axis], o: [usize; 2], d: [usize; 2]) -> Option<(usize, usize)> {
    let mut p = [0usize; 2];
    for a in 0..2 {
        let i = (o[a] * ax[a].stride + d[a] * ax[a].dilation) as isize - ax[a].pad_begin as isize;
        if i < 0 || i >= ax[a].size as isize {
            return None;
        }
        p[a] = i as usize;
    }
    Some((p[0], p[1]))
}

pub(super) fn conv(node: &NodeProto, inputs: &[Option<&Operand>]) -> OpResult {
    let (v, c_in, [h, w]) = feature_map(input(inputs, 0)?, "convolution")?;
    let weight = constant_input(inputs, 1)?;
    let (c_out, per_group, kh, kw) = match weight.dims[..] {
        [o, i, kh, kw] if v.dims.len() == 4 => (o, i, kh, kw),
        [o, i, kw] if v.dims.len() == 3 => (o, i, 1, kw),
        _ => {
            return Err(OpError::Invalid(format!(
                "weights of shape {:?} for an input of shape {:?}",
                weight.dims, v.dims
            )))
        }
    };
    let groups = usize::try_from(attr_i(node, "group").unwrap_or(1))
        .ok()
        .filter(|&g| g > 0)
        .ok_or_else(|| OpError::Invalid("bad group".into()))?;
    if c_in % groups != 0 || c_out % groups != 0 || per_group * groups != c_in {
        return Err(OpError::Invalid(format!(
            "{c_in} input and {c_out} output channels in {groups} groups with weights {:?}",
            weight.dims
        )));
    }
    let bias = match optional_constant(inputs, 2)? {
        Some(b) if b.values.len() == c_out => b.values.clone(),
        Some(b) => {
            return Err(OpError::Invalid(format!(
                "bias of {} for {c_out} channels",
                b.values.len()
            )))
        }
        None => vec![0.0; c_out],
    };
    let ax = geometry(node, &[h, w], &[kh, kw], false)?;
    let (oh, ow) = (ax[0].out, ax[1].out);
    let out_per_group = c_out / groups;
    let mut entries: Triplets = Vec::with_capacity(c_out * oh * ow * per_group * kh * kw);
    let mut b = Vec::with_capacity(c_out * oh * ow);
    for (co, &bias_co) in bias.iter().enumerate() {
        let g = co / out_per_group;
        for oy in 0..oh {
            for ox in 0..ow {
                let r = (co * oh + oy) * ow + ox;
                b.push(bias_co);
                for ci in 0..per_group {
                    let channel = g * per_group + ci;
                    for dy in 0..kh {
                        for dx in 0..kw {
                            if let Some((y, x)) = tap(&ax, [oy, ox], [dy, dx]) {
                                let k = weight.values[((co * per_group + ci) * kh + dy) * kw + dx];
                                entries.push((r, (channel * h + y) * w + x, k));
                            }
                        }
                    }
                }
            }
        }
    }
    let local = SparseAffine::from_triplets(c_out * oh * ow, c_in * h * w, &entries, b);
    Ok(vec![apply(&v, &local, out_dims(v.dims.len(), c_out, &ax))])
}

/// The client-side patch gather for a convolution that is the whole first layer: one input
/// channel, no padding, no dilation, no groups (the evaluator then multiplies whole blocks).
pub(crate) fn first_conv(
    node: &NodeProto,
    input_dims: &[usize],
    weight: &Const,
) -> Option<FirstConv> {
    let [1, 1, h, w] = input_dims[..] else {
        return None;
    };
    let [c_out, 1, kh, kw] = weight.dims[..] else {
        return None;
    };
    let plain = |name: &str| attr_ints(node, name).is_none_or(|v| v.iter().all(|&x| x == 1));
    let unpadded = attr_ints(node, "pads").is_none_or(|v| v.iter().all(|&x| x == 0))
        && attr_s(node, "auto_pad").is_none_or(|s| s == "NOTSET" || s == "VALID");
    if !plain("dilations") || attr_i(node, "group").unwrap_or(1) != 1 || !unpadded {
        return None;
    }
    let strides = attr_ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
    let [sy, sx] = strides[..] else {
        return None;
    };
    Some(FirstConv {
        gather: Im2col {
            height: h as u32,
            width: w as u32,
            kernel_h: kh as u32,
            kernel_w: kw as u32,
            stride_h: u32::try_from(sy).ok()?,
            stride_w: u32::try_from(sx).ok()?,
        },
        out_channels: c_out,
        kernel: weight.values.clone(),
    })
}

pub(super) fn average_pool(node: &NodeProto, inputs: &[Option<&Operand>]) -> OpResult {
    let (v, c, [h, w]) = feature_map(input(inputs, 0)?, "pooling")?;
    let global = node.op_type == "GlobalAveragePool";
    let kernel = if global {
        vec![h, w]
    } else {
        let k = attr_ints(node, "kernel_shape")
            .ok_or_else(|| OpError::Invalid("no kernel_shape".into()))?;
        match (&k[..], v.dims.len()) {
            ([kw], 3) => vec![
                1,
                usize::try_from(*kw).map_err(|_| OpError::Invalid("kernel".into()))?,
            ],
            (_, _) if k.len() == 2 => usizes(&k, "kernel_shape")?,
            _ => return Err(OpError::Invalid(format!("kernel_shape {k:?}"))),
        }
    };
    let ceil = attr_i(node, "ceil_mode").unwrap_or(0) != 0;
    let ax = geometry(node, &[h, w], &kernel, ceil && !global)?;
    let include_pad = attr_i(node, "count_include_pad").unwrap_or(0) != 0;
    let (oh, ow) = (ax[0].out, ax[1].out);
    let mut entries: Triplets = Vec::with_capacity(c * oh * ow * kernel[0] * kernel[1]);
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let r = (ch * oh + oy) * ow + ox;
                let taps: Vec<(usize, usize)> = (0..kernel[0])
                    .flat_map(|dy| (0..kernel[1]).map(move |dx| (dy, dx)))
                    .filter_map(|(dy, dx)| tap(&ax, [oy, ox], [dy, dx]))
                    .collect();
                // With count_include_pad the divisor counts padding inside the padded input
                // (never the part of a ceil-mode window beyond it).
                let divisor = if include_pad {
                    let mut n = 1;
                    for (g, o) in ax.iter().zip([oy, ox]) {
                        let start = o * g.stride;
                        let stop = (start + g.dilation * (g.kernel - 1) + 1).min(g.padded);
                        n *= (start..stop).step_by(g.dilation).count();
                    }
                    n
                } else {
                    taps.len()
                };
                if divisor == 0 {
                    continue;
                }
                for (y, x) in taps {
                    entries.push((r, (ch * h + y) * w + x, 1.0 / divisor as f64));
                }
            }
        }
    }
    let local =
        SparseAffine::from_triplets(c * oh * ow, c * h * w, &entries, vec![0.0; c * oh * ow]);
    let dims = if global {
        let mut d = vec![1, c];
        d.extend(std::iter::repeat_n(1, v.dims.len() - 2));
        d
    } else {
        out_dims(v.dims.len(), c, &ax)
    };
    debug_assert_eq!(count(&dims), c * oh * ow);
    Ok(vec![apply(&v, &local, dims)])
}
