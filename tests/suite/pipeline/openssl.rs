//! certgate's verdict beside OpenSSL 3's on the same material, minted at run time with the
//! `openssl` CLI (config files in a temp dir), so that a rule of `x509_policy` is tested against
//! the stack it mirrors: `certgate check` (the real binary) beside `openssl verify` with the
//! set's purpose for the X.509 rules, and beside OpenSSL's own TLS handshakes (`s_server`,
//! `s_client`) for the leaf's keyUsage, which `openssl verify` does not judge as TLS does.
//! Every refusal has a control both accept; where certgate deliberately differs (RFC 5280 rules
//! OpenSSL applies only with `-x509_strict`, a CA certificate as the leaf, an RSA leaf without
//! digitalSignature) the case says so and asserts both sides of the difference.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{certgate, texts};

use Expect::{Accept, Refuse, Stricter};

const NAME: &str = "web.example.com";

const CA: &str = "basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash";
const SUB_CA: &str = "basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid";
const LEAF: &str = "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:web.example.com
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid";

/// Whether the `openssl` CLI runs; `CERTGATE_REQUIRE_OPENSSL=1` (CI) makes its absence fatal.
fn available() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found && std::env::var_os("CERTGATE_REQUIRE_OPENSSL").is_some_and(|v| v == "1") {
        panic!("openssl not installed (apt-get install openssl)");
    }
    found
}

/// The keys of the test PKI.
#[derive(Debug, Clone, Copy)]
enum KeyKind {
    P256,
    Rsa,
    Ed25519,
}

/// Keys and certificates made by the `openssl` CLI in a temp dir, by name: `NAME.key`,
/// `NAME.pem`.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Runs `openssl` in the temp dir with the words of `words`, then `extra` (arguments
    /// with spaces).
    fn openssl(&self, words: &str, extra: &[&str]) {
        let out = Command::new("openssl")
            .args(words.split_whitespace())
            .args(extra)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {words} {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn key(&self, name: &str, kind: KeyKind) {
        if self.path(&format!("{name}.key")).exists() {
            return;
        }
        let alg = match kind {
            KeyKind::P256 => "EC -pkeyopt ec_paramgen_curve:P-256",
            KeyKind::Rsa => "RSA -pkeyopt rsa_keygen_bits:2048",
            KeyKind::Ed25519 => "ED25519",
        };
        self.openssl(&format!("genpkey -algorithm {alg} -out {name}.key"), &[]);
    }

    /// `NAME.cnf`, whose `[ext]` section is `ext` (which may open further sections after it).
    fn config(&self, name: &str, ext: &str) {
        std::fs::write(
            self.path(&format!("{name}.cnf")),
            format!("[req]\ndistinguished_name=dn\n[dn]\n[ext]\n{ext}\n"),
        )
        .expect("write config");
    }

    /// A self-signed certificate.
    fn root(&self, name: &str, subject: &str, ext: &str) {
        self.key(name, KeyKind::P256);
        self.config(name, ext);
        self.openssl(
            &format!(
                "req -new -x509 -key {name}.key -days 30 -config {name}.cnf -extensions ext \
                 -out {name}.pem"
            ),
            &["-subj", subject],
        );
    }

    /// A certificate `issuer` signs, for a new key of `kind`.
    fn issue_key(&self, name: &str, subject: &str, ext: &str, issuer: &str, kind: KeyKind) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SERIAL: AtomicU64 = AtomicU64::new(0x1000);
        self.key(name, kind);
        self.config(name, ext);
        self.openssl(
            &format!("req -new -key {name}.key -config {name}.cnf -out {name}.csr"),
            &["-subj", subject],
        );
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        self.openssl(
            &format!(
                "x509 -req -in {name}.csr -CA {issuer}.pem -CAkey {issuer}.key \
                 -set_serial 0x{serial:x} -days 20 -extfile {name}.cnf -extensions ext \
                 -out {name}.pem"
            ),
            &[],
        );
    }

    fn issue(&self, name: &str, subject: &str, ext: &str, issuer: &str) {
        self.issue_key(name, subject, ext, issuer, KeyKind::P256);
    }

    /// `names`' PEMs concatenated into `file`.
    fn bundle(&self, file: &str, names: &[&str]) -> PathBuf {
        let mut out = String::new();
        for name in names {
            out.push_str(
                &std::fs::read_to_string(self.path(&format!("{name}.pem"))).expect("read pem"),
            );
        }
        let path = self.path(file);
        std::fs::write(&path, out).expect("write bundle");
        path
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

impl Side {
    fn purpose(self) -> &'static str {
        match self {
            Self::Server => "sslserver",
            Self::Client => "sslclient",
        }
    }
    fn usage(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// What both are expected to say.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Both accept.
    Accept,
    /// Both refuse; certgate with this reason and a message containing this.
    Refuse(&'static str, &'static str),
    /// OpenSSL accepts and certgate refuses, deliberately (see the case).
    Stricter(&'static str, &'static str),
}

/// One chain: `leaf` (its key too), the intermediates certgate gets after it and OpenSSL as
/// `-untrusted`, and the roots of the bundle.
struct Case {
    what: &'static str,
    leaf: &'static str,
    intermediates: &'static [&'static str],
    roots: &'static [&'static str],
    side: Side,
    /// Compare with `openssl verify -x509_strict` (an RFC 5280 rule OpenSSL applies only then).
    strict: bool,
    expect: Expect,
}

const fn case(
    what: &'static str,
    leaf: &'static str,
    intermediates: &'static [&'static str],
    roots: &'static [&'static str],
    expect: Expect,
) -> Case {
    Case {
        what,
        leaf,
        intermediates,
        roots,
        side: Side::Server,
        strict: false,
        expect,
    }
}

impl Case {
    const fn strict(mut self) -> Self {
        self.strict = true;
        self
    }
    const fn client(mut self) -> Self {
        self.side = Side::Client;
        self
    }

    /// `openssl verify`'s verdict and its output.
    fn openssl(&self, pki: &Pki, n: usize) -> (bool, String) {
        let trust = pki.bundle(&format!("case{n}-trust.pem"), self.roots);
        let leaf = pki.path(&format!("{}.pem", self.leaf));
        let mut cmd = Command::new("openssl");
        cmd.arg("verify");
        if self.strict {
            cmd.arg("-x509_strict");
        }
        cmd.args(["-purpose", self.side.purpose(), "-CAfile", s(&trust)]);
        if !self.intermediates.is_empty() {
            let untrusted = pki.bundle(&format!("case{n}-untrusted.pem"), self.intermediates);
            cmd.args(["-untrusted", s(&untrusted)]);
        }
        let out = cmd.arg(s(&leaf)).output().expect("run openssl verify");
        let (stdout, stderr) = texts(&out);
        (out.status.success(), format!("{stdout}{stderr}"))
    }

    /// `certgate check` on the same files.
    fn certgate(&self, pki: &Pki, n: usize) -> Output {
        certgate_check(
            pki,
            &format!("case{n}"),
            self.leaf,
            self.intermediates,
            self.roots,
            self.side,
        )
    }

    /// What disagrees with the expectation, if anything.
    fn judge(&self, pki: &Pki, n: usize) -> Option<String> {
        let (openssl_ok, openssl_says) = self.openssl(pki, n);
        let out = self.certgate(pki, n);
        let (stdout, stderr) = texts(&out);
        let certgate_ok = out.status.code() == Some(0);
        let refused_as = |reason: &str, says: &str| {
            out.status.code() == Some(1)
                && stderr
                    .lines()
                    .any(|l| l.starts_with(&format!("{reason}: ")) && l.contains(says))
        };
        let (want_openssl, certgate_right) = match self.expect {
            Expect::Accept => (true, certgate_ok),
            Expect::Refuse(reason, says) => (false, refused_as(reason, says)),
            Expect::Stricter(reason, says) => (true, refused_as(reason, says)),
        };
        (openssl_ok != want_openssl || !certgate_right).then(|| {
            format!(
                "{} ({:?}{}): expected {:?}; openssl verify {}: {}; certgate exit {:?}:\n{stdout}{stderr}",
                self.what,
                self.side,
                if self.strict { ", -x509_strict" } else { "" },
                self.expect,
                if openssl_ok { "accepts" } else { "refuses" },
                openssl_says.trim(),
                out.status.code(),
            )
        })
    }
}

/// `certgate check --usage SIDE` on `leaf` (its key), `intermediates` after it, `roots` as the
/// bundle; `tag` names the files it writes.
fn certgate_check(
    pki: &Pki,
    tag: &str,
    leaf: &str,
    intermediates: &[&str],
    roots: &[&str],
    side: Side,
) -> Output {
    let mut chain = vec![leaf];
    chain.extend_from_slice(intermediates);
    let chain = pki.bundle(&format!("{tag}-chain.pem"), &chain);
    let trust = pki.bundle(&format!("{tag}-trust.pem"), roots);
    let key = pki.path(&format!("{leaf}.key"));
    certgate(&[
        "check",
        "--cert",
        s(&chain),
        "--key",
        s(&key),
        "--trust",
        s(&trust),
        "--name",
        NAME,
        "--usage",
        side.usage(),
    ])
}

/// The PKI of [`x509_verdicts_agree_with_openssl_verify`]: a good root → intermediate → leaf,
/// and beside it one odd certificate per rule, each with a leaf of its own.
fn x509_pki() -> Pki {
    let p = Pki::new();
    p.root("root", "/CN=x509 root", CA);
    p.issue("inter", "/CN=x509 intermediate", SUB_CA, "root");
    p.issue("leaf", "/CN=web.example.com", LEAF, "inter");

    // Roots OpenSSL 3 will not use, each issuing a leaf directly.
    let roots: [(&str, &str, String); 13] = [
        ("root_uc", "/CN=unknown critical", format!("{CA}\n1.2.3.4=critical,ASN1:NULL")),
        (
            "root_akicrit",
            "/CN=critical aki",
            format!("{CA}\nauthorityKeyIdentifier=critical,keyid:always"),
        ),
        (
            "root_skicrit",
            "/CN=critical ski",
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier=critical,hash"
                .into(),
        ),
        (
            "root_akid_keyid",
            "/CN=aki not ski",
            format!(
                "{CA}\n2.5.29.35=DER:30:16:80:14:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14"
            ),
        ),
        (
            "root_akid_serial",
            "/CN=aki names another",
            format!(
                "{CA}\n2.5.29.35=DER:30:15:a1:10:a4:0e:30:0c:31:0a:30:08:06:03:55:04:03:0c:01:78:82:01:05"
            ),
        ),
        (
            "root_akid_self",
            "/CN=aki names itself",
            format!("{CA}\nauthorityKeyIdentifier=keyid:always,issuer:always"),
        ),
        ("root_empty", "/", CA.into()),
        (
            "root_cafalse",
            "/CN=ca false",
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,keyCertSign,cRLSign".into(),
        ),
        (
            "root_nocertsign",
            "/CN=no certsign",
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature".into(),
        ),
        ("root_bare", "/CN=bare", "subjectKeyIdentifier=hash".into()),
        (
            "root_kunobc",
            "/CN=certsign without bc",
            "keyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash".into(),
        ),
        (
            "root_eku_client",
            "/CN=client-only root",
            format!("{CA}\nextendedKeyUsage=clientAuth"),
        ),
        (
            "root_pl0",
            "/CN=pathlen 0",
            "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier=hash"
                .into(),
        ),
    ];
    for (name, subject, ext) in &roots {
        p.root(name, subject, ext);
        p.issue(&format!("leaf_{name}"), "/CN=web.example.com", LEAF, name);
    }
    p.root(
        "root_pl1",
        "/CN=pathlen 1",
        "basicConstraints=critical,CA:TRUE,pathlen:1\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash",
    );
    p.issue("inter_pl0", "/CN=under pathlen 0", SUB_CA, "root_pl0");
    p.issue("leaf_inter_pl0", "/CN=web.example.com", LEAF, "inter_pl0");
    p.issue("inter_pl1", "/CN=under pathlen 1", SUB_CA, "root_pl1");
    p.issue("leaf_inter_pl1", "/CN=web.example.com", LEAF, "inter_pl1");

    // Intermediates OpenSSL 3 refuses, and leaves.
    p.issue("inter_empty", "/", SUB_CA, "root");
    p.issue(
        "leaf_inter_empty",
        "/CN=web.example.com",
        LEAF,
        "inter_empty",
    );
    p.issue(
        "inter_nocertsign",
        "/CN=intermediate without certsign",
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid",
        "root",
    );
    p.issue(
        "leaf_inter_nocertsign",
        "/CN=web.example.com",
        LEAF,
        "inter_nocertsign",
    );
    p.issue(
        "inter_eku_client",
        "/CN=client-only intermediate",
        &format!("{SUB_CA}\nextendedKeyUsage=clientAuth"),
        "root",
    );
    p.issue(
        "leaf_inter_eku_client",
        "/CN=web.example.com",
        LEAF,
        "inter_eku_client",
    );
    p.issue(
        "leaf_akid_wrong",
        "/CN=web.example.com",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:web.example.com\n\
         2.5.29.35=DER:30:16:80:14:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14",
        "inter",
    );
    p.issue(
        "leaf_client_only",
        "/CN=web.example.com",
        &LEAF.replace("serverAuth,clientAuth", "clientAuth"),
        "inter",
    );
    p.issue(
        "leaf_ca",
        "/CN=web.example.com",
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,keyCertSign\n\
         extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:web.example.com\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid",
        "inter",
    );

    // directoryName constraints: permitted O=Example on a root, on an intermediate; excluded
    // O=Evil on a root.
    let permitted = "nameConstraints=critical,permitted;dirName:nc_dn\n[nc_dn]\nO=Example";
    let excluded = "nameConstraints=critical,excluded;dirName:nc_dn\n[nc_dn]\nO=Evil";
    p.root(
        "nc_root",
        "/O=Example/CN=constrained root",
        &format!("{CA}\n{permitted}"),
    );
    p.issue(
        "nc_inter",
        "/O=Example/CN=constrained intermediate",
        SUB_CA,
        "nc_root",
    );
    p.issue("nc_leaf", "/O=Example/CN=web.example.com", LEAF, "nc_inter");
    p.issue(
        "nc_leaf_out",
        "/O=Other/CN=web.example.com",
        LEAF,
        "nc_inter",
    );
    p.issue(
        "nci_inter",
        "/CN=constraining intermediate",
        &format!("{SUB_CA}\n{permitted}"),
        "root",
    );
    p.issue(
        "nci_leaf",
        "/O=Example/CN=web.example.com",
        LEAF,
        "nci_inter",
    );
    p.issue(
        "nci_leaf_out",
        "/O=Other/CN=web.example.com",
        LEAF,
        "nci_inter",
    );
    p.root(
        "ncx_root",
        "/CN=excluding root",
        &format!("{CA}\n{excluded}"),
    );
    p.issue(
        "ncx_inter",
        "/O=Example/CN=excluded intermediate",
        SUB_CA,
        "ncx_root",
    );
    p.issue(
        "ncx_leaf",
        "/O=Example/CN=web.example.com",
        LEAF,
        "ncx_inter",
    );
    p.issue(
        "ncx_leaf_in",
        "/O=Evil/CN=web.example.com",
        LEAF,
        "ncx_inter",
    );

    // A pathLenConstraint 0 intermediate whose key rolled over: the self-issued certificate of
    // its next key does not count (RFC 5280 §4.2.1.9); a CA of another name does.
    p.issue(
        "pl_a",
        "/CN=pathlen 0 intermediate",
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid",
        "root",
    );
    p.issue("pl_a2", "/CN=pathlen 0 intermediate", SUB_CA, "pl_a");
    p.issue("pl_leaf", "/CN=web.example.com", LEAF, "pl_a2");
    p.issue("pl_b", "/CN=another CA", SUB_CA, "pl_a");
    p.issue("pl_leaf_b", "/CN=web.example.com", LEAF, "pl_b");
    p
}

const CASES: &[Case] = &[
    // Baselines: both accept, also with -x509_strict and as a client certificate.
    case("good chain", "leaf", &["inter"], &["root"], Accept),
    case("good chain", "leaf", &["inter"], &["root"], Accept).strict(),
    case("good chain", "leaf", &["inter"], &["root"], Accept).client(),
    // A root carrying an extension it may not mark critical, or one certgate does not process.
    case(
        "root with an unknown critical extension",
        "leaf_root_uc",
        &[],
        &["root_uc"],
        Refuse("chain_invalid", "critical extension 1.2.3.4"),
    ),
    case(
        "root with a critical AKI",
        "leaf_root_akicrit",
        &[],
        &["root_akicrit"],
        Refuse(
            "chain_invalid",
            "AuthorityKeyIdentifier extension is marked critical",
        ),
    ),
    case(
        "root with a critical SKI",
        "leaf_root_skicrit",
        &[],
        &["root_skicrit"],
        Refuse(
            "chain_invalid",
            "SubjectKeyIdentifier extension is marked critical",
        ),
    ),
    // AuthorityKeyIdentifier: it must identify the issuer (for a root, itself).
    case(
        "root whose AKI keyid is not its SKI",
        "leaf_root_akid_keyid",
        &[],
        &["root_akid_keyid"],
        Refuse("chain_invalid", "is not its own SubjectKeyIdentifier"),
    ),
    case(
        "root whose AKI names another issuer and serial",
        "leaf_root_akid_serial",
        &[],
        &["root_akid_serial"],
        Refuse("chain_invalid", "AuthorityKeyIdentifier names serial 05"),
    ),
    case(
        "root whose AKI names its own issuer and serial",
        "leaf_root_akid_self",
        &[],
        &["root_akid_self"],
        Accept,
    ),
    case(
        "leaf whose AKI keyid is not its issuer's SKI",
        "leaf_akid_wrong",
        &["inter"],
        &["root"],
        Refuse("chain_invalid", "is not its issuer"),
    ),
    // A CA with an empty subject: RFC 5280 §4.1.2.6; OpenSSL with -x509_strict.
    case(
        "root with an empty subject",
        "leaf_root_empty",
        &[],
        &["root_empty"],
        Refuse("chain_invalid", "subject is empty"),
    )
    .strict(),
    case(
        "root with an empty subject (OpenSSL without -x509_strict)",
        "leaf_root_empty",
        &[],
        &["root_empty"],
        Stricter("chain_invalid", "subject is empty"),
    ),
    case(
        "intermediate with an empty subject",
        "leaf_inter_empty",
        &["inter_empty"],
        &["root"],
        Refuse("chain_invalid", "subject is empty"),
    )
    .strict(),
    // CA extensions: OpenSSL's X509_check_ca, and RFC 5280 §4.2.1.3's keyCertSign ⇒ cA.
    case(
        "root with basicConstraints cA FALSE",
        "leaf_root_cafalse",
        &[],
        &["root_cafalse"],
        Refuse("chain_invalid", "not a CA (cA FALSE)"),
    ),
    case(
        "root whose keyUsage lacks keyCertSign",
        "leaf_root_nocertsign",
        &[],
        &["root_nocertsign"],
        Refuse("chain_invalid", "lacks keyCertSign"),
    ),
    case(
        "root without basicConstraints or keyUsage",
        "leaf_root_bare",
        &[],
        &["root_bare"],
        Refuse("chain_invalid", "no basicConstraints extension"),
    ),
    case(
        "root with keyCertSign but no basicConstraints",
        "leaf_root_kunobc",
        &[],
        &["root_kunobc"],
        Refuse("chain_invalid", "keyCertSign without basicConstraints"),
    )
    .strict(),
    case(
        "root with keyCertSign but no basicConstraints (OpenSSL without -x509_strict)",
        "leaf_root_kunobc",
        &[],
        &["root_kunobc"],
        Stricter("chain_invalid", "keyCertSign without basicConstraints"),
    ),
    case(
        "intermediate whose keyUsage lacks keyCertSign",
        "leaf_inter_nocertsign",
        &["inter_nocertsign"],
        &["root"],
        Refuse("chain_invalid", "lacks keyCertSign"),
    ),
    // Extended key usage against the set's usage, on the leaf, an intermediate and the root.
    case(
        "leaf for clientAuth only, as a server",
        "leaf_client_only",
        &["inter"],
        &["root"],
        Refuse("wrong_usage", "without serverAuth: TLS clients"),
    ),
    case(
        "leaf for clientAuth only, as a client",
        "leaf_client_only",
        &["inter"],
        &["root"],
        Accept,
    )
    .client(),
    case(
        "intermediate for clientAuth only, as a server",
        "leaf_inter_eku_client",
        &["inter_eku_client"],
        &["root"],
        Refuse("wrong_usage", "every leaf under it as a server certificate"),
    ),
    case(
        "root for clientAuth only, as a server",
        "leaf_root_eku_client",
        &[],
        &["root_eku_client"],
        Refuse(
            "wrong_usage",
            "anchor \"CN=client-only root\" has extendedKeyUsage (clientAuth)",
        ),
    ),
    case(
        "root for clientAuth only, as a client",
        "leaf_root_eku_client",
        &[],
        &["root_eku_client"],
        Accept,
    )
    .client(),
    // A root's pathLenConstraint, which webpki ignores.
    case(
        "root with pathlen 0 over an intermediate",
        "leaf_inter_pl0",
        &["inter_pl0"],
        &["root_pl0"],
        Refuse("chain_invalid", "pathLenConstraint 0"),
    ),
    case(
        "root with pathlen 1 over an intermediate",
        "leaf_inter_pl1",
        &["inter_pl1"],
        &["root_pl1"],
        Accept,
    ),
    // What webpki refused and OpenSSL accepts: directoryName constraints, matched per RFC.
    case(
        "root permitting O=Example, leaf in O=Example",
        "nc_leaf",
        &["nc_inter"],
        &["nc_root"],
        Accept,
    ),
    case(
        "root permitting O=Example, leaf in O=Example (-x509_strict)",
        "nc_leaf",
        &["nc_inter"],
        &["nc_root"],
        Accept,
    )
    .strict(),
    case(
        "root permitting O=Example, leaf in O=Other",
        "nc_leaf_out",
        &["nc_inter"],
        &["nc_root"],
        Refuse("chain_invalid", "outside the name constraints"),
    ),
    case(
        "intermediate permitting O=Example, leaf in O=Example",
        "nci_leaf",
        &["nci_inter"],
        &["root"],
        Accept,
    ),
    case(
        "intermediate permitting O=Example, leaf in O=Example, as a client",
        "nci_leaf",
        &["nci_inter"],
        &["root"],
        Accept,
    )
    .client(),
    case(
        "intermediate permitting O=Example, leaf in O=Other",
        "nci_leaf_out",
        &["nci_inter"],
        &["root"],
        Refuse("chain_invalid", "outside the name constraints"),
    ),
    case(
        "root excluding O=Evil, leaf in O=Example",
        "ncx_leaf",
        &["ncx_inter"],
        &["ncx_root"],
        Accept,
    ),
    case(
        "root excluding O=Evil, leaf in O=Evil",
        "ncx_leaf_in",
        &["ncx_inter"],
        &["ncx_root"],
        Refuse("chain_invalid", "outside the name constraints"),
    ),
    // What webpki refused and OpenSSL accepts: a self-issued intermediate under a pathLen.
    case(
        "self-issued intermediate under pathlen 0",
        "pl_leaf",
        &["pl_a2", "pl_a"],
        &["root"],
        Accept,
    ),
    case(
        "CA of another name under pathlen 0",
        "pl_leaf_b",
        &["pl_b", "pl_a"],
        &["root"],
        Refuse("chain_invalid", "pathLenConstraint"),
    ),
    // Deliberate: a CA certificate is never served as a leaf (OpenSSL would verify it).
    case(
        "CA certificate as the leaf",
        "leaf_ca",
        &["inter"],
        &["root"],
        Stricter("ca_as_leaf", "is a CA certificate"),
    ),
];

#[test]
fn x509_verdicts_agree_with_openssl_verify() {
    if !available() {
        eprintln!(
            "skipped: openssl not installed (CERTGATE_REQUIRE_OPENSSL=1 makes this a failure)"
        );
        return;
    }
    let pki = x509_pki();
    let disagreements: Vec<String> = CASES
        .iter()
        .enumerate()
        .filter_map(|(n, c)| c.judge(&pki, n))
        .collect();
    assert!(
        disagreements.is_empty(),
        "{} of {} cases disagree:\n\n{}",
        disagreements.len(),
        CASES.len(),
        disagreements.join("\n\n")
    );
}

// === keyUsage: OpenSSL's handshakes, not `openssl verify` ===

/// A running `openssl s_server`, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Serves `cert` (with `chain`) on a free loopback port, answering `GET /` with a page;
    /// with `verify_clients`, requires a client certificate verified to `root` (OpenSSL's
    /// sslclient purpose).
    fn start(pki: &Pki, cert: &str, chain: &str, root: &str, verify_clients: bool) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = s(pki.dir.path());
        let mut words = format!(
            "s_server -accept 127.0.0.1:0 -naccept 1 -www -cert {dir}/{cert}.pem \
             -key {dir}/{cert}.key -cert_chain {dir}/{chain}.pem"
        );
        if verify_clients {
            words.push_str(&format!(
                " -Verify 3 -verify_return_error -CAfile {dir}/{root}.pem"
            ));
        }
        // Its output goes to a file (a pipe nobody reads would stop it), where it names the
        // port; its stdin stays open, as s_server may stop at the end of it.
        let log = pki.path(&format!(
            "s_server-{}.log",
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let child = Command::new("openssl")
            .args(words.split_whitespace())
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&log).expect("s_server log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("run openssl s_server");
        let mut server = Self { child, port: 0 };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.port == 0 {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(port) = text.lines().find_map(|l| {
                l.strip_prefix("ACCEPT 127.0.0.1:")
                    .and_then(|p| p.trim().parse().ok())
            }) {
                server.port = port;
            } else {
                assert!(Instant::now() < deadline, "s_server did not start: {text}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        server
    }
}

/// Whether `openssl s_client` completes a verified handshake at `version` (`-tls1_2`,
/// `-tls1_3`) with `server` and gets its page, presenting `client` (certificate and chain) if
/// given: the page proves the server accepted the client certificate too (under TLS 1.3 the
/// client finishes before the server has checked it).
fn handshake(
    pki: &Pki,
    server: &Server,
    version: &str,
    root: &str,
    client: Option<(&str, &str)>,
) -> bool {
    let dir = s(pki.dir.path());
    let mut words = format!(
        "s_client -connect 127.0.0.1:{} {version} -CAfile {dir}/{root}.pem -verify_return_error \
         -verify_hostname {NAME} -brief -ign_eof",
        server.port
    );
    if let Some((cert, chain)) = client {
        words.push_str(&format!(
            " -cert {dir}/{cert}.pem -key {dir}/{cert}.key -cert_chain {dir}/{chain}.pem"
        ));
    }
    let mut cmd = Command::new("openssl");
    cmd.args(words.split_whitespace());
    let page = pki.path(&format!("page-{}.txt", server.port));
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&page).expect("page file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"GET / HTTP/1.0\r\n\r\n");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let got_page = std::fs::read_to_string(&page).is_ok_and(|p| p.contains("HTTP/1.0 200"));
    status.is_some_and(|s| s.success()) && got_page
}

/// Each leaf under test: (name, key, keyUsage).
const KU_LEAVES: [(&str, KeyKind, &str); 6] = [
    ("ku_ec_ds", KeyKind::P256, "digitalSignature"),
    ("ku_ec_ke", KeyKind::P256, "keyEncipherment"),
    ("ku_ed_ke", KeyKind::Ed25519, "keyEncipherment"),
    ("ku_rsa_ds", KeyKind::Rsa, "digitalSignature"),
    ("ku_rsa_ke", KeyKind::Rsa, "keyEncipherment"),
    ("ku_ec_ka", KeyKind::P256, "keyAgreement"),
];

#[test]
fn key_usage_verdicts_agree_with_openssl_handshakes() {
    if !available() {
        eprintln!(
            "skipped: openssl not installed (CERTGATE_REQUIRE_OPENSSL=1 makes this a failure)"
        );
        return;
    }
    let pki = Pki::new();
    pki.root("root", "/CN=ku root", CA);
    pki.issue("inter", "/CN=ku intermediate", SUB_CA, "root");
    for (name, kind, ku) in KU_LEAVES {
        let ext = LEAF.replace(
            "keyUsage=critical,digitalSignature",
            &format!("keyUsage=critical,{ku}"),
        );
        pki.issue_key(name, "/CN=web.example.com", &ext, "inter", kind);
    }
    let check = |leaf: &str, side: Side| {
        let out = certgate_check(&pki, leaf, leaf, &["inter"], &["root"], side);
        let (_, stderr) = texts(&out);
        (out.status.code(), stderr)
    };
    let served = |leaf: &str, version: &str| {
        let server = Server::start(&pki, leaf, "inter", "root", false);
        handshake(&pki, &server, version, "root", None)
    };
    let as_client = |leaf: &str, version: &str| {
        let server = Server::start(&pki, "ku_ec_ds", "inter", "root", true);
        handshake(&pki, &server, version, "root", Some((leaf, "inter")))
    };

    let mut wrong = Vec::new();
    let mut expect = |what: String, ok: bool| {
        if !ok {
            wrong.push(what);
        }
    };
    // Controls: digitalSignature works everywhere, and certgate accepts it.
    for leaf in ["ku_ec_ds", "ku_rsa_ds"] {
        for version in ["-tls1_2", "-tls1_3"] {
            expect(
                format!("{leaf}: OpenSSL serves it at {version}"),
                served(leaf, version),
            );
        }
        let (code, stderr) = check(leaf, Side::Server);
        expect(
            format!("{leaf}: certgate accepts it as a server certificate: {stderr}"),
            code == Some(0),
        );
    }
    expect(
        "ku_ec_ds: OpenSSL accepts it as a client at TLS 1.2".into(),
        as_client("ku_ec_ds", "-tls1_2"),
    );
    let (code, stderr) = check("ku_ec_ds", Side::Client);
    expect(
        format!("ku_ec_ds: certgate accepts it as a client certificate: {stderr}"),
        code == Some(0),
    );

    // ECDSA or Ed25519 without digitalSignature: an OpenSSL server cannot use it for TLS 1.2
    // ("no shared cipher"; its TLS 1.3 does not look); certgate refuses it, naming that.
    for leaf in ["ku_ec_ke", "ku_ed_ke"] {
        expect(
            format!("{leaf}: OpenSSL cannot serve it at TLS 1.2"),
            !served(leaf, "-tls1_2"),
        );
        let (code, stderr) = check(leaf, Side::Server);
        expect(
            format!("{leaf}: certgate refuses it as key_usage naming OpenSSL servers: {stderr}"),
            code == Some(1)
                && stderr
                    .lines()
                    .any(|l| l.starts_with("key_usage: ") && l.contains("nginx")),
        );
    }
    // As a client certificate, OpenSSL servers refuse keyEncipherment alone at every version.
    for version in ["-tls1_2", "-tls1_3"] {
        expect(
            format!("ku_ec_ke: an OpenSSL server refuses it as a client at {version}"),
            !as_client("ku_ec_ke", version),
        );
    }
    let (code, stderr) = check("ku_ec_ke", Side::Client);
    expect(
        format!("ku_ec_ke: certgate refuses it as a client certificate: {stderr}"),
        code == Some(1)
            && stderr
                .lines()
                .any(|l| l.starts_with("key_usage: ") && l.contains("CertificateVerify")),
    );

    // Deliberately stricter than OpenSSL, which ignores keyUsage for RSA and lets keyAgreement
    // stand in for a client's signature: NSS, Java and Chrome do not (docs/configuration.md).
    for version in ["-tls1_2", "-tls1_3"] {
        expect(
            format!("ku_rsa_ke: OpenSSL serves it at {version}"),
            served("ku_rsa_ke", version),
        );
    }
    let (code, stderr) = check("ku_rsa_ke", Side::Server);
    expect(
        format!("ku_rsa_ke: certgate refuses it as key_usage naming static-RSA: {stderr}"),
        code == Some(1)
            && stderr
                .lines()
                .any(|l| l.starts_with("key_usage: ") && l.contains("static-RSA")),
    );
    expect(
        "ku_ec_ka: OpenSSL accepts it as a client at TLS 1.3".into(),
        as_client("ku_ec_ka", "-tls1_3"),
    );
    let (code, stderr) = check("ku_ec_ka", Side::Client);
    expect(
        format!("ku_ec_ka: certgate refuses it as a client certificate: {stderr}"),
        code == Some(1) && stderr.contains("OpenSSL lets keyAgreement stand in"),
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
