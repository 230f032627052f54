//! The tools a script announced the last time it ran, kept on disk so that
//! `tools/list` can be answered before the first worker of a new run is up.
//!
//! An entry is used only while its stamp matches: the flw and SDK versions,
//! the interpreter, the pool's variables, and the script's path, size and
//! modification time. Even then it is a first answer, not the truth: the
//! live manifest replaces it as soon as a worker says hello (and `flw mcp`
//! then tells clients when the two differ). Set `FLW_NO_MANIFEST_CACHE=1`
//! to turn it off.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use flw_protocol::{decode_worker_line, ToolSpec, WorkerMessage, DEFAULT_MAX_LINE_BYTES};
use serde_json::{json, Value};

use crate::config::PoolConfig;
use crate::sdk;

/// The cache entry of one pool's script.
#[derive(Debug)]
pub struct ManifestCache {
    file: PathBuf,
    stamp: String,
}

impl ManifestCache {
    /// The entry for `cfg`'s script; `None` when caching is off or the
    /// script cannot be read (the worker will say why).
    pub fn for_pool(cfg: &PoolConfig) -> Option<ManifestCache> {
        if std::env::var_os("FLW_NO_MANIFEST_CACHE").is_some_and(|v| !v.is_empty() && v != "0") {
            return None;
        }
        let script = std::fs::canonicalize(&cfg.script).ok()?;
        let meta = std::fs::metadata(&script).ok()?;
        let modified = meta
            .modified()
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_nanos();
        let mut key = std::collections::hash_map::DefaultHasher::new();
        (&script, &cfg.interpreter, &cfg.name).hash(&mut key);
        let stamp = format!(
            "flw {} | sdk {} | interpreter {:?} | env {:?} | script {} {} bytes, modified {modified} ns",
            env!("CARGO_PKG_VERSION"),
            sdk::sdk_id(&script),
            cfg.interpreter,
            cfg.env,
            script.display(),
            meta.len(),
        );
        Some(ManifestCache {
            file: sdk::cache_dir()
                .join("manifests")
                .join(format!("{:016x}.json", key.finish())),
            stamp,
        })
    }

    /// The cached tools, if the entry exists and its stamp matches.
    pub fn load(&self) -> Option<Vec<ToolSpec>> {
        let bytes = std::fs::read(&self.file).ok()?;
        let entry: Value = serde_json::from_slice(&bytes).ok()?;
        if entry.get("stamp")?.as_str()? != self.stamp {
            return None;
        }
        // Checked as the tools of a hello are: a damaged file is a miss.
        let hello = json!({
            "type": "hello",
            "protocol": [1],
            "sdk": "cache",
            "sdk_version": "0",
            "tools": entry.get("tools")?,
        });
        let line = serde_json::to_vec(&hello).ok()?;
        match decode_worker_line(&line, DEFAULT_MAX_LINE_BYTES) {
            Ok(WorkerMessage::Hello(h)) => Some(h.tools),
            _ => None,
        }
    }

    /// Replaces the entry with `tools` (written aside, then renamed).
    pub fn store(&self, tools: &[ToolSpec]) -> std::io::Result<()> {
        let dir = self.file.parent().unwrap_or(&self.file);
        std::fs::create_dir_all(dir)?;
        let body = serde_json::to_vec(&json!({"stamp": self.stamp, "tools": tools}))?;
        let tmp = self
            .file
            .with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, &self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str) -> ToolSpec {
        let v = json!({"type": "hello", "protocol": [1], "sdk": "t", "sdk_version": "0", "tools": [
            {"name": name, "description": "d", "input_schema": {"type": "object"}}
        ]});
        match decode_worker_line(&serde_json::to_vec(&v).unwrap(), DEFAULT_MAX_LINE_BYTES) {
            Ok(WorkerMessage::Hello(mut h)) => h.tools.remove(0),
            other => panic!("{other:?}"),
        }
    }

    fn cache(dir: &std::path::Path, stamp: &str) -> ManifestCache {
        ManifestCache {
            file: dir.join("m.json"),
            stamp: stamp.into(),
        }
    }

    #[test]
    fn stored_tools_come_back_while_the_stamp_matches() {
        let dir = std::env::temp_dir().join(format!("flw-mc-{}", std::process::id()));
        let c = cache(&dir, "a");
        assert_eq!(c.load(), None);
        c.store(&[tool("echo")]).unwrap();
        assert_eq!(c.load(), Some(vec![tool("echo")]));
        assert_eq!(cache(&dir, "b").load(), None, "another stamp is a miss");
        std::fs::write(
            dir.join("m.json"),
            br#"{"stamp":"a","tools":[{"name":""}]}"#,
        )
        .unwrap();
        assert_eq!(c.load(), None, "a damaged entry is a miss");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_stamp_follows_the_script() {
        let dir = std::env::temp_dir().join(format!("flw-mc-s-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("agent.py");
        std::fs::write(&script, "x = 1\n").unwrap();
        let cfg = PoolConfig::for_script(&script).unwrap();
        let before = ManifestCache::for_pool(&cfg).unwrap();
        std::fs::write(&script, "x = 12\n").unwrap();
        let after = ManifestCache::for_pool(&cfg).unwrap();
        assert_eq!(before.file, after.file);
        assert_ne!(before.stamp, after.stamp);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
