//! `hefun demo` and `hefun bench`: MNIST test images through the whole protocol, compared with
//! the plaintext model (tract).
//!
//! Two transports: a real server and client over loopback TCP (what a deployment does; the
//! server's time is the latency minus the client's), or one process passing the wire messages
//! (the server's time is measured per layer, for the benchmark report).

use std::time::Instant;

use anyhow::{bail, Result};
use client_core::client::KeySeed;
use client_core::host::tcp::Connection;
use client_core::keys::SecretKey;
use client_core::rand_core::SeedableRng;
use client_core::ring::Context;
use client_core::sampling::Csprng;
use indicatif::{ProgressBar, ProgressStyle};
use server::demo::{argmax, InferenceReport, Session};
use server::model::Layer;
use server::net::tcp::Limits;
use server::protocol::Plan;

pub use crate::ms;
use crate::prepared::{prepare, start_loopback, Prepared};
use crate::{entropy, Common};

/// How client and server talk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// A server on a loopback port and a client connecting to it.
    Tcp,
    /// Both parties in one process, exchanging postcard-encoded messages.
    InProcess,
}

pub struct Outcome {
    pub report: InferenceReport,
    pub encrypted: usize,
    pub plaintext: usize,
    pub label: usize,
}

pub struct Run {
    pub name: String,
    pub preset: String,
    pub key_bytes: usize,
    pub transport: Transport,
    pub layers: Vec<Layer>,
    pub outcomes: Vec<Outcome>,
    pub threads: usize,
    pub value_bound: f64,
}

type InferFn<'a> = Box<dyn FnMut(&[f64]) -> Result<InferenceReport> + 'a>;

pub fn run(common: &Common, transport: Transport) -> Result<Run> {
    let p = prepare(&common.model, &common.data, common.calibration)?;
    let available = p.test.images.len().saturating_sub(common.first);
    if common.images == 0 || common.images > available {
        bail!(
            "--images must be between 1 and {available} (test images from --first {})",
            common.first
        );
    }
    let threads = common
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    eprintln!(
        "model {} ({} layers), preset {}, |pre-activation| ≤ {} (calibrated on {} images), {threads} server threads, transport {transport:?}",
        p.path.display(),
        p.model.layers.len(),
        p.plan.params.name(),
        p.value_bound,
        p.calibration,
    );
    let pool = server::eval::thread_pool(threads)?;
    let ctx = Context::new(&p.plan.params)?;
    let mut client_rng = Csprng::from_seed(entropy()?);
    let key_seed = KeySeed::new(zeroize::Zeroizing::new(entropy()?));
    let sk = SecretKey::generate(&ctx, &mut key_seed.secret_key_rng())?;
    let mut conn = None;
    let mut server = None;
    let (mut infer, key_bytes): (InferFn<'_>, usize) = match transport {
        Transport::InProcess => {
            eprintln!("generating client keys…");
            let Plan { params, cfg, .. } = &p.plan;
            let (model, cfg) = (p.model.clone(), cfg.clone());
            let seeds = (entropy()?, entropy()?);
            let mut session =
                pool.install(|| Session::new(params, model, cfg, seeds.0, seeds.1))?;
            eprintln!("keys: {:.1} s to generate", session.keygen.as_secs_f64());
            let key_bytes = session.key_bytes;
            let pool = &pool;
            let f: InferFn<'_> = Box::new(move |x| Ok(pool.install(|| session.infer(x))?));
            (f, key_bytes)
        }
        Transport::Tcp => {
            let limits = Limits {
                he_slots: threads,
                ..Limits::default()
            };
            let bg = start_loopback(&p, threads, limits)?;
            eprintln!(
                "server on {}; generating and uploading client keys…",
                bg.addr
            );
            let t = Instant::now();
            let c = conn.insert(Connection::open(
                &bg.addr.to_string(),
                &ctx,
                &sk,
                &key_seed,
                &mut client_rng,
            )?);
            server = Some(bg);
            eprintln!(
                "keys: {:.1} s to generate and upload",
                t.elapsed().as_secs_f64()
            );
            let key_bytes = c.key_upload as usize;
            let rng = &mut client_rng;
            let f: InferFn<'_> = Box::new(move |x| {
                let (up, down) = c.traffic();
                let t = Instant::now();
                let (output, client) = c.infer(x, rng)?;
                let total = t.elapsed();
                Ok(InferenceReport {
                    output,
                    total,
                    client,
                    server: total.saturating_sub(client),
                    bytes_up: (c.traffic().0 - up) as usize,
                    bytes_down: (c.traffic().1 - down) as usize,
                    rounds: c.last_rounds,
                    ..InferenceReport::default()
                })
            });
            (f, key_bytes)
        }
    };
    eprintln!("key upload: {:.1} MB", key_bytes as f64 / 1e6);
    let outcomes = run_images(common, &p, &mut infer)?;
    drop(infer);
    if let Some(c) = conn {
        c.close()?;
    }
    if let Some(bg) = server {
        bg.stop()?;
    }
    Ok(Run {
        name: common.model.clone(),
        preset: p.plan.params.name().to_string(),
        key_bytes,
        transport,
        layers: p.model.layers.clone(),
        outcomes,
        threads,
        value_bound: p.value_bound,
    })
}

fn run_images(common: &Common, p: &Prepared, infer: &mut InferFn<'_>) -> Result<Vec<Outcome>> {
    let bar = ProgressBar::new(common.images as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} [{elapsed_precise} < {eta}] {msg}",
    )?);
    let mut outcomes = Vec::with_capacity(common.images);
    let mut agree = 0;
    let range = common.first..common.first + common.images;
    for (i, img) in range.clone().zip(&p.test.images[range]) {
        let x: Vec<f64> = img.iter().map(|&px| px as f64).collect();
        let report = infer(&x)?;
        let reference = p.imported.reference(img)?;
        let encrypted = argmax(&report.output);
        let plaintext = argmax(&reference);
        let label = p.test.labels[i] as usize;
        agree += (encrypted == plaintext) as usize;
        let line = format!(
            "image {i:>5}: encrypted {encrypted}  plaintext {plaintext}  label {label}  {}  {:>6.0} ms (client {:.0} ms, server {:.0} ms; prepared ahead {:.0} ms)",
            if encrypted == plaintext { "agree" } else { "DISAGREE" },
            ms(report.total),
            ms(report.client),
            ms(report.server),
            ms(report.prepare),
        );
        // Without a terminal the bar is hidden and so is its println.
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
        bar.set_message(format!("agreement {agree}/{}", outcomes.len() + 1));
        bar.inc(1);
        outcomes.push(Outcome {
            report,
            encrypted,
            plaintext,
            label,
        });
    }
    bar.finish_and_clear();
    Ok(outcomes)
}

pub fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx]
}

pub struct Summary {
    pub images: usize,
    pub acc_enc: f64,
    pub acc_plain: f64,
    pub agreement: f64,
    pub median: f64,
    pub p90: f64,
    pub client: f64,
    pub server: f64,
    pub prepare: f64,
    pub up: f64,
    pub down: f64,
    pub rounds: usize,
}

pub fn summarize(run: &Run) -> Summary {
    let n = run.outcomes.len();
    let frac = |f: &dyn Fn(&Outcome) -> bool| {
        run.outcomes.iter().filter(|o| f(o)).count() as f64 / n as f64
    };
    let lat: Vec<f64> = run.outcomes.iter().map(|o| ms(o.report.total)).collect();
    Summary {
        images: n,
        acc_enc: frac(&|o| o.encrypted == o.label),
        acc_plain: frac(&|o| o.plaintext == o.label),
        agreement: frac(&|o| o.encrypted == o.plaintext),
        median: percentile(lat.clone(), 0.5),
        p90: percentile(lat, 0.9),
        client: percentile(
            run.outcomes.iter().map(|o| ms(o.report.client)).collect(),
            0.5,
        ),
        server: percentile(
            run.outcomes.iter().map(|o| ms(o.report.server)).collect(),
            0.5,
        ),
        prepare: percentile(
            run.outcomes.iter().map(|o| ms(o.report.prepare)).collect(),
            0.5,
        ),
        up: percentile(
            run.outcomes
                .iter()
                .map(|o| o.report.bytes_up as f64)
                .collect(),
            0.5,
        ),
        down: percentile(
            run.outcomes
                .iter()
                .map(|o| o.report.bytes_down as f64)
                .collect(),
            0.5,
        ),
        rounds: run.outcomes.first().map_or(0, |o| o.report.rounds),
    }
}

pub fn print_summary(run: &Run, s: &Summary) {
    println!();
    println!("| model | images | encrypted acc. | plaintext acc. | agreement | latency median (p90) | client | server | server, prepared ahead | up | down | rounds |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.2} % | {:.2} % | {:.2} % | {:.0} ms ({:.0}) | {:.0} ms | {:.0} ms | {} | {:.2} MB | {:.2} MB | {} |",
        run.name,
        s.images,
        100.0 * s.acc_enc,
        100.0 * s.acc_plain,
        100.0 * s.agreement,
        s.median,
        s.p90,
        s.client,
        s.server,
        if run.transport == Transport::Tcp { "n/a".to_string() } else { format!("{:.0} ms", s.prepare) },
        s.up / 1e6,
        s.down / 1e6,
        s.rounds
    );
}

pub fn layer_rows(run: &Run) -> Vec<serde_json::Value> {
    let layers = &run.layers;
    let count = run.outcomes.first().map_or(0, |o| o.report.layers.len());
    (0..count)
        .map(|i| {
            let med = |f: &dyn Fn(&server::demo::LayerReport) -> f64| {
                percentile(run.outcomes.iter().map(|o| f(&o.report.layers[i])).collect(), 0.5)
            };
            let l = &layers[i.min(layers.len() - 1)];
            serde_json::json!({
                "name": format!("layer{i}"),
                "kind": format!("affine {}x{}{}", l.weights.rows, l.weights.cols, if l.relu { " + ReLU round" } else { " (output)" }),
                "server_ms_median": med(&|r| ms(r.server)),
                "client_ms_median": med(&|r| ms(r.client)),
                "bytes_up": med(&|r| r.bytes_up as f64),
                "bytes_down": med(&|r| r.bytes_down as f64),
            })
        })
        .collect()
}
