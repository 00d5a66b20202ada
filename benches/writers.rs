//! 200 concurrent writers of one session, each setting its own key, on cloakroom's SQL stores
//! and on tower-sessions-sqlx-store (same PostgreSQL, same SQLite settings): how many keys
//! each kept.
//!
//! ```sh
//! cargo run --release -p cloakroom-bench --bin writers            # 200 writers
//! cargo run --release -p cloakroom-bench --bin writers -- 500
//! ```
//!
//! cloakroom sends only a request's changed keys and the stores merge them into the row in
//! the statement, so every key survives; a store that saves whole records (load, change,
//! save) keeps only the writers that did not overlap.
#![allow(clippy::print_stdout)] // a command-line report

use axum::Router;
use cloakroom_bench::{Flavor, app, request, serving, set_cookie};
use http_body_util::BodyExt;
use tower::ServiceExt as _;

/// `GET path` with `cookie`: the body, and the `name=value` of the response's cookie.
async fn get(app: &Router, path: &str, cookie: Option<&str>) -> (String, Option<String>) {
    let response = app
        .clone()
        .oneshot(request(path, cookie))
        .await
        .unwrap_or_else(|never| match never {});
    let status = response.status();
    let set_cookie = set_cookie(response.headers());
    let body = response.into_body().collect().await;
    let body = body.map(|b| b.to_bytes()).unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    if status != http::StatusCode::OK {
        return (format!("{status}: {body}"), set_cookie);
    }
    (body, set_cookie)
}

/// Creates a session, then `writers` concurrent requests each set their own key; how many
/// keys the session holds afterwards, and how many writers failed.
async fn kept(app: Router, writers: u32) -> (String, usize) {
    let (_, cookie) = get(&app, "/write", None).await;
    let cookie = cookie.unwrap_or_else(|| panic!("no session cookie"));
    let tasks: Vec<_> = (0..writers)
        .map(|i| {
            let (app, cookie) = (app.clone(), cookie.clone());
            tokio::spawn(async move { get(&app, &format!("/key/{i}"), Some(&cookie)).await.0 })
        })
        .collect();
    let mut failed = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        let body = task.await.unwrap_or_default();
        failed += usize::from(body != i.to_string());
    }
    (get(&app, "/keys", Some(&cookie)).await.0, failed)
}

fn main() {
    let writers: u32 = std::env::args().nth(1).map_or(200, |n| {
        n.parse().unwrap_or_else(|_| panic!("a number of writers"))
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("runtime: {error}"));
    runtime.block_on(async move {
        let postgres = cloakroom_testkit::PostgresServer::start()
            .await
            .unwrap_or_else(|error| panic!("PostgreSQL: {error}"));
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        println!("{writers} concurrent writers of one session, each setting its own key");
        println!(
            "{:<9} {:<15} {:>10} {:>15}",
            "store", "library", "keys kept", "writers failed"
        );
        for flavor in [Flavor::Cloakroom, Flavor::TowerSessions] {
            for (store, url) in [
                ("postgres", postgres.url()),
                (
                    "sqlite",
                    format!(
                        "sqlite:{}",
                        dir.path().join(format!("{}.db", flavor.name())).display()
                    ),
                ),
            ] {
                let app = serving(app(flavor, Some(&url)).await);
                let (keys, failed) = kept(app, writers).await;
                println!("{store:<9} {:<15} {keys:>10} {failed:>15}", flavor.name());
            }
        }
    });
}
