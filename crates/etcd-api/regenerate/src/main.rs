//! Writes the Rust code for the etcd protos in `crates/etcd-api/proto/` to
//! `crates/etcd-api/src/generated/`. Needs `protoc` on PATH (or `PROTOC`);
//! nothing else in openvpc does.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let proto = crate_dir.join("proto");
    tonic_prost_build::configure()
        .build_server(false)
        .emit_rerun_if_changed(false)
        .out_dir(crate_dir.join("src/generated"))
        .compile_protos(
            &[
                proto.join("etcdserverpb/rpc.proto"),
                proto.join("mvccpb/kv.proto"),
            ],
            &[proto],
        )?;
    println!("wrote {}", crate_dir.join("src/generated").display());
    Ok(())
}
