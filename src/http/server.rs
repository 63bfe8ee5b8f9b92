//! The admin router: `/healthz`, `/readyz`, `/status`, `/metrics`. Handlers read the latest
//! snapshot from a `watch` channel and never wait on validation, handshakes or publishing;
//! `/metrics` is written on a blocking thread and streamed.
//! No request logging: kubelet probes and scrapes would flood the logs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::body::Frame;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::metrics::Metrics;
use crate::state::{Heartbeat, SetStatus, Snapshot};

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    /// Latest daemon snapshot.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// The event loop's heartbeat.
    pub heartbeat: Heartbeat,
    /// `/healthz` fails when the loop has not turned for this long.
    pub heartbeat_bound: Duration,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The clock, Unix milliseconds (a parameter so tests can drive time).
    pub clock: fn() -> i64,
}

/// The admin router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz(State(s): State<AppState>) -> Response {
    let now = (s.clock)();
    let last = s.heartbeat.last();
    let age = Duration::from_millis(now.saturating_sub(last).max(0) as u64);
    if last > 0 && age <= s.heartbeat_bound {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("event loop stalled: last turn {}s ago\n", age.as_secs()),
        )
            .into_response()
    }
}

async fn readyz(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let now = (s.clock)() / 1000;
    let snap = s.snapshot.borrow().clone();
    let verdict = snap.readiness(now);
    let mut body = String::new();
    if q.contains_key("verbose") {
        for set in &snap.sets {
            let line = match set.readiness(now) {
                Ok(()) => format!("[+]set {} ok\n", set.name),
                Err(why) if set.required => format!("[-]set {} failed: {why}\n", set.name),
                Err(why) => format!("[~]set {} not required: {why}\n", set.name),
            };
            body.push_str(&line);
        }
    }
    match verdict {
        Ok(()) => {
            body.push_str("ok\n");
            (StatusCode::OK, body).into_response()
        }
        Err(lines) => {
            if !q.contains_key("verbose") {
                for l in lines {
                    body.push_str(&l);
                    body.push('\n');
                }
            } else {
                body.push_str("not ready\n");
            }
            (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
        }
    }
}

/// `/status`, or `/status?set=NAME` for one set (cheap with many sets).
async fn status(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let now = (s.clock)() / 1000;
    let snap = s.snapshot.borrow().clone();
    let sets: Vec<&SetStatus> = match q.get("set") {
        Some(name) => match snap.sets.iter().find(|st| st.name == *name) {
            Some(st) => vec![st.as_ref()],
            None => {
                return (StatusCode::NOT_FOUND, format!("no set named {name:?}\n")).into_response()
            }
        },
        None => snap.sets.iter().map(AsRef::as_ref).collect(),
    };
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        now: String,
        ready: bool,
        version: &'static str,
        initialized: bool,
        /// Why file events are not watched (certgate polls at each resync), if so.
        watch_problem: Option<&'a str>,
        sets: Vec<&'a SetStatus>,
    }
    let doc = Doc {
        now: crate::time_fmt::rfc3339(now),
        ready: snap.readiness(now).is_ok(),
        version: snap.version,
        initialized: snap.initialized,
        watch_problem: snap.watch_problem.as_deref(),
        sets,
    };
    match serde_json::to_string_pretty(&doc) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `/metrics` is handed to the connection in pieces of about this many bytes. Measured at
/// 1,000 sets (3.9 MB): 64 KiB chunks with one waiting gave a 51 ms p50, 128 KiB with two
/// waiting 33 ms (the handoffs between threads cost more than the chunks), the whole body at
/// once 54 ms.
const METRICS_CHUNK: usize = 128 * 1024;

/// Scrapes written at once; more wait their turn. Prometheus scrapes a target once an
/// interval (twice with an HA pair).
static METRICS_WRITERS: Semaphore = Semaphore::const_new(2);

/// `/metrics`: written from the snapshot on a blocking thread (about 10 ms of CPU at 1,000
/// sets, which probes must not queue behind) and streamed as it is written, a chunk at a time,
/// so a scrape holds a chunk or two in memory rather than the whole body (about 4 MB at
/// 1,000 sets).
async fn metrics(State(s): State<AppState>) -> Response {
    let permit = METRICS_WRITERS.acquire().await.ok();
    let now = (s.clock)() / 1000;
    let snap = s.snapshot.borrow().clone();
    // Two chunks wait in the channel while the connection writes another: backpressure.
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let metrics = s.metrics.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        metrics.render_chunks(&snap, now, METRICS_CHUNK, &mut |chunk| {
            tx.blocking_send(Bytes::from(chunk)).is_ok()
        });
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        Body::new(Chunks(rx)),
    )
        .into_response()
}

/// A response body of the chunks a writer sends; it ends when the writer is done.
struct Chunks(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}
