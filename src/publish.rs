//! Atomic, kubelet-style publishing into the directory the workload reads:
//! a new `..<timestamp>` generation directory with files created at their final modes and
//! fsynced, `..data_tmp` pointed at it, renamed onto `..data` (the one commit point), stable
//! user-visible symlinks (`tls.crt -> ..data/tls.crt`), the previous generation kept for
//! swap-back, older ones removed. A small state file records what is live.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ids::{Fingerprint, GenerationName};
use crate::pipeline::load::{FileRole, SourcePaths, DATA_LINK};
use crate::pipeline::Approved;

/// Name of the state file kept in the publish directory.
pub const STATE_FILE: &str = ".certgate-state.json";
const DATA_TMP: &str = "..data_tmp";

/// What was published, persisted across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishState {
    /// The live generation directory name.
    pub generation: GenerationName,
    /// Its leaf fingerprint (unknown for a generation certgate did not record).
    pub fingerprint_sha256: Option<Fingerprint>,
    /// The generation before it, kept for swap-back.
    pub previous: Option<GenerationName>,
    /// The previous generation's leaf fingerprint.
    pub previous_fingerprint_sha256: Option<Fingerprint>,
}

/// Why publishing failed. Names the path.
#[derive(Debug, thiserror::Error)]
#[error("publish {}: {what}: {source}", path.display())]
pub struct PublishError {
    path: PathBuf,
    what: &'static str,
    source: io::Error,
}

impl PublishError {
    /// An error about `path`: `what` was being done when `source` happened. For
    /// [`Publish`] implementations outside this module.
    pub fn new(path: impl Into<PathBuf>, what: &'static str, source: io::Error) -> Self {
        Self {
            path: path.into(),
            what,
            source,
        }
    }
}

/// What the daemon needs of a publish directory. [`Publisher`] is the real one; the daemon's
/// tests use a fake, so its state machine runs without a filesystem to fail on cue.
/// Every method may block (fsync): the daemon calls them from blocking threads.
pub trait Publish: Clone + Send + Sync + 'static {
    /// Writes an approved candidate as a new generation and commits it; returns the new state.
    fn publish(&self, approved: &Approved) -> Result<PublishState, PublishError>;
    /// Points `..data` back at `state.previous`; returns the restored state.
    fn swap_back(&self, state: &PublishState) -> Result<PublishState, PublishError>;
    /// The generation `..data` points at now.
    fn current(&self) -> Option<GenerationName>;
    /// The persisted state, if readable.
    fn read_state(&self) -> Option<PublishState>;
    /// Paths the workload reads.
    fn published_paths(&self) -> SourcePaths;
}

impl Publish for Publisher {
    fn publish(&self, approved: &Approved) -> Result<PublishState, PublishError> {
        Publisher::publish(self, approved)
    }
    fn swap_back(&self, state: &PublishState) -> Result<PublishState, PublishError> {
        Publisher::swap_back(self, state)
    }
    fn current(&self) -> Option<GenerationName> {
        Publisher::current(self)
    }
    fn read_state(&self) -> Option<PublishState> {
        Publisher::read_state(self)
    }
    fn published_paths(&self) -> SourcePaths {
        Publisher::published_paths(self)
    }
}

fn err(path: &Path, what: &'static str) -> impl FnOnce(io::Error) -> PublishError {
    let path = path.to_path_buf();
    move |source| PublishError { path, what, source }
}

/// Writes generations into one publish directory.
#[derive(Debug, Clone)]
pub struct Publisher {
    dir: PathBuf,
    key_mode: u32,
    cert_name: String,
    key_name: Option<String>,
    trust_name: Option<String>,
}

fn base_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Publisher {
    /// A publisher using the source files' base names.
    pub fn new(dir: &Path, key_mode: u32, source: &SourcePaths) -> Self {
        Self {
            dir: dir.to_path_buf(),
            key_mode,
            cert_name: base_name(&source.cert),
            key_name: source.key.as_deref().map(base_name),
            trust_name: source.trust.as_deref().map(base_name),
        }
    }

    /// The publish directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Paths the workload reads (the user-visible symlinks).
    pub fn published_paths(&self) -> SourcePaths {
        SourcePaths {
            cert: self.dir.join(&self.cert_name),
            key: self.key_name.as_ref().map(|n| self.dir.join(n)),
            trust: self.trust_name.as_ref().map(|n| self.dir.join(n)),
        }
    }

    /// The generation `..data` points at now.
    pub fn current(&self) -> Option<GenerationName> {
        fs::read_link(self.dir.join(DATA_LINK))
            .ok()
            .map(|p| GenerationName::new(p.to_string_lossy()))
    }

    /// The persisted state, if readable.
    pub fn read_state(&self) -> Option<PublishState> {
        let bytes = fs::read(self.dir.join(STATE_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Publishes an approved candidate; returns the new state. Blocking (fsync): call from a
    /// blocking thread.
    pub fn publish(&self, approved: &Approved) -> Result<PublishState, PublishError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)
            .map_err(err(&self.dir, "create publish dir"))?;
        let material = approved.material();
        let name = generation_name();
        let gen = self.dir.join(&name);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&gen)
            .map_err(err(&gen, "create generation"))?;
        for file in material.raw.files() {
            let (fname, mode) = match file.role {
                FileRole::Cert => (Some(&self.cert_name), 0o644),
                FileRole::Key => (self.key_name.as_ref(), self.key_mode),
                FileRole::Trust => (self.trust_name.as_ref(), 0o644),
            };
            if let Some(fname) = fname {
                write_synced(&gen.join(fname), file.bytes(), mode)?;
            }
        }
        sync_dir(&gen)?;
        let fingerprint = approved.fingerprint().clone();
        let old = self.read_state();
        let previous = self.current();
        self.commit(&name)?;
        for fname in std::iter::once(&self.cert_name)
            .chain(self.key_name.as_ref())
            .chain(self.trust_name.as_ref())
        {
            let link = self.dir.join(fname);
            if fs::symlink_metadata(&link).is_err() {
                symlink(Path::new(DATA_LINK).join(fname), &link)
                    .map_err(err(&link, "create symlink"))?;
            }
        }
        let state = PublishState {
            generation: name.clone(),
            fingerprint_sha256: Some(fingerprint),
            previous_fingerprint_sha256: old
                .as_ref()
                .filter(|s| Some(&s.generation) == previous.as_ref())
                .and_then(|s| s.fingerprint_sha256.clone()),
            previous,
        };
        self.write_state(&state)?;
        self.remove_stale(&state);
        Ok(state)
    }

    /// Points `..data` back at the previous generation. Blocking.
    pub fn swap_back(&self, state: &PublishState) -> Result<PublishState, PublishError> {
        let previous = state.previous.clone().ok_or_else(|| PublishError {
            path: self.dir.clone(),
            what: "swap back",
            source: io::Error::new(io::ErrorKind::NotFound, "no previous generation"),
        })?;
        self.commit(&previous)?;
        let swapped = PublishState {
            generation: previous,
            fingerprint_sha256: state.previous_fingerprint_sha256.clone(),
            previous: None,
            previous_fingerprint_sha256: None,
        };
        self.write_state(&swapped)?;
        // The refused generation is no longer needed.
        let _ = fs::remove_dir_all(self.dir.join(&state.generation));
        Ok(swapped)
    }

    /// `..data_tmp -> name`, renamed onto `..data`, directory fsynced.
    fn commit(&self, name: &GenerationName) -> Result<(), PublishError> {
        let tmp = self.dir.join(DATA_TMP);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(&tmp, "remove stale ..data_tmp")(e)),
        }
        symlink(name, &tmp).map_err(err(&tmp, "create ..data_tmp"))?;
        fs::rename(&tmp, self.dir.join(DATA_LINK))
            .map_err(err(&self.dir, "rename ..data_tmp onto ..data"))?;
        sync_dir(&self.dir)
    }

    fn write_state(&self, state: &PublishState) -> Result<(), PublishError> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(state).unwrap_or_default();
        let _ = fs::remove_file(&tmp);
        // Advisory (`..data` is the truth on restart), so written atomically but not fsynced:
        // two fsyncs fewer on every rotation.
        fs::write(&tmp, &json).map_err(err(&tmp, "write state"))?;
        fs::rename(&tmp, &path).map_err(err(&path, "write state"))
    }

    /// Removes generation directories other than the live and previous ones.
    fn remove_stale(&self, state: &PublishState) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let keep = name == state.generation.as_str()
                || state.previous.as_ref().is_some_and(|p| p.as_str() == name);
            if is_generation_name(&name) && !keep {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

fn is_generation_name(name: &str) -> bool {
    name.starts_with("..") && name.as_bytes().get(2).is_some_and(u8::is_ascii_digit)
}

/// `..YYYY_MM_DD_HH_MM_SS.<nanos><seq>`, kubelet's shape; the sequence keeps names unique
/// even for writes within one clock tick.
pub(crate) fn generation_name() -> GenerationName {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let now = time::OffsetDateTime::now_utc();
    GenerationName::new(format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}{:04}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.nanosecond(),
        SEQ.fetch_add(1, Ordering::Relaxed) % 10_000
    ))
}

fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PublishError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err(path, "create file"))?;
    f.write_all(bytes).map_err(err(path, "write file"))?;
    // Modes are set at creation but the umask may have cleared bits (e.g. 0640 under 027 is
    // fine, under 077 it is not): set them explicitly.
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err(path, "chmod file"))?;
    f.sync_all().map_err(err(path, "fsync file"))
}

fn sync_dir(dir: &Path) -> Result<(), PublishError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err(dir, "fsync directory"))
}
