//! # tandem-tests
//!
//! Cross-crate integration tests live in `tests/tests/`; this library is empty. Tests
//! here run real components together: the `tandem` binary, and (as later issues land)
//! verifier and draft nodes over real sockets on 127.0.0.1.
