//! A minimal HTTP/1.1 client for `certgate probe` and reload URLs: `http://host:port/path`,
//! one request per connection, bounded by a timeout and by [`MAX_RESPONSE_BODY`]: the far
//! side is owned by the workload, and an endless body must not grow certgate's memory.

use std::time::Duration;

use http_body_util::BodyExt;

/// The most of a response body read, in bytes; the connection is dropped past it.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// A minimal HTTP/1.1 client for `probe` and reload URLs: `http://host:port/path` only.
/// Returns the status code; the body is read up to [`MAX_RESPONSE_BODY`] and discarded.
pub async fn client_request(method: &str, url: &str, timeout: Duration) -> Result<u16, String> {
    client_request_body(method, url, timeout)
        .await
        .map(|(s, _)| s)
}

/// Like [`client_request`], also returning the body: at most [`MAX_RESPONSE_BODY`] bytes of
/// it, with `…(truncated)` appended when there was more.
pub async fn client_request_body(
    method: &str,
    url: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    use http_body_util::Empty;
    use hyper::body::Bytes;

    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("invalid URL {url:?}: only http:// is supported"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("invalid URL {url:?}: no host"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let work = async {
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("{url}: connect: {e}"))?;
        let io = hyper_util::rt::TokioIo::new(tcp);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        // Aborted on every way out (done, error, timeout): the connection, and whatever the
        // peer still sends, is dropped with it.
        let _conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status().as_u16();
        let (body, truncated) = read_capped(resp.into_body(), MAX_RESPONSE_BODY).await;
        let mut body = String::from_utf8_lossy(&body).into_owned();
        if truncated {
            body.push_str("…(truncated)");
        }
        Ok((status, body))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("{url}: timed out after {} ms", timeout.as_millis()))?
}

/// Reads `body` until its end or `cap` bytes, whichever comes first; whether it was cut.
/// A body that fails midway ends there.
async fn read_capped<B>(mut body: B, cap: usize) -> (Vec<u8>, bool)
where
    B: hyper::body::Body<Data = hyper::body::Bytes> + Unpin,
{
    let mut out = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let room = cap - out.len();
        if data.len() > room {
            out.extend_from_slice(&data[..room]);
            return (out, true);
        }
        out.extend_from_slice(&data);
    }
    (out, false)
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server that answers every connection 200 with an endless chunked body and counts the
    /// bytes it got to write before the client hung up.
    async fn endless_server() -> (String, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/reload", listener.local_addr().unwrap());
        let written = Arc::new(AtomicU64::new(0));
        let count = written.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut req = [0u8; 1024];
                    let _ = s.read(&mut req).await;
                    let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
                    if s.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "x".repeat(16 * 1024));
                    while s.write_all(chunk.as_bytes()).await.is_ok() {
                        count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        (url, written)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endless_reload_response_is_cut_and_its_connection_dropped() {
        let (url, written) = endless_server().await;
        let start = Instant::now();
        // The timeout is far beyond what a capped read takes: hitting it is the failure.
        let status = client_request("POST", &url, Duration::from_secs(10)).await;
        assert_eq!(status, Ok(200));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        // The connection is gone: the server stops being able to write soon after.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let then = written.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            written.load(Ordering::Relaxed),
            then,
            "the server still streams into a dropped connection"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endless_probe_body_is_truncated() {
        let (url, _) = endless_server().await;
        let (status, body) = client_request_body("GET", &url, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert!(
            body.ends_with("…(truncated)"),
            "{}",
            &body[body.len() - 40..]
        );
        assert!(body.len() <= MAX_RESPONSE_BODY + 20, "{}", body.len());
    }
}
