//! Compiles the etcd v3 API with protox (no `protoc` needed): server side only (tests use
//! the `etcd-client` crate as the client).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/etcd/rpc.proto", "proto/etcd/mvccpb/kv.proto"], ["proto"])?;
    tonic_prost_build::configure().build_client(false).build_server(true).compile_fds(fds)?;
    Ok(())
}
