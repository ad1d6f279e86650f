//! What an experiment runs, worked out before anything runs: the grid's cells
//! ([`cells`]) and each request of a cell ([`request`]: its seed, strategy, draft-loop
//! settings, and the rows and cost its report becomes). The real runner and the
//! simulator both run plans through one cell driver ([`crate::drive`]).

pub mod cells;
pub mod request;

pub use cells::{Cell, cells};
pub use request::{Ask, generate_config, repetition_seed, request_seed, rows_of};
