//! One lowering per ONNX operator family: each takes the node's operands (constants or affine
//! values) and returns its outputs. A value op composes a local sparse map onto its input's map;
//! an op on constants only is folded.
//!
//! ```text
//! elementwise.rs  Add Sub Mul Div Neg (by constants, or sums of two values), BatchNormalization
//! movement.rs     Identity Dropout Flatten Reshape Squeeze Unsqueeze Transpose Concat Pad Slice
//! spatial.rs      Conv AveragePool GlobalAveragePool
//! gemm.rs         Gemm MatMul
//! constant.rs     Constant Shape Gather Cast ConstantOfShape (shape arithmetic exporters write)
//! ```

mod constant;
mod elementwise;
mod gemm;
mod movement;
mod spatial;

pub(crate) use spatial::first_conv;

use tract_onnx::pb::{AttributeProto, NodeProto};

use super::affine::SparseAffine;
use super::operand::{Const, Operand, Value};

/// Why a node could not be lowered.
#[derive(Debug)]
pub(crate) enum OpError {
    /// The operator is not one the lowering knows.
    Unsupported,
    /// A known operator with inputs or attributes it cannot handle.
    Invalid(String),
}

impl From<String> for OpError {
    fn from(s: String) -> Self {
        OpError::Invalid(s)
    }
}

pub(crate) type OpResult = Result<Vec<Operand>, OpError>;

/// The operators the import lowers (named in the error that lists what a model lacks).
pub const SUPPORTED: &str = "Add, Sub, Mul, Div, Neg (by constants, or the sum of two \
    branches, residual blocks included), BatchNormalization, Identity, Dropout, Flatten, Reshape, Squeeze, Unsqueeze, \
    Transpose, Concat, Pad, Slice, Conv, AveragePool, GlobalAveragePool, Gemm, MatMul, Constant, \
    Shape, Gather, Cast, ConstantOfShape; Relu, LeakyRelu, PRelu and Clip between them (one round each); a final Softmax or LogSoftmax is dropped";

/// Lowers one node.
pub(crate) fn lower(node: &NodeProto, inputs: &[Option<&Operand>]) -> OpResult {
    match node.op_type.as_str() {
        "Add" | "Sub" | "Mul" | "Div" => elementwise::binary(node, inputs),
        "Neg" => elementwise::neg(inputs),
        "BatchNormalization" => elementwise::batch_norm(node, inputs),
        "Identity" | "Dropout" => Ok(vec![input(inputs, 0)?.clone()]),
        "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => movement::reshape(node, inputs),
        "Transpose" => movement::transpose(node, inputs),
        "Concat" => movement::concat(node, inputs),
        "Pad" => movement::pad(node, inputs),
        "Slice" => movement::slice(node, inputs),
        "Conv" => spatial::conv(node, inputs),
        "AveragePool" | "GlobalAveragePool" => spatial::average_pool(node, inputs),
        "Gemm" => gemm::gemm(node, inputs),
        "MatMul" => gemm::matmul(inputs),
        "Constant" => constant::constant(node),
        "Shape" => constant::shape(node, inputs),
        "Gather" => constant::gather(node, inputs),
        "Cast" => constant::cast(node, inputs),
        "ConstantOfShape" => constant::constant_of_shape(node, inputs),
        _ => Err(OpError::Unsupported),
    }
}

/// Whether [`lower`] knows the operator.
pub(crate) fn is_supported(op: &str) -> bool {
    matches!(
        op,
        "Add"
            | "Sub"
            | "Mul"
            | "Div"
            | "Neg"
            | "BatchNormalization"
            | "Identity"
            | "Dropout"
            | "Flatten"
            | "Reshape"
            | "Squeeze"
            | "Unsqueeze"
            | "Transpose"
            | "Concat"
            | "Pad"
            | "Slice"
            | "Conv"
            | "AveragePool"
            | "GlobalAveragePool"
            | "Gemm"
            | "MatMul"
            | "Constant"
            | "Shape"
            | "Gather"
            | "Cast"
            | "ConstantOfShape"
    )
}

/// Operand `i` (an error if absent).
pub(crate) fn input<'a>(inputs: &[Option<&'a Operand>], i: usize) -> Result<&'a Operand, OpError> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| OpError::Invalid(format!("input {i} is missing")))
}

/// Operand `i`, which must be a constant.
pub(crate) fn constant_input<'a>(
    inputs: &[Option<&'a Operand>],
    i: usize,
) -> Result<&'a Const, OpError> {
    match input(inputs, i)? {
        Operand::Const(c) => Ok(c),
        Operand::Value(_) => Err(OpError::Invalid(format!(
            "input {i} must be a constant (weights computed from the input are not affine)"
        ))),
    }
}

/// Operand `i` if present, as a constant.
pub(crate) fn optional_constant<'a>(
    inputs: &[Option<&'a Operand>],
    i: usize,
) -> Result<Option<&'a Const>, OpError> {
    match inputs.get(i).copied().flatten() {
        None => Ok(None),
        Some(_) => constant_input(inputs, i).map(Some),
    }
}

fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// An integer attribute.
pub(crate) fn attr_i(node: &NodeProto, name: &str) -> Option<i64> {
    attribute(node, name).map(|a| a.i)
}

/// A float attribute.
pub(crate) fn attr_f(node: &NodeProto, name: &str) -> Option<f64> {
    attribute(node, name).map(|a| f64::from(a.f))
}

/// An integer-list attribute.
pub(crate) fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attribute(node, name).map(|a| a.ints.clone())
}

/// A string attribute.
pub(crate) fn attr_s(node: &NodeProto, name: &str) -> Option<String> {
    attribute(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// A value that applies `local` to `v` and has shape `dims`.
pub(crate) fn apply(v: &Value, local: &SparseAffine, dims: Vec<usize>) -> Operand {
    Operand::Value(Value {
        map: v.map.then(local),
        dims,
        segment: v.segment,
        nonnegative: false,
    })
}

/// Non-negative integers from a list (dimensions, strides, pads).
pub(crate) fn usizes(v: &[i64], what: &str) -> Result<Vec<usize>, OpError> {
    v.iter()
        .map(|&x| usize::try_from(x).map_err(|_| OpError::Invalid(format!("{what} {x} < 0"))))
        .collect()
}
