//! Gemm (any transA/transB/alpha/beta) and MatMul, with the weights constant and the value on
//! either side.

use tract_onnx::pb::NodeProto;

use super::{apply, attr_f, attr_i, input, optional_constant, OpError, OpResult};
use crate::model::onnx::affine::{SparseAffine, Triplets};
use crate::model::onnx::operand::{broadcast_values, Const, Operand, Value};

/// A 2-D view of a constant, optionally transposed: entry (i, j).
struct Mat<'a> {
    c: &'a Const,
    rows: usize,
    cols: usize,
    trans: bool,
}

impl<'a> Mat<'a> {
    fn new(c: &'a Const, trans: bool) -> Result<Self, OpError> {
        let (r, k) = match c.dims[..] {
            [r, k] => (r, k),
            [k] => (1, k),
            _ => return Err(OpError::Invalid(format!("weights of shape {:?}", c.dims))),
        };
        let (rows, cols) = if trans { (k, r) } else { (r, k) };
        Ok(Self {
            c,
            rows,
            cols,
            trans,
        })
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        if self.trans {
            self.c.values[j * self.rows + i]
        } else {
            self.c.values[i * self.cols + j]
        }
    }
}

/// out = alpha · (value × W or W × value) over a value that is `m × k` (row-major), batched over
/// `batch` leading matrices. `w_right`: the weights are the right factor.
fn product(
    v: &Value,
    batch: usize,
    (m, k): (usize, usize),
    w: &Mat<'_>,
    w_right: bool,
    alpha: f64,
) -> Result<(SparseAffine, usize, usize), OpError> {
    let (out_r, out_c) = if w_right { (m, w.cols) } else { (w.rows, k) };
    let inner = if w_right { w.rows } else { w.cols };
    if (w_right && inner != k) || (!w_right && inner != m) {
        return Err(OpError::Invalid(format!(
            "a {m}×{k} value and {}×{} weights do not multiply",
            w.rows, w.cols
        )));
    }
    let mut entries: Triplets = Vec::with_capacity(batch * out_r * out_c * inner);
    for bt in 0..batch {
        let (in_off, out_off) = (bt * m * k, bt * out_r * out_c);
        for i in 0..out_r {
            for j in 0..out_c {
                let r = out_off + i * out_c + j;
                for t in 0..inner {
                    let (col, coeff) = if w_right {
                        (in_off + i * k + t, w.at(t, j))
                    } else {
                        (in_off + t * k + j, w.at(i, t))
                    };
                    entries.push((r, col, alpha * coeff));
                }
            }
        }
    }
    let n = batch * out_r * out_c;
    Ok((
        SparseAffine::from_triplets(n, v.map.outputs(), &entries, vec![0.0; n]),
        out_r,
        out_c,
    ))
}

/// The 2-D shape of Gemm's value operand, transposed if `trans` (only a row or column vector,
/// whose elements keep their order).
fn gemm_value_dims(v: &Value, trans: bool, what: &str) -> Result<(usize, usize), OpError> {
    let [r, c] = v.dims[..] else {
        return Err(OpError::Invalid(format!(
            "Gemm of a value of shape {:?}",
            v.dims
        )));
    };
    if trans && r != 1 && c != 1 {
        return Err(OpError::Invalid(format!("{what} of a matrix value")));
    }
    Ok(if trans { (c, r) } else { (r, c) })
}

/// MatMul's value operand as (leading batch dims, rows, columns); a 1-D value is a row vector
/// on the left (`vector_as_row`) and a column vector on the right.
fn batched(v: &Value, vector_as_row: bool) -> (Vec<usize>, usize, usize) {
    match v.dims[..] {
        [k] if vector_as_row => (vec![], 1, k),
        [k] => (vec![], k, 1),
        _ => {
            let r = v.dims.len();
            (v.dims[..r - 2].to_vec(), v.dims[r - 2], v.dims[r - 1])
        }
    }
}

pub(super) fn gemm(node: &NodeProto, inputs: &[Option<&Operand>]) -> OpResult {
    let alpha = attr_f(node, "alpha").unwrap_or(1.0);
    let beta = attr_f(node, "beta").unwrap_or(1.0);
    let trans_a = attr_i(node, "transA").unwrap_or(0) != 0;
    let trans_b = attr_i(node, "transB").unwrap_or(0) != 0;
    let (a, b) = (input(inputs, 0)?, input(inputs, 1)?);
    let (mut local, rows, cols, v) = match (a, b) {
        (Operand::Value(v), Operand::Const(w)) => {
            let mk = gemm_value_dims(v, trans_a, "transA")?;
            let (l, r, c) = product(v, 1, mk, &Mat::new(w, trans_b)?, true, alpha)?;
            (l, r, c, v)
        }
        (Operand::Const(w), Operand::Value(v)) => {
            let kn = gemm_value_dims(v, trans_b, "transB")?;
            let (l, r, c) = product(v, 1, kn, &Mat::new(w, trans_a)?, false, alpha)?;
            (l, r, c, v)
        }
        _ => {
            return Err(OpError::Invalid(
                "Gemm needs one constant and one value operand".into(),
            ))
        }
    };
    if let Some(c) = optional_constant(inputs, 2)? {
        let bias = broadcast_values(c, &[rows, cols])?;
        for (o, x) in local.b.iter_mut().zip(bias) {
            *o += beta * x;
        }
    }
    Ok(vec![apply(v, &local, vec![rows, cols])])
}

pub(super) fn matmul(inputs: &[Option<&Operand>]) -> OpResult {
    let (a, b) = (input(inputs, 0)?, input(inputs, 1)?);
    match (a, b) {
        (Operand::Value(v), Operand::Const(w)) => {
            let w = Mat::new(w, false)?;
            let (w, squeeze_n) = if w.c.dims.len() == 1 {
                // x · w for a vector w: a k × 1 matrix.
                (
                    Mat {
                        rows: w.cols,
                        cols: 1,
                        trans: true,
                        c: w.c,
                    },
                    true,
                )
            } else {
                (w, false)
            };
            let (lead, m, k) = batched(v, true);
            let batch = lead.iter().product();
            let (local, _, n) = product(v, batch, (m, k), &w, true, 1.0)?;
            let mut dims = lead;
            if v.dims.len() > 1 {
                dims.push(m);
            }
            if !squeeze_n {
                dims.push(n);
            }
            Ok(vec![apply(v, &local, dims)])
        }
        (Operand::Const(w), Operand::Value(v)) => {
            let w = Mat::new(w, false)?;
            if w.c.dims.len() != 2 {
                return Err(OpError::Invalid("MatMul of a vector by a value".into()));
            }
            let (lead, k, n) = batched(v, false);
            let batch = lead.iter().product();
            let (local, m, _) = product(v, batch, (k, n), &w, false, 1.0)?;
            let mut dims = lead;
            dims.push(m);
            if v.dims.len() > 1 {
                dims.push(n);
            }
            Ok(vec![apply(v, &local, dims)])
        }
        (Operand::Const(_), Operand::Const(_)) => Err(OpError::Invalid(
            "MatMul of two constants (fold it before export)".into(),
        )),
        (Operand::Value(_), Operand::Value(_)) => Err(OpError::Invalid(
            "MatMul of two values computed from the input is not affine".into(),
        )),
    }
}
