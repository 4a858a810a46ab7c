//! What the demo runs locally. [`LocalCluster`]: a throwaway PostgreSQL cluster (the demo's database when no
//! `DATABASE_URL` is given; the tests' too): `initdb` + `pg_ctl start` in a scratch directory, listening on
//! 127.0.0.1 on a free port with a private socket directory, stopped and deleted on drop. [`request`]: one HTTP
//! request to a server on this machine, through hyper's client (the demo's sample requests).
//! `initdb` refuses to run as root, so as root the cluster is created and run as the `postgres` system user (via
//! `runuser`), in a directory it owns.

use std::path::{Path, PathBuf};
use std::process::Command;

use stockcast_features::io::ScratchDir;

use crate::error::{Error, Result};

/// A running throwaway cluster; stopped (immediately) and removed when dropped.
#[derive(Debug)]
pub struct LocalCluster {
    dir: ScratchDir,
    port: u16,
    as_postgres: bool,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `initdb`/`pg_ctl`/`psql`: from PATH, else Debian's newest versioned directory.
fn pg_bin(name: &str) -> PathBuf {
    if Command::new("sh").args(["-c", &format!("command -v {name}")]).output().is_ok_and(|o| o.status.success()) {
        return PathBuf::from(name);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path().join("bin"))).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().map_or_else(|| PathBuf::from(name), |d| d.join(name))
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("local PostgreSQL: {what}: {e}"))
}

impl LocalCluster {
    /// True when PostgreSQL's server programs (`initdb`) can be found, so [`LocalCluster::start`] can work.
    pub fn available() -> bool {
        let initdb = pg_bin("initdb");
        initdb.is_absolute() && initdb.is_file()
            || Command::new("sh").args(["-c", "command -v initdb"]).output().is_ok_and(|o| o.status.success())
    }

    fn command(&self, program: &Path) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn run(&self, program: &Path, args: &[&str]) -> Result<()> {
        let out = self.command(program).args(args).output().map_err(|e| {
            unavailable(&program.display().to_string(), format!("{e} (is PostgreSQL installed? see docs/setup.md)"))
        })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(unavailable(
                &program.display().to_string(),
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            ))
        }
    }

    /// Creates and starts the cluster (trust authentication, user `postgres`, fsync off: throwaway data only).
    ///
    /// # Errors
    /// [`Error::Unavailable`] with the tool's output when PostgreSQL is missing or does not start.
    pub fn start() -> Result<Self> {
        let dir = ScratchDir::new("stockcast-pg-").map_err(|e| unavailable("scratch directory", e))?;
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()).status();
            if !ok.is_ok_and(|s| s.success()) {
                return Err(unavailable("chown", "cannot give the cluster directory to the postgres user"));
            }
        }
        let port = free_port().map_err(|e| unavailable("free port", e))?;
        let c = Self { dir, port, as_postgres };
        let data = c.dir.path().join("data");
        let data = data.to_string_lossy();
        c.run(&pg_bin("initdb"), &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])?;
        c.restart()?;
        Ok(c)
    }

    /// Starts the server (again, after [`LocalCluster::stop`]) on the same port and data.
    ///
    /// # Errors
    /// [`Error::Unavailable`] with pg_ctl's output.
    pub fn restart(&self) -> Result<()> {
        let data = self.dir.path().join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.run(
            &pg_bin("pg_ctl"),
            &["-D", &data.to_string_lossy(), "-o", &opts, "-l", &log.to_string_lossy(), "-w", "-t", "60", "start"],
        )
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates database `name` and returns its URL.
    ///
    /// # Errors
    /// [`Error::Unavailable`] with psql's output.
    pub fn create_database(&self, name: &str) -> Result<String> {
        let base = format!("postgres://postgres@127.0.0.1:{}", self.port);
        let out = Command::new(pg_bin("psql"))
            .args([&format!("{base}/postgres"), "-qc", &format!("CREATE DATABASE \"{name}\"")])
            .output()
            .map_err(|e| unavailable("psql", e))?;
        if !out.status.success() {
            return Err(unavailable("create database", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(format!("{base}/{name}"))
    }

    /// Stops the server now (as a crash would: immediate mode); later connections fail.
    pub fn stop(&self) {
        let data = self.dir.path().join("data");
        let _ = self
            .command(&pg_bin("pg_ctl"))
            .args(["-D", &data.to_string_lossy(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // Stopped before the scratch directory (a field, dropped after this) is removed.
        self.stop();
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the caller's server takes it next).
pub(crate) fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port())
}

/// The status and body (as text) of one HTTP/1.1 request to `addr` (`body`: JSON).
///
/// # Errors
/// [`Error::Unavailable`] when the server cannot be reached or the exchange fails.
pub async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    use http_body_util::BodyExt as _;
    let fail = |what: &str, e: &dyn std::fmt::Display| Error::Unavailable(format!("http://{addr}{path}: {what}: {e}"));
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| fail("connect", &e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| fail("handshake", &e))?;
    let driver = tokio::spawn(conn);
    let mut req = hyper::Request::builder().method(method).uri(path).header("host", addr.to_string());
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(http_body_util::Full::new(hyper::body::Bytes::from(body.unwrap_or_default().to_owned())))
        .map_err(|e| fail("request", &e))?;
    let resp = sender.send_request(req).await.map_err(|e| fail("send", &e))?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.map_err(|e| fail("body", &e))?.to_bytes();
    driver.abort();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
