//! The stable labels certgate reports — failure reasons, rotation outcomes, event kinds — as
//! types. Each is what metrics, `/status`, logs and `check --json` print, so a label is spelled
//! once, here; `ALL` lists every one for docs and tests.

use std::fmt;

/// Declares a fieldless enum of stable labels: `as_str()`, `ALL`, `Display` and snake_case
/// serde all come from the one table, so they cannot disagree.
macro_rules! labels {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $label:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every label, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The label as printed in metrics, `/status` and logs.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

labels! {
    /// Why a candidate was refused (or a rotation undone). Stable: dashboards and alerts match
    /// on these.
    pub enum Reason {
        /// A configured file does not exist.
        Missing => "missing",
        /// A file could not be opened or read, or is not a regular file.
        Unreadable => "unreadable",
        /// A file exceeds `max_file_size`.
        TooLarge => "too_large",
        /// A file is empty or only whitespace.
        Empty => "empty",
        /// PEM framing, base64 or DER is broken.
        BadEncoding => "bad_encoding",
        /// The certificate file holds no certificate.
        NoCertificate => "no_certificate",
        /// The key file holds no private key.
        NoKey => "no_key",
        /// Certificate and key files look swapped.
        Swapped => "swapped",
        /// The key file holds more than one key.
        SeveralKeys => "several_keys",
        /// The key is encrypted.
        EncryptedKey => "encrypted_key",
        /// `..data` kept moving while the set was read.
        GenerationUnstable => "generation_unstable",
        /// No trust bundle is configured.
        NoTrustBundle => "no_trust_bundle",
        /// The bundle has no usable anchor.
        NoUsableAnchor => "no_usable_anchor",
        /// The chain does not lead to an anchor of the bundle.
        UnknownIssuer => "unknown_issuer",
        /// A certificate of the chain has expired.
        Expired => "expired",
        /// A certificate of the chain is not valid yet.
        NotYetValid => "not_yet_valid",
        /// The chain expires within `min_remaining`.
        ExpiringSoon => "expiring_soon",
        /// A certificate of the chain lacks the extended key usage the set needs.
        WrongUsage => "wrong_usage",
        /// The leaf's keyUsage forbids the signature TLS needs of its key.
        KeyUsage => "key_usage",
        /// A CA certificate was given as the leaf.
        CaAsLeaf => "ca_as_leaf",
        /// A signature in the chain does not verify.
        BadSignature => "bad_signature",
        /// A key is too weak (RSA under 2048 bits).
        WeakKey => "weak_key",
        /// The leaf does not cover an expected name.
        NameMismatch => "name_mismatch",
        /// The private key is not the leaf's.
        KeyMismatch => "key_mismatch",
        /// The private key cannot be used.
        UnsupportedKey => "unsupported_key",
        /// Anything else path building refused.
        ChainInvalid => "chain_invalid",
        /// The loopback self-handshake failed.
        HandshakeFailed => "handshake_failed",
        /// A new bundle would no longer trust the live leaf.
        OrphansLiveLeaf => "orphans_live_leaf",
        /// Writing the generation into the publish directory failed.
        PublishFailed => "publish_failed",
        /// The workload could not serve the published material: swapped back.
        WorkloadRefused => "workload_refused",
        /// A reload was sent (or failed) and the workload still serves an earlier generation.
        ReloadRejected => "reload_rejected",
    }
}

impl Reason {
    /// Whether the same bytes could pass later: the verdict depends on the clock (a
    /// certificate not valid *yet*) or on the environment (a handshake that timed out on a
    /// starved CPU, a read that hit EMFILE), not only on the content. Such a refusal is never
    /// remembered as final: the content is evaluated again at each resync (and, for
    /// `not_yet_valid`, at the not-before time).
    pub fn may_pass_later(self) -> bool {
        matches!(
            self,
            Self::NotYetValid
                | Self::HandshakeFailed
                | Self::Unreadable
                | Self::GenerationUnstable
                | Self::PublishFailed
        )
    }

    /// The `reason` label of a rotation counter: the refusal's reason, or `ok`.
    pub fn label(reason: Option<Self>) -> &'static str {
        reason.map_or("ok", Self::as_str)
    }
}

labels! {
    /// What became of a candidate.
    pub enum Outcome {
        /// Passed and written into the publish directory.
        Published => "published",
        /// Refused: the live material stays.
        Rejected => "rejected",
        /// Published, then undone because the workload could not serve it.
        RolledBack => "rolled_back",
        /// Passed, in monitor mode (nothing is published).
        Accepted => "accepted",
    }
}

impl Outcome {
    /// Whether the newest source material ended up not live.
    pub fn refused(self) -> bool {
        matches!(self, Self::Rejected | Self::RolledBack)
    }
}

labels! {
    /// The kind of a line in a set's event history (`/status`).
    pub enum EventKind {
        /// A generation was published.
        Published => "published",
        /// A candidate was refused.
        Rejected => "rejected",
        /// The previous generation was restored.
        RolledBack => "rolled_back",
        /// Monitor mode: valid source material.
        Accepted => "accepted",
        /// A generation already published was taken as live at start-up.
        Adopted => "adopted",
        /// A reload action ran.
        Reload => "reload",
        /// A reload action failed.
        ReloadFailed => "reload_failed",
        /// The workload does not serve the live generation.
        Stale => "stale",
        /// Restoring the previous generation failed.
        RollbackFailed => "rollback_failed",
        /// The live material crossed a time threshold (warn, not-ready, expiry).
        Threshold => "threshold",
        /// Published, but something after the commit failed (a link, the state file).
        PublishWarning => "publish_warning",
        /// The publish directory no longer served the live generation and was repaired.
        Repaired => "repaired",
        /// The fleet gate holds a candidate.
        GateHold => "gate_hold",
        /// The fleet gate released a candidate (clear, deadline, override).
        GateRelease => "gate_release",
        /// A held candidate was replaced by newer source material, never published.
        GateSuperseded => "gate_superseded",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_and_as_str_agree() {
        for r in Reason::ALL {
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::Value::from(r.as_str())
            );
        }
        for o in Outcome::ALL {
            assert_eq!(
                serde_json::to_value(o).unwrap(),
                serde_json::Value::from(o.as_str())
            );
        }
        for k in EventKind::ALL {
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::from(k.as_str())
            );
        }
    }

    /// The reference's reason table (docs/metrics.md, `## Reasons`) lists exactly
    /// `Reason::ALL`, in order: a label added in code without docs, or documented but gone,
    /// fails here.
    #[test]
    fn the_documented_reasons_are_reason_all() {
        let doc = include_str!("../docs/metrics.md");
        let section = doc
            .split("\n## Reasons")
            .nth(1)
            .expect("docs/metrics.md has a ## Reasons section");
        let section = section.split("\n## ").next().unwrap_or(section);
        let documented: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let code: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(documented, code);
    }

    #[test]
    fn only_time_and_environment_verdicts_may_pass_later() {
        for r in [
            Reason::NotYetValid,
            Reason::HandshakeFailed,
            Reason::Unreadable,
        ] {
            assert!(r.may_pass_later(), "{r}");
        }
        // The same bytes fail these forever (or only get worse).
        for r in [
            Reason::KeyMismatch,
            Reason::Expired,
            Reason::UnknownIssuer,
            Reason::BadEncoding,
        ] {
            assert!(!r.may_pass_later(), "{r}");
        }
    }

    #[test]
    fn labels_are_unique() {
        let mut seen: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        seen.sort_unstable();
        let n = seen.len();
        seen.dedup();
        assert_eq!(seen.len(), n);
    }
}
