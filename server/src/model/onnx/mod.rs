//! ONNX import: the graph is lowered to affine layers with ReLU between them, and a tract
//! runnable of the same file serves as the plaintext reference.
//!
//! The walk follows the nodes in order and keeps, for every edge, either a constant or a sparse
//! affine map of the current *segment*'s input (the model input, then each activation's
//! output). Every op that is affine in its one non-constant operand — the arithmetic,
//! normalisation, padding, reshaping and linear ops exporters write — composes onto that map
//! (`ops/`); the sum of two branches of one segment is the sum of their maps. An activation
//! closes the segment: its input map becomes one protocol layer, and values still read after
//! it (skip connections) ride through its round as extra neurons — x itself if it is known to
//! be ≥ 0, else ReLU(x) and ReLU(−x), whose difference is x. Shape arithmetic on constants
//! is folded. Every node that cannot be lowered is collected, so one error names them all.
//!
//! ```text
//! mod.rs         import, the walk, segments and skip connections
//! operand.rs     constants, values (maps with shapes), broadcasting
//! affine.rs      sparse affine maps and their composition
//! activation.rs  Relu, LeakyRelu, PRelu, Clip as ReLUs in one round
//! ops/           one lowering per operator family
//! ```

mod activation;
mod affine;
mod operand;
mod ops;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tract_onnx::data_resolver::FopenDataResolver;
use tract_onnx::pb::{GraphProto, NodeProto};
use tract_onnx::prelude::*;

use super::{FirstConv, Layer, Model};
use activation::is_activation;
use affine::{Source, SparseAffine};
use operand::{count, Const, Operand, Value};
use ops::OpError;

pub use ops::SUPPORTED;

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
    /// Operators the lowering does not support, every one of the model's.
    #[error("unsupported operators: {}; supported are {SUPPORTED}", list_nodes(.nodes))]
    Unsupported {
        /// (ONNX op type, node name) of each unsupported node.
        nodes: Vec<(String, String)>,
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

fn list_nodes(nodes: &[(String, String)]) -> String {
    nodes
        .iter()
        .map(|(op, node)| format!("{op} at node '{node}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An imported model: the lowered layers plus the tract reference.
pub struct ImportedModel {
    /// The network as affine layers with ReLU between them.
    pub model: Model,
    /// Input shape (without the batch dimension).
    pub input_shape: Vec<usize>,
    /// What the lowering changed that a user should know (e.g. a final Softmax dropped).
    pub notes: Vec<String>,
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
        .ok_or_else(|| {
            ImportError::Model(
                "the input shape is not static (export with a fixed batch size of 1)".into(),
            )
        })?
        .to_vec();
    if dims.first() != Some(&1) {
        return Err(ImportError::Model(format!(
            "expected batch size 1, input shape {dims:?}"
        )));
    }
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| ImportError::Model("no graph".into()))?;
    let dir = path.parent().and_then(|p| p.to_str());
    let (model, notes) = lower(graph, dir, &dims)?;
    Ok(ImportedModel {
        model,
        input_shape: dims[1..].to_vec(),
        notes,
        reference,
    })
}

/// Whether the walk handles the operator (activations and a final softmax included).
fn known(op: &str) -> bool {
    is_activation(op) || matches!(op, "Softmax" | "LogSoftmax") || ops::is_supported(op)
}

/// Lowers `graph`, whose input has the ONNX shape `input_dims` (batch 1 first).
fn lower(
    graph: &GraphProto,
    dir: Option<&str>,
    input_dims: &[usize],
) -> Result<(Model, Vec<String>), ImportError> {
    let mut edges: HashMap<String, Operand> = HashMap::new();
    for init in &graph.initializer {
        let t = tract_onnx::tensor::load_tensor(&FopenDataResolver, init, dir)
            .map_err(|e| ImportError::Model(format!("initializer '{}': {e}", init.name)))?;
        let c = Const::from_tensor(&t)
            .map_err(|e| ImportError::Model(format!("initializer '{}': {e}", init.name)))?;
        edges.insert(init.name.clone(), Operand::Const(c));
    }
    let input_name = graph
        .input
        .iter()
        .map(|i| &i.name)
        .find(|n| !edges.contains_key(*n))
        .ok_or_else(|| ImportError::Model("the graph has no input".into()))?
        .clone();
    let input_len = count(input_dims);
    edges.insert(
        input_name.clone(),
        Operand::Value(Value {
            map: SparseAffine::identity(input_len),
            dims: input_dims.to_vec(),
            segment: 0,
            nonnegative: false,
        }),
    );
    // The last node that reads each edge (the graph output is read after every node): values
    // still needed after an activation are carried through its round.
    let mut last_use: HashMap<&str, usize> = HashMap::new();
    for (t, node) in graph.node.iter().enumerate() {
        for name in &node.input {
            last_use.insert(name.as_str(), t);
        }
    }
    let output_name = graph
        .output
        .first()
        .map(|o| o.name.clone())
        .ok_or_else(|| ImportError::Model("the graph has no output".into()))?;
    last_use.insert(output_name.as_str(), usize::MAX);

    let mut layers: Vec<Layer> = Vec::new();
    let mut notes = Vec::new();
    let mut unsupported: Vec<(String, String)> = Vec::new();
    let mut first_error: Option<ImportError> = None;
    let mut broken: HashSet<String> = HashSet::new();
    // (first convolution, the edge it produced): the client gathers its patches if it is the
    // whole first layer.
    let mut conv_candidate: Option<(FirstConv, String)> = None;
    let mut first_conv = None;
    let mut dropped_softmax: Option<String> = None;
    let node_error = |node: &NodeProto, message: String| ImportError::Node {
        node: node.name.clone(),
        op: node.op_type.clone(),
        message,
    };

    let mut carried_note_done = false;
    for (t, node) in graph.node.iter().enumerate() {
        let op = node.op_type.as_str();
        let named: Vec<Option<&Operand>> = node
            .input
            .iter()
            .map(|n| if n.is_empty() { None } else { edges.get(n) })
            .collect();
        let missing = node
            .input
            .iter()
            .zip(&named)
            .any(|(n, o)| !n.is_empty() && o.is_none());
        if missing || node.input.iter().any(|n| broken.contains(n)) {
            // Downstream of a node that failed (or an input never produced): no second error,
            // but an operator the import lacks is still named.
            if !known(op) {
                unsupported.push((op.to_string(), node.name.clone()));
            } else if !node.input.iter().any(|n| broken.contains(n)) {
                first_error.get_or_insert_with(|| {
                    node_error(node, "an input is not produced by any earlier node".into())
                });
            }
            broken.extend(node.output.iter().cloned());
            continue;
        }
        if is_activation(op) {
            let Some(Operand::Value(v)) = named.first().copied().flatten() else {
                first_error
                    .get_or_insert_with(|| node_error(node, "an activation of a constant".into()));
                broken.extend(node.output.iter().cloned());
                continue;
            };
            let v = v.clone();
            if v.segment != layers.len() {
                first_error.get_or_insert_with(|| {
                    node_error(
                        node,
                        "a skip connection across an activation (not supported yet)".into(),
                    )
                });
                broken.extend(node.output.iter().cloned());
                continue;
            }
            // Values of this segment read after the activation (a skip connection) ride along
            // in its round: x as itself if it is known ≥ 0, else as ReLU(x) and ReLU(−x).
            let segment = layers.len();
            let mut carried: Vec<(String, Value)> = edges
                .iter()
                .filter_map(|(name, operand)| match operand {
                    Operand::Value(c)
                        if c.segment == segment
                            && last_use.get(name.as_str()).is_some_and(|&u| u > t) =>
                    {
                        Some((name.clone(), c.clone()))
                    }
                    _ => None,
                })
                .collect();
            // Edge order fixes the layer's row order: make it independent of the hash map.
            carried.sort_by(|a, b| a.0.cmp(&b.0));
            let act = match activation::activation(node, &v, &named) {
                Ok(a) => a,
                Err(OpError::Invalid(m)) => {
                    first_error.get_or_insert_with(|| node_error(node, m));
                    broken.extend(node.output.iter().cloned());
                    continue;
                }
                Err(OpError::Unsupported) => unreachable!("an activation is known"),
            };
            let mut parts: Vec<SparseAffine> = act.pre.iter().map(|(m, _)| m.clone()).collect();
            for (_, c) in &carried {
                parts.push(c.map.clone());
                if !c.nonnegative {
                    parts.push(c.map.combine(&c.map, -2.0));
                }
            }
            let refs: Vec<&SparseAffine> = parts.iter().collect();
            let sources: Vec<Source> = parts
                .iter()
                .enumerate()
                .flat_map(|(k, p)| (0..p.outputs()).map(move |j| Source::Row(k, j)))
                .collect();
            let stacked = SparseAffine::gather(v.map.inputs(), &refs, &sources);
            let width = stacked.outputs();
            if layers.is_empty() && carried.is_empty() && op == "Relu" {
                if let Some((conv, edge)) = conv_candidate.take() {
                    if node.input.first() == Some(&edge) {
                        first_conv = Some(conv);
                    }
                }
            }
            layers.push(Layer {
                weights: stacked.to_dense(),
                bias: stacked.b.clone(),
                relu: true,
            });
            // Rows `from..from + n` of the new segment's input (minus the next n if `paired`).
            let pick = |from: usize, n: usize, paired: bool| {
                let mut entries: Vec<(usize, usize, f64)> =
                    (0..n).map(|i| (i, from + i, 1.0)).collect();
                if paired {
                    entries.extend((0..n).map(|i| (i, from + n + i, -1.0)));
                }
                SparseAffine::from_triplets(n, width, &entries, vec![0.0; n])
            };
            let n = v.map.outputs();
            let mut offset = n * act.pre.len();
            for (name, c) in carried {
                let len = c.map.outputs();
                let map = pick(offset, len, !c.nonnegative);
                offset += if c.nonnegative { len } else { 2 * len };
                edges.insert(
                    name,
                    Operand::Value(Value {
                        map,
                        dims: c.dims,
                        segment: segment + 1,
                        nonnegative: c.nonnegative,
                    }),
                );
            }
            if let Some(out) = node.output.first() {
                edges.insert(
                    out.clone(),
                    Operand::Value(Value {
                        map: {
                            let entries: Vec<(usize, usize, f64)> = act
                                .pre
                                .iter()
                                .enumerate()
                                .flat_map(|(k, (_, coeff))| {
                                    coeff
                                        .iter()
                                        .enumerate()
                                        .map(move |(i, &a)| (i, k * n + i, a))
                                })
                                .collect();
                            SparseAffine::from_triplets(n, width, &entries, act.offset.clone())
                        },
                        dims: v.dims.clone(),
                        segment: segment + 1,
                        nonnegative: act.nonnegative,
                    }),
                );
            }
            if !carried_note_done && width > n * act.pre.len() {
                carried_note_done = true;
                notes.push(
                    "skip connections across activations are carried through the rounds (extra neurons)"
                        .into(),
                );
            }
            continue;
        }
        if matches!(op, "Softmax" | "LogSoftmax") {
            // Monotone per row: dropped if it is the last node (checked below).
            if let (Some(x), Some(out)) = (named.first().copied().flatten(), node.output.first()) {
                edges.insert(out.clone(), x.clone());
                dropped_softmax = Some(out.clone());
                notes.push(format!(
                    "the final {op} at node '{}' is left out: the logits come back instead, with the same argmax",
                    node.name
                ));
            }
            continue;
        }
        match ops::lower(node, &named) {
            Ok(outs) => {
                if op == "Conv" && layers.is_empty() && node.input.first() == Some(&input_name) {
                    if let (Some(Operand::Const(w)), Some(out)) =
                        (named.get(1).copied().flatten(), node.output.first())
                    {
                        conv_candidate =
                            ops::first_conv(node, input_dims, w).map(|c| (c, out.clone()));
                    }
                }
                if matches!(op, "Identity" | "Dropout") {
                    if let (Some((_, edge)), Some(out)) = (&mut conv_candidate, node.output.first())
                    {
                        if node.input.first() == Some(edge) {
                            *edge = out.clone();
                        }
                    }
                }
                for (name, operand) in node.output.iter().zip(outs) {
                    edges.insert(name.clone(), operand);
                }
            }
            Err(OpError::Unsupported) => {
                unsupported.push((op.to_string(), node.name.clone()));
                broken.extend(node.output.iter().cloned());
            }
            Err(OpError::Invalid(message)) => {
                first_error.get_or_insert_with(|| node_error(node, message));
                broken.extend(node.output.iter().cloned());
            }
        }
    }
    if !unsupported.is_empty() {
        return Err(ImportError::Unsupported { nodes: unsupported });
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some(sm) = &dropped_softmax {
        if *sm != output_name {
            return Err(ImportError::Model(
                "Softmax/LogSoftmax is only supported as the last node".into(),
            ));
        }
    }
    let last = match edges.get(&output_name) {
        Some(Operand::Value(v)) => v,
        Some(Operand::Const(_)) => {
            return Err(ImportError::Model(
                "the output does not depend on the input".into(),
            ))
        }
        None => {
            return Err(ImportError::Model(format!(
                "no node produces the output '{output_name}'"
            )))
        }
    };
    if last.segment != layers.len() {
        return Err(ImportError::Model(
            "the output uses a value from before an activation (a skip connection across it is not supported yet)"
                .into(),
        ));
    }
    layers.push(Layer {
        weights: last.map.to_dense(),
        bias: last.map.b.clone(),
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
    Ok((model, notes))
}
