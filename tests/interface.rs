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
