use certgate_testkit::pki::rcgen::{
    BasicConstraints, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, NameConstraints,
};
use certgate_testkit::pki::{Alg, Ca, KeyUsagePurpose, Leaf, LeafSpec};

use super::*;

const NAME: &str = "web.example.com";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn refusal_text(f: Option<Failure>) -> String {
    f.map(|f| f.to_string()).unwrap_or_default()
}

// --- keyUsage for TLS ---

#[test]
fn digital_signature_allows_every_key_type_and_side() {
    let ds_ke = DIGITAL_SIGNATURE | (1 << 2);
    for alg in ["ECDSA P-256", "RSA", "Ed25519"] {
        for usage in [Usage::Server, Usage::Client, Usage::Both] {
            assert_eq!(
                key_usage_verdict(ds_ke, alg, usage),
                Ok(KeyUsageOk::Allows(
                    "digitalSignature, keyEncipherment".into()
                )),
                "{alg} {usage:?}"
            );
        }
    }
}

#[test]
fn without_digital_signature_every_key_type_is_refused_naming_who_refuses() {
    let ke = 1 << 2;
    let text = |flags, alg, usage| match key_usage_verdict(flags, alg, usage) {
        Err(f) => {
            assert_eq!(f.reason(), crate::labels::Reason::KeyUsage);
            f.to_string()
        }
        Ok(ok) => panic!("{alg} {usage:?} passed: {ok:?}"),
    };
    let ec = text(ke, "ECDSA P-256", Usage::Server);
    assert!(
        ec.contains("(keyEncipherment) lacks digitalSignature"),
        "{ec}"
    );
    assert!(ec.contains("nginx") && ec.contains("TLS 1.2"), "{ec}");
    assert!(!ec.contains("client certificate"), "{ec}");
    let rsa = text(ke, "RSA", Usage::Server);
    assert!(
        rsa.contains("static-RSA") && rsa.contains("Firefox"),
        "{rsa}"
    );
    let ed = text(0, "Ed25519", Usage::Server);
    assert!(ed.contains("keyUsage (none)"), "{ed}");
    let client = text(ke, "ECDSA P-256", Usage::Client);
    assert!(
        client.contains("CertificateVerify") && client.contains("OpenSSL"),
        "{client}"
    );
    assert!(!client.contains("server certificate"), "{client}");
    // OpenSSL's sslclient purpose takes keyAgreement instead; Java and NSS do not.
    let agreement = text(KEY_AGREEMENT, "ECDSA P-256", Usage::Client);
    assert!(
        agreement.contains("OpenSSL lets keyAgreement stand in"),
        "{agreement}"
    );
    let both = text(ke, "RSA", Usage::Both);
    assert!(
        both.contains("server certificate") && both.contains("client certificate"),
        "{both}"
    );
}

#[test]
fn key_usage_is_read_from_the_leaf() {
    let root = Ca::root("ku root", Alg::P256);
    let leaf = |ku: &[KeyUsagePurpose]| root.leaf(&LeafSpec::new(NAME).key_usage(ku));
    let ke_only = leaf(&[KeyUsagePurpose::KeyEncipherment]);
    assert!(tls_key_usage(&ke_only.cert_der, "ECDSA P-256", Usage::Server).is_err());
    let none = leaf(&[]);
    assert_eq!(
        tls_key_usage(&none.cert_der, "ECDSA P-256", Usage::Both),
        Ok(KeyUsageOk::Absent)
    );
    let ds = leaf(&[KeyUsagePurpose::DigitalSignature]);
    assert_eq!(
        tls_key_usage(&ds.cert_der, "ECDSA P-256", Usage::Both),
        Ok(KeyUsageOk::Allows("digitalSignature".into()))
    );
    assert!(tls_key_usage(b"not a certificate", "RSA", Usage::Server).is_err());
}

// --- DER ---

#[test]
fn tlv_reads_definite_minimal_lengths_only() {
    let short = tlv(&[0x04, 2, 0xaa, 0xbb, 0xff]).unwrap();
    assert_eq!(
        (short.tag, short.contents, short.rest),
        (4, &[0xaa, 0xbb][..], &[0xff][..])
    );
    assert_eq!(short.whole, &[0x04, 2, 0xaa, 0xbb]);
    for len in [0usize, 1, 127, 128, 255, 256, 300, 70_000] {
        let mut der = Vec::new();
        push_tlv(&mut der, 0x30, &vec![7; len]);
        let t = tlv(&der).unwrap();
        assert_eq!(
            (t.tag, t.contents.len(), t.whole.len(), t.rest.len()),
            (0x30, len, der.len(), 0)
        );
    }
    for bad in [
        &[][..],
        &[0x30],
        &[0x30, 0x80, 0, 0],          // indefinite
        &[0x30, 0x81, 0x05, 1, 2, 3], // non-minimal, and short
        &[0x30, 0x82, 0x00, 0x80],    // leading zero
        &[0x30, 0x85, 1, 1, 1, 1, 1], // five length bytes
        &[0x30, 3, 1, 2],             // truncated
        &[0x1f, 1, 0],                // high tag number
    ] {
        assert!(tlv(bad).is_none(), "{bad:?}");
    }
}

// --- names ---

const O: &[u8] = &[0x55, 4, 10];
const CN: &[u8] = &[0x55, 4, 3];
const UTF8: u8 = 0x0c;
const PRINTABLE: u8 = 0x13;

/// A Name's DER: one RDN per (attribute OID, string tag, value).
fn name_der(rdns: &[(&[u8], u8, &str)]) -> Vec<u8> {
    let mut seq = Vec::new();
    for (oid, tag, value) in rdns {
        let mut atv = Vec::new();
        push_tlv(&mut atv, 0x06, oid);
        push_tlv(&mut atv, *tag, value.as_bytes());
        let mut attr = Vec::new();
        push_tlv(&mut attr, 0x30, &atv);
        let mut set = Vec::new();
        push_tlv(&mut set, 0x31, &attr);
        seq.extend(set);
    }
    let mut out = Vec::new();
    push_tlv(&mut out, 0x30, &seq);
    out
}

fn parse_name(der: &[u8]) -> X509Name<'_> {
    X509Name::from_der(der).unwrap().1
}

#[test]
fn within_is_an_rdn_prefix_compared_as_openssl_compares() {
    let base = name_der(&[(O, UTF8, "Example")]);
    let inside = name_der(&[(O, PRINTABLE, "  example "), (CN, UTF8, "leaf")]);
    let other = name_der(&[(O, UTF8, "Examples"), (CN, UTF8, "leaf")]);
    let reversed = name_der(&[(CN, UTF8, "leaf"), (O, UTF8, "Example")]);
    let empty = name_der(&[]);
    let (base, inside, other, reversed, empty) = (
        parse_name(&base),
        parse_name(&inside),
        parse_name(&other),
        parse_name(&reversed),
        parse_name(&empty),
    );
    assert!(within(&inside, &base));
    assert!(within(&base, &base));
    assert!(!within(&other, &base));
    assert!(!within(&reversed, &base), "a prefix, not a subset");
    assert!(!within(&base, &inside), "longer than the name");
    assert!(within(&inside, &empty), "the empty base holds every name");

    let a = name_der(&[(O, UTF8, "Example  Corp"), (CN, UTF8, "Root")]);
    let b = name_der(&[(O, PRINTABLE, "example corp"), (CN, UTF8, " ROOT")]);
    let c = name_der(&[(O, UTF8, "Example Corp"), (CN, UTF8, "Root 2")]);
    assert!(names_equal(&parse_name(&a), &parse_name(&b)));
    assert!(!names_equal(&parse_name(&a), &parse_name(&c)));
}

/// NameConstraints content: permitted (a0) and excluded (a1) GeneralSubtrees.
fn constraints(permitted: &[Vec<u8>], excluded: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, subtrees) in [(0xa0, permitted), (0xa1, excluded)] {
        if subtrees.is_empty() {
            continue;
        }
        let mut list = Vec::new();
        for base in subtrees {
            push_tlv(&mut list, 0x30, base);
        }
        push_tlv(&mut out, tag, &list);
    }
    out
}

fn dir_name(der: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_tlv(&mut out, 0xa4, der);
    out
}

fn dns(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    push_tlv(&mut out, 0x82, name.as_bytes());
    out
}

#[test]
fn directory_name_subtrees_split_from_other_forms() {
    let example = name_der(&[(O, UTF8, "Example")]);
    let evil = name_der(&[(O, UTF8, "Evil")]);
    let nc = constraints(
        &[dir_name(&example), dns("example.com")],
        &[dir_name(&evil)],
    );
    let split = split_directory_names(&nc).unwrap();
    assert_eq!((split.permitted.len(), split.excluded.len()), (1, 1));
    assert_eq!(split.others, Some(constraints(&[dns("example.com")], &[])));
    let leaf = name_der(&[(O, UTF8, "Example"), (CN, UTF8, "leaf")]);
    let stray = name_der(&[(O, UTF8, "Evil"), (CN, UTF8, "leaf")]);
    assert!(split.admits(&parse_name(&leaf)));
    assert!(!split.admits(&parse_name(&stray)));
    assert!(
        split.admits(&parse_name(&name_der(&[]))),
        "an empty subject is not checked"
    );

    // Only directory names: nothing left for webpki.
    let only = constraints(&[], &[dir_name(&evil)]);
    let split = split_directory_names(&only).unwrap();
    assert!(split.others.is_none());
    assert!(split.admits(&parse_name(&leaf)));
    assert!(!split.admits(&parse_name(&stray)));

    // Not NameConstraints content.
    assert!(split_directory_names(&[0xa2, 0]).is_none());
    assert!(split_directory_names(&[0xa0, 2, 0x04, 0]).is_none());
    assert!(split_directory_names(&[0xa0, 4, 0x30, 2, 0xa4, 0]).is_none());
}

// --- signatures ---

fn spki_of(der: &[u8]) -> Vec<u8> {
    let cert = X509Certificate::from_der(der).unwrap().1;
    tlv(cert.public_key().raw).unwrap().contents.to_vec()
}

#[test]
fn signed_by_checks_the_issuer_key_and_every_signed_byte() {
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    for alg in [Alg::P256, Alg::Ed25519] {
        let root = Ca::root("sig root", alg);
        let inter = root.intermediate("sig intermediate", alg);
        let stranger = Ca::root("sig root", alg);
        assert!(signed_by(&inter.cert_der, &spki_of(&root.cert_der), algs));
        assert!(!signed_by(
            &inter.cert_der,
            &spki_of(&stranger.cert_der),
            algs
        ));
        assert!(!signed_by(&inter.cert_der, &spki_of(&inter.cert_der), algs));
        // Flip a byte inside the subject: the signature no longer covers it.
        let mut tampered = inter.cert_der.clone();
        let at = tampered
            .windows(16)
            .position(|w| w == b"sig intermediate")
            .unwrap();
        tampered[at] ^= 0x20;
        assert!(!signed_by(&tampered, &spki_of(&root.cert_der), algs));
        assert!(!signed_by(b"garbage", &spki_of(&root.cert_der), algs));
    }
}

// --- refusals on a verified path ---

fn path<'a>(leaf: &'a Leaf, cas: &[&'a Ca]) -> Vec<&'a [u8]> {
    let mut ders: Vec<&[u8]> = vec![&leaf.cert_der];
    ders.extend(cas.iter().map(|c| c.cert_der.as_slice()));
    ders
}

#[test]
fn a_conforming_hierarchy_is_not_refused() {
    let root = Ca::root("good root", Alg::P256);
    let inter = root.intermediate("good intermediate", Alg::P256);
    let leaf = inter.leaf(&LeafSpec::new(NAME));
    for side in [Side::Server, Side::Client] {
        assert_eq!(path_refusal(&path(&leaf, &[&inter, &root]), side), None);
    }
    assert_eq!(anchor_refusal(&root.cert_der), None);
    assert!(anchor_refusal(b"junk").is_some());
}

#[test]
fn roots_openssl_will_not_use_are_refused_saying_why() {
    let with = |shape: fn(&mut certgate_testkit::pki::rcgen::CertificateParams)| {
        Ca::root_with("odd root", Alg::P256, shape)
    };
    let cases: [(Ca, &str); 6] = [
        (
            with(|p| p.is_ca = IsCa::ExplicitNoCa),
            "not a CA (cA FALSE)",
        ),
        (
            with(|p| p.key_usages = vec![KeyUsagePurpose::DigitalSignature]),
            "lacks keyCertSign",
        ),
        (
            with(|p| p.is_ca = IsCa::NoCa),
            "keyCertSign without basicConstraints",
        ),
        (
            with(|p| {
                p.is_ca = IsCa::NoCa;
                p.key_usages.clear();
            }),
            "no basicConstraints",
        ),
        (
            with(|p| {
                let mut ext = CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![5, 0]);
                ext.set_criticality(true);
                p.custom_extensions.push(ext);
            }),
            "critical extension 1.2.3.4",
        ),
        (
            with(|p| p.distinguished_name = DistinguishedName::new()),
            "subject is empty",
        ),
    ];
    for (root, says) in cases {
        let leaf = root.leaf(&LeafSpec::new(NAME));
        let why = anchor_refusal(&root.cert_der).unwrap_or_default();
        assert!(why.contains(says), "{says}: {why}");
        let f = path_refusal(&path(&leaf, &[&root]), Side::Server);
        assert!(
            matches!(
                &f,
                Some(Failure::NonConforming {
                    role: Role::Anchor,
                    ..
                })
            ),
            "{says}: {f:?}"
        );
        assert!(refusal_text(f).contains(says), "{says}");
    }
}

#[test]
fn a_roots_extended_key_usage_limits_the_chain_for_its_side() {
    let root = Ca::root_with("client root", Alg::P256, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });
    let leaf = root.leaf(&LeafSpec::new(NAME));
    let f = path_refusal(&path(&leaf, &[&root]), Side::Server);
    assert!(
        matches!(
            &f,
            Some(Failure::WrongUsage {
                role: Role::Anchor,
                needed: "serverAuth",
                ..
            })
        ),
        "{f:?}"
    );
    assert!(refusal_text(f).contains("every leaf under it as a server certificate"));
    assert_eq!(path_refusal(&path(&leaf, &[&root]), Side::Client), None);
}

#[test]
fn a_roots_path_len_counts_only_intermediates_not_self_issued() {
    let root = Ca::root_with("short root", Alg::P256, |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    });
    let cert = X509Certificate::from_der(&root.cert_der).unwrap().1;
    assert_eq!(path_len_exceeded(&cert, &[]), None);
    assert_eq!(path_len_exceeded(&cert, &[false]), None, "self-issued");
    assert!(path_len_exceeded(&cert, &[true])
        .unwrap()
        .contains("pathLenConstraint 0"));

    let inter = root.intermediate("under short root", Alg::P256);
    let leaf = inter.leaf(&LeafSpec::new(NAME));
    let f = path_refusal(&path(&leaf, &[&inter, &root]), Side::Server);
    assert!(refusal_text(f).contains("path length constraint exceeded"));
}

#[test]
fn a_ca_without_key_cert_sign_is_refused() {
    let root = Ca::root("root", Alg::P256);
    let inter = root.intermediate_with("signless", Alg::P256, |p| {
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    });
    let leaf = inter.leaf(&LeafSpec::new(NAME));
    let f = path_refusal(&path(&leaf, &[&inter, &root]), Side::Server);
    assert!(
        matches!(
            &f,
            Some(Failure::NonConforming {
                role: Role::Intermediate,
                ..
            })
        ),
        "{f:?}"
    );
    assert!(refusal_text(f).contains("lacks keyCertSign"));
}

/// An AuthorityKeyIdentifier extension holding only `keyid`.
fn akid(keyid: &[u8]) -> Vec<u8> {
    let mut inner = Vec::new();
    push_tlv(&mut inner, 0x80, keyid);
    let mut out = Vec::new();
    push_tlv(&mut out, 0x30, &inner);
    out
}

#[test]
fn an_authority_key_identifier_must_name_the_issuer() {
    let root = Ca::root("root", Alg::P256);
    let inter = root.intermediate("intermediate", Alg::P256);
    let inter_cert = X509Certificate::from_der(&inter.cert_der).unwrap().1;
    let skid = subject_key_id(&inter_cert)
        .expect("rcgen writes a CA's SKI")
        .to_vec();
    let right = inter.leaf(&LeafSpec::new(NAME).extension(&[2, 5, 29, 35], false, akid(&skid)));
    assert_eq!(
        path_refusal(&path(&right, &[&inter, &root]), Side::Server),
        None
    );
    let wrong = inter.leaf(&LeafSpec::new(NAME).extension(&[2, 5, 29, 35], false, akid(&[1; 20])));
    let f = path_refusal(&path(&wrong, &[&inter, &root]), Side::Server);
    assert!(
        matches!(
            &f,
            Some(Failure::NonConforming {
                role: Role::Leaf,
                ..
            })
        ),
        "{f:?}"
    );
    assert!(refusal_text(f).contains("is not its issuer \"CN=intermediate"));
}

// --- paths webpki refuses and RFC 5280 accepts ---

struct Material {
    leaf: Vec<u8>,
    intermediates: Vec<CertificateDer<'static>>,
    anchors: Vec<Vec<u8>>,
}

impl Material {
    fn new(leaf: &Leaf, intermediates: &[&Ca], anchors: &[&Ca]) -> Self {
        Self {
            leaf: leaf.cert_der.clone(),
            intermediates: intermediates
                .iter()
                .map(|c| CertificateDer::from(c.cert_der.clone()))
                .collect(),
            anchors: anchors.iter().map(|c| c.cert_der.clone()).collect(),
        }
    }

    fn webpki(&self) -> Result<(), webpki::Error> {
        let leaf = CertificateDer::from(self.leaf.as_slice());
        let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
        let anchors: Vec<_> = self
            .anchors
            .iter()
            .map(|a| {
                webpki::anchor_from_trusted_cert(&CertificateDer::from(a.as_slice()))
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let algs = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all;
        let t = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now() as u64));
        ee.verify_for_usage(
            algs,
            &anchors,
            &self.intermediates,
            t,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map(|_| ())
    }

    fn rfc5280(&self) -> Option<Result<RfcPath, Failure>> {
        let leaf = CertificateDer::from(self.leaf.as_slice());
        let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
        let anchors: Vec<&[u8]> = self.anchors.iter().map(Vec::as_slice).collect();
        assert!(webpki_departs(&self.intermediates, &anchors));
        rfc5280_path(
            &ee,
            &self.leaf,
            &self.intermediates,
            &anchors,
            &[Side::Server, Side::Client],
            now(),
        )
    }
}

fn dn(pairs: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (t, v) in pairs {
        dn.push(t.clone(), *v);
    }
    dn
}

#[test]
fn directory_name_constraints_are_checked_where_webpki_refuses_them() {
    let excluded = |name: &'static str| {
        move |p: &mut certgate_testkit::pki::rcgen::CertificateParams| {
            p.name_constraints = Some(NameConstraints {
                permitted_subtrees: vec![GeneralSubtree::DnsName("example.com".into())],
                excluded_subtrees: vec![GeneralSubtree::DirectoryName(dn(&[(
                    DnType::CommonName,
                    name,
                )]))],
            });
        }
    };
    // On the root: a leaf outside the excluded subtree passes; one inside does not.
    let root = Ca::root_with("nc root", Alg::P256, excluded("evil.example.com"));
    let inter = root.intermediate("nc intermediate", Alg::P256);
    let good = inter.leaf(&LeafSpec::new(NAME));
    let m = Material::new(&good, &[&inter], &[&root]);
    assert_eq!(m.webpki(), Err(webpki::Error::NameConstraintViolation));
    assert_eq!(
        m.rfc5280(),
        Some(Ok(RfcPath {
            intermediates: vec![0],
            anchor: 0
        }))
    );
    let evil = inter.leaf(&LeafSpec::new("evil.example.com"));
    assert_eq!(Material::new(&evil, &[&inter], &[&root]).rfc5280(), None);
    // The DNS constraint still applies, by webpki.
    let elsewhere = inter.leaf(&LeafSpec::new("web.example.org"));
    assert_eq!(
        Material::new(&elsewhere, &[&inter], &[&root]).rfc5280(),
        None
    );

    // On an intermediate, whose own link is verified here.
    let root = Ca::root("plain root", Alg::P256);
    let inter = root.intermediate_with("nc intermediate", Alg::P256, excluded("evil.example.com"));
    let good = inter.leaf(&LeafSpec::new(NAME));
    let m = Material::new(&good, &[&inter], &[&root]);
    assert_eq!(m.webpki(), Err(webpki::Error::NameConstraintViolation));
    assert!(matches!(m.rfc5280(), Some(Ok(_))));
    let evil = inter.leaf(&LeafSpec::new("evil.example.com"));
    assert_eq!(Material::new(&evil, &[&inter], &[&root]).rfc5280(), None);
    // Another root of the same name cannot stand in: the signature is checked.
    let impostor = Ca::root("plain root", Alg::P256);
    assert_eq!(
        Material::new(&good, &[&inter], &[&impostor]).rfc5280(),
        None
    );
}

#[test]
fn a_self_issued_intermediate_does_not_count_against_path_len() {
    let root = Ca::root("pl root", Alg::P256);
    let short = root.intermediate_with("pl A", Alg::P256, |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    });
    // Key rollover: "pl A" certifies its next key under the same name.
    let rolled = short.intermediate("pl A", Alg::P256);
    let leaf = rolled.leaf(&LeafSpec::new(NAME));
    let m = Material::new(&leaf, &[&short, &rolled], &[&root]);
    assert!(m.webpki().is_err());
    assert_eq!(
        m.rfc5280(),
        Some(Ok(RfcPath {
            intermediates: vec![1, 0],
            anchor: 0
        }))
    );

    // Negative controls: a CA of another name counts; an expired self-issued CA, or one signed
    // by another key of the same name, does not verify.
    let other = short.intermediate("pl B", Alg::P256);
    let under_other = other.leaf(&LeafSpec::new(NAME));
    let m = Material::new(&under_other, &[&short, &other], &[&root]);
    assert_eq!(m.webpki(), Err(webpki::Error::PathLenConstraintViolated));
    assert_eq!(
        rfc5280_path(
            &webpki::EndEntityCert::try_from(&CertificateDer::from(m.leaf.as_slice())).unwrap(),
            &m.leaf,
            &m.intermediates,
            &[&root.cert_der],
            &[Side::Server],
            now(),
        ),
        None
    );
    let expired = short.intermediate_with("pl A", Alg::P256, |p| {
        p.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(10);
        p.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    });
    let under_expired = expired.leaf(&LeafSpec::new(NAME));
    assert_eq!(
        Material::new(&under_expired, &[&short, &expired], &[&root]).rfc5280(),
        None
    );
    let forged_signer = Ca::root("pl root", Alg::P256).intermediate("pl A", Alg::P256);
    let forged = forged_signer.intermediate("pl A", Alg::P256);
    let under_forged = forged.leaf(&LeafSpec::new(NAME));
    assert_eq!(
        Material::new(&under_forged, &[&short, &forged], &[&root]).rfc5280(),
        None
    );
}

#[test]
fn the_search_for_paths_is_bounded() {
    // Forty self-issued CAs of one name and a bundle without that name: every order of them
    // is a partial path by name (40^6 of them without a bound), none reaches an anchor.
    let root = Ca::root("loop", Alg::P256);
    let many: Vec<Ca> = (0..40)
        .map(|_| root.intermediate("loop", Alg::P256))
        .collect();
    let leaf = many[0].leaf(&LeafSpec::new(NAME));
    let refs: Vec<&Ca> = many.iter().collect();
    let m = Material::new(&leaf, &refs, &[&Ca::root("elsewhere", Alg::P256)]);
    let started = std::time::Instant::now();
    assert_eq!(m.rfc5280(), None);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn mutated_certificates_never_panic() {
    let root = Ca::root_with("fuzz root", Alg::P256, |p| {
        p.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![GeneralSubtree::DirectoryName(dn(&[(
                DnType::CommonName,
                "fuzz",
            )]))],
            excluded_subtrees: vec![GeneralSubtree::DnsName("evil.example".into())],
        });
    });
    let inter = root.intermediate("fuzz", Alg::P256);
    let leaf = inter.leaf(&LeafSpec::new(NAME).extension(&[2, 5, 29, 35], false, akid(&[7; 20])));
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..1_000 {
        let pick = |d: &Vec<u8>, n: u64| -> Vec<u8> {
            let mut d = d.clone();
            let at = (n as usize) % d.len();
            match round % 3 {
                0 => d[at] ^= 1 << ((n >> 32) % 8),
                1 => d.truncate(at),
                _ => d[at] = 0xff,
            }
            d
        };
        let (l, i, r) = (
            pick(&leaf.cert_der, next()),
            pick(&inter.cert_der, next()),
            pick(&root.cert_der, next()),
        );
        for side in [Side::Server, Side::Client] {
            let _ = path_refusal(&[&l, &i, &r], side);
            let _ = path_refusal(&[&l], side);
        }
        let _ = anchor_refusal(&r);
        let _ = tls_key_usage(&l, "ECDSA P-256", Usage::Both);
        let _ = signed_by(&i, &r, algs);
        let _ = signed_parts(&l);
        let _ = split_directory_names(&r);
        let inters = [CertificateDer::from(i.clone())];
        let _ = webpki_departs(&inters, &[&r]);
        let good_leaf = CertificateDer::from(leaf.cert_der.as_slice());
        if let Ok(ee) = webpki::EndEntityCert::try_from(&good_leaf) {
            let _ = rfc5280_path(&ee, &leaf.cert_der, &inters, &[&r], &[Side::Server], now());
        }
    }
}
