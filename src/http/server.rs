//! The admin router: `/healthz`, `/readyz`, `/status`, `/metrics`. Handlers read the latest
//! snapshot from a `watch` channel and never wait on validation, handshakes or publishing;
//! `/metrics` is written on a blocking thread and streamed, gzip-encoded when the scraper
//! accepts it.
//! No request logging: kubelet probes and scrapes would flood the logs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use flate2::write::GzEncoder;
use flate2::Compression;
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

/// Gzip-encoded, the text is handed to the compressor this many bytes at a time (below the
/// allocator's mmap threshold, so each comes from the heap and goes back to it), and the
/// compressed stream is handed on in pieces of [`METRICS_GZIP_CHUNK`] (the 4.3 MB of 1,000
/// sets compress to about 150 KB).
const METRICS_GZIP_TEXT_CHUNK: usize = 96 * 1024;
const METRICS_GZIP_CHUNK: usize = 32 * 1024;

/// Scrapes written at once; more wait their turn. Prometheus scrapes a target once an
/// interval (twice with an HA pair).
static METRICS_WRITERS: Semaphore = Semaphore::const_new(2);

/// `/metrics`: written from the snapshot on a blocking thread (about 10 ms of CPU at 1,000
/// sets, which probes must not queue behind) and streamed as it is written, a chunk at a time,
/// so a scrape holds a chunk or two in memory rather than the whole body (about 4 MB at
/// 1,000 sets). Gzip-encoded when the request accepts it (Prometheus asks for it), compressed
/// on a second blocking thread as it is written; plain text otherwise.
async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let permit = METRICS_WRITERS.acquire().await.ok();
    let gzip = accepts_gzip(
        headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .map(|v| v.as_bytes()),
    );
    let now = (s.clock)() / 1000;
    let snap = s.snapshot.borrow().clone();
    // Two chunks wait in the channel while the connection writes another: backpressure.
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let metrics = s.metrics.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        if gzip {
            // Written on this thread, compressed on a second one as it is written: the two
            // halves of a scrape's CPU (at 1,000 sets about 4 ms each) overlap instead of
            // adding up. Three text chunks wait between them at most (96 KiB each: with 32 KiB
            // ones the threads woke each other for every chunk and a scrape took twice as long).
            let (text_tx, text_rx) = std_mpsc::sync_channel::<String>(3);
            runtime.spawn_blocking(move || {
                let _permit = permit;
                let sink = Forward {
                    tx,
                    buf: Vec::with_capacity(METRICS_GZIP_CHUNK + 8 * 1024),
                };
                // Level 1: the body is repetitive text, compressed about 23:1 at the fastest
                // level (level 6 gains 12% more for three times the CPU).
                let mut gz = GzEncoder::new(sink, Compression::fast());
                for text in text_rx {
                    if gz.write_all(text.as_bytes()).is_err() {
                        // The reader is gone; dropping the receiver ends the writing.
                        break;
                    }
                }
                if let Ok(mut sink) = gz.finish() {
                    let _ = sink.hand_on();
                }
                // Both threads' buffers are freed by now (the writer ends first: the
                // compressor reads until it does); the last chunk is the connection's.
                crate::memory::release_free_memory();
            });
            metrics.render_chunks(&snap, now, METRICS_GZIP_TEXT_CHUNK, &mut |text| {
                text_tx.send(text).is_ok()
            });
        } else {
            let _permit = permit;
            metrics.render_chunks(&snap, now, METRICS_CHUNK, &mut |chunk| {
                tx.blocking_send(Bytes::from(chunk)).is_ok()
            });
            drop(snap);
            crate::memory::release_free_memory();
        }
    });
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    // Caches must not serve one encoding to a reader that asked for the other.
    let vary = (header::VARY, HeaderValue::from_static("Accept-Encoding"));
    let body = Body::new(Chunks(rx));
    if gzip {
        let encoding = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        ([content_type, vary, encoding], body).into_response()
    } else {
        ([content_type, vary], body).into_response()
    }
}

/// Where the compressor writes: collects its output and hands it to the connection in pieces
/// of about [`METRICS_GZIP_CHUNK`] bytes. A write fails once the reader is gone, which ends
/// the scrape's writing.
struct Forward {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl Forward {
    fn hand_on(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(METRICS_GZIP_CHUNK + 8 * 1024),
        );
        self.tx
            .blocking_send(Bytes::from(full))
            .map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
}

impl Write for Forward {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= METRICS_GZIP_CHUNK {
            self.hand_on()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether a request's `Accept-Encoding` values let `/metrics` be sent gzip-encoded: `gzip`
/// (or `x-gzip`) listed with a q-value above 0, or not listed and `*` with one above 0
/// (RFC 9110 section 12.5.3: `gzip;q=0` refuses it, a named coding wins over `*`). Prometheus
/// asks with `Accept-Encoding: gzip`.
pub(super) fn accepts_gzip<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut named = None;
    let mut any = None;
    for value in values {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            if coding.is_empty() {
                continue;
            }
            let mut q = Some(1.0);
            for p in parts {
                if let Some((k, v)) = p.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = parse_qvalue(v.trim());
                    }
                }
            }
            // A malformed q-value: the item is ignored.
            let Some(q) = q else {
                continue;
            };
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                named = Some(named.map_or(q, |n: f32| n.max(q)));
            } else if coding == "*" {
                any = Some(any.map_or(q, |a: f32| a.max(q)));
            }
        }
    }
    named.or(any).is_some_and(|q| q > 0.0)
}

/// A qvalue (`0`, `0.5`, `1.000`): 0 to 1 with at most three decimals; `None` otherwise.
fn parse_qvalue(v: &str) -> Option<f32> {
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    let ok = matches!(whole, "0" | "1")
        && frac.len() <= 3
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (whole == "0" || frac.bytes().all(|b| b == b'0'));
    if !ok {
        return None;
    }
    v.parse().ok()
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
