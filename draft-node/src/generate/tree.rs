//! Token-tree rounds (`tree`): draft a tree, send it, commit the path the verdict
//! accepts and the verifier's token after it.
//!
//! The shape is the strategy's, within the verifier's limits and the tokens still
//! wanted: a static shape as given (an error if the verifier takes none that large), a
//! dynamic tree's budget cut to the limits, or (`auto`) the [`TreeSizer`]'s pick, fed
//! by every verdict ([`super::Run::apply`]): under greedy decoding a dynamic tree of
//! the pick's size (nodes, depth, widest level), whose nodes the draft's probabilities
//! choose; under sampling the pick's shape itself.

use tandem_decoding::TreeShape;
use tandem_decoding::policy::{TreeObservation, TreeSizer};
use tandem_decoding::tree_shape::node_depths;
use tandem_protocol::pb;

use super::Run;
use super::rounds::Extends;
use crate::propose::TreePlan;
use crate::{DraftError, Strategy};

impl Run<'_, '_> {
    /// Draft a tree, send, wait, commit.
    pub(super) async fn tree_step(&mut self, shape: TreeShape) -> Result<(), DraftError> {
        let plan = self.tree_plan(shape)?;
        let t0 = self.clock.now();
        let drafter = self.drafter.as_mut().expect("trees need a draft model");
        let drafted = drafter.propose_tree(&self.committed, plan.clone())?;
        if !drafted.extra.is_zero() {
            self.clock.sleep(drafted.extra).await;
        }
        let draft_ns = (self.clock.now() - t0).as_nanos() as u64;
        let depth = plan.depth();
        let base = Extends::of(&self.committed);
        self.verify(base, drafted.block, depth, draft_ns).await
    }

    /// This round's tree.
    fn tree_plan(&mut self, shape: TreeShape) -> Result<TreePlan, DraftError> {
        let (max_nodes, max_depth) = self.max_tree;
        if max_nodes == 0 || max_depth == 0 {
            return Err(DraftError::Usage(
                "the verifier takes no token trees (its limits name no max_tree_nodes): \
                 it predates them; use a chain strategy such as speculative"
                    .into(),
            ));
        }
        // Deeper than the tokens still wanted would be drafted for nothing.
        let depth = max_depth
            .min(self.cfg.max_new_tokens - self.output_len())
            .max(1);
        Ok(match shape {
            TreeShape::Static(b) if b.nodes() > max_nodes || b.depth() > max_depth => {
                return Err(DraftError::Usage(format!(
                    "tree {b} has {} nodes {} deep; the verifier takes at most {max_nodes} \
                     nodes {max_depth} deep",
                    b.nodes(),
                    b.depth()
                )));
            }
            TreeShape::Static(b) => TreePlan::Shape(cut(&b.parents(), depth)),
            TreeShape::Dynamic { nodes, depth: d } => {
                TreePlan::dynamic(nodes.min(max_nodes), d.min(depth))
            }
            TreeShape::Auto { .. } => {
                let sizer = self.sizer().expect("an auto tree has a sizer");
                let shape = cut(sizer.next(), depth);
                // Greedy: the sizer sizes the tree, the draft's probabilities pick its
                // nodes. Sampling draws the sizer's shape from `q`, as the lossless rule
                // needs.
                match self.cfg.sampling.is_greedy() {
                    true => TreePlan::dynamic_like(&shape),
                    false => TreePlan::Shape(shape),
                }
            }
        })
    }

    /// The `auto` tree's sizer (none for other strategies), made on first use within
    /// the verifier's limits.
    pub(super) fn sizer(&mut self) -> Option<&mut TreeSizer> {
        let Strategy::Tree {
            shape: TreeShape::Auto { max_nodes },
        } = self.mode
        else {
            return None;
        };
        let (limit, max_depth) = self.max_tree;
        Some(
            self.sizer
                .get_or_insert_with(|| TreeSizer::new(max_nodes.min(limit), max_depth)),
        )
    }
}

/// What a round trip tells the sizer: the tree sent (`parents`; none for the
/// session's open) and the verdict's `path`, the time drafting and waiting, and the
/// verifier's `timing` of it.
pub(super) fn observation<'a>(
    (parents, path): (&'a [u32], &'a [u32]),
    draft_ns: u64,
    wait_ns: u64,
    t: &pb::Timing,
) -> TreeObservation<'a> {
    let s = |ns: u64| ns as f64 / 1e9;
    TreeObservation {
        parents,
        path,
        draft_s: s(draft_ns),
        remote_s: s(wait_ns),
        pass_s: s(t.forward_ns + t.paced_ns),
        queue_s: s(t.queue_ns),
        batch_sessions: t.batch_size,
        batch_tokens: t.batch_tokens,
    }
}

/// The nodes of a level-ordered tree at most `depth` deep (a prefix of it).
fn cut(parents: &[u32], depth: usize) -> Vec<u32> {
    let keep = node_depths(parents)
        .into_iter()
        .take_while(|&d| d <= depth)
        .count();
    parents[..keep].to_vec()
}
