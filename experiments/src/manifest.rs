//! `manifest.json`: what ran, on what, from which commit, when, and whether it finished.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::Config;

/// The workspace's lock file, for the versions of the crates that shape results.
const LOCK: &str = include_str!("../../Cargo.lock");
const KEY_CRATES: &[&str] = &[
    "candle-core",
    "tonic",
    "quinn",
    "prost",
    "polars",
    "tokenizers",
];

/// What is known when a run starts.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    name: String,
    description: String,
    tandem_version: &'static str,
    git_commit: String,
    crates: std::collections::BTreeMap<String, String>,
    machine: Machine,
    seed: u64,
    started: String,
}

#[derive(Debug, Clone, Serialize)]
struct Machine {
    os: &'static str,
    arch: &'static str,
    cpus: usize,
    hostname: String,
}

/// How a run ended.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    /// When it ended.
    pub at: SystemTime,
    /// Whether every cell ran.
    pub complete: bool,
    /// Cells written.
    pub cells: usize,
    /// Requests in the group.
    pub requests: usize,
}

#[derive(Serialize)]
struct Written<'a> {
    #[serde(flatten)]
    manifest: &'a Manifest,
    /// `running`, `complete`, or `partial` (stopped early: only whole cells kept).
    status: &'static str,
    ended: Option<String>,
    cells: Option<usize>,
    requests: Option<usize>,
}

impl Manifest {
    /// The facts of a run of `config` starting at `started`.
    pub fn new(config: &Config, started: SystemTime) -> Self {
        Self {
            name: config.name.clone(),
            description: config.description.clone(),
            tandem_version: env!("CARGO_PKG_VERSION"),
            git_commit: git_commit(),
            crates: KEY_CRATES
                .iter()
                .filter_map(|c| locked_version(c).map(|v| (c.to_string(), v)))
                .collect(),
            machine: Machine {
                os: std::env::consts::OS,
                arch: std::env::consts::ARCH,
                cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
                hostname: std::fs::read_to_string("/etc/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_default(),
            },
            seed: config.seed,
            started: utc(started),
        }
    }

    /// Writes `manifest.json` into `dir`: `running` until `ended` is given.
    pub fn write(&self, dir: &Path, ended: Option<Ended>) -> std::io::Result<()> {
        let w = Written {
            manifest: self,
            status: match ended {
                None => "running",
                Some(e) if e.complete => "complete",
                Some(_) => "partial",
            },
            ended: ended.map(|e| utc(e.at)),
            cells: ended.map(|e| e.cells),
            requests: ended.map(|e| e.requests),
        };
        let text = serde_json::to_string_pretty(&w).expect("a manifest serializes");
        crate::results::write_text(&dir.join("manifest.json"), &(text + "\n"))
    }
}

/// The checked-out commit (`+dirty` with uncommitted changes), or `unknown`.
fn git_commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(commit) => match run(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{commit}+dirty"),
            _ => commit,
        },
        None => "unknown".into(),
    }
}

fn locked_version(name: &str) -> Option<String> {
    let needle = format!("name = \"{name}\"\nversion = \"");
    let at = LOCK.find(&needle)? + needle.len();
    Some(LOCK[at..].split('"').next()?.to_string())
}

/// `2026-11-21T07:15:47Z`.
pub fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2000-02-29 12:34:56 UTC (a leap day) is 951 827 696 s after the epoch.
        let t = UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(utc(t), "2000-02-29T12:34:56Z");
    }

    #[test]
    fn the_lock_file_names_the_key_crates() {
        assert!(locked_version("candle-core").unwrap().starts_with("0."));
        assert!(locked_version("no-such-crate").is_none());
    }
}
