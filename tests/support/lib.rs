//! What hefun's host-side tests share: a client, the server's protocol and a small random
//! network in one process ([`world`]), and the `hefun` binary for tests that run real server
//! processes ([`hefun`]).

pub mod world;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The `hefun` binary of this build profile, built once per test process (`cargo test` does not
/// build another package's binaries for this crate's tests).
pub fn hefun() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // The test executable lives in <target>/<profile>/deps/.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let profile = profile_dir
            .file_name()
            .and_then(|p| p.to_str())
            .unwrap_or("debug")
            .to_string();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "-q", "-p", "server", "--bin", "hefun"])
            .arg("--manifest-path")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir);
        // Test executables of the `test` profile sit in the `debug` folder, which `dev` builds.
        if profile != "debug" {
            build.args(["--profile", &profile]);
        }
        let status = build.status().expect("running cargo build for hefun");
        assert!(status.success(), "building hefun failed");
        profile_dir.join("hefun")
    })
    .clone()
}
