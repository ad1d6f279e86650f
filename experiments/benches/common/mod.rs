//! The simulator benches' cell: `clients` closed-loop clients × 256 tokens over `lte`,
//! acceptance 0.8, a 72 ms draft step and a 25 ms (+ 595 ms to verify) pass.

use std::path::Path;

use tandem_experiments::config::Config;

/// The bench config with `pass` (more `[simulation]` keys: the per-session cost, batch
/// limits) and one `[[strategy]]` table's body.
pub fn config(clients: usize, pass: &str, strategy: &str) -> Config {
    let text = format!(
        r#"
name = "bench"
[simulation]
acceptance = 0.8
draft_ms_per_token = 72
pass_ms = 25
verify_extra_ms = 595
{pass}
[workload]
prompts = "builtin:mixed"
requests = {clients}
clients = {clients}
max_new_tokens = 256
[[network]]
name = "lte"
[[strategy]]
{strategy}
"#
    );
    Config::parse(&text, Path::new("bench.toml")).expect("a valid bench config")
}
