//! A minimal HTTP/1.1 keep-alive client and a closed-loop load generator, for the integration tests and the
//! `stockcast-bench serve` benchmark (no extra dependencies; loopback only, no TLS).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers (names lower-cased).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One keep-alive connection.
#[derive(Debug)]
pub struct HttpClient {
    stream: BufReader<TcpStream>,
    host: String,
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

impl HttpClient {
    /// Connects.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Self { stream: BufReader::new(s), host: addr.to_string() })
    }

    /// Sends one request and reads the whole response.
    ///
    /// # Errors
    /// I/O errors and malformed responses.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> std::io::Result<HttpResponse> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.host);
        for (k, v) in headers {
            let _ = write!(req, "{k}: {v}\r\n");
        }
        if let Some(b) = body {
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                req.push_str("content-type: application/json\r\n");
            }
            let _ = write!(req, "content-length: {}\r\n", b.len());
        }
        req.push_str("\r\n");
        let w = self.stream.get_mut();
        w.write_all(req.as_bytes()).await?;
        if let Some(b) = body {
            w.write_all(b).await?;
        }
        self.read_response().await
    }

    async fn read_response(&mut self) -> std::io::Result<HttpResponse> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').ok_or_else(|| bad(format!("bad header {l:?}")))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if let Some(len) = get("content-length") {
            let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
            body.resize(len, 0);
            self.stream.read_exact(&mut body).await?;
        } else if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            loop {
                line.clear();
                self.stream.read_line(&mut line).await?;
                let n = usize::from_str_radix(line.trim(), 16).map_err(|_| bad("bad chunk size"))?;
                let start = body.len();
                body.resize(start + n, 0);
                self.stream.read_exact(&mut body[start..]).await?;
                line.clear();
                self.stream.read_line(&mut line).await?;
                if n == 0 {
                    break;
                }
            }
        }
        Ok(HttpResponse { status, headers, body })
    }
}

/// One request of a load run.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    /// Method.
    pub method: &'static str,
    /// Path and query.
    pub path: String,
    /// JSON body.
    pub body: Option<Vec<u8>>,
}

/// What a load run measured.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LoadReport {
    /// Requests completed.
    pub requests: u64,
    /// Of which failed (I/O error or a status other than 2xx).
    pub failures: u64,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// Closed loop: `connections` keep-alive connections each send `request(i)` back to back for `duration`.
///
/// # Errors
/// When a connection cannot be opened.
pub async fn load(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    request: impl Fn(u64) -> LoadRequest + Send + Sync + 'static,
) -> std::io::Result<LoadReport> {
    let request = std::sync::Arc::new(request);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mut client = HttpClient::connect(addr).await?;
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut failures = 0u64;
            let mut i = c as u64;
            while start.elapsed() < duration {
                let r = request(i);
                i += connections as u64;
                let t = Instant::now();
                match client.send(r.method, &r.path, &[], r.body.as_deref()).await {
                    Ok(resp) if (200..300).contains(&resp.status) => {}
                    Ok(_) => failures += 1,
                    Err(_) => {
                        failures += 1;
                        match HttpClient::connect(addr).await {
                            Ok(c) => client = c,
                            Err(_) => break,
                        }
                    }
                }
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
            (lat, failures)
        }));
    }
    let mut lat = Vec::new();
    let mut failures = 0;
    for t in tasks {
        let (l, f) = t.await.map_err(|e| std::io::Error::other(e.to_string()))?;
        lat.extend(l);
        failures += f;
    }
    let secs = start.elapsed().as_secs_f64();
    let (p50_ms, p99_ms, max_ms) = latency_summary(&mut lat);
    Ok(LoadReport { requests: lat.len() as u64, failures, rps: lat.len() as f64 / secs, p50_ms, p99_ms, max_ms })
}

/// Median, 99th percentile and maximum of latencies in ms (sorts them; NaN when empty).
fn latency_summary(lat: &mut [f64]) -> (f64, f64, f64) {
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| if lat.is_empty() { f64::NAN } else { lat[((lat.len() - 1) as f64 * p).round() as usize] };
    (q(0.5), q(0.99), lat.last().copied().unwrap_or(f64::NAN))
}

/// What an open-loop (fixed-rate) run measured: every status seen, and latencies counted from each request's
/// scheduled start (so a stall shows in the tail instead of silently lowering the rate).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RateReport {
    /// Requests sent.
    pub requests: u64,
    /// Responses by status (`0`: an I/O error).
    pub statuses: std::collections::BTreeMap<u16, u64>,
    /// Median latency from the scheduled start, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// Open loop: `rate` requests per second in total for `duration`, spread over `connections` keep-alive
/// connections (each sends its share on a fixed schedule; a late response delays that connection's next send,
/// and the delay counts in the latency of the requests it held up).
///
/// # Errors
/// When a connection cannot be opened.
pub async fn load_at_rate(
    addr: SocketAddr,
    connections: usize,
    rate: f64,
    duration: Duration,
    request: impl Fn(u64) -> LoadRequest + Send + Sync + 'static,
) -> std::io::Result<RateReport> {
    let request = std::sync::Arc::new(request);
    let connections = connections.max(1);
    let period = Duration::from_secs_f64(connections as f64 / rate.max(1e-3));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mut client = HttpClient::connect(addr).await?;
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut statuses = std::collections::BTreeMap::new();
            let mut k = 0u32;
            loop {
                let due = start + period.mul_f64(f64::from(k) + c as f64 / connections as f64);
                if due.duration_since(start) >= duration {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let r = request(u64::from(k) * connections as u64 + c as u64);
                let status = if let Ok(resp) = client.send(r.method, &r.path, &[], r.body.as_deref()).await {
                    resp.status
                } else {
                    if let Ok(fresh) = HttpClient::connect(addr).await {
                        client = fresh;
                    }
                    0
                };
                *statuses.entry(status).or_insert(0u64) += 1;
                lat.push(due.elapsed().as_secs_f64() * 1e3);
                k += 1;
            }
            (lat, statuses)
        }));
    }
    let mut lat = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    for t in tasks {
        let (l, s) = t.await.map_err(|e| std::io::Error::other(e.to_string()))?;
        lat.extend(l);
        for (k, v) in s {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    let (p50_ms, p99_ms, max_ms) = latency_summary(&mut lat);
    Ok(RateReport { requests: lat.len() as u64, statuses, p50_ms, p99_ms, max_ms })
}
