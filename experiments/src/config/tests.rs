use std::path::Path;

use super::*;

const QUICKSTART: &str = include_str!("../../configs/quickstart.toml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("exp.toml"))
}

/// The quickstart with `from` replaced by `to` (which must occur once).
fn edited(from: &str, to: &str) -> String {
    assert_eq!(QUICKSTART.matches(from).count(), 1, "{from:?}");
    QUICKSTART.replace(from, to)
}

fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).unwrap()].matches('\n').count() + 1
}

#[test]
fn the_quickstart_parses_and_its_resolved_form_reads_back_the_same() {
    let c = parse(QUICKSTART).unwrap();
    assert_eq!(c.name, "quickstart");
    assert_eq!(c.networks.len(), 2);
    assert_eq!(crate::plan::cells(&c).len(), 2 * 5);
    let again = parse(&c.resolved()).unwrap();
    assert_eq!(again, c);
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let text = edited("max_new_tokens = 48", "max_new_tokens = 48\nmax_tokens = 9");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.line, Some(line_of(&text, "max_tokens = 9")), "{e}");
    assert!(e.to_string().contains("max_tokens"), "{e}");
    assert!(e.to_string().starts_with("exp.toml:"), "{e}");
}

#[test]
fn a_bad_value_is_named_by_its_path_and_line() {
    let text = edited("k = [2, 4]", "k = [2, 0]");
    let e = parse(&text).unwrap_err();
    assert!(
        e.message
            .starts_with("strategy[2].k: must be between 1 and 32, got 0"),
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(&text, "k = [2, 0]")));

    let text = edited("name = \"lte\"", "name = \"lte\"\nlink = \"delay=fast\"");
    let e = parse(&text).unwrap_err();
    assert!(e.message.starts_with("network[1].link:"), "{e}");
    assert_eq!(e.line, Some(line_of(&text, "link = \"delay=fast\"")));
}

#[test]
fn inconsistent_settings_are_refused() {
    let cases = [
        (
            edited("clients = 2", "clients = 2\narrival_rate = 3.0"),
            "workload.arrival_rate",
        ),
        (edited("clients = 2", "clients = 0"), "workload.clients"),
        (
            edited("kind = \"cloud_only\"", "kind = \"cloud_only\"\nk = 3"),
            "strategy[0].k",
        ),
        (
            edited("kind = \"edge_only\"", "kind = \"warp\""),
            "strategy[1].kind",
        ),
        (
            edited("k = 4", "policy = \"fixed:4\""),
            "strategy[3].policy",
        ),
        (
            edited("name = \"lte\"", "name = \"lan\""),
            "network[1].name",
        ),
        (
            edited(
                "target = \"builtin:tiny-target\"",
                "target = \"builtin:huge\"",
            ),
            "models.target",
        ),
        (
            edited("seed = 7", "seed = 7\ntransport = \"carrier pigeon\""),
            "transport",
        ),
        (
            edited("[cost]", "[cost]\ngpu_utilisation = 1.5"),
            "cost.gpu_utilisation",
        ),
        (
            edited("[cost]", "[cost]\nedge_device_dollars = 500"),
            "cost.edge_amortisation_days",
        ),
        (
            edited("[cost]", "[cost]\nedge_idle_watts = -2"),
            "cost.edge_idle_watts",
        ),
        (
            edited("resimulate = true", "resimulate = true\nslo_tpot_ms = 0"),
            "report.slo_tpot_ms",
        ),
        (
            edited("resimulate = true", "resimulate = true\nslo_ttft_ms = 50"),
            "report.slo_ttft_ms",
        ),
    ];
    for (text, key) in cases {
        let e = parse(&text).unwrap_err();
        assert!(e.message.starts_with(&format!("{key}:")), "{key}: {e}");
        assert!(e.line.is_some(), "{key}: no line in {e}");
    }
}

#[test]
fn a_missing_section_is_named() {
    let text = QUICKSTART.replace("[workload]", "[work]");
    let e = parse(&text).unwrap_err();
    assert!(e.to_string().contains("work"), "{e}");
}

#[test]
fn adaptive_defaults_to_plus_two_minus_one_and_lists_make_a_grid() {
    use tandem_decoding::policy::PolicySpec;
    use tandem_draft::Strategy;
    let text = edited(
        "kind = \"edge_only\"",
        "kind = \"adaptive\"\n\n[[strategy]]\nkind = \"adaptive\"\npolicy = [\"goodput\", \"p_min:0.6\"]",
    );
    let c = parse(&text).unwrap();
    let adaptive: Vec<Strategy> = crate::plan::cells(&c)
        .into_iter()
        .filter(|c| c.network == "lan" && c.kind == tandem_draft::strategy::StrategyKind::Adaptive)
        .map(|c| c.strategy)
        .collect();
    assert_eq!(adaptive.len(), 3);
    assert_eq!(
        adaptive[0],
        Strategy::Adaptive {
            policy: PolicySpec::PlusTwoMinusOne { max_k: 8 }
        }
    );
}

#[test]
fn the_readme_example_config_is_valid() {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("```toml\nname = \"mine\"")
        .expect("the example")
        + 8;
    let end = start + readme[start..].find("```").unwrap();
    let c = parse(&readme[start..end]).unwrap();
    assert_eq!(c.devices[0].name, "jetson");
    // Two networks × (three k + two exits + two policies + three trees + one routed).
    assert_eq!(crate::plan::cells(&c).len(), 2 * (3 + 2 + 2 + 3 + 1));
    assert_eq!(c.claims[0].strategy, "early_exit(k=4,exit=2)");
}

#[test]
fn a_list_of_clients_is_a_grid_axis() {
    let c = parse(&edited("clients = 2", "clients = [1, 4]")).unwrap();
    let cells = crate::plan::cells(&c);
    assert_eq!(cells.len(), 2 * 2 * 5);
    assert_eq!(cells.iter().filter(|c| c.clients == 4).count(), 10);
    let e = parse(&edited("clients = 2", "clients = [1, 0]")).unwrap_err();
    assert!(e.message.starts_with("workload.clients:"), "{e}");
}

#[test]
fn every_shipped_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 20, "{n} configs");
}

#[test]
fn devices_are_checked_and_named_by_key() {
    let c = parse(&edited(
        "target = \"builtin:tiny-target\"",
        "target = \"builtin:tiny-target\"\ndevice = \"cuda:1\"\ndtype = \"bf16\"",
    ))
    .unwrap();
    let placed = c.models.as_ref().unwrap().placements().unwrap();
    assert_eq!(placed.target.to_string(), "cuda:1 bf16");
    assert_eq!(placed.draft.to_string(), "cpu f32");
    for (line, key) in [
        ("device = \"tpu\"", "models.device"),
        ("dtype = \"f64\"", "models.dtype"),
        ("draft_device = \"gpu:x\"", "models.draft_device"),
    ] {
        let text = edited(
            "target = \"builtin:tiny-target\"",
            &format!("target = \"builtin:tiny-target\"\n{line}"),
        );
        let e = parse(&text).unwrap_err();
        assert!(e.to_string().contains(key), "{line}: {e}");
        assert_eq!(e.line, Some(line_of(&text, line)), "{e}");
    }
    // A running verifier has its own device and dtype: naming them here is refused.
    for (line, key) in [
        ("device = \"cuda\"", "models.device"),
        ("dtype = \"bf16\"", "models.dtype"),
    ] {
        let text = edited(
            "target = \"builtin:tiny-target\"",
            &format!("target = \"builtin:tiny-target\"\n{line}"),
        )
        .replacen(
            "seed = 7",
            "seed = 7\nverifier = \"grpc://127.0.0.1:50051\"",
            1,
        );
        let e = parse(&text).unwrap_err();
        assert!(
            e.to_string().contains(key) && e.to_string().contains("verifier-node"),
            "{e}"
        );
    }
}
