//! Fuzzes `flw.toml`: the text parsed and checked as `flw` reads it, in a
//! made-up folder where every script and watch path exists and every graph
//! file holds a small valid flow (so no file is touched).
#![no_main]

use std::path::Path;

use flw::config::{Config, ConfigFiles};
use libfuzzer_sys::fuzz_target;

/// A folder where everything exists.
struct Everything;

impl ConfigFiles for Everything {
    fn is_file(&self, _: &Path) -> bool {
        true
    }

    fn exists(&self, _: &Path) -> bool {
        true
    }

    fn read_to_string(&self, path: &Path) -> std::io::Result<String> {
        // A name ending in `.bad` stands for a file that is not a graph.
        if path.extension().is_some_and(|e| e == "bad") {
            return Ok("{".into());
        }
        Ok(r#"{"name": "f", "start": "a", "nodes": {"a": {"node": "a"}}}"#.into())
    }

    fn folder_files(&self, _: &Path) -> Option<Vec<String>> {
        None
    }
}

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let _ = Config::parse_with(text, Path::new("/flw-fuzz/project/flw.toml"), &Everything);
});
