//! Runs the quick start example as a user would (its compiled binary, a free port) and clicks
//! through it over real HTTP: counter, flash after a redirect, login, logout.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use cloakroom_tests::Browser;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// `cargo test` builds this package's examples next to the test binaries' `deps` directory.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|d| d.join("examples"));
    let path = dir.unwrap_or_default().join(name);
    assert!(
        path.exists(),
        "example binary {path:?} missing: run `cargo test -p cloakroom-examples`, which builds it"
    );
    path
}

/// Starts the example and returns it with the URL it printed.
async fn start(name: &str) -> (Child, String) {
    let mut child = match Command::new(example(name))
        .env("PORT", "0")
        .env(
            "SESSION_SECRET",
            "a test secret that is longer than 32 bytes",
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(error) => panic!("cannot start example {name}: {error}"),
    };
    let Some(stdout) = child.stdout.take() else {
        panic!("no stdout from {name}");
    };
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
    let Ok(Ok(Some(line))) = line else {
        panic!("{name} printed no URL: {line:?}");
    };
    let Some(url) = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
    else {
        panic!("{name} printed no loopback URL: {line:?}");
    };
    (child, url.trim_end_matches('/').to_owned())
}

#[tokio::test]
async fn quickstart_counts_flashes_logs_in_and_out() {
    let (_child, url) = start("quickstart").await;
    let addr = match url.trim_start_matches("http://").parse() {
        Ok(addr) => addr,
        Err(error) => panic!("bad URL {url}: {error}"),
    };
    let browser = Browser::new(addr);

    assert!(
        browser
            .get("/")
            .await
            .body
            .contains(r#"<b class="visits">1</b>"#)
    );
    assert!(
        browser
            .get("/")
            .await
            .body
            .contains(r#"<b class="visits">2</b>"#)
    );

    let posted = browser
        .post_form("/message", "message=hello+%3Cworld%3E")
        .await;
    assert_eq!(posted.status, 303);
    assert_eq!(posted.header("location").as_deref(), Some("/"));
    let page = browser.get("/").await.body;
    assert!(
        page.contains(r#"<p class="notice">hello &lt;world&gt;</p>"#),
        "{page}"
    );
    assert!(
        !browser.get("/").await.body.contains("hello"),
        "the flash showed twice"
    );

    let before = browser.cookie("__session").unwrap_or_default();
    browser.post_form("/login", "username=ada").await;
    let page = browser.get("/").await.body;
    assert!(
        page.contains(r#"<b class="user">ada</b>"#) && page.contains("Welcome!"),
        "{page}"
    );
    assert_ne!(
        browser.cookie("__session").unwrap_or_default(),
        before,
        "login kept the old id"
    );

    let logged_out = browser.post_form("/logout", "").await;
    assert_eq!(logged_out.status, 303);
    assert_eq!(
        browser.cookie("__session"),
        None,
        "logout did not clear the cookie"
    );
    let page = browser.get("/").await.body;
    assert!(
        page.contains(r#"<b class="visits">1</b>"#) && page.contains("Log in"),
        "{page}"
    );
}
