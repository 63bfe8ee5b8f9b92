#!/usr/bin/env bash
# The admin port under a flood (BENCHMARKS.md, "Admin port under a flood"): `certgate run` with
# one P-256 set (as benches/idle-rss.sh), then
#   1. N slowloris connections (default 5000) held for SECONDS (default 20) while /readyz is
#      probed on fresh connections every 20 ms: probe p50/p99/errors, certgate peak RSS;
#   2. HUGE connections (default 300) each sending a 380 KB unfinished header: peak RSS;
#   3. RSS once both floods are over.
# Needs openssl and python3. Usage: benches/slowloris.sh /abs/path/to/certgate [N] [SECONDS] [HUGE]
set -euo pipefail
BIN=$1; N=${2:-5000}; SECS=${3:-20}; HUGE=${4:-300}
HERE=$(cd "$(dirname "$0")" && pwd)
ulimit -n 20000
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
cd "$W"
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ec root.key; ec leaf.key
openssl req -x509 -new -key root.key -subj /CN=bench-root -days 30 -out root.crt \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -new -key leaf.key -subj /CN=bench.example.com -out leaf.csr 2>/dev/null
printf 'subjectAltName=DNS:bench.example.com\nextendedKeyUsage=serverAuth,clientAuth\n' > leaf.ext
openssl x509 -req -in leaf.csr -CA root.crt -CAkey root.key -CAcreateserial -days 10 -extfile leaf.ext -out leaf.crt 2>/dev/null
mkdir -p pub
ADDR=127.0.0.1:19465
RUST_LOG=warn $BIN run --cert leaf.crt --key leaf.key --trust root.crt --name bench.example.com \
  --publish-dir "$W/pub" --listen $ADDR >/dev/null 2>&1 &
CG=$!
sleep 2
rss() { awk -v l="$1" '/VmRSS|VmHWM/ {printf "%s %s %s kB  ", l, $1, $2} END {print ""}' /proc/$CG/status 2>/dev/null || echo "$1: certgate is gone"; }
alive() { kill -0 $CG 2>/dev/null && echo "certgate alive" || { wait $CG; echo "certgate DIED (exit $?)"; }; }
rss idle
python3 "$HERE/slowloris.py" probe $ADDR 5 | sed 's/^/baseline /'
python3 "$HERE/slowloris.py" flood $ADDR "$N" "$SECS" & F=$!
sleep 3
python3 "$HERE/slowloris.py" probe $ADDR $((SECS - 5)) | sed "s/^/during $N slowloris: /"
wait $F || true
rss "after slowloris"; alive
python3 "$HERE/slowloris.py" huge $ADDR "$HUGE" 10 & F=$!
sleep 4
python3 "$HERE/slowloris.py" probe $ADDR 4 | sed "s/^/during $HUGE huge headers: /" || true
wait $F || true
rss "after huge headers"; alive
sleep 5
rss "5 s after the floods"
kill $CG 2>/dev/null; wait $CG 2>/dev/null || true
