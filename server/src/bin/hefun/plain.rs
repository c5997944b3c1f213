//! `hefun plain`: the plaintext model's (tract's) predictions of MNIST test images, one line
//! each — what the firmware's encrypted predictions are checked against.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use server::demo::argmax;
use server::model::mnist::MnistTest;
use server::model::onnx::import;

use crate::prepared::{data_dir, model_path};

/// Options of `hefun plain`.
#[derive(clap::Args)]
pub struct PlainArgs {
    /// `small`, `large`, or the path of an ONNX file.
    #[arg(long, default_value = "small")]
    model: String,
    /// Number of test images.
    #[arg(long, default_value_t = 4)]
    images: usize,
    /// Index of the first one.
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// Directory with `mnist/` and the models.
    #[arg(long)]
    data: Option<PathBuf>,
}

pub fn plain_command(args: &PlainArgs) -> Result<()> {
    let data = data_dir(&args.data);
    let path = model_path(&args.model, &data);
    let imported = import(&path).with_context(|| format!("importing {}", path.display()))?;
    let test = MnistTest::load(&data.join("mnist"))
        .with_context(|| format!("loading MNIST from {}", data.join("mnist").display()))?;
    let end = args.first.saturating_add(args.images);
    if args.images == 0 || end > test.images.len() {
        bail!(
            "--first {} --images {} is outside the {} test images",
            args.first,
            args.images,
            test.images.len()
        );
    }
    for i in args.first..end {
        let prediction = argmax(&imported.reference(&test.images[i])?);
        println!("image {i}: plaintext {prediction} label {}", test.labels[i]);
    }
    Ok(())
}
