#!/usr/bin/env bash
# Builds client-core for the Cortex-M4F target (thumbv7em-none-eabihf) without std.
#
# The target's core/alloc come from Debian's rust-web-src (rustup cannot fetch targets here), so
# this uses Debian's rustc 1.85 with -Zbuild-std. tfhe-ntt 0.7 calls u64::is_multiple_of, stable
# only from 1.87; on 1.85 it exists as an unstable feature, which the crate attribute enables
# (RUSTC_BOOTSTRAP is needed for -Zbuild-std anyway).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in /usr/bin/rustc /usr/bin/cargo; do
  if [ ! -x "$tool" ]; then
    echo "error: $tool missing; install Debian packages: rustc-web cargo-web rust-web-src lld" >&2
    exit 1
  fi
done

RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
RUSTFLAGS="-Zcrate-attr=feature(unsigned_is_multiple_of)" \
  /usr/bin/cargo build --release -p client-core --no-default-features \
    -Zbuild-std=core,alloc --target thumbv7em-none-eabihf \
    --ignore-rust-version --target-dir target/thumbv7em "$@"

rlib=target/thumbv7em/thumbv7em-none-eabihf/release/libclient_core.rlib
echo "no_std build OK: $rlib ($(stat -c %s "$rlib") bytes)"
