//! Generates `include/ballista.h`, the header of the C API, from `src/capi.rs` with cbindgen.
//! The header is checked in (C users need no Rust toolchain to read it); cbindgen rewrites
//! it only when its content changes.

use std::path::PathBuf;

fn main() {
    // Read when the script runs, not when it is compiled: a target directory shared by two
    // checkouts reuses the compiled script.
    let crate_dir = match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => panic!("CARGO_MANIFEST_DIR is not set: run this through Cargo"),
    };
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
