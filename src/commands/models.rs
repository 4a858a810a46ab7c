//! `stockcast models list | show | promote | rollback | gc`: the registry by hand.

use stockcast_models::registry::{CHAMPION, Registry};

use super::out;
use crate::UsageError;
use crate::cli::ModelsCommand;
use stockcast_pipeline::Ctx;

fn headline(m: &serde_json::Value) -> String {
    let f = |k: &str| m.get(k).and_then(serde_json::Value::as_f64).map_or("–".to_owned(), |v| format!("{v:.4}"));
    format!("rank_ic {} sharpe {} total_return {}", f("rank_ic"), f("sharpe"), f("total_return"))
}

/// The registry lock for a mutating command, waiting (with a note) while a `train` or another command holds it.
fn lock(ctx: &Ctx, reg: &Registry, what: &str) -> anyhow::Result<stockcast_models::registry::RegistryLock> {
    Ok(reg.lock(what, &|holder| ctx.note(&format!("waiting for the registry lock held by {holder}")))?)
}

pub(crate) fn run(ctx: &Ctx, cmd: ModelsCommand) -> anyhow::Result<()> {
    match cmd {
        ModelsCommand::List(d) => {
            let reg = Registry::new(&d.models_dir);
            let names = reg.names()?;
            if names.is_empty() {
                out(&format!("no models in {}", d.models_dir.display()));
            }
            for name in names {
                let aliases = reg.aliases(&name)?;
                for v in reg.versions(&name)? {
                    let m = reg.manifest(&name, v)?;
                    let tags: Vec<&str> =
                        aliases.aliases.iter().filter(|(_, x)| **x == v).map(|(a, _)| a.as_str()).collect();
                    out(&format!(
                        "{name}@{v}{}  {}  {}  data to {}  {}",
                        if tags.is_empty() { String::new() } else { format!(" [{}]", tags.join(", ")) },
                        m.kind,
                        m.created_at,
                        m.data.last_date.map(|d| d.to_string()).unwrap_or_default(),
                        headline(&m.metrics)
                    ));
                }
            }
        }
        ModelsCommand::Show { dir, reference, verify } => {
            let reg = Registry::new(&dir.models_dir);
            let (name, v) = reg.resolve(&reference)?;
            let m = reg.manifest(&name, v)?;
            out(&serde_json::to_string_pretty(&m)?);
            if verify {
                let problems = reg.verify(&name, v)?;
                if !problems.is_empty() {
                    return Err(UsageError(format!("{name}@{v} failed verification: {}", problems.join("; "))).into());
                }
                reg.load(&name, v)?;
                out(&format!("{name}@{v}: all {} files match their sha256", m.files.len()));
            }
        }
        ModelsCommand::Promote { dir, name, version, alias } => {
            let reg = Registry::new(&dir.models_dir);
            let _lock = lock(ctx, &reg, "models promote")?;
            reg.load(&name, version)?;
            reg.set_alias(&name, &alias, version, &ctx.clock().now_rfc3339(), "manual promote")?;
            out(&format!("{name}: {alias} -> {version}"));
        }
        ModelsCommand::Rollback { dir, name } => {
            let reg = Registry::new(&dir.models_dir);
            let _lock = lock(ctx, &reg, "models rollback")?;
            let (from, to) = reg.rollback(&name, &ctx.clock().now_rfc3339())?;
            out(&format!("{name}: {CHAMPION} {from} -> {to}"));
        }
        ModelsCommand::Gc { dir, keep } => {
            if keep == 0 {
                return Err(UsageError("--keep must be at least 1 (the newest version is always kept)".into()).into());
            }
            let reg = Registry::new(&dir.models_dir);
            let _lock = lock(ctx, &reg, "models gc")?;
            for name in reg.names()? {
                let removed = reg.gc(&name, keep, &ctx.clock().now_rfc3339())?;
                out(&format!("{name}: removed {} version(s) {removed:?}", removed.len()));
            }
        }
    }
    Ok(())
}
