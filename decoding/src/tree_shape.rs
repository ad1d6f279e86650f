//! The shape of the token tree an edge drafts each round, as `--tree` and an experiment's
//! `tree` key name it.
//!
//! - `3,2,2,1` ([`TreeShape::Static`]): branching per depth. After the context the draft
//!   proposes its 3 best (greedy) or 3 sampled (stochastic) candidates, after each of
//!   them 2, and so on: 3 + 6 + 12 + 12 = 33 nodes, 4 deep. `1,1,1,1` is the chain of 4.
//! - `dynamic:N[:DEPTH]` ([`TreeShape::Dynamic`]): EAGLE-2's dynamic tree (Li et al.
//!   2024, arXiv 2406.16858). Each depth expands the [`EXPAND_WIDTH`] nodes of the newest
//!   level with the highest cumulative draft probability, each into its
//!   [`EXPAND_WIDTH`] most likely children; the `N` nodes with the highest cumulative
//!   probability are sent. Greedy decoding only: choosing candidates by their own
//!   probability is not drawing them from `q`, which the lossless stochastic rule needs.
//! - `auto[:N]` ([`TreeShape::Auto`]): a tree of at most `N` nodes sized each round from
//!   the link's measured round trip, the verifier's pass time per node, the draft's
//!   time and the acceptance seen so far ([`crate::policy::TreeSizer`]). Under greedy
//!   decoding the edge drafts it as a dynamic tree of that size (as many nodes, as deep,
//!   as wide as its widest level), so the draft's probabilities pick the nodes; under
//!   sampling it drafts the sized shape itself.

use std::fmt;
use std::str::FromStr;

/// Deepest static shape (the verifier's default `max_tree_depth`).
pub const MAX_TREE_DEPTH: usize = 16;

/// Children a dynamic tree expands per node, and nodes it expands per depth.
pub const EXPAND_WIDTH: usize = 4;

/// Depth of `dynamic:N` when not given (EAGLE-2's default for 7–13 B models is 6).
pub const DEFAULT_DYNAMIC_DEPTH: usize = 6;

/// Most nodes of `auto` when not given (the verifier's default `max_tree_nodes`).
pub const DEFAULT_AUTO_NODES: usize = 64;

/// The deepest path of a tree given by its parent rows (0: the context, `j`: node
/// `j − 1`); 0 for none. A parent that is not an earlier row counts as the context.
pub fn tree_depth(parents: &[u32]) -> usize {
    node_depths(parents).into_iter().max().unwrap_or(0)
}

/// Each node's depth (a child of the context has depth 1) in a tree given by its parent
/// rows, as [`tree_depth`] reads them.
pub fn node_depths(parents: &[u32]) -> Vec<usize> {
    let mut depth = vec![0usize; parents.len() + 1];
    for (node, &p) in parents.iter().enumerate() {
        depth[node + 1] = depth[..=node].get(p as usize).copied().unwrap_or(0) + 1;
    }
    depth.remove(0);
    depth
}

/// Branching per depth of a static tree, stored inline so shapes are `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Branching {
    widths: [u8; MAX_TREE_DEPTH],
    depth: u8,
}

impl Branching {
    /// A shape from its widths (1 to [`MAX_TREE_DEPTH`] of them, each 1 to 255).
    pub fn new(widths: &[usize]) -> Result<Self, String> {
        if widths.is_empty() || widths.len() > MAX_TREE_DEPTH {
            return Err(format!(
                "a tree shape has 1 to {MAX_TREE_DEPTH} depths, got {}",
                widths.len()
            ));
        }
        let mut out = Self {
            widths: [0; MAX_TREE_DEPTH],
            depth: widths.len() as u8,
        };
        for (slot, &w) in out.widths.iter_mut().zip(widths) {
            *slot = u8::try_from(w)
                .ok()
                .filter(|&w| w > 0)
                .ok_or_else(|| format!("a tree's branching is 1 to 255 per depth, got {w}"))?;
        }
        Ok(out)
    }

    /// Children per node at each depth.
    pub fn widths(&self) -> impl Iterator<Item = usize> + '_ {
        self.widths[..self.depth as usize]
            .iter()
            .map(|&w| w as usize)
    }

    /// Depths.
    pub fn depth(&self) -> usize {
        self.depth as usize
    }

    /// Nodes in the tree.
    pub fn nodes(&self) -> usize {
        self.widths()
            .scan(1usize, |level, w| {
                *level *= w;
                Some(*level)
            })
            .sum()
    }

    /// The tree's parent rows, level by level, each node's children together (0: the
    /// context, `j`: node `j − 1`), as [`crate::DraftTree`] takes them.
    pub fn parents(&self) -> Vec<u32> {
        let mut parents = Vec::with_capacity(self.nodes());
        let mut level: Vec<u32> = vec![0];
        for w in self.widths() {
            let mut next = Vec::with_capacity(level.len() * w);
            for &row in &level {
                for _ in 0..w {
                    parents.push(row);
                    next.push(parents.len() as u32);
                }
            }
            level = next;
        }
        parents
    }
}

impl fmt::Debug for Branching {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Branching({self})")
    }
}

impl fmt::Display for Branching {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths: Vec<String> = self.widths().map(|w| w.to_string()).collect();
        f.write_str(&widths.join(","))
    }
}

/// What tree to draft each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TreeShape {
    /// The same branching every round.
    Static(Branching),
    /// EAGLE-2's dynamic tree of `nodes` nodes at most `depth` deep (greedy only).
    Dynamic {
        /// Nodes sent.
        nodes: usize,
        /// Deepest path.
        depth: usize,
    },
    /// A static shape of at most `max_nodes` nodes sized by the link each round.
    Auto {
        /// Most nodes.
        max_nodes: usize,
    },
}

impl TreeShape {
    /// The most nodes a round can send.
    pub fn max_nodes(&self) -> usize {
        match *self {
            Self::Static(b) => b.nodes(),
            Self::Dynamic { nodes, .. } => nodes,
            Self::Auto { max_nodes } => max_nodes,
        }
    }

    /// The deepest path a round can send.
    pub fn max_depth(&self) -> usize {
        match *self {
            Self::Static(b) => b.depth(),
            Self::Dynamic { depth, nodes } => depth.min(nodes),
            Self::Auto { max_nodes } => max_nodes.min(MAX_TREE_DEPTH),
        }
    }

    /// Whether it can be drafted by sampling (stochastic decoding): not a dynamic tree.
    pub fn samples(&self) -> bool {
        !matches!(self, Self::Dynamic { .. })
    }
}

impl fmt::Display for TreeShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Static(b) => write!(f, "{b}"),
            Self::Dynamic { nodes, depth } => write!(f, "dynamic:{nodes}:{depth}"),
            Self::Auto { max_nodes } => write!(f, "auto:{max_nodes}"),
        }
    }
}

impl FromStr for TreeShape {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let count = |a: &str, what: &str| -> Result<usize, String> {
            a.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
                format!("{what} in tree '{s}' must be a whole number >= 1, got '{a}'")
            })
        };
        let mut parts = s.split(':');
        let head = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        match head {
            "dynamic" => match args[..] {
                [n] => Ok(Self::Dynamic {
                    nodes: count(n, "the node budget")?,
                    depth: DEFAULT_DYNAMIC_DEPTH,
                }),
                [n, d] => Ok(Self::Dynamic {
                    nodes: count(n, "the node budget")?,
                    depth: count(d, "the depth")?,
                }),
                _ => Err(format!("tree '{s}': expected dynamic:N or dynamic:N:DEPTH")),
            },
            "auto" => match args[..] {
                [] => Ok(Self::Auto {
                    max_nodes: DEFAULT_AUTO_NODES,
                }),
                [n] => Ok(Self::Auto {
                    max_nodes: count(n, "the node budget")?,
                }),
                _ => Err(format!("tree '{s}': expected auto or auto:N")),
            },
            _ if args.is_empty() && head.split(',').all(|w| w.trim().parse::<usize>().is_ok()) => {
                let widths: Vec<usize> = head
                    .split(',')
                    .map(|w| count(w.trim(), "a branching"))
                    .collect::<Result<_, _>>()?;
                Ok(Self::Static(Branching::new(&widths)?))
            }
            _ => Err(format!(
                "unknown tree '{s}': expected a branching per depth (e.g. 3,2,2,1), dynamic:N[:DEPTH] or auto[:N]"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_shapes_give_their_parents_level_by_level() {
        let b = Branching::new(&[2, 2, 1]).unwrap();
        assert_eq!(b.nodes(), 2 + 4 + 4);
        assert_eq!(b.parents(), [0, 0, 1, 1, 2, 2, 3, 4, 5, 6]);
        assert_eq!(Branching::new(&[1, 1, 1]).unwrap().parents(), [0, 1, 2]);
        let parents = b.parents();
        let tree = crate::DraftTree::new(&[0; 10], &parents).unwrap();
        assert_eq!(tree.depths(), [1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
        assert_eq!(tree_depth(&parents), 3);
        assert_eq!(tree_depth(&[]), 0);
    }

    #[test]
    fn parses_every_form_and_round_trips() {
        for (text, nodes, depth) in [
            ("3,2,2,1", 33, 4),
            ("1,1,1,1", 4, 4),
            ("dynamic:16", 16, DEFAULT_DYNAMIC_DEPTH),
            ("dynamic:8:3", 8, 3),
            ("auto", DEFAULT_AUTO_NODES, MAX_TREE_DEPTH),
            ("auto:12", 12, 12),
        ] {
            let shape: TreeShape = text.parse().unwrap();
            assert_eq!(
                (shape.max_nodes(), shape.max_depth()),
                (nodes, depth),
                "{text}"
            );
            assert_eq!(shape.to_string().parse::<TreeShape>().unwrap(), shape);
        }
        assert!(!"dynamic:4".parse::<TreeShape>().unwrap().samples());
    }

    #[test]
    fn bad_shapes_say_what_is_wrong() {
        for (text, needle) in [
            ("3,0,1", ">= 1"),
            ("dynamic", "dynamic:N"),
            ("dynamic:x", "node budget"),
            ("auto:1:2", "auto:N"),
            ("eagle", "unknown tree 'eagle'"),
            ("1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1", "1 to 16 depths"),
            ("300", "1 to 255"),
        ] {
            let err = text.parse::<TreeShape>().unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
