//! Reading a results folder's tables back into rows.

use polars::prelude::{DataFrame, PolarsResult};

use super::{RequestRow, RoundRow};

struct Cols<'a>(&'a DataFrame);

impl Cols<'_> {
    fn u32(&self, name: &str) -> PolarsResult<Vec<u32>> {
        let c = self.0.column(name)?.u32()?;
        Ok((0..c.len()).map(|i| c.get(i).unwrap_or(0)).collect())
    }
    fn u64(&self, name: &str) -> PolarsResult<Vec<u64>> {
        let c = self.0.column(name)?.u64()?;
        Ok((0..c.len()).map(|i| c.get(i).unwrap_or(0)).collect())
    }
    fn f64(&self, name: &str) -> PolarsResult<Vec<f64>> {
        let c = self.0.column(name)?.f64()?;
        Ok((0..c.len()).map(|i| c.get(i).unwrap_or(f64::NAN)).collect())
    }
    /// A column that older results folders lack: its default in every row then.
    fn or_default<T: Default + Clone>(
        &self,
        name: &str,
        read: impl Fn(&Self, &str) -> PolarsResult<Vec<T>>,
    ) -> PolarsResult<Vec<T>> {
        match self.0.column(name) {
            Ok(_) => read(self, name),
            Err(_) => Ok(vec![T::default(); self.0.height()]),
        }
    }
    fn str(&self, name: &str) -> PolarsResult<Vec<String>> {
        let c = self.0.column(name)?.str()?;
        Ok((0..c.len())
            .map(|i| c.get(i).unwrap_or_default().to_string())
            .collect())
    }
}

/// `requests.parquet` as rows.
pub fn requests(df: &DataFrame) -> PolarsResult<Vec<RequestRow>> {
    let c = Cols(df);
    let (cell, repetition, strategy, strategy_kind, k) = (
        c.u32("cell")?,
        c.u32("repetition")?,
        c.str("strategy")?,
        c.str("strategy_kind")?,
        c.u32("k")?,
    );
    let clients = c.u32("clients")?;
    let (tier, route) = (c.str("tier")?, c.str("route")?);
    let (network, device, request, prompt_index, tag, seed) = (
        c.str("network")?,
        c.str("device")?,
        c.u32("request")?,
        c.u32("prompt_index")?,
        c.str("tag")?,
        c.u64("seed")?,
    );
    let (start_s, prompt_tokens, tokens, unverified_tokens, rounds, drafts) = (
        c.f64("start_s")?,
        c.u32("prompt_tokens")?,
        c.u32("tokens")?,
        c.u32("unverified_tokens")?,
        c.u32("rounds")?,
        c.u32("drafts")?,
    );
    let (drafted, accepted, acceptance_rate, mean_accepted_length) = (
        c.u32("drafted")?,
        c.u32("accepted")?,
        c.f64("acceptance_rate")?,
        c.f64("mean_accepted_length")?,
    );
    let (ttft_ms, tpot_ms, e2e_ms, bytes_up, bytes_down, fallbacks) = (
        c.f64("ttft_ms")?,
        c.f64("tpot_ms")?,
        c.f64("e2e_ms")?,
        c.u64("bytes_up")?,
        c.u64("bytes_down")?,
        c.u32("fallbacks")?,
    );
    // Edge → cloud fallback (added after the first results folders were written).
    let (to_cloud, to_cloud_reason, to_cloud_at_ms) = (
        c.or_default("to_cloud", Cols::u32)?,
        c.or_default("to_cloud_reason", Cols::str)?,
        c.or_default("to_cloud_at_ms", Cols::f64)?,
    );
    let (stop, output_ids, cloud, edge, cost, error) = (
        c.str("stop")?,
        c.str("output_ids")?,
        c.f64("cost_cloud_usd")?,
        c.f64("cost_edge_usd")?,
        c.f64("cost_usd")?,
        c.str("error")?,
    );
    Ok((0..df.height())
        .map(|i| RequestRow {
            cell: cell[i],
            repetition: repetition[i],
            strategy: strategy[i].clone(),
            strategy_kind: strategy_kind[i].clone(),
            tier: tier[i].clone(),
            route: route[i].clone(),
            k: k[i],
            network: network[i].clone(),
            device: device[i].clone(),
            clients: clients[i],
            request: request[i],
            prompt_index: prompt_index[i],
            tag: tag[i].clone(),
            seed: seed[i],
            start_s: start_s[i],
            prompt_tokens: prompt_tokens[i],
            tokens: tokens[i],
            unverified_tokens: unverified_tokens[i],
            rounds: rounds[i],
            drafts: drafts[i],
            drafted: drafted[i],
            accepted: accepted[i],
            acceptance_rate: acceptance_rate[i],
            mean_accepted_length: mean_accepted_length[i],
            ttft_ms: ttft_ms[i],
            tpot_ms: tpot_ms[i],
            e2e_ms: e2e_ms[i],
            bytes_up: bytes_up[i],
            bytes_down: bytes_down[i],
            fallbacks: fallbacks[i],
            to_cloud: to_cloud[i],
            to_cloud_reason: to_cloud_reason[i].clone(),
            to_cloud_at_ms: to_cloud_at_ms[i],
            stop: stop[i].clone(),
            output_ids: output_ids[i].clone(),
            cost_cloud_usd: cloud[i],
            cost_edge_usd: edge[i],
            cost_usd: cost[i],
            error: error[i].clone(),
        })
        .collect())
}

/// The rounds of a `rounds.parquet`.
pub fn rounds(df: &DataFrame) -> PolarsResult<Vec<RoundRow>> {
    super::table::from_frame(df)
}
