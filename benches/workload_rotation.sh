#!/usr/bin/env bash
# Commit -> first client response with the new leaf, through a real nginx and a real HAProxy
# reloaded by the real certgate binary, and certgate's share of it (BENCHMARKS.md, section
# "Through real workloads"). Each rotation is timed from the source volume's kubelet-style
# `..data` commit to the end of the first HTTPS response carrying the new leaf, seen by Python
# `ssl` clients (OpenSSL 3) looping verified requests at TLS 1.2 and at TLS 1.3 with no pause;
# certgate's share ends at its `published` log line (the publish dir's `..data` commit, just
# before the reload signal). The harness is the workload test suite's
# (tests/util/real_workload.rs); this runs its ignored bench test.
# Needs: nginx-light haproxy python3 (apt-get install nginx-light haproxy python3).
# Usage: benches/workload_rotation.sh [rotations per workload (default 50)]
#        PROFILE=debug benches/workload_rotation.sh   # the debug build (no release compile)
# Source volume, publish dir and servers live in $TMPDIR, /dev/shm by default: a Secret volume
# and the recommended publish dir (emptyDir medium: Memory) are tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50}
profile=(--release)
[ "${PROFILE:-release}" = debug ] && profile=()
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ]; then export TMPDIR=/dev/shm; fi
echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "versions: $(/usr/sbin/nginx -v 2>&1); $(/usr/sbin/haproxy -v | head -1);" \
  "$(python3 -c 'import ssl, sys; print("python", sys.version.split()[0], ssl.OPENSSL_VERSION)')"
echo "build: ${PROFILE:-release}; temp dir: ${TMPDIR:-/tmp} ($(df --output=fstype "${TMPDIR:-/tmp}" | tail -1))"
CERTGATE_BENCH_ROTATIONS=$N CERTGATE_REQUIRE_WORKLOADS=1 \
  cargo test --locked -q "${profile[@]}" --test integration -- \
  --ignored --exact suite::workloads::bench_commit_to_first_new_leaf_response \
  --nocapture --test-threads 1
