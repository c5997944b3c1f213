//! What a graph edge carries during lowering: a constant tensor, or a value that is an affine map
//! of the current segment's input. Shapes are ONNX shapes with the batch dimension (1) kept, so
//! ops that count axes from the front (Flatten, Concat, Softmax) see what the exporter wrote.

use tract_onnx::prelude::Tensor;

use super::affine::SparseAffine;

/// A constant tensor in f64 (shape arithmetic in i64 fits exactly below 2^53).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Const {
    pub dims: Vec<usize>,
    pub values: Vec<f64>,
}

impl Const {
    pub fn from_tensor(t: &Tensor) -> Result<Self, String> {
        let cast = t.cast_to::<f64>().map_err(|e| e.to_string())?;
        let view = cast
            .to_plain_array_view::<f64>()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            dims: t.shape().to_vec(),
            values: view.iter().copied().collect(),
        })
    }

    pub fn scalar(v: f64) -> Self {
        Self {
            dims: vec![],
            values: vec![v],
        }
    }

    /// The values as integers (axes, shapes, pads, indices).
    pub fn ints(&self) -> Result<Vec<i64>, String> {
        self.values
            .iter()
            .map(|&v| {
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(v as i64)
                } else {
                    Err(format!("{v} is not an integer"))
                }
            })
            .collect()
    }
}

/// An affine function of the segment input, with its tensor shape.
#[derive(Clone, Debug)]
pub(crate) struct Value {
    pub map: SparseAffine,
    pub dims: Vec<usize>,
    /// Which segment (0 = before the first activation) the map's input is.
    pub segment: usize,
    /// Known to be ≥ 0 (an activation's output, reshaped at most): carried across the next
    /// activation as itself, not as ReLU(x) − ReLU(−x).
    pub nonnegative: bool,
}

/// A graph edge.
#[derive(Clone, Debug)]
pub(crate) enum Operand {
    Const(Const),
    Value(Value),
}

impl Operand {
    pub fn dims(&self) -> &[usize] {
        match self {
            Operand::Const(c) => &c.dims,
            Operand::Value(v) => &v.dims,
        }
    }
}

/// Elements of a shape.
pub(crate) fn count(dims: &[usize]) -> usize {
    dims.iter().product()
}

/// Row-major strides of a shape.
pub(crate) fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// The multi-index of flat position `i`.
pub(crate) fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for a in (0..dims.len()).rev() {
        if dims[a] > 0 {
            idx[a] = i % dims[a];
            i /= dims[a];
        }
    }
    idx
}

/// NumPy broadcasting of two shapes.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(out)
}

/// For each element of a tensor of shape `target`, the flat index into a tensor of shape `dims`
/// that broadcasting reads.
pub(crate) fn broadcast_index(dims: &[usize], target: &[usize]) -> Result<Vec<usize>, String> {
    if broadcast_shape(dims, target)? != target {
        return Err(format!("shape {dims:?} does not broadcast to {target:?}"));
    }
    let src_strides = strides(dims);
    let offset = target.len() - dims.len();
    Ok((0..count(target))
        .map(|i| {
            let idx = unravel(i, target);
            dims.iter()
                .enumerate()
                .map(|(a, &d)| {
                    if d == 1 {
                        0
                    } else {
                        idx[a + offset] * src_strides[a]
                    }
                })
                .sum()
        })
        .collect())
}

/// A constant's values broadcast to `target`.
pub(crate) fn broadcast_values(c: &Const, target: &[usize]) -> Result<Vec<f64>, String> {
    Ok(broadcast_index(&c.dims, target)?
        .into_iter()
        .map(|i| c.values[i])
        .collect())
}

/// An axis attribute (negative counts from the end) as an index below `rank`.
pub(crate) fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if (0..r).contains(&v) {
        Ok(v as usize)
    } else {
        Err(format!("axis {a} out of range for rank {rank}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(
            broadcast_shape(&[1, 3, 1, 1], &[3, 4, 4]).unwrap(),
            vec![1, 3, 4, 4]
        );
        assert!(broadcast_shape(&[2, 3], &[3, 2]).is_err());
        let c = Const {
            dims: vec![3, 1, 1],
            values: vec![1.0, 2.0, 3.0],
        };
        let v = broadcast_values(&c, &[1, 3, 2, 2]).unwrap();
        assert_eq!(
            v,
            vec![1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0]
        );
        assert!(broadcast_values(&c, &[1, 2, 2, 2]).is_err());
        assert_eq!(unravel(7, &[2, 2, 2]), vec![1, 1, 1]);
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
    }
}
