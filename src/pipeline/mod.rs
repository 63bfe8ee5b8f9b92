//! The validation pipeline shared by `check`, `inspect` and the daemon:
//! [`load`] → [`inspect`] → [`validate`] → [`handshake`]. Only an [`Approved`] candidate, which
//! only [`Evaluation::into_approved`] can build, may be published.

pub mod anchors;
pub mod handshake;
pub mod inspect;
pub mod load;
pub mod validate;
mod verifier;
mod x509_policy;

use std::time::Duration;

use serde::Serialize;

use self::handshake::HandshakeReport;
use self::inspect::KeyInfo;
use self::load::{FileRole, LoadError, Material, SourcePaths};
use self::validate::{Check, Policy, Verdict};
use crate::ids::Fingerprint;
use crate::labels::Reason;

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
    pub reason: Reason,
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

/// Everything the pipeline found about one candidate: either its files could not be loaded,
/// or it was judged. Only the pipeline builds either, so a verdict cannot be assigned from
/// outside; [`Evaluation::into_approved`] is the one way to a publishable [`Approved`].
#[derive(Debug, Clone)]
pub enum Evaluation {
    /// The files could not be read or decoded.
    LoadFailed(LoadFailed),
    /// The material decoded and was validated (and, if asked, proved).
    Evaluated(Box<Evaluated>),
}

/// Material that could not be loaded.
#[derive(Debug, Clone)]
pub struct LoadFailed {
    files: Vec<FileSummary>,
    problem: Problem,
    timings: StageTimings,
}

/// Material that was loaded and judged.
#[derive(Debug, Clone)]
pub struct Evaluated {
    files: Vec<FileSummary>,
    verdict: Verdict,
    key: Option<KeyInfo>,
    handshake: Option<HandshakeReport>,
    timings: StageTimings,
    material: Material,
}

impl Evaluated {
    /// Files read.
    pub fn files(&self) -> &[FileSummary] {
        &self.files
    }
    /// Validation results, the handshake's check last.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }
    /// The private key's description (never its bytes).
    pub fn key(&self) -> Option<&KeyInfo> {
        self.key.as_ref()
    }
    /// Self-handshake details, when it ran and succeeded.
    pub fn handshake(&self) -> Option<&HandshakeReport> {
        self.handshake.as_ref()
    }
    /// Where the time went.
    pub fn timings(&self) -> StageTimings {
        self.timings
    }
    /// The decoded material.
    pub fn material(&self) -> &Material {
        &self.material
    }
}

impl Evaluation {
    /// The evaluation of material that could not be loaded (`files`: what was read of it).
    pub fn load_failed(e: &LoadError) -> Self {
        Self::LoadFailed(LoadFailed {
            files: Vec::new(),
            problem: Problem {
                reason: e.reason(),
                message: e.to_string(),
            },
            timings: StageTimings::default(),
        })
    }

    /// Whether every stage passed.
    pub fn passed(&self) -> bool {
        match self {
            Self::LoadFailed(_) => false,
            Self::Evaluated(e) => e.verdict.passed(),
        }
    }

    /// Files read (empty when they could not be read at all).
    pub fn files(&self) -> &[FileSummary] {
        match self {
            Self::LoadFailed(l) => &l.files,
            Self::Evaluated(e) => &e.files,
        }
    }

    /// Why loading failed, if it did.
    pub fn load_error(&self) -> Option<&Problem> {
        match self {
            Self::LoadFailed(l) => Some(&l.problem),
            Self::Evaluated(_) => None,
        }
    }

    /// Validation results (absent when loading failed).
    pub fn verdict(&self) -> Option<&Verdict> {
        match self {
            Self::LoadFailed(_) => None,
            Self::Evaluated(e) => Some(&e.verdict),
        }
    }

    /// The private key's description, when it decoded.
    pub fn key(&self) -> Option<&KeyInfo> {
        match self {
            Self::LoadFailed(_) => None,
            Self::Evaluated(e) => e.key.as_ref(),
        }
    }

    /// Self-handshake details, when it ran and succeeded.
    pub fn handshake(&self) -> Option<&HandshakeReport> {
        match self {
            Self::LoadFailed(_) => None,
            Self::Evaluated(e) => e.handshake.as_ref(),
        }
    }

    /// Where the time went.
    pub fn timings(&self) -> StageTimings {
        match self {
            Self::LoadFailed(l) => l.timings,
            Self::Evaluated(e) => e.timings,
        }
    }

    fn timings_mut(&mut self) -> &mut StageTimings {
        match self {
            Self::LoadFailed(l) => &mut l.timings,
            Self::Evaluated(e) => &mut e.timings,
        }
    }

    /// The same evaluation with the read-and-decode time set (the daemon reads before it
    /// evaluates).
    pub fn with_load_ms(mut self, load_ms: f64) -> Self {
        self.timings_mut().load_ms = load_ms;
        self
    }

    /// Every failure in order, loading first.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            Self::LoadFailed(l) => vec![l.problem.clone()],
            Self::Evaluated(e) => e
                .verdict
                .failures()
                .filter_map(|c| {
                    Some(Problem {
                        reason: c.reason?,
                        // Failure messages name what failed ("chain does not lead…", "leaf …
                        // expired…"); the check's name in front would only repeat it.
                        message: c.message.clone(),
                    })
                })
                .collect(),
        }
    }

    /// The first failure's label, if any.
    pub fn first_reason(&self) -> Option<Reason> {
        match self {
            Self::LoadFailed(l) => Some(l.problem.reason),
            Self::Evaluated(e) => e.verdict.first_reason(),
        }
    }

    /// Content hashes of the files, for dedupe.
    pub fn content_key(&self) -> Vec<String> {
        self.files().iter().map(|f| f.sha256.clone()).collect()
    }

    /// The approved candidate, if everything passed; otherwise the evaluation back.
    pub fn into_approved(self) -> Result<Approved, Box<Self>> {
        let Self::Evaluated(e) = self else {
            return Err(Box::new(self));
        };
        let approvable = e.verdict.passed()
            && e.verdict.leaf().is_some()
            && e.verdict.effective_expiry().is_some();
        if !approvable {
            return Err(Box::new(Self::Evaluated(e)));
        }
        Ok(Approved { evaluation: e })
    }
}

// The `check --json` shape: one object with every field, absent parts as null.
impl Serialize for Evaluation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Doc<'a> {
            passed: bool,
            files: &'a [FileSummary],
            load_error: Option<&'a Problem>,
            verdict: Option<&'a Verdict>,
            key: Option<&'a KeyInfo>,
            handshake: Option<&'a HandshakeReport>,
            timings: StageTimings,
        }
        Doc {
            passed: self.passed(),
            files: self.files(),
            load_error: self.load_error(),
            verdict: self.verdict(),
            key: self.key(),
            handshake: self.handshake(),
            timings: self.timings(),
        }
        .serialize(serializer)
    }
}

/// A candidate that passed every stage, with what was approved: the leaf, the built chain, the
/// bundle's anchors and the effective expiry. Only [`Evaluation::into_approved`] builds one.
#[derive(Debug, Clone)]
pub struct Approved {
    evaluation: Box<Evaluated>,
}

impl Approved {
    /// The evaluation that approved it.
    pub fn evaluation(&self) -> &Evaluated {
        &self.evaluation
    }
    /// The approved material.
    pub fn material(&self) -> &Material {
        &self.evaluation.material
    }
    /// The files it was read from.
    pub fn files(&self) -> &[FileSummary] {
        &self.evaluation.files
    }
    /// The approved leaf.
    pub fn leaf(&self) -> &inspect::CertInfo {
        // into_approved checked it is there; the chain is never empty.
        &self.evaluation.verdict.chain()[0]
    }
    /// The approved leaf's fingerprint.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.leaf().fingerprint_sha256
    }
    /// The chain as built: leaf, intermediates used, anchor.
    pub fn chain(&self) -> &[inspect::CertInfo] {
        self.evaluation.verdict.chain()
    }
    /// The bundle's anchors.
    pub fn anchors(&self) -> &[inspect::CertInfo] {
        self.evaluation.verdict.anchors()
    }
    /// [`Approved::chain`], shared rather than copied.
    pub fn chain_shared(&self) -> std::sync::Arc<[inspect::CertInfo]> {
        self.evaluation.verdict.chain_shared()
    }
    /// [`Approved::anchors`], shared rather than copied.
    pub fn anchors_shared(&self) -> std::sync::Arc<[inspect::CertInfo]> {
        self.evaluation.verdict.anchors_shared()
    }
    /// What to keep of it while it is live, to publish it again, verify the workload against
    /// it and swap back to it: the same approval (material, files, chains, expiry) without
    /// what only its report reads — each check's detail, the handshake report — nor the
    /// bytes of the certificate and bundle files (see [`Material::kept`]). The key stays
    /// wiped on drop.
    pub fn kept(&self) -> Self {
        let e = &self.evaluation;
        Self {
            evaluation: Box::new(Evaluated {
                files: e.files.clone(),
                verdict: e.verdict.without_checks(),
                key: e.key.clone(),
                handshake: None,
                timings: e.timings,
                material: e.material.kept(),
            }),
        }
    }
    /// Earliest not-after along the built chain, Unix seconds.
    pub fn effective_expiry(&self) -> i64 {
        // into_approved checked it is there.
        self.evaluation
            .verdict
            .effective_expiry()
            .unwrap_or(i64::MIN)
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
            Evaluation::load_failed(&e).with_load_ms(started.elapsed().as_secs_f64() * 1000.0)
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
    let eval = match decoded {
        Ok(material) => evaluate_material(material, policy, opts, now).await,
        Err(e) => Evaluation::LoadFailed(LoadFailed {
            // The files were read: their hashes identify the refused content.
            files,
            problem: Problem {
                reason: e.reason(),
                message: e.to_string(),
            },
            timings: StageTimings::default(),
        }),
    };
    eval.with_load_ms(load_ms)
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
        match handshake::self_handshake(&material, policy, now, opts.handshake_timeout).await {
            Ok(r) => {
                let versions = r
                    .versions
                    .iter()
                    .map(|n| format!("{} {}", n.protocol, n.cipher_suite))
                    .collect::<Vec<_>>()
                    .join(", ");
                let msg = format!(
                    "{versions} with {}{} in {:.1} ms",
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
    verdict.push(check);
    Evaluation::Evaluated(Box::new(Evaluated {
        files,
        verdict,
        key,
        timings: StageTimings {
            load_ms: 0.0,
            validate_ms,
            handshake_ms: report.as_ref().map_or(0.0, |r| r.duration_ms),
        },
        handshake: report,
        material,
    }))
}
