//! Verifier throughput on the tiny target on this machine's CPU: the table of
//! [`tandem_verifier::throughput`] (what each column means is there). Run with
//! `cargo bench -p tandem-verifier --bench throughput`, or `-- 64 256` for only those
//! session counts. `verifier-node bench` runs the same on any model and device.

use tandem_models::{LoadOptions, ModelSpec};
use tandem_verifier::throughput::{BenchConfig, Row, run};

#[allow(unsafe_code)]
fn main() {
    // SAFETY: first statement of main; no other thread exists yet.
    unsafe { tandem_models::cpu::init_threads() };
    if std::env::args().any(|a| a == "--list") {
        println!("throughput: bench");
        return;
    }
    let target = "builtin:tiny-target"
        .parse::<ModelSpec>()
        .unwrap()
        .load(&LoadOptions::default())
        .unwrap();
    let picked: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let sessions = [1usize, 4, 16, 64, 256]
        .into_iter()
        .filter(|s| picked.is_empty() || picked.contains(s))
        .collect();
    let cfg = BenchConfig {
        sessions,
        new_tokens: 64,
        bandwidth_gbs: None,
    };
    println!("{}", Row::HEADER);
    run(&target, &cfg, |row| println!("{}", row.markdown()));
}
