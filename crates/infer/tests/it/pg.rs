//! A throwaway PostgreSQL cluster for tests. `initdb` refuses to run as root, so as root the cluster is created
//! and run as the `postgres` system user (via `runuser`), in a temporary directory it owns.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The directory holding `initdb`/`pg_ctl`: PATH first, else Debian's versioned directory.
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

impl Cluster {
    fn run(&self, program: &Path, args: &[&str]) {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        let out = cmd.args(args).output().unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        assert!(
            out.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// initdb + pg_ctl start on a free loopback port; panics with the server's output if that fails.
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()).status().unwrap();
            assert!(ok.success(), "chown the test cluster directory to postgres");
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = Self { dir, port, as_postgres };
        let data = c.dir.path().join("data");
        let data = data.to_str().unwrap();
        c.run(&pg_bin("initdb"), &["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            c.port,
            c.dir.path().display()
        );
        let log = c.dir.path().join("server.log");
        c.run(&pg_bin("pg_ctl"), &["-D", data, "-o", &opts, "-l", log.to_str().unwrap(), "-w", "-t", "60", "start"]);
        c
    }

    /// A URL of a fresh database `name` in this cluster.
    pub(crate) fn url(&self, name: &str) -> String {
        let base = format!("postgres://postgres@127.0.0.1:{}", self.port);
        let out = Command::new(pg_bin("psql"))
            .args([&format!("{base}/postgres"), "-qc", &format!("CREATE DATABASE {name}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "create database: {}", String::from_utf8_lossy(&out.stderr));
        format!("{base}/{name}")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_bin("pg_ctl"));
            c
        } else {
            Command::new(pg_bin("pg_ctl"))
        };
        let _ = cmd.args(["-D", data.to_str().unwrap_or_default(), "-m", "immediate", "-w", "stop"]).output();
    }
}
