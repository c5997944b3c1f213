//! The MNIST test set in IDX format (gzipped or plain), as bundled under `data/mnist/`.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::GzDecoder;

/// Errors reading IDX files.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    /// I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a valid IDX file of the expected kind.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Test images (pixels / 255) and labels: MNIST's, or another set in the same IDX format.
pub struct MnistTest {
    /// Images, row-major (28×28 for MNIST), values in [0, 1].
    pub images: Vec<Vec<f32>>,
    /// Labels 0–9.
    pub labels: Vec<u8>,
}

/// Largest IDX payload accepted (the MNIST test images are 7.8 MB).
const MAX_IDX_BYTES: u64 = 64 << 20;

fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>), IdxError> {
    let io = |source| IdxError::Io {
        path: path.display().to_string(),
        source,
    };
    let fmt = |message: String| IdxError::Format {
        path: path.display().to_string(),
        message,
    };
    let file = File::open(path).map_err(io)?;
    let mut raw: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(GzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let mut bytes = Vec::new();
    raw.by_ref()
        .take(MAX_IDX_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(fmt("not an unsigned-byte IDX file".into()));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(fmt("truncated header".into()));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count != Some(bytes.len() - header) {
        return Err(fmt(format!("dimensions {dims:?} do not match the data")));
    }
    Ok((dims, bytes[header..].to_vec()))
}

impl MnistTest {
    /// Loads `t10k-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, IdxError> {
        Self::load_idx(dir, "t10k", (28, 28))
    }

    /// Loads the AT&T faces test split (`orl-test-*-ubyte`, 112×92, written by
    /// `tools/train_faces.py`) from `dir`.
    pub fn load_faces(dir: &Path) -> Result<Self, IdxError> {
        Self::load_idx(dir, "orl-test", (112, 92))
    }

    /// Loads `<prefix>-images-idx3-ubyte[.gz]` and `<prefix>-labels-idx1-ubyte[.gz]` from `dir`,
    /// images of `(height, width)`.
    pub fn load_idx(dir: &Path, prefix: &str, (h, w): (usize, usize)) -> Result<Self, IdxError> {
        let find = |stem: &str| {
            let gz = dir.join(format!("{prefix}-{stem}.gz"));
            if gz.exists() {
                gz
            } else {
                dir.join(format!("{prefix}-{stem}"))
            }
        };
        let images_path = find("images-idx3-ubyte");
        let (dims, pixels) = read_idx(&images_path)?;
        let (ldims, labels) = read_idx(&find("labels-idx1-ubyte"))?;
        if dims.len() != 3 || dims[1] != h || dims[2] != w || ldims != [dims[0]] {
            return Err(IdxError::Format {
                path: images_path.display().to_string(),
                message: format!(
                    "image dims {dims:?} and label dims {ldims:?} do not match [n, {h}, {w}] and [n]"
                ),
            });
        }
        let images = pixels
            .chunks_exact(h * w)
            .map(|img| img.iter().map(|&p| p as f32 / 255.0).collect())
            .collect();
        Ok(Self { images, labels })
    }
}
