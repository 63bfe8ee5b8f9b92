//! The real binary: `check` and `inspect` contracts (exit codes, output, errors naming files).

use std::process::{Command, Output};

use rustls_pki_types::CertificateDer;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use certgate::pipeline::inspect::inspect_cert;

use crate::util::pki::{base64_of, Alg, Ca, Eku, Hierarchy, Key, Leaf, LeafSpec};
use crate::util::{self, texts, write};

const NAME: &str = "web.example.com";

// === helpers ===

/// A set's files: chain, key and root of a hierarchy, in a temp dir.
struct Files {
    dir: tempfile::TempDir,
    cert: String,
    key: String,
    trust: String,
}

impl Files {
    fn of(h: &Hierarchy, leaf: &Leaf) -> Self {
        Self::raw(
            h.chain_pem_of(leaf).as_bytes(),
            leaf.key.pkcs8_pem().as_bytes(),
            h.root.cert_pem.as_bytes(),
        )
    }

    fn raw(cert: &[u8], key: &[u8], trust: &[u8]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = write(dir.path(), "tls.crt", cert);
        let key = write(dir.path(), "tls.key", key);
        let trust = write(dir.path(), "ca.crt", trust);
        Self {
            dir,
            cert,
            key,
            trust,
        }
    }

    /// `check --cert … --key … --trust … --name web.example.com` plus `extra`.
    fn check(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "check",
            "--cert",
            &self.cert,
            "--key",
            &self.key,
            "--trust",
            &self.trust,
            "--name",
            NAME,
        ];
        args.extend_from_slice(extra);
        util::certgate(&args)
    }
}

/// Runs the binary with only the given `CERTGATE_*` variables set.
fn certgate_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(util::bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("CERTGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run certgate")
}

fn show(o: &Output) -> String {
    let (stdout, stderr) = texts(o);
    format!(
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        o.status.code()
    )
}

fn assert_exit(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}", show(o));
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", show(o)))
}

/// Exit 1, and stderr has one line naming both `reason` and `file`.
fn assert_fails_naming(o: &Output, reason: &str, file: &str) {
    assert_exit(o, 1);
    let (stdout, stderr) = texts(o);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("{reason}: ")) && l.contains(file)),
        "a stderr line with {reason} and {file}:\n{}",
        show(o)
    );
    if !stdout.trim_start().starts_with('{') {
        assert!(stdout.contains("FAIL:"), "{stdout}");
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    certgate::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn not_after(der: &[u8]) -> i64 {
    inspect_cert(&CertificateDer::from(der), 0)
        .expect("parses")
        .not_after
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

fn checks(set: &Value) -> &Vec<Value> {
    set["verdict"]["checks"].as_array().expect("checks array")
}

fn check_named<'a>(set: &'a Value, name: &str) -> &'a Value {
    checks(set)
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {set:#}"))
}

// === check: pass and fail ===

#[test]
fn check_passes_on_a_good_hierarchy() {
    let h = Hierarchy::shared(Alg::P256);
    let out = Files::of(h, &h.leaf).check(&[]);
    assert_exit(&out, 0);
    let (stdout, stderr) = texts(&out);
    assert!(stdout.contains("PASS: 1 set(s) valid"), "{stdout}");
    assert!(stdout.contains("✓ handshake"), "{stdout}");
    assert!(stdout.contains("effective expiry"), "{stdout}");
    assert!(
        stderr.is_empty(),
        "nothing on stderr when all passes: {stderr}"
    );
}

#[test]
fn failing_material_exits_1_naming_file_and_reason_on_stderr() {
    let h = Hierarchy::shared(Alg::P256);
    let t = OffsetDateTime::now_utc();
    let expired = h.intermediate.leaf(
        &LeafSpec::new(NAME).valid(t - time::Duration::days(30), t - time::Duration::hours(1)),
    );
    let files = Files::of(h, &expired);
    assert_fails_naming(&files.check(&[]), "expired", &files.cert);

    let other = h.intermediate.leaf(&LeafSpec::new(NAME));
    let files = Files::raw(
        h.chain_pem().as_bytes(),
        other.key.pkcs8_pem().as_bytes(),
        h.root.cert_pem.as_bytes(),
    );
    assert_fails_naming(&files.check(&[]), "key_mismatch", &files.key);

    let stranger = Ca::root("stranger root", Alg::P256);
    let files = Files::raw(
        h.chain_pem().as_bytes(),
        h.leaf.key.pkcs8_pem().as_bytes(),
        stranger.cert_pem.as_bytes(),
    );
    assert_fails_naming(&files.check(&[]), "unknown_issuer", &files.cert);

    let files = Files::of(h, &h.leaf);
    let out = util::certgate(&[
        "check",
        "--cert",
        &files.cert,
        "--key",
        &files.key,
        "--trust",
        &files.trust,
        "--name",
        "api.example.com",
    ]);
    assert_fails_naming(&out, "name_mismatch", &files.cert);
    assert!(texts(&out).1.contains("api.example.com"), "{}", show(&out));
}

#[test]
fn missing_unreadable_or_unparsable_files_exit_1() {
    let h = Hierarchy::shared(Alg::P256);
    let files = Files::of(h, &h.leaf);
    let missing = files.dir.path().join("absent.key").display().to_string();
    let directory = files.dir.path().join("bundle.d");
    std::fs::create_dir(&directory).unwrap();
    let directory = directory.display().to_string();
    let garbage = write(
        files.dir.path(),
        "garbage.crt",
        "this is not a certificate\n",
    );
    let chain = h.chain_pem();
    let truncated = write(files.dir.path(), "cut.crt", &chain[..chain.len() - 40]);

    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["--key", &missing, "--cert", &files.cert],
            "missing",
            &missing,
        ),
        (
            &["--cert", &files.cert, "--trust", &directory],
            "unreadable",
            &directory,
        ),
        (&["--cert", &garbage], "no_certificate", &garbage),
        (&["--cert", &truncated], "bad_encoding", &truncated),
    ];
    for (args, reason, file) in cases {
        let mut all = vec!["check"];
        all.extend_from_slice(args);
        let out = util::certgate(&all);
        assert_fails_naming(&out, reason, file);
    }
}

#[test]
fn usage_and_config_errors_exit_2() {
    let h = Hierarchy::shared(Alg::P256);
    let files = Files::of(h, &h.leaf);
    let dir = files.dir.path();
    let cert = files.cert.as_str();
    let bad_toml = write(dir, "bad.toml", "[[set]\nname = \"web\"\n");
    let unknown_key = write(
        dir,
        "unknown.toml",
        format!("[[set]]\nname = \"web\"\ncert = \"{cert}\"\ncolour = \"red\"\n"),
    );
    let bad_value = write(
        dir,
        "value.toml",
        format!("[[set]]\nname = \"web\"\ncert = \"{cert}\"\nmin_remaining = \"soon\"\n"),
    );
    let good = write(
        dir,
        "good.toml",
        format!("[[set]]\nname = \"web\"\ncert = \"{cert}\"\n"),
    );
    let absent = dir.join("absent.toml").display().to_string();

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["check", "--cert", cert, "--bogus"], "--bogus"),
        (vec!["frobnicate"], "frobnicate"),
        (vec!["check"], "--cert"),
        (vec!["check", "--cert", cert, "--min-remaining", "3y"], "3y"),
        (
            vec!["check", "--cert", cert, "--min-remaining", "soon"],
            "soon",
        ),
        (vec!["check", "--cert", cert, "--at", "tomorrow"], "--at"),
        (
            vec!["check", "--cert", cert, "--at", "2026-13-01T00:00:00Z"],
            "--at",
        ),
        (vec!["check", "--cert", cert, "--usage", "peer"], "peer"),
        (
            vec!["check", "--cert", cert, "--name", "not a name!"],
            "not a name!",
        ),
        (vec!["check", "--config", &bad_toml], "bad.toml"),
        (vec!["check", "--config", &unknown_key], "colour"),
        (
            vec!["check", "--config", &bad_value],
            "invalid duration \"soon\"",
        ),
        (vec!["check", "--config", &absent], "absent.toml"),
        (
            vec!["check", "--config", &good, "--cert", cert],
            "mutually exclusive",
        ),
        // Limits that would refuse every file or every handshake are mistakes, not verdicts.
        (
            vec!["check", "--cert", cert, "--max-file-size", "0"],
            "--max-file-size",
        ),
        (
            vec!["check", "--cert", cert, "--handshake-timeout", "0s"],
            "--handshake-timeout",
        ),
        (
            vec!["inspect", "--max-file-size", "0", cert],
            "--max-file-size",
        ),
    ];
    for (args, needle) in cases {
        let out = util::certgate(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", show(&out));
        let (stdout, stderr) = texts(&out);
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr names {needle:?}\n{stderr}"
        );
        assert!(
            stdout.is_empty(),
            "{args:?}: no report on a usage error\n{stdout}"
        );
    }
    // The same kind of file without the mistake parses: exit 1 for its material (no trust
    // bundle), not 2.
    assert_exit(
        &util::certgate(&["check", "--config", &good, "--no-handshake"]),
        1,
    );
}

// === check --json ===

#[test]
fn json_report_has_files_checks_expiry_and_handshake() {
    let h = Hierarchy::shared(Alg::P256);
    let files = Files::of(h, &h.leaf);
    let out = files.check(&["--json"]);
    assert_exit(&out, 0);
    let doc = json(&out);
    assert_eq!(doc["passed"], true);
    let at = OffsetDateTime::parse(doc["at"].as_str().unwrap(), &Rfc3339).unwrap();
    assert!((at - OffsetDateTime::now_utc()).abs() < time::Duration::minutes(5));
    let sets = doc["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 1);
    let set = &sets[0];
    assert_eq!(set["name"], "default");
    assert_eq!(set["passed"], true);

    // Files: role, path and the SHA-256 of exactly what is on disk.
    let listed: Vec<(String, String, String)> = set["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["role"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap().to_string(),
                f["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expect: Vec<(String, String, String)> = [
        ("cert", &files.cert),
        ("key", &files.key),
        ("trust", &files.trust),
    ]
    .iter()
    .map(|(role, path)| {
        (
            role.to_string(),
            path.to_string(),
            sha256_hex(&std::fs::read(path).unwrap()),
        )
    })
    .collect();
    assert_eq!(listed, expect);

    // Checks: every one has a status; none failed, so no reason.
    let names: Vec<&str> = checks(set)
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for want in [
        "trust_bundle",
        "chain",
        "names",
        "key",
        "strength",
        "validity",
        "handshake",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    for c in checks(set) {
        assert_eq!(c["status"], "pass", "{c}");
        assert!(c["reason"].is_null(), "{c}");
        assert!(!c["message"].as_str().unwrap().is_empty(), "{c}");
    }

    // Effective expiry: the leaf's not-after (the intermediate lives longer).
    let expiry = not_after(&h.leaf.cert_der);
    assert!(expiry < not_after(&h.intermediate.cert_der));
    assert_eq!(set["effective_expiry"], rfc3339(expiry));
    assert_eq!(set["verdict"]["effective_expiry"], expiry);
    let roles: Vec<&str> = set["verdict"]["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["leaf", "intermediate", "anchor"]);

    // Handshake details.
    let hs = &set["handshake"];
    assert_eq!(hs["server_name"], NAME);
    assert_eq!(hs["client_auth"], false);
    assert!(
        hs["protocol"].as_str().unwrap().starts_with("TLSv1_"),
        "{hs}"
    );
    assert!(!hs["cipher_suite"].as_str().unwrap().is_empty(), "{hs}");
    assert!(hs["duration_ms"].as_f64().unwrap() > 0.0, "{hs}");
    assert_eq!(set["key"]["algorithm"], "ECDSA P-256");
    assert_eq!(set["key"]["encoding"], "PKCS#8");
}

#[test]
fn json_report_of_failures_carries_the_reasons() {
    let h = Hierarchy::shared(Alg::P256);
    let other = h.intermediate.leaf(&LeafSpec::new(NAME));
    let files = Files::raw(
        h.chain_pem().as_bytes(),
        other.key.pkcs8_pem().as_bytes(),
        h.root.cert_pem.as_bytes(),
    );
    let out = files.check(&["--json"]);
    assert_fails_naming(&out, "key_mismatch", &files.key);
    let doc = json(&out);
    assert_eq!(doc["passed"], false);
    let set = &doc["sets"][0];
    assert_eq!(set["passed"], false);
    let key = check_named(set, "key");
    assert_eq!(key["status"], "fail");
    assert_eq!(key["reason"], "key_mismatch");
    assert_eq!(check_named(set, "handshake")["status"], "skip");
    assert!(set["handshake"].is_null());
    assert!(set["load_error"].is_null());

    // A load failure: no verdict, the reason in load_error, the refused files still hashed.
    let swapped = Files::raw(
        h.leaf.key.pkcs8_pem().as_bytes(),
        h.chain_pem().as_bytes(),
        h.root.cert_pem.as_bytes(),
    );
    let out = swapped.check(&["--json"]);
    assert_fails_naming(&out, "swapped", &swapped.cert);
    let set = &json(&out)["sets"][0];
    assert_eq!(set["load_error"]["reason"], "swapped");
    assert!(set["load_error"]["message"]
        .as_str()
        .unwrap()
        .contains(&swapped.cert));
    assert!(set["verdict"].is_null());
    assert_eq!(
        set["files"][0]["sha256"],
        sha256_hex(&std::fs::read(&swapped.cert).unwrap())
    );
}

// === flags and their environment fallbacks ===

#[test]
fn environment_fallbacks_configure_check() {
    let h = Hierarchy::shared(Alg::P256);
    let two_names = h.intermediate.leaf(
        &LeafSpec::new(NAME)
            .dns(&[NAME, "api.example.com"])
            .eku(Eku::Server),
    );
    let files = Files::of(h, &two_names);
    let base = [
        ("CERTGATE_CERT", files.cert.as_str()),
        ("CERTGATE_KEY", files.key.as_str()),
        ("CERTGATE_TRUST", files.trust.as_str()),
        ("CERTGATE_NAMES", "web.example.com,api.example.com"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env = base.to_vec();
        env.extend_from_slice(extra);
        env
    };

    let out = certgate_env(&["check"], &base);
    assert_exit(&out, 0);
    assert!(
        texts(&out)
            .0
            .contains("covers web.example.com, api.example.com"),
        "{}",
        show(&out)
    );

    // CERTGATE_NAMES is a list: a name the leaf lacks fails it.
    let mut env = base.to_vec();
    env[3] = ("CERTGATE_NAMES", "web.example.com,www.example.com");
    assert_fails_naming(
        &certgate_env(&["check"], &env),
        "name_mismatch",
        &files.cert,
    );

    // 30 days left: a 60-day margin fails, a 1-day one passes; the flag beats the variable.
    let out = certgate_env(&["check"], &with(&[("CERTGATE_MIN_REMAINING", "60d")]));
    assert_fails_naming(&out, "expiring_soon", &files.cert);
    assert_exit(
        &certgate_env(&["check"], &with(&[("CERTGATE_MIN_REMAINING", "1d")])),
        0,
    );
    let out = certgate_env(
        &["check", "--min-remaining", "1d"],
        &with(&[("CERTGATE_MIN_REMAINING", "60d")]),
    );
    assert_exit(&out, 0);
    let out = certgate_env(&["check"], &with(&[("CERTGATE_MIN_REMAINING", "a while")]));
    assert_exit(&out, 2);
    assert!(texts(&out).1.contains("a while"), "{}", show(&out));

    // Usage, evaluation time, output format, handshake.
    let out = certgate_env(&["check"], &with(&[("CERTGATE_USAGE", "client")]));
    assert_fails_naming(&out, "wrong_usage", &files.cert);
    let out = certgate_env(
        &["check"],
        &with(&[("CERTGATE_AT", "2999-01-01T00:00:00Z")]),
    );
    assert_fails_naming(&out, "expired", &files.cert);
    let out = certgate_env(&["check"], &with(&[("CERTGATE_AT", "never")]));
    assert_exit(&out, 2);
    let out = certgate_env(
        &["check"],
        &with(&[("CERTGATE_JSON", "true"), ("CERTGATE_NO_HANDSHAKE", "true")]),
    );
    assert_exit(&out, 0);
    let doc = json(&out);
    assert_eq!(check_named(&doc["sets"][0], "handshake")["status"], "skip");

    // The config file by variable.
    let config = write(
        files.dir.path(),
        "env.toml",
        format!("[[set]]\nname = \"from-env\"\ncert = \"{}\"\n", files.cert),
    );
    let out = certgate_env(&["check", "--json"], &[("CERTGATE_CONFIG", &config)]);
    assert_eq!(json(&out)["sets"][0]["name"], "from-env", "{}", show(&out));
}

#[test]
fn check_config_daemon_limits_apply_and_flags_override_them() {
    let h = Hierarchy::shared(Alg::P256);
    let files = Files::of(h, &h.leaf);
    let config = write(
        files.dir.path(),
        "limits.toml",
        format!(
            "[daemon]\nmax_file_size = 200\nhandshake_timeout = \"5s\"\n[[set]]\nname = \"web\"\ncert = \"{}\"\nkey = \"{}\"\ntrust = \"{}\"\n",
            files.cert, files.key, files.trust
        ),
    );
    // The daemon would refuse these files under this config: so must the pre-flight check.
    let out = util::certgate(&["check", "--config", &config]);
    assert_fails_naming(&out, "too_large", &files.cert);
    assert!(texts(&out).1.contains("200-byte limit"), "{}", show(&out));
    // An explicit flag still wins over the file.
    let out = util::certgate(&["check", "--config", &config, "--max-file-size", "65536"]);
    assert_exit(&out, 0);
}

#[test]
fn no_handshake_reports_the_handshake_skipped() {
    let h = Hierarchy::shared(Alg::P256);
    let files = Files::of(h, &h.leaf);
    let out = files.check(&["--no-handshake"]);
    assert_exit(&out, 0);
    let stdout = texts(&out).0;
    let line = stdout
        .lines()
        .find(|l| l.contains("handshake"))
        .expect("a handshake line");
    assert!(line.trim_start().starts_with("- handshake"), "{line}");
    assert!(line.contains("disabled (--no-handshake)"), "{line}");

    let doc = json(&files.check(&["--no-handshake", "--json"]));
    let set = &doc["sets"][0];
    assert_eq!(check_named(set, "handshake")["status"], "skip");
    assert!(set["handshake"].is_null());
    assert_eq!(set["timings"]["handshake_ms"], 0.0);
    // Without the flag it runs.
    let doc = json(&files.check(&["--json"]));
    assert_eq!(check_named(&doc["sets"][0], "handshake")["status"], "pass");
}

#[test]
fn at_moves_the_evaluation_time() {
    let h = Hierarchy::shared(Alg::P256);
    let files = Files::of(h, &h.leaf);
    let na = not_after(&h.leaf.cert_der);
    let nb = inspect_cert(&CertificateDer::from(h.leaf.cert_der.as_slice()), 0)
        .unwrap()
        .not_before;

    let after = rfc3339(na + 60);
    let out = files.check(&["--at", &after]);
    assert_fails_naming(&out, "expired", &files.cert);
    let before = rfc3339(nb - 60);
    assert_fails_naming(
        &files.check(&["--at", &before]),
        "not_yet_valid",
        &files.cert,
    );
    let inside = rfc3339(na - 86_400);
    let out = files.check(&["--at", &inside, "--json"]);
    assert_exit(&out, 0);
    let doc = json(&out);
    assert_eq!(doc["at"], inside.as_str());
    assert_eq!(doc["sets"][0]["verdict"]["remaining_seconds"], 86_400);
}

#[test]
fn config_with_several_sets_fails_when_one_does() {
    let h = Hierarchy::shared(Alg::P256);
    let web = Files::of(h, &h.leaf);
    let api_leaf = h.intermediate.leaf(&LeafSpec::new("api.example.com"));
    let api = Files::of(h, &api_leaf);
    let t = OffsetDateTime::now_utc();
    let old_leaf = h.intermediate.leaf(
        &LeafSpec::new("old.example.com")
            .valid(t - time::Duration::days(60), t - time::Duration::days(1)),
    );
    let old = Files::of(h, &old_leaf);
    let set = |name: &str, f: &Files, dns: &str| {
        format!(
            "[[set]]\nname = \"{name}\"\ncert = \"{}\"\nkey = \"{}\"\ntrust = \"{}\"\nnames = [\"{dns}\"]\n",
            f.cert, f.key, f.trust
        )
    };
    let good_sets = format!(
        "{}{}",
        set("web", &web, NAME),
        set("api", &api, "api.example.com")
    );
    let all = write(
        web.dir.path(),
        "all.toml",
        format!("{good_sets}{}", set("old", &old, "old.example.com")),
    );
    let out = util::certgate(&["check", "--config", &all]);
    assert_fails_naming(&out, "expired", &old.cert);
    let (stdout, stderr) = texts(&out);
    for name in ["set web", "set api", "set old"] {
        assert!(stdout.contains(name), "{name}: {stdout}");
    }
    assert!(stdout.contains("FAIL: 1 of 3 set(s) failed"), "{stdout}");
    assert!(
        !stderr.contains(&web.cert) && !stderr.contains(&api.cert),
        "only the failing set on stderr: {stderr}"
    );
    let doc = json(&util::certgate(&["check", "--config", &all, "--json"]));
    let verdicts: Vec<(&str, bool)> = doc["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["passed"].as_bool().unwrap()))
        .collect();
    assert_eq!(verdicts, [("web", true), ("api", true), ("old", false)]);
    assert_eq!(doc["passed"], false);

    let good = write(web.dir.path(), "good.toml", good_sets);
    let out = util::certgate(&["check", "--config", &good]);
    assert_exit(&out, 0);
    assert!(
        texts(&out).0.contains("PASS: 2 set(s) valid"),
        "{}",
        show(&out)
    );
}

// === inspect ===

#[test]
fn inspect_describes_a_chain_file() {
    let h = Hierarchy::shared(Alg::P256);
    let files = Files::of(h, &h.leaf);
    let out = util::certgate(&["inspect", &files.cert]);
    assert_exit(&out, 0);
    let stdout = texts(&out).0;
    assert!(stdout.starts_with(&files.cert), "{stdout}");
    assert!(stdout.contains("[0] leaf CN=web.example.com"), "{stdout}");
    assert!(stdout.contains("[1] intermediate"), "{stdout}");
    assert!(stdout.contains("certgate test intermediate"), "{stdout}");
    assert!(stdout.contains("DNS:web.example.com"), "{stdout}");
    assert!(stdout.contains("ECDSA P-256 256 bits"), "{stdout}");
    assert!(stdout.contains(&sha256_hex(&h.leaf.cert_der)), "{stdout}");
    assert!(
        stdout.contains(&rfc3339(not_after(&h.leaf.cert_der))),
        "{stdout}"
    );

    let out = util::certgate(&["inspect", "--json", &files.cert, &files.trust]);
    assert_exit(&out, 0);
    let doc = json(&out);
    let chain = &doc[0];
    assert_eq!(chain["file"], files.cert.as_str());
    assert_eq!(
        chain["sha256"],
        sha256_hex(&std::fs::read(&files.cert).unwrap())
    );
    let certs = chain["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0]["role"], "leaf");
    assert_eq!(certs[0]["subject_cn"], NAME);
    assert_eq!(certs[0]["sans"][0]["type"], "dns");
    assert_eq!(certs[0]["sans"][0]["value"], NAME);
    assert_eq!(certs[0]["is_ca"], false);
    assert_eq!(certs[0]["not_after"], not_after(&h.leaf.cert_der));
    assert_eq!(certs[0]["fingerprint_sha256"], sha256_hex(&h.leaf.cert_der));
    assert_eq!(certs[1]["role"], "intermediate");
    assert_eq!(certs[1]["is_ca"], true);
    assert_eq!(doc[1]["certificates"][0]["role"], "anchor");
    assert!(
        chain.get("key").is_none() && chain.get("error").is_none(),
        "{chain}"
    );
}

#[test]
fn inspect_describes_a_key_by_algorithm() {
    let p256 = &Hierarchy::shared(Alg::P256).leaf.key;
    let p384 = &Hierarchy::shared(Alg::P384).leaf.key;
    let ed = &Hierarchy::shared(Alg::Ed25519).leaf.key;
    let rsa = &Hierarchy::shared(Alg::Rsa2048).leaf.key;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "p256.key",
            p256.pkcs8_pem().into_bytes(),
            "ECDSA P-256",
            256,
            "PKCS#8",
        ),
        (
            "p384.key",
            p384.sec1_pem().into_bytes(),
            "ECDSA P-384",
            384,
            "SEC1",
        ),
        ("ed.der", ed.pkcs8_der.clone(), "Ed25519", 256, "PKCS#8"),
        (
            "rsa.key",
            rsa.pkcs1_pem().into_bytes(),
            "RSA",
            2048,
            "PKCS#1",
        ),
    ];
    for (name, bytes, algorithm, bits, encoding) in cases {
        let path = write(dir.path(), name, &bytes);
        let out = util::certgate(&["inspect", &path]);
        assert_exit(&out, 0);
        let stdout = texts(&out).0;
        assert!(
            stdout.contains(&format!("private key: {algorithm} {bits} bits")),
            "{name}: {stdout}"
        );
        let out = util::certgate(&["inspect", "--json", &path]);
        assert_exit(&out, 0);
        let doc = json(&out);
        let key = &doc[0]["key"];
        assert_eq!(key["algorithm"], algorithm, "{name}");
        assert_eq!(key["bits"], bits, "{name}");
        assert_eq!(key["encoding"], encoding, "{name}");
        assert_eq!(
            key["public_key_sha256"].as_str().unwrap().len(),
            64,
            "{name}"
        );
        assert!(doc[0].get("certificates").is_none(), "{name}: {doc}");
    }
}

#[test]
fn inspect_refuses_encrypted_missing_and_garbage_files() {
    let key = &Hierarchy::shared(Alg::P256).leaf.key;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            write(dir.path(), "enc.key", key.encrypted_pkcs8_pem()),
            "encrypted private keys are not supported",
        ),
        (
            write(dir.path(), "legacy.key", key.legacy_encrypted_pem()),
            "encrypted private keys are not supported",
        ),
        (
            write(dir.path(), "junk", "just text\n"),
            "no certificate or private key found",
        ),
        (
            dir.path().join("absent.crt").display().to_string(),
            "file not found",
        ),
    ];
    for (path, needle) in cases {
        for json_flag in [false, true] {
            let mut args = vec!["inspect"];
            if json_flag {
                args.push("--json");
            }
            args.push(&path);
            let out = util::certgate(&args);
            assert_exit(&out, 1);
            let stderr = texts(&out).1;
            assert!(
                stderr
                    .lines()
                    .any(|l| l.contains(&path) && l.contains(needle)),
                "{path}: {needle:?}\n{}",
                show(&out)
            );
            if json_flag {
                let doc = json(&out);
                assert!(doc[0]["error"].as_str().unwrap().contains(needle), "{doc}");
            }
        }
    }
}

// === secrets ===

/// Every form in which `key`'s secret could be printed: base64 of each DER encoding (whole,
/// and each PEM body line), its hex, and the hex of the raw private scalar for EC keys.
fn secret_needles(key: &Key, encodings: &[Vec<u8>]) -> Vec<String> {
    let mut needles = Vec::new();
    for der in encodings {
        let b64 = base64_of(der);
        needles.extend(
            b64.as_bytes()
                .chunks(64)
                .filter(|c| c.len() >= 32)
                .map(|c| String::from_utf8(c.to_vec()).unwrap()),
        );
        needles.push(b64);
        needles.push(certgate::hex(der));
    }
    if matches!(key.alg, Alg::P256 | Alg::P384) {
        // ECPrivateKey: SEQUENCE { INTEGER 1, OCTET STRING privateKey, … }
        let sec1 = key.sec1_der();
        let body = if sec1[1] & 0x80 == 0 {
            2
        } else {
            2 + usize::from(sec1[1] & 0x7f)
        };
        let len = usize::from(sec1[body + 4]);
        let scalar = &sec1[body + 5..body + 5 + len];
        needles.push(certgate::hex(scalar));
        needles.push(certgate::hex(scalar).to_uppercase());
    }
    needles
}

#[test]
fn key_bytes_appear_in_no_output() {
    let p256 = Hierarchy::shared(Alg::P256);
    let rsa = Hierarchy::shared(Alg::Rsa2048);
    let ed = Hierarchy::shared(Alg::Ed25519);
    // (hierarchy, the key file as written, the DER encodings of its secret)
    type Case = (&'static Hierarchy, Vec<u8>, Vec<Vec<u8>>);
    let cases: Vec<Case> = vec![
        (
            p256,
            p256.leaf.key.pkcs8_pem().into_bytes(),
            vec![p256.leaf.key.pkcs8_der.clone()],
        ),
        (
            p256,
            p256.leaf.key.sec1_pem().into_bytes(),
            vec![p256.leaf.key.sec1_der(), p256.leaf.key.pkcs8_der.clone()],
        ),
        (
            rsa,
            rsa.leaf.key.pkcs1_pem().into_bytes(),
            vec![rsa.leaf.key.pkcs1_der(), rsa.leaf.key.pkcs8_der.clone()],
        ),
        (
            ed,
            ed.leaf.key.pkcs8_der.clone(),
            vec![ed.leaf.key.pkcs8_der.clone()],
        ),
    ];
    let mismatched = p256.intermediate.leaf(&LeafSpec::new(NAME));
    let mut scanned = 0;
    for (h, key_bytes, encodings) in cases {
        let needles = secret_needles(&h.leaf.key, &encodings);
        // The scan has teeth: printing the key file, as text or hex, would be caught.
        let leaked = [
            String::from_utf8_lossy(&key_bytes).into_owned(),
            certgate::hex(&key_bytes),
        ];
        assert!(
            needles
                .iter()
                .any(|n| leaked.iter().any(|l| l.contains(n.as_str()))),
            "{:?}: the needles match the key file itself",
            h.leaf.key.alg
        );
        let files = Files::raw(
            h.chain_pem().as_bytes(),
            &key_bytes,
            h.root.cert_pem.as_bytes(),
        );
        let other_cert = write(
            files.dir.path(),
            "other.crt",
            p256.chain_pem_of(&mismatched),
        );
        let (cert, key, trust) = (
            files.cert.as_str(),
            files.key.as_str(),
            files.trust.as_str(),
        );
        let runs: Vec<Vec<&str>> = vec![
            vec![
                "check", "--cert", cert, "--key", key, "--trust", trust, "--name", NAME,
            ],
            vec![
                "check", "--cert", cert, "--key", key, "--trust", trust, "--name", NAME, "--json",
            ],
            // key mismatch
            vec![
                "check",
                "--cert",
                &other_cert,
                "--key",
                key,
                "--trust",
                trust,
            ],
            vec![
                "check",
                "--cert",
                &other_cert,
                "--key",
                key,
                "--trust",
                trust,
                "--json",
            ],
            // the key given as every other file
            vec!["check", "--cert", key, "--key", cert, "--trust", trust],
            vec!["check", "--cert", key, "--trust", trust, "--json"],
            vec![
                "check", "--cert", cert, "--key", key, "--trust", key, "--json",
            ],
            vec!["inspect", key],
            vec!["inspect", "--json", key, cert],
        ];
        for args in runs {
            let out = util::certgate(&args);
            let (stdout, stderr) = texts(&out);
            assert!(
                !stdout.is_empty() || !stderr.is_empty(),
                "{args:?} said something"
            );
            for needle in &needles {
                assert!(
                    !stdout.contains(needle.as_str()) && !stderr.contains(needle.as_str()),
                    "{:?} key material in the output of {args:?}",
                    h.leaf.key.alg
                );
            }
            scanned += 1;
        }
    }
    assert_eq!(scanned, 36);
}
