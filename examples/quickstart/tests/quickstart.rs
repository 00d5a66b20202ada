//! Runs the quick start example as a user would (its compiled binary, a free port) and clicks
//! through it over real HTTP: counter, flash after a redirect, login, logout.

use cloakroom_tests::{Browser, Example};

#[tokio::test]
async fn quickstart_counts_flashes_logs_in_and_out() {
    let example = Example::start("quickstart").await;
    let browser = Browser::new(example.addr);

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

/// A `PORT` that is not a port number stops the demo with a message naming it, rather than
/// quietly serving on another port.
#[tokio::test]
async fn a_bad_port_is_an_error_naming_it() {
    let (status, stderr) = Example::exit("quickstart", &[("PORT", "abc")]).await;
    assert!(!status.success(), "the demo started with PORT=abc");
    assert!(
        stderr.contains(r#"PORT must be a port number (0 to 65535), not "abc""#),
        "{stderr}"
    );
}
