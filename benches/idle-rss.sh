#!/usr/bin/env bash
# Idle RSS of one certgate binary, `certgate run` with one set in publish mode, the way
# benches/compare.sh section 2 measures it (openssl P-256 root -> intermediate -> leaf,
# RUST_LOG=warn, ready after 5 s, RSS after IDLE more seconds), without the blackbox-exporter
# comparison, so that two builds can be compared. Needs openssl and curl.
# Usage: benches/idle-rss.sh /absolute/path/to/certgate [IDLE (default 30)]
set -euo pipefail
BIN=$1; IDLE=${2:-30}
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
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
mkdir -p src pub
cp chain.crt src/tls.crt; cp leaf.key src/tls.key; cp root.crt src/ca.crt
RUST_LOG=warn $BIN run --cert src/tls.crt --key src/tls.key --trust src/ca.crt --name bench.example.com \
  --publish-dir "$W/pub" --listen 127.0.0.1:19464 >/dev/null 2>&1 &
CG=$!
sleep 5
curl -sf http://127.0.0.1:19464/readyz >/dev/null && echo "ready"
sleep "$IDLE"
awk '/VmRSS|RssAnon|RssFile/ {printf "%s %s kB  ", $1, $2} END {print ""}' /proc/$CG/status
kill $CG; wait $CG 2>/dev/null || true
