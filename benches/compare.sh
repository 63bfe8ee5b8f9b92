#!/usr/bin/env bash
# Comparisons for BENCHMARKS.md, on this machine, in one run:
#   1. certgate check vs openssl verify (hyperfine, whole-process wall time)
#   2. idle footprint vs prometheus-blackbox-exporter (RSS, wake-ups over 60 s)
#   3. wrk against /readyz and /metrics with 1,000 sets during a rotation storm
# Needs: hyperfine wrk openssl prometheus-blackbox-exporter (apt-get install them).
# Usage: benches/compare.sh [idle-seconds (default 60)]   (SECTIONS="1 2 3" selects sections)
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${1:-60}
SECTIONS=${SECTIONS:-1 2 3}
want() { case " $SECTIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# The binary the image ships: release profile, statically linked (as .ci/static-build.sh).
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -q --no-default-features --target x86_64-unknown-linux-gnu
BIN=$PWD/target/x86_64-unknown-linux-gnu/release/certgate
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "versions: $($BIN --version); $(openssl version); $(hyperfine --version); $(wrk -v 2>&1 | head -1)"

# --- PKI with openssl: root -> intermediate -> leaf, ECDSA P-256 ---
cd "$W"
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ec root.key; ec inter.key; ec leaf.key
openssl req -x509 -new -key root.key -subj /CN=bench-root -days 30 -out root.crt \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -new -key inter.key -subj /CN=bench-inter -out inter.csr 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' > ca.ext
openssl x509 -req -in inter.csr -CA root.crt -CAkey root.key -CAcreateserial -days 20 -extfile ca.ext -out inter.crt 2>/dev/null
openssl req -new -key leaf.key -subj /CN=bench.example.com -out leaf.csr 2>/dev/null
printf 'subjectAltName=DNS:bench.example.com\nextendedKeyUsage=serverAuth,clientAuth\n' > leaf.ext
openssl x509 -req -in leaf.csr -CA inter.crt -CAkey inter.key -CAcreateserial -days 10 -extfile leaf.ext -out leaf.crt 2>/dev/null
cat leaf.crt inter.crt > chain.crt
openssl verify -CAfile root.crt -untrusted inter.crt leaf.crt
$BIN check --cert chain.crt --key leaf.key --trust root.crt --name bench.example.com >/dev/null

if want 1; then
echo; echo "== 1. check vs openssl verify"
hyperfine -N --warmup 20 --runs 300 --export-json check.json \
  -n 'openssl verify' "openssl verify -CAfile root.crt -untrusted inter.crt leaf.crt" \
  -n 'certgate check --no-handshake' "$BIN check --cert chain.crt --key leaf.key --trust root.crt --name bench.example.com --no-handshake" \
  -n 'certgate check (handshake)' "$BIN check --cert chain.crt --key leaf.key --trust root.crt --name bench.example.com"
python3 - <<'PY'
import json
r = {x["command"]: x["mean"] for x in json.load(open("check.json"))["results"]}
o = r["openssl verify"]
for k, v in r.items():
    print(f"  {k:32s} mean {v*1000:7.2f} ms  = {v/o:4.2f}x openssl")
PY

fi

if want 2; then
echo; echo "== 2. idle footprint vs prometheus-blackbox-exporter (${IDLE}s)"
mkdir -p src pub
cp chain.crt src/tls.crt; cp leaf.key src/tls.key; cp root.crt src/ca.crt
RUST_LOG=warn $BIN run --cert src/tls.crt --key src/tls.key --trust src/ca.crt --name bench.example.com \
  --publish-dir "$W/pub" --listen 127.0.0.1:19464 >/dev/null 2>&1 &
CG=$!
BB=$(command -v prometheus-blackbox-exporter)
cat > bb.yml <<'YML'
modules:
  tls_connect:
    prober: tcp
    tcp:
      tls: true
YML
$BB --config.file=bb.yml --web.listen-address=127.0.0.1:19115 >/dev/null 2>&1 &
BBP=$!
sleep 5
curl -sf http://127.0.0.1:19464/readyz >/dev/null && echo "  certgate ready"
# Per-thread run counts (3rd field of schedstat = times scheduled onto a CPU). Threads that
# exit between samples (tokio's idle blocking threads) must not count negatively: sum the
# per-thread deltas of the threads alive at the end.
snap() { for t in /proc/$1/task/*; do echo "$(basename "$t") $(awk '{print $3}' "$t/schedstat" 2>/dev/null)"; done; }
wakeups() { awk 'NR==FNR {a[$1]=$2; next} {d += $2 - (($1 in a) ? a[$1] : 0)} END {print d+0}' "$1" "$2"; }
rss() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
snap $CG > c0; snap $BBP > b0
sleep "$IDLE"
snap $CG > c1; snap $BBP > b1
c0=0; c1=$(wakeups c0 c1); b0=0; b1=$(wakeups b0 b1)
crss=$(rss $CG); brss=$(rss $BBP)
echo "  certgate:  RSS $((crss/1024)) MiB ($crss KiB), wake-ups over ${IDLE}s: $((c1-c0)) ($(python3 -c "print(f'{($c1-$c0)/$IDLE:.3f}')")/s)"
echo "  blackbox:  RSS $((brss/1024)) MiB ($brss KiB), wake-ups over ${IDLE}s: $((b1-b0)) ($(python3 -c "print(f'{($b1-$b0)/$IDLE:.3f}')")/s)"
python3 -c "print(f'  RSS ratio certgate/blackbox = {$crss/$brss:.2f}')"
kill $CG $BBP; wait $CG $BBP 2>/dev/null || true

fi

if want 3; then
echo; echo "== 3. wrk vs /readyz and /metrics, 1,000 sets, rotation storm"
cd - >/dev/null
cargo bench --bench rotation -q -- --sets 1000 --rotations 20 --alg p256 --publish-root /dev/shm --storm-seconds 50 > "$W/storm.log" 2>&1 &
for _ in $(seq 1 600); do grep -q '^STORM addr' "$W/storm.log" 2>/dev/null && break; sleep 0.5; done
ADDR=$(sed -n 's/^STORM addr=\([^ ]*\).*/\1/p' "$W/storm.log")
echo "  daemon at $ADDR"
wrk -t1 -c8 -d15s --latency "http://$ADDR/readyz" | grep -E 'Latency|50%|99%|Requests/sec|Non-2xx|Socket errors|requests in'
wrk -t1 -c4 -d15s --latency "http://$ADDR/metrics" | grep -E 'Latency|50%|99%|Requests/sec|Non-2xx|Socket errors|requests in'
wait
grep -E '^(rotation|STORM done)' "$W/storm.log"
fi
