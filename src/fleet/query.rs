//! The Prometheus HTTP API client `certgate fleet` reads through: instant queries
//! (`POST /api/v1/query`) against Prometheus, Thanos Query or Mimir, over http:// or https://
//! (rustls, roots from `--ca-file` or the system bundle file). One request per connection,
//! every one bounded by the caller's deadline and by [`MAX_RESPONSE_BODY`]; no redirects, no
//! retries (`fleet wait` tolerates a few failed rounds itself).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use tokio::time::Instant;

use super::selector::form_encode;
use crate::bounded;

/// The most of a response body read; past it the query fails (narrow `--selector`).
pub const MAX_RESPONSE_BODY: usize = 64 << 20;
/// The most of a `--bearer-token-file` read.
const MAX_TOKEN_FILE: u64 = 64 * 1024;
/// The most of a `--ca-file` (or system bundle) read.
const MAX_CA_FILE: u64 = 4 << 20;
/// The system CA bundles tried, in order, for https:// without `--ca-file` (after
/// `SSL_CERT_FILE`): Debian/Ubuntu/Alpine, then Fedora/RHEL.
const SYSTEM_CA_FILES: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// One series of an instant vector: its labels (without `__name__`) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels, `__name__` removed.
    pub labels: BTreeMap<String, String>,
    /// The sample value (NaN when the API sent something unparseable).
    pub value: f64,
    /// The evaluation time, Unix seconds.
    pub at: f64,
}

/// Something that answers instant queries: the real [`Endpoint`], or a fake in tests.
pub trait QueryApi {
    /// Runs one instant query, giving up at `deadline`.
    fn instant(
        &self,
        promql: &str,
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<Sample>, QueryError>>;
}

/// Why a query failed. All but [`QueryError::BadQuery`] mean the API is unreachable,
/// erroring or partial (exit 3).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// TCP connect, TLS or HTTP failed.
    #[error("{url}: {message}")]
    Unreachable {
        /// The API URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The deadline passed first.
    #[error("{url}: no answer within the --timeout")]
    Timeout {
        /// The API URL.
        url: String,
    },
    /// A non-2xx answer that is not an API error document.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The API URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the body, on one line.
        body: String,
    },
    /// More than [`MAX_RESPONSE_BODY`].
    #[error("{url}: response larger than {} MiB; narrow --selector", MAX_RESPONSE_BODY >> 20)]
    TooLarge {
        /// The API URL.
        url: String,
    },
    /// Not the API's JSON.
    #[error("{url}: not a Prometheus query API answer: {message}")]
    Decode {
        /// The API URL.
        url: String,
        /// What did not parse.
        message: String,
    },
    /// `status: error`.
    #[error("{url}: query failed ({error_type}): {message}")]
    Api {
        /// The API URL.
        url: String,
        /// `errorType`.
        error_type: String,
        /// `error`.
        message: String,
    },
    /// The answer carried warnings: Thanos and Mimir say so when some stores did not answer.
    #[error("{url}: partial data: {}", .warnings.join("; "))]
    Partial {
        /// The API URL.
        url: String,
        /// The warnings.
        warnings: Vec<String>,
    },
    /// `errorType: bad_data`: the API refused the query itself, which only the selector can
    /// make invalid (a bad regex).
    #[error("--selector: the query API refused the query: {message}")]
    BadQuery {
        /// `error`.
        message: String,
    },
}

impl QueryError {
    /// A stable label for JSON output and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::Status { .. } => "http_status",
            Self::TooLarge { .. } => "too_large",
            Self::Decode { .. } => "decode",
            Self::Api { .. } => "api_error",
            Self::Partial { .. } => "partial_data",
            Self::BadQuery { .. } => "bad_query",
        }
    }

    /// Whether the user's input caused it (exit 2) rather than the API (exit 3).
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::BadQuery { .. })
    }
}

/// Where and how to reach the query API, from the flags.
#[derive(Debug, Clone, Default)]
pub struct EndpointOptions {
    /// `--prometheus`: `http(s)://host[:port][/prefix]`.
    pub url: String,
    /// `--header 'Name: value'`, repeatable.
    pub headers: Vec<String>,
    /// `--bearer-token-file`.
    pub bearer_token_file: Option<PathBuf>,
    /// `--ca-file`.
    pub ca_file: Option<PathBuf>,
}

/// A validated query API address with its headers and TLS settings.
pub struct Endpoint {
    url: String,
    host: String,
    port: u16,
    path: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

// Written by hand: headers may carry credentials (Authorization), never shown.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .field("headers", &self.headers.len())
            .finish()
    }
}

impl Endpoint {
    /// Checks the URL, headers and files; every error names its flag (a usage error).
    pub fn new(opts: &EndpointOptions) -> Result<Self, String> {
        let raw = opts.url.trim();
        let bad = |why: &str| format!("--prometheus {raw:?}: {why}");
        let uri: hyper::Uri = raw.parse().map_err(|e| bad(&format!("not a URL: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("must start with http:// or https://")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "credentials in the URL are not supported; use --bearer-token-file or --header",
            ));
        }
        if uri.query().is_some() {
            return Err(bad("must not carry a query string"));
        }
        let host = authority.host().trim_matches(['[', ']']).to_string();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = format!("{}/api/v1/query", uri.path().trim_end_matches('/'));
        let url = format!(
            "{}://{}{}",
            if https { "https" } else { "http" },
            authority.as_str(),
            uri.path().trim_end_matches('/')
        );
        let mut headers = Vec::with_capacity(opts.headers.len() + 1);
        for h in &opts.headers {
            headers.push(parse_header(h)?);
        }
        if let Some(path) = &opts.bearer_token_file {
            let bytes = bounded::read_regular(path, MAX_TOKEN_FILE)
                .map_err(|e| format!("--bearer-token-file {}: {e}", path.display()))?;
            let token = String::from_utf8(bytes)
                .map_err(|_| format!("--bearer-token-file {}: not UTF-8", path.display()))?;
            let token = token.trim();
            if token.is_empty() {
                return Err(format!("--bearer-token-file {}: empty", path.display()));
            }
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                format!(
                    "--bearer-token-file {}: not a valid header value",
                    path.display()
                )
            })?;
            value.set_sensitive(true);
            headers.push((hyper::header::AUTHORIZATION, value));
        }
        let tls = match https {
            false if opts.ca_file.is_some() => {
                return Err("--ca-file is for https:// URLs; --prometheus is http://".into())
            }
            false => None,
            true => {
                let config = client_tls_config(opts.ca_file.as_deref())?;
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| bad(&format!("not a TLS server name: {e}")))?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Self {
            url,
            host,
            port,
            path,
            tls,
            headers,
        })
    }

    /// The base URL, as shown in messages (no credentials: the URL may carry none).
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn post(&self, body: String) -> Result<(u16, Vec<u8>), QueryError> {
        let unreachable = |message: String| QueryError::Unreachable {
            url: self.url.clone(),
            message,
        };
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable(format!("cannot connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let req = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri(self.path.as_str())
            .header(hyper::header::HOST, self.host_header())
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(hyper::header::ACCEPT, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("certgate/", env!("CARGO_PKG_VERSION")),
            );
        let req = self
            .headers
            .iter()
            .fold(req, |r, (k, v)| r.header(k, v))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| unreachable(format!("cannot build the request: {e}")))?;
        match &self.tls {
            None => self.exchange(hyper_util::rt::TokioIo::new(tcp), req).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| unreachable(format!("TLS: {e}")))?;
                self.exchange(hyper_util::rt::TokioIo::new(tls), req).await
            }
        }
    }

    fn host_header(&self) -> String {
        let default = if self.tls.is_some() { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    async fn exchange<I>(
        &self,
        io: I,
        req: hyper::Request<Full<Bytes>>,
    ) -> Result<(u16, Vec<u8>), QueryError>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let unreachable = |message: String| QueryError::Unreachable {
            url: self.url.clone(),
            message,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| unreachable(format!("HTTP: {e}")))?;
        // Aborted on every way out (done, error, deadline): the connection goes with it.
        let _conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(format!("HTTP: {e}")))?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| unreachable(format!("reading the answer: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if out.len() + data.len() > MAX_RESPONSE_BODY {
                return Err(QueryError::TooLarge {
                    url: self.url.clone(),
                });
            }
            out.extend_from_slice(&data);
        }
        Ok((status, out))
    }
}

impl QueryApi for Endpoint {
    async fn instant(&self, promql: &str, deadline: Instant) -> Result<Vec<Sample>, QueryError> {
        let body = format!("query={}", form_encode(promql));
        let (status, bytes) = tokio::time::timeout_at(deadline, self.post(body))
            .await
            .map_err(|_| QueryError::Timeout {
                url: self.url.clone(),
            })??;
        decode(&self.url, status, &bytes)
    }
}

/// Interprets an API answer: `status`, `errorType`, `warnings`, the vector.
pub fn decode(url: &str, status: u16, body: &[u8]) -> Result<Vec<Sample>, QueryError> {
    let parsed: Result<ApiResponse, _> = serde_json::from_slice(body);
    let resp = match parsed {
        Ok(r) => r,
        Err(e) if (200..300).contains(&status) => {
            return Err(QueryError::Decode {
                url: url.to_string(),
                message: e.to_string(),
            })
        }
        Err(_) => {
            return Err(QueryError::Status {
                url: url.to_string(),
                status,
                body: one_line(&String::from_utf8_lossy(body), 200),
            })
        }
    };
    if resp.status != "success" {
        let error_type = resp.error_type.unwrap_or_default();
        let message = one_line(&resp.error.unwrap_or_default(), 300);
        if error_type == "bad_data" {
            return Err(QueryError::BadQuery { message });
        }
        return Err(QueryError::Api {
            url: url.to_string(),
            error_type,
            message,
        });
    }
    if !(200..300).contains(&status) {
        return Err(QueryError::Status {
            url: url.to_string(),
            status,
            body: one_line(&String::from_utf8_lossy(body), 200),
        });
    }
    if !resp.warnings.is_empty() {
        return Err(QueryError::Partial {
            url: url.to_string(),
            warnings: resp.warnings.iter().map(|w| one_line(w, 200)).collect(),
        });
    }
    let data = resp.data.ok_or_else(|| QueryError::Decode {
        url: url.to_string(),
        message: "no data".into(),
    })?;
    if data.result_type != "vector" {
        return Err(QueryError::Decode {
            url: url.to_string(),
            message: format!("expected a vector, got {}", data.result_type),
        });
    }
    Ok(data
        .result
        .into_iter()
        .map(|s| {
            let mut labels = s.metric;
            labels.remove("__name__");
            Sample {
                labels,
                value: s.value.1.parse().unwrap_or(f64::NAN),
                at: s.value.0,
            }
        })
        .collect())
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(rename = "errorType", default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    // Parsed straight into samples (a scalar or string result fails here: the queries are
    // vector selectors).
    result: Vec<VectorSample>,
}

#[derive(Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// `Name: value` from `--header`.
fn parse_header(h: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = h.split_once(':').ok_or_else(|| {
        "--header: expected 'Name: value' (e.g. 'X-Scope-OrgID: tenant')".to_string()
    })?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("--header: {:?} is not a header name", name.trim()))?;
    if name == hyper::header::HOST || name == hyper::header::CONTENT_LENGTH {
        return Err(format!("--header: {name} is set by certgate"));
    }
    let mut value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("--header {name}: not a valid header value"))?;
    // Any header may carry a credential; none is ever printed.
    value.set_sensitive(true);
    Ok((name, value))
}

/// A rustls client config trusting `ca_file`, else the system bundle file.
fn client_tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let (path, flag) = match ca_file {
        Some(p) => (p.to_path_buf(), "--ca-file"),
        None => (
            system_ca_file().ok_or_else(|| {
                format!(
                    "--prometheus is https:// and no --ca-file given, and no system CA bundle \
                     found (SSL_CERT_FILE, {}); give --ca-file",
                    SYSTEM_CA_FILES.join(", ")
                )
            })?,
            "system CA bundle",
        ),
    };
    let bytes = bounded::read_regular(&path, MAX_CA_FILE)
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| format!("{flag} {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{flag} {}: no PEM certificate", path.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn system_ca_file() -> Option<PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_CA_FILES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

/// `s` on one line, at most `max` characters (an ellipsis marks a cut).
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() <= max {
        return flat.to_string();
    }
    let mut out: String = flat.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
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
    use super::*;

    fn opts(url: &str) -> EndpointOptions {
        EndpointOptions {
            url: url.into(),
            ..EndpointOptions::default()
        }
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_host() {
        for bad in [
            "ftp://x",
            "localhost:9090",
            "http://",
            "http://u:p@x/",
            "http://x/?a=b",
            "",
        ] {
            let e = Endpoint::new(&opts(bad)).unwrap_err();
            assert!(e.starts_with("--prometheus"), "{bad}: {e}");
        }
        let e = Endpoint::new(&opts("http://thanos:10902/prefix/")).unwrap();
        assert_eq!(e.url(), "http://thanos:10902/prefix");
        assert_eq!(e.path, "/prefix/api/v1/query");
        assert_eq!(e.host_header(), "thanos:10902");
        let e = Endpoint::new(&opts("http://[::1]:80")).unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.host_header(), "[::1]");
    }

    #[test]
    fn headers_are_name_colon_value_and_never_shown() {
        let mut o = opts("http://x");
        o.headers = vec!["X-Scope-OrgID: tenant-1".into()];
        let e = Endpoint::new(&o).unwrap();
        assert_eq!(e.headers[0].0.as_str(), "x-scope-orgid");
        assert!(!format!("{e:?}").contains("tenant-1"));
        for bad in ["no colon", "bad name: v", "Host: x", "X: a\u{7f}b"] {
            o.headers = vec![bad.into()];
            assert!(
                Endpoint::new(&o).unwrap_err().starts_with("--header"),
                "{bad}"
            );
        }
    }

    #[test]
    fn https_needs_a_readable_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts("https://x");
        o.ca_file = Some(dir.path().join("none.pem"));
        assert!(Endpoint::new(&o).unwrap_err().starts_with("--ca-file"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing").unwrap();
        o.ca_file = Some(empty);
        assert!(Endpoint::new(&o)
            .unwrap_err()
            .contains("no PEM certificate"));
        let mut o = opts("http://x");
        o.ca_file = Some(dir.path().join("x"));
        assert!(Endpoint::new(&o).is_err());
    }

    #[test]
    fn answers_decode_to_samples_or_errors() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","pod":"a"},"value":[1700000000.5,"1"]}]}}"#;
        let s = decode("u", 200, ok).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels.get("pod").map(String::as_str), Some("a"));
        assert!(!s[0].labels.contains_key("__name__"));
        assert_eq!(s[0].value, 1.0);
        let partial = br#"{"status":"success","warnings":["store x down"],"data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(
            decode("u", 200, partial).unwrap_err().reason(),
            "partial_data"
        );
        let err = br#"{"status":"error","errorType":"execution","error":"boom"}"#;
        assert_eq!(decode("u", 422, err).unwrap_err().reason(), "api_error");
        let bad = br#"{"status":"error","errorType":"bad_data","error":"invalid regex"}"#;
        assert!(decode("u", 400, bad).unwrap_err().is_usage());
        let html = b"<html>\n502 Bad Gateway\n</html>";
        let e = decode("u", 502, html).unwrap_err();
        assert_eq!(e.to_string(), "u: HTTP 502: <html> 502 Bad Gateway </html>");
        assert_eq!(decode("u", 200, b"{}").unwrap_err().reason(), "decode");
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(decode("u", 200, matrix).unwrap_err().reason(), "decode");
    }
}
