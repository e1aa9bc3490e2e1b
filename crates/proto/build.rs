//! Compiles `proto/` with the pure-Rust `protox`, so building needs no `protoc`, and gives the
//! admin API's messages the proto3 JSON mapping (`pbjson`) for its HTTP side.

use std::path::PathBuf;

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not baked in when it is compiled: a build directory shared by
    // several checkouts may reuse one compiled script for all of them.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "hookyard/event/v1/event.proto",
        "hookyard/egress/v1/egress.proto",
        "hookyard/token/v1/token.proto",
        "hookyard/admin/v1/admin.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    let descriptors = fds.encode_to_vec();
    tonic_prost_build::configure().compile_fds(fds)?;
    // Field names as written in the .proto (snake_case, like hookyard's other JSON) and every
    // field present, so scripts never meet a missing zero.
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".hookyard.admin"])?;
    for file in files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    Ok(())
}
