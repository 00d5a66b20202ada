//! Criterion micro benchmarks: the per-request cost of the layer in process
//! (`tower::ServiceExt::oneshot` on a trivial handler), next to tower-sessions on the same
//! handlers, cloakroom on the filesystem and cookie stores, and the costs of its parts (sign,
//! verify, id generation, seal and open).
//!
//! ```sh
//! cargo bench -p cloakroom-bench --bench micro
//! ```

use std::hint::black_box;
use std::time::Duration;

use cloakroom::{SessionCookie, SessionId};
use cloakroom_bench::{Flavor, app, call, serving};
use criterion::{Criterion, criterion_group, criterion_main};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("runtime: {error}"))
}

fn layer(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("layer");
    group.measurement_time(Duration::from_secs(3));
    for flavor in Flavor::ALL {
        let app = serving(runtime.block_on(app(flavor, None)));
        let cookie = runtime.block_on(call(&app, "/write", None));
        let cookie = cookie.as_deref();
        group.bench_function(format!("{}/new session, untouched", flavor.name()), |b| {
            b.iter(|| runtime.block_on(call(&app, "/untouched", None)))
        });
        group.bench_function(format!("{}/read existing", flavor.name()), |b| {
            b.iter(|| runtime.block_on(call(&app, "/read", cookie)))
        });
        group.bench_function(format!("{}/write one key", flavor.name()), |b| {
            b.iter(|| runtime.block_on(call(&app, "/write", cookie)))
        });
    }
    group.finish();
}

/// cloakroom's layer on the other in-process stores, read and write.
fn stores(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let mut group = c.benchmark_group("stores");
    group.measurement_time(Duration::from_secs(3));
    for (name, app) in [
        ("fs", runtime.block_on(cloakroom_bench::fs_app(dir.path()))),
        ("cookie", cloakroom_bench::cookie_app()),
    ] {
        let app = serving(app);
        let cookie = runtime.block_on(call(&app, "/write", None));
        let cookie = cookie.as_deref();
        group.bench_function(format!("{name}/read existing"), |b| {
            b.iter(|| runtime.block_on(call(&app, "/read", cookie)))
        });
        group.bench_function(format!("{name}/write one key"), |b| {
            b.iter(|| runtime.block_on(call(&app, "/write", cookie)))
        });
    }
    group.finish();
}

fn parts(c: &mut Criterion) {
    let signer = SessionCookie::new("__session")
        .secrets([[7u8; 32], [8u8; 32]])
        .into_signer()
        .unwrap_or_else(|error| panic!("{error}"));
    let id = SessionId::generate();
    let now = std::time::SystemTime::now();
    let signed = signer.sign(id.as_str(), now);
    let mut group = c.benchmark_group("parts");
    group.bench_function("sign", |b| {
        b.iter(|| signer.sign(black_box(id.as_str()), now))
    });
    group.bench_function("verify", |b| {
        b.iter(|| signer.verify(black_box(&signed)).is_some())
    });
    group.bench_function("id generate", |b| b.iter(SessionId::generate));
    group.bench_function("id parse", |b| {
        b.iter(|| SessionId::parse(black_box(id.as_str())))
    });
    let (seal, open) = cloakroom_bench::seal_and_open();
    group.bench_function("cookie seal", |b| b.iter(&seal));
    group.bench_function("cookie open", |b| b.iter(&open));
    group.finish();
}

criterion_group!(benches, layer, stores, parts);
criterion_main!(benches);
