//! Why a generation stopped, as `Finished.reason` carries it on the wire.

use serde::Serialize;

/// Why a generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StopReason {
    /// The model produced an end-of-sequence (or end-of-turn) token.
    Eos,
    /// `max_new_tokens` were generated.
    #[default]
    Length,
    /// The sequence reached the model's context (or the session's reserved length).
    Context,
}

impl StopReason {
    /// Every reason, in wire order.
    pub const ALL: [StopReason; 3] = [StopReason::Eos, StopReason::Length, StopReason::Context];

    /// The wire name: `eos`, `length` or `context`.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::Length => "length",
            StopReason::Context => "context",
        }
    }

    /// The reason a wire name stands for, if it is one.
    pub fn from_wire(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_and_unknown_ones_are_not_guessed() {
        for r in StopReason::ALL {
            assert_eq!(StopReason::from_wire(r.as_str()), Some(r));
        }
        assert_eq!(StopReason::from_wire("stop"), None);
    }
}
