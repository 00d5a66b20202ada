//! Copies the READMEs into `OUT_DIR` for the doctests of `support/lib.rs`, so that every Rust
//! snippet in them is compiled and run by `cargo test`. A snippet reads its secrets from
//! `SESSION_SECRETS`, as an app should; the copy sets that variable at the start of each `main`,
//! so the README itself shows no line a reader would have to skip.

use std::path::Path;

/// The READMEs, relative to this package.
const READMES: [(&str, &str); 7] = [
    ("../README.md", "README.md"),
    ("../crates/cloakroom-redis/README.md", "cloakroom-redis.md"),
    (
        "../crates/cloakroom-memcache/README.md",
        "cloakroom-memcache.md",
    ),
    ("../crates/cloakroom-fs/README.md", "cloakroom-fs.md"),
    (
        "../crates/cloakroom-cookie/README.md",
        "cloakroom-cookie.md",
    ),
    (
        "../crates/cloakroom-testkit/README.md",
        "cloakroom-testkit.md",
    ),
    ("../crates/cloakroom-sql/README.md", "cloakroom-sql.md"),
];

/// What each `main` of a snippet starts with in the copy.
const SET_SECRETS: &str = r#"unsafe { std::env::set_var("SESSION_SECRETS", "a doctest secret of at least thirty-two bytes") };"#;

fn main() {
    let out = std::env::var("OUT_DIR").unwrap_or_default();
    for (source, copy) in READMES {
        println!("cargo::rerun-if-changed={source}");
        let text = std::fs::read_to_string(source)
            .unwrap_or_else(|error| panic!("cannot read {source}: {error}"));
        let mut doctest = String::with_capacity(text.len() + 1024);
        for line in text.lines() {
            doctest.push_str(line);
            let opens_main = line.starts_with("fn main(") || line.starts_with("async fn main(");
            if opens_main && line.ends_with('{') {
                // On the same line, so a failing doctest's line numbers are the README's.
                doctest.push(' ');
                doctest.push_str(SET_SECRETS);
            }
            doctest.push('\n');
        }
        let target = Path::new(&out).join(copy);
        std::fs::write(&target, doctest)
            .unwrap_or_else(|error| panic!("cannot write {target:?}: {error}"));
    }
}
