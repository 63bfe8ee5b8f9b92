//! A test PKI built at run time with rcgen: roots, intermediates and leaves of every key type we
//! support, with any validity window, SANs and usages.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;
use time::{Duration, OffsetDateTime};

/// Key algorithms the tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    P256,
    P384,
    Ed25519,
    Rsa2048,
    /// Too weak for policy; can sit in a leaf but cannot sign (ring refuses it).
    Rsa1024,
}

/// A private key and the ways to write it.
pub struct Key {
    pub alg: Alg,
    pub pkcs8_der: Vec<u8>,
    rsa: Option<rsa::RsaPrivateKey>,
    signer: Option<KeyPair>,
    spki: Vec<u8>,
}

impl Key {
    pub fn generate(alg: Alg) -> Self {
        let rsa_bits = match alg {
            Alg::Rsa2048 => Some(2048),
            Alg::Rsa1024 => Some(1024),
            _ => None,
        };
        if let Some(bits) = rsa_bits {
            let mut rng = rand_core_os();
            let key = rsa::RsaPrivateKey::new(&mut rng, bits).expect("rsa keygen");
            let pkcs8 = key.to_pkcs8_der().expect("pkcs8").as_bytes().to_vec();
            let spki = {
                use rsa::pkcs8::EncodePublicKey;
                key.to_public_key()
                    .to_public_key_der()
                    .expect("spki")
                    .as_bytes()
                    .to_vec()
            };
            let signer = (bits >= 2048).then(|| {
                KeyPair::from_pkcs8_der_and_sign_algo(
                    &pkcs8.clone().into(),
                    &rcgen::PKCS_RSA_SHA256,
                )
                .expect("rsa keypair")
            });
            return Self {
                alg,
                pkcs8_der: pkcs8,
                rsa: Some(key),
                signer,
                spki,
            };
        }
        let sig_alg = match alg {
            Alg::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Alg::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            _ => &rcgen::PKCS_ED25519,
        };
        let kp = KeyPair::generate_for(sig_alg).expect("keygen");
        let spki = rcgen::PublicKeyData::subject_public_key_info(&kp);
        Self {
            alg,
            pkcs8_der: kp.serialize_der(),
            rsa: None,
            signer: Some(kp),
            spki,
        }
    }

    /// PKCS#8 PEM (`PRIVATE KEY`).
    pub fn pkcs8_pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8_der)
    }

    /// PKCS#1 PEM (`RSA PRIVATE KEY`), RSA only.
    pub fn pkcs1_pem(&self) -> String {
        let der = self
            .rsa
            .as_ref()
            .expect("RSA key")
            .to_pkcs1_der()
            .expect("pkcs1");
        pem("RSA PRIVATE KEY", der.as_bytes())
    }

    /// SEC1 PEM (`EC PRIVATE KEY`), EC only: the ECPrivateKey inside the PKCS#8 wrapper.
    pub fn sec1_pem(&self) -> String {
        pem("EC PRIVATE KEY", &pkcs8_inner(&self.pkcs8_der))
    }

    fn signer(&self) -> &KeyPair {
        self.signer.as_ref().expect("this key cannot sign")
    }

    fn public(&self) -> rcgen::SubjectPublicKeyInfo {
        rcgen::SubjectPublicKeyInfo::from_der(&self.spki).expect("spki")
    }
}

fn rand_core_os() -> rsa::rand_core::OsRng {
    rsa::rand_core::OsRng
}

/// PEM-encodes DER with a label, 64-column lines.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base64 of DER, as it would appear in a PEM body (for leak scans).
pub fn base64_of(der: &[u8]) -> String {
    base64_encode(der)
}

/// The OCTET STRING content of a PKCS#8 PrivateKeyInfo (SEQUENCE { version, algId, key }).
fn pkcs8_inner(der: &[u8]) -> Vec<u8> {
    fn header(d: &[u8]) -> (usize, usize) {
        let len0 = d[1] as usize;
        if len0 < 0x80 {
            (2, len0)
        } else {
            let n = len0 & 0x7f;
            let len = d[2..2 + n]
                .iter()
                .fold(0usize, |a, b| (a << 8) | *b as usize);
            (2 + n, len)
        }
    }
    let (h, _) = header(der);
    let mut rest = &der[h..];
    for _ in 0..2 {
        let (h, len) = header(rest);
        rest = &rest[h + len..];
    }
    let (h, len) = header(rest);
    rest[h..h + len].to_vec()
}

/// Usage a leaf is issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eku {
    Server,
    Client,
    Both,
    None,
}

/// Everything a leaf needs; start from `LeafSpec::new` and adjust.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub cn: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub alg: Alg,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub eku: Eku,
    pub is_ca: bool,
}

impl LeafSpec {
    pub fn new(dns: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            cn: dns.to_string(),
            dns: vec![dns.to_string()],
            ips: Vec::new(),
            uris: Vec::new(),
            alg: Alg::P256,
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(30),
            eku: Eku::Both,
            is_ca: false,
        }
    }
    pub fn alg(mut self, alg: Alg) -> Self {
        self.alg = alg;
        self
    }
    pub fn valid(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }
    pub fn eku(mut self, eku: Eku) -> Self {
        self.eku = eku;
        self
    }
}

/// A certificate authority (root or intermediate).
pub struct Ca {
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    pub key: Key,
    params: CertificateParams,
}

/// An issued leaf with its key.
pub struct Leaf {
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    pub key: Key,
}

fn serial() -> SerialNumber {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) + (std::process::id() as u64) * 1_000_000;
    SerialNumber::from(n.to_be_bytes().to_vec())
}

fn ca_params(cn: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "certgate tests");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = not_before;
    p.not_after = not_after;
    p.serial_number = Some(serial());
    p
}

impl Ca {
    /// A self-signed root valid from a day ago for ten years.
    pub fn root(cn: &str, alg: Alg) -> Self {
        let now = OffsetDateTime::now_utc();
        Self::root_valid(cn, alg, now - Duration::days(1), now + Duration::days(3650))
    }

    /// A self-signed root with an explicit validity window.
    pub fn root_valid(
        cn: &str,
        alg: Alg,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Self {
        let key = Key::generate(alg);
        let params = ca_params(cn, not_before, not_after);
        let cert = params.self_signed(key.signer()).expect("self-sign root");
        Self {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key,
            params,
        }
    }

    /// An intermediate signed by this CA, valid for five years.
    pub fn intermediate(&self, cn: &str, alg: Alg) -> Self {
        let now = OffsetDateTime::now_utc();
        self.intermediate_valid(cn, alg, now - Duration::days(1), now + Duration::days(1825))
    }

    /// An intermediate with an explicit validity window.
    pub fn intermediate_valid(
        &self,
        cn: &str,
        alg: Alg,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Self {
        let key = Key::generate(alg);
        let params = ca_params(cn, not_before, not_after);
        let cert = params
            .signed_by(&key.public(), &self.issuer())
            .expect("sign intermediate");
        Self {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key,
            params,
        }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, self.key.signer())
    }

    /// Issues a leaf.
    pub fn leaf(&self, spec: &LeafSpec) -> Leaf {
        let key = Key::generate(spec.alg);
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, spec.cn.as_str());
        p.distinguished_name = dn;
        for d in &spec.dns {
            p.subject_alt_names
                .push(SanType::DnsName(d.as_str().try_into().expect("dns san")));
        }
        for ip in &spec.ips {
            p.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        for u in &spec.uris {
            p.subject_alt_names
                .push(SanType::URI(u.as_str().try_into().expect("uri san")));
        }
        p.not_before = spec.not_before;
        p.not_after = spec.not_after;
        p.serial_number = Some(serial());
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = match spec.eku {
            Eku::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Eku::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Eku::Both => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Eku::None => vec![],
        };
        if spec.is_ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages.push(KeyUsagePurpose::KeyCertSign);
        }
        let cert = p
            .signed_by(&key.public(), &self.issuer())
            .expect("sign leaf");
        Leaf {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key,
        }
    }
}

/// A ready-made root → intermediate → leaf hierarchy.
pub struct Hierarchy {
    pub root: Ca,
    pub intermediate: Ca,
    pub leaf: Leaf,
}

impl Hierarchy {
    /// Root and intermediate of `alg`, leaf per `spec`.
    pub fn new(alg: Alg, spec: &LeafSpec) -> Self {
        let root = Ca::root("certgate test root", alg);
        let intermediate = root.intermediate("certgate test intermediate", alg);
        let leaf = intermediate.leaf(spec);
        Self {
            root,
            intermediate,
            leaf,
        }
    }

    /// A P-256 hierarchy with a leaf for `dns`.
    pub fn p256(dns: &str) -> Self {
        Self::new(Alg::P256, &LeafSpec::new(dns))
    }

    /// Leaf then intermediate, PEM.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.leaf.cert_pem, self.intermediate.cert_pem)
    }
}
