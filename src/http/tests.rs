//! The admin router in-process (`tower::ServiceExt::oneshot`, no socket), on an injected
//! clock: readiness flips, verbose output, liveness from the heartbeat, the `/status` shape.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::watch;
use tower::ServiceExt;

use super::{router, AppState};
use crate::metrics::Metrics;
use crate::state::{Heartbeat, LiveMaterial, Mode, SetStatus, Snapshot};

/// Unix seconds the tests start at.
const T0: i64 = 1_700_000_000;
/// When the live material of [`valid`] expires: T0 + 30 days.
const EXPIRY: i64 = T0 + 30 * 86_400;
/// fail_ready_before of the sets here: 1 day.
const FAIL_READY_BEFORE: u64 = 86_400;
const HEARTBEAT_BOUND: Duration = Duration::from_secs(30);

thread_local! {
    /// The injected clock, Unix milliseconds. Per thread: `#[tokio::test]` runs the test and
    /// the router on one thread, and tests run in parallel on others.
    static NOW_MS: Cell<i64> = const { Cell::new(T0 * 1000) };
}

fn clock() -> i64 {
    NOW_MS.with(Cell::get)
}

fn set_now(secs: i64) {
    NOW_MS.with(|c| c.set(secs * 1000));
}

/// The router and the handles a daemon would hold.
struct Admin {
    app: axum::Router,
    snapshot: watch::Sender<Arc<Snapshot>>,
    heartbeat: Heartbeat,
}

impl Admin {
    fn new(snapshot: Snapshot) -> Self {
        let (tx, rx) = watch::channel(Arc::new(snapshot));
        let heartbeat = Heartbeat::default();
        let app = router(AppState {
            snapshot: rx,
            heartbeat: heartbeat.clone(),
            heartbeat_bound: HEARTBEAT_BOUND,
            metrics: Arc::new(Metrics::new().expect("metrics")),
            clock,
        });
        Self {
            app,
            snapshot: tx,
            heartbeat,
        }
    }

    fn publish(&self, snapshot: Snapshot) {
        self.snapshot.send_replace(Arc::new(snapshot));
    }

    /// GET `uri`: status, content type, body.
    async fn get(&self, uri: &str) -> (StatusCode, String, String) {
        let req = Request::get(uri).body(Body::empty()).expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }
}

/// A set with no material yet, as the daemon starts it.
fn pending(name: &str, required: bool) -> SetStatus {
    SetStatus::new(name, Mode::Publish, required, FAIL_READY_BEFORE, 0)
}

/// A set with live material valid until [`EXPIRY`].
fn valid(name: &str, required: bool) -> SetStatus {
    let mut set = pending(name, required);
    set.live_problem = None;
    set.live = Some(LiveMaterial {
        generation: Some(crate::ids::GenerationName::new("..2023_11_14_22_13_20.1")),
        cert_path: format!("/publish/{name}/tls.crt"),
        trust_path: None,
        chain: Arc::from([]),
        anchors: Arc::from([]),
        trust_fingerprint: None,
        effective_expiry: EXPIRY,
        since: crate::time_fmt::rfc3339(T0),
        labels: None,
    });
    set
}

fn snapshot(initialized: bool, sets: Vec<SetStatus>) -> Snapshot {
    Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        initialized,
        sets: sets.into_iter().map(Arc::new).collect(),
        watch_problem: None,
    }
}

#[tokio::test]
async fn readyz_flips_with_initialization_and_the_clock() {
    set_now(T0);
    let admin = Admin::new(snapshot(false, vec![pending("web", true)]));
    let (code, _, body) = admin.get("/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("starting"), "{body}");

    // Initialized, but the one required set has nothing valid.
    admin.publish(snapshot(true, vec![pending("web", true)]));
    let (code, _, body) = admin.get("/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("set web: not evaluated yet"), "{body}");

    admin.publish(snapshot(true, vec![valid("web", true)]));
    let (code, _, body) = admin.get("/readyz").await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "ok\n"));

    // Nothing changes but time: inside fail_ready_before, not ready again.
    set_now(EXPIRY - FAIL_READY_BEFORE as i64 + 1);
    let (code, _, body) = admin.get("/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("within fail_ready_before"), "{body}");

    set_now(EXPIRY + 1);
    let (code, _, body) = admin.get("/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("expired"), "{body}");
}

#[tokio::test]
async fn readyz_verbose_marks_each_set() {
    set_now(T0);
    let admin = Admin::new(snapshot(
        true,
        vec![
            valid("web", true),
            pending("db", true),
            pending("extra", false),
        ],
    ));
    let (code, _, body) = admin.get("/readyz?verbose").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(
        lines,
        [
            "[+]set web ok",
            "[-]set db failed: not evaluated yet",
            "[~]set extra not required: not evaluated yet",
            "not ready",
        ],
        "{body}"
    );

    // A set that is not required does not hold readiness back.
    admin.publish(snapshot(
        true,
        vec![valid("web", true), pending("extra", false)],
    ));
    let (code, _, body) = admin.get("/readyz?verbose").await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.starts_with("[+]set web ok\n[~]set extra"), "{body}");
    assert!(body.ends_with("\nok\n"), "{body}");
}

#[tokio::test]
async fn healthz_fails_when_the_loop_stalls() {
    set_now(T0);
    let admin = Admin::new(snapshot(false, Vec::new()));
    // No turn yet.
    let (code, _, _) = admin.get("/healthz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);

    admin.heartbeat.beat(T0 * 1000);
    assert_eq!(admin.get("/healthz").await.0, StatusCode::OK);

    // Exactly at the bound still live; past it, stalled.
    set_now(T0 + HEARTBEAT_BOUND.as_secs() as i64);
    assert_eq!(admin.get("/healthz").await.0, StatusCode::OK);
    set_now(T0 + HEARTBEAT_BOUND.as_secs() as i64 + 5);
    let (code, _, body) = admin.get("/healthz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.contains("event loop stalled: last turn 35s ago"),
        "{body}"
    );

    // The loop turns again.
    admin.heartbeat.beat(clock());
    assert_eq!(admin.get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn status_has_its_shape_and_filters_by_set() {
    set_now(T0);
    let admin = Admin::new(snapshot(
        true,
        vec![valid("web", true), pending("db", false)],
    ));
    let (code, content_type, body) = admin.get("/status").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let keys: Vec<&str> = doc
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    for key in [
        "now",
        "ready",
        "version",
        "initialized",
        "watch_problem",
        "sets",
    ] {
        assert!(keys.contains(&key), "no {key} in {keys:?}");
    }
    assert_eq!(doc["now"], crate::time_fmt::rfc3339(T0));
    assert_eq!(doc["ready"], true);
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["initialized"], true);
    let names: Vec<&str> = doc["sets"]
        .as_array()
        .expect("sets")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["web", "db"]);
    assert_eq!(doc["sets"][0]["live"]["effective_expiry"], EXPIRY);

    let (code, _, body) = admin.get("/status?set=db").await;
    assert_eq!(code, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(doc["sets"].as_array().map(Vec::len), Some(1));
    assert_eq!(doc["sets"][0]["name"], "db");
    assert_eq!(doc["sets"][0]["live_problem"], "not evaluated yet");

    let (code, _, body) = admin.get("/status?set=nope").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(body, "no set named \"nope\"\n");

    // `ready` follows the clock like /readyz.
    set_now(EXPIRY + 1);
    let (_, _, body) = admin.get("/status").await;
    let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(doc["ready"], false);
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    set_now(T0);
    let admin = Admin::new(snapshot(true, vec![valid("web", true)]));
    let (code, content_type, body) = admin.get("/metrics").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(body.contains("# TYPE certgate_"), "{body}");
    assert_eq!(admin.get("/nope").await.0, StatusCode::NOT_FOUND);
}

/// `/metrics` is streamed in chunks from a blocking thread: with many sets the body arrives
/// whole, every set in it, the state at the request's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_many_sets_arrive_whole() {
    set_now(T0);
    let sets = (0..300).map(|i| valid(&format!("set{i}"), true)).collect();
    let admin = Admin::new(snapshot(true, sets));
    let (code, _, body) = admin.get("/metrics").await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        body.len() > 64 * 1024,
        "more than one chunk: {}",
        body.len()
    );
    for i in [0, 150, 299] {
        let line = format!("certgate_set_ready{{set=\"set{i}\"}} 1\n");
        assert!(body.contains(&line), "{line}");
    }
    assert!(
        body.ends_with("\n") && body.contains("\nprocess_open_fds "),
        "ends with the process"
    );
}

#[test]
fn gzip_is_chosen_by_the_accept_encoding_q_values() {
    let accepts =
        |values: &[&str]| super::server::accepts_gzip(values.iter().map(|v| v.as_bytes()));
    for yes in [
        &["gzip"][..],
        &["GZIP"],
        &["x-gzip"],
        &["gzip, deflate"],
        &["deflate, gzip;q=0.5"],
        &["gzip ; q=1.000"],
        &["*"],
        &["br;q=1.0, *;q=0.1"],
        &["deflate", "gzip"],
        // A named coding wins over the wildcard.
        &["gzip;q=0.2, *;q=0"],
    ] {
        assert!(accepts(yes), "{yes:?}");
    }
    for no in [
        &[][..],
        &[""],
        &["identity"],
        &["br, deflate"],
        &["gzip;q=0"],
        &["gzip;q=0.000"],
        &["gzip;q=0, *"],
        &["*;q=0"],
        // Malformed q-values: the item is ignored.
        &["gzip;q=2"],
        &["gzip;q=0.5000"],
        &["gzip;q=abc"],
        &["gzipped"],
    ] {
        assert!(!accepts(no), "{no:?}");
    }
}

/// In-process: gzip to a reader that asks, the same exposition once decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_gzip_encoded_when_asked() {
    use std::io::Read;
    set_now(T0);
    let sets = (0..300).map(|i| valid(&format!("set{i}"), true)).collect();
    let admin = Admin::new(snapshot(true, sets));
    let req = Request::get("/metrics")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .expect("request");
    let resp = admin.app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(resp.headers()[header::VARY], "Accept-Encoding");
    let gz = resp.into_body().collect().await.expect("body").to_bytes();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .expect("gzip");
    assert!(
        text.len() > 10 * gz.len(),
        "{} from {}",
        text.len(),
        gz.len()
    );
    let (_, _, plain) = admin.get("/metrics").await;
    let without_process = |t: &str| {
        t.lines()
            .filter(|l| !l.contains("process_"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_process(&text), without_process(&plain));
}
