//! Models: ONNX import and the MNIST test data.

pub mod mnist;
pub mod onnx;
pub mod png_input;

pub use onnx::{import, ImportError, ImportedModel};
