//! `hefun load`: many concurrent clients against one server over loopback TCP, each checking
//! its predictions against the plaintext model; reports throughput and latency percentiles.
//!
//! The clients share one key set, uploaded once before the clock starts: 16 uploads of 140 MB
//! would measure key upload, which a device does once in its life. Each client then opens its
//! own session and runs its inferences with its own randomness — the steady state of a
//! deployment of known devices.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use client_core::client::KeySeed;
use client_core::host::tcp::Connection;
use client_core::keys::SecretKey;
use client_core::rand_core::SeedableRng;
use client_core::ring::Context;
use client_core::sampling::Csprng;
use server::demo::argmax;
use server::net::tcp::Limits;

use crate::local::{ms, percentile};
use crate::prepared::{prepare, start_loopback};
use crate::{entropy, Common};

/// Options of `hefun load`.
#[derive(clap::Args)]
pub struct LoadArgs {
    #[command(flatten)]
    common: Common,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Inferences per client.
    #[arg(long, default_value_t = 5)]
    inferences: usize,
}

/// What one inference of the load run gave.
struct Sample {
    latency: Duration,
    agrees: bool,
}

pub fn load_command(args: &LoadArgs) -> Result<()> {
    let c = &args.common;
    if args.clients == 0 || args.inferences == 0 {
        bail!("--clients and --inferences must be at least 1");
    }
    let p = prepare(&c.model, &c.data, c.calibration)?;
    let total = args.clients * args.inferences;
    let images = p.test.images.get(c.first..c.first + total).ok_or_else(|| {
        anyhow!(
            "{total} inferences from --first {} need more than the {} test images",
            c.first,
            p.test.images.len()
        )
    })?;
    let threads = c
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let limits = Limits {
        he_slots: threads,
        // One more for the uploading session, which may still be preparing ahead after its Bye.
        max_sessions: args.clients + 1,
        round_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let bg = start_loopback(&p, threads, limits)?;
    let addr = bg.addr.to_string();
    let ctx = Context::new(&p.plan.params)?;
    let mut rng = Csprng::from_seed(entropy()?);
    let key_seed = KeySeed::new(zeroize::Zeroizing::new(entropy()?));
    let sk = SecretKey::generate(&ctx, &mut key_seed.secret_key_rng())?;
    eprintln!("uploading the shared key set…");
    Connection::open(&addr, &ctx, &sk, &key_seed, &mut rng)?.close()?;
    let expected: Vec<usize> = images
        .iter()
        .map(|img| p.imported.reference(img).map(|r| argmax(&r)))
        .collect::<Result<_, _>>()?;
    eprintln!(
        "{} clients × {} inferences, {threads} server threads…",
        args.clients, args.inferences
    );
    let samples = Mutex::new(Vec::with_capacity(total));
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..args.clients)
            .map(|client| {
                let (ctx, sk, key_seed) = (&ctx, &sk, &key_seed);
                let (addr, expected, samples) = (&addr, &expected, &samples);
                scope.spawn(move || -> Result<()> {
                    let mut rng = Csprng::from_seed(entropy()?);
                    let mut conn = Connection::open(addr, ctx, sk, key_seed, &mut rng)?;
                    for k in 0..args.inferences {
                        let i = client * args.inferences + k;
                        let x: Vec<f64> = images[i].iter().map(|&v| v as f64).collect();
                        let t = Instant::now();
                        let (out, _) = conn.infer(&x, &mut rng)?;
                        let sample = Sample {
                            latency: t.elapsed(),
                            agrees: argmax(&out) == expected[i],
                        };
                        if let Ok(mut s) = samples.lock() {
                            s.push(sample);
                        }
                    }
                    Ok(conn.close()?)
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| anyhow!("a client panicked"))??;
        }
        Ok(())
    })?;
    let wall = start.elapsed();
    bg.stop()?;
    let samples = samples.into_inner().map_err(|_| anyhow!("poisoned"))?;
    let agree = samples.iter().filter(|s| s.agrees).count();
    let lat: Vec<f64> = samples.iter().map(|s| ms(s.latency)).collect();
    println!(
        "| clients × inferences | agreement | throughput | latency p50 | latency p99 | wall |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| {} × {} | {agree}/{} | {:.2} inferences/s | {:.0} ms | {:.0} ms | {:.1} s |",
        args.clients,
        args.inferences,
        samples.len(),
        samples.len() as f64 / wall.as_secs_f64(),
        percentile(lat.clone(), 0.5),
        percentile(lat, 0.99),
        wall.as_secs_f64()
    );
    if agree < samples.len() || samples.len() != total {
        bail!(
            "{} of {total} inferences disagree with the plaintext model",
            total - agree
        );
    }
    Ok(())
}
