//! The validation pipeline shared by `check`, `inspect` and the daemon:
//! [`load`] → [`inspect`] → [`validate`] → [`handshake`]. Only an [`Approved`] candidate, which
//! only [`Evaluation::into_approved`] can build, may be published.

pub mod handshake;
pub mod inspect;
pub mod load;
pub mod validate;

use std::time::Duration;

use serde::Serialize;

use self::handshake::HandshakeReport;
use self::inspect::KeyInfo;
use self::load::{FileRole, LoadError, Material, SourcePaths};
use self::validate::{Check, Policy, Verdict};

/// How to run the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalOptions {
    /// Cap on any input file's size.
    pub max_file_size: u64,
    /// Whether to run the self-handshake.
    pub handshake: bool,
    /// Bound on the self-handshake.
    pub handshake_timeout: Duration,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            max_file_size: load::DEFAULT_MAX_FILE_SIZE,
            handshake: true,
            handshake_timeout: handshake::DEFAULT_TIMEOUT,
        }
    }
}

/// A file as read, for reports (no content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileSummary {
    /// cert, key or trust.
    pub role: FileRole,
    /// Configured path.
    pub path: String,
    /// The `..data` generation it was read through, if any.
    pub generation: Option<String>,
    /// SHA-256 of the content.
    pub sha256: String,
}

/// A failure reduced to what reports need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Stable label.
    pub reason: &'static str,
    /// One line for operators, naming the file or certificate.
    pub message: String,
}

/// Wall time of each stage, milliseconds: where a rotation's time goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTimings {
    /// Reading and decoding the files.
    pub load_ms: f64,
    /// Inspection and validation.
    pub validate_ms: f64,
    /// The loopback self-handshake (0 when skipped).
    pub handshake_ms: f64,
}

/// Everything the pipeline found about one candidate.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// Whether every stage passed.
    pub passed: bool,
    /// Files read (empty when loading failed).
    pub files: Vec<FileSummary>,
    /// Why loading failed, if it did.
    pub load_error: Option<Problem>,
    /// Validation results (absent when loading failed).
    pub verdict: Option<Verdict>,
    /// The private key's description (never its bytes).
    pub key: Option<KeyInfo>,
    /// Self-handshake details, when it ran and succeeded.
    pub handshake: Option<HandshakeReport>,
    /// Where the time went.
    pub timings: StageTimings,
    #[serde(skip)]
    material: Option<Material>,
}

impl Evaluation {
    /// The evaluation of material that could not be loaded.
    pub fn load_failed(e: &LoadError) -> Self {
        Self {
            passed: false,
            files: Vec::new(),
            load_error: Some(Problem {
                reason: e.reason(),
                message: e.to_string(),
            }),
            verdict: None,
            key: None,
            handshake: None,
            timings: StageTimings::default(),
            material: None,
        }
    }

    /// Every failure in order, loading first.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out: Vec<Problem> = self.load_error.iter().cloned().collect();
        if let Some(v) = &self.verdict {
            out.extend(v.failures().map(|c| Problem {
                reason: c.reason.unwrap_or("failed"),
                // Failure messages name what failed ("chain does not lead…", "leaf …
                // expired…"); the check's name in front would only repeat it.
                message: c.message.clone(),
            }));
        }
        out
    }

    /// The first failure's label, if any.
    pub fn first_reason(&self) -> Option<&'static str> {
        self.problems().first().map(|p| p.reason)
    }

    /// Content hashes of the files, for dedupe.
    pub fn content_key(&self) -> Vec<String> {
        self.files.iter().map(|f| f.sha256.clone()).collect()
    }

    /// The approved candidate, if everything passed; otherwise the evaluation back.
    pub fn into_approved(mut self) -> Result<Approved, Box<Self>> {
        if !self.passed {
            return Err(Box::new(self));
        }
        match self.material.take() {
            Some(material) => Ok(Approved {
                evaluation: self,
                material,
            }),
            None => Err(Box::new(self)),
        }
    }
}

/// A candidate that passed every stage. Only [`Evaluation::into_approved`] builds one.
#[derive(Debug, Clone)]
pub struct Approved {
    evaluation: Evaluation,
    material: Material,
}

impl Approved {
    /// The evaluation that approved it.
    pub fn evaluation(&self) -> &Evaluation {
        &self.evaluation
    }
    /// The approved material.
    pub fn material(&self) -> &Material {
        &self.material
    }
    /// The approved leaf.
    pub fn leaf(&self) -> Option<&inspect::CertInfo> {
        self.evaluation.verdict.as_ref().and_then(Verdict::leaf)
    }
}

/// Reads, validates and (optionally) proves one set at `now` (Unix seconds).
pub async fn evaluate(
    paths: &SourcePaths,
    policy: &Policy,
    opts: &EvalOptions,
    now: i64,
) -> Evaluation {
    let started = std::time::Instant::now();
    match load::read_set(paths, opts.max_file_size) {
        Ok(raw) => {
            let read_ms = started.elapsed().as_secs_f64() * 1000.0;
            evaluate_raw(raw, read_ms, policy, opts, now).await
        }
        Err(e) => {
            let mut eval = Evaluation::load_failed(&e);
            eval.timings.load_ms = started.elapsed().as_secs_f64() * 1000.0;
            eval
        }
    }
}

/// Decodes, validates and (optionally) proves files already read (`read_ms` is how long that
/// took, for the stage timings). The daemon reads first so it can dedupe on content hashes
/// before doing any of this work.
pub async fn evaluate_raw(
    raw: load::RawSet,
    read_ms: f64,
    policy: &Policy,
    opts: &EvalOptions,
    now: i64,
) -> Evaluation {
    let started = std::time::Instant::now();
    let files = summarize(&raw);
    let decoded = load::decode_set(raw);
    let load_ms = read_ms + started.elapsed().as_secs_f64() * 1000.0;
    let mut eval = match decoded {
        Ok(material) => evaluate_material(material, policy, opts, now).await,
        Err(e) => Evaluation {
            // The files were read: their hashes identify the refused content.
            files,
            ..Evaluation::load_failed(&e)
        },
    };
    eval.timings.load_ms = load_ms;
    eval
}

fn summarize(raw: &load::RawSet) -> Vec<FileSummary> {
    raw.files()
        .map(|f| FileSummary {
            role: f.role,
            path: f.path.display().to_string(),
            generation: f.generation.clone(),
            sha256: f.sha256.clone(),
        })
        .collect()
}

/// Validates and (optionally) proves material already loaded.
pub async fn evaluate_material(
    material: Material,
    policy: &Policy,
    opts: &EvalOptions,
    now: i64,
) -> Evaluation {
    let files = summarize(&material.raw);
    let started = std::time::Instant::now();
    let key = material.key.as_ref().map(inspect::inspect_key);
    let mut verdict = validate::validate(&material, policy, now);
    let validate_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut report = None;
    let check = if !opts.handshake {
        Check::skip("handshake", "disabled (--no-handshake)")
    } else if material.key.is_none() {
        Check::skip("handshake", "no key given")
    } else if !verdict.passed() {
        Check::skip("handshake", "skipped: validation failed")
    } else {
        match handshake::self_handshake(&material, policy, opts.handshake_timeout).await {
            Ok(r) => {
                let msg = format!(
                    "{} {} with {}{} in {:.1} ms",
                    r.protocol,
                    r.cipher_suite,
                    r.server_name,
                    if r.client_auth { " (mutual)" } else { "" },
                    r.duration_ms
                );
                report = Some(r);
                Check::pass("handshake", msg)
            }
            Err(f) => Check::fail("handshake", f),
        }
    };
    verdict.checks.push(check);
    Evaluation {
        passed: verdict.passed(),
        files,
        load_error: None,
        verdict: Some(verdict),
        key,
        timings: StageTimings {
            load_ms: 0.0,
            validate_ms,
            handshake_ms: report.as_ref().map_or(0.0, |r| r.duration_ms),
        },
        handshake: report,
        material: Some(material),
    }
}
