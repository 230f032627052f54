//! The tools a script announced the last time it ran, kept on disk so that
//! `tools/list` can be answered before the first worker of a new run is up.
//!
//! An entry is used only while its stamp matches: the flw and SDK versions,
//! the interpreter, the pool's variables, and the script's path, size and
//! modification time. The variables' values may be secrets (an API key), so
//! the stamp holds only their names and an HMAC-SHA256 of the values under a
//! random key of this user's (`<cache>/stamp-key`, 0600): nothing that
//! could give a value back. Entries are written 0600 in a 0700 folder. Even then it is a first answer, not the truth: the
//! live manifest replaces it as soon as a worker says hello (and `flw mcp`
//! then tells clients when the two differ). Set `FLW_NO_MANIFEST_CACHE=1`
//! to turn it off.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::UNIX_EPOCH;

use flw_protocol::{decode_worker_line, ToolSpec, WorkerMessage, DEFAULT_MAX_LINE_BYTES};
use serde_json::{json, Value};

use crate::config::PoolConfig;
use crate::{private_fs, sdk};

/// The cache entry of one pool's script.
#[derive(Debug, Clone)]
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
        let cache = sdk::cache_dir().ok()?;
        let mut key = std::collections::hash_map::DefaultHasher::new();
        (&script, &cfg.interpreter, &cfg.name).hash(&mut key);
        let stamp = format!(
            "flw {} | sdk {} | interpreter {:?} | env {} | script {} {} bytes, modified {modified} ns",
            env!("CARGO_PKG_VERSION"),
            sdk::sdk_id(&script),
            cfg.interpreter,
            env_stamp(&stamp_key(&cache)?, &cfg.env),
            script.display(),
            meta.len(),
        );
        Some(ManifestCache {
            file: cache
                .join("manifests")
                .join(format!("{:016x}.json", key.finish())),
            stamp,
        })
    }

    /// The cached tools, if the entry exists, is this user's alone, and
    /// its stamp matches.
    pub fn load(&self) -> Option<Vec<ToolSpec>> {
        private_fs::check_entry(&self.file).ok()?;
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

    /// Replaces the entry with `tools` (written aside, then renamed; a
    /// failed write leaves no temporary file behind).
    pub fn store(&self, tools: &[ToolSpec]) -> std::io::Result<()> {
        let dir = self.file.parent().unwrap_or(&self.file);
        private_fs::make_dir(dir)
            .and_then(|()| private_fs::check_entry(dir))
            .map_err(std::io::Error::other)?;
        let body = serde_json::to_vec(&json!({"stamp": self.stamp, "tools": tools}))?;
        private_fs::write_file(&self.file, &body)
    }
}

/// The pool's variables as the stamp holds them: each name, and one
/// HMAC-SHA256 (hex) of all names and values under `key`.
fn env_stamp(key: &[u8], env: &[(String, String)]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    let mut names = Vec::with_capacity(env.len());
    for (k, v) in env {
        // Lengths first, so that no two lists hash the same bytes.
        for part in [k, v] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part.as_bytes());
        }
        names.push(k.as_str());
    }
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{} hmac-sha256 {hex}", names.join(","))
}

/// This user's key for [`env_stamp`]: 32 random bytes in `<cache>/stamp-key`,
/// made on first use; `None` when it cannot be read or made (no caching).
fn stamp_key(cache: &Path) -> Option<Vec<u8>> {
    static KEY: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    KEY.get_or_init(|| {
        let file = cache.join("stamp-key");
        for _ in 0..2 {
            if private_fs::check_entry(&file).is_ok() {
                let key = std::fs::read(&file).ok()?;
                if key.len() == 32 {
                    return Some(key);
                }
                let _ = std::fs::remove_file(&file); // torn or damaged
                continue;
            }
            let mut key = vec![0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut r| std::io::Read::read_exact(&mut r, &mut key))
                .ok()?;
            match private_fs::create_file(&file, &key) {
                Ok(()) => return Some(key),
                // Another flw made it first, or a bad entry is in the way.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if private_fs::check_entry(&file).is_err() {
                        let _ = std::fs::remove_file(&file);
                    }
                }
                Err(e) => {
                    tracing::debug!("cannot make {}: {e}", file.display());
                    return None;
                }
            }
        }
        None
    })
    .clone()
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
