//! # tandem-protocol
//!
//! Everything that crosses the wire between an edge draft node and the cloud verifier.
//!
//! This crate will own:
//! - the `.proto` files under `proto/tandem/v1/` (the public contract other languages
//!   generate clients from) and the prost/tonic types generated from them;
//! - validation of every incoming message against advertised limits (max draft block,
//!   max prompt, max sessions, max message size), mapped to precise gRPC status codes;
//! - the two transports: gRPC (HTTP/2, tonic) and QUIC (quinn, ALPN `tandem/1`);
//! - the emulated link (one-way delay, jitter, bandwidth, loss) with named profiles.
//!
//! It sits at the bottom of the workspace beside `tandem-decoding` and depends on no
//! other Tandem crate.
