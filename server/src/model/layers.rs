//! A network as the protocol sees it: dense (or lowered convolutional) layers, each an affine
//! map W·x + b, with ReLU between them, and its calibration.

use client_core::wire::input::Im2col;

use super::ModelError;
use crate::eval::Matrix;

/// Largest hidden pre-activation [`Model::calibrated`] keeps as trained: with the 50 % margin
/// the hidden layers' bound stays below 2^5, which the refresh mask's budget at N = 2^14
/// allows (the output layer is not scaled: the logits must come out as trained, so a model
/// with larger logits still fails the planner). The MNIST networks stay below it; the faces
/// networks' first dense layer reaches about 120 and is scaled down.
pub const ACTIVATION_CAP: f64 = 20.0;

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
    /// Set when the first layer is exactly this convolution (its dense form is still
    /// `layers[0]`): the client can then send the convolution's patches (im2col), which turns
    /// the layer into whole-block products.
    pub first_conv: Option<FirstConv>,
}

/// A one-input-channel convolution without padding, as the first layer.
#[derive(Clone, Debug, PartialEq)]
pub struct FirstConv {
    /// The window geometry over the input image.
    pub gather: Im2col,
    /// Number of output channels.
    pub out_channels: usize,
    /// Kernel weights, [channel][window offset t] with t = dy·kernel_w + dx.
    pub kernel: Vec<f64>,
}

impl FirstConv {
    /// Checks the geometry against the first layer's dense form.
    fn validate(&self, input_len: usize, first: &Layer) -> Result<(), ModelError> {
        let g = &self.gather;
        let (oh, ow) = g.output_dims()?;
        let window = g.kernel_h as usize * g.kernel_w as usize;
        if g.height as usize * g.width as usize != input_len
            || self.kernel.len() != self.out_channels * window
            || first.weights.rows != self.out_channels * oh * ow
        {
            return Err(ModelError::Malformed(
                "the first convolution does not match the first layer".into(),
            ));
        }
        Ok(())
    }
}

impl Model {
    /// Checks that consecutive layers fit together and that only the last layer lacks ReLU.
    pub fn validate(&self) -> Result<(), ModelError> {
        let mut width = self.input_len;
        if self.layers.is_empty() {
            return Err(ModelError::Malformed("no layers".into()));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let w = &layer.weights;
            if w.cols != width || w.data.len() != w.rows * w.cols || layer.bias.len() != w.rows {
                return Err(ModelError::Malformed(format!(
                    "layer {i}: {}×{} weights and {} biases do not follow {width} inputs",
                    w.rows,
                    w.cols,
                    layer.bias.len()
                )));
            }
            let last = i + 1 == self.layers.len();
            if layer.relu == last {
                return Err(ModelError::Malformed(format!(
                    "layer {i}: ReLU must follow every layer but the last"
                )));
            }
            width = w.rows;
        }
        if let Some(conv) = &self.first_conv {
            conv.validate(self.input_len, &self.layers[0])?;
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

    /// The same function with every hidden layer's pre-activations at most `cap` in magnitude
    /// over `inputs` (the encrypted protocol's budgets grow with the largest one): layer i is
    /// divided by c_i = max(1, max|y_i| / cap) and the next layer multiplied by it. ReLU is
    /// positively homogeneous, so the outputs do not change.
    pub fn with_capped_activations(&self, inputs: &[Vec<f64>], cap: f64) -> Model {
        let hidden = self.layers.len() - 1;
        let mut peak = vec![0.0f64; hidden];
        for x in inputs {
            for (p, layer) in peak.iter_mut().zip(self.pre_activations(x)) {
                *p = layer.iter().fold(*p, |m, v| m.max(v.abs()));
            }
        }
        let factors: Vec<f64> = peak.iter().map(|&p| (p / cap).max(1.0)).collect();
        let mut model = self.clone();
        let mut prev = 1.0;
        for (i, layer) in model.layers.iter_mut().enumerate() {
            let own = factors.get(i).copied().unwrap_or(1.0);
            for w in layer.weights.data.iter_mut() {
                *w *= prev / own;
            }
            for b in layer.bias.iter_mut() {
                *b /= own;
            }
            if i == 0 {
                if let Some(conv) = model.first_conv.as_mut() {
                    for w in conv.kernel.iter_mut() {
                        *w /= own;
                    }
                }
            }
            prev = own;
        }
        model
    }

    /// Calibration on `inputs`: [`Model::with_capped_activations`] at `cap`, and the bound on
    /// |pre-activation| of the result: the largest one seen, with a 50 % margin.
    pub fn calibrated(&self, inputs: &[Vec<f64>], cap: f64) -> (Model, f64) {
        let model = self.with_capped_activations(inputs, cap);
        let mut bound = 1.0f64;
        for x in inputs {
            for layer in model.pre_activations(x) {
                bound = layer.iter().fold(bound, |b, v| b.max(v.abs()));
            }
        }
        (model, (bound * 1.5).ceil())
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
