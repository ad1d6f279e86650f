//! The results folder: one row per round and per request, written as Parquet (and the
//! summary as CSV). Every file is written beside its final name and renamed into
//! place, so a file that exists is complete.

pub mod read;
mod table;

use std::path::Path;
use std::sync::Arc;

use polars::prelude::{CsvWriter, DataFrame, ParquetWriter, SerWriter};
use serde::{Deserialize, Serialize};
use tandem_draft::RoundRecord;

/// Which cell a round belongs to: the columns every round of a cell shares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CellKey {
    /// Position of the cell in the grid.
    pub cell: u32,
    /// Repetition of the grid (0-based).
    pub repetition: u32,
    /// The strategy, with its parameters (`speculative(k=4)`).
    pub strategy: String,
    /// The network's name.
    pub network: String,
    /// The device's name (empty: this machine as it is).
    pub device: String,
    /// Closed-loop clients in the cell (0: Poisson arrivals).
    pub clients: u32,
}

/// One round of one request: its cell, its request, and the draft loop's own record of
/// the round. The columns of `rounds.parquet` are these fields, flattened, in order, so
/// a round's fields are defined once, in [`RoundRecord`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundRow {
    /// The cell (shared by its rounds).
    #[serde(flatten)]
    pub key: Arc<CellKey>,
    /// Request index within the cell (the same prompt and seed in every cell).
    pub request: u32,
    /// The round.
    #[serde(flatten)]
    pub record: RoundRecord,
}

/// Candidates (tested, accepted) by sibling rank over the verified rounds among
/// `rounds` (rank 2 pools the later ones; [`RoundRecord::by_rank`]).
pub fn rank_totals<'a>(rounds: impl IntoIterator<Item = &'a RoundRow>) -> [(u64, u64); 3] {
    let mut sum = [(0u64, 0u64); 3];
    for r in rounds
        .into_iter()
        .filter(|r| r.record.kind == tandem_draft::RoundKind::Verified)
    {
        for (s, c) in sum.iter_mut().zip(r.record.by_rank()) {
            s.0 += u64::from(c.tested);
            s.1 += u64::from(c.accepted);
        }
    }
    sum
}

/// One request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestRow {
    /// Position of the cell in the grid.
    pub cell: u32,
    /// Repetition of the grid (0-based).
    pub repetition: u32,
    /// The strategy, with its parameters (`speculative(k=4)`).
    pub strategy: String,
    /// The strategy's kind (`speculative`, `routed`).
    pub strategy_kind: String,
    /// The strategy the request ran (a routed request's tier).
    pub tier: String,
    /// Why a routed request got its tier (`private`, `long prompt`, `over SLO`,
    /// `default`); empty otherwise.
    pub route: String,
    /// The strategy's draft length (0 for cloud_only, edge_only and adaptive).
    pub k: u32,
    /// The network's name.
    pub network: String,
    /// The device's name (empty: this machine as it is).
    pub device: String,
    /// Closed-loop clients in the cell (0: Poisson arrivals).
    pub clients: u32,
    /// Request index within the cell (the same prompt and seed in every cell).
    pub request: u32,
    /// Index of the prompt in the prompt set.
    pub prompt_index: u32,
    /// The prompt's data-class tag.
    pub tag: String,
    /// The request's seed (sampling, link jitter and loss).
    pub seed: u64,
    /// Seconds from the cell's start to the request's start.
    pub start_s: f64,
    /// Prompt length in tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub tokens: u32,
    /// Generated tokens the target never verified.
    pub unverified_tokens: u32,
    /// Rounds.
    pub rounds: u32,
    /// Verified rounds that carried drafted tokens (vLLM's "drafts").
    pub drafts: u32,
    /// Tokens drafted.
    pub drafted: u32,
    /// Drafted tokens the target accepted.
    pub accepted: u32,
    /// Accepted ÷ drafted tokens (NaN without drafts).
    pub acceptance_rate: f64,
    /// 1 + accepted ÷ drafts (vLLM's definition).
    pub mean_accepted_length: f64,
    /// Time to first token, ms.
    pub ttft_ms: f64,
    /// Time per output token after the first, ms.
    pub tpot_ms: f64,
    /// End-to-end latency, ms.
    pub e2e_ms: f64,
    /// Bytes sent, edge to cloud.
    pub bytes_up: u64,
    /// Bytes received, cloud to edge.
    pub bytes_down: u64,
    /// Times the edge went on alone (cloud → edge).
    pub fallbacks: u32,
    /// Times the request went on in the cloud because the draft could not (edge →
    /// cloud; 0 or 1).
    pub to_cloud: u32,
    /// Why the draft could not go on (`context full`, `thermal shutdown`), or empty.
    pub to_cloud_reason: String,
    /// When the request went on in the cloud, ms from its start (0 if it did not).
    pub to_cloud_at_ms: f64,
    /// Why generation stopped (`length`, `eos`, ...).
    pub stop: String,
    /// The generated token ids, space-separated.
    pub output_ids: String,
    /// Cloud cost, dollars.
    pub cost_cloud_usd: f64,
    /// Edge energy cost, dollars.
    pub cost_edge_usd: f64,
    /// Total cost, dollars.
    pub cost_usd: f64,
    /// Empty, or why the request failed.
    pub error: String,
}

/// Columns named after the fields of `rows`' elements.
macro_rules! columns {
    ($rows:expr; $($field:ident),+ $(,)?) => {
        vec![$(polars::prelude::Column::new(
            stringify!($field).into(),
            $rows.iter().map(|r| r.$field.clone()).collect::<Vec<_>>(),
        )),+]
    };
}
pub(crate) use columns;

/// The rounds as a table: one column per field of [`RoundRow`].
pub fn rounds_frame(rows: &[RoundRow]) -> polars::prelude::PolarsResult<DataFrame> {
    table::to_frame(rows)
}

/// The requests as a table.
pub fn requests_frame(rows: &[RequestRow]) -> polars::prelude::PolarsResult<DataFrame> {
    DataFrame::new(
        rows.len(),
        columns!(rows; cell, repetition, strategy, strategy_kind, tier, route, k, network, device,
            clients, request, prompt_index, tag, seed, start_s, prompt_tokens, tokens,
            unverified_tokens, rounds, drafts, drafted, accepted, acceptance_rate,
            mean_accepted_length, ttft_ms, tpot_ms, e2e_ms, bytes_up, bytes_down, fallbacks,
            to_cloud, to_cloud_reason, to_cloud_at_ms, stop, output_ids, cost_cloud_usd, cost_edge_usd, cost_usd, error),
    )
}

/// Rows per row group of `rounds.parquet`: the table of one group is all of it that
/// is ever built in memory.
const ROW_GROUP: usize = 1 << 18;

/// Writes the rounds to `path` as Parquet, a row group at a time, through a temporary
/// file. The next group's table is built on a thread of its own while the last one is
/// compressed and written: at millions of rounds the two take about as long.
pub fn write_rounds(path: &Path, rows: &[RoundRow]) -> std::io::Result<()> {
    let io = std::io::Error::other;
    write_atomically(path, |f| {
        let schema = rounds_frame(&[]).map_err(io)?.schema().as_ref().clone();
        let mut writer = ParquetWriter::new(f).batched(&schema).map_err(io)?;
        std::thread::scope(|scope| {
            // One table ahead: at most two groups are built in memory at once.
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            scope.spawn(move || {
                for group in rows.chunks(ROW_GROUP) {
                    // A send fails only when the writer gave up on an error.
                    if tx.send(rounds_frame(group)).is_err() {
                        return;
                    }
                }
            });
            for table in rx {
                writer.write_batch(&table.map_err(io)?).map_err(io)?;
            }
            Ok::<_, std::io::Error>(())
        })?;
        writer.finish().map(|_| ()).map_err(io)
    })
}

/// Writes `df` to `path` as Parquet, through a temporary file.
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> std::io::Result<()> {
    write_atomically(path, |f| {
        ParquetWriter::new(f)
            .finish(df)
            .map(|_| ())
            .map_err(std::io::Error::other)
    })
}

/// Writes `df` to `path` as CSV with a header, through a temporary file.
pub fn write_csv(path: &Path, df: &mut DataFrame) -> std::io::Result<()> {
    write_atomically(path, |f| {
        CsvWriter::new(f)
            .include_header(true)
            .finish(df)
            .map_err(std::io::Error::other)
    })
}

/// Writes `text` to `path` through a temporary file.
pub fn write_text(path: &Path, text: &str) -> std::io::Result<()> {
    write_atomically(path, |f| std::io::Write::write_all(f, text.as_bytes()))
}

fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.partial",
        path.extension().and_then(|e| e.to_str()).unwrap_or("tmp")
    ));
    let mut f = std::fs::File::create(&tmp)?;
    let result = write(&mut f).and_then(|()| f.sync_all());
    drop(f);
    match result {
        Ok(()) => std::fs::rename(&tmp, path),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Reads a Parquet file back.
pub fn read_parquet(path: &Path) -> polars::prelude::PolarsResult<DataFrame> {
    use polars::prelude::SerReader;
    let f = std::fs::File::open(path)?;
    polars::prelude::ParquetReader::new(f).finish()
}
