//! Each published crate's `rust-version` is true of what it builds: no dependency it compiles
//! asks for a newer Rust. (Standard-library items newer than the crate's `rust-version` are
//! clippy's `incompatible_msrv` lint, which CI denies.)

use std::process::Command;

use serde_json::Value;

/// The crates published to crates.io.
const PUBLISHED: [&str; 7] = [
    "cloakroom",
    "cloakroom-cookie",
    "cloakroom-fs",
    "cloakroom-memcache",
    "cloakroom-redis",
    "cloakroom-testkit",
    "cloakroom-sql",
];

fn version(text: &str) -> Vec<u64> {
    let mut parts: Vec<u64> = text
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect();
    parts.resize(3, 0);
    parts
}

#[test]
fn no_published_crate_builds_a_dependency_that_needs_a_newer_rust() {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--all-features",
            "--locked",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let package = |id: &str| {
        packages
            .iter()
            .find(|p| p["id"] == id)
            .expect("a listed package")
    };
    let nodes = metadata["resolve"]["nodes"]
        .as_array()
        .expect("the resolved graph");
    let node = |id: &str| {
        nodes
            .iter()
            .find(|n| n["id"] == id)
            .expect("a resolved node")
    };

    let mut wrong = Vec::new();
    for name in PUBLISHED {
        let root = packages
            .iter()
            .find(|p| p["name"] == name)
            .expect("a published crate");
        let Some(msrv) = root["rust_version"].as_str() else {
            wrong.push(format!("{name} has no rust-version"));
            continue;
        };
        // Edition 2024 needs 1.85.
        if version(msrv) < version("1.85") {
            wrong.push(format!(
                "{name}: rust-version {msrv} is older than edition 2024"
            ));
        }
        // Everything it compiles: normal and build dependencies, transitively.
        let mut seen = Vec::new();
        let mut stack = vec![root["id"].as_str().unwrap_or_default().to_owned()];
        while let Some(id) = stack.pop() {
            if seen.contains(&id) {
                continue;
            }
            for dependency in node(&id)["deps"].as_array().into_iter().flatten() {
                let built = dependency["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|kind| kind["kind"].is_null() || kind["kind"] == "build");
                if built {
                    stack.push(dependency["pkg"].as_str().unwrap_or_default().to_owned());
                }
            }
            seen.push(id);
        }
        for id in &seen {
            let dependency = package(id);
            let needs = dependency["rust_version"].as_str();
            if let Some(needs) = needs.filter(|needs| version(needs) > version(msrv)) {
                wrong.push(format!(
                    "{name} (rust-version {msrv}) builds {} {}, which needs Rust {needs}",
                    dependency["name"].as_str().unwrap_or_default(),
                    dependency["version"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
