//! The login page example in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven over WebDriver against the example on loopback.

// Helpers outside the `#[test]` functions are test code too; clippy.toml's allowances do not
// reach them.
#![allow(clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::http::header::HOST;
use axum::response::Html;
use axum::routing::get;
use cloakroom::{MemoryStore, SessionCookie};
use cloakroom_tests::app::{SECRET, layer, routes};
use cloakroom_tests::{Example, TestServer};
use cookie::SameSite;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

/// A `chromedriver` on a free loopback port, killed on drop.
struct ChromeDriver {
    port: u16,
    child: Child,
}

impl ChromeDriver {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free port");
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run chromedriver ({error}): install it with `apt-get install chromium chromium-driver`")
            });
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { port, child }
    }

    /// A new browser with its own fresh profile: a separate user.
    async fn browser(&self, profile: &std::path::Path) -> Client {
        self.browser_with_prefs(profile, serde_json::json!({}))
            .await
    }

    /// [`browser`](Self::browser), with Chromium's preferences `prefs` set in the profile.
    async fn browser_with_prefs(
        &self,
        profile: &std::path::Path,
        prefs: serde_json::Value,
    ) -> Client {
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-quic".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({ "binary": "/usr/bin/chromium", "args": args, "prefs": prefs }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("chromium starts")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn text(browser: &Client, css: &str) -> Option<String> {
    browser
        .find(Locator::Css(css))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

async fn path(browser: &Client) -> String {
    browser
        .current_url()
        .await
        .map(|url| url.path().to_owned())
        .unwrap_or_default()
}

/// Clicks `element` (a form's button) and waits until its page is gone: a form that posts
/// from `/devices` back to `/devices` lands where it started, so the path cannot tell.
async fn submit(element: fantoccini::elements::Element) {
    element.clone().click().await.expect("the click");
    for _ in 0..200 {
        if element.text().await.is_err() {
            return; // stale: the next page has replaced the one it was on
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the click loaded no new page");
}

/// The path once a navigation started by a click has landed on `expected` (or after 10 s).
async fn landed_on(browser: &Client, expected: &str) -> String {
    for _ in 0..200 {
        let now = path(browser).await;
        if now == expected {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    path(browser).await
}

#[tokio::test]
async fn login_flash_protected_page_and_logout_in_chromium() {
    let example = Example::start("login_page").await;
    let base = format!("http://{}", example.addr);
    let driver = ChromeDriver::start().await;
    let profiles = tempfile::tempdir().expect("a temporary directory");
    let browser = driver.browser(&profiles.path().join("first")).await;

    // Logged out, the protected page sends us to the login form.
    browser
        .goto(&format!("{base}/account"))
        .await
        .expect("the page loads");
    assert_eq!(path(&browser).await, "/login");

    log_in(&browser, &base, "ada").await;
    assert_eq!(
        text(&browser, "#flash").await.as_deref(),
        Some("Welcome, ada!")
    );
    assert_eq!(text(&browser, "#user").await.as_deref(), Some("ada"));

    // The session cookie is HttpOnly, SameSite=Lax, and invisible to page scripts.
    let cookie = browser
        .get_named_cookie("__session")
        .await
        .expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site(), Some(SameSite::Lax));
    let visible = browser
        .execute("return document.cookie", Vec::new())
        .await
        .unwrap_or_default();
    assert!(
        !visible.as_str().unwrap_or_default().contains("__session"),
        "page JS saw {visible}"
    );

    // Login survives navigation; the flash does not survive a reload.
    browser
        .goto(&format!("{base}/"))
        .await
        .expect("the page loads");
    assert_eq!(path(&browser).await, "/account");
    assert_eq!(text(&browser, "#user").await.as_deref(), Some("ada"));
    browser.refresh().await.expect("the reload");
    assert_eq!(
        text(&browser, "#flash").await,
        None,
        "the flash showed again on reload"
    );

    // Another browser context is another user.
    let other = driver.browser(&profiles.path().join("second")).await;
    other
        .goto(&format!("{base}/account"))
        .await
        .expect("the page loads");
    assert_eq!(
        path(&other).await,
        "/login",
        "a second browser shared the first one's session"
    );
    let _ = other.close().await;

    // Logout, and the protected page redirects to login again.
    let logout = browser
        .find(Locator::Css("#logout"))
        .await
        .expect("the logout button");
    logout.click().await.expect("the click");
    assert_eq!(landed_on(&browser, "/login").await, "/login");
    browser
        .goto(&format!("{base}/account"))
        .await
        .expect("the page loads");
    assert_eq!(
        path(&browser).await,
        "/login",
        "the protected page was shown after logout"
    );
    let _ = browser.close().await;
}

/// "Keep me signed in" ticked, the login outlives a browser restart; unticked, its cookie is a
/// browser-session one, and the restarted browser is signed out (the same profile both times).
#[tokio::test]
async fn keep_me_signed_in_survives_a_browser_restart_and_unticked_does_not() {
    let example = Example::start("login_page").await;
    let base = format!("http://{}", example.addr);
    let driver = ChromeDriver::start().await;
    let profiles = tempfile::tempdir().expect("a temporary directory");
    for (remember, after_restart) in [(false, "/login"), (true, "/account")] {
        let profile = profiles.path().join(format!("remember-{remember}"));
        let browser = driver.browser(&profile).await;
        log_in_remembering(&browser, &base, "ada", remember).await;
        browser.close().await.expect("chromium closes");
        let restarted = driver.browser(&profile).await;
        restarted
            .goto(&format!("{base}/account"))
            .await
            .expect("the page loads");
        assert_eq!(
            landed_on(&restarted, after_restart).await,
            after_restart,
            "keep me signed in: {remember}"
        );
        let _ = restarted.close().await;
    }
}

/// Fills the login form at `base` as `user` and waits for the account page.
async fn log_in(browser: &Client, base: &str, user: &str) {
    log_in_remembering(browser, base, user, false).await;
}

/// [`log_in`], ticking "Keep me signed in" if `remember`.
async fn log_in_remembering(browser: &Client, base: &str, user: &str, remember: bool) {
    browser
        .goto(&format!("{base}/login"))
        .await
        .expect("the page loads");
    for (field, value) in [("#username", user), ("#password", "secret")] {
        let input = browser
            .find(Locator::Css(field))
            .await
            .unwrap_or_else(|error| panic!("{field}: {error}"));
        input.send_keys(value).await.expect("the keys typed");
    }
    if remember {
        let tick = browser.find(Locator::Css("#remember")).await;
        tick.expect("the checkbox")
            .click()
            .await
            .expect("the click");
    }
    let button = browser
        .find(Locator::Css("#login"))
        .await
        .expect("the login button");
    button.click().await.expect("the click");
    assert_eq!(landed_on(browser, "/account").await, "/account");
}

/// The rows of the devices page: (browser, whether it is this device). Read again if the
/// page changed under the reading (a row gone stale as a navigation finished).
async fn devices(browser: &Client) -> Vec<(String, bool)> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match read_devices(browser).await {
            Ok(devices) => return devices,
            Err(_) if attempts < 5 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("the devices table: {error}"),
        }
    }
}

async fn read_devices(
    browser: &Client,
) -> Result<Vec<(String, bool)>, fantoccini::error::CmdError> {
    let mut devices = Vec::new();
    for row in browser.find_all(Locator::Css("tr.device")).await? {
        let name = row.find(Locator::Css(".browser")).await?.text().await?;
        let current = row.find(Locator::Css(".current")).await.is_ok();
        devices.push((name, current));
    }
    Ok(devices)
}

/// The same user signs in from two browsers; from "Your devices" the first signs the second
/// out (one device, then all others): the second is logged out on its next navigation, the
/// first stays in.
#[tokio::test]
async fn signing_out_another_device_in_chromium() {
    let example = Example::start("login_page").await;
    let base = format!("http://{}", example.addr);
    let driver = ChromeDriver::start().await;
    let profiles = tempfile::tempdir().expect("a temporary directory");
    let first = driver.browser(&profiles.path().join("first")).await;
    let second = driver.browser(&profiles.path().join("second")).await;
    log_in(&second, &base, "ada").await;
    log_in(&first, &base, "ada").await;

    let link = first
        .find(Locator::Css("#devices"))
        .await
        .expect("the devices link");
    link.click().await.expect("the click");
    assert_eq!(landed_on(&first, "/devices").await, "/devices");
    let listed = devices(&first).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(
        listed.iter().filter(|(_, current)| *current).count(),
        1,
        "{listed:?}"
    );
    assert!(
        listed.iter().all(|(name, _)| name.contains("Chrome")),
        "the browsers are not shown: {listed:?}"
    );

    // "Sign out" on the other device's row.
    let sign_out = first
        .find(Locator::Css(".sign-out"))
        .await
        .expect("a sign-out button");
    submit(sign_out).await;
    assert_eq!(path(&first).await, "/devices");
    assert_eq!(
        text(&first, "#flash").await.as_deref(),
        Some("Signed out that device.")
    );
    assert_eq!(devices(&first).await.len(), 1);
    second
        .goto(&format!("{base}/account"))
        .await
        .expect("the page loads");
    assert_eq!(
        path(&second).await,
        "/login",
        "the signed-out device is still in"
    );
    first
        .goto(&format!("{base}/account"))
        .await
        .expect("the page loads");
    assert_eq!(text(&first, "#user").await.as_deref(), Some("ada"));

    // "Sign out all other devices".
    log_in(&second, &base, "ada").await;
    first
        .goto(&format!("{base}/devices"))
        .await
        .expect("the page loads");
    assert_eq!(devices(&first).await.len(), 2);
    let others = first
        .find(Locator::Css("#sign-out-others"))
        .await
        .expect("the sign-out-others button");
    submit(others).await;
    assert_eq!(path(&first).await, "/devices");
    assert_eq!(
        devices(&first).await,
        vec![(devices(&first).await[0].0.clone(), true)]
    );
    second
        .goto(&format!("{base}/account"))
        .await
        .expect("the page loads");
    assert_eq!(path(&second).await, "/login");
    first
        .goto(&format!("{base}/account"))
        .await
        .expect("the page loads");
    assert_eq!(text(&first, "#user").await.as_deref(), Some("ada"));
    let _ = second.close().await;
    let _ = first.close().await;
}

/// A page on `localhost` that embeds this server's `/count` from `127.0.0.1`: another site.
async fn embedding_page(headers: HeaderMap) -> Html<String> {
    let host = headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or_default()
        .replace("localhost", "127.0.0.1");
    Html(format!(
        "<!doctype html><iframe id=embedded src='http://{host}/count'></iframe>"
    ))
}

/// An app embedded in another site, with third-party cookies blocked (Chromium's setting;
/// Safari and Firefox block or partition them by default): with `Partitioned` (and `Secure`,
/// `SameSite=None`) its session cookie is kept for that embedding site and the iframe's
/// session lasts across page loads; without it the browser refuses the cookie and every load
/// starts a fresh session.
#[tokio::test]
async fn a_partitioned_cookie_keeps_an_embedded_session_where_third_party_cookies_are_blocked() {
    let driver = ChromeDriver::start().await;
    let profiles = tempfile::tempdir().expect("a temporary directory");
    let block_third_party = serde_json::json!({
        "profile": { "cookie_controls_mode": 1, "block_third_party_cookies": true }
    });
    for (partitioned, second_load) in [(true, "2"), (false, "1")] {
        // Chromium takes `Secure` cookies from loopback over plain HTTP.
        let cookie = SessionCookie::new("embedded")
            .secret(SECRET)
            .same_site(cloakroom::SameSite::None)
            .partitioned(partitioned);
        let app = routes()
            .route("/embedding", get(embedding_page))
            .layer(layer(cookie, MemoryStore::new()));
        let server = TestServer::start(app).await;
        let page = format!("http://localhost:{}/embedding", server.addr.port());
        let profile = profiles.path().join(format!("partitioned-{partitioned}"));
        let browser = driver
            .browser_with_prefs(&profile, block_third_party.clone())
            .await;
        let mut counts = Vec::new();
        for _ in 0..2 {
            browser.goto(&page).await.expect("the page loads");
            let frame = browser
                .find(Locator::Css("#embedded"))
                .await
                .expect("the iframe");
            frame.enter_frame().await.expect("into the iframe");
            counts.push(text(&browser, "body").await.unwrap_or_default());
            browser
                .enter_parent_frame()
                .await
                .expect("out of the iframe");
        }
        assert_eq!(
            counts,
            ["1", second_load],
            "the embedded session's visits, Partitioned {partitioned}"
        );
        let _ = browser.close().await;
    }
}
