//! Puts memory.x where the linker finds it, and stores the first MNIST test images (pixels as
//! bytes) for the firmware to classify.
use std::io::Read;
use std::{env, fs, path::PathBuf};

/// How many test images go into flash.
const IMAGES: usize = 4;
const PIXELS: usize = 28 * 28;
/// IDX image file header: magic, count, rows, columns.
const HEADER: usize = 16;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");

    let source = "../data/mnist/t10k-images-idx3-ubyte.gz";
    println!("cargo:rerun-if-changed={source}");
    let file = fs::File::open(source).unwrap_or_else(|e| panic!("{source}: {e}"));
    let mut idx = Vec::new();
    flate2::read::GzDecoder::new(file)
        .take((HEADER + IMAGES * PIXELS) as u64)
        .read_to_end(&mut idx)
        .unwrap_or_else(|e| panic!("{source}: {e}"));
    assert!(
        idx.len() == HEADER + IMAGES * PIXELS && idx[..4] == [0, 0, 8, 3],
        "{source} is not an IDX image file with {IMAGES} images"
    );
    fs::write(out.join("images.bin"), &idx[HEADER..]).expect("write images.bin");
}
