#!/usr/bin/env bash
# The firmware against the real server: builds firmware-example for thumbv7em-none-eabihf, starts
# `hefun serve` on a loopback port, runs the firmware under QEMU (mps2-an386, Cortex-M4) with the
# board's UART0 connected to that port and a fresh 32-byte seed from the host's /dev/urandom,
# decodes its defmt log (semihosting → defmt-print), and fails unless the firmware exits with
# success and every prediction it prints equals the plaintext model's (`hefun plain`).
#
# QEMU runs with `-icount shift=0` (one instruction per virtual nanosecond), so the instruction
# counts in the log are exact counts of executed instructions.
#
# Needs the Debian packages of .ci/run (rustc-web cargo-web rust-web-src lld qemu-system-arm) and
# defmt-print (installed here with cargo if missing).
#
# Usage: scripts/qemu-e2e.sh [IMAGES]   (default 1; the firmware stores 4 MNIST test images)
# Under QEMU the UART moves about 30–40 KB/s towards the device and ~400 KB/s from it (QEMU
# hands over one byte per main-loop iteration), so the 102 MB key upload takes about 4 minutes
# and each inference (3 MB each way) about 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-1}
case "$images" in
  [1-4]) ;;
  *) echo "error: IMAGES must be 1 to 4 (the firmware stores 4 test images)" >&2; exit 2 ;;
esac

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
# Rounds take about a minute through QEMU's UART.
target/debug/hefun serve --model small --listen 127.0.0.1:0 --calibration 20 --round-timeout 900 \
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
seed=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
status=0
start=$(date +%s)
timeout 1800 qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic -monitor none \
  -icount shift=0 -semihosting-config "enable=on,target=native,arg=firmware,arg=seed=$seed,arg=images=$images" \
  -serial "tcp:$addr" -kernel "$elf" > "$work/defmt.bin" &
qemu=$!
# If the server dies, QEMU would wait on its UART until the timeout: stop it at once.
while kill -0 "$qemu" 2>/dev/null; do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "error: the server exited while the firmware ran" >&2
    kill "$qemu" 2>/dev/null || true
    break
  fi
  sleep 2
done
wait "$qemu" || status=$?
decode=0
defmt-print -e "$elf" < "$work/defmt.bin" > "$work/log" || decode=$?
cat "$work/log"
echo "QEMU ran for $(( $(date +%s) - start )) s"
if [ "$status" -ne 0 ] || [ "$decode" -ne 0 ]; then
  echo "error: the firmware exited with status $status (log decoder: $decode); server log:" >&2
  tail -n 50 "$work/serve.log" >&2
  exit 1
fi

echo "== checking the predictions against the plaintext model"
sed -n 's/.*image \([0-9]*\): prediction \([0-9]*\).*/\1 \2/p' "$work/log" > "$work/firmware"
count=$(wc -l < "$work/firmware")
if [ "$count" -ne "$images" ]; then
  echo "error: the firmware printed $count predictions for $images images" >&2
  exit 1
fi
target/debug/hefun plain --model small --images "$count" |
  sed -n 's/^image \([0-9]*\): plaintext \([0-9]*\).*/\1 \2/p' > "$work/plain"
if ! diff "$work/firmware" "$work/plain"; then
  echo "error: firmware predictions (left) differ from the plaintext model's (right)" >&2
  exit 1
fi
echo "== firmware OK: $count of $count predictions equal the plaintext model's"
