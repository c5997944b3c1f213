//! Loading a model for serving or a demo: import (tract), calibration on MNIST test images and
//! the parameter plan.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use client_core::params::{RoundKind, HEFUN_N16384, HEFUN_N8192};
use server::model::import;
use server::model::mnist::MnistTest;
use server::model::{CompiledModel, ACTIVATION_CAP};
use server::net::metrics::Metrics;
use server::net::tcp::{Background, Limits};
use server::net::{KeyStore, Service};
use server::protocol::{plan, plan_light, Plan};

/// Input length of the MNIST networks (28×28).
const MNIST_INPUT: usize = 28 * 28;
/// Input length of the faces networks (112×92).
const FACES_INPUT: usize = 112 * 92;

/// `--data`, else `./data` if it has `mnist/`, else the repository's.
pub fn data_dir(arg: &Option<PathBuf>) -> PathBuf {
    if let Some(d) = arg {
        return d.clone();
    }
    let local = PathBuf::from("data");
    if local.join("mnist").exists() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data")
}

pub fn model_path(model: &str, data: &Path) -> PathBuf {
    match model {
        "small" => data.join("mnist_small.onnx"),
        "large" => data.join("mnist_large.onnx"),
        "faces-small" => data.join("faces_small.onnx"),
        "faces-large" => data.join("faces_large.onnx"),
        path => PathBuf::from(path),
    }
}

/// A model ready to serve: imported, calibrated and planned.
pub struct Prepared {
    pub path: PathBuf,
    pub imported: server::model::ImportedModel,
    pub test: MnistTest,
    pub model: server::model::Model,
    pub plan: Plan,
    pub value_bound: f64,
    pub calibration: usize,
}

pub fn prepare(model: &str, data: &Option<PathBuf>, calibration: usize) -> Result<Prepared> {
    let data = data_dir(data);
    let path = model_path(model, &data);
    let imported = import(&path).with_context(|| format!("importing {}", path.display()))?;
    let model = &imported.model;
    // The test set follows the model's input: 28×28 MNIST digits or 112×92 AT&T faces.
    let test = match model.input_len {
        MNIST_INPUT => MnistTest::load(&data.join("mnist"))
            .with_context(|| format!("loading MNIST from {}", data.join("mnist").display()))?,
        FACES_INPUT => MnistTest::load_faces(&data.join("faces"))
            .with_context(|| format!("loading the faces from {}", data.join("faces").display()))?,
        n => bail!(
            "the demo needs a 28×28 (MNIST) or 112×92 (faces) input model; this one takes {n} values"
        ),
    };
    // Calibration: the largest |pre-activation| on the first images, with a 50 % margin, after
    // capping hidden layers whose range would not fit the refresh mask's budget.
    let calibration = calibration.min(test.images.len()).max(1);
    let inputs: Vec<Vec<f64>> = test.images[..calibration]
        .iter()
        .map(|img| img.iter().map(|&p| p as f64).collect())
        .collect();
    let (model, value_bound) = model.calibrated(&inputs, ACTIVATION_CAP);
    // The light preset (sign-magnitude round) wherever the model fits it; the refresh round
    // on N = 2^14 for models whose layers span several ciphertexts.
    let light = CompiledModel::for_round(
        model.clone(),
        1 << (HEFUN_N8192.log_n - 1),
        RoundKind::SignMagnitude,
    )
    .map_err(anyhow::Error::from)
    .and_then(|c| {
        Ok(plan_light(
            &c,
            value_bound,
            HEFUN_N8192.stat_sec_bits,
            10.0,
        )?)
    });
    let plan = match light {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("{}: {e:#}; using {}", HEFUN_N8192.name, HEFUN_N16384.name);
            let compiled = CompiledModel::new(model.clone(), 1 << (HEFUN_N16384.log_n - 1))?;
            plan(&compiled, value_bound, HEFUN_N16384.stat_sec_bits, 10.0)?
        }
    };
    let margins = &plan.margins;
    eprintln!(
        "plan: preset {}, client scale 2^{:.0}",
        plan.params.name(),
        plan.cfg.scale.log2()
    );
    eprintln!(
        "plan: security slack {:.1} bits, {} spare level(s) per round, refresh room {:.1} bits, flooding room {:.1} bits, signs reliable for |y| ≥ Y·2^-{:.1}, output precision {:.1} bits",
        margins.security_slack,
        margins.spare_levels,
        margins.refresh_room,
        margins.flood_room,
        margins.sign_precision,
        margins.output_precision
    );
    Ok(Prepared {
        path,
        imported,
        test,
        model,
        plan,
        value_bound,
        calibration,
    })
}

impl Prepared {
    /// The network service for this model, alive for the rest of the process.
    pub fn service(
        &self,
        store: KeyStore,
        max_uploads: usize,
        max_prepared: usize,
    ) -> Result<&'static Service> {
        let ctx = std::sync::Arc::new(client_core::ring::Context::new(&self.plan.params)?);
        let eval = server::eval::Evaluator::new(ctx)?;
        let compiled = CompiledModel::for_round(
            self.model.clone(),
            self.plan.params.slots(),
            self.plan.cfg.round,
        )?;
        let svc = Service::new(eval, compiled, self.plan.cfg.clone())?
            .with_key_store(store)
            .with_memory_limits(max_uploads, max_prepared);
        Ok(Box::leak(Box::new(svc)))
    }
}

/// Sizes the global thread pool the server's HE work runs on (once per process) and starts a
/// server for this model on a free loopback port, keys in memory.
pub fn start_loopback(p: &Prepared, threads: usize, limits: Limits) -> Result<Background> {
    // Fails only if the pool was built before, which leaves it as it was.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    let svc = p.service(
        KeyStore::memory(1),
        server::net::DEFAULT_MAX_UPLOADS,
        limits.max_sessions,
    )?;
    let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
    Ok(Background::start(svc, "127.0.0.1:0", limits, metrics)?)
}
