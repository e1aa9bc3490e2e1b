//! Compiles `proto/` with the pure-Rust `protox`, so building needs no `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "hookyard/event/v1/event.proto",
        "hookyard/egress/v1/egress.proto",
        "hookyard/token/v1/token.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    for file in files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    Ok(())
}
