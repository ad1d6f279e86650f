//! Generates the prost messages and tonic client/server from `proto/tandem/v1/*.proto`,
//! with the vendored `protoc`, plus a file descriptor set for gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("tandem_v1_descriptor.bin"))
        .compile_with_config(config, &["proto/tandem/v1/verifier.proto"], &["proto"])?;
    Ok(())
}
