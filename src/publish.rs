//! Atomic, kubelet-style publishing into the directory the workload reads:
//! a new `..<timestamp>` generation directory with files created at their final modes and
//! fsynced, `..data_tmp` pointed at it, renamed onto `..data` (the one commit point), stable
//! user-visible symlinks (`tls.crt -> ..data/tls.crt`), the previous generation kept for
//! swap-back, older ones removed. A small state file records what is live.
//!
//! Certificate files are written re-encoded from their decoded certificates (PEM
//! `CERTIFICATE` blocks only), so nothing else a source file carries — a private key in a
//! combined PEM, comments — reaches a world-readable file; the key goes only into the key
//! file, at `key_mode`, as one PEM block of its own form whatever the source encoding (a DER
//! key is what nginx and HAProxy refuse to load), unless `publish_format = "as_is"`. A write that fails before the commit leaves nothing behind; once
//! `..data` is renamed the rotation is published, and what fails after (links, state file) is
//! a warning. At most three generations exist at once (live, previous, one being written):
//! size the volume for three.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::bounded;
use crate::config::PublishFormat;
use crate::ids::{Fingerprint, GenerationName};
use crate::pipeline::load::{KeyEncoding, PrivateKey, SourcePaths, DATA_LINK};
use crate::pipeline::Approved;
use crate::state::FirstSeen;

/// Name of the state file kept in the publish directory.
pub const STATE_FILE: &str = ".certgate-state.json";
/// When this pod first went live with each anchor: survives a container restart.
pub const ANCHORS_FILE: &str = ".certgate-anchors.json";
const DATA_TMP: &str = "..data_tmp";
/// The lock file that keeps a second certgate off a publish directory.
pub const LOCK_FILE: &str = ".certgate.lock";
/// What a lock held by another process reports.
const LOCK_HELD: &str = "lock: another certgate publishes into this directory";
/// Largest state file read back (it is a few hundred bytes).
const STATE_FILE_MAX: u64 = 64 * 1024;

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
    /// Whether this is [`Publisher::lock`] finding the directory held by another process.
    pub fn held_by_another(&self) -> bool {
        self.what == LOCK_HELD
    }

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
    /// Writes an approved candidate as a new generation and commits it. `Err` means nothing
    /// was committed; after the commit the outcome is `Ok`, with what went wrong after it.
    fn publish(&self, approved: &Approved) -> Result<Published, PublishError>;
    /// Points `..data` back at `state.previous`; returns the restored state.
    fn swap_back(&self, state: &PublishState) -> Result<PublishState, PublishError>;
    /// The generation `..data` points at now.
    fn current(&self) -> Option<GenerationName>;
    /// The persisted state, if readable.
    fn read_state(&self) -> Option<PublishState>;
    /// Paths the workload reads.
    fn published_paths(&self) -> SourcePaths;
    /// The files of one generation, inside its directory; `None` for a name that is not a
    /// generation's.
    fn generation_paths(&self, generation: &GenerationName) -> Option<SourcePaths>;
    /// When each anchor was first seen live, as saved; empty when unreadable.
    fn load_first_seen(&self) -> Vec<FirstSeen>;
    /// Saves when each anchor was first seen live (advisory: atomic, not fsynced).
    fn save_first_seen(&self, seen: &[FirstSeen]) -> Result<(), PublishError>;
    /// Checks that the layout serves `live` (`..data` → its generation, which exists; every
    /// user-visible name a link into `..data`) and repairs what it can. Returns the repairs
    /// made; `Err` when the live generation itself is gone (publish it again).
    fn reconcile(&self, live: &GenerationName) -> Result<Vec<String>, PublishError>;
    /// Removes generation directories that are neither `live` nor `previous`, and a stale
    /// `..data_tmp`: what a crash mid-publish leaves. Returns how many it removed.
    fn sweep(&self, live: &GenerationName, previous: Option<&GenerationName>) -> usize;
}

/// A committed publish: the new state, and anything that failed after the commit.
#[derive(Debug)]
pub struct Published {
    /// What is live now.
    pub state: PublishState,
    /// Failures after the commit (a link, the state file): the workload has the new
    /// generation, but the directory needs attention.
    pub warnings: Vec<PublishError>,
}

impl Publish for Publisher {
    fn reconcile(&self, live: &GenerationName) -> Result<Vec<String>, PublishError> {
        Publisher::reconcile(self, live)
    }
    fn sweep(&self, live: &GenerationName, previous: Option<&GenerationName>) -> usize {
        Publisher::sweep(self, live, previous)
    }
    fn publish(&self, approved: &Approved) -> Result<Published, PublishError> {
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
    fn generation_paths(&self, generation: &GenerationName) -> Option<SourcePaths> {
        Publisher::generation_paths(self, generation)
    }
    fn load_first_seen(&self) -> Vec<FirstSeen> {
        bounded::read_regular(&self.dir.join(ANCHORS_FILE), STATE_FILE_MAX * 16)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }
    fn save_first_seen(&self, seen: &[FirstSeen]) -> Result<(), PublishError> {
        let json = serde_json::to_vec_pretty(seen).unwrap_or_default();
        self.write_atomically(ANCHORS_FILE, &json)
    }
}

fn err(path: &Path, what: &'static str) -> impl FnOnce(io::Error) -> PublishError {
    let path = path.to_path_buf();
    move |source| PublishError { path, what, source }
}

/// A publish directory held by this process; released when dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: fs::File,
}

/// Writes generations into one publish directory.
#[derive(Debug, Clone)]
pub struct Publisher {
    dir: PathBuf,
    key_mode: u32,
    format: PublishFormat,
    cert_name: OsString,
    key_name: Option<OsString>,
    trust_name: Option<OsString>,
}

/// A source file's name, as bytes: a non-UTF-8 name is published as it is, not mangled.
fn base_name(p: &Path) -> OsString {
    p.file_name().map(OsStr::to_os_string).unwrap_or_default()
}

/// PEM `CERTIFICATE` blocks of `certs`, 64 columns, LF: the form every TLS stack reads.
pub(crate) fn pem_certificates(certs: &[rustls_pki_types::CertificateDer<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for der in certs {
        pem_block(&mut out, "CERTIFICATE", der.as_ref());
    }
    out
}

/// The key as one PEM block of its own form (`PRIVATE KEY` for PKCS#8, `RSA PRIVATE KEY`,
/// `EC PRIVATE KEY`), in a buffer sized up front (no reallocation leaves a copy behind) and
/// wiped when dropped.
fn pem_key(key: &PrivateKey) -> Zeroizing<Vec<u8>> {
    let label = match key.encoding {
        KeyEncoding::Pkcs8 => "PRIVATE KEY",
        KeyEncoding::Pkcs1 => "RSA PRIVATE KEY",
        KeyEncoding::Sec1 => "EC PRIVATE KEY",
    };
    let der = key.der();
    let der = der.secret_der();
    let b64 = der.len().div_ceil(3) * 4;
    let mut out = Zeroizing::new(Vec::with_capacity(
        2 * (label.len() + 17) + b64 + b64.div_ceil(64),
    ));
    pem_block(&mut out, label, der);
    out
}

/// Appends one PEM block: 64 columns, LF.
fn pem_block(out: &mut Vec<u8>, label: &str, der: &[u8]) {
    out.extend_from_slice(b"-----BEGIN ");
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(b"-----\n");
    // 48 bytes of DER are one 64-column line.
    for chunk in der.chunks(48) {
        base64_into(out, chunk);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END ");
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(b"-----\n");
}

/// Appends standard base64 with padding of `data` to `out`.
fn base64_into(out: &mut Vec<u8>, data: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

impl Publisher {
    /// A publisher using the source files' base names.
    pub fn new(dir: &Path, key_mode: u32, source: &SourcePaths) -> Self {
        Self {
            dir: dir.to_path_buf(),
            key_mode,
            format: PublishFormat::default(),
            cert_name: base_name(&source.cert),
            key_name: source.key.as_deref().map(base_name),
            trust_name: source.trust.as_deref().map(base_name),
        }
    }

    /// Encodes published files as `format` (PEM by default).
    pub fn with_format(self, format: PublishFormat) -> Self {
        Self { format, ..self }
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

    /// The files of `generation`, inside its directory; `None` for a name that is not a
    /// generation's (a state file cannot point certgate outside the directory).
    pub fn generation_paths(&self, generation: &GenerationName) -> Option<SourcePaths> {
        if !is_generation_name(generation.as_str()) {
            return None;
        }
        let gen = self.dir.join(generation.as_str());
        Some(SourcePaths {
            cert: gen.join(&self.cert_name),
            key: self.key_name.as_ref().map(|n| gen.join(n)),
            trust: self.trust_name.as_ref().map(|n| gen.join(n)),
        })
    }

    /// The generation `..data` points at now.
    /// A `..data` pointing anywhere but at a generation directory of this one is not a
    /// generation certgate made.
    pub fn current(&self) -> Option<GenerationName> {
        fs::read_link(self.dir.join(DATA_LINK))
            .ok()
            .map(|p| GenerationName::new(p.to_string_lossy()))
            .filter(|g| is_generation_name(g.as_str()))
    }

    /// The persisted state, if readable: a regular file of at most 64 KiB (a FIFO or a link to
    /// a device there must not hang or grow a restart), naming only generation directories
    /// (a state file edited to `../x` must not make a swap back or its cleanup leave the
    /// directory).
    pub fn read_state(&self) -> Option<PublishState> {
        let bytes = bounded::read_regular(&self.dir.join(STATE_FILE), STATE_FILE_MAX).ok()?;
        let state: PublishState = serde_json::from_slice(&bytes).ok()?;
        let names_ok = is_generation_name(state.generation.as_str())
            && state
                .previous
                .as_ref()
                .map_or(true, |p| is_generation_name(p.as_str()));
        names_ok.then_some(state)
    }

    fn names(&self) -> impl Iterator<Item = &OsString> {
        let key = self.key_name.as_ref().filter(|k| **k != self.cert_name);
        std::iter::once(&self.cert_name)
            .chain(key)
            .chain(self.trust_name.as_ref())
    }

    /// Takes the publish directory for this process (creating it): a second certgate on the
    /// same directory — two sidecars, two sets spelled apart — would swap `..data` under the
    /// first. Held until the returned lock is dropped (or the process dies).
    pub fn lock(&self) -> Result<DirLock, PublishError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)
            .map_err(err(&self.dir, "create publish dir"))?;
        let path = self.dir.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(err(&path, "open lock file"))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            let what = if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                LOCK_HELD
            } else {
                "lock"
            };
            return Err(err(&path, what)(e));
        }
        Ok(DirLock { _file: file })
    }

    /// Publishes an approved candidate. Blocking (fsync): call from a blocking thread.
    pub fn publish(&self, approved: &Approved) -> Result<Published, PublishError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)
            .map_err(err(&self.dir, "create publish dir"))?;
        let name = generation_name();
        let gen = self.dir.join(&name);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&gen)
            .map_err(err(&gen, "create generation"))?;
        if let Err(e) = self.write_generation(&gen, approved) {
            // Nothing points at it: take it away so failed writes cannot fill the volume.
            let _ = fs::remove_dir_all(&gen);
            return Err(e);
        }
        let old = self.read_state();
        let previous = self.current();
        if let Err(e) = self.commit(&name) {
            let _ = fs::remove_dir_all(&gen);
            return Err(e);
        }
        // Committed: the workload reads the new generation from here on. What fails now is
        // reported with the publish, not instead of it.
        let mut warnings = Vec::new();
        if let Err(e) = self.ensure_links() {
            warnings.push(e);
        }
        let state = PublishState {
            generation: name,
            fingerprint_sha256: Some(approved.fingerprint().clone()),
            previous_fingerprint_sha256: old
                .as_ref()
                .filter(|s| Some(&s.generation) == previous.as_ref())
                .and_then(|s| s.fingerprint_sha256.clone()),
            previous,
        };
        if let Err(e) = self.write_state(&state) {
            warnings.push(e);
        }
        self.sweep(&state.generation, state.previous.as_ref());
        Ok(Published { state, warnings })
    }

    /// Writes the files of one generation: certificates re-encoded as PEM, the key as PEM
    /// (or as given, with `as_is`) at `key_mode`.
    fn write_generation(&self, gen: &Path, approved: &Approved) -> Result<(), PublishError> {
        let material = approved.material();
        let key = match (self.format, &material.key, &material.raw.key) {
            (PublishFormat::Pem, Some(key), _) => Some(pem_key(key)),
            (_, _, Some(raw)) => Some(Zeroizing::new(raw.bytes().to_vec())),
            _ => None,
        };
        // One source file holding chain and key (HAProxy style): as PEM, the chain then the
        // key, at key_mode (it is a key file); as_is, the file as it is.
        let combined = self.key_name.as_ref() == Some(&self.cert_name);
        if combined {
            if let (Some(name), Some(key)) = (&self.key_name, key) {
                let bytes = match self.format {
                    PublishFormat::Pem => {
                        let chain = pem_certificates(material.chain.as_slice());
                        let mut both = Zeroizing::new(Vec::with_capacity(chain.len() + key.len()));
                        both.extend_from_slice(&chain);
                        both.extend_from_slice(&key);
                        both
                    }
                    PublishFormat::AsIs => key,
                };
                write_synced(&gen.join(name), &bytes, self.key_mode)?;
            }
        } else {
            write_synced(
                &gen.join(&self.cert_name),
                &pem_certificates(material.chain.as_slice()),
                0o644,
            )?;
            if let (Some(name), Some(key)) = (&self.key_name, key) {
                write_synced(&gen.join(name), &key, self.key_mode)?;
            }
        }
        if let Some(name) = &self.trust_name {
            write_synced(&gen.join(name), &pem_certificates(&material.trust), 0o644)?;
        }
        sync_dir(gen)
    }

    /// Makes every user-visible name a link to `..data/<name>`. A missing one is created; a
    /// regular file or another link there (an init container that copied the Secret) is
    /// replaced atomically; a directory there cannot be, and is an error naming it. Returns
    /// what it changed.
    fn ensure_links(&self) -> Result<Vec<String>, PublishError> {
        let mut repairs = Vec::new();
        for fname in self.names() {
            let link = self.dir.join(fname);
            let want = Path::new(DATA_LINK).join(fname);
            match fs::symlink_metadata(&link) {
                Ok(m) if m.file_type().is_symlink() => {
                    if fs::read_link(&link).is_ok_and(|t| t == want) {
                        continue;
                    }
                }
                Ok(m) if m.is_dir() => {
                    return Err(PublishError::new(
                        link,
                        "replace stray entry",
                        io::Error::other("a directory is in the way of the published link"),
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    symlink(&want, &link).map_err(err(&link, "create symlink"))?;
                    repairs.push(format!("created link {}", link.display()));
                    continue;
                }
                Err(e) => return Err(err(&link, "inspect published link")(e)),
            }
            // A stray file or link: a new link beside it, renamed over it.
            let mut tmp_name = OsString::from("..tmp-");
            tmp_name.push(fname);
            let tmp = self.dir.join(tmp_name);
            let _ = fs::remove_file(&tmp);
            symlink(&want, &tmp).map_err(err(&tmp, "create symlink"))?;
            fs::rename(&tmp, &link).map_err(err(&link, "replace stray entry"))?;
            repairs.push(format!(
                "replaced stray {} with a link into ..data",
                link.display()
            ));
        }
        if !repairs.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(repairs)
    }

    /// See [`Publish::reconcile`]. Blocking.
    pub fn reconcile(&self, live: &GenerationName) -> Result<Vec<String>, PublishError> {
        let gen = self.dir.join(live);
        if !gen.is_dir() {
            return Err(PublishError::new(
                gen,
                "check live generation",
                io::ErrorKind::NotFound.into(),
            ));
        }
        let mut repairs = Vec::new();
        if self.current().as_ref() != Some(live) {
            self.commit(live)?;
            repairs.push(format!("pointed ..data back at {live}"));
        }
        repairs.extend(self.ensure_links()?);
        Ok(repairs)
    }

    /// See [`Publish::sweep`]. Blocking.
    pub fn sweep(&self, live: &GenerationName, previous: Option<&GenerationName>) -> usize {
        let _ = fs::remove_file(self.dir.join(DATA_TMP));
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let keep = name == live.as_str() || previous.is_some_and(|p| p.as_str() == name);
            if is_generation_name(name) && !keep && fs::remove_dir_all(e.path()).is_ok() {
                removed += 1;
            }
        }
        removed
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
        // Advisory: `..data` is what the workload and a restart go by.
        if let Err(e) = self.write_state(&swapped) {
            tracing::warn!("{e}");
        }
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
        let json = serde_json::to_vec_pretty(state).unwrap_or_default();
        self.write_atomically(STATE_FILE, &json)
    }

    /// Advisory files (`..data` is the truth on restart): written atomically but not fsynced,
    /// two fsyncs fewer on every rotation.
    fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), PublishError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        if let Err(e) = fs::write(&tmp, bytes) {
            let _ = fs::remove_file(&tmp);
            return Err(err(&tmp, "write state")(e));
        }
        fs::rename(&tmp, &path).map_err(err(&path, "write state"))
    }
}

/// `..` then a digit, then only digits, `_` and `.`: the names [`generation_name`] makes. No
/// `/`, so a name read back from the state file or `..data` cannot lead out of the directory.
fn is_generation_name(name: &str) -> bool {
    name.strip_prefix("..").is_some_and(|rest| {
        rest.as_bytes().first().is_some_and(u8::is_ascii_digit)
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'_' || b == b'.')
    })
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use certgate_testkit::pki::{Alg, Ca, LeafSpec};

    use super::*;
    use crate::pipeline::validate::Policy;
    use crate::pipeline::{self, EvalOptions};

    /// Source files in `dir/src` (the cert file holding `extra` after the chain), approved.
    fn approved(dir: &Path, extra: &str) -> (Approved, SourcePaths) {
        let paths = write_source(dir, extra);
        (approve(&paths), paths)
    }

    /// Writes source files into `dir/src`: the cert file holds `extra` after the chain.
    fn write_source(dir: &Path, extra: &str) -> SourcePaths {
        let ca = Ca::root("publish test root", Alg::P256);
        let leaf = ca.leaf(&LeafSpec::new("localhost"));
        let src = dir.join("src");
        fs::create_dir_all(&src).unwrap();
        let paths = SourcePaths {
            cert: src.join("tls.crt"),
            key: Some(src.join("tls.key")),
            trust: Some(src.join("ca.crt")),
        };
        fs::write(&paths.cert, format!("{}{extra}", leaf.cert_pem)).unwrap();
        fs::write(paths.key.as_ref().unwrap(), leaf.key.pkcs8_pem()).unwrap();
        fs::write(paths.trust.as_ref().unwrap(), &ca.cert_pem).unwrap();
        paths
    }

    /// The source at `paths`, approved (no self-handshake).
    fn approve(paths: &SourcePaths) -> Approved {
        let opts = EvalOptions {
            handshake: false,
            ..EvalOptions::default()
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let eval = rt.block_on(pipeline::evaluate(paths, &Policy::default(), &opts, now));
        eval.into_approved()
            .unwrap_or_else(|e| panic!("{:?}", e.problems()))
    }

    fn publisher(dir: &Path, paths: &SourcePaths) -> Publisher {
        Publisher::new(&dir.join("out"), 0o600, paths)
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn generations(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| is_generation_name(n))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_key_inside_the_certificate_file_is_not_published_with_it() {
        let tmp = tempfile::tempdir().unwrap();
        let key_pem = Ca::root("other", Alg::P256).key.pkcs8_pem();
        let (approved, paths) = approved(tmp.path(), &key_pem);
        // The control: the source certificate file does carry a private key.
        assert!(fs::read_to_string(&paths.cert)
            .unwrap()
            .contains("PRIVATE KEY"));
        let p = publisher(tmp.path(), &paths);
        let published = p.publish(&approved).unwrap();
        assert!(published.warnings.is_empty(), "{:?}", published.warnings);
        let out = p.published_paths();
        let cert = fs::read_to_string(&out.cert).unwrap();
        assert!(!cert.contains("PRIVATE KEY"), "{cert}");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert_eq!(mode(&out.cert), 0o644);
        let key = out.key.unwrap();
        assert!(fs::read_to_string(&key).unwrap().contains("PRIVATE KEY"));
        assert_eq!(mode(&key), 0o600);
        // The bundle is re-encoded the same way, byte for byte what a PEM writer gives.
        assert_eq!(
            fs::read(out.trust.unwrap()).unwrap(),
            fs::read(paths.trust.unwrap()).unwrap()
        );
    }

    #[test]
    fn a_write_that_fails_before_the_commit_leaves_no_generation() {
        let tmp = tempfile::tempdir().unwrap();
        let (approved, paths) = approved(tmp.path(), "");
        let good = publisher(tmp.path(), &paths);
        let first = good.publish(&approved).unwrap().state;
        // A key name the filesystem refuses (longer than NAME_MAX): the cert is written, the
        // key is not.
        let broken = Publisher::new(
            good.dir(),
            0o600,
            &SourcePaths {
                key: Some(tmp.path().join("k".repeat(300))),
                ..paths.clone()
            },
        );
        let e = broken.publish(&approved).unwrap_err().to_string();
        assert!(e.contains("create file"), "{e}");
        assert_eq!(generations(good.dir()), vec![first.generation.to_string()]);
        assert_eq!(good.current(), Some(first.generation));
    }

    #[test]
    fn after_the_commit_a_failing_state_file_is_a_warning() {
        let tmp = tempfile::tempdir().unwrap();
        let (approved, paths) = approved(tmp.path(), "");
        let p = publisher(tmp.path(), &paths);
        let first = p.publish(&approved).unwrap();
        assert!(first.warnings.is_empty(), "the control publishes cleanly");
        // Something in the way of the state file's temporary name.
        fs::create_dir(p.dir().join(format!("{STATE_FILE}.tmp"))).unwrap();
        let second = p.publish(&approved).unwrap();
        assert_eq!(p.current(), Some(second.state.generation.clone()));
        assert_eq!(second.warnings.len(), 1);
        assert!(second.warnings[0].to_string().contains("write state"));
    }

    #[test]
    fn stray_entries_at_published_names_are_replaced_or_named() {
        let tmp = tempfile::tempdir().unwrap();
        let (approved, paths) = approved(tmp.path(), "");
        let p = publisher(tmp.path(), &paths);
        let out = p.published_paths();
        // An init container copied the Secret here before certgate: plain files.
        fs::create_dir_all(p.dir()).unwrap();
        fs::write(&out.cert, "old copy").unwrap();
        fs::write(out.key.as_ref().unwrap(), "old key").unwrap();
        let published = p.publish(&approved).unwrap();
        assert!(published.warnings.is_empty(), "{:?}", published.warnings);
        for f in [&out.cert, out.key.as_ref().unwrap()] {
            let target = fs::read_link(f).expect("a link now");
            assert!(target.starts_with(DATA_LINK), "{target:?}");
        }
        assert!(fs::read_to_string(&out.cert)
            .unwrap()
            .contains("CERTIFICATE"));

        // Later someone replaces a link with a file and re-points ..data: reconcile repairs.
        let live = published.state.generation;
        fs::remove_file(&out.cert).unwrap();
        fs::write(&out.cert, "tampered").unwrap();
        let bogus = GenerationName::new("..bogus");
        fs::create_dir(p.dir().join(&bogus)).unwrap();
        p.commit(&bogus).unwrap();
        let repairs = p.reconcile(&live).unwrap();
        assert_eq!(repairs.len(), 2, "{repairs:?}");
        assert_eq!(p.current(), Some(live.clone()));
        assert!(fs::read_to_string(&out.cert)
            .unwrap()
            .contains("CERTIFICATE"));
        assert!(
            p.reconcile(&live).unwrap().is_empty(),
            "nothing left to repair"
        );

        // A directory in the way cannot be replaced atomically: named, not ignored.
        fs::remove_file(&out.cert).unwrap();
        fs::create_dir(&out.cert).unwrap();
        let e = p.reconcile(&live).unwrap_err().to_string();
        assert!(e.contains("directory is in the way"), "{e}");

        // The live generation gone: reconcile says so (the daemon publishes again).
        fs::remove_dir(&out.cert).unwrap();
        fs::remove_dir_all(p.dir().join(&live)).unwrap();
        assert!(p.reconcile(&live).is_err());
    }

    #[test]
    fn sweep_keeps_only_live_and_previous() {
        let tmp = tempfile::tempdir().unwrap();
        let (approved, paths) = approved(tmp.path(), "");
        let p = publisher(tmp.path(), &paths);
        let a = p.publish(&approved).unwrap().state;
        let b = p.publish(&approved).unwrap().state;
        // What a crash mid-publish leaves: a half-written generation and ..data_tmp.
        fs::create_dir(p.dir().join("..2020_01_01_00_00_00.0000000001")).unwrap();
        symlink("..nowhere", p.dir().join(DATA_TMP)).unwrap();
        assert_eq!(generations(p.dir()).len(), 3);
        assert_eq!(p.sweep(&b.generation, b.previous.as_ref()), 1);
        let mut want = vec![a.generation.to_string(), b.generation.to_string()];
        want.sort();
        assert_eq!(generations(p.dir()), want);
        assert!(fs::symlink_metadata(p.dir().join(DATA_TMP)).is_err());
    }

    #[test]
    fn a_second_certgate_cannot_take_the_same_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, paths) = approved(tmp.path(), "");
        let p = publisher(tmp.path(), &paths);
        let held = p.lock().unwrap();
        // flock locks belong to the open file: a second open in this process contends as a
        // second process would.
        let e = p.lock().unwrap_err().to_string();
        assert!(e.contains("another certgate"), "{e}");
        drop(held);
        p.lock().expect("free again once released");
    }

    #[test]
    fn non_utf8_source_names_are_published_as_the_same_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let tmp = tempfile::tempdir().unwrap();
        let (approved, paths) = approved(tmp.path(), "");
        let src = paths.cert.parent().unwrap().to_path_buf();
        let name = OsStr::from_bytes(b"tls-\xff.crt");
        fs::rename(&paths.cert, src.join(name)).unwrap();
        let odd = SourcePaths {
            cert: src.join(name),
            ..paths
        };
        let p = publisher(tmp.path(), &odd);
        p.publish(&approved).unwrap();
        let link = p.dir().join(name);
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(fs::read_to_string(&link).unwrap().contains("CERTIFICATE"));
        // Lossy conversion would have written U+FFFD instead.
        assert!(!p.dir().join("tls-\u{fffd}.crt").exists());
    }

    #[test]
    fn base64_matches_the_standard() {
        let b64 = |d: &[u8]| {
            let mut out = Vec::new();
            base64_into(&mut out, d);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn generation_paths_stay_inside_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (approved, paths) = approved(tmp.path(), "");
        let p = publisher(tmp.path(), &paths);
        let state = p.publish(&approved).unwrap().state;
        let inside = p.generation_paths(&state.generation).unwrap();
        assert_eq!(inside.cert.parent().unwrap().parent().unwrap(), p.dir());
        assert!(inside.cert.exists());
        for bad in ["../etc", "..data", "tls.crt", "..2026_x/../../x"] {
            assert!(
                p.generation_paths(&GenerationName::new(bad)).is_none(),
                "{bad}"
            );
        }
        // A state file naming a way out is not read back (swap back and its cleanup go by it).
        assert!(p.read_state().is_some());
        let mut forged = state.clone();
        forged.previous = Some(GenerationName::new("..1/../../victim"));
        fs::write(
            p.dir().join(STATE_FILE),
            serde_json::to_vec(&forged).unwrap(),
        )
        .unwrap();
        assert!(p.read_state().is_none());
    }

    /// A DER key is published as the PEM block of its form (what nginx and HAProxy load), at
    /// key_mode; `as_is` keeps the source bytes.
    #[test]
    fn der_keys_are_published_as_pem_unless_as_is() {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::PrivateKeyDer;
        for format in [PublishFormat::Pem, PublishFormat::AsIs] {
            let tmp = tempfile::tempdir().unwrap();
            let paths = write_source(tmp.path(), "");
            let key_path = paths.key.clone().unwrap();
            let pem = fs::read(&key_path).unwrap();
            let der = PrivateKeyDer::from_pem_slice(&pem).unwrap();
            fs::write(&key_path, der.secret_der()).unwrap();
            let approved = approve(&paths);
            let p = publisher(tmp.path(), &paths).with_format(format);
            p.publish(&approved).unwrap();
            let published = fs::read(tmp.path().join("out/tls.key")).unwrap();
            match format {
                PublishFormat::Pem => {
                    assert!(published.starts_with(b"-----BEGIN PRIVATE KEY-----\n"));
                    let back = PrivateKeyDer::from_pem_slice(&published).unwrap();
                    assert_eq!(back.secret_der(), der.secret_der());
                }
                PublishFormat::AsIs => assert_eq!(published, der.secret_der()),
            }
            assert_eq!(mode(&tmp.path().join("out/tls.key")), 0o600);
        }
    }
}
