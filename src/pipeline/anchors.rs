//! Which anchors of a bundle a chain verifies to. A chain is cross-signed when more than one
//! does (Consul, OpenShift and Vault rotate CAs this way): a peer trusting any of them accepts
//! it. Path building runs once per anchor with that anchor alone, so every path is found, not
//! only the first.

use rustls_pki_types::UnixTime;

use super::inspect::anchor_id_of;
use super::load::Material;
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
    let Ok(ee) = webpki::EndEntityCert::try_from(material.chain.leaf()) else {
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
    material
        .trust
        .iter()
        .take(limit)
        .filter_map(|der| {
            let anchor = webpki::anchor_from_trusted_cert(der).ok()?;
            ee.verify_for_usage(
                algs,
                &[anchor],
                material.chain.intermediates(),
                time,
                eku,
                None,
                None,
            )
            .ok()?;
            anchor_id_of(der)
        })
        .collect()
}
