//! (h) Footprint: what each server needs on disk.

use std::path::Path;
use std::process::Command;

use super::{progress, Ctx, Fmt, PeerResult, Row, Section, Workload};
use crate::peers::{Family, Peer};

fn file_size(p: &Path) -> Option<f64> {
    std::fs::metadata(p).ok().map(|m| m.len() as f64)
}

/// Size of `p` stripped, via `strip -o` into a temporary file.
fn stripped_size(ctx: &Ctx, p: &Path) -> Option<f64> {
    let out = ctx.paths.tmp.join("flw.stripped");
    let ok = Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(p)
        .status()
        .ok()?
        .success();
    let size = if ok { file_size(&out) } else { None };
    let _ = std::fs::remove_file(&out);
    size
}

/// `du -sk` of a folder, in bytes.
fn du(p: &Path) -> Option<f64> {
    let out = Command::new("du").arg("-sk").arg(p).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kb: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024.0)
}

const DISTS: &str = "import importlib.metadata as m, json, sysconfig\n\
names = sorted({d.metadata['Name'] for d in m.distributions()} - {'pip', 'setuptools'})\n\
print(json.dumps({'names': names, 'site': sysconfig.get_paths()['purelib']}))";

fn flw(ctx: &Ctx, r: &mut PeerResult) {
    let bin = ctx.paths.flw();
    let Some(size) = file_size(&bin) else {
        r.skipped = Some(format!("{} not built", ctx.paths.rel(&bin)));
        return;
    };
    r.set("binary", size);
    match stripped_size(ctx, &bin) {
        Some(s) => r.set("stripped", s),
        None => r
            .notes
            .push("strip failed or missing: size shown unstripped".into()),
    }
    r.set("packages", 0.0);
    r.notes.push(
        "one binary; the Python SDK is embedded in it; workers run on the system python3".into(),
    );
}

fn sdk(ctx: &Ctx, r: &mut PeerResult) {
    let py = ctx.paths.sdk_python();
    let out = Command::new(&py).arg("-c").arg(DISTS).output();
    let parsed = out
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    let Some(v) = parsed else {
        r.skipped = Some(format!("cannot run {}", ctx.paths.rel(&py)));
        return;
    };
    let names: Vec<String> = v["names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    r.set("packages", names.len() as f64);
    if let Some(site) = v["site"].as_str().and_then(|s| du(Path::new(s))) {
        r.set("site_packages", site);
    }
    r.notes.push(format!(
        "`pip install mcp==2.3.0` into a fresh venv pulls in: {}",
        names.join(", ")
    ));
}

fn go(ctx: &Ctx, r: &mut PeerResult) {
    let bin = ctx.paths.go_binary();
    match file_size(&bin) {
        Some(s) => {
            r.set("binary", s);
            r.set("packages", 0.0);
        }
        None => {
            r.skipped = Some(format!(
                "{} not built (no go on PATH?)",
                ctx.paths.rel(&bin)
            ))
        }
    }
}

/// Measures the footprint of each peer (no servers are started).
pub fn run(ctx: &Ctx) -> Section {
    progress("footprint");
    let mut results = Vec::new();
    for f in Family::ALL {
        if !ctx.families.contains(&f) {
            continue;
        }
        let peer = Peer {
            label: Peer::family_label(f).to_string(),
            family: f,
            variant: None,
        };
        let mut r = PeerResult::new(&peer);
        match f {
            Family::Flw => flw(ctx, &mut r),
            Family::Sdk => sdk(ctx, &mut r),
            Family::Go => go(ctx, &mut r),
            Family::Floor => {
                r.set("packages", 0.0);
                if let Some(s) = file_size(&ctx.paths.script("raw_floor.py")) {
                    r.set("script", s);
                }
            }
            // Not in Family::ALL: the graph workload's reference, not a server.
            Family::PocketFlow => continue,
        }
        results.push(r);
    }
    Section {
        workload: Workload::Footprint,
        title: "(h) Footprint".into(),
        about: vec![
            "What each server needs besides the Python interpreter. flw: the release binary, \
             unstripped and stripped (`strip -o`). SDK: the distributions in `bench/.venv-mcp` \
             besides pip and setuptools, and `du -sk` of its site-packages. Go: the binary as \
             `go build` leaves it. Raw floor: one stdlib-only script. MB = 10^6 bytes."
                .into(),
        ],
        rows: vec![
            Row::new("binary (MB)", "binary", Fmt::Mb),
            Row::new("binary, stripped (MB)", "stripped", Fmt::Mb),
            Row::new("packages pulled in", "packages", Fmt::Int),
            Row::new("site-packages on disk (MB)", "site_packages", Fmt::Mb),
            Row::new("script (KB)", "script", Fmt::Kb),
        ],
        results,
        ratios: vec![],
        notes: vec![],
    }
}
