//! Loading a model for serving or a demo: import (tract), calibration on MNIST test images and
//! the parameter plan.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use client_core::params::HEFUN_N16384;
use server::model::import;
use server::model::mnist::MnistTest;
use server::net::metrics::Metrics;
use server::net::tcp::{Background, Limits};
use server::net::{KeyStore, Service};
use server::protocol::{plan, CompiledModel, Plan};

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
        path => PathBuf::from(path),
    }
}

/// A model ready to serve: imported, calibrated and planned.
pub struct Prepared {
    pub path: PathBuf,
    pub imported: server::model::ImportedModel,
    pub test: MnistTest,
    pub model: server::protocol::Model,
    pub plan: Plan,
    pub value_bound: f64,
    pub calibration: usize,
}

pub fn prepare(model: &str, data: &Option<PathBuf>, calibration: usize) -> Result<Prepared> {
    let data = data_dir(data);
    let path = model_path(model, &data);
    let imported = import(&path).with_context(|| format!("importing {}", path.display()))?;
    let test = MnistTest::load(&data.join("mnist"))
        .with_context(|| format!("loading MNIST from {}", data.join("mnist").display()))?;
    let model = imported.model.clone();
    if model.input_len != 784 {
        bail!(
            "the demo needs a 28×28 input model; this one takes {} values",
            model.input_len
        );
    }
    // Calibration: the largest |pre-activation| on the first images, with a 50 % margin.
    let calibration = calibration.min(test.images.len()).max(1);
    let mut bound = 1.0f64;
    for img in &test.images[..calibration] {
        let x: Vec<f64> = img.iter().map(|&p| p as f64).collect();
        for layer in model.pre_activations(&x) {
            bound = layer.iter().fold(bound, |b, v| b.max(v.abs()));
        }
    }
    let value_bound = (bound * 1.5).ceil();
    let compiled = CompiledModel::new(model.clone(), 1 << (HEFUN_N16384.log_n - 1))?;
    let plan = plan(&compiled, value_bound, HEFUN_N16384.stat_sec_bits, 10.0)?;
    let margins = &plan.margins;
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
        let compiled = CompiledModel::new(self.model.clone(), self.plan.params.slots())?;
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
