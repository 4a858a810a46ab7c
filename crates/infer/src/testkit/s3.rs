//! A throwaway S3-compatible server for the object-store tests: moto in server mode (`python3 -m moto.server`,
//! installed by `scripts/setup.sh` from PyPI), on 127.0.0.1 and a free port, stopped on drop. moto answers
//! conditional puts (`If-None-Match: *` → 412 when the key exists, `If-Match: <etag>` → 412 when it changed),
//! which the registry relies on.

use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A moto S3 server; [`LocalS3::env`] is what a client process needs to reach it.
#[derive(Debug)]
pub struct LocalS3 {
    child: Child,
    port: u16,
}

impl LocalS3 {
    /// Starts one and waits until it answers.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when moto is not installed (`pip install 'moto[server]'`) or does not start.
    pub fn start() -> Result<Self> {
        let unavailable = |m: String| Error::Unavailable(format!("moto S3 server: {m}"));
        let port = super::free_port().map_err(|e| unavailable(e.to_string()))?;
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| unavailable(format!("{e} (scripts/setup.sh installs it: pip install 'moto[server]')")))?;
        let s3 = Self { child, port };
        let t = Instant::now();
        while s3.request("GET", "/").is_err() {
            if t.elapsed() > Duration::from_secs(30) {
                return Err(unavailable("did not answer within 30 s (is moto[server] installed?)".into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(s3)
    }

    /// Its endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment an S3 client (this process's object stores, or a `stockcast` child) needs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Creates a bucket.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the server refuses.
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        self.expect_ok("PUT", &format!("/{name}"), &[]).map(|_| ())
    }

    /// The bucket `bucket` through the same client stockcast uses, configured for this server.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when it cannot be configured.
    pub fn bucket(&self, bucket: &str) -> Result<stockcast_features::objects::Objects> {
        let endpoint = self.endpoint();
        let opts = [
            ("aws_endpoint", endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "testing"),
            ("aws_secret_access_key", "testing"),
            ("aws_region", "us-east-1"),
        ];
        stockcast_features::objects::Objects::open_with(&format!("s3://{bucket}"), &opts)
            .map_err(|e| Error::Unavailable(e.to_string()))
    }

    /// Writes an object.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the server refuses.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) -> Result<()> {
        self.bucket(bucket)?.put(key, body.to_vec()).map_err(|e| Error::Unavailable(e.to_string()))
    }

    /// Reads an object; `None` when there is none.
    ///
    /// # Errors
    /// [`Error::Unavailable`] for other failures.
    pub fn get_object(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let got = self.bucket(bucket)?.get(key).map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(got.map(|v| v.bytes))
    }

    /// Keys of `bucket` below the folder `prefix`.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the server refuses.
    pub fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let keys = self.bucket(bucket)?.list(prefix).map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(keys)
    }

    fn expect_ok(&self, method: &str, path: &str, body: &[u8]) -> Result<Vec<u8>> {
        let (status, out) = self.request_body(method, path, body).map_err(|e| Error::Unavailable(e.to_string()))?;
        if status == 200 {
            Ok(out)
        } else {
            Err(Error::Unavailable(format!("moto: {method} {path}: HTTP {status}: {}", String::from_utf8_lossy(&out))))
        }
    }

    /// One plain HTTP/1.1 request with an empty body; the status code.
    fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        self.request_body(method, path, &[]).map(|(s, _)| s)
    }

    /// One plain HTTP/1.1 request; the status code and the body (read to the end of the connection).
    fn request_body(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )?;
        s.write_all(body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(raw.len(), |p| p + 4);
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:?}")))?;
        Ok((status, raw[split..].to_vec()))
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
