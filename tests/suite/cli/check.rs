//! `check`: pass and fail, exit 1 naming the file and the reason, the `--json` report, and
//! configs of several sets.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::util::pki::{Alg, Ca, Hierarchy, LeafSpec};
use crate::util::{self, texts, write};

use super::{
    assert_exit, assert_fails_naming, check_named, checks, json, not_after, rfc3339, sha256_hex,
    show, Files, NAME,
};

#[test]
fn check_passes_on_a_good_hierarchy() {
    let h = Hierarchy::shared(Alg::P256);
    let out = Files::of(h, &h.leaf).check(&[]);
    assert_exit(&out, 0);
    let (stdout, stderr) = texts(&out);
    assert!(stdout.contains("PASS: 1 set(s) valid"), "{stdout}");
    assert!(stdout.contains("✓ handshake"), "{stdout}");
    assert!(stdout.contains("effective expiry"), "{stdout}");
    assert!(
        stderr.is_empty(),
        "nothing on stderr when all passes: {stderr}"
    );
}

#[test]
fn failing_material_exits_1_naming_file_and_reason_on_stderr() {
    let h = Hierarchy::shared(Alg::P256);
    let t = OffsetDateTime::now_utc();
    let expired = h.intermediate.leaf(
        &LeafSpec::new(NAME).valid(t - time::Duration::days(30), t - time::Duration::hours(1)),
    );
    let files = Files::of(h, &expired);
    assert_fails_naming(&files.check(&[]), "expired", &files.cert);

    let other = h.intermediate.leaf(&LeafSpec::new(NAME));
    let files = Files::raw(
        h.chain_pem().as_bytes(),
        other.key.pkcs8_pem().as_bytes(),
        h.root.cert_pem.as_bytes(),
    );
    assert_fails_naming(&files.check(&[]), "key_mismatch", &files.key);

    let stranger = Ca::root("stranger root", Alg::P256);
    let files = Files::raw(
        h.chain_pem().as_bytes(),
        h.leaf.key.pkcs8_pem().as_bytes(),
        stranger.cert_pem.as_bytes(),
    );
    assert_fails_naming(&files.check(&[]), "unknown_issuer", &files.cert);

    let files = Files::of(h, &h.leaf);
    let out = util::certgate(&[
        "check",
        "--cert",
        &files.cert,
        "--key",
        &files.key,
        "--trust",
        &files.trust,
        "--name",
        "api.example.com",
    ]);
    assert_fails_naming(&out, "name_mismatch", &files.cert);
    assert!(texts(&out).1.contains("api.example.com"), "{}", show(&out));
}

#[test]
fn missing_unreadable_or_unparsable_files_exit_1() {
    let h = Hierarchy::shared(Alg::P256);
    let files = Files::of(h, &h.leaf);
    let missing = files.dir.path().join("absent.key").display().to_string();
    let directory = files.dir.path().join("bundle.d");
    std::fs::create_dir(&directory).unwrap();
    let directory = directory.display().to_string();
    let garbage = write(
        files.dir.path(),
        "garbage.crt",
        "this is not a certificate\n",
    );
    let chain = h.chain_pem();
    let truncated = write(files.dir.path(), "cut.crt", &chain[..chain.len() - 40]);

    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["--key", &missing, "--cert", &files.cert],
            "missing",
            &missing,
        ),
        (
            &["--cert", &files.cert, "--trust", &directory],
            "unreadable",
            &directory,
        ),
        (&["--cert", &garbage], "no_certificate", &garbage),
        (&["--cert", &truncated], "bad_encoding", &truncated),
    ];
    for (args, reason, file) in cases {
        let mut all = vec!["check"];
        all.extend_from_slice(args);
        let out = util::certgate(&all);
        assert_fails_naming(&out, reason, file);
    }
}

#[test]
fn json_report_has_files_checks_expiry_and_handshake() {
    let h = Hierarchy::shared(Alg::P256);
    let files = Files::of(h, &h.leaf);
    let out = files.check(&["--json"]);
    assert_exit(&out, 0);
    let doc = json(&out);
    assert_eq!(doc["passed"], true);
    let at = OffsetDateTime::parse(doc["at"].as_str().unwrap(), &Rfc3339).unwrap();
    assert!((at - OffsetDateTime::now_utc()).abs() < time::Duration::minutes(5));
    let sets = doc["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 1);
    let set = &sets[0];
    assert_eq!(set["name"], "default");
    assert_eq!(set["passed"], true);

    // Files: role, path and the SHA-256 of exactly what is on disk.
    let listed: Vec<(String, String, String)> = set["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["role"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap().to_string(),
                f["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expect: Vec<(String, String, String)> = [
        ("cert", &files.cert),
        ("key", &files.key),
        ("trust", &files.trust),
    ]
    .iter()
    .map(|(role, path)| {
        (
            role.to_string(),
            path.to_string(),
            sha256_hex(&std::fs::read(path).unwrap()),
        )
    })
    .collect();
    assert_eq!(listed, expect);

    // Checks: every one has a status; none failed, so no reason.
    let names: Vec<&str> = checks(set)
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for want in [
        "trust_bundle",
        "chain",
        "names",
        "key",
        "strength",
        "validity",
        "handshake",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    for c in checks(set) {
        assert_eq!(c["status"], "pass", "{c}");
        assert!(c["reason"].is_null(), "{c}");
        assert!(!c["message"].as_str().unwrap().is_empty(), "{c}");
    }

    // Effective expiry: the leaf's not-after (the intermediate lives longer).
    let expiry = not_after(&h.leaf.cert_der);
    assert!(expiry < not_after(&h.intermediate.cert_der));
    assert_eq!(set["effective_expiry"], rfc3339(expiry));
    assert_eq!(set["verdict"]["effective_expiry"], expiry);
    let roles: Vec<&str> = set["verdict"]["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["leaf", "intermediate", "anchor"]);

    // Handshake details.
    let hs = &set["handshake"];
    assert_eq!(hs["server_name"], NAME);
    assert_eq!(hs["client_auth"], false);
    assert!(
        hs["protocol"].as_str().unwrap().starts_with("TLSv1_"),
        "{hs}"
    );
    assert!(!hs["cipher_suite"].as_str().unwrap().is_empty(), "{hs}");
    assert!(hs["duration_ms"].as_f64().unwrap() > 0.0, "{hs}");
    // By default one handshake per version clients speak, newest first.
    let versions: Vec<(&str, &str)> = hs["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap(),
                v["protocol"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(versions, [("1.3", "TLSv1_3"), ("1.2", "TLSv1_2")], "{hs}");
    assert!(
        hs["versions"][1]["cipher_suite"]
            .as_str()
            .unwrap()
            .starts_with("TLS_ECDHE_ECDSA_"),
        "{hs}"
    );
    assert_eq!(set["key"]["algorithm"], "ECDSA P-256");
    assert_eq!(set["key"]["encoding"], "PKCS#8");
}

#[test]
fn tls_versions_choose_the_self_handshakes() {
    let h = Hierarchy::shared(Alg::P256);
    let files = Files::raw(
        h.chain_pem().as_bytes(),
        h.leaf.key.pkcs8_pem().as_bytes(),
        h.root.cert_pem.as_bytes(),
    );
    let out = files.check(&["--json", "--tls-versions", "1.2"]);
    assert_exit(&out, 0);
    let hs = &json(&out)["sets"][0]["handshake"];
    assert_eq!(hs["versions"].as_array().unwrap().len(), 1, "{hs}");
    assert_eq!(hs["protocol"], "TLSv1_2", "{hs}");

    let out = files.check(&["--tls-versions", "1.1"]);
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls_versions") && err.contains("1.1"), "{err}");
}

#[test]
fn json_report_of_failures_carries_the_reasons() {
    let h = Hierarchy::shared(Alg::P256);
    let other = h.intermediate.leaf(&LeafSpec::new(NAME));
    let files = Files::raw(
        h.chain_pem().as_bytes(),
        other.key.pkcs8_pem().as_bytes(),
        h.root.cert_pem.as_bytes(),
    );
    let out = files.check(&["--json"]);
    assert_fails_naming(&out, "key_mismatch", &files.key);
    let doc = json(&out);
    assert_eq!(doc["passed"], false);
    let set = &doc["sets"][0];
    assert_eq!(set["passed"], false);
    let key = check_named(set, "key");
    assert_eq!(key["status"], "fail");
    assert_eq!(key["reason"], "key_mismatch");
    assert_eq!(check_named(set, "handshake")["status"], "skip");
    assert!(set["handshake"].is_null());
    assert!(set["load_error"].is_null());

    // A load failure: no verdict, the reason in load_error, the refused files still hashed.
    let swapped = Files::raw(
        h.leaf.key.pkcs8_pem().as_bytes(),
        h.chain_pem().as_bytes(),
        h.root.cert_pem.as_bytes(),
    );
    let out = swapped.check(&["--json"]);
    assert_fails_naming(&out, "swapped", &swapped.cert);
    let set = &json(&out)["sets"][0];
    assert_eq!(set["load_error"]["reason"], "swapped");
    assert!(set["load_error"]["message"]
        .as_str()
        .unwrap()
        .contains(&swapped.cert));
    assert!(set["verdict"].is_null());
    assert_eq!(
        set["files"][0]["sha256"],
        sha256_hex(&std::fs::read(&swapped.cert).unwrap())
    );
}

#[test]
fn config_with_several_sets_fails_when_one_does() {
    let h = Hierarchy::shared(Alg::P256);
    let web = Files::of(h, &h.leaf);
    let api_leaf = h.intermediate.leaf(&LeafSpec::new("api.example.com"));
    let api = Files::of(h, &api_leaf);
    let t = OffsetDateTime::now_utc();
    let old_leaf = h.intermediate.leaf(
        &LeafSpec::new("old.example.com")
            .valid(t - time::Duration::days(60), t - time::Duration::days(1)),
    );
    let old = Files::of(h, &old_leaf);
    let set = |name: &str, f: &Files, dns: &str| {
        format!(
            "[[set]]\nname = \"{name}\"\ncert = \"{}\"\nkey = \"{}\"\ntrust = \"{}\"\nnames = [\"{dns}\"]\n",
            f.cert, f.key, f.trust
        )
    };
    let good_sets = format!(
        "{}{}",
        set("web", &web, NAME),
        set("api", &api, "api.example.com")
    );
    let all = write(
        web.dir.path(),
        "all.toml",
        format!("{good_sets}{}", set("old", &old, "old.example.com")),
    );
    let out = util::certgate(&["check", "--config", &all]);
    assert_fails_naming(&out, "expired", &old.cert);
    let (stdout, stderr) = texts(&out);
    for name in ["set web", "set api", "set old"] {
        assert!(stdout.contains(name), "{name}: {stdout}");
    }
    assert!(stdout.contains("FAIL: 1 of 3 set(s) failed"), "{stdout}");
    assert!(
        !stderr.contains(&web.cert) && !stderr.contains(&api.cert),
        "only the failing set on stderr: {stderr}"
    );
    let doc = json(&util::certgate(&["check", "--config", &all, "--json"]));
    let verdicts: Vec<(&str, bool)> = doc["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["passed"].as_bool().unwrap()))
        .collect();
    assert_eq!(verdicts, [("web", true), ("api", true), ("old", false)]);
    assert_eq!(doc["passed"], false);

    let good = write(web.dir.path(), "good.toml", good_sets);
    let out = util::certgate(&["check", "--config", &good]);
    assert_exit(&out, 0);
    assert!(
        texts(&out).0.contains("PASS: 2 set(s) valid"),
        "{}",
        show(&out)
    );
}
