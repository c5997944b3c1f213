//! `hefun inspect MODEL`: what a model becomes under the protocol — the lowered layers, the
//! rounds, the planner's preset and budgets, the rotation keys and the key upload they make —
//! or the import's error, which names every operator the model uses that hefun lacks.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use server::model::onnx::import;
use server::model::CompiledModel;

use crate::prepared::{data_dir, model_path, prepare};

/// Options of `hefun inspect`.
#[derive(clap::Args)]
pub struct InspectArgs {
    /// `small`, `large`, `faces-small`, `faces-large`, or the path of an ONNX file.
    model: String,
    /// Directory with the bundled models and test data (for calibration).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Test images used to calibrate the pre-activation bound.
    #[arg(long, default_value_t = 200)]
    calibration: usize,
}

pub fn inspect_command(args: &InspectArgs) -> Result<()> {
    let data = data_dir(&args.data);
    let path = model_path(&args.model, &data);
    let imported = import(&path).with_context(|| format!("importing {}", path.display()))?;
    let model = &imported.model;
    println!("model {}", path.display());
    println!(
        "input shape {:?} ({} values)",
        imported.input_shape, model.input_len
    );
    for note in &imported.notes {
        println!("note: {note}");
    }
    println!("| layer | outputs × inputs | nonzero weights | then |");
    println!("|---:|---:|---:|---|");
    for (i, layer) in model.layers.iter().enumerate() {
        let w = &layer.weights;
        let nonzero = w.data.iter().filter(|&&v| v != 0.0).count();
        println!(
            "| {i} | {} × {} | {nonzero} | {} |",
            w.rows,
            w.cols,
            if layer.relu {
                "ReLU (one round)"
            } else {
                "output"
            }
        );
    }
    let rounds = model.layers.iter().filter(|l| l.relu).count();
    println!("rounds: {rounds}");
    if let Some(conv) = &model.first_conv {
        println!(
            "first layer: a {}×{} convolution with {} channels; the client sends its patches",
            conv.gather.kernel_h, conv.gather.kernel_w, conv.out_channels
        );
    }

    // The planner needs a pre-activation bound, calibrated on bundled test data.
    let prepared = match prepare(&args.model, &args.data, args.calibration) {
        Ok(p) => p,
        Err(e) => {
            println!("plan: not computed ({e:#})");
            return Ok(());
        }
    };
    let plan = &prepared.plan;
    let compiled =
        CompiledModel::for_round(prepared.model.clone(), plan.params.slots(), plan.cfg.round)?;
    let rotations = compiled.rotation_steps(plan.params.slots())?;
    let relin = usize::from(plan.params.round() == client_core::params::RoundKind::Refresh);
    println!(
        "preset {} (N = 2^{}, log QP = {:.0}), {:?} round, |pre-activation| ≤ {} (calibrated on {} images)",
        plan.params.name(),
        plan.params.log_n(),
        plan.params.log_qp(),
        plan.cfg.round,
        prepared.value_bound,
        prepared.calibration
    );
    println!(
        "ciphertexts per layer: {:?}",
        compiled.ciphertexts_per_layer()
    );
    println!(
        "switching keys: {} rotation{} and {} relinearisation; key upload about {:.2} MB (estimate; `hefun bench` measures it)",
        rotations.len(),
        if rotations.len() == 1 { "" } else { "s" },
        relin,
        compiled.key_upload_bytes(&plan.params)? as f64 / 1e6
    );
    Ok(())
}
