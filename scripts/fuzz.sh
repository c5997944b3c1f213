#!/usr/bin/env bash
# Runs the cargo-fuzz targets (frame decoding, server and client session logic) for SECONDS each, all at
# once, on nightly. Not part of CI. Needs: rustup's nightly toolchain and `cargo install cargo-fuzz`.
# Findings land in fuzz/artifacts/<target>/; copy them to fuzz/regressions/ so that the
# regression test (tests/fuzz_regressions.rs) replays them in CI.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-600}"
for target in frame_decode server_session client_session; do
  mkdir -p "corpus/$target"
  cp -n seeds/* regressions/* "corpus/$target/" 2>/dev/null || true
done
pids=()
for target in frame_decode server_session client_session; do
  cargo +nightly fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 \
    > "fuzz-$target.log" 2>&1 &
  pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
for target in frame_decode server_session client_session; do
  echo "== $target"
  grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb)|^(==|SUMMARY|artifact_prefix|Test unit written)" "fuzz-$target.log" || true
  echo "corpus: $(ls "corpus/$target" | wc -l) inputs; artifacts: $(ls "artifacts/$target" 2>/dev/null | wc -l)"
done
exit "$status"
