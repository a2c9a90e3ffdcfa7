//! Compiles the member-to-member protocol with protox (no `protoc` needed). The etcd v3 API
//! is compiled by `flotilla-store-wire`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/raft.proto"], ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
