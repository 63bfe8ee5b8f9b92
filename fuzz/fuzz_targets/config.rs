//! `config`: arbitrary bytes as a config file through `Config::from_file`, and as text through
//! `Config::from_toml` (non-UTF-8 input lossily converted). Invariants:
//! * nothing panics; an error is non-empty and one line (operators read it in a log line or a
//!   terminal);
//! * a file and its text give the same outcome: equal configs, or the same error with the file
//!   named in front (`config <path>: ...`); a non-UTF-8 file is refused;
//! * an accepted config keeps what validation promises: at least one set; set names non-empty,
//!   unique, at most 63 characters of `[A-Za-z0-9._-]`; a non-empty cert path; key_mode
//!   owner-readable and at most group-readable; publish dirs not shared; verify only with
//!   publish; a non-empty reload with a signal in 1..=64, an http:// URL, a non-empty command;
//!   daemon resync_interval >= 1s, settle <= 10s, max_file_size and handshake_timeout positive.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use certgate::config::{Config, ConfigError, ReloadSettings};
use libfuzzer_sys::fuzz_target;

mod common;
use common::scratch_dir;

fn scratch_file() -> &'static PathBuf {
    static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &FILE
        .get_or_init(|| {
            let dir = scratch_dir("certgate-fuzz-config-");
            let path = dir.path().join("certgate.toml");
            (dir, path)
        })
        .1
}

fn check(input: &[u8], result: &Result<Config, ConfigError>) {
    match result {
        Ok(cfg) => check_config(cfg),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty(), "empty error for {input:?}");
            assert!(
                !msg.contains(['\n', '\r']),
                "multi-line error {msg:?} for input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

/// What `Config` documents about a validated configuration.
fn check_config(cfg: &Config) {
    let d = &cfg.daemon;
    assert!(
        d.resync_interval >= Duration::from_secs(1),
        "resync_interval {:?}",
        d.resync_interval
    );
    assert!(d.settle <= Duration::from_secs(10), "settle {:?}", d.settle);
    assert!(d.eval.max_file_size > 0, "max_file_size 0 accepted");
    assert!(
        !d.eval.handshake_timeout.is_zero(),
        "handshake_timeout 0 accepted"
    );
    assert!(!cfg.sets.is_empty(), "accepted a config without sets");
    for (i, set) in cfg.sets.iter().enumerate() {
        assert!(
            !set.name.is_empty()
                && set.name.len() <= 63
                && set
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "set name {:?} accepted",
            set.name
        );
        assert!(
            cfg.sets[..i].iter().all(|s| s.name != set.name),
            "duplicate set name {:?} accepted",
            set.name
        );
        assert!(
            !set.paths.cert.as_os_str().is_empty(),
            "set {:?}: empty cert path",
            set.name
        );
        if let Some(p) = &set.publish {
            assert!(
                p.key_mode & 0o400 != 0 && p.key_mode & !0o640 == 0,
                "set {:?}: key_mode {:o} accepted",
                set.name,
                p.key_mode
            );
            assert!(
                cfg.sets[..i]
                    .iter()
                    .all(|s| s.publish.as_ref().map(|q| &q.dir) != Some(&p.dir)),
                "set {:?}: publish_dir {:?} shared",
                set.name,
                p.dir
            );
        }
        assert!(
            set.verify.is_none() || set.publish.is_some(),
            "set {:?}: verify_addr without publish_dir accepted",
            set.name
        );
        if let Some(reload) = &set.reload {
            assert!(
                *reload != ReloadSettings::default(),
                "set {:?}: empty reload",
                set.name
            );
            if let Some((sig, _)) = &reload.signal {
                assert!(
                    (1..=64).contains(sig),
                    "set {:?}: signal {sig} accepted",
                    set.name
                );
            }
            if let Some(url) = &reload.url {
                assert!(
                    url.starts_with("http://"),
                    "set {:?}: reload url {url:?}",
                    set.name
                );
            }
            assert!(
                reload.command.as_ref().is_none_or(|c| !c.is_empty()),
                "set {:?}: empty reload command accepted",
                set.name
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let path = scratch_file();
    std::fs::write(path, data).expect("write config");
    let from_file = Config::from_file(path);
    check(data, &from_file);
    match std::str::from_utf8(data) {
        Ok(text) => {
            let from_text = Config::from_toml(text);
            check(data, &from_text);
            // A file and its text are the same config; the file's error also names the file.
            match (&from_text, &from_file) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "from_toml and from_file differ"),
                (Err(a), Err(b)) => {
                    let b = b.to_string();
                    assert!(
                        b.starts_with(&format!("config {}: ", path.display())),
                        "from_file error does not name the file: {b:?}"
                    );
                    assert!(
                        b.ends_with(&a.to_string()),
                        "from_file says {b:?}, from_toml {a}"
                    );
                }
                (a, b) => panic!("from_toml {} but from_file {}", verdict(a), verdict(b)),
            }
        }
        Err(_) => {
            assert!(from_file.is_err(), "from_file accepted non-UTF-8");
            check(data, &Config::from_toml(&String::from_utf8_lossy(data)));
        }
    }
});

fn verdict(r: &Result<Config, ConfigError>) -> String {
    match r {
        Ok(_) => "accepted".into(),
        Err(e) => format!("refused ({e})"),
    }
}
