//! Generates the gRPC stubs of the tonic example from a service defined in Rust (no `.proto`
//! file, so no `protoc` is needed).

use tonic_build::manual::{Builder, Method, Service};

fn main() {
    let counter = Service::builder()
        .name("Counter")
        .package("counter")
        .method(
            Method::builder()
                .name("visit")
                .route_name("Visit")
                .input_type("crate::VisitRequest")
                .output_type("crate::VisitReply")
                .codec_path("tonic_prost::ProstCodec")
                .build(),
        )
        .build();
    Builder::new().compile(&[counter]);
}
