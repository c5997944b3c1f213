#!/usr/bin/env bash
# Builds client-core for the Cortex-M4F target (thumbv7em-none-eabihf) without std.
#
# The target's core/alloc come from Debian's rust-web-src (rustup cannot fetch targets here), so
# this uses Debian's rustc-web (1.96) with -Zbuild-std, which needs RUSTC_BOOTSTRAP.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in /usr/bin/rustc /usr/bin/cargo; do
  if [ ! -x "$tool" ]; then
    echo "error: $tool missing; install Debian packages: rustc-web cargo-web rust-web-src lld" >&2
    exit 1
  fi
done

RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
  /usr/bin/cargo build --release -p client-core --no-default-features \
    -Zbuild-std=core,alloc --target thumbv7em-none-eabihf \
    --ignore-rust-version --target-dir target/thumbv7em "$@"

rlib=target/thumbv7em/thumbv7em-none-eabihf/release/libclient_core.rlib
echo "no_std build OK: $rlib ($(stat -c %s "$rlib") bytes)"
