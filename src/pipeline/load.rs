//! Stage 1: read a set's cert, key and trust-bundle files and decode them into DER.
//!
//! Reading is bounded (at most `max_file_size + 1` bytes of any file, never a FIFO or a device)
//! and generation-consistent: when a file sits in a Kubernetes atomic-writer volume (a `..data`
//! symlink beside it), every file of that directory is read through the one generation `..data`
//! named when we started, and `..data` is checked again afterwards, so cert, key and bundle never
//! come from two rotations.
//!
//! Key material is kept only in buffers wiped when dropped ([`Zeroizing`]): the bytes of every
//! file as read, the decoded key's DER and the PEM sections of a key file. What this cannot
//! reach: copies made by the PEM decoder while it grows its buffer, the signing key ring builds
//! from the DER (ring does not wipe it), and any copy a caller makes with
//! [`PrivateKeyDer::clone_key`]; the self-handshake therefore builds its signer from a borrow.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use zeroize::Zeroizing;

use crate::bounded::{self, ReadError};
use crate::hex;
use crate::labels::Reason;

/// Name of the symlink kubelet's AtomicWriter swaps to commit a generation.
pub const DATA_LINK: &str = "..data";

/// How many times a read is retried when `..data` moves under it.
const GENERATION_RETRIES: usize = 5;

/// Default cap on the size of any one input file.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1024 * 1024;

/// Which input a file is; used in messages and `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileRole {
    /// The certificate chain, leaf first.
    Cert,
    /// The private key of the leaf.
    Key,
    /// The trust bundle (CA certificates).
    Trust,
}

impl fmt::Display for FileRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cert => "cert",
            Self::Key => "key",
            Self::Trust => "trust bundle",
        })
    }
}

/// The paths of one cert set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePaths {
    /// Certificate chain file (PEM or DER), leaf first.
    pub cert: PathBuf,
    /// Private key file; without it the key check and self-handshake are skipped.
    pub key: Option<PathBuf>,
    /// Trust bundle file; without it the chain check fails.
    pub trust: Option<PathBuf>,
}

impl SourcePaths {
    /// Every configured path with its role.
    pub fn iter(&self) -> impl Iterator<Item = (FileRole, &Path)> {
        std::iter::once((FileRole::Cert, self.cert.as_path()))
            .chain(self.key.as_deref().map(|p| (FileRole::Key, p)))
            .chain(self.trust.as_deref().map(|p| (FileRole::Trust, p)))
    }
}

/// Why a file could not be loaded. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file does not exist (yet).
    #[error("{role} {}: file not found", path.display())]
    Missing {
        /// Which input the file is.
        role: FileRole,
        /// The file, as configured.
        path: PathBuf,
    },
    /// The file could not be opened or read.
    #[error("{role} {}: cannot read: {source}", path.display())]
    Io {
        /// Which input the file is.
        role: FileRole,
        /// The file, as configured.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The path is a directory, FIFO, socket or device.
    #[error("{role} {}: not a regular file ({kind})", path.display())]
    NotRegularFile {
        /// Which input the file is.
        role: FileRole,
        /// The file, as configured.
        path: PathBuf,
        /// What the path is instead of a regular file.
        kind: &'static str,
    },
    /// The file is bigger than the configured cap.
    #[error("{role} {}: larger than the {cap}-byte limit", path.display())]
    TooLarge {
        /// Which input the file is.
        role: FileRole,
        /// The file, as configured.
        path: PathBuf,
        /// The limit, bytes.
        cap: u64,
    },
    /// The file is empty (or only whitespace).
    #[error("{role} {}: file is empty", path.display())]
    Empty {
        /// Which input the file is.
        role: FileRole,
        /// The file, as configured.
        path: PathBuf,
    },
    /// PEM framing or base64 is broken, or a DER blob does not parse.
    #[error("{role} {}: malformed: {detail}", path.display())]
    Malformed {
        /// Which input the file is.
        role: FileRole,
        /// The file, as configured.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// A cert or bundle file holds no certificate.
    #[error("{role} {}: no certificate found{}", path.display(),
        if *found_key { " (it holds a private key: cert and key swapped?)" } else { "" })]
    NoCertificate {
        /// Which input the file is.
        role: FileRole,
        /// The file, as configured.
        path: PathBuf,
        /// Whether the file holds a private key instead.
        found_key: bool,
    },
    /// The key file holds no private key.
    #[error("key {}: no private key found{}", path.display(),
        if *found_cert { " (it holds a certificate: cert and key swapped?)" } else { "" })]
    NoKey {
        /// The file, as configured.
        path: PathBuf,
        /// Whether the file holds a certificate instead.
        found_cert: bool,
    },
    /// The key file holds more than one key.
    #[error("key {}: {count} private keys found, expected exactly one", path.display())]
    SeveralKeys {
        /// The file, as configured.
        path: PathBuf,
        /// How many keys it holds.
        count: usize,
    },
    /// The key is encrypted with a passphrase.
    #[error("key {}: encrypted private keys are not supported", path.display())]
    EncryptedKey {
        /// The file, as configured.
        path: PathBuf,
    },
    /// `..data` kept moving while we read.
    #[error("{}: ..data changed during {GENERATION_RETRIES} consecutive reads; rotation still in progress", dir.display())]
    GenerationUnstable {
        /// The volume directory.
        dir: PathBuf,
    },
}

impl LoadError {
    /// Stable label for metrics and `/status`.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Missing { .. } => Reason::Missing,
            Self::Io { .. } | Self::NotRegularFile { .. } => Reason::Unreadable,
            Self::TooLarge { .. } => Reason::TooLarge,
            Self::Empty { .. } => Reason::Empty,
            Self::Malformed { .. } => Reason::BadEncoding,
            Self::NoCertificate {
                found_key: true, ..
            }
            | Self::NoKey {
                found_cert: true, ..
            } => Reason::Swapped,
            Self::NoCertificate { .. } => Reason::NoCertificate,
            Self::NoKey { .. } => Reason::NoKey,
            Self::SeveralKeys { .. } => Reason::SeveralKeys,
            Self::EncryptedKey { .. } => Reason::EncryptedKey,
            Self::GenerationUnstable { .. } => Reason::GenerationUnstable,
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Missing { path, .. }
            | Self::Io { path, .. }
            | Self::NotRegularFile { path, .. }
            | Self::TooLarge { path, .. }
            | Self::Empty { path, .. }
            | Self::Malformed { path, .. }
            | Self::NoCertificate { path, .. }
            | Self::NoKey { path, .. }
            | Self::SeveralKeys { path, .. }
            | Self::EncryptedKey { path } => path,
            Self::GenerationUnstable { dir } => dir,
        }
    }
}

/// One file as read: where from, which generation, its hash and (private) bytes.
#[derive(Clone)]
pub struct FileSnapshot {
    /// What the file is.
    pub role: FileRole,
    /// The configured path.
    pub path: PathBuf,
    /// The `..data` generation directory it was read through, if any.
    pub generation: Option<String>,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    // Wiped on drop: for the key file these are the secret.
    bytes: Zeroizing<Vec<u8>>,
}

impl FileSnapshot {
    /// The same content, read as another role (e.g. a file passed to `inspect`).
    pub fn with_role(self, role: FileRole) -> Self {
        Self { role, ..self }
    }

    /// Content certgate made itself (a bundle with anchors kept by the fleet gate), as if read
    /// from `path`.
    pub fn made(role: FileRole, path: &Path, bytes: Vec<u8>) -> Self {
        Self {
            role,
            path: path.to_path_buf(),
            generation: None,
            sha256: hex(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()),
            bytes: Zeroizing::new(bytes),
        }
    }

    /// The raw content. For the key file these are secret bytes: never log them.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The same file without its content: role, path, generation and hash only.
    fn without_bytes(&self) -> Self {
        Self {
            role: self.role,
            path: self.path.clone(),
            generation: self.generation.clone(),
            sha256: self.sha256.clone(),
            bytes: Zeroizing::new(Vec::new()),
        }
    }
}

// Written by hand so key bytes can never reach a log through `{:?}`.
impl fmt::Debug for FileSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSnapshot")
            .field("role", &self.role)
            .field("path", &self.path)
            .field("generation", &self.generation)
            .field("sha256", &self.sha256)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// The files of one set, read from a single generation.
#[derive(Debug, Clone)]
pub struct RawSet {
    /// Certificate chain file.
    pub cert: FileSnapshot,
    /// Private key file, when configured.
    pub key: Option<FileSnapshot>,
    /// Trust bundle file, when configured.
    pub trust: Option<FileSnapshot>,
}

impl RawSet {
    /// Every snapshot, cert first.
    pub fn files(&self) -> impl Iterator<Item = &FileSnapshot> {
        std::iter::once(&self.cert)
            .chain(self.key.as_ref())
            .chain(self.trust.as_ref())
    }
}

/// Reads a set's files, generation-consistently.
pub fn read_set(paths: &SourcePaths, max_file_size: u64) -> Result<RawSet, LoadError> {
    read_set_observed(paths, max_file_size, &mut |_| {})
}

/// [`read_set`] with a hook called after each file is read; tests use it to swap `..data`
/// between reads.
#[doc(hidden)]
pub fn read_set_observed(
    paths: &SourcePaths,
    max_file_size: u64,
    after_each_read: &mut dyn FnMut(FileRole),
) -> Result<RawSet, LoadError> {
    let mut last_moved_dir = None;
    for _ in 0..GENERATION_RETRIES {
        match read_once(paths, max_file_size, after_each_read)? {
            Attempt::Consistent(set) => return Ok(*set),
            Attempt::Moved(dir) => last_moved_dir = Some(dir),
        }
    }
    Err(LoadError::GenerationUnstable {
        dir: last_moved_dir.unwrap_or_default(),
    })
}

enum Attempt {
    Consistent(Box<RawSet>),
    Moved(PathBuf),
}

fn read_once(
    paths: &SourcePaths,
    cap: u64,
    after_each_read: &mut dyn FnMut(FileRole),
) -> Result<Attempt, LoadError> {
    // Pin every atomic-writer directory's generation once, up front.
    let mut pinned: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    let mut snapshots = Vec::with_capacity(3);
    for (role, path) in paths.iter() {
        let dir = volume_dir(path);
        let generation = match pinned.iter().find(|(d, _)| *d == dir) {
            Some((_, generation)) => generation.clone(),
            None => {
                let generation = fs::read_link(dir.join(DATA_LINK)).ok();
                pinned.push((dir.clone(), generation.clone()));
                generation
            }
        };
        let read_from = generation
            .as_deref()
            .and_then(|generation| through_generation(path, &dir, generation))
            .unwrap_or_else(|| path.to_path_buf());
        let bytes = match read_capped(role, path, &read_from, cap) {
            Ok(bytes) => bytes,
            // The generation we pinned may have been removed by a newer rotation.
            Err(_) if read_from != path && generation_moved(&dir, generation.as_deref()) => {
                return Ok(Attempt::Moved(dir));
            }
            Err(e) => return Err(e),
        };
        after_each_read(role);
        snapshots.push(FileSnapshot {
            role,
            path: path.to_path_buf(),
            generation: generation
                .as_deref()
                .filter(|_| read_from != path)
                .map(|g| g.display().to_string()),
            sha256: hex(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()),
            bytes: Zeroizing::new(bytes),
        });
    }
    for (dir, generation) in &pinned {
        if generation.is_some() && generation_moved(dir, generation.as_deref()) {
            return Ok(Attempt::Moved(dir.clone()));
        }
    }
    let mut it = snapshots.into_iter();
    let mut take = |role| it.next().filter(|s: &FileSnapshot| s.role == role);
    let cert = take(FileRole::Cert).ok_or_else(|| LoadError::Missing {
        role: FileRole::Cert,
        path: paths.cert.clone(),
    })?;
    let key = paths.key.as_ref().and_then(|_| take(FileRole::Key));
    let trust = paths.trust.as_ref().and_then(|_| take(FileRole::Trust));
    Ok(Attempt::Consistent(Box::new(RawSet { cert, key, trust })))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The directory whose `..data` pins `path`: its parent, or for a path through `..data` itself
/// (`/vol/..data/tls.crt`), the volume it belongs to.
fn volume_dir(path: &Path) -> PathBuf {
    let dir = parent_dir(path);
    if is_data_link(&dir) {
        parent_dir(&dir)
    } else {
        dir
    }
}

fn is_data_link(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == DATA_LINK)
}

/// For `dir/tls.crt -> ..data/tls.crt`, or `dir/..data/tls.crt` itself, the path of the same
/// file inside the pinned generation. The rest of a link after `..data` is appended as written,
/// so a link to `..data` itself names the generation (no `/` added) and a trailing `/` is kept,
/// exactly as the kernel resolves them.
fn through_generation(path: &Path, dir: &Path, generation: &Path) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let rest: Vec<u8> = match fs::read_link(path) {
        Ok(target) => {
            let rest = target
                .as_os_str()
                .as_bytes()
                .strip_prefix(DATA_LINK.as_bytes())?;
            if !(rest.is_empty() || rest.starts_with(b"/")) {
                return None;
            }
            rest.to_vec()
        }
        Err(_) if path.parent().is_some_and(is_data_link) => {
            let mut rest = b"/".to_vec();
            rest.extend_from_slice(path.file_name()?.as_bytes());
            rest
        }
        Err(_) => return None,
    };
    let mut through = dir.join(generation).into_os_string();
    through.push(std::ffi::OsStr::from_bytes(&rest));
    Some(PathBuf::from(through))
}

fn generation_moved(dir: &Path, pinned: Option<&Path>) -> bool {
    fs::read_link(dir.join(DATA_LINK)).ok().as_deref() != pinned
}

/// Reads one file directly (no generation pinning), for `inspect`.
pub fn snapshot(role: FileRole, path: &Path, cap: u64) -> Result<FileSnapshot, LoadError> {
    let bytes = read_capped(role, path, path, cap)?;
    Ok(FileSnapshot {
        role,
        path: path.to_path_buf(),
        generation: None,
        sha256: hex(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()),
        bytes: Zeroizing::new(bytes),
    })
}

/// Reads at most `cap + 1` bytes, refusing anything that is not a regular file. The file is
/// opened non-blocking so a FIFO can never hang the caller.
pub fn read_capped(
    role: FileRole,
    path: &Path,
    from: &Path,
    cap: u64,
) -> Result<Vec<u8>, LoadError> {
    let path = path.to_path_buf();
    bounded::read_regular(from, cap).map_err(|e| match e {
        ReadError::NotFound => LoadError::Missing { role, path },
        ReadError::NotRegularFile(kind) => LoadError::NotRegularFile { role, path, kind },
        ReadError::TooLarge(cap) => LoadError::TooLarge { role, path, cap },
        ReadError::Io(source) => LoadError::Io { role, path, source },
    })
}

// === decoding ===

/// The encoding a private key arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum KeyEncoding {
    /// PKCS#8 (`PRIVATE KEY`).
    #[serde(rename = "PKCS#8")]
    Pkcs8,
    /// PKCS#1 RSA (`RSA PRIVATE KEY`).
    #[serde(rename = "PKCS#1")]
    Pkcs1,
    /// SEC1 EC (`EC PRIVATE KEY`).
    #[serde(rename = "SEC1")]
    Sec1,
}

/// A decoded private key. Its DER is wiped when it is dropped (rustls-pki-types'
/// `PrivateKeyDer` can be zeroized but does not do it on drop), and `Debug` never prints it.
#[derive(Clone)]
pub struct PrivateKey {
    der: Zeroizing<Vec<u8>>,
    /// How it was encoded.
    pub encoding: KeyEncoding,
}

impl PrivateKey {
    fn new(der: Vec<u8>, encoding: KeyEncoding) -> Self {
        Self {
            der: Zeroizing::new(der),
            encoding,
        }
    }

    /// The key DER, borrowed. Secret: hand it to rustls by reference
    /// (`any_supported_type(&key.der())`), never to a log; `clone_key()` makes a copy that is
    /// not wiped.
    pub fn der(&self) -> PrivateKeyDer<'_> {
        let der: &[u8] = &self.der;
        match self.encoding {
            KeyEncoding::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
            KeyEncoding::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
            KeyEncoding::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

/// A certificate chain as given: leaf first, then intermediates. Never empty: only the decoder
/// builds one, from a file that held at least one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain(Vec<CertificateDer<'static>>);

impl Chain {
    /// `None` for an empty list: a chain has a leaf.
    fn new(certs: Vec<CertificateDer<'static>>) -> Option<Self> {
        (!certs.is_empty()).then_some(Self(certs))
    }

    /// The leaf.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.0[0]
    }

    /// The intermediates as given, after the leaf (possibly none).
    pub fn intermediates(&self) -> &[CertificateDer<'static>] {
        &self.0[1..]
    }

    /// Every certificate, leaf first.
    pub fn as_slice(&self) -> &[CertificateDer<'static>] {
        &self.0
    }

    /// Every certificate, leaf first.
    pub fn iter(&self) -> std::slice::Iter<'_, CertificateDer<'static>> {
        self.0.iter()
    }

    /// How many certificates (at least 1).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false; here for the `len` convention.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// An owned copy, for TLS configurations.
    pub fn to_vec(&self) -> Vec<CertificateDer<'static>> {
        self.0.clone()
    }
}

/// Decoded material of one set.
#[derive(Debug, Clone)]
pub struct Material {
    /// The files it came from.
    pub raw: RawSet,
    /// Leaf first, then intermediates, as given.
    pub chain: Chain,
    /// The leaf's key, when configured.
    pub key: Option<PrivateKey>,
    /// The trust bundle's certificates (empty when no bundle is configured).
    pub trust: Vec<CertificateDer<'static>>,
}

impl Material {
    /// A copy to keep while the material is live: the decoded certificates and key, and the
    /// key file as read (publishing with `as_is` copies it), but not the bytes of the
    /// certificate and bundle files, which nothing reads once they are decoded (they are
    /// published from the DER). Their role, path, generation and hash stay.
    pub fn kept(&self) -> Self {
        Self {
            raw: RawSet {
                cert: self.raw.cert.without_bytes(),
                key: self.raw.key.clone(),
                trust: self.raw.trust.as_ref().map(FileSnapshot::without_bytes),
            },
            chain: self.chain.clone(),
            key: self.key.clone(),
            trust: self.trust.clone(),
        }
    }
}

/// Reads and decodes a set.
pub fn load_set(paths: &SourcePaths, max_file_size: u64) -> Result<Material, LoadError> {
    decode_set(read_set(paths, max_file_size)?)
}

/// Decodes files already read.
pub fn decode_set(raw: RawSet) -> Result<Material, LoadError> {
    // decode_certs refuses a file without a certificate, so the chain is never empty.
    let chain = Chain::new(decode_certs(&raw.cert)?).ok_or_else(|| LoadError::NoCertificate {
        role: raw.cert.role,
        path: raw.cert.path.clone(),
        found_key: false,
    })?;
    let key = raw.key.as_ref().map(decode_key).transpose()?;
    let trust = match &raw.trust {
        Some(t) => decode_certs(t)?,
        None => Vec::new(),
    };
    Ok(Material {
        raw,
        chain,
        key,
        trust,
    })
}

fn malformed(file: &FileSnapshot, detail: impl Into<String>) -> LoadError {
    LoadError::Malformed {
        role: file.role,
        path: file.path.clone(),
        detail: detail.into(),
    }
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

fn is_pem(bytes: &[u8]) -> bool {
    contains(bytes, b"-----BEGIN ")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One PEM block: its kind and its DER, wiped on drop.
type PemSection = (SectionKind, Zeroizing<Vec<u8>>);

/// PEM sections of a file, refusing broken framing, empty blocks and anything after the last
/// `-----END` line (bytes appended to a valid file are a corruption, not a comment).
/// Each section's DER is wiped on drop: in a key file it is the key (or another secret).
fn pem_sections(file: &FileSnapshot) -> Result<Vec<PemSection>, LoadError> {
    let bytes = file.bytes();
    let sections = <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes)
        .map(|section| section.map(|(kind, der)| (kind, Zeroizing::new(der))))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| malformed(file, pem_error(&e, file.role)))?;
    if let Some(end) = bytes.windows(9).rposition(|w| w == b"-----END ") {
        let after = &bytes[end..];
        let line_end = after
            .iter()
            .position(|b| *b == b'\n')
            .map_or(after.len(), |i| i + 1);
        let trailing = &after[line_end..];
        if !is_blank(trailing) {
            return Err(malformed(
                file,
                format!(
                    "{} unexpected bytes after the last PEM block",
                    trailing.len()
                ),
            ));
        }
    }
    // An empty block would decode to an empty certificate or key that only fails later, in
    // validation or the handshake, for a less telling reason.
    if sections.iter().any(|(_, der)| der.is_empty()) {
        return Err(malformed(
            file,
            "empty PEM block (nothing between BEGIN and END; truncated?)",
        ));
    }
    Ok(sections)
}

/// The PEM error as one line. Nothing from a key file's content is quoted: whatever a key path
/// points at (a password file, another secret) must not reach logs through an error.
fn pem_error(e: &rustls_pki_types::pem::Error, role: FileRole) -> String {
    use rustls_pki_types::pem::Error;
    let secret = role == FileRole::Key;
    match e {
        Error::MissingSectionEnd { .. } if secret => {
            "PEM block not terminated (missing its -----END line; truncated?)".into()
        }
        Error::MissingSectionEnd { end_marker } => format!(
            "PEM block not terminated (missing -----END {}-----; truncated?)",
            pem_label(end_marker)
        ),
        Error::IllegalSectionStart { .. } => "malformed PEM BEGIN line".into(),
        Error::Base64Decode(_) => "invalid base64 inside a PEM block".into(),
        Error::SectionTooLarge => "PEM block too large".into(),
        _ if secret => "malformed PEM".into(),
        other => format!("PEM error: {other}"),
    }
}

/// A PEM label as it may appear in a message: the label is whatever followed `-----BEGIN ` in
/// the file, so control characters are escaped (the message goes into log lines) and a long one
/// is cut short.
fn pem_label(label: &[u8]) -> String {
    const MAX_CHARS: usize = 64;
    let text = String::from_utf8_lossy(label);
    let mut out: String = text
        .chars()
        .take(MAX_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Decodes a certificate or bundle file (PEM, or one DER certificate).
pub fn decode_certs(file: &FileSnapshot) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let bytes = file.bytes();
    if is_blank(bytes) {
        return Err(LoadError::Empty {
            role: file.role,
            path: file.path.clone(),
        });
    }
    if !is_pem(bytes) {
        // A single DER certificate: an X.509 SEQUENCE spanning exactly the file.
        return match x509_parser::parse_x509_certificate(bytes) {
            Ok(([], _)) => Ok(vec![CertificateDer::from(bytes.to_vec())]),
            Ok((rest, _)) => Err(malformed(
                file,
                format!("{} unexpected bytes after the DER certificate", rest.len()),
            )),
            Err(_) => {
                let found_key = PrivateKeyDer::try_from(bytes).is_ok();
                match der_truncation(bytes) {
                    Some(detail) if !found_key => Err(malformed(file, detail)),
                    _ => Err(LoadError::NoCertificate {
                        role: file.role,
                        path: file.path.clone(),
                        found_key,
                    }),
                }
            }
        };
    }
    let sections = pem_sections(file)?;
    let mut certs = Vec::new();
    let mut found_key = false;
    for (kind, mut der) in sections {
        match kind {
            // Moved out, not copied: a certificate is no secret.
            SectionKind::Certificate => certs.push(CertificateDer::from(std::mem::take(&mut *der))),
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey => {
                found_key = true
            }
            _ => {}
        }
    }
    found_key |= contains(bytes, b"PRIVATE KEY-----");
    if certs.is_empty() {
        return Err(LoadError::NoCertificate {
            role: file.role,
            path: file.path.clone(),
            found_key,
        });
    }
    Ok(certs)
}

/// When `bytes` open with a DER SEQUENCE header whose length runs past the end of the file, says
/// so: that is a certificate cut short, not a file without one.
fn der_truncation(bytes: &[u8]) -> Option<String> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let declared = header.checked_add(len)?;
    (declared > bytes.len()).then(|| {
        format!(
            "DER certificate truncated: its header declares {declared} bytes, the file has {}",
            bytes.len()
        )
    })
}

/// Decodes a private key file (PEM or DER); refuses encrypted keys and several keys.
pub fn decode_key(file: &FileSnapshot) -> Result<PrivateKey, LoadError> {
    let bytes = file.bytes();
    let path = || file.path.clone();
    if is_blank(bytes) {
        return Err(LoadError::Empty {
            role: FileRole::Key,
            path: path(),
        });
    }
    if contains(bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(bytes, b"Proc-Type: 4,ENCRYPTED")
    {
        return Err(LoadError::EncryptedKey { path: path() });
    }
    if !is_pem(bytes) {
        return match PrivateKeyDer::try_from(bytes) {
            Ok(der) => Ok(PrivateKey::new(bytes.to_vec(), encoding_of(&der))),
            Err(_) => Err(LoadError::NoKey {
                path: path(),
                found_cert: x509_parser::parse_x509_certificate(bytes).is_ok(),
            }),
        };
    }
    let mut keys = Vec::new();
    let mut found_cert = false;
    for (kind, mut der) in pem_sections(file)? {
        let encoding = match kind {
            SectionKind::PrivateKey => KeyEncoding::Pkcs8,
            SectionKind::RsaPrivateKey => KeyEncoding::Pkcs1,
            SectionKind::EcPrivateKey => KeyEncoding::Sec1,
            SectionKind::Certificate => {
                found_cert = true;
                continue;
            }
            _ => continue,
        };
        // Moved into the key, which wipes it in turn.
        keys.push(PrivateKey::new(std::mem::take(&mut *der), encoding));
    }
    match keys.len() {
        0 => Err(LoadError::NoKey {
            path: path(),
            found_cert,
        }),
        1 => Ok(keys.remove(0)),
        count => Err(LoadError::SeveralKeys {
            path: path(),
            count,
        }),
    }
}

fn encoding_of(der: &PrivateKeyDer<'_>) -> KeyEncoding {
    match der {
        PrivateKeyDer::Pkcs1(_) => KeyEncoding::Pkcs1,
        PrivateKeyDer::Sec1(_) => KeyEncoding::Sec1,
        _ => KeyEncoding::Pkcs8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(role: FileRole, bytes: &[u8]) -> FileSnapshot {
        FileSnapshot {
            role,
            path: PathBuf::from("/src/tls.crt"),
            generation: None,
            sha256: String::new(),
            bytes: Zeroizing::new(bytes.to_vec()),
        }
    }

    /// fuzz/artifacts/loaders/crash-f22be22f…: an unterminated PEM block whose BEGIN label holds
    /// control characters and NULs, which went into the message (and so the logs) verbatim.
    #[test]
    fn unterminated_pem_label_is_escaped() {
        let input: &[u8] = b"-----BEGIN EC-\x01\x00\x00\x00\x00\x00\x00TrIFICATE-----\nMIICETCCAb0\x82\x02\x110\x82\x01\xb6\xa0\x03\x02\x01\x02\x02\x02\x10\x020\n\x06\x08*\x86H\xce=\x04\x03\x02041\x1a0\x18\x06\x03U\x04\x03\x0c\x11fuzzwCg\x14\x06YI\x03";
        let errors = [
            decode_certs(&file(FileRole::Cert, input)).unwrap_err(),
            decode_certs(&file(FileRole::Trust, input)).unwrap_err(),
        ];
        for e in errors {
            let msg = e.to_string();
            assert_eq!(e.reason().as_str(), "bad_encoding", "{msg}");
            assert!(msg.contains("/src/tls.crt"), "{msg}");
            assert!(msg.contains(r"EC-\u{1}\0\0"), "{msg}");
            assert!(!msg.chars().any(char::is_control), "{msg:?}");
        }
    }

    /// A key path pointing at another secret (`DB_PASSWORD=…` in PEM-like framing): the error
    /// names the file and the problem, and quotes none of its bytes. The same bytes as a
    /// certificate file are quoted (escaped), which is what makes this a test of the key rule.
    #[test]
    fn key_file_content_is_never_quoted() {
        let input: &[u8] = b"-----BEGIN DB_PASSWORD=hunter2-----\nc2VjcmV0\n";
        let e = decode_key(&file(FileRole::Key, input)).unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.reason(), Reason::BadEncoding, "{msg}");
        assert!(msg.contains("not terminated"), "{msg}");
        assert!(
            !msg.contains("hunter2") && !msg.contains("DB_PASSWORD"),
            "{msg}"
        );
        let as_cert = decode_certs(&file(FileRole::Cert, input))
            .unwrap_err()
            .to_string();
        assert!(as_cert.contains("hunter2"), "{as_cert}");
    }

    /// fuzz/artifacts/data_dir/crash-52eefd38…: `ca.crt -> ..data` with `..data -> ..gen1/tls.crt`
    /// (a file). The pinned read went to `..gen1/tls.crt/` (a `/` appended for the empty rest of
    /// the link) and failed with "Not a directory" although the configured path reads fine.
    #[test]
    fn link_to_data_itself_reads_the_generation() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().expect("tempdir");
        let vol = tmp.path();
        fs::create_dir(vol.join("..gen1")).expect("mkdir");
        fs::write(vol.join("..gen1/tls.crt"), b"generation one").expect("write");
        fs::write(vol.join("tls.crt"), b"plain cert").expect("write");
        symlink("..gen1/tls.crt", vol.join(DATA_LINK)).expect("link");
        symlink("..data", vol.join("ca.crt")).expect("link");
        let paths = SourcePaths {
            cert: vol.join("tls.crt"),
            key: None,
            trust: Some(vol.join("ca.crt")),
        };
        let raw = read_set(&paths, 4096).expect("the configured paths all read");
        let trust = raw.trust.expect("trust read");
        assert_eq!(trust.bytes(), b"generation one");
        assert_eq!(trust.generation.as_deref(), Some("..gen1/tls.crt"));

        // `..data/` keeps its slash: a file is not a directory, as when opening the path.
        fs::remove_file(vol.join("ca.crt")).expect("rm");
        symlink("..data/", vol.join("ca.crt")).expect("link");
        assert!(fs::read(vol.join("ca.crt")).is_err());
        assert_eq!(
            read_set(&paths, 4096).unwrap_err().reason().as_str(),
            "unreadable"
        );
    }

    /// fuzz/artifacts/loaders/crash-1a4c8406…: an empty `PRIVATE KEY` block (its END line
    /// followed by junk, later a second END line and two damaged certificate blocks) decoded to
    /// an empty key; an empty `CERTIFICATE` block likewise to an empty certificate.
    #[test]
    fn empty_pem_blocks_are_malformed() {
        let crash: &[u8] = b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----BQYDK2V9HR2F4MGMcHwBCIEIL/9mJiwnEhPhQtdW5oofer7pSSiHXB95C/7VeKYY21L\n-----END PRIVATE KEY-----\n\n--c-----\rgN\x00/JCwL0wpFzQyzFK2jLRSz7+R\r\n9HR2F83XFQIlnKA+ew==\r\n-----END CERTIFICATE-----\r\nXDTI1MDEwMTAwMDAwMFoXDTxtIU=\r\n-----/7VeKYY21L\n-----END PR---+-BEGIN CERTIFICATE-----\rgN\x00/JCwL0wpFzQyzFK2jLRSz7+R\r\n9HR2F83XFQIlnKA+ew==\r\n-----END CERTIFICATE-----\r\n";
        let err = decode_key(&file(FileRole::Key, crash)).unwrap_err();
        assert_eq!(err.reason().as_str(), "bad_encoding", "{err}");
        assert!(err.to_string().contains("empty PEM block"), "{err}");

        let cert = b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
        let err = decode_certs(&file(FileRole::Cert, cert)).unwrap_err();
        assert_eq!(err.reason().as_str(), "bad_encoding", "{err}");
        let key = b"-----BEGIN EC PRIVATE KEY-----\r\n-----END EC PRIVATE KEY-----\r\n";
        assert_eq!(
            decode_key(&file(FileRole::Key, key)).unwrap_err().reason(),
            Reason::BadEncoding
        );
    }

    /// Key bytes are wiped before their memory is freed: the key file as read and the decoded
    /// key's DER. The test binary's allocator ([`watch::Watching`]) looks at one watched block
    /// as it is freed.
    #[test]
    fn key_bytes_are_wiped_before_they_are_freed() {
        const SECRET: &[u8] = b"0\x82secret-key-bytes: P-256 scalar 0123456789abcdef";
        let pem = b"-----BEGIN PRIVATE KEY-----\nMIJzZWNyZXQta2V5LWJ5dGVzOiBQLTI1NiBzY2FsYXIgMDEyMzQ1Njc4OWFiY2RlZg==\n-----END PRIVATE KEY-----\n";
        let snapshot = file(FileRole::Key, pem);
        let key = decode_key(&snapshot).unwrap();
        assert_eq!(key.der().secret_der(), SECRET);
        let copy = key.clone();

        let key_ptr = key.der().secret_der().as_ptr();
        let copy_ptr = copy.der().secret_der().as_ptr();
        let file_ptr = snapshot.bytes().as_ptr();
        type Case = (&'static str, *const u8, usize, Box<dyn FnOnce()>);
        let cases: [Case; 3] = [
            (
                "decoded key",
                key_ptr,
                SECRET.len(),
                Box::new(move || drop(key)),
            ),
            (
                "its clone",
                copy_ptr,
                SECRET.len(),
                Box::new(move || drop(copy)),
            ),
            (
                "key file",
                file_ptr,
                pem.len(),
                Box::new(move || drop(snapshot)),
            ),
        ];
        for (what, bytes, len, drop_it) in cases {
            // SAFETY: the block is live (owned by what `drop_it` drops) and `len` bytes of it
            // are initialized.
            let freed = unsafe { watch::freed_bytes(bytes, len, drop_it) };
            assert_eq!(
                freed.as_deref().map(|b| b.iter().all(|b| *b == 0)),
                Some(true),
                "{what}: {freed:?}"
            );
        }
    }

    /// A global allocator for this test binary that, when one watched block is freed, records
    /// the bytes it held at that moment (still allocated, so reading them is sound).
    mod watch {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        use std::sync::Mutex;

        pub struct Watching;

        #[global_allocator]
        static ALLOCATOR: Watching = Watching;

        static WATCHED: AtomicUsize = AtomicUsize::new(0);
        static WATCHED_LEN: AtomicUsize = AtomicUsize::new(0);
        // Fixed-size, so the allocator never allocates while recording.
        static SEEN: Mutex<Option<([u8; 256], usize)>> = Mutex::new(None);

        // SAFETY: forwards every call to `System`; `dealloc` reads the watched block first,
        // while it is still allocated.
        unsafe impl GlobalAlloc for Watching {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                System.alloc(layout)
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                if ptr as usize == WATCHED.load(SeqCst) {
                    let len = WATCHED_LEN.load(SeqCst).min(256);
                    let mut copy = [0u8; 256];
                    // SAFETY: the caller of `freed_bytes` vouches that `len` bytes are
                    // initialized, and the block is not freed yet.
                    copy[..len].copy_from_slice(std::slice::from_raw_parts(ptr, len));
                    if let Ok(mut seen) = SEEN.lock() {
                        *seen = Some((copy, len));
                    }
                    WATCHED.store(0, SeqCst);
                }
                System.dealloc(ptr, layout)
            }
        }

        /// Runs `drop_it` and returns what the block at `ptr` held when it was freed (`None`
        /// if it was not freed).
        ///
        /// # Safety
        /// `ptr` must be a live heap block, freed only by `drop_it`, with `len` (at most 256)
        /// bytes initialized.
        pub unsafe fn freed_bytes(
            ptr: *const u8,
            len: usize,
            drop_it: Box<dyn FnOnce()>,
        ) -> Option<Vec<u8>> {
            static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
            let _guard = ONE_AT_A_TIME.lock().unwrap();
            *SEEN.lock().unwrap() = None;
            WATCHED_LEN.store(len, SeqCst);
            WATCHED.store(ptr as usize, SeqCst);
            drop_it();
            WATCHED.store(0, SeqCst);
            let seen = SEEN.lock().unwrap().take();
            seen.map(|(bytes, len)| bytes[..len].to_vec())
        }
    }

    #[test]
    fn long_pem_label_is_cut_short() {
        let input = format!("-----BEGIN {}-----\nAAAA\n", "X".repeat(10_000));
        let msg = decode_certs(&file(FileRole::Cert, input.as_bytes()))
            .unwrap_err()
            .to_string();
        assert!(msg.len() < 200, "{} bytes: {msg}", msg.len());
        assert!(
            msg.contains(&format!("-----END {}…-----", "X".repeat(64))),
            "{msg}"
        );
    }
}
