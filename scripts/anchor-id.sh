#!/bin/sh
# Prints certgate's anchor_id of a CA certificate with nothing but OpenSSL and coreutils:
# SHA-256 over the subject Name's complete DER (tag and length included) followed by the
# SubjectPublicKeyInfo's complete DER. Usage: scripts/anchor-id.sh ROOT.pem (PEM or DER).
set -eu
[ $# -eq 1 ] || { echo "usage: $0 CERT" >&2; exit 2; }
der=$(mktemp)
trap 'rm -f "$der"' EXIT
openssl x509 -in "$1" -outform DER -out "$der" 2>/dev/null ||
  openssl x509 -inform DER -in "$1" -outform DER -out "$der"
# The TBSCertificate's fields are asn1parse's depth-2 lines: [0] version (absent in v1
# certificates), serial, signature algorithm, issuer, validity, subject, subjectPublicKeyInfo.
# Each line starts "offset:d=2 hl=header-length l=content-length".
openssl asn1parse -inform DER -in "$der" | awk '
  /:d=2 / {
    n++
    if (n == 1 && $0 !~ /cont \[ 0 \]/) n++   # v1: no version field
    if (n == 6 || n == 7) {
      split($0, a, ":"); off = a[1] + 0
      match($0, /hl= *[0-9]+/); hl = substr($0, RSTART + 3, RLENGTH - 3) + 0
      match($0, / l= *[0-9]+/); l = substr($0, RSTART + 3, RLENGTH - 3) + 0
      print off, hl + l
    }
  }' | while read -r off len; do
    tail -c +"$((off + 1))" "$der" | head -c "$len"
  done | sha256sum | cut -d" " -f1
