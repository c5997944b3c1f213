//! `hefun`: private MNIST inference with the HeFUN protocol.
//!
//! `hefun demo` runs test images through the whole protocol (client and server in one process,
//! real wire messages) and compares each encrypted prediction with the plaintext model (tract).
//! `hefun bench` does the same and writes a JSON report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use client_core::params::HEFUN_N16384;
use indicatif::{ProgressBar, ProgressStyle};
use server::demo::{argmax, InferenceReport, Session};
use server::model::import;
use server::model::mnist::MnistTest;
use server::protocol::{plan, CompiledModel, Plan};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "hefun",
    version,
    about = "Private neural-network inference (HeFUN)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// `small`, `large`, or the path of an ONNX file.
    #[arg(long, default_value = "small")]
    model: String,
    /// Number of MNIST test images (from the first).
    #[arg(long, default_value_t = 100)]
    images: usize,
    /// Server threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Directory with the bundled models and `mnist/` (default: ./data or the repository's).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Images used to calibrate the pre-activation bound.
    #[arg(long, default_value_t = 200)]
    calibration: usize,
    /// Exit with an error if fewer than this fraction of encrypted predictions agree with the
    /// plaintext model (CI uses 1).
    #[arg(long, default_value_t = 0.0)]
    min_agreement: f64,
}

#[derive(Subcommand)]
enum Command {
    /// Run MNIST test images through the full protocol and compare with the plaintext model.
    Demo(Common),
    /// Like demo, and write a JSON report.
    Bench {
        #[command(flatten)]
        common: Common,
        /// Where to write the JSON report.
        #[arg(long)]
        json: PathBuf,
    },
    /// Serve private inferences over TCP (keys are kept in memory for now).
    Serve {
        /// `small`, `large`, or the path of an ONNX file.
        #[arg(long, default_value = "small")]
        model: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: String,
        /// Directory with the bundled models and `mnist/` (calibration data).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Images used to calibrate the pre-activation bound.
        #[arg(long, default_value_t = 200)]
        calibration: usize,
        /// Sessions served at once.
        #[arg(long, default_value_t = 64)]
        max_sessions: usize,
    },
    /// Run one private inference of an MNIST test image against a server.
    Infer {
        /// Server address.
        #[arg(long, default_value = "127.0.0.1:7878")]
        server: String,
        /// Index of the MNIST test image.
        #[arg(long, default_value_t = 0)]
        mnist_index: usize,
        /// Directory with `mnist/`.
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

fn data_dir(arg: &Option<PathBuf>) -> PathBuf {
    if let Some(d) = arg {
        return d.clone();
    }
    let local = PathBuf::from("data");
    if local.join("mnist").exists() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data")
}

fn model_path(model: &str, data: &Path) -> PathBuf {
    match model {
        "small" => data.join("mnist_small.onnx"),
        "large" => data.join("mnist_large.onnx"),
        path => PathBuf::from(path),
    }
}

struct Outcome {
    report: InferenceReport,
    encrypted: usize,
    plaintext: usize,
    label: usize,
}

struct Run {
    name: String,
    session: Session,
    outcomes: Vec<Outcome>,
    threads: usize,
    value_bound: f64,
}

fn entropy() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no OS entropy: {e}"))?;
    Ok(seed)
}

/// A model ready to serve: imported, calibrated and planned.
struct Prepared {
    path: PathBuf,
    imported: server::model::ImportedModel,
    test: MnistTest,
    model: server::protocol::Model,
    plan: Plan,
    value_bound: f64,
    calibration: usize,
}

fn prepare(model: &str, data: &Option<PathBuf>, calibration: usize) -> Result<Prepared> {
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

fn run(common: &Common) -> Result<Run> {
    let Prepared {
        path,
        imported,
        test,
        model,
        plan: Plan { params, cfg, .. },
        value_bound,
        calibration,
    } = prepare(&common.model, &common.data, common.calibration)?;
    if common.images == 0 || common.images > test.images.len() {
        bail!("--images must be between 1 and {}", test.images.len());
    }
    let threads = common
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = server::eval::thread_pool(threads)?;
    eprintln!(
        "model {} ({} layers), preset {}, |pre-activation| ≤ {value_bound} (calibrated on {calibration} images), {threads} server threads",
        path.display(),
        model.layers.len(),
        params.name()
    );
    eprintln!("generating client keys…");
    let (client_seed, server_seed) = (entropy()?, entropy()?);
    let session = pool.install(|| Session::new(&params, model, cfg, client_seed, server_seed))?;
    eprintln!(
        "keys: {:.1} s to generate, {:.1} MB to upload",
        session.keygen.as_secs_f64(),
        session.key_bytes as f64 / 1e6
    );
    let mut session = session;
    let bar = ProgressBar::new(common.images as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} [{elapsed_precise} < {eta}] {msg}",
    )?);
    let mut outcomes = Vec::with_capacity(common.images);
    let mut agree = 0;
    for (i, img) in test.images[..common.images].iter().enumerate() {
        let x: Vec<f64> = img.iter().map(|&p| p as f64).collect();
        let report = pool.install(|| session.infer(&x))?;
        let reference = imported.reference(img)?;
        let encrypted = argmax(&report.output);
        let plaintext = argmax(&reference);
        let label = test.labels[i] as usize;
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
        bar.set_message(format!("agreement {agree}/{}", i + 1));
        bar.inc(1);
        outcomes.push(Outcome {
            report,
            encrypted,
            plaintext,
            label,
        });
    }
    bar.finish_and_clear();
    Ok(Run {
        name: common.model.clone(),
        session,
        outcomes,
        threads,
        value_bound,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx]
}

struct Summary {
    images: usize,
    acc_enc: f64,
    acc_plain: f64,
    agreement: f64,
    median: f64,
    p90: f64,
    client: f64,
    server: f64,
    prepare: f64,
    up: f64,
    down: f64,
    rounds: usize,
}

fn summarize(run: &Run) -> Summary {
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

fn print_summary(run: &Run, s: &Summary) {
    println!();
    println!("| model | images | encrypted acc. | plaintext acc. | agreement | latency median (p90) | client | server | server, prepared ahead | up | down | rounds |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.2} % | {:.2} % | {:.2} % | {:.0} ms ({:.0}) | {:.0} ms | {:.0} ms | {:.0} ms | {:.2} MB | {:.2} MB | {} |",
        run.name,
        s.images,
        100.0 * s.acc_enc,
        100.0 * s.acc_plain,
        100.0 * s.agreement,
        s.median,
        s.p90,
        s.client,
        s.server,
        s.prepare,
        s.up / 1e6,
        s.down / 1e6,
        s.rounds
    );
}

fn layer_rows(run: &Run) -> Vec<serde_json::Value> {
    let layers = &run.session.model.model().layers;
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

fn serve_command(
    model: &str,
    listen: &str,
    data: &Option<PathBuf>,
    calibration: usize,
    max_sessions: usize,
) -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
    let p = prepare(model, data, calibration)?;
    let ctx = std::sync::Arc::new(client_core::ring::Context::new(&p.plan.params)?);
    let eval = server::eval::Evaluator::new(ctx)?;
    let compiled = CompiledModel::new(p.model, p.plan.params.slots())?;
    // One service per process, alive until exit.
    let svc: &'static server::net::Service = Box::leak(Box::new(server::net::Service::new(
        eval, compiled, p.plan.cfg,
    )?));
    let limits = server::net::tcp::Limits {
        max_sessions,
        he_slots: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        eprintln!(
            "serving {} on {} (preset {})",
            p.path.display(),
            listener.local_addr()?,
            p.plan.params.name()
        );
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        };
        server::net::tcp::serve(svc, listener, limits, shutdown).await?;
        Ok(())
    })
}

fn infer_command(addr: &str, index: usize, data: &Option<PathBuf>) -> Result<()> {
    use client_core::rand_core::SeedableRng;
    let data = data_dir(data);
    let test = MnistTest::load(&data.join("mnist"))
        .with_context(|| format!("loading MNIST from {}", data.join("mnist").display()))?;
    let img = test
        .images
        .get(index)
        .with_context(|| format!("--mnist-index must be below {}", test.images.len()))?;
    let params = client_core::params::Params::from_spec(&HEFUN_N16384)?;
    let ctx = client_core::ring::Context::new(&params)?;
    let encoder = client_core::encoding::Encoder::new(params.log_n());
    let mut rng = client_core::sampling::Csprng::from_seed(entropy()?);
    // Fresh keys per run for now; a cached key file comes with the persistent key store.
    let t = std::time::Instant::now();
    let sk = client_core::keys::SecretKey::generate(&ctx, &mut rng)?;
    let pk = client_core::keys::PublicKey::generate(&ctx, &sk, &mut rng)?;
    let mut conn = server::net::client::Connection::open(addr, &ctx, &encoder, &sk, &pk, &mut rng)?;
    let setup = t.elapsed();
    let x: Vec<f64> = img.iter().map(|&p| p as f64).collect();
    let t = std::time::Instant::now();
    let up = conn.traffic.up;
    let down = conn.traffic.down;
    let (out, client) = conn.infer(&x, &mut rng)?;
    let total = t.elapsed();
    println!(
        "image {index}: prediction {} (label {})",
        argmax(&out),
        test.labels[index]
    );
    println!(
        "handshake + key upload: {:.1} s, {:.1} MB up",
        setup.as_secs_f64(),
        conn.key_upload as f64 / 1e6
    );
    println!(
        "inference: {:.0} ms (client {:.0} ms), {:.2} MB up, {:.2} MB down",
        ms(total),
        ms(client),
        (conn.traffic.up - up) as f64 / 1e6,
        (conn.traffic.down - down) as f64 / 1e6
    );
    conn.close()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            model,
            listen,
            data,
            calibration,
            max_sessions,
        } => serve_command(&model, &listen, &data, calibration, max_sessions)?,
        Command::Infer {
            server,
            mnist_index,
            data,
        } => infer_command(&server, mnist_index, &data)?,
        Command::Demo(common) => {
            let run = run(&common)?;
            let s = summarize(&run);
            print_summary(&run, &s);
            if s.agreement < common.min_agreement {
                bail!(
                    "agreement {:.2} % is below the required {:.2} %",
                    100.0 * s.agreement,
                    100.0 * common.min_agreement
                );
            }
            if s.agreement < 1.0 {
                eprintln!(
                    "note: {} image(s) disagree",
                    run.outcomes
                        .iter()
                        .filter(|o| o.encrypted != o.plaintext)
                        .count()
                );
            }
        }
        Command::Bench { common, json } => {
            let run = run(&common)?;
            let s = summarize(&run);
            print_summary(&run, &s);
            let report = serde_json::json!({
                "model": run.name,
                "preset": run.session.ctx.params().name(),
                "images": s.images,
                "accuracy_encrypted": s.acc_enc,
                "accuracy_plaintext": s.acc_plain,
                "agreement": s.agreement,
                "latency_ms": { "median": s.median, "p90": s.p90 },
                "client_ms_median": s.client,
                "server_ms_median": s.server,
                "server_prepare_ms_median": s.prepare,
                "bytes_client_to_server": s.up,
                "bytes_server_to_client": s.down,
                "key_upload_bytes": run.session.key_bytes,
                "rounds": s.rounds,
                "threads": run.threads,
                "value_bound": run.value_bound,
                "layers": layer_rows(&run),
            });
            std::fs::write(&json, serde_json::to_string_pretty(&report)?)
                .with_context(|| format!("writing {}", json.display()))?;
            eprintln!("wrote {}", json.display());
        }
    }
    Ok(())
}
