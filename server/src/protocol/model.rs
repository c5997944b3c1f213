//! A network as the protocol sees it: dense (or lowered convolutional) layers, each an affine
//! map W·x + b, with ReLU between them.

use crate::eval::Matrix;

use super::ProtocolError;

/// One affine layer, optionally followed by ReLU.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// Weights (rows = outputs).
    pub weights: Matrix,
    /// Bias, one per output.
    pub bias: Vec<f64>,
    /// Whether ReLU follows.
    pub relu: bool,
}

/// A network: affine layers with ReLU after every hidden one.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// Number of inputs.
    pub input_len: usize,
    /// The layers, first to last.
    pub layers: Vec<Layer>,
}

impl Model {
    /// Checks that consecutive layers fit together and that only the last layer lacks ReLU.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        let mut width = self.input_len;
        if self.layers.is_empty() {
            return Err(ProtocolError::Model("no layers".into()));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let w = &layer.weights;
            if w.cols != width || w.data.len() != w.rows * w.cols || layer.bias.len() != w.rows {
                return Err(ProtocolError::Model(format!(
                    "layer {i}: {}×{} weights and {} biases do not follow {width} inputs",
                    w.rows,
                    w.cols,
                    layer.bias.len()
                )));
            }
            let last = i + 1 == self.layers.len();
            if layer.relu == last {
                return Err(ProtocolError::Model(format!(
                    "layer {i}: ReLU must follow every layer but the last"
                )));
            }
            width = w.rows;
        }
        Ok(())
    }

    /// Number of outputs.
    pub fn output_len(&self) -> usize {
        self.layers.last().map_or(0, |l| l.weights.rows)
    }

    /// Plaintext evaluation (f64), the reference for the encrypted result.
    pub fn eval_plain(&self, x: &[f64]) -> Vec<f64> {
        let mut v = x.to_vec();
        for layer in &self.layers {
            let mut y = layer.weights.apply_plain(&v);
            for (o, b) in y.iter_mut().zip(&layer.bias) {
                *o += b;
                if layer.relu && *o < 0.0 {
                    *o = 0.0;
                }
            }
            v = y;
        }
        v
    }

    /// Pre-activations of every layer for input `x` (for calibrating value bounds).
    pub fn pre_activations(&self, x: &[f64]) -> Vec<Vec<f64>> {
        let mut v = x.to_vec();
        let mut out = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let mut y = layer.weights.apply_plain(&v);
            for (o, b) in y.iter_mut().zip(&layer.bias) {
                *o += b;
            }
            out.push(y.clone());
            if layer.relu {
                for o in y.iter_mut() {
                    *o = o.max(0.0);
                }
            }
            v = y;
        }
        out
    }
}
