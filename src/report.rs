//! What `check` and `inspect` print: human lines on stdout, one short line per failure on
//! stderr (fit for `/dev/termination-log`), or one JSON document.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use crate::config::SetConfig;
use crate::duration::format_duration;
use crate::labels::Reason;
use crate::pipeline::inspect::{self, CertInfo, KeyInfo};
use crate::pipeline::load::{self, FileRole, LoadError};
use crate::pipeline::validate::Status;
use crate::pipeline::Evaluation;
use crate::time_fmt::rfc3339;

/// One checked set, for JSON output.
#[derive(Debug, Serialize)]
pub struct SetOutcome<'a> {
    /// Set name.
    pub name: &'a str,
    /// The evaluation.
    #[serde(flatten)]
    pub evaluation: &'a Evaluation,
    /// Effective expiry, RFC 3339.
    pub effective_expiry: Option<String>,
}

/// The `check --json` document.
#[derive(Debug, Serialize)]
pub struct CheckDocument<'a> {
    /// Whether every set passed.
    pub passed: bool,
    /// Evaluation time, RFC 3339.
    pub at: String,
    /// Per set.
    pub sets: Vec<SetOutcome<'a>>,
}

/// Builds the JSON document for `check`.
pub fn check_document<'a>(now: i64, results: &'a [(SetConfig, Evaluation)]) -> CheckDocument<'a> {
    CheckDocument {
        passed: results.iter().all(|(_, e)| e.passed()),
        at: rfc3339(now),
        sets: results
            .iter()
            .map(|(set, evaluation)| SetOutcome {
                name: &set.name,
                evaluation,
                effective_expiry: evaluation
                    .verdict()
                    .and_then(|v| v.effective_expiry())
                    .map(rfc3339),
            })
            .collect(),
    }
}

/// Human report of one set.
pub fn human_set(set: &SetConfig, eval: &Evaluation, now: i64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "set {} ({})", set.name, set.paths.cert.display());
    if let Some(p) = eval.load_error() {
        let _ = writeln!(out, "  ✗ {:<12} {}", "load", p.message);
    }
    if let Some(v) = eval.verdict() {
        for c in v.checks() {
            let mark = match c.status {
                Status::Pass => "✓",
                Status::Warn => "!",
                Status::Fail => "✗",
                Status::Skip => "-",
            };
            let _ = writeln!(out, "  {mark} {:<12} {}", c.check, c.message);
        }
        if let Some(leaf) = v.leaf() {
            let sans = leaf
                .sans
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "    leaf {} serial {} [{}]",
                leaf.subject, leaf.serial, sans
            );
        }
        if let Some(expiry) = v.effective_expiry() {
            let remaining = expiry - now;
            let when = if remaining >= 0 {
                format!(
                    "in {}",
                    format_duration(std::time::Duration::from_secs(remaining as u64))
                )
            } else {
                format!(
                    "{} ago",
                    format_duration(std::time::Duration::from_secs(remaining.unsigned_abs()))
                )
            };
            let _ = writeln!(out, "    effective expiry {} ({when})", rfc3339(expiry));
        }
    }
    out
}

/// One stderr line per failure, naming the file.
pub fn failure_lines(set: &SetConfig, eval: &Evaluation) -> Vec<String> {
    let mut lines: Vec<String> = eval
        .load_error()
        .into_iter()
        .map(|p| format!("{}: {}", p.reason, p.message))
        .collect();
    if let Some(v) = eval.verdict() {
        for c in v.failures() {
            let file = match c.check {
                "key" => set.paths.key.as_deref(),
                "trust_bundle" => set.paths.trust.as_deref(),
                _ => None,
            }
            .unwrap_or(&set.paths.cert);
            lines.push(format!(
                "{}: {} {}: {}",
                c.reason.map_or("failed", Reason::as_str),
                role_of(c.check),
                file.display(),
                c.message
            ));
        }
    }
    lines
}

fn role_of(check: &str) -> &'static str {
    match check {
        "key" => "key",
        "trust_bundle" => "trust bundle",
        _ => "cert",
    }
}

// === inspect ===

/// What one inspected file holds.
#[derive(Debug, Serialize)]
pub struct InspectedFile {
    /// The path.
    pub file: String,
    /// SHA-256 of the content.
    pub sha256: Option<String>,
    /// Certificates, in file order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertInfo>,
    /// The key's description, if it is a key file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyInfo>,
    /// Why it could not be read, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Inspects one file: certificates, or a key (described, never printed).
pub fn inspect_file(path: &Path, max_file_size: u64) -> InspectedFile {
    let mut out = InspectedFile {
        file: path.display().to_string(),
        sha256: None,
        certificates: Vec::new(),
        key: None,
        error: None,
    };
    let snap = match load::snapshot(FileRole::Cert, path, max_file_size) {
        Ok(s) => s,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    out.sha256 = Some(snap.sha256.clone());
    match load::decode_certs(&snap) {
        Ok(certs) => {
            for (i, der) in certs.iter().enumerate() {
                match inspect::inspect_cert(der, i) {
                    Ok(info) => out.certificates.push(info),
                    Err(e) => {
                        out.error = Some(format!("{}: {e}", path.display()));
                        break;
                    }
                }
            }
        }
        // Not a certificate file: perhaps a key. Describe it, never print it.
        Err(LoadError::NoCertificate { .. }) => {
            let key_snap = snap.with_role(FileRole::Key);
            match load::decode_key(&key_snap) {
                Ok(key) => out.key = Some(inspect::inspect_key(&key)),
                Err(e @ LoadError::EncryptedKey { .. }) => out.error = Some(e.to_string()),
                Err(_) => {
                    out.error = Some(format!(
                        "{}: no certificate or private key found",
                        path.display()
                    ))
                }
            }
        }
        // OpenSSL's legacy encrypted PEM has header lines that break the PEM decoding; name it
        // for what it is rather than as broken base64. Any other broken PEM is reported as the
        // key loader reports it, quoting nothing of the content: a file named to `inspect` may
        // be a key, or another secret a key path pointed at.
        Err(e) => {
            out.error = Some(match load::decode_key(&snap.with_role(FileRole::Key)) {
                Err(encrypted @ LoadError::EncryptedKey { .. }) => encrypted.to_string(),
                Err(LoadError::Malformed { detail, .. }) => {
                    format!("{}: malformed: {detail}", path.display())
                }
                _ => e.to_string(),
            })
        }
    }
    out
}

/// Human rendering of an inspected file.
pub fn human_inspected(f: &InspectedFile) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", f.file);
    if let Some(e) = &f.error {
        let _ = writeln!(out, "  error: {e}");
    }
    for (i, c) in f.certificates.iter().enumerate() {
        let _ = writeln!(out, "  [{i}] {} {}", c.role, c.subject);
        let _ = writeln!(out, "      issuer       {}", c.issuer);
        match &c.serial_der {
            Some(der) => {
                let _ = writeln!(out, "      serial       {} (negative; DER {der})", c.serial);
            }
            None => {
                let _ = writeln!(out, "      serial       {}", c.serial);
            }
        }
        let sans = c
            .sans
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if !sans.is_empty() {
            let _ = writeln!(out, "      SANs         {sans}");
        }
        let _ = writeln!(
            out,
            "      validity     {} → {}",
            rfc3339(c.not_before),
            rfc3339(c.not_after)
        );
        let _ = writeln!(
            out,
            "      key          {} {} bits; signed {}",
            c.key_algorithm, c.key_bits, c.signature_algorithm
        );
        let _ = writeln!(out, "      CA           {}", c.is_ca);
        if !c.key_usage.is_empty() || !c.extended_key_usage.is_empty() {
            let _ = writeln!(
                out,
                "      usage        {}; {}",
                c.key_usage.join(", "),
                c.extended_key_usage.join(", ")
            );
        }
        let _ = writeln!(out, "      sha256       {}", c.fingerprint_sha256);
    }
    if let Some(k) = &f.key {
        let _ = writeln!(
            out,
            "  private key: {} {} bits ({:?} encoding){}",
            k.algorithm,
            k.bits,
            k.encoding,
            k.public_key_sha256
                .as_deref()
                .map(|d| format!("; public key sha256 {d}"))
                .unwrap_or_default()
        );
    }
    out
}
