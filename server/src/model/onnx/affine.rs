//! An affine map y = W·x + b over the current segment's input (the model input, or the output of
//! the last activation), with W sparse: most of what exporters write (normalisation, padding,
//! transposes, pooling, convolutions) touches few inputs per output, and composing sparse maps
//! keeps a 10,000-pixel input's normalisation from becoming a 10,000² dense matrix.

use sprs::{CsMat, TriMat};

use crate::eval::Matrix;

/// W (CSR, rows = outputs, columns = segment inputs) and b.
#[derive(Clone, Debug)]
pub(crate) struct SparseAffine {
    pub w: CsMat<f64>,
    pub b: Vec<f64>,
}

/// Entries of a local map as (output, input, weight); repeated pairs add up.
pub(crate) type Triplets = Vec<(usize, usize, f64)>;

impl SparseAffine {
    /// x ↦ x over `n` inputs.
    pub fn identity(n: usize) -> Self {
        Self {
            w: CsMat::eye(n),
            b: vec![0.0; n],
        }
    }

    /// A map from `inputs` to `outputs` values given by its entries and bias.
    pub fn from_triplets(outputs: usize, inputs: usize, entries: &Triplets, b: Vec<f64>) -> Self {
        debug_assert_eq!(b.len(), outputs);
        let mut t = TriMat::with_capacity((outputs, inputs), entries.len());
        for &(r, c, v) in entries {
            if v != 0.0 {
                t.add_triplet(r, c, v);
            }
        }
        Self { w: t.to_csr(), b }
    }

    /// Output count.
    pub fn outputs(&self) -> usize {
        self.w.rows()
    }

    /// Input count.
    pub fn inputs(&self) -> usize {
        self.w.cols()
    }

    /// `local ∘ self`: the map `local` applied to this map's output.
    pub fn then(&self, local: &SparseAffine) -> SparseAffine {
        debug_assert_eq!(local.inputs(), self.outputs());
        let w = &local.w * &self.w;
        let mut b = local.b.clone();
        for (r, row) in local.w.outer_iterator().enumerate() {
            b[r] += row.iter().map(|(c, &v)| v * self.b[c]).sum::<f64>();
        }
        SparseAffine { w, b }
    }

    /// `sign_a · self + sign_b · other` (same inputs, same outputs).
    pub fn combine(&self, other: &SparseAffine, scale_other: f64) -> SparseAffine {
        let scaled = other.w.map(|v| v * scale_other);
        let w = &self.w + &scaled;
        let b = self
            .b
            .iter()
            .zip(&other.b)
            .map(|(a, c)| a + scale_other * c)
            .collect();
        SparseAffine { w, b }
    }

    /// Output `i` of the result is `sources[i]`: a row of one of `parts`, or a constant.
    pub fn gather(inputs: usize, parts: &[&SparseAffine], sources: &[Source]) -> SparseAffine {
        let mut t = TriMat::new((sources.len(), inputs));
        let mut b = Vec::with_capacity(sources.len());
        for (r, s) in sources.iter().enumerate() {
            match *s {
                Source::Row(k, j) => {
                    let part = parts[k];
                    if let Some(row) = part.w.outer_view(j) {
                        for (c, &v) in row.iter() {
                            t.add_triplet(r, c, v);
                        }
                    }
                    b.push(part.b[j]);
                }
                Source::Constant(v) => b.push(v),
            }
        }
        SparseAffine { w: t.to_csr(), b }
    }

    /// Evaluates the map on `x` (for tests and plaintext checks).
    #[cfg(test)]
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        let mut y = self.b.clone();
        for (r, row) in self.w.outer_iterator().enumerate() {
            y[r] += row.iter().map(|(c, &v)| v * x[c]).sum::<f64>();
        }
        y
    }

    /// The dense weights the evaluator takes.
    pub fn to_dense(&self) -> Matrix {
        let (rows, cols) = (self.outputs(), self.inputs());
        let mut data = vec![0.0; rows * cols];
        for (r, row) in self.w.outer_iterator().enumerate() {
            for (c, &v) in row.iter() {
                data[r * cols + c] += v;
            }
        }
        Matrix { rows, cols, data }
    }
}

/// Where one output of a value-moving op comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Source {
    /// Row `j` of operand `k`.
    Row(usize, usize),
    /// A constant (padding, or a constant operand of a concatenation).
    Constant(f64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composition_matches_applying_twice() {
        let a = SparseAffine::from_triplets(
            3,
            2,
            &vec![
                (0, 0, 1.0),
                (1, 1, 2.0),
                (2, 0, -1.0),
                (2, 1, 0.5),
                (2, 1, 0.5),
            ],
            vec![0.1, 0.2, 0.3],
        );
        let b = SparseAffine::from_triplets(
            2,
            3,
            &vec![(0, 0, 3.0), (0, 2, 1.0), (1, 1, -2.0)],
            vec![1.0, -1.0],
        );
        let x = [0.7, -1.3];
        let direct = b.apply(&a.apply(&x));
        let composed = a.then(&b).apply(&x);
        for (p, q) in direct.iter().zip(&composed) {
            assert!((p - q).abs() < 1e-12, "{direct:?} vs {composed:?}");
        }
        let sum = a.combine(&a, -1.0).apply(&x);
        assert!(sum.iter().all(|v| v.abs() < 1e-12));
        let ab = a.then(&b);
        let g = SparseAffine::gather(
            2,
            &[&a, &ab],
            &[Source::Row(1, 0), Source::Constant(5.0), Source::Row(0, 2)],
        );
        assert_eq!(g.apply(&x)[1], 5.0);
        assert!((g.apply(&x)[2] - a.apply(&x)[2]).abs() < 1e-12);
    }
}
