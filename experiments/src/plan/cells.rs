//! The grid: every (repetition, network, device, strategy) combination is a cell, and
//! every cell runs the same requests with the same seeds, so cells compare pairwise.

use std::sync::Arc;
use tandem_draft::{DevicePace, Strategy};

use tandem_protocol::LinkProfile;

use tandem_draft::route::Router;
use tandem_draft::strategy::StrategyKind;

use crate::config::{Config, Device};

/// One combination of the grid.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Position in the grid.
    pub index: usize,
    /// Repetition of the grid (0-based).
    pub repetition: usize,
    /// The strategy, with its parameters (`speculative(k=4)`).
    pub strategy: Strategy,
    /// The strategy's grid entry kind.
    pub kind: StrategyKind,
    /// The name in results: the strategy (`speculative(k=4)`), or `routed`.
    pub name: String,
    /// A `routed` cell's router: it picks each request's strategy.
    pub route: Option<Arc<Router>>,
    /// The network's name.
    pub network: String,
    /// The emulated link.
    pub link: LinkProfile,
    /// Closed-loop clients (0: Poisson arrivals).
    pub clients: usize,
    /// Device name (empty: this machine).
    pub device: String,
    /// The device, when one is emulated.
    pub pace: Option<DevicePaceSpec>,
}

/// What a device's pace is made from; each client gets its own [`DevicePace`] (its own
/// device, heating up on its own).
#[derive(Debug, Clone)]
pub struct DevicePaceSpec(Device);

impl DevicePaceSpec {
    /// A fresh device.
    pub fn pace(&self) -> DevicePace {
        let d = &self.0;
        let mut p = DevicePace::new(d.draft_slowdown);
        if let Some(after) = d.shutdown_after_s {
            p = p.with_shutdown(std::time::Duration::from_secs_f64(after));
        }
        if let Some(mb) = d.kv_budget_mb {
            p = p.with_kv_budget((mb * 1024.0 * 1024.0) as u64);
        }
        match d.throttle_after_s {
            Some(after) => p.with_throttle(
                std::time::Duration::from_secs_f64(after),
                d.throttle_factor,
                std::time::Duration::from_secs_f64(d.throttle_ramp_s),
            ),
            None => p,
        }
    }

    /// Joules per drafted token.
    pub fn joules_per_token(&self) -> f64 {
        self.0.joules_per_token
    }
}

impl Cell {
    /// The columns every round of this cell shares.
    pub fn key(&self) -> crate::results::CellKey {
        crate::results::CellKey {
            cell: self.index as u32,
            repetition: self.repetition as u32,
            strategy: self.name.clone(),
            network: self.network.clone(),
            device: self.device.clone(),
            clients: self.clients as u32,
        }
    }
}

/// The cells of a validated config, in run order.
pub fn cells(config: &Config) -> Vec<Cell> {
    let devices: Vec<Option<&Device>> = if config.devices.is_empty() {
        vec![None]
    } else {
        config.devices.iter().map(Some).collect()
    };
    let w = &config.workload;
    let clients: Vec<usize> = match (&w.clients, w.arrival_rate) {
        (_, Some(_)) => vec![0],
        (Some(c), None) => c.values(),
        (None, None) => vec![1],
    };
    let grid = config.grid();
    let mut out = Vec::new();
    for repetition in 0..config.workload.repetitions {
        for &clients in &clients {
            for (network, link) in config.networks.iter().zip(&grid.links) {
                for device in &devices {
                    for entry in &grid.entries {
                        for &strategy in &entry.strategies {
                            out.push(Cell {
                                index: out.len(),
                                repetition,
                                strategy,
                                name: match entry.router {
                                    Some(_) => "routed".into(),
                                    None => strategy.to_string(),
                                },
                                route: entry.router.clone(),
                                kind: entry.kind,
                                network: network.name.clone(),
                                link: link.clone(),
                                clients,
                                device: device.map(|d| d.name.clone()).unwrap_or_default(),
                                pace: device.map(|d| DevicePaceSpec(d.clone())),
                            });
                        }
                    }
                }
            }
        }
    }
    out
}
