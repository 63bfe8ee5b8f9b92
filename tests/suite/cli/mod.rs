//! The real binary: `check` and `inspect` contracts (exit codes, output, errors naming files).
//! This file holds the suite's shared helpers; the tests are in one submodule per topic.

mod check;
mod flags;
mod gate_flags;
mod inspect;
mod secrets;

use std::process::Output;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::util::fixtures::{not_after, sha256_hex, NAME};
use crate::util::pki::{Hierarchy, Leaf};
use crate::util::{self, texts, write};

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
