//! Snapshots of the user-facing interface (insta): the help of every command, `stockcast spec`. A changed flag,
//! default or spec entry fails here until the reviewed snapshot under `tests/snapshots/` is updated
//! (`cargo insta review`, or `INSTA_UPDATE=always` and a look at the diff).
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

use clap::CommandFactory as _;

/// `--help` of the command and of every subcommand below it, as the binary prints it (clap's generated `help`
/// subcommands left out).
fn helps(cmd: &mut clap::Command, path: &str, out: &mut Vec<(String, String)>) {
    let name = if path.is_empty() { cmd.get_name().to_owned() } else { format!("{path} {}", cmd.get_name()) };
    out.push((name.clone(), cmd.render_long_help().to_string()));
    for sub in cmd.get_subcommands_mut().filter(|c| c.get_name() != "help") {
        helps(sub, &name, out);
    }
}

/// Environment variables of the machine running the tests must not change the snapshot: their values are
/// hidden (their names stay).
fn without_env_values(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| a.hide_env_values(true)).mut_subcommands(without_env_values)
}

#[test]
fn help_of_every_command() {
    let mut cmd = without_env_values(stockcast::cli::Cli::command());
    cmd.build();
    let mut all = Vec::new();
    helps(&mut cmd, "", &mut all);
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for expected in ["stockcast train", "stockcast backtest", "stockcast serve", "stockcast demo"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    for (name, help) in &all {
        assert!(!help.trim().is_empty(), "{name} has no help");
        insta::assert_snapshot!(format!("help {name}").replace(' ', "_"), help);
    }
}

#[test]
fn spec_output() {
    let o = Command::new(env!("CARGO_BIN_EXE_stockcast"))
        .arg("spec")
        .current_dir(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo and nextest at run time"))
        .env_remove("STOCKCAST_LOG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("[label]"), "{text}");
    insta::assert_snapshot!("spec", text);
}

/// Every environment variable the binary reads: clap's `env` of every argument of every command, plus what is
/// read outside clap (the log filter, Polars' thread pool, the schedulers' shard index variables).
fn env_vars_read() -> std::collections::BTreeSet<String> {
    fn walk(cmd: &clap::Command, out: &mut std::collections::BTreeSet<String>) {
        for a in cmd.get_arguments() {
            if let Some(e) = a.get_env() {
                out.insert(e.to_string_lossy().into_owned());
            }
        }
        cmd.get_subcommands().for_each(|c| walk(c, out));
    }
    let mut out = std::collections::BTreeSet::new();
    walk(&stockcast::cli::Cli::command(), &mut out);
    out.extend(["STOCKCAST_LOG", "POLARS_MAX_THREADS", "JOB_COMPLETION_INDEX"].map(String::from));
    out
}

type Yaml = serde_yaml::Value;

/// Every document of every manifest under `deploy/k8s`, by file.
fn manifests() -> Vec<(String, Yaml)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = <Yaml as serde::Deserialize>::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            out.push((f.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    out
}

fn s(v: &Yaml) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// The pod spec of a Job, CronJob or Deployment.
fn pod_spec(m: &Yaml) -> Option<&Yaml> {
    match s(&m["kind"]) {
        "Job" | "Deployment" => Some(&m["spec"]["template"]["spec"]),
        "CronJob" => Some(&m["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        _ => None,
    }
}

/// A container's literal environment (secret references as `<secret>`).
fn container_env(c: &Yaml) -> std::collections::BTreeMap<String, String> {
    c["env"]
        .as_sequence()
        .map(|v| {
            v.iter()
                .map(|e| (s(&e["name"]).to_owned(), e["value"].as_str().map_or("<secret>".into(), str::to_owned)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kubernetes_manifests_run_commands_the_binary_accepts_with_the_environment_it_reads() {
    use clap::Parser as _;
    let all = manifests();
    let kinds: Vec<(&str, &str)> = all.iter().map(|(f, m)| (f.as_str(), s(&m["kind"]))).collect();
    for want in ["Job", "CronJob", "Deployment", "Service", "ConfigMap"] {
        assert!(kinds.iter().any(|(_, k)| *k == want), "no {want} in {kinds:?}");
    }
    let read = env_vars_read();
    let config_map = all.iter().find(|(_, m)| m["kind"] == "ConfigMap").map(|(_, m)| &m["data"]).unwrap();
    let mut shard_jobs = 0;
    for (file, m) in &all {
        let Some(pod) = pod_spec(m) else { continue };
        let volumes: Vec<&str> = pod["volumes"].as_sequence().unwrap().iter().map(|v| s(&v["name"])).collect();
        for c in pod["containers"].as_sequence().unwrap() {
            let env = container_env(c);
            for name in env.keys() {
                assert!(read.contains(name), "{file}: {name} is not read by stockcast (it reads {read:?})");
            }
            // The command line parses as the binary parses it.
            let mut argv = vec![s(&c["command"][0]).to_owned()];
            argv.extend(c["args"].as_sequence().unwrap().iter().map(|a| s(a).to_owned()));
            assert_eq!(argv[0], "stockcast", "{file}");
            let cli = stockcast::cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{file}: {argv:?}: {e}"));
            drop(cli);
            // Files it names under the config mount are keys of the ConfigMap, and parse.
            for a in argv.iter().filter_map(|a| a.strip_prefix("/etc/stockcast/")) {
                let text = config_map[a].as_str().unwrap_or_else(|| panic!("{file}: {a} is not in the ConfigMap"));
                if a.starts_with("serve") {
                    let _: stockcast_infer::server::ServeConfig =
                        toml::from_str(text).unwrap_or_else(|e| panic!("{a}: {e}"));
                } else {
                    let t = stockcast_backtest::BacktestConfig::from_toml_with(text, &["gate", "final"]);
                    t.unwrap_or_else(|e| panic!("{a}: {e}")).0.model_specs().unwrap_or_else(|e| panic!("{a}: {e}"));
                }
            }
            for mount in c["volumeMounts"].as_sequence().unwrap() {
                assert!(volumes.contains(&s(&mount["name"])), "{file}: mount {:?} has no volume", mount["name"]);
            }
            let res = &c["resources"];
            assert!(res["requests"]["cpu"].as_str().is_some() && res["limits"]["memory"].as_str().is_some(), "{file}");
            if m["spec"]["completionMode"] == "Indexed" {
                // Pod I of an Indexed Job runs shard I of N: the index from Kubernetes, N from the manifest.
                shard_jobs += 1;
                let n = m["spec"]["completions"].as_u64().unwrap() as usize;
                assert!(m["spec"]["parallelism"].as_u64().unwrap() as usize <= n);
                let shards: usize = env["STOCKCAST_SHARDS"].parse().unwrap();
                assert_eq!(shards, n, "{file}: STOCKCAST_SHARDS must equal completions");
                for i in 0..n {
                    let vars = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| i.to_string());
                    let id = stockcast_pipeline::backtest::shard_id(None, Some(shards), vars).unwrap().unwrap();
                    assert_eq!((id.index, id.count), (i, n));
                }
            }
            if s(&m["kind"]) == "Deployment" {
                assert!(m["spec"]["replicas"].as_u64().unwrap() >= 2, "{file}: serve runs as replicas");
                assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
                assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
                let port = c["ports"][0]["containerPort"].as_u64().unwrap();
                assert!(env["STOCKCAST_ADDR"].ends_with(&format!(":{port}")), "{file}: listens where the probes look");
                let named = s(&c["ports"][0]["name"]);
                assert_eq!(c["readinessProbe"]["httpGet"]["port"], named);
            }
        }
        if s(&m["kind"]) == "CronJob" {
            assert_eq!(m["spec"]["concurrencyPolicy"], "Forbid", "{file}: one nightly run at a time");
            assert_eq!(s(&m["spec"]["schedule"]).split_whitespace().count(), 5, "{file}: cron schedule");
        }
    }
    assert_eq!(shard_jobs, 1, "one Indexed Job of shards");
    // The Service sends traffic to the Deployment's named port and selects its pods.
    let (dep, svc) = (
        all.iter().find(|(_, m)| m["kind"] == "Deployment").unwrap(),
        all.iter().find(|(_, m)| m["kind"] == "Service").unwrap(),
    );
    let pod_labels = &dep.1["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc.1["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&pod_labels[k], v, "service selector {k:?}");
    }
    assert_eq!(svc.1["spec"]["ports"][0]["targetPort"], "http");
}
