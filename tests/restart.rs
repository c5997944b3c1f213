//! The real `hefun serve` and `hefun infer` processes: the server is killed (SIGKILL) in the
//! middle of an inference and restarted on the same state directory; the client reports the
//! failure, retries, and succeeds without uploading its keys again. Also: the key file is
//! created 0600 and refused once others may read it, and SIGTERM shuts the server down cleanly;
//! and the firmware's limb-wise client, run on the host, uploads its keys to the real server and
//! gets the plaintext model's predictions.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use client_core::client::{ClientSession, DeviceBackend, KeySeed};
use client_core::host::tcp::Connection;
use client_core::params::{Params, HEFUN_N8192};
use client_core::rand_core::SeedableRng;
use client_core::sampling::Csprng;
use server::demo::argmax;
use server::model::import;
use server::model::mnist::MnistTest;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data")
}

fn hefun() -> Command {
    let mut c = Command::new(hefun_tests::hefun());
    c.env_remove("RUST_BACKTRACE");
    c
}

struct Server {
    child: Child,
    addr: String,
}

fn start_server(dir: &Path, listen: &str, log: &str) -> Server {
    let mut child = hefun()
        .args(["serve", "--model", "small", "--calibration", "20"])
        .args(["--listen", listen])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--data")
        .arg(data())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("server said {line:?}"))
        .trim()
        .to_string();
    Server { child, addr }
}

fn infer(dir: &Path, addr: &str, index: usize) -> Command {
    let mut c = hefun();
    c.args(["infer", "--server", addr, "--retries", "20"])
        .args(["--mnist-index", &index.to_string()])
        .arg("--key-file")
        .arg(dir.join("client.key"))
        .arg("--data")
        .arg(data());
    c
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn prediction(stdout: &str) -> usize {
    stdout
        .split("prediction ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no prediction in {stdout:?}"))
}

#[test]
fn killed_server_restarts_and_the_client_retries_without_uploading_again() {
    let dir = std::env::temp_dir().join(format!("hefun-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let model = import(&data().join("mnist_small.onnx")).unwrap();
    let test = MnistTest::load(&data().join("mnist")).unwrap();
    let plaintext = |i: usize| argmax(&model.reference(&test.images[i]).unwrap());

    let mut a = start_server(&dir, "127.0.0.1:0", "server-a.log");
    let addr = a.addr.clone();

    // First contact: a new key file (0600) and a key upload.
    let out = infer(&dir, &addr, 0).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("keys uploaded"), "{stderr}");
    assert_eq!(prediction(&stdout), plaintext(0));
    let mode = std::fs::metadata(dir.join("client.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Kill the server once the next input is on its way.
    let mut client = infer(&dir, &addr, 1)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = client.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
        }
    });
    let mut log = Vec::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(120)).unwrap();
        log.push(line.clone());
        if line.contains("attempt 1: input sent") {
            break;
        }
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();

    // Restart on the same port and state directory.
    let mut b = start_server(&dir, &addr, "server-b.log");
    let out = client.wait_with_output().unwrap();
    reader.join().unwrap();
    log.extend(rx.try_iter());
    let log = log.join("\n");
    assert!(out.status.success(), "{log}");
    assert!(log.contains("attempt 1 failed"), "{log}");
    assert!(
        log.contains("the server knows our keys; no upload"),
        "{log}"
    );
    assert_eq!(log.matches("keys uploaded").count(), 0, "{log}");
    assert_eq!(
        prediction(&String::from_utf8_lossy(&out.stdout)),
        plaintext(1)
    );

    // A client whose key file others may read is refused before it connects.
    std::fs::set_permissions(dir.join("client.key"), PermissionsExt::from_mode(0o644)).unwrap();
    let out = infer(&dir, &b.addr, 2).output().unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("others may read the secret key"),
        "{stderr}"
    );

    // SIGTERM: graceful shutdown.
    let status = Command::new("kill")
        .args(["-TERM", &b.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = b.child.wait().unwrap();
    assert!(exit.success(), "server exited with {exit}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the firmware does, at host speed: a client session on the device backend (one NTT
/// plan at a time), driven by the same frame loop, against `hefun serve`.
#[test]
fn device_client_uploads_its_keys_and_matches_the_plaintext_model() {
    let dir = std::env::temp_dir().join(format!("hefun-device-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let model = import(&data().join("mnist_small.onnx")).unwrap();
    let test = MnistTest::load(&data().join("mnist")).unwrap();
    let mut server = start_server(&dir, "127.0.0.1:0", "server-device.log");

    let params = Params::from_spec(&HEFUN_N8192).unwrap();
    let mut rng = Csprng::from_seed([42; 32]);
    let key_seed = KeySeed::new(zeroize::Zeroizing::new([43; 32]));
    let backend = DeviceBackend::new(&params, &mut key_seed.secret_key_rng()).unwrap();
    let session = ClientSession::new(backend, key_seed.public_key_rng());
    let mut conn = Connection::open_session(&server.addr, session, &mut rng).unwrap();
    // The light preset's keys: no relinearisation key, few rotations (under 20 MB).
    assert!(
        (1_000_000..20_000_000).contains(&conn.key_upload),
        "keys uploaded: {}",
        conn.key_upload
    );
    let rounds = conn.session().server().unwrap().rounds as usize;

    for (i, image) in test.images.iter().take(3).enumerate() {
        let x: Vec<f64> = image.iter().map(|&p| p as f64).collect();
        let (output, _) = conn.infer(&x, &mut rng).unwrap();
        assert_eq!(conn.last_rounds, rounds, "image {i}");
        let want = model.reference(image).unwrap();
        assert_eq!(argmax(&output), argmax(&want), "image {i}");
        for (o, w) in output.iter().zip(&want) {
            assert!((o - *w as f64).abs() < 1e-2, "image {i}: {o} vs {w}");
        }
    }
    // The device backend builds plans as limbs need them; a host backend never does.
    assert!(conn.session().counters().plan_builds > 100);
    conn.close().unwrap();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
