//! Run directories on object stores (`--out s3://bucket/runs/x`): the job works in a local staging directory,
//! synced down before (a sharded run's plan and shards) and up after. The uploads keep the readers' view
//! consistent without rename: a shard's `shard.json` goes after its predictions (a shard without it does not
//! exist for the merge), a report's `report.json` after every other file, and a plan is created only if absent
//! (the first shard's plan; any other shard checked its own against it first).

use std::cell::Cell;
use std::path::{Path, PathBuf};

use stockcast_backtest::report::{RUN_MARKERS, check_run_dir};
use stockcast_backtest::shard::{self, KEPT, PLAN_FILE, SHARDS_DIR, ShardId};
use stockcast_features::objects::{self, Objects};
use stockcast_features::outputs::{self, Replace};

use crate::Result;

/// Where a job writes its run directory.
#[derive(Debug)]
pub struct Staging {
    /// The local directory the job writes (the run directory itself when it is local).
    pub dir: PathBuf,
    remote: Option<Objects>,
    /// What [`Staging::pull`] downloaded: nothing yet (`None`), the plan, or the plan and shards (`Some(true)`).
    pulled: Cell<Option<bool>>,
    _tmp: Option<stockcast_features::io::ScratchDir>,
}

impl Staging {
    /// For `out`: itself when local, a fresh local directory synced with it when an object-store URL. `out` must
    /// be absent, empty or an earlier run (its `report.json` or `plan.json`), or `replace` must be
    /// [`Replace::Force`]: a run replaces what is there, so it never starts in a directory or prefix it did not
    /// write ([`stockcast_features::outputs`]).
    ///
    /// # Errors
    /// A refused `out`; an unusable URL; a temporary directory that cannot be made.
    pub fn new(out: &Path, replace: Replace) -> Result<Self> {
        if !objects::is_object_path(out) {
            let dir = objects::local_path(&out.to_string_lossy());
            check_run_dir(&dir, replace)?;
            return Ok(Self { dir, remote: None, pulled: Cell::new(None), _tmp: None });
        }
        let remote = Objects::open(&out.to_string_lossy())?;
        let mut keys = remote.list("")?;
        let marked = RUN_MARKERS.iter().any(|m| keys.iter().any(|k| k == m.file));
        if !keys.is_empty() && !marked && replace == Replace::Own {
            return Err(outputs::not_ours(out, "backtest or training run prefix", &RUN_MARKERS, &mut keys).into());
        }
        let tmp = stockcast_features::io::ScratchDir::new("stockcast-run-")?;
        Ok(Self { dir: tmp.path().join("run"), remote: Some(remote), pulled: Cell::new(None), _tmp: Some(tmp) })
    }

    /// Where the run is, as the user named it.
    pub fn shown(&self) -> String {
        self.remote.as_ref().map_or_else(|| self.dir.display().to_string(), |o| o.url().to_owned())
    }

    /// Where shard `id`'s outputs are, as the user named the run.
    pub fn shown_shard(&self, id: ShardId) -> String {
        format!("{}/{SHARDS_DIR}/{}", self.shown(), id.index)
    }

    /// Downloads the plan and, with `shards`, every complete shard (those with their `shard.json`); once per
    /// staging directory.
    ///
    /// # Errors
    /// Object-store and write errors.
    pub fn pull(&self, shards: bool) -> Result<()> {
        let Some(o) = &self.remote else { return Ok(()) };
        if self.pulled.get().is_some_and(|had| had || !shards) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        if let Some(plan) = o.get(PLAN_FILE)? {
            std::fs::write(self.dir.join(PLAN_FILE), plan.bytes)?;
        }
        if shards {
            for key in o.list(SHARDS_DIR)?.iter().filter(|k| k.ends_with("/shard.json")) {
                let dir = key.trim_end_matches("/shard.json");
                o.download_dir(dir, &self.dir.join(dir))?;
            }
        }
        self.pulled.set(Some(shards));
        Ok(())
    }

    /// Uploads the plan: replacing the remote one (`--plan`), or only where there is none (a shard's).
    ///
    /// # Errors
    /// Object-store and read errors.
    pub fn push_plan(&self, replace: bool) -> Result<()> {
        let Some(o) = &self.remote else { return Ok(()) };
        let bytes = std::fs::read(self.dir.join(PLAN_FILE))?;
        if replace {
            o.put(PLAN_FILE, bytes)?;
        } else {
            o.put_new(PLAN_FILE, bytes)?;
        }
        Ok(())
    }

    /// Uploads shard `id`: its predictions, then `shard.json`.
    ///
    /// # Errors
    /// Object-store and read errors.
    pub fn push_shard(&self, id: ShardId) -> Result<()> {
        let Some(o) = &self.remote else { return Ok(()) };
        self.push_plan(false)?;
        let rel = format!("{SHARDS_DIR}/{}", id.index);
        // The earlier run's marker goes first, so no reader pairs it with half-replaced files.
        o.delete(&format!("{rel}/shard.json"))?;
        o.upload_dir(&shard::shard_dir(&self.dir, id.index), &rel, Some("shard.json"))?;
        Ok(())
    }

    /// Uploads a written run directory: the upload marker, then without the earlier `report.json` every file but
    /// the plan and shards, `report.json` last; then removes files an earlier run left at the same place and the
    /// marker.
    ///
    /// # Errors
    /// Object-store and read errors.
    pub fn push_run(&self) -> Result<()> {
        let Some(o) = &self.remote else { return Ok(()) };
        // An upload killed part-way must never look like a finished run: the marker of an upload in progress
        // goes first, then the earlier run's report.json is removed, and the new one is written after every
        // other file (the marker is removed last, with the earlier run's leftovers).
        o.put(
            stockcast_backtest::report::UPLOAD_MARKER,
            br#"{"format": 1, "state": "uploading: report.json is written last"}"#.to_vec(),
        )?;
        o.delete("report.json")?;
        let mut written = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if KEPT.contains(&name.as_str()) {
                continue;
            }
            let path = self.dir.join(&name);
            if path.is_dir() {
                written.extend(o.upload_dir(&path, &name, None)?.into_iter().map(|f| objects::join(&name, &f)));
            } else if name != "report.json" {
                o.put(&name, std::fs::read(&path)?)?;
                written.push(name);
            }
        }
        o.put("report.json", std::fs::read(self.dir.join("report.json"))?)?;
        written.push("report.json".into());
        for key in o.list("")? {
            let top = key.split('/').next().unwrap_or_default();
            if !KEPT.contains(&top) && !written.contains(&key) {
                o.delete(&key)?;
            }
        }
        Ok(())
    }
}
