//! Token-tree rounds (`tree`): draft a tree, send it, commit the path the verdict
//! accepts and the verifier's token after it.
//!
//! The shape is the strategy's, within the verifier's limits and the tokens still
//! wanted: a static shape as given (an error if the verifier takes none that large), a
//! dynamic tree's budget cut to the limits, or (`auto`) the [`TreeSizer`]'s pick, fed
//! by every verdict ([`super::Run::apply`]).

use tandem_decoding::TreeShape;
use tandem_decoding::policy::TreeSizer;

use super::Run;
use crate::DraftError;
use crate::propose::TreePlan;

impl Run<'_, '_> {
    /// Draft a tree, send, wait, commit.
    pub(super) async fn tree_step(&mut self, shape: TreeShape) -> Result<(), DraftError> {
        let plan = self.tree_plan(shape)?;
        let base = self.committed.clone();
        let t0 = self.clock.now();
        let drafter = self.drafter.as_mut().expect("trees need a draft model");
        let drafted = drafter.propose_tree(&base, plan.clone())?;
        if !drafted.extra.is_zero() {
            self.clock.sleep(drafted.extra).await;
        }
        let draft_ns = (self.clock.now() - t0).as_nanos() as u64;
        let depth = plan.depth();
        self.verify(&base, drafted.block, depth, draft_ns).await
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
            TreeShape::Dynamic { nodes, depth: d } => TreePlan::Dynamic {
                nodes: nodes.min(max_nodes),
                depth: d.min(depth),
            },
            TreeShape::Auto { max_nodes: n } => {
                let sizer = self
                    .sizer
                    .get_or_insert_with(|| TreeSizer::new(n.min(max_nodes), max_depth));
                TreePlan::Shape(cut(sizer.next(), depth))
            }
        })
    }
}

/// The nodes of a level-ordered tree at most `depth` deep (a prefix of it).
fn cut(parents: &[u32], depth: usize) -> Vec<u32> {
    let mut depths = vec![0usize; parents.len() + 1];
    let mut keep = 0;
    for (node, &p) in parents.iter().enumerate() {
        depths[node + 1] = depths[p as usize] + 1;
        if depths[node + 1] > depth {
            break;
        }
        keep = node + 1;
    }
    parents[..keep].to_vec()
}
