//! Generates the prost types from `proto/` with protox (pure Rust: no system `protoc` needed).
fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let proto_dir = format!("{manifest_dir}/../../proto");
    let files = ["comm.proto", "run.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={proto_dir}/{f}");
    }
    let fds = protox::compile(files, [&proto_dir]).expect("proto/ must compile");
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(fds)
        .expect("prost code generation");
}
