//! Each published crate's `rust-version` is true of what it builds: no dependency it compiles
//! asks for a newer Rust, and its own code uses no `let` chain (Rust 1.88) unless it asks for
//! 1.88. Standard-library items newer than the crate's `rust-version` are clippy's
//! `incompatible_msrv` lint, which CI denies. `.ci/run` also checks the crates that declare 1.85
//! with Rust 1.85 (Debian's `rustc-web`); for `cloakroom-fs` (1.89), which no package
//! provides, these checks are what there is.

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

/// `cargo metadata` of the workspace, every feature on.
fn metadata() -> Value {
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
        .unwrap_or_else(|error| panic!("cargo metadata does not run: {error}"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("cargo metadata's JSON: {error}"))
}

#[test]
fn no_published_crate_builds_a_dependency_that_needs_a_newer_rust() {
    let metadata = metadata();
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

/// `let` chains (`if let A = a && let B = b`) compile on the toolchain here but need Rust
/// 1.88: a crate that says it builds on less must not use them.
#[test]
fn no_crate_older_than_1_88_uses_a_let_chain() {
    let metadata = metadata();
    let mut wrong = Vec::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().unwrap_or_default();
        let Some(msrv) = package["rust_version"].as_str() else {
            continue;
        };
        if !PUBLISHED.contains(&name) || version(msrv) >= version("1.88") {
            continue;
        }
        let manifest =
            std::path::PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
        let mut folders = vec![manifest.with_file_name("src")];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder)
                .expect("a source folder")
                .flatten()
            {
                let path = entry.path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|ext| ext == "rs") {
                    let code = std::fs::read_to_string(&path).expect("a source file");
                    let words: Vec<&str> = code.split_whitespace().collect();
                    if has_let_chain(&words) {
                        wrong.push(format!("{} (rust-version {msrv})", path.display()));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "let chains need Rust 1.88: {wrong:#?}");
}

/// Whether these words of Rust hold a let chain: `&& let` (which appears only in one), or an
/// `if let` / `while let` whose condition has a `&&` before its block.
fn has_let_chain(words: &[&str]) -> bool {
    words.windows(2).enumerate().any(|(i, pair)| match pair {
        ["&&", "let"] => true,
        ["if" | "while", "let"] => words[i + 2..]
            .iter()
            .take_while(|word| !word.contains('{'))
            .any(|word| *word == "&&"),
        _ => false,
    })
}

#[test]
fn a_let_chain_is_found_in_either_order() {
    let words = |code: &'static str| code.split_whitespace().collect::<Vec<_>>();
    assert!(has_let_chain(&words("if let Some(x) = a && x > 0 { }")));
    assert!(has_let_chain(&words("if b && let Some(x) = a { }")));
    assert!(!has_let_chain(&words("if let Some(x) = a { b && c }")));
    assert!(!has_let_chain(&words("if a && b { let x = 1; }")));
}
