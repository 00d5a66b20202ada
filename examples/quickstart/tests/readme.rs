//! The README's example is `readme.rs`, character for character, and does what the README says.

use cloakroom_tests::{Browser, Example};

#[test]
fn the_readme_shows_this_program() {
    cloakroom_tests::assert_readme_shows("examples/quickstart/readme.rs");
}

#[tokio::test]
async fn the_readme_example_counts_visits_per_browser() {
    let secrets = "a secret of at least thirty-two bytes,an older secret of thirty-two bytes";
    let example = Example::start_with_env("readme", &[("SESSION_SECRETS", secrets)]).await;
    let browser = Browser::new(example.addr);
    assert_eq!(browser.get("/").await.body, "visit 1\n");
    assert_eq!(browser.get("/").await.body, "visit 2\n");
    assert_eq!(Browser::new(example.addr).get("/").await.body, "visit 1\n");
}

#[tokio::test]
async fn the_readme_example_names_a_missing_secret() {
    let (status, stderr) = Example::exit("readme", &[]).await;
    assert!(!status.success());
    assert!(
        stderr.starts_with("error: SESSION_SECRETS is not set: ") && !stderr.contains(" { "),
        "{stderr}"
    );
}

/// The README quotes what the quick start prints for a trailing comma, exactly.
#[tokio::test]
async fn the_readme_quotes_the_error_for_a_trailing_comma_exactly() {
    let secrets = "a secret of at least thirty-two bytes,";
    let (status, stderr) = Example::exit("readme", &[("SESSION_SECRETS", secrets)]).await;
    assert!(!status.success());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    let quoted = readme
        .split_once("compares -->\n```text\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(quoted, _)| quoted)
        .expect("the README quotes the error");
    assert_eq!(stderr.trim_end(), quoted);
}
