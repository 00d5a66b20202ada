//! The security suite: what an attacker can send, and what they must never get, checked
//! against the layer over a real store.

mod app;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cloakroom::store::{Record, SessionStore};
use cloakroom::{SameSite, SessionCookie, SessionId, SessionLayer, Transport};
use http::StatusCode;

use self::app::{
    Answer, Browser, FOREIGN_SECRET, NAME, OLD_SECRET, SECRET, Served, Shared, max_age, serve,
};
use crate::Violation;
use crate::conformance::ensure;

const FORGED: &str =
    "a forged, truncated or altered cookie gets a fresh session, and the cookie is cleared";
const SECRETS: &str = "a cookie signed with a retired or another app's secret gets a fresh session";
const ROTATION: &str =
    "a cookie signed with an older listed secret is accepted and re-signed, keeping its id";
const FIXATION: &str = "a validly signed id the store does not know is never adopted";
const REGENERATE: &str = "regenerate_id moves the data to a new id, and the old id is dead";
const DESTROY: &str = "a destroyed session stays dead when its cookie is replayed, and the cookie is cleared where it was set";
const ATTRIBUTES: &str = "the cookie has exactly the configured attributes";
const IDS: &str = "issued ids are distinct, 32 base64url characters";
const HOSTILE: &str =
    "hostile cookie headers never load another user's session or hide a valid one";
const FOREVER: &str = "a forever idle timeout keeps the user logged in";
const TOKENS: &str = "a token in a header is checked like a cookie: a forged or stale token gets a fresh session, and a forged one is dropped";
const HOSTILE_TOKENS: &str =
    "hostile token headers never load another user's session, hide a valid one or touch the cookie";
const HEALTHY: &str = "every request succeeds against a healthy store";

/// Runs the security suite against `store`: what an attacker can send (forged, truncated,
/// replayed and planted cookies, cookies of other secrets, hostile headers) and must never
/// get (someone else's session, a fixed id, a destroyed session back, a panic), checked
/// through a `SessionLayer` over the store. Returns the first broken promise.
///
/// For stores that keep sessions on the server: a store that keeps the session in the cookie
/// cannot make a logout stick, which the suite checks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cloakroom_testkit::Violation> {
/// let my_store = cloakroom::MemoryStore::new(); // your store here
/// cloakroom_testkit::security(my_store).await?;
/// # Ok(()) }
/// ```
pub async fn security<St: SessionStore>(store: St) -> Result<(), Violation> {
    let store = Shared(Arc::new(store));
    forged_truncated_and_reused_signatures(&store).await?;
    retired_and_foreign_secrets(&store).await?;
    an_old_secret_is_accepted_and_re_signed(&store).await?;
    a_client_chosen_id_is_never_adopted(&store).await?;
    regenerate_id_kills_the_old_id(&store).await?;
    a_destroyed_session_stays_dead_when_replayed(&store).await?;
    cookie_attributes_are_as_configured(&store).await?;
    issued_ids_are_distinct_long_and_base64url(&store).await?;
    hostile_cookie_headers(&store).await?;
    header_tokens_are_checked_like_cookies(&store).await?;
    hostile_token_headers(&store).await?;
    a_forever_idle_timeout_keeps_the_user_logged_in(&store).await
}

/// The suite's cookie: its name and newest secret, `Secure` off (nothing here is HTTPS).
fn cookie() -> SessionCookie {
    SessionCookie::new(NAME).secret(SECRET).secure(false)
}

fn app<St: SessionStore>(
    cookie: SessionCookie,
    store: &Shared<St>,
) -> Result<Served<St>, Violation> {
    layer(cookie, store).map(|layer| serve(&layer))
}

fn layer<St: SessionStore>(
    cookie: SessionCookie,
    store: &Shared<St>,
) -> Result<SessionLayer<Shared<St>>, Violation> {
    SessionLayer::new(cookie, store.clone()).map_err(|error| Violation {
        promise: HEALTHY,
        detail: format!("the suite's layer was refused: {error}"),
    })
}

/// A request that must succeed.
async fn get<St: SessionStore>(browser: &Browser<St>, path: &str) -> Result<Answer, Violation> {
    let answer = browser.get(path).await;
    ensure(answer.status == StatusCode::OK, HEALTHY, || {
        format!("{path} answered {} {:?}", answer.status, answer.body)
    })?;
    Ok(answer)
}

/// The parts of a signed cookie value `id.issued.tag`.
fn parts(cookie: &str) -> (&str, &str, &str) {
    let (signed, tag) = cookie.rsplit_once('.').unwrap_or_default();
    let (id, issued) = signed.rsplit_once('.').unwrap_or_default();
    (id, issued, tag)
}

/// The id inside a signed cookie value.
fn id_of(cookie: &str) -> &str {
    parts(cookie).0
}

/// A victim's cookie: a session with `visits` at 2.
async fn victim<St: SessionStore>(app: &Served<St>) -> Result<String, Violation> {
    let victim = Browser::new(app);
    get(&victim, "/count").await?;
    get(&victim, "/count").await?;
    victim.cookie().ok_or_else(|| Violation {
        promise: HEALTHY,
        detail: "a session that was written got no cookie".to_owned(),
    })
}

/// `forged` gets a fresh session and has the bad cookie cleared.
async fn assert_fresh<St: SessionStore>(
    app: &Served<St>,
    forged: &str,
    promise: &'static str,
) -> Result<(), Violation> {
    let attacker = Browser::new(app);
    attacker.set_cookie(forged);
    let answer = get(&attacker, "/peek").await?;
    ensure(answer.body == "none", promise, || {
        format!("cookie {forged:?} loaded a session ({:?})", answer.body)
    })?;
    ensure(answer.cleared(), promise, || {
        format!(
            "cookie {forged:?} was not cleared: {:?}",
            answer.set_cookies
        )
    })
}

/// With the token in a header ([`Transport::Header`]): a pre-login token loads nothing;
/// forged, altered and foreign tokens load nothing and are answered with an empty header (drop
/// it); the victim's own token goes on working.
async fn header_tokens_are_checked_like_cookies<St: SessionStore>(
    store: &Shared<St>,
) -> Result<(), Violation> {
    let layer = layer(cookie(), store)?.transport(Transport::Header(app::TOKEN));
    let app = serve(&layer.map_err(|error| Violation {
        promise: HEALTHY,
        detail: format!("the suite's token layer was refused: {error}"),
    })?);
    let victim = Browser::new(&app);
    let token_of = |answer: &Answer| answer.token.clone().unwrap_or_default();
    let first = victim.send_token("/count", "").await;
    let anonymous = token_of(&first);
    let second = victim.send_token("/count", &anonymous).await;
    ensure(
        second.body == "2" && second.set_cookies.is_empty(),
        TOKENS,
        || format!("a session by header did not persist, or sent a cookie: {second:?}"),
    )?;
    let login = victim.send_token("/login", &anonymous).await;
    let token = token_of(&login);
    let (id, issued, tag) = parts(&token);
    let later = issued.parse::<u64>().unwrap_or_default() + 3_600_000;
    let foreign = SessionCookie::new(NAME)
        .secret(FOREIGN_SECRET)
        .into_signer()
        .map(|signer| signer.sign(id, SystemTime::now()))
        .unwrap_or_default();
    // A validly signed token whose session is gone (ended by the login) loads nothing; it is
    // not dropped, as a cookie is not: the request that ended it sent its successor.
    let stale = victim.send_token("/whoami", &anonymous).await;
    ensure(stale.body == "anonymous", TOKENS, || {
        format!("the token from before the login still loaded the session: {stale:?}")
    })?;
    for forged in [
        format!("{id}.{later}.{tag}"),   // a later issue time
        format!("{id}.{issued}s.{tag}"), // marked differently
        foreign,                         // another secret
        id.to_owned(),                   // unsigned
        format!("{NAME}={token}"),       // the cookie's form
        "garbage".to_owned(),
    ] {
        let answer = victim.send_token("/whoami", &forged).await;
        ensure(answer.body == "anonymous", TOKENS, || {
            format!("token {forged:?} loaded a session ({:?})", answer.body)
        })?;
        ensure(answer.token.as_deref() == Some(""), TOKENS, || {
            format!("token {forged:?} was not dropped: {:?}", answer.token)
        })?;
    }
    let still = victim.send_token("/whoami", &token).await;
    ensure(still.body == "ada", TOKENS, || {
        format!("the victim's token stopped working: {:?}", still.body)
    })
}

/// A layer of the suite's carrying the token in [`app::TOKEN`] as `transport` says.
fn token_app<St: SessionStore>(
    store: &Shared<St>,
    transport: Transport,
) -> Result<Served<St>, Violation> {
    let layer = layer(cookie(), store)?.transport(transport);
    layer.map(|layer| serve(&layer)).map_err(|error| Violation {
        promise: HEALTHY,
        detail: format!("the suite's token layer was refused: {error}"),
    })
}

/// Hostile token headers: oversized, repeated past the bound, not ASCII, in an
/// `Authorization` scheme's or the cookie's form load nothing and never fail; a value that is
/// not ASCII does not hide the token after it. Under [`Transport::CookieOrHeader`], a token
/// (another session's, forged or oversized) beside a session cookie is the token's request:
/// it never loads the cookie's session, never writes to it, and never touches the cookie.
async fn hostile_token_headers<St: SessionStore>(store: &Shared<St>) -> Result<(), Violation> {
    let bytes = |value: &str| value.as_bytes().to_vec();
    let header = token_app(store, Transport::Header(app::TOKEN))?;
    let victim = Browser::new(&header);
    let asked = victim.send_token("/count", "").await;
    let token = asked.token.clone().unwrap_or_default();
    let second = victim.send_token("/count", &token).await;
    ensure(second.body == "2", HEALTHY, || {
        format!("a session by header did not persist: {second:?}")
    })?;
    let cases: Vec<Vec<Vec<u8>>> = vec![
        vec![bytes(&"A".repeat(60_000))],
        vec![bytes(&"A".repeat(1_000_000))],
        vec![bytes(&format!("{}{token}", "A".repeat(100_000)))],
        vec![bytes(&format!("Session {token}"))],
        vec![bytes(&format!("Bearer {token}"))],
        vec![bytes(&format!("{NAME}={token}"))],
        vec![b"\xff\xfe\x80".to_vec()],
        (0..50).map(|i| bytes(&format!("dup{i}.1.sig"))).collect(),
        // The victim's token behind more forged values than are tried is never reached.
        (0..8)
            .map(|i| bytes(&format!("forged{i}.1.sig")))
            .chain(std::iter::once(bytes(&token)))
            .collect(),
    ];
    for values in &cases {
        let answer = victim.send_tokens("/peek", values, None).await;
        let shown: String = values
            .first()
            .map(|v| String::from_utf8_lossy(v).chars().take(60).collect())
            .unwrap_or_default();
        ensure(
            answer.status == StatusCode::OK && answer.body == "none",
            HOSTILE_TOKENS,
            || format!("{shown:?}: answered {} {:?}", answer.status, answer.body),
        )?;
        ensure(answer.set_cookies.is_empty(), HOSTILE_TOKENS, || {
            format!("{shown:?}: a header layer sent {:?}", answer.set_cookies)
        })?;
    }
    let behind = [b"\xff\xfe\x80".to_vec(), bytes(&token)];
    let answer = victim.send_tokens("/peek", &behind, None).await;
    ensure(answer.body == "2", HOSTILE_TOKENS, || {
        format!("a value that is not ASCII hid the token after it: {answer:?}")
    })?;

    let either = token_app(store, Transport::CookieOrHeader(app::TOKEN))?;
    let browser = Browser::new(&either);
    get(&browser, "/login").await?;
    let cookie = browser.cookie().unwrap_or_default();
    let api = Browser::new(&either);
    let other = api.send_token("/count", "").await.token.unwrap_or_default();
    for token in [
        other.clone(),
        "garbage".to_owned(),
        "A".repeat(60_000),
        format!("Session {other}"),
    ] {
        let shown: String = token.chars().take(60).collect();
        let answer = browser
            .send_tokens("/whoami", &[bytes(&token)], Some(&cookie))
            .await;
        ensure(answer.body == "anonymous", HOSTILE_TOKENS, || {
            format!("{shown:?} beside the cookie loaded {:?}", answer.body)
        })?;
        ensure(answer.set_cookies.is_empty(), HOSTILE_TOKENS, || {
            format!(
                "{shown:?} beside the cookie touched it: {:?}",
                answer.set_cookies
            )
        })?;
    }
    // A write on the token's session beside the cookie lands on the token's session only.
    let write = browser
        .send_tokens("/count", &[bytes(&other)], Some(&cookie))
        .await;
    ensure(
        write.body == "2" && write.set_cookies.is_empty(),
        HOSTILE_TOKENS,
        || format!("a write beside the cookie: {write:?}"),
    )?;
    let own = browser.send_tokens("/peek", &[], Some(&cookie)).await;
    let still = browser.send_tokens("/whoami", &[], Some(&cookie)).await;
    ensure(
        own.body == "none" && still.body == "ada",
        HOSTILE_TOKENS,
        || format!("the cookie's session changed: {own:?} {still:?}"),
    )
}

async fn forged_truncated_and_reused_signatures<St: SessionStore>(
    store: &Shared<St>,
) -> Result<(), Violation> {
    let app = app(cookie(), store)?;
    let stolen = victim(&app).await?;
    let other = victim(&app).await?;
    let (id, issued, tag) = parts(&stolen);
    let (_, other_issued, other_tag) = parts(&other);
    let mut flipped = tag.to_owned().into_bytes();
    if let Some(byte) = flipped.get_mut(5) {
        *byte = if *byte == b'A' { b'B' } else { b'A' };
    }
    let flipped = String::from_utf8(flipped).unwrap_or_default();
    let later = issued.parse::<u64>().unwrap_or_default() + 3_600_000;
    let unsigned = SessionId::generate();
    let cut = |s: &str, n: usize| s[..s.len().saturating_sub(n)].to_owned();
    for forged in [
        id.to_owned(),                              // no issue time, no signature
        format!("{id}.{issued}"),                   // no signature
        format!("{id}.{issued}."),                  // empty signature
        format!("{id}.{tag}"),                      // no issue time
        format!("{id}.{issued}.{}", cut(tag, 1)),   // truncated signature
        format!("{id}.{issued}.{flipped}"),         // altered signature
        format!("{id}.{other_issued}.{other_tag}"), // another session's signature
        format!("{id}.{later}.{tag}"),              // a later issue time
        format!("{id}.{issued}s.{tag}"),            // made a browser-session cookie
        format!("{id}.{issued}p.{tag}"),            // marked as chosen to persist
        format!("{id}.{issued}.{tag}.{tag}"),       // doubled
        cut(&stolen, 10),                           // cut short
        format!("{stolen}x"),                       // extended
        format!("{}.{issued}.{tag}", id.get(1..).unwrap_or_default()), // altered id
        unsigned.as_str().to_owned(),               // a well-formed id, unsigned
        "garbage".to_owned(),
        String::new(),
    ] {
        assert_fresh(&app, &forged, FORGED).await?;
    }
    let victim = Browser::new(&app);
    victim.set_cookie(&stolen);
    let answer = get(&victim, "/peek").await?;
    ensure(answer.body == "2", FORGED, || {
        format!(
            "the victim lost their session to the forgeries: {:?}",
            answer.body
        )
    })
}

async fn retired_and_foreign_secrets<St: SessionStore>(
    store: &Shared<St>,
) -> Result<(), Violation> {
    let old = app(
        SessionCookie::new(NAME).secret(OLD_SECRET).secure(false),
        store,
    )?;
    let foreign = app(
        SessionCookie::new(NAME)
            .secret(FOREIGN_SECRET)
            .secure(false),
        store,
    )?;
    let ours = app(cookie(), store)?;
    for other in [&old, &foreign] {
        let cookie = victim(other).await?;
        assert_fresh(&ours, &cookie, SECRETS).await?;
    }
    Ok(())
}

async fn an_old_secret_is_accepted_and_re_signed<St: SessionStore>(
    store: &Shared<St>,
) -> Result<(), Violation> {
    let before = app(
        SessionCookie::new(NAME).secret(OLD_SECRET).secure(false),
        store,
    )?;
    let rotated = app(
        SessionCookie::new(NAME)
            .secrets([SECRET, OLD_SECRET])
            .secure(false),
        store,
    )?;
    let after = app(cookie(), store)?;

    let old_cookie = victim(&before).await?;
    let browser = Browser::new(&rotated);
    browser.set_cookie(&old_cookie);
    let answer = get(&browser, "/peek").await?;
    ensure(answer.body == "2", ROTATION, || {
        format!(
            "a cookie of the older secret was not accepted: {:?}",
            answer.body
        )
    })?;
    let resigned = browser.cookie().unwrap_or_default();
    ensure(resigned != old_cookie, ROTATION, || {
        "the cookie was not re-signed with the newest secret".to_owned()
    })?;
    ensure(id_of(&resigned) == id_of(&old_cookie), ROTATION, || {
        "re-signing changed the id".to_owned()
    })?;
    // Once the old secret is retired, only the re-signed cookie works.
    assert_fresh(&after, &old_cookie, SECRETS).await?;
    let browser = Browser::new(&after);
    browser.set_cookie(&resigned);
    let answer = get(&browser, "/peek").await?;
    ensure(answer.body == "2", ROTATION, || {
        format!("the re-signed cookie does not verify: {:?}", answer.body)
    })
}

async fn a_client_chosen_id_is_never_adopted<St: SessionStore>(
    store: &Shared<St>,
) -> Result<(), Violation> {
    let app = app(cookie(), store)?;
    // A validly signed id the store does not know: sign one, then delete its session.
    let planted = victim(&app).await?;
    let id = St::IDS.parse(id_of(&planted)).ok_or_else(|| Violation {
        promise: FIXATION,
        detail: format!("the layer issued an id the store does not parse: {planted}"),
    })?;
    store.delete(&id).await.map_err(|error| Violation {
        promise: HEALTHY,
        detail: format!("delete failed: {error}"),
    })?;
    let browser = Browser::new(&app);
    browser.set_cookie(&planted);
    let answer = get(&browser, "/count").await?;
    ensure(answer.body == "1", FIXATION, || {
        format!("a deleted session's id loaded data: {:?}", answer.body)
    })?;
    let issued = browser.cookie().unwrap_or_default();
    ensure(id_of(&issued) != id_of(&planted), FIXATION, || {
        "the planted id was adopted for the new session".to_owned()
    })
}

async fn regenerate_id_kills_the_old_id<St: SessionStore>(
    store: &Shared<St>,
) -> Result<(), Violation> {
    let app = app(cookie(), store)?;
    let browser = Browser::new(&app);
    get(&browser, "/count").await?;
    let before = browser.cookie().unwrap_or_default();
    get(&browser, "/login").await?;
    let after = browser.cookie().unwrap_or_default();
    ensure(id_of(&before) != id_of(&after), REGENERATE, || {
        "the login kept the id".to_owned()
    })?;
    let whoami = get(&browser, "/whoami").await?.body;
    let visits = get(&browser, "/peek").await?.body;
    ensure(
        (whoami.as_str(), visits.as_str()) == ("ada", "1"),
        REGENERATE,
        || format!("after the move: user {whoami:?}, visits {visits:?}"),
    )?;
    let attacker = Browser::new(&app);
    attacker.set_cookie(&before);
    let whoami = get(&attacker, "/whoami").await?.body;
    let visits = get(&attacker, "/peek").await?.body;
    ensure(
        (whoami.as_str(), visits.as_str()) == ("anonymous", "none"),
        REGENERATE,
        || format!("the pre-login id still works: user {whoami:?}, visits {visits:?}"),
    )
}

async fn a_destroyed_session_stays_dead_when_replayed<St: SessionStore>(
    store: &Shared<St>,
) -> Result<(), Violation> {
    let app = app(cookie().domain("example.test").path("/"), store)?;
    let browser = Browser::new(&app);
    get(&browser, "/login").await?;
    let before = browser.cookie().unwrap_or_default();
    let answer = get(&browser, "/logout").await?;
    let cleared = answer.session_cookie().unwrap_or_default().to_owned();
    ensure(
        cleared.starts_with(&format!("{NAME}=;")) && max_age(&cleared) == Some(0),
        DESTROY,
        || format!("the logout did not clear the cookie: {cleared:?}"),
    )?;
    ensure(
        cleared.contains("; Path=/") && cleared.contains("; Domain=example.test"),
        DESTROY,
        || format!("the clearing cookie has another Path or Domain: {cleared:?}"),
    )?;
    for _ in 0..2 {
        let replay = Browser::new(&app);
        replay.set_cookie(&before);
        let whoami = get(&replay, "/whoami").await?.body;
        ensure(whoami == "anonymous", DESTROY, || {
            format!("the destroyed session came back: user {whoami:?}")
        })?;
    }
    Ok(())
}

async fn cookie_attributes_are_as_configured<St: SessionStore>(
    store: &Shared<St>,
) -> Result<(), Violation> {
    let host = app(
        SessionCookie::new("__Host-sid")
            .secret(SECRET)
            .same_site(SameSite::Strict),
        store,
    )?;
    let answer = Browser::new(&host).send("/count", &[]).await;
    let set_cookie = answer
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-sid="))
        .cloned()
        .unwrap_or_default();
    let attributes: Vec<&str> = set_cookie.split("; ").skip(1).collect();
    let expected = [
        "Max-Age=604800",
        "Path=/",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
    ];
    ensure(attributes == expected, ATTRIBUTES, || {
        format!("{set_cookie:?}, expected the attributes {expected:?}")
    })?;
    let scoped = layer(cookie().path("/app").domain("example.test"), store)?
        .idle_timeout(Duration::from_secs(3600));
    let answer = get(&Browser::new(&serve(&scoped)), "/count").await?;
    let set_cookie = answer.session_cookie().unwrap_or_default();
    let attributes: Vec<&str> = set_cookie.split("; ").skip(1).collect();
    let expected = [
        "Max-Age=3600",
        "Path=/app",
        "Domain=example.test",
        "HttpOnly",
        "SameSite=Lax",
    ];
    ensure(attributes == expected, ATTRIBUTES, || {
        format!("{set_cookie:?}, expected the attributes {expected:?}")
    })
}

async fn issued_ids_are_distinct_long_and_base64url<St: SessionStore>(
    store: &Shared<St>,
) -> Result<(), Violation> {
    let app = app(cookie(), store)?;
    let mut seen = HashSet::new();
    let mut check = |id: &str| {
        let shaped = id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ensure(shaped, IDS, || format!("an id of the wrong shape: {id:?}"))?;
        ensure(seen.insert(id.to_owned()), IDS, || {
            format!("the id {id:?} was issued twice")
        })
    };
    for _ in 0..200 {
        let browser = Browser::new(&app);
        get(&browser, "/count").await?;
        check(id_of(&browser.cookie().unwrap_or_default()))?;
    }
    let record = Record::new(SystemTime::now(), Duration::from_secs(60), None);
    for _ in 0..2_000 {
        let id = store.create(&record).await.map_err(|error| Violation {
            promise: HEALTHY,
            detail: format!("create failed: {error}"),
        })?;
        check(id.as_str())?;
    }
    Ok(())
}

async fn hostile_cookie_headers<St: SessionStore>(store: &Shared<St>) -> Result<(), Violation> {
    let app = app(cookie(), store)?;
    let stolen = victim(&app).await?;
    let browser = Browser::new(&app);
    let many: String = (0..2000).map(|i| format!("{NAME}=x{i}.y; ")).collect();
    let cases: Vec<Vec<Vec<u8>>> = vec![
        vec![format!("{NAME}={}", "A".repeat(60_000)).into_bytes()],
        vec![format!("{NAME}={}", "A".repeat(1_000_000)).into_bytes()],
        vec![many.into_bytes()],
        vec![b"__session=\xff\xfe\x80; a=\xc3".to_vec()],
        vec![format!("{NAME}=../../etc/passwd.AAAA").into_bytes()],
        vec![format!("{NAME}=/etc/passwd").into_bytes()],
        vec![format!("{NAME}=\"quoted\"; {NAME}").into_bytes()],
        vec![format!("{NAME}=%00%2e%2e.x").into_bytes()],
        // The victim's cookie behind a forged one: never someone else's data.
        vec![format!("{NAME}=forged.value; {NAME}={stolen}").into_bytes()],
        (0..50)
            .map(|i| format!("{NAME}=dup{i}.sig").into_bytes())
            .collect(),
    ];
    for headers in cases {
        let answer = browser.send("/peek", &headers).await;
        let shown: String = headers
            .first()
            .map(|h| String::from_utf8_lossy(h).chars().take(60).collect())
            .unwrap_or_default();
        ensure(answer.status == StatusCode::OK, HOSTILE, || {
            format!("{shown:?}: answered {}", answer.status)
        })?;
        ensure(answer.body == "none" || answer.body == "2", HOSTILE, || {
            format!("{shown:?}: loaded {:?}", answer.body)
        })?;
    }
    // Another site's cookie with a non-ASCII or non-UTF-8 value in the same header, before or
    // after ours, does not hide the session nor touch its cookie (a fresh session here was
    // the symptom of a bug that logged users out).
    for raw in [
        format!("lang=fran\u{e7}ais; {NAME}={stolen}").into_bytes(),
        [
            &b"a=\xff\xfe\x80; "[..],
            format!("{NAME}={stolen}").as_bytes(),
        ]
        .concat(),
        [format!("{NAME}={stolen}; ").as_bytes(), &b"b=\xc3"[..]].concat(),
    ] {
        let answer = browser.send("/peek", std::slice::from_ref(&raw)).await;
        let shown = String::from_utf8_lossy(&raw).into_owned();
        ensure(answer.body == "2", HOSTILE, || {
            format!("{shown:?}: the session was lost ({:?})", answer.body)
        })?;
        ensure(answer.session_cookie().is_none(), HOSTILE, || {
            format!(
                "{shown:?}: the session cookie was touched: {:?}",
                answer.set_cookies
            )
        })?;
    }
    Ok(())
}

/// A handler asking for an idle timeout of `u64::MAX` seconds gets a session that lasts: a
/// cookie with a long `Max-Age` (not 0, which would log the user out), and the user still
/// logged in on the next requests, each of which refreshes the session in the store.
async fn a_forever_idle_timeout_keeps_the_user_logged_in<St: SessionStore>(
    store: &Shared<St>,
) -> Result<(), Violation> {
    let layer = layer(cookie(), store)?.refresh_interval(Duration::ZERO);
    let app = serve(&layer);
    let browser = Browser::new(&app);
    let ten_years = 10 * 365 * 86_400;
    let long = |answer: &Answer| {
        answer
            .session_cookie()
            .and_then(max_age)
            .is_some_and(|age| age > ten_years)
    };
    let answer = get(&browser, "/forever").await?;
    ensure(long(&answer), FOREVER, || {
        format!("the cookie of a forever session: {:?}", answer.set_cookies)
    })?;
    for _ in 0..2 {
        let answer = get(&browser, "/whoami").await?;
        ensure(answer.body == "ada", FOREVER, || {
            format!("the forever session was lost: {:?}", answer.body)
        })?;
        ensure(long(&answer), FOREVER, || {
            format!("the refreshed cookie: {:?}", answer.set_cookies)
        })?;
    }
    Ok(())
}
