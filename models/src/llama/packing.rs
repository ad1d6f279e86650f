//! How a ragged batch is packed for attention. Sessions of similar shape share one
//! padded attention call, so a pass over 64 sessions costs a handful of kernels per
//! layer rather than a few dozen per session.
//!
//! Worked example: blocks of 5 tokens after 40 and 60 cached tokens, and a 1-token
//! block after 10. A group's cost is members × longest block × longest context.
//!
//! ```text
//! sorted by (len, total):  c: 1 × 11   a: 5 × 45   b: 5 × 65
//! real cells               11 + 225 + 325 = 561
//! padded, one group        3 × 5 × 65 = 975 ≤ 2 · 561 + slack: one call
//! ```
//!
//! A prefill chunk of 512 next to verification blocks of 5 would pad every block to
//! 512 query rows, so it gets a group of its own.

use candle_core::{Device, Tensor};

use crate::error::Result;

/// Where one session's block sits in a batched pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    /// First row of the block in the concatenated batch.
    pub(super) start: usize,
    /// Tokens in the block.
    pub(super) len: usize,
    /// Tokens already in the session's cache.
    pub(super) past: usize,
    /// A token tree: its index in the pass's [`TreeRows`] list; `None`: a chain.
    pub(super) tree: Option<usize>,
}

impl Span {
    /// Positions the block's last token attends to.
    pub(super) fn total(&self) -> usize {
        self.past + self.len
    }

    /// Whether block row `i` attends to key position `j` (a cached one, or block row
    /// `j − past`): in a chain every earlier row and itself, in a tree its ancestors
    /// and itself.
    pub(super) fn sees(&self, trees: &[TreeRows], i: usize, j: usize) -> bool {
        match (j.checked_sub(self.past), self.tree) {
            (None, _) => true,
            (Some(a), None) => a <= i,
            (Some(a), Some(t)) => trees[t][i].binary_search(&(a as u32)).is_ok(),
        }
    }
}

/// A token tree's attention: for each row of its block, the block rows it sees (its
/// ancestors and itself), increasing.
pub(super) type TreeRows = Vec<Vec<u32>>;

/// The rows each node of a tree sees, from its parent rows (0: the context, `j`: node
/// `j − 1`; checked earlier to be earlier rows).
pub(super) fn tree_rows(parents: &[u32]) -> TreeRows {
    let mut rows: TreeRows = Vec::with_capacity(parents.len());
    for (i, &p) in parents.iter().enumerate() {
        let mut r = match p {
            0 => Vec::new(),
            p => rows[p as usize - 1].clone(),
        };
        r.push(i as u32);
        rows.push(r);
    }
    rows
}

/// Padded cells a group may spend beyond twice its real ones; below this, one more
/// kernel launch costs more than the padding.
const SLACK_CELLS: usize = 4096;

/// Partitions sessions into groups that attend together: sorted by block length, then
/// by context length, and cut wherever padding a member in would more than double the
/// group's attention cells (plus [`SLACK_CELLS`]).
pub(super) fn plan(spans: &[Span]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (spans[i].len, spans[i].total()));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let (mut max_len, mut max_total, mut real) = (0usize, 0usize, 0usize);
    for i in order {
        let s = spans[i];
        let cells = s.len * s.total();
        if let Some(g) = groups.last_mut() {
            let (l, t) = (max_len.max(s.len), max_total.max(s.total()));
            if (g.len() + 1) * l * t <= 2 * (real + cells) + SLACK_CELLS {
                g.push(i);
                (max_len, max_total, real) = (l, t, real + cells);
                continue;
            }
        }
        groups.push(vec![i]);
        (max_len, max_total, real) = (s.len, s.total(), cells);
    }
    groups
}

/// One group's padded layout: `members × max_len` query rows against `max_total` key
/// positions, with the tensors that move rows in and out of it.
#[derive(Debug)]
pub(super) struct Group {
    /// Indices into the batch's entries, in padded order.
    pub(super) members: Vec<usize>,
    pub(super) max_len: usize,
    pub(super) max_total: usize,
    /// Where the padded query rows come from: one contiguous run of the batch, or a
    /// row index (padding rows repeat a member's first row).
    pub(super) gather: Gather,
    /// The padded rows that hold real tokens, in member order; `None` when all do.
    pub(super) scatter: Option<Tensor>,
    /// `members × 1 × 1 × max_len × max_total`, 0 or −∞; `None` when nothing needs
    /// masking (single-token blocks over equal contexts).
    pub(super) mask: Option<Tensor>,
}

/// How a group's padded queries are read from the batch.
#[derive(Debug)]
pub(super) enum Gather {
    /// The members' rows are already `members × max_len`, consecutive from this row.
    Rows(usize),
    /// Select these rows.
    Index(Tensor),
}

impl Group {
    /// Builds the tensors for the members of one planned group. `like` gives the
    /// mask's dtype and device.
    pub(super) fn new(
        spans: &[Span],
        trees: &[TreeRows],
        members: Vec<usize>,
        like: &Tensor,
    ) -> Result<Self> {
        let device = like.device();
        let m: Vec<Span> = members.iter().map(|&i| spans[i]).collect();
        let max_len = m.iter().map(|s| s.len).max().unwrap_or(0);
        let max_total = m.iter().map(Span::total).max().unwrap_or(0);
        let full = m.iter().all(|s| s.len == max_len);
        let consecutive = m.windows(2).all(|w| w[1].start == w[0].start + w[0].len);
        let gather = if full && consecutive {
            Gather::Rows(m[0].start)
        } else {
            let rows = m
                .iter()
                .flat_map(|s| (0..max_len).map(move |j| (s.start + j.min(s.len - 1)) as u32));
            Gather::Index(index(rows.collect(), device)?)
        };
        let scatter = if full {
            None
        } else {
            let rows = m
                .iter()
                .enumerate()
                .flat_map(|(b, s)| (0..s.len).map(move |j| (b * max_len + j) as u32));
            Some(index(rows.collect(), device)?)
        };
        let needs_mask = max_len > 1 || m.iter().any(|s| s.total() != max_total);
        let mask = if needs_mask {
            Some(mask(&m, trees, max_len, max_total, like)?)
        } else {
            None
        };
        Ok(Group {
            members,
            max_len,
            max_total,
            gather,
            scatter,
            mask,
        })
    }
}

/// Query row `i` of a member sees key positions `0..=past + i` (a tree's row: the
/// context and its ancestors, [`Span::sees`]); padding rows see what the member's last
/// row sees (their output is discarded, but must stay finite).
fn mask(
    members: &[Span],
    trees: &[TreeRows],
    max_len: usize,
    max_total: usize,
    like: &Tensor,
) -> Result<Tensor> {
    let values: Vec<f32> = members
        .iter()
        .flat_map(|s| {
            (0..max_len).flat_map(move |i| {
                let row = i.min(s.len - 1);
                (0..max_total).map(move |j| {
                    if j < s.total() && s.sees(trees, row, j) {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
        })
        .collect();
    let shape = (members.len(), 1, 1, max_len, max_total);
    Ok(Tensor::from_vec(values, shape, like.device())?.to_dtype(like.dtype())?)
}

/// The permutation from the groups' concatenated outputs back to batch order; `None`
/// when it is the identity.
pub(super) fn restore(spans: &[Span], groups: &[Group], device: &Device) -> Result<Option<Tensor>> {
    let mut at = vec![0u32; spans.iter().map(|s| s.len).sum()];
    let mut row = 0u32;
    for g in groups {
        for &i in &g.members {
            let s = spans[i];
            for j in 0..s.len {
                at[s.start + j] = row;
                row += 1;
            }
        }
    }
    if at.iter().enumerate().all(|(i, &r)| r as usize == i) {
        return Ok(None);
    }
    Ok(Some(index(at, device)?))
}

fn index(rows: Vec<u32>, device: &Device) -> Result<Tensor> {
    let n = rows.len();
    Ok(Tensor::from_vec(rows, n, device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(shapes: &[(usize, usize)]) -> Vec<Span> {
        let mut start = 0;
        shapes
            .iter()
            .map(|&(len, past)| {
                let s = Span {
                    start,
                    len,
                    past,
                    tree: None,
                };
                start += len;
                s
            })
            .collect()
    }

    fn covers_each_once(groups: &[Vec<usize>], n: usize) {
        let mut all: Vec<usize> = groups.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn equal_blocks_share_one_group() {
        let s = spans(&[(5, 60), (5, 64), (5, 80), (5, 70)]);
        let groups = plan(&s);
        assert_eq!(groups.len(), 1);
        covers_each_once(&groups, 4);
    }

    #[test]
    fn a_long_prefill_chunk_is_not_padded_into_verification() {
        let mut shapes = vec![(5, 100); 16];
        shapes.push((512, 0));
        let s = spans(&shapes);
        let groups = plan(&s);
        covers_each_once(&groups, 17);
        let prefill = groups.iter().find(|g| g.contains(&16)).unwrap();
        assert_eq!(prefill, &vec![16]);
    }

    #[test]
    fn padding_stays_within_twice_the_real_cells_plus_slack() {
        let shapes: Vec<(usize, usize)> =
            (0..40).map(|i| (1 + (i * 7) % 9, (i * 37) % 900)).collect();
        let s = spans(&shapes);
        let groups = plan(&s);
        covers_each_once(&groups, s.len());
        for g in &groups {
            let l = g.iter().map(|&i| s[i].len).max().unwrap();
            let t = g.iter().map(|&i| s[i].total()).max().unwrap();
            let real: usize = g.iter().map(|&i| s[i].len * s[i].total()).sum();
            assert!(g.len() * l * t <= 2 * real + SLACK_CELLS, "{g:?}");
        }
    }

    #[test]
    fn gather_scatter_and_restore_round_trip_rows() {
        // Lengths 3, 1, 2: one group padded to 3 rows each, sorted (1, 2, 3).
        let s = spans(&[(3, 4), (1, 5), (2, 6)]);
        let like = Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap();
        let groups: Vec<Group> = plan(&s)
            .into_iter()
            .map(|m| Group::new(&s, &[], m, &like).unwrap())
            .collect();
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(g.members, vec![1, 2, 0]);
        let Gather::Index(gather) = &g.gather else {
            panic!("ragged lengths need an index")
        };
        // Batch rows are 0..6 as values; gather then scatter keeps real rows in member
        // order; restore puts them back in batch order.
        let rows = Tensor::arange(0u32, 6, &Device::Cpu).unwrap();
        let padded = rows.index_select(gather, 0).unwrap();
        let real = padded.index_select(g.scatter.as_ref().unwrap(), 0).unwrap();
        assert_eq!(real.to_vec1::<u32>().unwrap(), vec![3, 4, 5, 0, 1, 2]);
        let back = restore(&s, &groups, &Device::Cpu).unwrap().unwrap();
        let back = real.index_select(&back, 0).unwrap();
        assert_eq!(back.to_vec1::<u32>().unwrap(), vec![0, 1, 2, 3, 4, 5]);
        // Row 1 of the member with one token (past 5) is padding: it sees what row 0 sees.
        let mask: Vec<f32> = g
            .mask
            .as_ref()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let row = |b: usize, i: usize| &mask[(b * 3 + i) * 8..(b * 3 + i + 1) * 8];
        assert_eq!(row(0, 1), row(0, 0));
        assert_eq!(row(0, 0).iter().filter(|v| **v == 0.0).count(), 6);
        assert_eq!(row(2, 2).iter().filter(|v| **v == 0.0).count(), 7);
    }

    #[test]
    fn uniform_consecutive_blocks_need_no_index() {
        let s = spans(&[(4, 10), (4, 10)]);
        let like = Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap();
        let g = Group::new(&s, &[], plan(&s).remove(0), &like).unwrap();
        assert!(matches!(g.gather, Gather::Rows(0)));
        assert!(g.scatter.is_none());
        assert!(restore(&s, &[g], &Device::Cpu).unwrap().is_none());
    }
}
