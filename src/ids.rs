//! Identifiers that would otherwise be bare strings and integers: a certificate's fingerprint,
//! a published generation's name, a set's index in the daemon. Distinct types, so a content
//! hash is never compared with a fingerprint, nor a generation with a set name.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A trust anchor's identity across re-issues: lowercase hex SHA-256 over the complete DER of
/// the certificate's subject Name (tag and length included) followed by the complete DER of
/// its SubjectPublicKeyInfo. A root re-issued with the same name and key (new validity, new
/// serial, new signature: a new certificate fingerprint) keeps its id, because every peer that
/// trusted the old one verifies chains to the new one alike; a new key under a reused name gets
/// a new id, because it does not. Anyone can compute it: in Python's `cryptography`,
/// `sha256(cert.subject.public_bytes() + cert.public_key().public_bytes(DER,
/// SubjectPublicKeyInfo))`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AnchorId(String);

impl AnchorId {
    /// The id of the anchor whose subject Name DER is `subject` and whose
    /// SubjectPublicKeyInfo DER is `spki` (each a whole TLV).
    pub fn of(subject: &[u8], spki: &[u8]) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(subject);
        ctx.update(spki);
        Self(crate::hex(ctx.finish().as_ref()))
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 16 hex digits, for one-line messages.
    pub fn short(&self) -> &str {
        self.0.get(..16).unwrap_or(&self.0)
    }
}

impl fmt::Display for AnchorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 over a certificate's DER, lowercase hex: what `/status`, metrics and logs name a
/// certificate by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of `der`.
    pub fn of(der: &[u8]) -> Self {
        Self::from_digest(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
    }

    /// The fingerprint whose SHA-256 digest is `digest`.
    pub fn from_digest(digest: &[u8]) -> Self {
        Self(crate::hex(digest))
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 16 hex digits, for one-line messages.
    pub fn short(&self) -> &str {
        self.0.get(..16).unwrap_or(&self.0)
    }
}

// Reads as text (`as_deref()`, `len()`, comparisons with `&str`) without becoming one.
impl std::ops::Deref for Fingerprint {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Fingerprint {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Fingerprint {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Fingerprint {
    fn eq(&self, other: &String) -> bool {
        self.0 == *other
    }
}

/// The name of a generation directory in a publish directory (`..2026_01_02_03_04_05.…`),
/// what `..data` points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GenerationName(String);

impl GenerationName {
    /// A name as found on disk (the target of `..data`) or in the state file.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The directory name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GenerationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<std::path::Path> for GenerationName {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

/// A set's position in the daemon's config order: how the loop and its off-loop work refer to
/// a set without cloning its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetId(pub usize);

impl fmt::Display for SetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}
