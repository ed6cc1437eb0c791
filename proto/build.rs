//! Compiles our own .proto files with protox (a pure-Rust protobuf compiler), so
//! building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/remora/demo/v1/echo.proto",
        "proto/remora/identity/v1/identity.proto",
        "proto/remora/lb/v1/lb.proto",
        "proto/remora/telemetry/v1/telemetry.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
