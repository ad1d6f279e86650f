//! `tandem run` end to end on the shipped tiny pair: the results folder's files, their
//! schema and row counts; speculative output equal to cloud-only output (greedy is
//! lossless); the same config and seed giving the same tokens and acceptance; a run
//! stopped early marked partial.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use polars::prelude::{DataFrame, DataType};
use tandem_draft::RoundKind;
use tandem_experiments::config::Config;
use tandem_experiments::plan::Cell;
use tandem_experiments::results::read_parquet;
use tandem_experiments::run::{Outcome, Progress, RunOptions, run};

const SMALL: &str = r#"
name = "small"
seed = 3

[models]
draft = "builtin:tiny-draft"
target = "builtin:tiny-target"

[workload]
prompts = "builtin:counting"
requests = 3
clients = 2
max_new_tokens = 12

[[network]]
name = "lan"

[[strategy]]
kind = "cloud_only"

[[strategy]]
kind = "speculative"
k = [2, 4]

[[strategy]]
kind = "pipelined"
k = 3

[[strategy]]
kind = "edge_only"
"#;

struct Quiet;

impl Progress for Quiet {
    fn cell(&self, _: &Cell, _: usize) {}
    fn request_done(&self) {}
}

async fn run_small(out: &Path, stop: bool) -> Outcome {
    run_stopped(out, "small", SMALL, stop).await
}

/// Writes `text` as `dir/NAME.toml` (paths in it are relative to `dir`) and runs it
/// to the end, results under `dir`.
async fn run_file(dir: &Path, name: &str, text: &str) -> Outcome {
    run_stopped(dir, name, text, false).await
}

/// Like [`run_file`], with the stop flag already set when `stop`.
async fn run_stopped(dir: &Path, name: &str, text: &str, stop: bool) -> Outcome {
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, text).unwrap();
    let config = Config::load(&config_path).unwrap();
    let opts = RunOptions {
        config_path,
        out: dir.to_path_buf(),
    };
    run(
        &config,
        &opts,
        Arc::new(AtomicBool::new(stop)),
        Arc::new(Quiet),
    )
    .await
    .unwrap()
}

fn strs(df: &DataFrame, name: &str) -> Vec<String> {
    let c = df.column(name).unwrap().str().unwrap();
    (0..c.len())
        .map(|i| c.get(i).unwrap().to_string())
        .collect()
}

fn u32s(df: &DataFrame, name: &str) -> Vec<u32> {
    let c = df.column(name).unwrap().u32().unwrap();
    (0..c.len()).map(|i| c.get(i).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_grid_writes_a_complete_results_folder() {
    let out = tempfile::tempdir().unwrap();
    let outcome = run_small(out.path(), false).await;
    assert!(outcome.complete);
    let dir = &outcome.dir;
    assert!(dir.starts_with(out.path().join("small")));
    for f in [
        "config.toml",
        "manifest.json",
        "rounds.parquet",
        "requests.parquet",
        "summary.csv",
        "report.md",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert!(
        std::fs::read_dir(dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("partial")),
        "a temporary file was left behind"
    );

    // 5 cells × 3 requests, every one answered.
    let requests = read_parquet(&dir.join("requests.parquet")).unwrap();
    assert_eq!(requests.height(), 15);
    assert!(strs(&requests, "error").iter().all(String::is_empty));
    for (name, dtype) in [
        ("cell", DataType::UInt32),
        ("strategy", DataType::String),
        ("tokens", DataType::UInt32),
        ("ttft_ms", DataType::Float64),
        ("tpot_ms", DataType::Float64),
        ("e2e_ms", DataType::Float64),
        ("unverified_tokens", DataType::UInt32),
        ("cost_usd", DataType::Float64),
    ] {
        assert_eq!(requests.column(name).unwrap().dtype(), &dtype, "{name}");
    }
    assert!(u32s(&requests, "tokens").iter().all(|&t| t == 12));

    // One row per round, and the rounds add up to each request's totals.
    let rounds = read_parquet(&dir.join("rounds.parquet")).unwrap();
    let total_rounds: u32 = u32s(&requests, "rounds").iter().sum();
    assert_eq!(rounds.height() as u32, total_rounds);
    for name in [
        "draft_ns",
        "network_ns",
        "queue_ns",
        "forward_ns",
        "bytes_up",
    ] {
        assert_eq!(
            rounds.column(name).unwrap().dtype(),
            &DataType::UInt64,
            "{name}"
        );
    }
    let committed: u32 = u32s(&rounds, "committed").iter().sum();
    assert_eq!(committed, 15 * 12);

    // Greedy speculative and pipelined decoding are lossless: each request's tokens
    // equal cloud-only's for the same request.
    let by_strategy = |s: &str| -> Vec<String> {
        outcome
            .requests
            .iter()
            .filter(|r| r.strategy == s)
            .map(|r| r.output_ids.clone())
            .collect()
    };
    let cloud = by_strategy("cloud_only");
    assert_eq!(cloud.len(), 3);
    for s in ["speculative(k=2)", "speculative(k=4)", "pipelined(k=3)"] {
        assert_eq!(by_strategy(s), cloud, "{s}");
    }
    // Edge-only never talks to the verifier.
    for r in outcome
        .requests
        .iter()
        .filter(|r| r.strategy == "edge_only")
    {
        assert_eq!((r.bytes_up, r.unverified_tokens), (0, 12));
    }

    let summary = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 1 + 5);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "complete");
    assert_eq!(manifest["requests"], 15);
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("| cloud_only | lan | – |"), "{report}");
    assert!(report.contains("1.00×"), "{report}");
    // Figures, as SVG and PNG, each linked from the report (one network: no RTT plot).
    assert_eq!(outcome.report.skipped, None);
    assert_eq!(
        outcome.report.figures,
        [
            "tpot",
            "time_breakdown",
            "accepted_length_vs_k",
            "acceptance_by_position",
            "cost_vs_latency"
        ]
    );
    for f in &outcome.report.figures {
        for ext in ["svg", "png"] {
            let path = dir.join("plots").join(format!("{f}.{ext}"));
            assert!(std::fs::metadata(&path).unwrap().len() > 1000, "{path:?}");
        }
        assert!(report.contains(&format!("(plots/{f}.png)")), "{f}");
    }
    let png = std::fs::read(dir.join("plots/tpot.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // The resolved config reads back as the same experiment.
    let resolved = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert_eq!(
        Config::parse(&resolved, Path::new("config.toml")).unwrap(),
        Config::parse(SMALL, Path::new("small.toml")).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_config_and_seed_give_the_same_tokens_and_acceptance() {
    let out = tempfile::tempdir().unwrap();
    let a = run_small(out.path(), false).await;
    let b = run_small(out.path(), false).await;
    assert_ne!(a.dir, b.dir, "each run gets its own folder");
    let key = |o: &Outcome| -> Vec<(u32, u32, String, u32, u32)> {
        o.requests
            .iter()
            .map(|r| {
                (
                    r.cell,
                    r.request,
                    r.output_ids.clone(),
                    r.drafted,
                    r.accepted,
                )
            })
            .collect()
    };
    assert_eq!(key(&a), key(&b));
    let rounds = |o: &Outcome| -> Vec<(u32, u32, u32, u32, u32)> {
        o.rounds
            .iter()
            .filter(|r| r.record.kind == RoundKind::Verified)
            .map(|r| {
                (
                    r.key.cell,
                    r.request,
                    r.record.round,
                    r.record.drafted,
                    r.record.accepted,
                )
            })
            .collect()
    };
    assert_eq!(rounds(&a), rounds(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_before_its_first_cell_is_marked_partial() {
    let out = tempfile::tempdir().unwrap();
    let outcome = run_small(out.path(), true).await;
    assert!(!outcome.complete);
    assert!(outcome.requests.is_empty());
    let manifest = std::fs::read_to_string(outcome.dir.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"status\": \"partial\""), "{manifest}");
    let report = std::fs::read_to_string(outcome.dir.join("report.md")).unwrap();
    assert!(report.contains("Partial run"), "{report}");
    assert_eq!(
        read_parquet(&outcome.dir.join("requests.parquet"))
            .unwrap()
            .height(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_keeps_private_prompts_on_the_edge_and_sends_long_ones_to_the_cloud() {
    let out = tempfile::tempdir().unwrap();
    let prompts = out.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        concat!(
            "{\"prompt\": \"Count by 2 from 7: 7 9\", \"tag\": \"private\"}\n",
            "{\"prompt\": \"Count by 3 from 12: 12 15\"}\n",
            "{\"prompt\": \"Once upon a time, there was a brave bear named Leo. Leo lived near the forest and liked to sing every day. One day, Leo found a\"}\n",
        ),
    )
    .unwrap();
    let text = r#"
name = "routing"
[models]
draft = "builtin:tiny-draft"
target = "builtin:tiny-target"
[workload]
prompts = "prompts.jsonl"
requests = 6
clients = 3
max_new_tokens = 10
[[network]]
name = "lan"
[[strategy]]
kind = "routed"
[strategy.route]
long_prompt_tokens = 20
default = "speculative:3"
"#;
    let outcome = run_file(out.path(), "routing", text).await;
    assert_eq!(outcome.requests.len(), 6);
    for r in &outcome.requests {
        assert_eq!(r.strategy, "routed");
        assert!(r.error.is_empty(), "{}", r.error);
        match r.prompt_index {
            0 => {
                // Private: never left the device.
                assert_eq!(
                    (r.tier.as_str(), r.route.as_str()),
                    ("edge_only", "private")
                );
                assert_eq!((r.bytes_up, r.bytes_down), (0, 0));
            }
            1 => assert_eq!(
                (r.tier.as_str(), r.route.as_str()),
                ("speculative(k=3)", "default")
            ),
            _ => {
                assert!(r.prompt_tokens > 20);
                assert_eq!(
                    (r.tier.as_str(), r.route.as_str()),
                    ("cloud_only", "long prompt")
                );
            }
        }
    }
    // The private prompt's rounds carry no bytes either.
    let private: Vec<u32> = outcome
        .requests
        .iter()
        .filter(|r| r.tag == "private")
        .map(|r| r.request)
        .collect();
    assert_eq!(private.len(), 2);
    assert!(
        outcome
            .rounds
            .iter()
            .filter(|r| private.contains(&r.request))
            .all(|r| r.record.bytes_up == 0
                && r.record.bytes_down == 0
                && r.record.kind == RoundKind::Edge)
    );
    let report = std::fs::read_to_string(outcome.dir.join("report.md")).unwrap();
    assert!(report.contains("## Routing"), "{report}");
    assert!(
        report.contains("| lan | – | edge_only | private | 33 % |"),
        "{report}"
    );
}

/// A config may name several replicas of one running verifier (`verifier = [..]`, with
/// the certificate they share in `verifier_ca`): the run's sessions spread over them, and
/// its tokens are the in-process run's, token for token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_against_listed_replicas_spreads_its_sessions_and_keeps_its_tokens() {
    use std::str::FromStr;
    use tandem_models::{LoadOptions, ModelSpec};
    use tandem_verifier::{EngineConfig, EngineHandle, ListenConfig};

    let out = tempfile::tempdir().unwrap();
    let certs = out.path().join("certs");
    let mut replicas = Vec::new();
    let mut engines = Vec::new();
    for _ in 0..2 {
        let target = ModelSpec::from_str("builtin:tiny-target")
            .unwrap()
            .load(&LoadOptions::default())
            .unwrap();
        let engine = EngineHandle::start(target.model, EngineConfig::new("tiny-target"));
        engines.push(engine.clone());
        replicas.push(
            tandem_verifier::serve(engine, ListenConfig::loopback(&certs))
                .await
                .unwrap(),
        );
    }
    let list: Vec<String> = replicas
        .iter()
        .map(|r| format!("\"quic://{}\"", r.quic_addr.unwrap()))
        .collect();
    let grid = r#"
[models]
draft = "builtin:tiny-draft"
target = "builtin:tiny-target"
[workload]
prompts = "builtin:counting"
requests = 8
clients = 4
max_new_tokens = 12
[[network]]
name = "lan"
[[strategy]]
kind = "speculative"
k = 3
"#;
    let remote = format!(
        "name = \"replicas\"\nverifier = [{}]\nverifier_ca = \"certs/cert.pem\"\n{grid}",
        list.join(", ")
    );
    let local = format!("name = \"local\"\n{grid}");
    let remote = run_file(out.path(), "replicas", &remote).await;
    let local = run_file(out.path(), "local", &local).await;
    let opened: Vec<u64> = engines
        .iter()
        .map(|e| e.metrics().sessions_opened.get())
        .collect();
    assert_eq!(opened.iter().sum::<u64>(), 8, "{opened:?}");
    assert!(opened.iter().all(|&n| n > 0), "spread: {opened:?}");
    let tokens = |o: &Outcome| -> Vec<(u32, String, u32)> {
        o.requests
            .iter()
            .map(|r| (r.request, r.output_ids.clone(), r.unverified_tokens))
            .collect()
    };
    assert_eq!(tokens(&remote), tokens(&local));
    assert!(remote.requests.iter().all(|r| r.error.is_empty()));
    for r in replicas {
        r.stop().await;
    }
}

/// A config that names a certificate but no running verifier is refused, naming the key.
#[test]
fn a_verifier_certificate_without_a_verifier_is_refused() {
    let text = SMALL.replace("seed = 3", "seed = 3\nverifier_ca = \"cert.pem\"");
    let err = Config::parse(&text, Path::new("small.toml")).unwrap_err();
    assert!(err.to_string().contains("verifier_ca"), "{err}");
    let text = SMALL.replace("seed = 3", "seed = 3\nverifier = []");
    let err = Config::parse(&text, Path::new("small.toml")).unwrap_err();
    assert!(err.to_string().contains("verifier"), "{err}");
}

/// The seed's decision matrix as rules: tasks by tag, a tight latency SLO kept on the
/// edge, privacy first; the report's routing table names the rule that sent each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_by_task_tag_and_latency_slo() {
    let out = tempfile::tempdir().unwrap();
    std::fs::write(
        out.path().join("prompts.jsonl"),
        concat!(
            "{\"prompt\": \"Count by 2 from 7: 7 9\", \"tag\": \"classification\"}\n",
            "{\"prompt\": \"Count by 3 from 12: 12 15\", \"tag\": \"synthesis\"}\n",
            "{\"prompt\": \"Count by 1 from 40: 40 41\", \"tag\": \"synthesis\", \"slo_ms\": 50}\n",
            "{\"prompt\": \"Count by 5 from 10: 10 15\", \"tag\": \"synthesis,private\"}\n",
        ),
    )
    .unwrap();
    let text = r#"
name = "matrix"
[models]
draft = "builtin:tiny-draft"
target = "builtin:tiny-target"
[workload]
prompts = "prompts.jsonl"
requests = 4
max_new_tokens = 8
[[network]]
name = "lan"
[[strategy]]
kind = "routed"
[strategy.route]
tight_slo_ms = 100
[strategy.route.tags]
classification = "edge_only"
synthesis = "cloud_only"
"#;
    let outcome = run_file(out.path(), "matrix", text).await;
    let got: Vec<(u32, &str, &str)> = outcome
        .requests
        .iter()
        .map(|r| (r.prompt_index, r.tier.as_str(), r.route.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "edge_only", "tag"),
            (1, "cloud_only", "tag"),
            (2, "edge_only", "tight SLO"),
            (3, "edge_only", "private"),
        ]
    );
    let report = std::fs::read_to_string(outcome.dir.join("report.md")).unwrap();
    assert!(report.contains("| tag: synthesis |"), "{report}");
    assert!(report.contains("| tight SLO |"), "{report}");
}

/// With the edge hardware priced, the report prices each strategy by daily volume and
/// names its break-even against cloud-only; a price without its amortisation period is
/// refused, naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priced_hardware_gives_the_cost_by_volume() {
    let out = tempfile::tempdir().unwrap();
    let text = SMALL.replace(
        "[[network]]",
        "[cost]\ngpu_dollars_per_hour = 4000.0\ndollars_per_kwh = 0.3\nedge_device_dollars = 500\nedge_amortisation_days = 1000\nedge_idle_watts = 5\n\n[[network]]",
    );
    let outcome = run_file(out.path(), "priced", &text).await;
    let report = std::fs::read_to_string(outcome.dir.join("report.md")).unwrap();
    let table = &report[report.find("## Cost by volume").expect("the table")..];
    assert!(
        table.contains("One edge device costs $0.536 a day"),
        "{table}"
    );
    let row = |strategy: &str| {
        table
            .lines()
            .find(|l| l.contains(&format!("| {strategy} |")))
            .unwrap_or_else(|| panic!("no {strategy} row in {table}"))
            .to_string()
    };
    assert!(
        row("cloud_only").ends_with("| – |"),
        "{}",
        row("cloud_only")
    );
    // Edge-only pays no GPU: at 4000 $/GPU-hour it breaks even at some volume.
    let edge = row("edge_only");
    let last = edge.trim_end_matches(" |").rsplit("| ").next().unwrap();
    assert!(last.parse::<f64>().is_ok(), "{edge}");
    assert!(
        outcome.report.figures.contains(&"cost_vs_volume"),
        "{:?} {:?}",
        outcome.report.figures,
        outcome.report.skipped
    );
    assert!(outcome.dir.join("plots/cost_vs_volume.png").exists());

    let bad = SMALL.replace(
        "[[network]]",
        "[cost]\nedge_device_dollars = 500\n\n[[network]]",
    );
    let err = Config::parse(&bad, Path::new("small.toml")).unwrap_err();
    assert!(
        err.to_string().contains("cost.edge_amortisation_days"),
        "{err}"
    );
}

/// A real run on a device whose memory holds only a short draft cache: each request
/// goes on in the cloud once the draft's cache is full, its tokens still cloud-only's
/// (greedy is lossless either way), and the report counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_out_of_memory_sends_requests_to_the_cloud() {
    let out = tempfile::tempdir().unwrap();
    // The tiny draft's cache: 2 layers × (key + value) × 1 head × 32 × 4 bytes = 512
    // bytes a token; 16 KiB hold 32 tokens, fewer than prompt + 48.
    let text = SMALL
        .replace("max_new_tokens = 12", "max_new_tokens = 48")
        .replace(
            "[[network]]",
            "[[device]]\nname = \"small\"\nkv_budget_mb = 0.015625\n\n[[network]]",
        );
    let outcome = run_file(out.path(), "oom", &text).await;
    let by = |kind: &str| -> Vec<&tandem_experiments::results::RequestRow> {
        outcome
            .requests
            .iter()
            .filter(|r| r.strategy_kind == kind)
            .collect()
    };
    for r in by("speculative") {
        assert_eq!(
            (r.to_cloud, r.to_cloud_reason.as_str()),
            (1, "out of memory")
        );
    }
    let tokens = |kind: &str, k: u32| -> Vec<(u32, String)> {
        by(kind)
            .iter()
            .filter(|r| r.k == k || kind == "cloud_only")
            .map(|r| (r.request, r.output_ids.clone()))
            .collect()
    };
    assert_eq!(tokens("speculative", 4), tokens("cloud_only", 0));
    // Edge-only has no verifier to take over: its requests fail, saying why.
    for r in by("edge_only") {
        assert!(r.error.contains("out of memory"), "{}", r.error);
    }
    let report = std::fs::read_to_string(outcome.dir.join("report.md")).unwrap();
    assert!(report.contains("| to the cloud |"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_pace_holds_every_pass_and_changes_no_token() {
    let out = tempfile::tempdir().unwrap();
    let plain = run_small(out.path(), false).await;
    let paced_text = SMALL.replace(
        "[workload]",
        "[cloud]\nname = \"slow\"\npass_ms = 4\nper_session_ms = 1\n\n[workload]",
    );
    let paced = run_file(out.path(), "paced", &paced_text).await;
    let outputs = |o: &Outcome| -> Vec<(u32, u32, String)> {
        o.requests
            .iter()
            .map(|r| (r.cell, r.request, r.output_ids.clone()))
            .collect()
    };
    assert_eq!(
        outputs(&paced),
        outputs(&plain),
        "a pace changes times, not tokens"
    );
    // Every pass lasted at least the profile's time, and the time held is reported
    // apart from the forward (which the unpaced run never holds).
    let mut held = 0;
    for r in paced.rounds.iter().filter(|r| r.record.batch_size > 0) {
        let floor = 4_000_000 + 1_000_000 * u64::from(r.record.batch_size);
        assert!(
            r.record.forward_ns + r.record.paced_ns >= floor,
            "{:?}",
            r.record
        );
        held += u64::from(r.record.paced_ns > 0);
    }
    assert!(held > 0, "the tiny target is faster than 5 ms a pass");
    assert!(plain.rounds.iter().all(|r| r.record.paced_ns == 0));
    // The results folder records the pace and the report says so.
    let config = std::fs::read_to_string(paced.dir.join("config.toml")).unwrap();
    assert!(
        config.contains("[cloud]") && config.contains("pass_ms = 4.0"),
        "{config}"
    );
    let md = std::fs::read_to_string(paced.dir.join("report.md")).unwrap();
    assert!(md.contains("Cloud paced to `slow`"), "{md}");
}

#[test]
fn a_cloud_pace_is_refused_where_it_cannot_apply() {
    let sim = "name = \"x\"\n[simulation]\nacceptance = 0.8\ndraft_ms_per_token = 1\npass_ms = 1\n[cloud]\nname = \"a\"\npass_ms = 5\n[workload]\nprompts = \"builtin:mixed\"\nrequests = 1\nmax_new_tokens = 8\n[[network]]\nname = \"lan\"\n[[strategy]]\nkind = \"cloud_only\"\n";
    let e = Config::parse(sim, Path::new("x.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cloud: a simulation has its own pass times"),
        "{e}"
    );
    let both = SMALL.replace(
        "[workload]",
        "[cloud]\nname = \"a\"\npass_ms = 5\nprofile_trace = \"r.parquet\"\n\n[workload]",
    );
    let e = Config::parse(&both, Path::new("x.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cloud.pass_ms: give the pass times or profile_trace"),
        "{e}"
    );
    let none = SMALL.replace("[workload]", "[cloud]\nname = \"a\"\n\n[workload]");
    let e = Config::parse(&none, Path::new("x.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cloud.pass_ms: missing"), "{e}");
}
