//! Flags and their `CERTGATE_*` environment fallbacks: usage and config errors exit 2,
//! daemon limits from the config, `--no-handshake`, `--at`.

use std::process::Output;

use rustls_pki_types::CertificateDer;

use certgate::pipeline::inspect::inspect_cert;

use crate::util::pki::{Alg, Ca, Eku, Hierarchy, LeafSpec};
use crate::util::{self, texts, write};

use super::{
    assert_exit, assert_fails_naming, check_named, json, not_after, rfc3339, show, Files, NAME,
};

/// Runs the binary with only the given `CERTGATE_*` variables set.
fn certgate_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = util::command();
    cmd.args(args);
    cmd.envs(env.iter().copied());
    cmd.output().expect("run certgate")
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
            "--cert (or its CERTGATE_* variable) cannot be combined with --config",
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

/// Runs the binary; kills it after `bound` (a `run` that started instead of refusing).
fn output_within(args: &[&str], bound: std::time::Duration) -> Output {
    let mut child = util::command()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn certgate");
    let start = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() && start.elapsed() < bound {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
}

#[test]
fn per_set_flags_with_config_are_refused_not_ignored() {
    let h = Hierarchy::shared(Alg::P256);
    let files = Files::of(h, &h.leaf);
    let dir = files.dir.path();
    let config = write(
        dir,
        "good.toml",
        format!(
            "[[set]]\nname = \"web\"\ncert = \"{}\"\nkey = \"{}\"\ntrust = \"{}\"\n",
            files.cert, files.key, files.trust
        ),
    );
    let run_flags: &[&[&str]] = &[
        &["--usage", "server"],
        &["--min-remaining", "1d"],
        &["--no-handshake"],
        &["--key-mode", "0640"],
        &["--verify-addr", "127.0.0.1:8443"],
        &["--verify-timeout", "5s"],
        &["--reload-signal", "SIGHUP"],
        &["--reload-pid-file", "/run/app.pid"],
        &["--reload-process", "app"],
        &["--reload-url", "http://127.0.0.1:8080/-/reload"],
        &["--set-name", "web"],
        &["--warn-before", "7d"],
        &["--fail-ready-before", "1d"],
    ];
    let check_flags: &[&[&str]] = &[&["--usage", "server"], &["--min-remaining", "1d"]];
    let cases = run_flags
        .iter()
        .map(|f| ("run", *f))
        .chain(check_flags.iter().map(|f| ("check", *f)));
    for (command, flag) in cases {
        let mut args = vec![command, "--config", &config];
        if command == "run" {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        args.extend_from_slice(flag);
        let out = output_within(&args, std::time::Duration::from_secs(10));
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", show(&out));
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line\n{stderr}");
        assert!(
            stderr.contains(&format!(
                "{} (or its CERTGATE_* variable) cannot be combined with --config",
                flag[0]
            )),
            "{args:?}: names {}\n{stderr}",
            flag[0]
        );
    }
    // Flags that apply to the whole run or check stay allowed with --config.
    let out = util::certgate(&["check", "--config", &config, "--no-handshake", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

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

/// `check --at T` on material valid at T but expired now passes, the self-handshake included:
/// the handshake verifies as of T too.
#[test]
fn at_applies_to_the_self_handshake() {
    let t = time::OffsetDateTime::now_utc();
    let days = time::Duration::days;
    let root = Ca::root_valid("past root", Alg::P256, t - days(400), t - days(10));
    let inter =
        root.intermediate_valid("past intermediate", Alg::P256, t - days(300), t - days(10));
    let leaf = inter.leaf(&LeafSpec::new(NAME).valid(t - days(40), t - days(15)));
    let files = Files::raw(
        format!("{}{}", leaf.cert_pem, inter.cert_pem).as_bytes(),
        leaf.key.pkcs8_pem().as_bytes(),
        root.cert_pem.as_bytes(),
    );
    let at = rfc3339((t - days(20)).unix_timestamp());
    let out = files.check(&["--at", &at, "--json"]);
    assert_exit(&out, 0);
    let set = &json(&out)["sets"][0];
    assert_eq!(check_named(set, "handshake")["status"], "pass", "{set:#}");
    assert!(!set["handshake"].is_null(), "{set:#}");
}
