//! `hefun infer`: one private inference against a running server, as a device would do it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use client_core::host::key_file::{default_key_path, load_or_create, ClientKeys};
use client_core::host::tcp::{ClientError, Connection};
use client_core::params::{ParamSpec, Params, HEFUN_N8192, PRESETS};
use client_core::rand_core::SeedableRng;
use client_core::ring::Context;
use client_core::sampling::Csprng;
use client_core::wire::ErrorCode;
use server::demo::argmax;
use server::model::mnist::MnistTest;
use server::model::png_input::load_mnist_png;

use crate::prepared::data_dir;
use crate::{entropy, ms};

/// Options of `hefun infer`.
#[derive(clap::Args)]
pub struct InferArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7878")]
    server: String,
    /// Index of the MNIST test image.
    #[arg(long, default_value_t = 0, conflicts_with = "image")]
    mnist_index: usize,
    /// A 28×28 PNG to classify instead (white digit on black, like MNIST).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Directory with `mnist/`.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Key file (created with mode 0600 if missing; default
    /// `$XDG_CONFIG_HOME/hefun/<preset>.key` or `~/.config/hefun/<preset>.key`).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Attempts after a failure that may pass (connection lost, server busy or restarting).
    #[arg(long, default_value_t = 8)]
    retries: u32,
    /// Parameter preset to offer (default: the light preset, hefun-n8192; without this
    /// option, a server that needs another known preset is followed).
    #[arg(long)]
    preset: Option<String>,
}

fn preset_named(name: &str) -> Result<&'static ParamSpec> {
    PRESETS
        .iter()
        .copied()
        .find(|p| p.name == name)
        .with_context(|| {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
            format!("unknown preset {name}; known: {}", names.join(", "))
        })
}

/// The preset a server named in its refusal ("the model needs preset X"), if known.
fn preset_asked_for(err: &anyhow::Error) -> Option<&'static ParamSpec> {
    match err.downcast_ref::<ClientError>()? {
        ClientError::Refused {
            code: ErrorCode::UnsupportedVersion,
            message,
        } => {
            let name = message.split("needs preset ").nth(1)?.trim();
            preset_named(name).ok()
        }
        _ => None,
    }
}

pub fn infer_command(args: &InferArgs) -> Result<()> {
    let (x, what) = match &args.image {
        Some(path) => (load_mnist_png(path)?, path.display().to_string()),
        None => {
            let data = data_dir(&args.data);
            let test = MnistTest::load(&data.join("mnist"))
                .with_context(|| format!("loading MNIST from {}", data.join("mnist").display()))?;
            let i = args.mnist_index;
            let img = test
                .images
                .get(i)
                .with_context(|| format!("--mnist-index must be below {}", test.images.len()))?;
            (img.clone(), format!("image {i} (label {})", test.labels[i]))
        }
    };
    let x: Vec<f64> = x.iter().map(|&p| p as f64).collect();
    let spec = match &args.preset {
        Some(name) => preset_named(name)?,
        None => &HEFUN_N8192,
    };
    match infer_on(args, spec, &x) {
        Err(e) if args.preset.is_none() => match preset_asked_for(&e) {
            Some(asked) if asked.name != spec.name => {
                eprintln!("the server needs preset {}; switching", asked.name);
                infer_on(args, asked, &x)
            }
            _ => Err(e),
        },
        result => result,
    }
    .map(|out| println!("{what}: prediction {}", argmax(&out)))
}

/// The inference with preset `spec`: its key file, retries.
fn infer_on(args: &InferArgs, spec: &ParamSpec, x: &[f64]) -> Result<Vec<f64>> {
    let params = Params::from_spec(spec)?;
    let ctx = Context::new(&params)?;
    let path = match &args.key_file {
        Some(p) => p.clone(),
        None => default_key_path(params.name())
            .context("no HOME or XDG_CONFIG_HOME for the key file; pass --key-file")?,
    };
    let t = Instant::now();
    let keys = load_or_create(&path, &ctx, zeroize::Zeroizing::new(entropy()?))?;
    eprintln!(
        "{} key file {} ({:.1} s)",
        if keys.created { "created" } else { "using" },
        path.display(),
        t.elapsed().as_secs_f64()
    );
    let mut backoff = Duration::from_millis(500);
    for attempt in 1.. {
        match attempt_inference(&args.server, &ctx, &keys, x, attempt) {
            Ok(out) => return Ok(out),
            Err(e) if attempt <= args.retries && is_retryable(&e) => {
                eprintln!(
                    "attempt {attempt} failed: {e:#}; retrying in {:.1} s",
                    backoff.as_secs_f64()
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(4));
            }
            Err(e) => return Err(e.context(format!("attempt {attempt}"))),
        }
    }
    unreachable!("the loop returns")
}

fn attempt_inference(
    addr: &str,
    ctx: &Context,
    keys: &ClientKeys,
    x: &[f64],
    attempt: u32,
) -> Result<Vec<f64>> {
    let mut rng = Csprng::from_seed(entropy()?);
    let t = Instant::now();
    let mut conn = Connection::open(addr, ctx, &keys.sk, &keys.seed, &mut rng)?;
    if conn.key_upload > 0 {
        eprintln!(
            "attempt {attempt}: keys uploaded, {:.1} MB in {:.1} s",
            conn.key_upload as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
    } else {
        eprintln!("attempt {attempt}: the server knows our keys; no upload");
    }
    let (up, down) = conn.traffic();
    let t = Instant::now();
    let (out, client) = conn.infer_with(x, &mut rng, || {
        eprintln!("attempt {attempt}: input sent");
    })?;
    eprintln!(
        "inference: {:.0} ms (client {:.0} ms), {:.2} MB up, {:.2} MB down",
        ms(t.elapsed()),
        ms(client),
        (conn.traffic().0 - up) as f64 / 1e6,
        (conn.traffic().1 - down) as f64 / 1e6
    );
    // The result is in; a goodbye that fails changes nothing.
    if let Err(e) = conn.close() {
        eprintln!("closing the session: {e:#}");
    }
    Ok(out)
}

/// True if trying again later may succeed (see [`ClientError::is_retryable`]).
fn is_retryable(err: &anyhow::Error) -> bool {
    err.downcast_ref::<ClientError>()
        .is_some_and(ClientError::is_retryable)
}
