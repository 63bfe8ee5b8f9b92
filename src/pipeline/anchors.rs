//! Which anchors of a bundle a chain verifies to. A chain is cross-signed when more than one
//! does (Consul, OpenShift and Vault rotate CAs this way): a peer trusting any of them accepts
//! it. Path building runs once per anchor with that anchor alone, so every path is found, not
//! only the first.

use rustls_pki_types::UnixTime;

use rustls_pki_types::CertificateDer;

use super::inspect::anchor_id_of;
use super::load::{Chain, Material};
use super::validate::Usage;
use crate::ids::AnchorId;

/// The anchors of `material.trust` the chain verifies to at `now` for the set's usage (server
/// auth when it includes server). Anchors that do not parse are skipped. At most `limit`
/// anchors are tried (a public root store mounted as a bundle holds hundreds; the caller
/// exports none of them then).
pub fn verifying_anchors(
    material: &Material,
    usage: Usage,
    now: i64,
    limit: usize,
) -> Vec<AnchorId> {
    anchors_verifying(&material.chain, &material.trust, usage, now, limit)
}

/// The anchors of `trust` that `chain` verifies to at `now` for `usage`: `A(L)` of the fleet
/// gate, where `trust` is every anchor known (the live and the candidate bundle). An anchor
/// listed twice is tried once.
pub fn anchors_verifying(
    chain: &Chain,
    trust: &[CertificateDer<'static>],
    usage: Usage,
    now: i64,
    limit: usize,
) -> Vec<AnchorId> {
    let Ok(ee) = webpki::EndEntityCert::try_from(chain.leaf()) else {
        return Vec::new();
    };
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let eku = if usage.server() {
        webpki::KeyUsage::server_auth()
    } else {
        webpki::KeyUsage::client_auth()
    };
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(now).unwrap_or(0),
    ));
    let mut out: Vec<AnchorId> = Vec::new();
    for der in trust.iter().take(limit) {
        let Ok(anchor) = webpki::anchor_from_trusted_cert(der) else {
            continue;
        };
        if ee
            .verify_for_usage(
                algs,
                &[anchor],
                chain.intermediates(),
                time,
                eku,
                None,
                None,
            )
            .is_err()
        {
            continue;
        }
        if let Some(id) = anchor_id_of(der).filter(|id| !out.contains(id)) {
            out.push(id);
        }
    }
    out
}
