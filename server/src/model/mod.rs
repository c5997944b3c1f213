//! Models: the network (layers, calibration), its layout in the slots, ONNX import and the
//! MNIST test data.
//!
//! Weights are [`Matrix`](crate::eval::Matrix), the evaluator's input type for linear
//! transforms: the model sits above the evaluator and below the protocol.

mod layers;
mod layout;
pub mod mnist;
pub mod onnx;
pub mod png_input;

pub use layers::{FirstConv, Layer, Model, ACTIVATION_CAP};
pub use layout::CompiledModel;
pub(crate) use layout::LayerPlan;
pub use onnx::{import, ImportError, ImportedModel};

use crate::eval::EvalError;

/// Errors of a model or its layout.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model is malformed or does not fit the slots.
    #[error("model: {0}")]
    Malformed(String),
    /// From the evaluator (compiling a layer's transform).
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// From the CKKS core (e.g. a convolution's geometry).
    #[error(transparent)]
    Core(#[from] client_core::Error),
}
