//! Generates `include/ballista.h`, the header of the C API, from `src/capi.rs` with cbindgen.
//! The header is checked in (C users need no Rust toolchain to read it); cbindgen rewrites
//! it only when its content changes.

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let source = crate_dir.join("src/capi.rs");
    let config_file = crate_dir.join("cbindgen.toml");
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-changed={}", config_file.display());

    let config = match cbindgen::Config::from_file(&config_file) {
        Ok(config) => config,
        Err(e) => panic!("cannot read {}: {e}", config_file.display()),
    };
    match cbindgen::Builder::new()
        .with_config(config)
        .with_src(&source)
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(crate_dir.join("include/ballista.h"));
        }
        Err(e) => panic!(
            "cbindgen cannot generate the C header from {}: {e}",
            source.display()
        ),
    }
}
