//! What each figure is called and what its caption says.

use crate::config::Config;

/// The figures, in report order.
const FIGURES: &[(&str, &str)] = &[
    ("tpot", "Time per output token by strategy"),
    ("time_breakdown", "Where the time per output token goes"),
    ("accepted_length_vs_k", "Mean accepted length against k"),
    ("acceptance_by_position", "Acceptance by draft position"),
    ("cost_vs_latency", "Cost against latency"),
    (
        "latency_vs_rtt",
        "End-to-end latency against round-trip time",
    ),
    (
        "throughput_vs_clients",
        "Throughput against the number of clients",
    ),
    (
        "tokens_per_round_trip",
        "Committed tokens per round trip against round-trip time",
    ),
    (
        "tokens_vs_tree_nodes",
        "Tokens per round against tree nodes",
    ),
    ("acceptance_by_rank", "Acceptance by sibling rank"),
    ("cost_vs_volume", "Cost per day against tokens per day"),
    ("capacity", "p90 time per output token against clients"),
    (
        "resimulation",
        "Simulated against measured time per output token",
    ),
];

/// A figure's title.
pub fn title(name: &str) -> &'static str {
    FIGURES.iter().find(|f| f.0 == name).map_or("", |f| f.1)
}

/// What each figure shows and how it is computed, for its caption.
const CAPTIONS: &[(&str, &str)] = &[
    (
        "tpot",
        "Bars: 10th to 90th percentile of the requests' time per output token (after the first); dots: the median. Colour: strategy.",
    ),
    (
        "time_breakdown",
        "Per output token, over all requests of a row: drafting, network (a round's wait less the verifier's queue and forward time), verifier queue, verifier forward; other: the rest of the end-to-end time.",
    ),
    (
        "accepted_length_vs_k",
        "Tokens committed per verified round of the fixed-k speculative cells (full-length blocks), with the i.i.d. expectation for the acceptance α measured on the same rounds (dashed).",
    ),
    (
        "acceptance_by_position",
        "Of the blocks that drafted position i, the share accepted there, per k.",
    ),
    (
        "cost_vs_latency",
        "Mean end-to-end latency and dollars per million output tokens. Colour: strategy; marker: link; circled: the Pareto front among strategies whose output the target verified.",
    ),
    (
        "latency_vs_rtt",
        "Mean end-to-end latency against each link's round-trip time. Colour: strategy; marker: client count.",
    ),
    (
        "throughput_vs_clients",
        "Generated tokens per second of a cell's wall time, all clients together. Colour: strategy; marker: link.",
    ),
    (
        "tokens_per_round_trip",
        "Mean tokens committed per verified round (the accepted path and the target's token) on each link, against its round-trip time, for every strategy that drafts: chains and token trees. Colour: strategy.",
    ),
    (
        "tokens_vs_tree_nodes",
        "Mean tokens committed per verified round against the mean tokens drafted per round (a tree's nodes), per strategy and link. Colour: strategy; marker: link.",
    ),
    (
        "acceptance_by_rank",
        "Per drafting strategy, over its verified rounds: of the candidates of each sibling rank the verifier tested (their row reached, every earlier sibling rejected), the share it accepted: the a[r] of the analytical tree model and of [simulation] sibling_acceptance. Rank 0 is the draft's first choice (every token of a chain), rank 2 pools the third candidate and later ones. Colour: strategy.",
    ),
    (
        "cost_vs_volume",
        "Dollars a day at each daily volume with the edge hardware priced; circled: the volumes where a drafting strategy breaks even with cloud-only. Colour: strategy; marker: link.",
    ),
    (
        "capacity",
        "p90 time per output token at each client count. Colour: strategy; marker: link; dashed: the SLO. Capacity is where a curve crosses it (docs/PROTOCOL.md).",
    ),
    (
        "resimulation",
        "Each cell's TPOT p50 as measured (x) and as the simulator fitted to this run gave it (y, 8 replays pooled). Colour: strategy; marker: link; dashed: equality and the ±10 % band.",
    ),
];

/// A figure's caption: what it shows, then what ran.
pub fn caption(name: &str, config: &Config) -> String {
    let what = CAPTIONS.iter().find(|c| c.0 == name).map_or("", |c| c.1);
    let reps = config.workload.repetitions;
    let band = if reps > 1 && BANDED.contains(&name) {
        format!(" Shaded: 10th to 90th percentile of the {reps} repetitions' values.")
    } else {
        String::new()
    };
    format!("{what}{band} {}", crate::summary::what_ran(config))
}

/// The figures whose lines carry a band over the repetitions.
const BANDED: &[&str] = &["latency_vs_rtt", "throughput_vs_clients"];
