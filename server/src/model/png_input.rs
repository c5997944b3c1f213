//! A 28×28 PNG as a model input, the way the MNIST test set is stored: one value per pixel,
//! luminance / 255, white digit on black.

use std::io::BufReader;
use std::path::Path;

use png::{BitDepth, ColorType, Transformations};

/// Why an image could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PngInputError {
    /// Reading or decoding failed.
    #[error("{path}: {message}")]
    Decode {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Not the size the model takes.
    #[error("{path}: image is {width}×{height}, the model takes 28×28")]
    Size {
        /// The file.
        path: String,
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
    },
}

/// Side of an MNIST image.
pub const MNIST_SIDE: u32 = 28;

/// Loads `path` (grey, grey+alpha, RGB or RGBA, any bit depth, palette) as 784 values in [0, 1].
/// Colour is reduced to luminance (Rec. 601 weights); alpha is ignored.
pub fn load_mnist_png(path: &Path) -> Result<Vec<f32>, PngInputError> {
    let name = path.display().to_string();
    let fail = |message: String| PngInputError::Decode {
        path: name.clone(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    // A 28×28 image needs a few KB; the limit keeps a hostile file from allocating more.
    let mut decoder =
        png::Decoder::new_with_limits(BufReader::new(file), png::Limits { bytes: 1 << 20 });
    decoder.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| fail(e.to_string()))?;
    let (width, height) = (reader.info().width, reader.info().height);
    if (width, height) != (MNIST_SIDE, MNIST_SIDE) {
        return Err(PngInputError::Size {
            path: name,
            width,
            height,
        });
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| fail("image too large".into()))?;
    let mut buf = vec![0u8; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| fail(e.to_string()))?;
    if frame.bit_depth != BitDepth::Eight {
        return Err(fail(format!("unexpected bit depth {:?}", frame.bit_depth)));
    }
    let channels = match frame.color_type {
        ColorType::Grayscale => 1,
        ColorType::GrayscaleAlpha => 2,
        ColorType::Rgb => 3,
        ColorType::Rgba => 4,
        ColorType::Indexed => return Err(fail("palette not expanded".into())),
    };
    let pixels = (width * height) as usize;
    let rows = buf.chunks(frame.line_size).take(height as usize);
    let values: Vec<f32> = rows
        .flat_map(|row| row.chunks(channels).take(width as usize))
        .map(|px| {
            let luma = match px {
                [g] | [g, _] => f32::from(*g),
                [r, g, b] | [r, g, b, _] => {
                    0.299 * f32::from(*r) + 0.587 * f32::from(*g) + 0.114 * f32::from(*b)
                }
                _ => 0.0,
            };
            luma / 255.0
        })
        .collect();
    if values.len() != pixels {
        return Err(fail("truncated image data".into()));
    }
    Ok(values)
}
