//! The certificate verifiers of the self-handshake: both sides judge the chain they are shown
//! exactly as validation judged it (webpki's path building and [`super::x509_policy`]'s rules,
//! through [`verify_presented`]), so the handshake can neither refuse a chain validation
//! accepted per RFC 5280 (a directoryName constraint, a self-issued intermediate) nor accept one
//! it refused. The server name, and the handshake's own signatures, are checked as rustls'
//! standard verifiers check them.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::validate::verify_presented;
use super::x509_policy::Side;

/// A server or client certificate verifier over a trust bundle.
#[derive(Debug)]
pub(crate) struct ChainVerifier {
    provider: Arc<CryptoProvider>,
    trust: Vec<CertificateDer<'static>>,
    check_name: bool,
}

impl ChainVerifier {
    /// Verifies against `trust`; as a server verifier, also that the leaf covers the server
    /// name when `check_name` (a leaf with only URI SANs has none TLS can check; validation
    /// checked its names).
    pub(crate) fn new(
        provider: Arc<CryptoProvider>,
        trust: &[CertificateDer<'static>],
        check_name: bool,
    ) -> Self {
        Self {
            provider,
            trust: trust.to_vec(),
            check_name,
        }
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_signature(&self.provider, message, cert, dss)
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(&self.provider, message, cert, dss)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        schemes(&self.provider)
    }
}

/// Checks a TLS 1.2 handshake signature with `provider`'s algorithms: every verifier here
/// checks handshake signatures the same way, whatever it decides about the chain.
pub(crate) fn tls12_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

/// Checks a TLS 1.3 handshake signature with `provider`'s algorithms.
pub(crate) fn tls13_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

/// The signature schemes `provider` verifies.
pub(crate) fn schemes(provider: &CryptoProvider) -> Vec<SignatureScheme> {
    provider
        .signature_verification_algorithms
        .supported_schemes()
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        verify_presented(end_entity, intermediates, &self.trust, Side::Server, now)
            .map_err(rustls::Error::General)?;
        if self.check_name {
            webpki::EndEntityCert::try_from(end_entity)
                .and_then(|ee| ee.verify_is_valid_for_subject_name(server_name))
                .map_err(|e| rustls::Error::General(format!("server name: {e:?}")))?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for ChainVerifier {
    /// No hints: the loopback client has exactly one certificate to offer.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        verify_presented(end_entity, intermediates, &self.trust, Side::Client, now)
            .map_err(rustls::Error::General)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

#[cfg(test)]
mod tests {
    use certgate_testkit::pki::{Alg, Ca, LeafSpec};

    use super::*;

    fn now() -> UnixTime {
        UnixTime::now()
    }

    #[test]
    fn verifies_chain_name_and_side_as_validation_does() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let root = Ca::root("verifier root", Alg::P256);
        let inter = root.intermediate("verifier intermediate", Alg::P256);
        let leaf = inter.leaf(&LeafSpec::new("web.example.com"));
        let trust = [CertificateDer::from(root.cert_der.clone())];
        let ee = CertificateDer::from(leaf.cert_der.clone());
        let chain = [CertificateDer::from(inter.cert_der.clone())];
        let name = ServerName::try_from("web.example.com").unwrap();
        let other = ServerName::try_from("api.example.com").unwrap();

        let named = ChainVerifier::new(provider.clone(), &trust, true);
        assert!(named
            .verify_server_cert(&ee, &chain, &name, &[], now())
            .is_ok());
        assert!(named
            .verify_server_cert(&ee, &chain, &other, &[], now())
            .is_err());
        assert!(named
            .verify_server_cert(&ee, &[], &name, &[], now())
            .is_err());
        assert!(named.verify_client_cert(&ee, &chain, now()).is_ok());
        let unnamed = ChainVerifier::new(provider.clone(), &trust, false);
        assert!(unnamed
            .verify_server_cert(&ee, &chain, &other, &[], now())
            .is_ok());

        // Another bundle; and a root OpenSSL refuses (not a CA), which webpki alone accepts.
        let stranger = [CertificateDer::from(
            Ca::root("stranger", Alg::P256).cert_der,
        )];
        let refused = ChainVerifier::new(provider.clone(), &stranger, true);
        assert!(refused
            .verify_server_cert(&ee, &chain, &name, &[], now())
            .is_err());
        let not_ca = Ca::root_with("not a ca", Alg::P256, |p| {
            p.is_ca = certgate_testkit::pki::rcgen::IsCa::ExplicitNoCa;
        });
        let under = not_ca.leaf(&LeafSpec::new("web.example.com"));
        let v = ChainVerifier::new(provider, &[CertificateDer::from(not_ca.cert_der)], true);
        let err = v
            .verify_client_cert(&CertificateDer::from(under.cert_der), &[], now())
            .unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
    }
}
