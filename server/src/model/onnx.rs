//! ONNX import: the graph's nodes are lowered to affine maps (plaintext matrices) with ReLU
//! between them, and a tract runnable of the same file serves as the plaintext reference.
//!
//! Supported: Conv (any stride/padding, group 1), Gemm, MatMul (+ Add of a constant),
//! Relu, Flatten/Reshape (no-ops on the flat vector), AveragePool, BatchNormalization (folded
//! into the preceding affine map), Identity/Dropout. Affine maps with no ReLU between them are
//! composed, so the protocol sees exactly one round per ReLU.

use std::collections::HashMap;
use std::path::Path;

use client_core::wire::input::Im2col;
use tract_onnx::data_resolver::FopenDataResolver;
use tract_onnx::pb::{ModelProto, NodeProto};
use tract_onnx::prelude::*;

use super::{FirstConv, Layer, Model};
use crate::eval::Matrix;

/// Errors of model import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read or parsed by tract.
    #[error("cannot load {path}: {message}")]
    Load {
        /// The file.
        path: String,
        /// tract's message.
        message: String,
    },
    /// An operator the lowering does not support.
    #[error("unsupported operator {op} at node '{node}'")]
    Unsupported {
        /// ONNX op type.
        op: String,
        /// Node name.
        node: String,
    },
    /// A supported operator with attributes or inputs the lowering cannot handle.
    #[error("node '{node}' ({op}): {message}")]
    Node {
        /// Node name.
        node: String,
        /// ONNX op type.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// The model as a whole does not fit the protocol.
    #[error("model: {0}")]
    Model(String),
}

/// Activation shape while walking the graph: (channels, height, width) or a flat vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Image(usize, usize, usize),
    Flat(usize),
}

impl Shape {
    fn len(&self) -> usize {
        match *self {
            Shape::Image(c, h, w) => c * h * w,
            Shape::Flat(n) => n,
        }
    }
}

/// An affine map being accumulated: y = W·x + b.
struct Affine {
    w: Matrix,
    b: Vec<f64>,
}

impl Affine {
    /// self ∘ prev: W·(W'·x + b') + b.
    fn after(self, prev: Affine) -> Affine {
        let (m, k, n) = (self.w.rows, self.w.cols, prev.w.cols);
        let mut data = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..k {
                let a = self.w.data[i * k + j];
                if a == 0.0 {
                    continue;
                }
                let row = &prev.w.data[j * n..(j + 1) * n];
                for (o, &p) in data[i * n..(i + 1) * n].iter_mut().zip(row) {
                    *o += a * p;
                }
            }
        }
        let b = (0..m)
            .map(|i| {
                self.b[i]
                    + (0..k)
                        .map(|j| self.w.data[i * k + j] * prev.b[j])
                        .sum::<f64>()
            })
            .collect();
        Affine {
            w: Matrix {
                rows: m,
                cols: n,
                data,
            },
            b,
        }
    }
}

/// An imported model: the lowered layers plus the tract reference.
pub struct ImportedModel {
    /// The network as affine layers with ReLU between them.
    pub model: Model,
    /// Input shape (without the batch dimension).
    pub input_shape: Vec<usize>,
    reference: Arc<TypedRunnableModel>,
}

impl ImportedModel {
    /// Runs the plaintext reference (tract) on one input; returns the flat output.
    pub fn reference(&self, input: &[f32]) -> Result<Vec<f32>, ImportError> {
        let mut shape = vec![1usize];
        shape.extend(&self.input_shape);
        let tensor = tract_ndarray::Array::from_shape_vec(shape, input.to_vec())
            .map_err(|e| ImportError::Model(format!("input shape: {e}")))?;
        let out = self
            .reference
            .run(tvec!(Tensor::from(tensor).into()))
            .map_err(|e| ImportError::Model(format!("tract: {e}")))?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| ImportError::Model(format!("tract output: {e}")))?;
        Ok(view.iter().copied().collect())
    }
}

fn load_err(path: &Path, e: impl std::fmt::Display) -> ImportError {
    ImportError::Load {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn node_err(node: &NodeProto, message: impl Into<String>) -> ImportError {
    ImportError::Node {
        node: node.name.clone(),
        op: node.op_type.clone(),
        message: message.into(),
    }
}

/// Imports an ONNX file.
pub fn import(path: &Path) -> Result<ImportedModel, ImportError> {
    let onnx = onnx();
    let proto = onnx
        .proto_model_for_path(path)
        .map_err(|e| load_err(path, e))?;
    let reference = onnx
        .model_for_path(path)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| load_err(path, e))?;
    let input_fact = reference
        .model()
        .input_fact(0)
        .map_err(|e| load_err(path, e))?
        .clone();
    let dims: Vec<usize> = input_fact
        .shape
        .as_concrete()
        .ok_or_else(|| ImportError::Model("input shape is not static".into()))?
        .to_vec();
    if dims.first() != Some(&1) {
        return Err(ImportError::Model(format!(
            "expected batch size 1, input shape {dims:?}"
        )));
    }
    let input_shape = dims[1..].to_vec();
    let model = lower(&proto, path, &input_shape)?;
    Ok(ImportedModel {
        model,
        input_shape,
        reference,
    })
}

fn tensor_f64(t: &Tensor) -> Result<Vec<f64>, String> {
    let t = t.cast_to::<f64>().map_err(|e| e.to_string())?;
    let view = t.to_plain_array_view::<f64>().map_err(|e| e.to_string())?;
    Ok(view.iter().copied().collect())
}

/// Lowers the graph of `proto` to affine layers.
fn lower(proto: &ModelProto, path: &Path, input_shape: &[usize]) -> Result<Model, ImportError> {
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| ImportError::Model("no graph".into()))?;
    let dir = path.parent().and_then(|p| p.to_str());
    let mut consts: HashMap<String, Tensor> = HashMap::new();
    for init in &graph.initializer {
        let t = tract_onnx::tensor::load_tensor(&FopenDataResolver, init, dir)
            .map_err(|e| load_err(path, e))?;
        consts.insert(init.name.clone(), t);
    }
    let mut shape = match *input_shape {
        [c, h, w] => Shape::Image(c, h, w),
        [n] => Shape::Flat(n),
        _ => {
            return Err(ImportError::Model(format!(
                "input shape {input_shape:?} is neither C×H×W nor flat"
            )))
        }
    };
    let input_len = shape.len();
    let mut layers: Vec<Layer> = Vec::new();
    let mut pending: Option<Affine> = None;

    // The first layer keeps its convolution's geometry only if nothing else was folded into it.
    let mut conv_candidate: Option<FirstConv> = None;
    let mut first_conv: Option<FirstConv> = None;
    let mut folded_ops = 0usize;
    let push = |pending: &mut Option<Affine>, folded_ops: &mut usize, next: Affine| {
        *folded_ops += 1;
        *pending = Some(match pending.take() {
            None => next,
            Some(prev) => next.after(prev),
        });
    };

    for node in &graph.node {
        let op = node.op_type.as_str();
        let constant = |i: usize| -> Result<&Tensor, ImportError> {
            node.input
                .get(i)
                .and_then(|name| consts.get(name))
                .ok_or_else(|| node_err(node, format!("input {i} must be a constant initializer")))
        };
        match op {
            "Constant" => {
                let value = node
                    .attribute
                    .iter()
                    .find(|a| a.name == "value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or_else(|| node_err(node, "constant without a tensor value"))?;
                let t = tract_onnx::tensor::load_tensor(&FopenDataResolver, value, dir)
                    .map_err(|e| node_err(node, e.to_string()))?;
                if let Some(out) = node.output.first() {
                    consts.insert(out.clone(), t);
                }
            }
            "Identity" | "Dropout" => {}
            "Flatten" | "Reshape" => shape = Shape::Flat(shape.len()),
            "Relu" => {
                let affine = pending
                    .take()
                    .ok_or_else(|| node_err(node, "ReLU must follow a linear layer"))?;
                if layers.is_empty() && folded_ops == 1 {
                    first_conv = conv_candidate.take();
                }
                folded_ops = 0;
                layers.push(Layer {
                    weights: affine.w,
                    bias: affine.b,
                    relu: true,
                });
            }
            "Conv" => {
                let (affine, out, conv) = lower_conv(
                    node,
                    shape,
                    constant(1)?,
                    node.input.get(2).map(|_| constant(2)).transpose()?,
                )?;
                if layers.is_empty() && pending.is_none() {
                    conv_candidate = conv;
                }
                push(&mut pending, &mut folded_ops, affine);
                shape = out;
            }
            "Gemm" | "MatMul" => {
                let affine = lower_gemm(
                    node,
                    shape.len(),
                    constant(1)?,
                    node.input.get(2).map(|_| constant(2)).transpose()?,
                )?;
                shape = Shape::Flat(affine.w.rows);
                push(&mut pending, &mut folded_ops, affine);
            }
            "Add" => {
                let b = tensor_f64(constant(1)?).map_err(|e| node_err(node, e))?;
                if b.len() != shape.len() {
                    return Err(node_err(
                        node,
                        format!("bias of {} for {} values", b.len(), shape.len()),
                    ));
                }
                let n = shape.len();
                let mut id = Affine {
                    w: Matrix {
                        rows: n,
                        cols: n,
                        data: vec![0.0; n * n],
                    },
                    b,
                };
                for i in 0..n {
                    id.w.data[i * n + i] = 1.0;
                }
                push(&mut pending, &mut folded_ops, id);
            }
            "BatchNormalization" => {
                let Shape::Image(c, h, w) = shape else {
                    return Err(node_err(node, "batch normalisation of a flat vector"));
                };
                let eps = node
                    .attribute
                    .iter()
                    .find(|a| a.name == "epsilon")
                    .map_or(1e-5, |a| a.f as f64);
                let get = |i| tensor_f64(constant(i)?).map_err(|e| node_err(node, e));
                let (gamma, beta, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
                let n = c * h * w;
                let mut aff = Affine {
                    w: Matrix {
                        rows: n,
                        cols: n,
                        data: vec![0.0; n * n],
                    },
                    b: vec![0.0; n],
                };
                for ch in 0..c {
                    let s = gamma[ch] / (var[ch] + eps).sqrt();
                    for p in 0..h * w {
                        let i = ch * h * w + p;
                        aff.w.data[i * n + i] = s;
                        aff.b[i] = beta[ch] - s * mean[ch];
                    }
                }
                push(&mut pending, &mut folded_ops, aff);
            }
            "AveragePool" => {
                let (affine, out) = lower_avg_pool(node, shape)?;
                push(&mut pending, &mut folded_ops, affine);
                shape = out;
            }
            _ => {
                return Err(ImportError::Unsupported {
                    op: op.to_string(),
                    node: node.name.clone(),
                })
            }
        }
    }
    let last = pending.ok_or_else(|| ImportError::Model("the model ends with ReLU".into()))?;
    layers.push(Layer {
        weights: last.w,
        bias: last.b,
        relu: false,
    });
    let model = Model {
        input_len,
        layers,
        first_conv,
    };
    model
        .validate()
        .map_err(|e| ImportError::Model(e.to_string()))?;
    Ok(model)
}

fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.clone())
}

fn lower_conv(
    node: &NodeProto,
    shape: Shape,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> Result<(Affine, Shape, Option<FirstConv>), ImportError> {
    let Shape::Image(c_in, h, w) = shape else {
        return Err(node_err(node, "convolution of a flat vector"));
    };
    let wshape = weight.shape().to_vec();
    let [c_out, wc, kh, kw] = wshape[..] else {
        return Err(node_err(
            node,
            format!("weight shape {wshape:?} is not 4-D"),
        ));
    };
    if wc != c_in {
        return Err(node_err(
            node,
            format!("weights for {wc} channels, input has {c_in}"),
        ));
    }
    if ints(node, "group").is_some_and(|g| g.iter().any(|&g| g != 1))
        || node
            .attribute
            .iter()
            .any(|a| a.name == "group" && a.i != 1 && a.i != 0)
    {
        return Err(node_err(node, "grouped convolution"));
    }
    if ints(node, "dilations").is_some_and(|d| d.iter().any(|&d| d != 1)) {
        return Err(node_err(node, "dilated convolution"));
    }
    let strides = ints(node, "strides").unwrap_or_else(|| vec![1, 1]);
    let pads = ints(node, "pads").unwrap_or_else(|| vec![0, 0, 0, 0]);
    if strides.len() != 2 || pads.len() != 4 {
        return Err(node_err(node, "expected 2-D strides and pads"));
    }
    let (sy, sx) = (strides[0] as usize, strides[1] as usize);
    let (pt, pl, pb, pr) = (
        pads[0] as usize,
        pads[1] as usize,
        pads[2] as usize,
        pads[3] as usize,
    );
    let h_out = (h + pt + pb - kh) / sy + 1;
    let w_out = (w + pl + pr - kw) / sx + 1;
    let wt = tensor_f64(weight).map_err(|e| node_err(node, e))?;
    let bias = match bias {
        Some(b) => tensor_f64(b).map_err(|e| node_err(node, e))?,
        None => vec![0.0; c_out],
    };
    let (rows, cols) = (c_out * h_out * w_out, c_in * h * w);
    let mut data = vec![0.0; rows * cols];
    let mut b = vec![0.0; rows];
    for co in 0..c_out {
        for oy in 0..h_out {
            for ox in 0..w_out {
                let r = (co * h_out + oy) * w_out + ox;
                b[r] = bias[co];
                for ci in 0..c_in {
                    for dy in 0..kh {
                        for dx in 0..kw {
                            let iy = (oy * sy + dy) as isize - pt as isize;
                            let ix = (ox * sx + dx) as isize - pl as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let col = (ci * h + iy as usize) * w + ix as usize;
                            data[r * cols + col] += wt[((co * c_in + ci) * kh + dy) * kw + dx];
                        }
                    }
                }
            }
        }
    }
    // One input channel and no padding: the client can gather the patches itself.
    let conv = (c_in == 1 && pt + pl + pb + pr == 0).then(|| FirstConv {
        gather: Im2col {
            height: h as u32,
            width: w as u32,
            kernel_h: kh as u32,
            kernel_w: kw as u32,
            stride_h: sy as u32,
            stride_w: sx as u32,
        },
        out_channels: c_out,
        kernel: wt.clone(),
    });
    Ok((
        Affine {
            w: Matrix { rows, cols, data },
            b,
        },
        Shape::Image(c_out, h_out, w_out),
        conv,
    ))
}

fn lower_gemm(
    node: &NodeProto,
    inputs: usize,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Affine, ImportError> {
    let attr_i = |name: &str, default: i64| {
        node.attribute
            .iter()
            .find(|a| a.name == name)
            .map_or(default, |a| a.i)
    };
    let attr_f = |name: &str| {
        node.attribute
            .iter()
            .find(|a| a.name == name)
            .map_or(1.0, |a| a.f as f64)
    };
    if attr_i("transA", 0) != 0 {
        return Err(node_err(node, "transA is not supported"));
    }
    // Gemm with transB = 1 stores W as (out, in); MatMul's B is (in, out).
    let trans_b = node.op_type == "Gemm" && attr_i("transB", 0) != 0;
    let (alpha, beta) = if node.op_type == "Gemm" {
        (attr_f("alpha"), attr_f("beta"))
    } else {
        (1.0, 1.0)
    };
    let shape = weight.shape().to_vec();
    let [d0, d1] = shape[..] else {
        return Err(node_err(node, format!("weight shape {shape:?} is not 2-D")));
    };
    let (rows, cols) = if trans_b { (d0, d1) } else { (d1, d0) };
    if cols != inputs {
        return Err(node_err(
            node,
            format!("weights for {cols} inputs, got {inputs}"),
        ));
    }
    let wt = tensor_f64(weight).map_err(|e| node_err(node, e))?;
    let mut data = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let v = if trans_b {
                wt[r * cols + c]
            } else {
                wt[c * rows + r]
            };
            data[r * cols + c] = alpha * v;
        }
    }
    let b = match bias {
        Some(t) => {
            let v = tensor_f64(t).map_err(|e| node_err(node, e))?;
            if v.len() == 1 {
                vec![beta * v[0]; rows]
            } else if v.len() == rows {
                v.iter().map(|x| beta * x).collect()
            } else {
                return Err(node_err(
                    node,
                    format!("bias of {} for {rows} outputs", v.len()),
                ));
            }
        }
        None => vec![0.0; rows],
    };
    Ok(Affine {
        w: Matrix { rows, cols, data },
        b,
    })
}

fn lower_avg_pool(node: &NodeProto, shape: Shape) -> Result<(Affine, Shape), ImportError> {
    let Shape::Image(c, h, w) = shape else {
        return Err(node_err(node, "pooling of a flat vector"));
    };
    let kernel = ints(node, "kernel_shape").ok_or_else(|| node_err(node, "no kernel_shape"))?;
    if kernel.len() != 2 {
        return Err(node_err(node, "expected a 2-D kernel"));
    }
    let strides = ints(node, "strides").unwrap_or_else(|| kernel.clone());
    if ints(node, "pads").is_some_and(|p| p.iter().any(|&p| p != 0)) {
        return Err(node_err(node, "padded pooling"));
    }
    let (kh, kw, sy, sx) = (
        kernel[0] as usize,
        kernel[1] as usize,
        strides[0] as usize,
        strides[1] as usize,
    );
    let h_out = (h - kh) / sy + 1;
    let w_out = (w - kw) / sx + 1;
    let (rows, cols) = (c * h_out * w_out, c * h * w);
    let mut data = vec![0.0; rows * cols];
    let weight = 1.0 / (kh * kw) as f64;
    for ch in 0..c {
        for oy in 0..h_out {
            for ox in 0..w_out {
                let r = (ch * h_out + oy) * w_out + ox;
                for dy in 0..kh {
                    for dx in 0..kw {
                        let col = (ch * h + oy * sy + dy) * w + ox * sx + dx;
                        data[r * cols + col] = weight;
                    }
                }
            }
        }
    }
    Ok((
        Affine {
            w: Matrix { rows, cols, data },
            b: vec![0.0; rows],
        },
        Shape::Image(c, h_out, w_out),
    ))
}
