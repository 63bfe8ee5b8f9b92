#!/usr/bin/env bash
# Builds the release binary statically linked (the Containerfile's runtime stage has no libc)
# and checks that it is: the binary the Containerfile ships. Uses the musl target when installed, else
# glibc with crt-static, which the offline CI machine always has. No default features: the
# sidecar ships without `certgate demo` and links no certificate-minting code.
set -euo pipefail
cd "$(dirname "$0")/.."
if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  target=x86_64-unknown-linux-musl
  cargo build --release --locked --no-default-features --target "$target"
else
  target=x86_64-unknown-linux-gnu
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --no-default-features --target "$target"
fi
bin="target/$target/release/certgate"
out=$(ldd "$bin" 2>&1 || true)
echo "ldd $bin: $out"
case "$out" in
  *"not a dynamic executable"*|*"statically linked"*) ;;
  *) echo "FAIL: $bin is dynamically linked" >&2; exit 1 ;;
esac
"$bin" --version
# The static binary must do real work: a pre-flight check that fails cleanly (exit 1).
set +e
"$bin" check --cert /nonexistent/tls.crt >/dev/null 2>&1
rc=$?
set -e
[ "$rc" -eq 1 ] || { echo "FAIL: static binary check exit $rc, want 1" >&2; exit 1; }
ls -l "$bin"
echo "static binary OK ($target)"
