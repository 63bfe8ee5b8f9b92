//! Shared test helpers: the test kit (PKI, kubelet writer, workload) re-exported, the real
//! binary, and the fixtures the suites share.

#![allow(dead_code)]

pub mod daemon;
pub mod fixtures;
pub mod fleet;
pub mod kubelet;
pub mod pki;
pub mod prometheus;
pub mod real_workload;
pub mod workload;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The certgate binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_certgate"))
}

/// A command for the real binary with no inherited CERTGATE_* environment.
pub fn command() -> Command {
    let mut cmd = Command::new(bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("CERTGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs the real binary with `args`, no inherited CERTGATE_* environment.
pub fn certgate(args: &[&str]) -> Output {
    command().args(args).output().expect("run certgate")
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write_path(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write test file");
    p
}

/// Writes `contents` to `dir/name` and returns the path as a String.
pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> String {
    write_path(dir, name, contents).display().to_string()
}

/// stdout and stderr as strings.
pub fn texts(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
