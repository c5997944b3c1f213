//! `hefun serve`: the long-running TCP service.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use server::net::metrics::{serve_metrics, Metrics};
use server::net::tcp::{serve, Limits};
use server::net::KeyStore;

use crate::prepared::prepare;

/// Options of `hefun serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// `small`, `large`, or the path of an ONNX file.
    #[arg(long, default_value = "small")]
    model: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: String,
    /// Directory for the key store (uploaded evaluation keys survive restarts); without it
    /// keys live in memory only.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics: Option<String>,
    /// Directory with the bundled models and `mnist/` (calibration data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Images used to calibrate the pre-activation bound.
    #[arg(long, default_value_t = 200)]
    calibration: usize,
    /// Sessions served at once.
    #[arg(long, default_value_t = 64)]
    max_sessions: usize,
    /// Key sets kept expanded in memory (each about 200 MB at hefun-n16384).
    #[arg(long, default_value_t = server::net::DEFAULT_KEY_CACHE)]
    key_cache: usize,
    /// Uploads kept in the key store (the oldest stored is dropped first).
    #[arg(long, default_value_t = server::net::DEFAULT_MAX_STORED)]
    max_stored_keys: usize,
    /// Key uploads in progress at once (each holds a few hundred MB); more get `Busy`.
    #[arg(long, default_value_t = server::net::DEFAULT_MAX_UPLOADS)]
    max_uploads: usize,
    /// Inferences prepared ahead of their input at once, over all sessions.
    #[arg(long, default_value_t = server::net::DEFAULT_MAX_PREPARED)]
    max_prepared: usize,
    /// Seconds a client has to answer a round.
    #[arg(long, default_value_t = 30)]
    round_timeout: u64,
}

pub fn serve_command(args: &ServeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
    let p = prepare(&args.model, &args.data, args.calibration)?;
    let store = match &args.state_dir {
        Some(dir) => {
            let store = KeyStore::open(dir, args.key_cache, args.max_stored_keys)?;
            tracing::info!(dir = %dir.display(), stored = store.stored_len()?, "key store opened");
            store
        }
        None => KeyStore::memory(args.key_cache),
    };
    let svc = p.service(store, args.max_uploads, args.max_prepared)?;
    let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new()));
    let limits = Limits {
        max_sessions: args.max_sessions,
        he_slots: std::thread::available_parallelism().map_or(1, |n| n.get()),
        round_timeout: std::time::Duration::from_secs(args.round_timeout),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        if let Some(addr) = &args.metrics {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics listener on {addr}"))?;
            tracing::info!(addr = %l.local_addr()?, "metrics at /metrics");
            tokio::spawn(serve_metrics(metrics, l));
        }
        // Scripts and tests read the address from this line (the port may have been 0).
        println!("listening on {}", listener.local_addr()?);
        tracing::info!(
            model = %p.path.display(),
            preset = p.plan.params.name(),
            "serving"
        );
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        };
        serve(svc, listener, limits, metrics, shutdown).await?;
        Ok(())
    })
}
