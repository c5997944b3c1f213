//! `--image FILE.png`: MNIST test images written as PNG (grey and RGB) load back as the same
//! pixels, and files of the wrong size or not PNG are refused with a clear error.

use std::path::{Path, PathBuf};

use server::model::mnist::MnistTest;
use server::model::png_input::{load_mnist_png, PngInputError};

fn write_png(path: &Path, width: u32, height: u32, color: png::ColorType, data: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(data).unwrap();
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("hefun-png-{}-{name}", std::process::id()))
}

#[test]
fn mnist_images_round_trip_through_png() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    let test = MnistTest::load(&data).unwrap();
    for i in [0usize, 1, 7] {
        let img = &test.images[i];
        let grey: Vec<u8> = img.iter().map(|&v| (v * 255.0).round() as u8).collect();
        let rgb: Vec<u8> = grey.iter().flat_map(|&g| [g, g, g]).collect();
        for (name, color, bytes) in [
            ("grey.png", png::ColorType::Grayscale, &grey),
            ("rgb.png", png::ColorType::Rgb, &rgb),
        ] {
            let path = tmp(name);
            write_png(&path, 28, 28, color, bytes);
            let back = load_mnist_png(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            assert_eq!(back.len(), 784);
            let worst = back
                .iter()
                .zip(img)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-3, "image {i} {name}: error {worst}");
        }
    }
}

#[test]
fn wrong_size_and_non_png_are_refused() {
    let path = tmp("small.png");
    write_png(&path, 10, 12, png::ColorType::Grayscale, &[0; 120]);
    let err = load_mnist_png(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(
        matches!(
            err,
            PngInputError::Size {
                width: 10,
                height: 12,
                ..
            }
        ),
        "{err}"
    );

    let path = tmp("text.png");
    std::fs::write(&path, b"not a png").unwrap();
    let err = load_mnist_png(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(err, PngInputError::Decode { .. }), "{err}");
}
