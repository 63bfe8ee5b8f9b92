//! The PKI builder: roots, intermediates and leaves minted at run time with rcgen, for every key
//! type certgate supports, with any validity window, SANs and usages. Keys can be written in
//! every encoding a loader meets (PKCS#8, PKCS#1, SEC1, encrypted), so tests can feed them all.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType, SerialNumber,
};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;
use time::{Duration, OffsetDateTime};

/// rcgen itself, for tests that shape a certificate beyond what the builders offer (see
/// [`Ca::root_with`]).
pub use rcgen;
/// keyUsage bits, for [`LeafSpec::key_usage`].
pub use rcgen::KeyUsagePurpose;

/// Key algorithms the tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256.
    P256,
    /// ECDSA P-384 with SHA-384.
    P384,
    /// Ed25519.
    Ed25519,
    /// RSA 2048 with SHA-256 (slow to generate in debug builds: see [`Hierarchy::shared`]).
    Rsa2048,
    /// Too weak for policy; can sit in a leaf but cannot sign (ring refuses it).
    Rsa1024,
}

/// A private key and the ways to write it.
pub struct Key {
    /// The algorithm.
    pub alg: Alg,
    /// PKCS#8 `PrivateKeyInfo` DER.
    pub pkcs8_der: Vec<u8>,
    rsa: Option<rsa::RsaPrivateKey>,
    signer: Option<KeyPair>,
    spki: Vec<u8>,
}

impl Key {
    /// A fresh key of `alg`.
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

    /// PKCS#1 DER (`RSAPrivateKey`), RSA only.
    pub fn pkcs1_der(&self) -> Vec<u8> {
        self.rsa
            .as_ref()
            .expect("RSA key")
            .to_pkcs1_der()
            .expect("pkcs1")
            .as_bytes()
            .to_vec()
    }

    /// SEC1 DER (`ECPrivateKey`), EC only.
    pub fn sec1_der(&self) -> Vec<u8> {
        pkcs8_inner(&self.pkcs8_der)
    }

    /// A PKCS#8 `ENCRYPTED PRIVATE KEY` PEM (PBES2: PBKDF2-HMAC-SHA256, AES-256-CBC), as
    /// `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes it. The structure is the real one; the
    /// cipher text is random bytes of the right length (no AES-CBC here), which is all a loader
    /// that must refuse encrypted keys can see before asking for a passphrase.
    pub fn encrypted_pkcs8_pem(&self) -> String {
        const PBES2: &[u8] = &[6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 5, 13];
        const PBKDF2: &[u8] = &[6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 5, 12];
        const HMAC_SHA256: &[u8] = &[6, 8, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 2, 9];
        const AES256_CBC: &[u8] = &[6, 9, 0x60, 0x86, 0x48, 1, 0x65, 3, 4, 1, 42];
        let salt = random_bytes(8);
        let iv = random_bytes(16);
        let cipher_text = random_bytes((self.pkcs8_der.len() / 16 + 1) * 16);
        let kdf_params = der_seq(&[
            &der(0x04, &salt),
            &der(0x02, &[0x08, 0x00]), // 2048 iterations
            &der_seq(&[HMAC_SHA256, &[5, 0]]),
        ]);
        let pbes2_params = der_seq(&[
            &der_seq(&[PBKDF2, &kdf_params]),
            &der_seq(&[AES256_CBC, &der(0x04, &iv)]),
        ]);
        let info = der_seq(&[&der_seq(&[PBES2, &pbes2_params]), &der(0x04, &cipher_text)]);
        pem("ENCRYPTED PRIVATE KEY", &info)
    }

    /// OpenSSL's legacy encrypted PEM (`Proc-Type: 4,ENCRYPTED` and `DEK-Info` headers in an
    /// `RSA PRIVATE KEY` or `EC PRIVATE KEY` block). Cipher text as in
    /// [`Key::encrypted_pkcs8_pem`].
    pub fn legacy_encrypted_pem(&self) -> String {
        let label = match self.alg {
            Alg::Rsa2048 | Alg::Rsa1024 => "RSA PRIVATE KEY",
            _ => "EC PRIVATE KEY",
        };
        let iv: String = random_bytes(16)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        let body = pem(label, &random_bytes((self.pkcs8_der.len() / 16 + 1) * 16));
        let mut lines: Vec<&str> = body.lines().collect();
        let headers = format!("Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,{iv}\n");
        lines.insert(1, headers.trim_end());
        let mut out = lines.join("\n");
        out.push('\n');
        out
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

fn random_bytes(n: usize) -> Vec<u8> {
    use rsa::rand_core::RngCore;
    let mut out = vec![0u8; n];
    rand_core_os().fill_bytes(&mut out);
    out
}

/// A DER TLV with a definite length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn der_seq(parts: &[&[u8]]) -> Vec<u8> {
    der(0x30, &parts.concat())
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
    /// serverAuth.
    Server,
    /// clientAuth.
    Client,
    /// serverAuth and clientAuth.
    Both,
    /// No extendedKeyUsage extension.
    None,
}

/// Everything a leaf needs; start from `LeafSpec::new` and adjust.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// Subject common name.
    pub cn: String,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// IP address SANs.
    pub ips: Vec<IpAddr>,
    /// URI SANs.
    pub uris: Vec<String>,
    /// Key algorithm.
    pub alg: Alg,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Extended key usage.
    pub eku: Eku,
    /// Issue as a CA certificate.
    pub is_ca: bool,
    /// Extra extensions: OID arcs, critical flag, DER content of the extension value.
    pub extensions: Vec<(Vec<u64>, bool, Vec<u8>)>,
    /// keyUsage bits; `None`: digitalSignature and keyEncipherment; empty: no extension.
    pub key_usages: Option<Vec<KeyUsagePurpose>>,
}

impl LeafSpec {
    /// A P-256 leaf for `dns` (CN and one DNS SAN), server and client usage, valid from an
    /// hour ago for 30 days.
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
            extensions: Vec::new(),
            key_usages: None,
        }
    }
    /// Sets the key algorithm.
    pub fn alg(mut self, alg: Alg) -> Self {
        self.alg = alg;
        self
    }
    /// Sets the validity window.
    pub fn valid(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }
    /// Sets the extended key usage.
    pub fn eku(mut self, eku: Eku) -> Self {
        self.eku = eku;
        self
    }
    /// Replaces the DNS SANs (the common name stays).
    pub fn dns(mut self, names: &[&str]) -> Self {
        self.dns = names.iter().map(|n| n.to_string()).collect();
        self
    }
    /// Adds an IP address SAN.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ips.push(ip);
        self
    }
    /// Adds a URI SAN (e.g. a SPIFFE ID).
    pub fn uri(mut self, uri: &str) -> Self {
        self.uris.push(uri.to_string());
        self
    }
    /// Sets the keyUsage bits (an empty slice: no keyUsage extension at all).
    pub fn key_usage(mut self, usages: &[KeyUsagePurpose]) -> Self {
        self.key_usages = Some(usages.to_vec());
        self
    }
    /// Issues the "leaf" as a CA certificate (basicConstraints CA:TRUE).
    pub fn ca(mut self) -> Self {
        self.is_ca = true;
        self
    }
    /// Adds an extension (`oid` as arcs, `content` the DER inside its OCTET STRING), e.g. an
    /// unknown critical one, or a large one to make the certificate large.
    pub fn extension(mut self, oid: &[u64], critical: bool, content: Vec<u8>) -> Self {
        self.extensions.push((oid.to_vec(), critical, content));
        self
    }
}

/// A certificate authority (root or intermediate).
pub struct Ca {
    /// The CA certificate, DER.
    pub cert_der: Vec<u8>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA's signing key.
    pub key: Key,
    params: CertificateParams,
}

/// An issued leaf with its key.
pub struct Leaf {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key.
    pub key: Key,
}

impl Leaf {
    /// SHA-256 of the certificate's DER, lowercase hex: how certgate's `/status` names it.
    pub fn fingerprint_sha256(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.cert_der);
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
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

    /// A self-signed root valid from a day ago for ten years, its parameters (basicConstraints
    /// CA, keyUsage keyCertSign, cRLSign and digitalSignature) adjusted by `shape` first.
    pub fn root_with(cn: &str, alg: Alg, shape: impl FnOnce(&mut CertificateParams)) -> Self {
        let now = OffsetDateTime::now_utc();
        let key = Key::generate(alg);
        let mut params = ca_params(cn, now - Duration::days(1), now + Duration::days(3650));
        shape(&mut params);
        let cert = params.self_signed(key.signer()).expect("self-sign root");
        Self {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key,
            params,
        }
    }

    /// An intermediate signed by this CA, valid for five years, its parameters adjusted by
    /// `shape` first (as for [`Ca::root_with`]).
    pub fn intermediate_with(
        &self,
        cn: &str,
        alg: Alg,
        shape: impl FnOnce(&mut CertificateParams),
    ) -> Self {
        let now = OffsetDateTime::now_utc();
        let key = Key::generate(alg);
        let mut params = ca_params(cn, now - Duration::days(1), now + Duration::days(1825));
        shape(&mut params);
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

    /// This CA (its subject and key) certified by `other`, PEM: a cross-signed certificate.
    /// A chain carrying it beside this CA's own certificate verifies to either root, as
    /// Consul, OpenShift and Vault rotate CAs.
    pub fn cross_signed_by(&self, other: &Ca) -> String {
        let mut params = self.params.clone();
        params.serial_number = Some(serial());
        params
            .signed_by(&self.key.public(), &other.issuer())
            .expect("cross-sign")
            .pem()
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
        p.key_usages = spec.key_usages.clone().unwrap_or_else(|| {
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ]
        });
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
        for (oid, critical, content) in &spec.extensions {
            let mut ext = CustomExtension::from_oid_content(oid, content.clone());
            ext.set_criticality(*critical);
            p.custom_extensions.push(ext);
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
    /// The self-signed root (the trust bundle).
    pub root: Ca,
    /// The intermediate the root signed.
    pub intermediate: Ca,
    /// A leaf the intermediate issued.
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

    /// One hierarchy of `alg` per test process, with a leaf for `web.example.com`: RSA key
    /// generation is slow in debug builds, so tests that only need *a* good set share these
    /// and issue any further leaves from `intermediate`.
    pub fn shared(alg: Alg) -> &'static Self {
        use std::sync::OnceLock;
        static SHARED: [OnceLock<Hierarchy>; 4] = [const { OnceLock::new() }; 4];
        let slot = match alg {
            Alg::P256 => 0,
            Alg::P384 => 1,
            Alg::Ed25519 => 2,
            Alg::Rsa2048 => 3,
            Alg::Rsa1024 => panic!("an RSA-1024 key cannot sign a hierarchy"),
        };
        SHARED[slot].get_or_init(|| Self::new(alg, &LeafSpec::new("web.example.com").alg(alg)))
    }

    /// A P-256 hierarchy with a leaf for `dns`.
    pub fn p256(dns: &str) -> Self {
        Self::new(Alg::P256, &LeafSpec::new(dns))
    }

    /// Leaf then intermediate, PEM.
    pub fn chain_pem(&self) -> String {
        self.chain_pem_of(&self.leaf)
    }

    /// Another leaf of this hierarchy then the intermediate, PEM.
    pub fn chain_pem_of(&self, leaf: &Leaf) -> String {
        format!("{}{}", leaf.cert_pem, self.intermediate.cert_pem)
    }
}
