//! The container image (scripts/image.sh: buildah, FROM scratch) is self-contained: built from the binary under
//! test, its OCI archive unpacked layer by layer into an empty directory, and inside it (chroot, as the image's
//! non-root user) a backtest on the bundled data and `serve --help` run with nothing of this machine's but the
//! kernel. The Kubernetes manifests name the image the script builds. Needs root (buildah's vfs storage, chroot)
//! and buildah (scripts/setup-tests.sh installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}{}", common::text(&out.stdout), common::text(&out.stderr));
    common::text(&out.stdout)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn blob(oci: &Path, digest: &str) -> std::path::PathBuf {
    oci.join("blobs").join(digest.replace(':', "/"))
}

#[test]
fn the_image_runs_a_backtest_and_the_server_with_nothing_from_the_build_machine() {
    // buildah's vfs storage and chroot need root.
    let uid = sh(Command::new("id").arg("-u"));
    if uid.trim() != "0" {
        eprintln!("skipped: building and entering the image needs root (uid {})", uid.trim());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("stockcast.oci.tar");
    let image = "stockcast-test:0.1.0";
    let built = sh(Command::new("bash")
        .arg(common::root().join("scripts/image.sh"))
        .arg(&archive)
        .env("STOCKCAST_BINARY", env!("CARGO_BIN_EXE_stockcast"))
        .env("STOCKCAST_IMAGE", image)
        .current_dir(common::root()));
    assert!(built.contains(image), "{built}");

    // The archive's manifest, config and layers (OCI image layout).
    let oci = tmp.path().join("oci");
    std::fs::create_dir(&oci).unwrap();
    sh(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&oci));
    let index = json(&oci.join("index.json"));
    let manifest = json(&blob(&oci, index["manifests"][0]["digest"].as_str().unwrap()));
    let config = json(&blob(&oci, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["config"]["User"], "10001:10001", "{config}");
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/stockcast");
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let file = blob(&oci, layer["digest"].as_str().unwrap());
        sh(Command::new("tar").arg("-xf").arg(&file).arg("-C").arg(&rootfs));
    }
    // Nothing but the binary, its libraries, the bundled files and a few /etc entries: no shell, no home.
    assert!(!rootfs.join("bin/sh").exists() && !rootfs.join("root/.cache").exists());
    let binary = rootfs.join("usr/local/bin/stockcast");
    let readelf = sh(Command::new("readelf").arg("-d").arg(&binary));
    assert!(readelf.contains("[/usr/lib/stockcast/xgboost/lib]"), "RUNPATH: {readelf}");
    let symbols = sh(Command::new("readelf").arg("-S").arg(&binary));
    assert!(!symbols.contains(".symtab"), "the binary is stripped");

    let in_image = |args: &[&str]| {
        let out = Command::new("/usr/sbin/chroot")
            .arg("--userspec=10001:10001")
            .arg(&rootfs)
            .arg("/usr/local/bin/stockcast")
            .args(args)
            .env_clear()
            .env("OMP_WAIT_POLICY", "passive")
            .env("HOME", "/data")
            .current_dir(&rootfs)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?} in the image: {}", common::text(&out.stderr));
        common::text(&out.stdout)
    };
    let help = in_image(&["serve", "--help"]);
    assert!(help.contains("--models-dir"), "{help}");
    let out = in_image(&[
        "--quiet",
        "backtest",
        "--config",
        "/opt/stockcast/configs/backtest.toml",
        "--model",
        "gbm",
        "--model",
        "linear",
        "--out",
        "/data/run",
    ]);
    assert!(out.contains("report: /data/run/report.html"), "{out}");
    // The image's run equals this machine's run of the same binary: same data, config and seed.
    let here = tmp.path().join("here");
    let ok = common::bin()
        .args(["--quiet", "backtest", "--model", "gbm", "--model", "linear", "--out"])
        .arg(&here)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", common::text(&ok.stderr));
    let metrics = |dir: &Path| {
        let r = json(&dir.join("report.json"));
        ["rank_ic", "total_return"].map(|k| r["models"]["gbm"][k].as_f64().unwrap())
    };
    let (inside, outside) = (metrics(&rootfs.join("data/run")), metrics(&here));
    for (a, b) in inside.iter().zip(&outside) {
        assert!((a - b).abs() < 1e-12, "{inside:?} vs {outside:?}");
    }

    // The manifests run the image scripts/image.sh names by default.
    let version = env!("CARGO_PKG_VERSION");
    for entry in std::fs::read_dir(common::root().join("deploy/k8s")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines().filter(|l| l.trim_start().starts_with("image:")) {
            assert_eq!(line.trim(), format!("image: stockcast:{version}"), "{line}");
        }
    }
    let _ = Command::new("buildah").args(["--storage-driver", "vfs", "rmi", image]).output();
}
