//! A throwaway Redis server on loopback (Debian's `redis-server`), for the shared rate-limit tests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A `redis-server` on 127.0.0.1 and a free port, without persistence, stopped on drop.
#[derive(Debug)]
pub struct LocalRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl LocalRedis {
    /// Starts one and waits until it accepts connections.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when `redis-server` is missing (`apt-get install redis-server`) or does not start.
    pub fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// Starts one that requires `password` (AUTH), as a production Redis does.
    ///
    /// # Errors
    /// As [`LocalRedis::start`].
    pub fn start_with_password(password: &str) -> Result<Self> {
        Self::start_with(&["--requirepass", password])
    }

    fn start_with(extra: &[&str]) -> Result<Self> {
        let unavailable = |m: String| Error::Unavailable(format!("redis-server: {m}"));
        let dir = tempfile::tempdir().map_err(|e| unavailable(e.to_string()))?;
        let port = super::free_port().map_err(|e| unavailable(e.to_string()))?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| unavailable(format!("{e} (install it: apt-get install redis-server)")))?;
        let r = Self { child, port, _dir: dir };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t.elapsed() > Duration::from_secs(10) {
                return Err(unavailable("did not start within 10 s".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(r)
    }

    /// Its URL, `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops (`SIGSTOP`: connections stay open, nothing answers) or resumes (`SIGCONT`) the server: a stalled
    /// Redis, as a frozen VM or a long fork leaves it.
    ///
    /// # Panics
    /// When `kill` cannot be run.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let ok = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} redis-server");
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        self.freeze(false);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
