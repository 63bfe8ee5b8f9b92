#!/usr/bin/env bash
# Regenerates the committed seed corpus under fuzz/seeds/ (run once; the output is committed).
#   fuzz/seeds/pki/       a small PKI (P-256 root -> intermediate -> leaf, an RSA-2048 leaf, an
#                         Ed25519 leaf), fixed validity 2025-01-01 .. 2045-01-01 so the fuzz
#                         targets' fixed `now` (2027-01-15) sits inside it
#   fuzz/seeds/loaders/   cert DELIM key DELIM trust inputs (see fuzz_targets/loaders.rs)
#   fuzz/seeds/data_dir/  layout programs (see fuzz_targets/data_dir.rs; written by python3)
#   fuzz/seeds/config/    TOML configs
# Files named regress-* are crash inputs found by fuzzing (see RELIABILITY.md); they are kept.
# Needs openssl (3.x) and python3.
set -euo pipefail
cd "$(dirname "$0")"
SEEDS=$PWD/seeds
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

cat > ca.cnf <<'CNF'
[ca]
default_ca = fuzz
[fuzz]
dir = .
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
organizationName = optional
[root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[inter]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:example.com,DNS:*.example.com,IP:127.0.0.1,URI:spiffe://example.org/ns/default/sa/web
authorityKeyIdentifier = keyid
CNF
: > index.txt
echo 1000 > serial
sign() { # csr ext out [issuer-cert issuer-key | -selfsign key]
  local csr=$1 ext=$2 out=$3; shift 3
  openssl ca -batch -config ca.cnf -notext -startdate 20250101000000Z -enddate 20450101000000Z \
    -extensions "$ext" -in "$csr" -out "$out" "$@" 2>/dev/null
}
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ec root.key
openssl req -new -key root.key -subj "/O=certgate fuzz/CN=fuzz root" -out root.csr
sign root.csr root root.pem -selfsign -keyfile root.key
ec inter.key
openssl req -new -key inter.key -subj "/O=certgate fuzz/CN=fuzz intermediate" -out inter.csr
sign inter.csr inter inter.pem -cert root.pem -keyfile root.key
ec leaf.key
openssl req -new -key leaf.key -subj "/CN=example.com" -out leaf.csr
sign leaf.csr leaf leaf.pem -cert inter.pem -keyfile inter.key
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key 2>/dev/null
openssl req -new -key rsa.key -subj "/CN=example.com" -out rsa.csr
sign rsa.csr leaf rsa.pem -cert root.pem -keyfile root.key
openssl genpkey -algorithm ED25519 -out ed.key
openssl req -new -key ed.key -subj "/CN=example.com" -out ed.csr
sign ed.csr leaf ed.pem -cert root.pem -keyfile root.key

P=$SEEDS/pki
rm -rf "$P" && mkdir -p "$P"
cp root.pem "$P/root.pem"
cat leaf.pem inter.pem > "$P/leaf-chain.pem"
cp leaf.key "$P/leaf.key"                                            # PKCS#8
openssl ec -in leaf.key -out "$P/leaf-sec1.key" 2>/dev/null            # SEC1
openssl x509 -in leaf.pem -outform DER -out "$P/leaf.der"
openssl pkcs8 -topk8 -nocrypt -in leaf.key -outform DER -out "$P/leaf-key.der"
cp rsa.pem "$P/rsa.pem"
openssl rsa -in rsa.key -traditional -out "$P/rsa-pkcs1.key" 2>/dev/null # PKCS#1
cp ed.pem "$P/ed.pem"
cp ed.key "$P/ed.key"
openssl pkcs8 -topk8 -in leaf.key -passout pass:x -out "$P/leaf-encrypted.key" 2>/dev/null

# loaders: cert DELIM key DELIM trust (DELIM must match fuzz_targets/loaders.rs)
python3 - "$P" "$SEEDS/loaders" <<'PY'
import os, sys
p, out = sys.argv[1], sys.argv[2]
D = b"\n--certgate-fuzz-split--\n"
r = lambda n: open(os.path.join(p, n), "rb").read()
crlf = lambda b: b.replace(b"\n", b"\r\n")
seeds = {
    "ec-chain": [r("leaf-chain.pem"), r("leaf.key"), r("root.pem")],
    "ec-chain-crlf": [crlf(r("leaf-chain.pem")), crlf(r("leaf.key")), crlf(r("root.pem"))],
    "ec-sec1": [r("leaf-chain.pem"), r("leaf-sec1.key"), r("root.pem")],
    "der": [r("leaf.der"), r("leaf-key.der"), r("root.pem")],
    "rsa-pkcs1": [r("rsa.pem"), r("rsa-pkcs1.key"), r("root.pem")],
    "ed25519": [r("ed.pem"), r("ed.key"), r("root.pem")],
    "swapped": [r("leaf.key"), r("leaf-chain.pem"), r("root.pem")],
    "mismatch": [r("rsa.pem"), r("leaf.key"), r("root.pem")],
    "encrypted": [r("leaf-chain.pem"), r("leaf-encrypted.key"), r("root.pem")],
    "cert-only": [r("leaf-chain.pem")],
    "no-trust": [r("leaf-chain.pem"), r("leaf.key")],
    "trailing-garbage": [r("leaf-chain.pem") + b"garbage\n", r("leaf.key"), r("root.pem")],
    "truncated": [r("leaf-chain.pem")[:700], r("leaf.key")[:100], r("root.pem")],
    "wrong-bundle": [r("leaf-chain.pem"), r("leaf.key"), r("leaf-chain.pem")],
}
os.makedirs(out, exist_ok=True)
for f in os.listdir(out):
    if not f.startswith("regress-"):  # crash inputs found by fuzzing stay
        os.remove(os.path.join(out, f))
for name, parts in seeds.items():
    open(os.path.join(out, name), "wb").write(D.join(parts))
PY

# data_dir: layout programs (encoding documented in fuzz_targets/data_dir.rs)
python3 - "$SEEDS/data_dir" <<'PY'
import os, sys
out = sys.argv[1]
PATH = {n: i for i, n in enumerate([
    "vol/tls.crt", "vol/tls.key", "vol/ca.crt", "vol/..data", "vol/..gen1", "vol/..gen2",
    "vol/..gen1/tls.crt", "vol/..gen1/tls.key", "vol/..gen1/ca.crt",
    "vol/..gen2/tls.crt", "vol/..gen2/tls.key", "vol/..gen2/ca.crt", "vol/..data_tmp",
    "out", "out/ca.crt", "out/tls.crt", "vol2/tls.crt", "vol2/..data", "vol2/..gen1",
    "vol2/..gen1/tls.crt", "vol/..gen1/sub", "vol/..gen1/sub/tls.crt", "vol", "vol/sub"])}
CONTENT = {n: i for i, n in enumerate([
    "empty", "chain", "key", "root", "rsa", "rsa-key", "blank", "garbage", "big",
    "inline", "cap", "cap+1"])}
TARGET = {n: i for i, n in enumerate([
    "..data/tls.crt", "..data/tls.key", "..data/ca.crt", "..gen1", "..gen2", "..gen3", "..data",
    "tls.crt", "../out/ca.crt", "../out", "/nonexistent", "/dev/null", "abs:out/tls.crt",
    "..data/../..gen2/tls.crt", "..data/sub/tls.crt", ".", "..", "..data/..data/tls.crt",
    "sub/tls.crt", "..gen1/tls.crt", "composed", "abs:vol/..gen2", "..data/",
    "../vol2/..data/tls.crt", "abs:out"])}
WRITE, MKDIR, LINK, FIFO, REMOVE, RENAME, SOCKET, HOOK, SWAP = range(9)
KEY, TRUST_VOL, TRUST_OUT, TRUST_GEN, CERT_VOL2 = 1, 2, 4, 6, 8
def w(p, c): return [WRITE, PATH[p], CONTENT[c]]
def l(p, t): return [LINK, PATH[p], TARGET[t]]
def gen(g, files):  # a kubelet generation: ..genN with files, user links through ..data
    ops = []
    for f, c in files:
        ops += w(f"vol/..{g}/{f}", c)
    return ops
kubelet = gen("gen1", [("tls.crt", "chain"), ("tls.key", "key"), ("ca.crt", "root")]) + \
    l("vol/..data", "..gen1") + l("vol/tls.crt", "..data/tls.crt") + \
    l("vol/tls.key", "..data/tls.key") + l("vol/ca.crt", "..data/ca.crt")
gen2 = gen("gen2", [("tls.crt", "rsa"), ("tls.key", "rsa-key"), ("ca.crt", "root")])
progs = {
    "kubelet": [KEY | TRUST_VOL] + kubelet,
    "kubelet-swap-mid-read": [KEY | TRUST_VOL] + kubelet + gen2 + [HOOK, SWAP, 1, HOOK, SWAP, 0],
    "kubelet-gen-removed-mid-read": [KEY | TRUST_VOL] + kubelet + gen2 + [HOOK, SWAP, 1, REMOVE, PATH["vol/..gen1"]],
    "plain-files": [KEY | TRUST_OUT] + w("vol/tls.crt", "chain") + w("vol/tls.key", "key") + w("out/ca.crt", "root"),
    "fifo-key": [KEY | TRUST_VOL] + kubelet + [REMOVE, PATH["vol/..gen1/tls.key"], FIFO, PATH["vol/..gen1/tls.key"]],
    "fifo-plain": [KEY] + w("vol/tls.crt", "chain") + [FIFO, PATH["vol/tls.key"]],
    "socket-cert": [0, SOCKET, PATH["vol/tls.crt"]],
    "dangling": [KEY | TRUST_VOL] + l("vol/..data", "..gen3") + l("vol/tls.crt", "..data/tls.crt") + l("vol/tls.key", "..data/tls.key"),
    "loop": [KEY] + l("vol/tls.crt", "tls.crt") + l("vol/..data", "..data") + l("vol/tls.key", "..data/tls.key"),
    "data-garbage": [KEY | TRUST_VOL] + kubelet + l("vol/..data", "/nonexistent"),
    "data-outside": [KEY | TRUST_VOL] + kubelet + l("vol/..data", "../out") + w("out/tls.crt", "chain"),
    "data-abs": [KEY | TRUST_VOL] + kubelet + gen2 + l("vol/..data", "abs:vol/..gen2"),
    "data-is-file": [KEY] + w("vol/..data", "garbage") + l("vol/tls.crt", "..data/tls.crt"),
    "dev-null": [KEY] + l("vol/tls.crt", "/dev/null") + w("vol/tls.key", "key"),
    "dir-as-cert": [0, MKDIR, PATH["vol/tls.crt"]],
    "too-big": [KEY | TRUST_VOL] + w("vol/tls.crt", "cap+1") + w("vol/tls.key", "cap") + w("vol/ca.crt", "big"),
    "two-volumes": [KEY | TRUST_VOL | CERT_VOL2] + kubelet + w("vol2/..gen1/tls.crt", "chain") +
        l("vol2/..data", "..gen1") + [LINK, PATH["vol2/tls.crt"], TARGET["..data/tls.crt"]] + [HOOK, SWAP, 1],
    "composed-link": [KEY] + kubelet + [LINK, PATH["vol/tls.crt"], TARGET["composed"], 3, 0, 1, 5],
    "inline": [0, WRITE, PATH["vol/tls.crt"], CONTENT["inline"], 5] + list(b"hello"),
    "vol-is-link": [KEY | TRUST_VOL] + gen("gen1", [("tls.crt", "chain"), ("tls.key", "key")]) +
        [RENAME, PATH["vol"], PATH["out"], LINK, PATH["vol"], TARGET["abs:out"]],
}
os.makedirs(out, exist_ok=True)
for f in os.listdir(out):
    if not f.startswith("regress-"):  # crash inputs found by fuzzing stay
        os.remove(os.path.join(out, f))
for name, prog in progs.items():
    open(os.path.join(out, name), "wb").write(bytes(prog))
PY
# config: the shipped example plus small valid and invalid configs
C=$SEEDS/config
mkdir -p "$C" && find "$C" -type f ! -name 'regress-*' -delete
cp "$SEEDS/../../config/certgate.example.toml" "$C/example.toml"
printf '[[set]]\nname = "a"\ncert = "/x"\n' > "$C/minimal.toml"
printf '[daemon]\nlisten = "127.0.0.1:9464"\nresync_interval = "1h30m"\nsettle = "250ms"\nmax_file_size = 4096\nhandshake_timeout = "2s"\nlog_format = "json"\n[[set]]\nname = "a"\ncert = "/x"\nkey = "/k"\ntrust = "/t"\nnames = ["example.com", "127.0.0.1", "spiffe://td/ns/a"]\nusage = "both"\nmin_remaining = "1h"\nwarn_before = "7d"\nfail_ready_before = "0s"\nrequired = false\nhandshake = false\n' > "$C/daemon.toml"
printf '[[set]]\nname = "a"\ncert = "/x"\npublish_dir = "/p"\nkey_mode = "0640"\nverify_addr = "127.0.0.1:8443"\nverify_name = "example.com"\nverify_timeout = "30s"\n[set.reload]\nsignal = "SIGHUP"\npid_file = "/run/app.pid"\nurl = "http://127.0.0.1:8080/-/reload"\ncommand = ["/bin/true"]\n[[set]]\nname = "b"\ncert = "/y"\npublish_dir = "/q"\n[set.reload]\nsignal = "10"\nprocess_name = "nginx"\n' > "$C/publish.toml"
printf '[[set]]\nname = "a"\ncert = "/x"\n[[set]]\nname = "a"\ncert = "/y"\n' > "$C/duplicate.toml"
printf '[[set]]\nname = "a"\ncert = "/x"\nmin_remaining = "99999999999999999999d"\nusage = "peer"\n' > "$C/bad-values.toml"
printf '[[set]\nname = "a\ncert = \n' > "$C/broken.toml"
printf '\xef\xbb\xbf[[set]]\r\nname = "a"\r\ncert = "/x\xff"\r\n' > "$C/bom-crlf-non-utf8.toml"
echo "seeds written under $SEEDS"
