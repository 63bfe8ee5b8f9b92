#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time, one process each (-workers=1
# -jobs=1), then prints executions, exec/s, corpus (units/bytes) and crashes per target.
#
#   fuzz/run.sh                    # loaders, data_dir, config; 60 s each
#   FUZZ_SECONDS=120 fuzz/run.sh config
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 60)
#   FUZZ_TOOLCHAIN  rustup toolchain with -Z flags (default nightly)
#   FUZZ_ARGS       extra libFuzzer flags, e.g. "-seed=1"
#
# Needs `cargo install cargo-fuzz --locked`. The working corpus is fuzz/corpus/<target>/
# (gitignored), seeded from fuzz/seeds/<target>/ on every run; crash inputs land in
# fuzz/artifacts/<target>/ and libFuzzer's log in fuzz/logs/<target>.log. Replay one input with
#   CERTGATE_FUZZ_DEBUG=1 fuzz/target/x86_64-unknown-linux-gnu/release/<target> <file>
# Exit status: 0 when no target crashed, 1 otherwise.
set -euo pipefail

FUZZ_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$FUZZ_DIR")
SECS=${FUZZ_SECONDS:-60}
TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
read -r -a EXTRA <<<"${FUZZ_ARGS:-}"
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=(loaders data_dir config); fi

declare -A MAX_LEN=([loaders]=16384 [data_dir]=512 [config]=8192)

echo "== building: cargo +$TOOLCHAIN fuzz build (release, debug assertions, AddressSanitizer)"
(cd "$ROOT" && cargo "+$TOOLCHAIN" fuzz build)
TRIPLE=$(rustc "+$TOOLCHAIN" -vV | sed -n 's/^host: //p')
BIN_DIR=$FUZZ_DIR/target/$TRIPLE/release

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/certgate-fuzz-run.XXXXXX")
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  SCRATCH_SHM=$(mktemp -d /dev/shm/certgate-fuzz-run.XXXXXX)
else
  SCRATCH_SHM=$SCRATCH
fi
trap 'rm -rf "$SCRATCH" "$SCRATCH_SHM"' EXIT

summary=()
failed=0
for t in "${TARGETS[@]}"; do
  corpus=$FUZZ_DIR/corpus/$t
  artifacts=$FUZZ_DIR/artifacts/$t
  mkdir -p "$corpus" "$artifacts" "$FUZZ_DIR/logs"
  for f in "$FUZZ_DIR/seeds/$t"/*; do
    [ -e "$corpus/$(basename "$f")" ] || cp "$f" "$corpus/"
  done
  flags=(
    -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -workers=1 -jobs=1
    -print_final_stats=1 -max_len="${MAX_LEN[$t]:-4096}" -artifact_prefix="$artifacts/"
  )
  [ -f "$FUZZ_DIR/dict/$t.dict" ] && flags+=(-dict="$FUZZ_DIR/dict/$t.dict")
  before=$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  echo "== $t: ${SECS}s, corpus $corpus"
  work=$SCRATCH/$t
  mkdir -p "$work"
  start=$(date +%s)
  # With -jobs=1 libFuzzer runs the fuzzing in one child process logging to ./fuzz-0.log.
  (cd "$work" && CERTGATE_FUZZ_TMP=$SCRATCH_SHM "$BIN_DIR/$t" "${flags[@]}" "${EXTRA[@]}" "$corpus" \
    >"$work/parent.log" 2>&1) || true
  end=$(date +%s)
  log=$FUZZ_DIR/logs/$t.log
  # The parent echoes the job's fuzz-0.log when the job ends; fall back to it if it did not.
  if grep -q '^INFO: Seed' "$work/parent.log" || ! [ -f "$work/fuzz-0.log" ]; then
    cp "$work/parent.log" "$log"
  else
    cat "$work/parent.log" "$work/fuzz-0.log" >"$log"
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ -z "$execs" ]; then
    execs=$(grep -Eo '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  fi
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  # libFuzzer's own corpus (units/size) from its last status line.
  corp=$(grep -aEo 'corp: [0-9]+/[0-9]+[bKM]b' "$log" | tail -1 | sed 's/^corp: //')
  after=$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  crashes=$((after - before))
  [ "$crashes" -gt 0 ] && failed=1
  line=$(printf '%-9s %5ss  execs %-10s exec/s %-6s corpus %-14s crashes %s' "$t" "$((end - start))" \
    "${execs:-?}" "${rate:-?}" "${corp:-?}" "$crashes")
  echo "$line"
  if [ "$crashes" -gt 0 ]; then
    grep -E 'panicked at|==ERROR|SUMMARY|Test unit written' "$log" | head -5 | sed 's/^/    /'
  fi
  summary+=("$line")
done

echo
echo "== summary ($(nproc) cores, $(uname -m), $(rustc "+$TOOLCHAIN" --version))"
printf '%s\n' "${summary[@]}"
exit "$failed"
