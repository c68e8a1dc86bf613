//! Compiles `proto/ballista/*.proto` (the contract shared with the JVM build) with the
//! `protoc` shipped by `protoc-bin-vendored`, so no system protoc is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with `env!`: the target directory is shared by every clone on
    // a machine, and a build script compiled in another clone would otherwise keep looking
    // for the proto file there.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let plan = root.join("ballista/plan.proto");
    println!("cargo:rerun-if-changed={}", plan.display());
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config.compile_protos(&[plan], &[root])?;
    Ok(())
}
