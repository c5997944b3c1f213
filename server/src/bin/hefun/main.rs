//! `hefun`: private MNIST inference with the HeFUN protocol.
//!
//! `demo` runs test images through the whole protocol, by default a real server and client over
//! loopback TCP, and compares each encrypted prediction with the plaintext model (tract);
//! `bench` does the same (by default in one process, for the per-layer split) and writes a JSON
//! report; `serve` and `infer` are the two sides of a deployment; `load` runs many clients at
//! once.

mod infer;
mod inspect;
mod load;
mod local;
mod plain;
mod prepared;
mod serve;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

use local::{layer_rows, print_summary, run, summarize, Transport};

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
pub struct Common {
    /// `small`, `large` (MNIST), `faces-small`, `faces-large` (AT&T faces), or the path of an
    /// ONNX file.
    #[arg(long, default_value = "small")]
    pub model: String,
    /// Number of MNIST test images.
    #[arg(long, default_value_t = 100)]
    pub images: usize,
    /// Index of the first test image (long runs can be split into chunks).
    #[arg(long, default_value_t = 0)]
    pub first: usize,
    /// Server threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Directory with the bundled models and `mnist/` (default: ./data or the repository's).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Images used to calibrate the pre-activation bound.
    #[arg(long, default_value_t = 200)]
    pub calibration: usize,
    /// Exit with an error if fewer than this fraction of encrypted predictions agree with the
    /// plaintext model (CI uses 1).
    #[arg(long, default_value_t = 0.0)]
    pub min_agreement: f64,
    /// How client and server talk (default: tcp for demo, in-process for bench).
    #[arg(long, value_enum)]
    pub transport: Option<Transport>,
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
    /// Serve private inferences over TCP.
    Serve(serve::ServeArgs),
    /// What a model becomes under the protocol: layers, rounds, preset, keys (or every
    /// operator hefun lacks).
    Inspect(inspect::InspectArgs),
    /// Run one private inference of an MNIST test image against a server.
    Infer(infer::InferArgs),
    /// Many concurrent clients against a loopback server: throughput and latency percentiles.
    Load(load::LoadArgs),
    /// The plaintext model's predictions of MNIST test images (what the firmware is checked
    /// against).
    Plain(plain::PlainArgs),
}

pub fn entropy() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no OS entropy: {e}"))?;
    Ok(seed)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::serve_command(&args)?,
        Command::Infer(args) => infer::infer_command(&args)?,
        Command::Load(args) => load::load_command(&args)?,
        Command::Plain(args) => plain::plain_command(&args)?,
        Command::Inspect(args) => inspect::inspect_command(&args)?,
        Command::Demo(common) => {
            let run = run(&common, common.transport.unwrap_or(Transport::Tcp))?;
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
            let run = run(&common, common.transport.unwrap_or(Transport::InProcess))?;
            let s = summarize(&run);
            print_summary(&run, &s);
            let report = serde_json::json!({
                "model": run.name,
                "preset": run.preset,
                "transport": format!("{:?}", run.transport),
                "images": s.images,
                "first_image": common.first,
                "accuracy_encrypted": s.acc_enc,
                "accuracy_plaintext": s.acc_plain,
                "agreement": s.agreement,
                "latency_ms": { "median": s.median, "p90": s.p90 },
                "client_ms_median": s.client,
                "server_ms_median": s.server,
                "server_prepare_ms_median": s.prepare,
                "bytes_client_to_server": s.up,
                "bytes_server_to_client": s.down,
                // The same traffic under the names of `scripts/qemu-e2e.sh --json`.
                "inference_bytes_up": s.up,
                "inference_bytes_down": s.down,
                "key_upload_bytes": run.key_bytes,
                "rounds": s.rounds,
                "threads": run.threads,
                "value_bound": run.value_bound,
                "layers": layer_rows(&run),
                "peak_rss_bytes": peak_rss_bytes(),
            });
            std::fs::write(&json, serde_json::to_string_pretty(&report)?)
                .with_context(|| format!("writing {}", json.display()))?;
            eprintln!("wrote {}", json.display());
        }
    }
    Ok(())
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The process's peak resident memory (Linux `VmHWM`), if known.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
