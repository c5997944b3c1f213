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
# Usage: scripts/qemu-e2e.sh [IMAGES] [--json FILE]
#   IMAGES: 1 to 4 (default 1; the firmware stores 4 MNIST test images)
#   --json FILE: also write the footprint as JSON (peak RAM, instructions, bytes; see the end)
# The firmware boots twice: first with an empty key store (it makes a key seed, stores it in a
# file standing in for a flash page, and uploads its keys), then again with that store: the
# reboot must name keys the server knows and skip the upload. QEMU hands the UART one byte per
# main-loop iteration, so the wall time is mostly UART: about 1–2.5 minutes for the first boot
# (7.2 MB of keys, one inference of 1.2 MB both ways) and about 1 minute for the reboot.
set -euo pipefail
cd "$(dirname "$0")/.."
images=1
json=""
while [ $# -gt 0 ]; do
  case "$1" in
    --json) json=${2:?--json needs a file}; shift 2 ;;
    *) images=$1; shift ;;
  esac
done
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
  env -u CARGO_TARGET_DIR RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build --release --ignore-rust-version)
elf=firmware-example/target/thumbv7em-none-eabihf/release/firmware-example
size "$elf" | awk 'NR==2 { printf "flash %d bytes (text %d + data %d), static RAM %d bytes (data + bss incl. heap)\n", $1+$2, $1, $2, $2+$3 }'
read -r text data bss < <(size "$elf" | awk 'NR==2 { print $1, $2, $3 }')
# The RAM region the linker was given (memory.x), in bytes.
ram_region=$(sed -n 's/^ *RAM *:.*LENGTH *= *\([0-9]*\)K.*/\1/p' firmware-example/memory.x)
ram_region=$(( ram_region * 1024 ))

echo "== starting hefun serve"
cargo build -q -p server --bin hefun
hefun="${CARGO_TARGET_DIR:-target}/debug/hefun"
work=$(mktemp -d)
# Rounds take about a minute through QEMU's UART.
"$hefun" serve --model small --listen 127.0.0.1:0 --calibration 20 --round-timeout 900 \
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

# Boots the firmware once: run_firmware IMAGES LOG. Every boot gets a fresh entropy seed; the
# key seed record in $work/key-seed.bin (the emulated flash page) outlives it.
run_firmware() {
  local n=$1 log=$2 seed status=0 decode=0 start qemu
  seed=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  start=$(date +%s)
  timeout 1800 qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic -monitor none \
    -icount shift=0 \
    -semihosting-config "enable=on,target=native,arg=firmware,arg=seed=$seed,arg=images=$n,arg=keys=$work/key-seed.bin" \
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
  defmt-print -e "$elf" < "$work/defmt.bin" > "$log" || decode=$?
  cat "$log"
  echo "QEMU ran for $(( $(date +%s) - start )) s"
  if [ "$status" -ne 0 ] || [ "$decode" -ne 0 ]; then
    echo "error: the firmware exited with status $status (log decoder: $decode); server log:" >&2
    tail -n 50 "$work/serve.log" >&2
    exit 1
  fi
}

# check_predictions LOG N: the firmware printed N predictions, equal to the plaintext model's.
check_predictions() {
  local log=$1 n=$2 count
  sed -n 's/.*image \([0-9]*\): prediction \([0-9]*\).*/\1 \2/p' "$log" > "$work/firmware"
  count=$(wc -l < "$work/firmware")
  if [ "$count" -ne "$n" ]; then
    echo "error: the firmware printed $count predictions for $n images" >&2
    exit 1
  fi
  "$hefun" plain --model small --images "$count" |
    sed -n 's/^image \([0-9]*\): plaintext \([0-9]*\).*/\1 \2/p' > "$work/plain"
  if ! diff "$work/firmware" "$work/plain"; then
    echo "error: firmware predictions (left) differ from the plaintext model's (right)" >&2
    exit 1
  fi
  echo "== firmware OK: $count of $count predictions equal the plaintext model's"
}

echo "== running the firmware under QEMU against $addr (first boot: new key seed, key upload)"
run_firmware "$images" "$work/log"
grep -q "key seed: none stored" "$work/log" ||
  { echo "error: the first boot did not make a new key seed" >&2; exit 1; }
check_predictions "$work/log" "$images"
count=$images

# A reboot keeps the stored key seed, so the hello names keys the server holds: no upload.
echo "== rebooting the firmware (stored key seed: the server must know its keys)"
run_firmware 1 "$work/reboot.log"
grep -q "key seed: stored" "$work/reboot.log" ||
  { echo "error: the rebooted firmware did not find its key seed" >&2; exit 1; }
grep -q "keys known true" "$work/reboot.log" ||
  { echo "error: after the reboot the server did not know the device's keys" >&2; exit 1; }
if grep -q "phase server hello, key generation and upload" "$work/reboot.log"; then
  echo "error: the rebooted firmware uploaded its keys again" >&2
  exit 1
fi
check_predictions "$work/reboot.log" 1

if [ -n "$json" ]; then
  python3 - "$work/log" "$json" "$text" "$data" "$bss" "$ram_region" "$count" "$work/reboot.log" <<'PY'
import json, re, sys
log, out, text, data, bss, region, images, reboot_log = sys.argv[1:]
text, data, bss, region, images = map(int, (text, data, bss, region, images))
lines = open(log).read().splitlines()
def phase(name, lines=lines, default=None):
    for l in lines:
        m = re.search(r"phase %s: (\d+) instructions.*?(\d+) bytes up, (\d+) bytes down" % re.escape(name), l)
        if m:
            return tuple(map(int, m.groups()))
    if default is not None:
        return default
    raise SystemExit("no phase %r in the firmware log" % name)
m = re.search(r"phase secret key: (\d+) instructions", "\n".join(lines))
secret = int(m.group(1)) if m else 0
hello = phase("key id and hello")
upload = phase("server hello, key generation and upload")
per_image = []
current = 0
for l in lines:
    m = re.search(r"phase (input encryption|decrypt, sign, re-encrypt|output decryption): (\d+) instructions", l)
    if m:
        current += int(m.group(2))
    m = re.search(r"image \d+: prediction \d+ \((\d+) bytes up, (\d+) bytes down\)", l)
    if m:
        per_image.append((current, int(m.group(1)), int(m.group(2))))
        current = 0
m = re.search(r"peak heap (\d+) bytes, peak stack (\d+) bytes, heap region (\d+) bytes", "\n".join(lines))
heap, stack, heap_region = map(int, m.groups())
statics = data + bss - heap_region
n = len(per_image)
report = {
    "images": n,
    "predictions_match": n == images,
    "ram_region_bytes": region,
    "flash_bytes": text + data,
    "static_bytes": statics,
    "peak_heap_bytes": heap,
    "peak_stack_bytes": stack,
    "peak_ram_bytes": statics + heap + stack,
    "key_setup_instructions": secret + hello[0] + upload[0],
    "key_upload_bytes": upload[1],
    "inference_instructions": max(p[0] for p in per_image),
    "inference_bytes_up": sum(p[1] for p in per_image) // n,
    "inference_bytes_down": sum(p[2] for p in per_image) // n,
}
# The reboot: the stored key seed, so only the key id and hello (no upload) before inferring.
rb = open(reboot_log).read().splitlines()
m = re.search(r"phase secret key: (\d+) instructions", "\n".join(rb))
rb_setup = [int(m.group(1)) if m else 0]
rb_up = 0
for name in ("key id and hello", "server hello, key generation and upload", "until the keys were accepted"):
    p = phase(name, rb, (0, 0, 0))
    rb_setup.append(p[0])
    rb_up += p[1]
report["reboot_key_upload_bytes"] = phase("server hello, key generation and upload", rb, (0, 0, 0))[1]
report["reboot_setup_instructions"] = sum(rb_setup)
report["reboot_setup_bytes_up"] = rb_up
json.dump(report, open(out, "w"), indent=2)
print(json.dumps(report, indent=2))
PY
fi
