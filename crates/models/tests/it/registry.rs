//! Registry: atomic publish (a crash before the rename leaves nothing visible), verification, aliases, rollback,
//! garbage collection.

use std::panic::AssertUnwindSafe;

use stockcast_models::registry::{CHAMPION, DataInfo, Publish, Registry};
use stockcast_models::{ModelConfig, TrainedModel, fit};

fn model(seed: u64) -> TrainedModel {
    let train = super::planted(500, seed);
    fit(&ModelConfig::from_toml("kind = \"linear\"\nalpha = 0.01").unwrap(), &train, None, seed).unwrap()
}

fn publish(reg: &Registry, m: &TrainedModel, at: &str) -> u64 {
    reg.publish(
        "demo",
        &Publish {
            model: m,
            spec_toml: "# spec\n",
            created_at: at,
            data: DataInfo::default(),
            metrics: serde_json::json!({ "rank_ic": 0.01 }),
            stockcast_version: "test",
            git_commit: None,
        },
    )
    .unwrap()
    .version
}

#[test]
fn a_crash_before_the_rename_leaves_no_version_and_the_champion_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new(dir.path());
    let m = model(1);
    assert_eq!(publish(&reg, &m, "t1"), 1);
    reg.set_alias("demo", CHAMPION, 1, "t1", "first").unwrap();
    let crashed = std::panic::catch_unwind(AssertUnwindSafe(|| {
        reg.publish_with(
            "demo",
            &Publish {
                model: &m,
                spec_toml: "# spec\n",
                created_at: "t2",
                data: DataInfo::default(),
                metrics: serde_json::json!({}),
                stockcast_version: "test",
                git_commit: None,
            },
            &|tmp| {
                assert!(tmp.join("manifest.json").exists(), "every file is written before the hook");
                panic!("injected crash");
            },
        )
    }));
    assert!(crashed.is_err());
    // The half-published directory is there but hidden: no version 2, champion still 1, still loadable.
    let leftovers = std::fs::read_dir(dir.path().join("demo"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".tmp-"));
    assert_eq!(leftovers.count(), 1);
    assert_eq!(reg.versions("demo").unwrap(), vec![1]);
    assert_eq!(reg.resolve(&"demo".parse().unwrap()).unwrap(), ("demo".to_owned(), 1));
    reg.load("demo", 1).unwrap();
    // The crashed publish used number 2 (the high-water mark never goes back): the next one is 3. gc clears the
    // leftover.
    assert_eq!(publish(&reg, &m, "t3"), 3);
    // A hidden directory no publish wrote is not gc's to remove.
    std::fs::create_dir_all(dir.path().join("demo/.notes")).unwrap();
    std::fs::write(dir.path().join("demo/.notes/a.txt"), "mine").unwrap();
    assert!(reg.gc("demo", 10, "t9").unwrap().is_empty());
    let hidden: Vec<String> = std::fs::read_dir(dir.path().join("demo"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.') && e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(hidden, [".notes"]);
    assert_eq!(std::fs::read_to_string(dir.path().join("demo/.notes/a.txt")).unwrap(), "mine");
}

#[test]
fn version_numbers_are_never_reused_and_the_lock_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new(dir.path());
    let m = model(4);
    assert_eq!(publish(&reg, &m, "t1"), 1);
    assert_eq!(publish(&reg, &m, "t2"), 2);
    // The newest version deleted by hand: its number is not given again (it may be stored elsewhere already).
    std::fs::remove_dir_all(reg.version_dir("demo", 2)).unwrap();
    assert_eq!(publish(&reg, &m, "t3"), 3);
    assert_eq!(reg.versions("demo").unwrap(), vec![1, 3]);
    // One holder at a time, also within one process; released on drop.
    let held = reg.try_lock("first").unwrap().expect("free");
    assert!(reg.try_lock("second").unwrap().is_none());
    assert!(reg.lock_holder().contains("first") && reg.lock_holder().contains(&std::process::id().to_string()));
    drop(held);
    assert!(reg.try_lock("third").unwrap().is_some());
    assert!(reg.gc("demo", 0, "t9").unwrap_err().to_string().contains("at least 1"));
}

#[test]
fn a_tampered_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new(dir.path());
    publish(&reg, &model(2), "t1");
    assert!(reg.verify("demo", 1).unwrap().is_empty());
    let f = reg.version_dir("demo", 1).join("linear.json");
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.push(' ');
    std::fs::write(&f, text).unwrap();
    let problems = reg.verify("demo", 1).unwrap();
    assert!(problems.iter().any(|p| p.contains("linear.json") && p.contains("sha256")), "{problems:?}");
    let e = reg.load("demo", 1).unwrap_err().to_string();
    assert!(e.contains("failed verification") && e.contains("linear.json"), "{e}");
    // An extra file is reported too.
    std::fs::write(reg.version_dir("demo", 1).join("extra.bin"), b"x").unwrap();
    assert!(reg.verify("demo", 1).unwrap().iter().any(|p| p.contains("extra.bin")));
}

#[test]
fn symbolic_links_are_refused_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new(dir.path().join("models"));
    publish(&reg, &model(3), "t1");
    // A lock file that is a symlink: taking the lock (as `models promote` does) is refused, and the target keeps
    // its bytes; the lock holder's text is not read through it either.
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious contents\n").unwrap();
    let lock = dir.path().join("models").join(stockcast_models::registry::LOCK_FILE);
    let _ = std::fs::remove_file(&lock);
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    let e = reg.lock("models promote", &|_| {}).err().unwrap().to_string();
    assert!(e.contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious contents\n");
    assert_eq!(reg.lock_holder(), "unknown");
    std::fs::remove_file(&lock).unwrap();
    // Two links to the version directory itself (an endless tree if followed): verify and load refuse at once.
    let v = reg.version_dir("demo", 1);
    std::os::unix::fs::symlink(".", v.join("a")).unwrap();
    std::os::unix::fs::symlink(".", v.join("b")).unwrap();
    let started = std::time::Instant::now();
    let verify = reg.verify("demo", 1);
    let load = reg.load("demo", 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "walked the links");
    let e = format!("{:?} {:?}", verify.map(|v| v.join("; ")), load.map(|_| ()));
    assert!(e.contains("symbolic link"), "{e}");
    // A manifest file replaced by a link to an identical copy elsewhere is refused too.
    std::fs::remove_file(v.join("a")).unwrap();
    std::fs::remove_file(v.join("b")).unwrap();
    let f = v.join("linear.json");
    let copy = dir.path().join("copy.json");
    std::fs::copy(&f, &copy).unwrap();
    std::fs::remove_file(&f).unwrap();
    std::os::unix::fs::symlink(&copy, &f).unwrap();
    let problems = reg.verify("demo", 1).unwrap();
    assert!(problems.iter().any(|p| p.contains("linear.json") && p.contains("symbolic link")), "{problems:?}");
    assert!(reg.load("demo", 1).is_err());
}

#[test]
fn rollback_restores_the_previous_champion_and_gc_keeps_aliased_versions() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::new(dir.path());
    let m = model(3);
    for v in 1..=4 {
        assert_eq!(publish(&reg, &m, &format!("t{v}")), v);
    }
    assert!(reg.rollback("demo", "t").unwrap_err().to_string().contains("no champion"));
    reg.set_alias("demo", CHAMPION, 1, "t5", "promoted").unwrap();
    assert!(reg.rollback("demo", "t").unwrap_err().to_string().contains("no earlier champion"));
    reg.set_alias("demo", CHAMPION, 3, "t6", "promoted").unwrap();
    assert_eq!(reg.rollback("demo", "t7").unwrap(), (3, 1));
    assert_eq!(reg.resolve(&"demo@champion".parse().unwrap()).unwrap().1, 1);
    let history = reg.aliases("demo").unwrap().history;
    assert_eq!(history.len(), 3);
    assert_eq!(history[2].reason, "rollback");
    reg.set_alias("demo", "staging", 2, "t8", "manual").unwrap();
    // Keep the newest one: 4 stays, 1 (champion) and 2 (staging) are pinned, 3 goes.
    assert_eq!(reg.gc("demo", 1, "t9").unwrap(), vec![3]);
    // Every change is in the append-only audit log, oldest first, with who made it.
    let log = reg.audit_log().unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions.first(), Some(&"publish"));
    assert!(actions.contains(&"alias") && actions.last() == Some(&"gc"), "{actions:?}");
    assert_eq!(log.last().unwrap()["removed"], serde_json::json!([3]));
    assert_eq!(log.last().unwrap()["at"], "t9");
    assert!(log.iter().all(|e| e["by"].as_str().is_some_and(|b| b.contains("pid"))));
    let rollback = log.iter().find(|e| e["reason"] == "rollback").expect("the rollback is logged");
    assert!(rollback["from"].is_u64() && rollback["version"].is_u64());
    assert_eq!(reg.versions("demo").unwrap(), vec![1, 2, 4]);
    assert!(reg.resolve(&"demo@7".parse().unwrap()).unwrap_err().to_string().contains("not published"));
    assert!(reg.resolve(&"demo@nope".parse().unwrap()).unwrap_err().to_string().contains("no alias"));
    assert!(reg.set_alias("demo", CHAMPION, 3, "t", "x").unwrap_err().to_string().contains("not published"));
}

#[test]
fn model_references_have_one_grammar() {
    use stockcast_models::registry::{At, ModelRef};
    let r: ModelRef = "lin".parse().unwrap();
    assert_eq!(r.at, At::Default);
    assert_eq!("lin@12".parse::<ModelRef>().unwrap().at, At::Version(12));
    assert_eq!("lin@staging".parse::<ModelRef>().unwrap().at, At::Alias("staging".into()));
    for text in ["lin", "lin@12", "lin@staging", "a.b-c_d@champion"] {
        assert_eq!(text.parse::<ModelRef>().unwrap().to_string(), text);
    }
    for bad in ["", "@1", "lin@", "lin@a/b", "../x", "lin@1@2", "l in"] {
        let e = bad.parse::<ModelRef>().unwrap_err().to_string();
        assert!(e.contains("NAME@VERSION"), "{bad:?}: {e}");
    }
    assert_eq!("lin".parse::<ModelRef>().unwrap().champion_if_bare().to_string(), "lin@champion");
    // Serialised as the string users write (server settings file).
    let v: Vec<ModelRef> = serde_json::from_str(r#"["lin@3"]"#).unwrap();
    assert_eq!(serde_json::to_string(&v).unwrap(), r#"["lin@3"]"#);
}
