//! The experiment config: one TOML file naming the models, the workload, the links,
//! the edge devices, the cost model and the strategy grid. [`Config::load`] parses it
//! and validates every value before anything runs; an error names the file, the line
//! and the key.
//!
//! ```toml
//! name = "quickstart"
//! seed = 7
//!
//! [models]
//! draft = "builtin:tiny-draft"
//! target = "builtin:tiny-target"
//!
//! [workload]
//! prompts = "builtin:stories"   # or a JSONL file: {"prompt": "...", "tag": "private"}
//! requests = 8
//! clients = 2                   # closed loop; or arrival_rate = 4.0 (Poisson, per s)
//! max_new_tokens = 48
//!
//! [[network]]
//! name = "lan"                  # a named profile, or `link = "delay=20,up=50"`
//!
//! [[strategy]]
//! kind = "speculative"
//! k = [2, 4]                    # a grid: one cell per value
//! ```

mod locate;
mod schema;
mod sim;
mod validate;

pub use schema::*;
pub use sim::{Outage, SimSpec};
pub use validate::{Grid, GridEntry};

use std::path::{Path, PathBuf};

/// A config that does not parse or does not make sense.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The line of the offending key, when known.
    pub line: Option<usize>,
    /// What is wrong, naming the key.
    pub message: String,
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            message: format!("cannot read the config: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text` (read from `file`, for messages).
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            line: e.span().map(|s| locate::line_of(text, s.start)),
            message: e.message().trim().to_string(),
        })?;
        config.grid = config.validate().map_err(|v| ConfigError {
            file: file.to_path_buf(),
            line: locate::line_of_key(text, &v.key),
            message: format!("{}: {}", v.key, v.message),
        })?;
        Ok(config)
    }

    /// The grid as validation resolved it: the transport, each network's link, each
    /// strategy entry's kind, strategies and router.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// The config as TOML, every default filled in (written beside the results).
    pub fn resolved(&self) -> String {
        toml::to_string_pretty(self).expect("a parsed config serializes")
    }
}

#[cfg(test)]
mod tests;
