//! The gate's admin router, served on a loopback address apart from the read-only admin port:
//! `POST /gate/release?set=NAME[&fingerprint=FP][&removal=true]` releases the one candidate a
//! set's gate holds now (`certgate gate release`, run in the pod with `kubectl exec`).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use crate::daemon::{GateControl, ReleaseRequest};

/// The path `certgate gate release` posts to.
pub const RELEASE_PATH: &str = "/gate/release";
/// How long a release may wait for the daemon's loop (a publish in progress finishes first).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The gate's admin router.
pub fn gate_router(control: GateControl) -> Router {
    Router::new()
        .route(RELEASE_PATH, post(release))
        .with_state(control)
}

async fn release(
    State(control): State<GateControl>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(set) = q.get("set").filter(|s| !s.is_empty()).cloned() else {
        return (StatusCode::BAD_REQUEST, "set: required\n").into_response();
    };
    let removal = match q.get("removal").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("removal: {other:?} is not true or false\n"),
            )
                .into_response()
        }
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let req = ReleaseRequest {
        set,
        fingerprint: q.get("fingerprint").cloned(),
        removal,
        reply,
    };
    if let Err(e) = control.release(req).await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response();
    }
    match tokio::time::timeout(REPLY_TIMEOUT, answer).await {
        Ok(Ok(Ok(msg))) => (StatusCode::OK, format!("{msg}\n")).into_response(),
        Ok(Ok(Err((code, msg)))) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::CONFLICT),
            format!("{msg}\n"),
        )
            .into_response(),
        Ok(Err(_)) => (StatusCode::SERVICE_UNAVAILABLE, "the daemon has stopped\n").into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no answer from the daemon within 30s\n",
        )
            .into_response(),
    }
}
