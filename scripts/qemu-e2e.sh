#!/usr/bin/env bash
# The firmware against the real server: builds firmware-example for thumbv7em-none-eabihf, starts
# `hefun serve` on a loopback port, runs the firmware under QEMU (mps2-an386, Cortex-M4) with the
# board's UART0 connected to that port, decodes its defmt log (semihosting → defmt-print), and
# fails unless the firmware exits with success.
#
# Needs the Debian packages of .ci/run (rustc-web cargo-web rust-web-src lld qemu-system-arm) and
# defmt-print (installed here with cargo if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v qemu-system-arm >/dev/null || { echo "error: install qemu-system-arm" >&2; exit 1; }
if ! command -v defmt-print >/dev/null; then
  cargo install defmt-print --locked
fi

echo "== building the firmware"
(cd firmware-example &&
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build --release --ignore-rust-version)
elf=firmware-example/target/thumbv7em-none-eabihf/release/firmware-example
size "$elf" | awk 'NR==2 { printf "flash %d bytes (text %d + data %d), static RAM %d bytes (data + bss incl. heap)\n", $1+$2, $1, $2, $2+$3 }'

echo "== starting hefun serve"
cargo build -q -p server --bin hefun
work=$(mktemp -d)
target/debug/hefun serve --model small --listen 127.0.0.1:0 --calibration 20 \
  > "$work/serve.out" 2> "$work/serve.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 240); do
  grep -q '^listening on' "$work/serve.out" && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.5
done
addr=$(sed -n 's/^listening on //p' "$work/serve.out")
[ -n "$addr" ] || { echo "error: the server did not start" >&2; cat "$work/serve.log" >&2; exit 1; }

echo "== running the firmware under QEMU against $addr"
status=0
timeout 900 qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic -monitor none \
  -semihosting-config enable=on,target=native -serial "tcp:$addr" -kernel "$elf" \
  > "$work/defmt.bin" || status=$?
defmt-print -e "$elf" < "$work/defmt.bin" || true
if [ "$status" -ne 0 ]; then
  echo "error: the firmware exited with status $status" >&2
  exit "$status"
fi
echo "== firmware OK"
