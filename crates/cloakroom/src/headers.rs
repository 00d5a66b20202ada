//! The headers the layer sets on a response: the session cookie (or token header), and what
//! keeps caches from serving it to anyone else.

use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::plan::SetCookie;
use crate::signer::CookieSigner;

/// Where a response's token goes, and what else it depends on.
#[derive(Clone, Copy)]
pub(crate) struct Carriers<'a> {
    /// The token header, for a request that came with it; `None`: the cookie.
    pub(crate) token: Option<&'a HeaderName>,
    /// Another header the response varies on (the token header's presence decides the
    /// carrier under `Transport::CookieOrHeader`).
    pub(crate) also: Option<&'a HeaderName>,
}

/// Applies `set_cookie` to a response's headers: as `Set-Cookie`, or, for a request that came
/// with the token header, as that header (the signed value alone; empty to end the session).
/// `accessed` says whether the handler used the session, so the response depends on the
/// cookie (or header) even when none is sent.
pub(crate) fn apply(
    headers: &mut HeaderMap,
    cookie: &CookieSigner,
    carriers: Carriers<'_>,
    set_cookie: &SetCookie,
    accessed: bool,
) {
    let Carriers { token, also } = carriers;
    let value = match (set_cookie, token) {
        (SetCookie::Keep, _) => None,
        (SetCookie::Clear, None) => Some(cookie.removal()),
        (SetCookie::Clear, Some(_)) => Some(String::new()),
        (SetCookie::Send { id, grant }, token) => {
            let signed = cookie.sign_as(id.as_str(), grant.issued, grant.chosen);
            match token {
                None => Some(cookie.set_cookie(&signed, grant.persistent.then_some(grant.max_age))),
                Some(_) => Some(signed),
            }
        }
    };
    let carrier = token.unwrap_or(&SET_COOKIE);
    // A header-only layer never reads the cookie; under CookieOrHeader, both decide.
    let cookie_matters = token.is_none() || also.is_some();
    let varies = [cookie_matters.then_some(&COOKIE), token, also];
    let vary = |headers: &mut HeaderMap| {
        for name in varies.into_iter().flatten() {
            add_vary(headers, name);
        }
    };
    match value.map(HeaderValue::try_from) {
        Some(Ok(value)) => {
            headers.append(carrier, value);
            keep_from_shared_caches(headers);
            vary(headers);
        }
        // Unreachable with a validated configuration and base64url values.
        Some(Err(error)) => tracing::error!(%error, "session token is not a valid header value"),
        None if accessed => vary(headers),
        None => {}
    }
}

const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
const SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");

/// A response that sets or clears the session cookie must never be stored by a shared cache
/// (a CDN would hand one user's session to everyone). Without a `Cache-Control` of the
/// handler's it gets `no-store`; with one that a shared cache may act on, `private` takes the
/// place of `public` and `s-maxage`, and the handler's other directives stay (`max-age` for
/// the browser's own cache, say).
fn keep_from_shared_caches(headers: &mut HeaderMap) {
    // CDN-specific controls (RFC 9213, and the older Surrogate-Control) take precedence over
    // Cache-Control at the CDN: they must not let it store the cookie either.
    for cdn in [CDN_CACHE_CONTROL, SURROGATE_CONTROL] {
        if headers.contains_key(&cdn) {
            headers.insert(cdn, HeaderValue::from_static("no-store"));
        }
    }
    let directives: Vec<String> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .flat_map(|value| {
            String::from_utf8_lossy(value.as_bytes())
                .split(',')
                .map(|d| d.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|directive| !directive.is_empty())
        .collect();
    if directives.is_empty() {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return;
    }
    let name = |directive: &str| {
        let name = directive.split('=').next().unwrap_or_default().trim();
        name.to_ascii_lowercase()
    };
    // Only a bare `private` keeps shared caches out: `private="X"` lets them store the rest.
    if directives
        .iter()
        .any(|d| d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("private"))
    {
        return;
    }
    let kept = directives
        .iter()
        .filter(|d| !matches!(name(d).as_str(), "public" | "s-maxage" | "proxy-revalidate"))
        .map(String::as_str);
    let value = std::iter::once("private")
        .chain(kept)
        .collect::<Vec<_>>()
        .join(", ");
    match HeaderValue::try_from(value) {
        Ok(value) => {
            headers.insert(CACHE_CONTROL, value);
        }
        Err(_) => {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
}

/// Adds `name` to `Vary`, unless it (or `*`) is there already.
fn add_vary(headers: &mut HeaderMap, name: &HeaderName) {
    let already = headers.get_all(VARY).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|v| v.trim() == "*" || v.trim().eq_ignore_ascii_case(name.as_str()))
        })
    });
    if !already {
        let value = match *name == COOKIE {
            true => HeaderValue::from_static("Cookie"),
            false => HeaderValue::from_name(name.clone()),
        };
        headers.append(VARY, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `Cache-Control` a response gets when the layer sets the cookie, given the handler's.
    fn cache_control(handler: &[&'static str]) -> String {
        let mut headers = HeaderMap::new();
        for value in handler {
            headers.append(CACHE_CONTROL, HeaderValue::from_static(value));
        }
        keep_from_shared_caches(&mut headers);
        let values: Vec<&str> = headers
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        values.join(" | ")
    }

    #[test]
    fn a_response_that_sets_the_cookie_is_never_stored_by_a_shared_cache() {
        assert_eq!(cache_control(&[]), "no-store");
        assert_eq!(
            cache_control(&["public, max-age=600"]),
            "private, max-age=600"
        );
        assert_eq!(
            cache_control(&["s-maxage=600, max-age=60"]),
            "private, max-age=60"
        );
        assert_eq!(cache_control(&["max-age=60"]), "private, max-age=60");
        assert_eq!(cache_control(&["Public", "no-cache"]), "private, no-cache");
        assert_eq!(
            cache_control(&["public, proxy-revalidate, must-revalidate"]),
            "private, must-revalidate"
        );
        // Already kept from shared caches: the handler's choice stands.
        assert_eq!(
            cache_control(&["private, max-age=60"]),
            "private, max-age=60"
        );
        assert_eq!(cache_control(&["no-store"]), "no-store");
        // A qualified private lets shared caches store the rest.
        assert_eq!(
            cache_control(&["private=\"X-Foo\", public, s-maxage=600"]),
            "private, private=\"X-Foo\""
        );
    }

    #[test]
    fn cdn_specific_controls_cannot_store_the_cookie_either() {
        let mut headers = HeaderMap::new();
        headers.insert(CDN_CACHE_CONTROL, HeaderValue::from_static("max-age=600"));
        headers.insert(SURROGATE_CONTROL, HeaderValue::from_static("max-age=600"));
        keep_from_shared_caches(&mut headers);
        for cdn in [CDN_CACHE_CONTROL, SURROGATE_CONTROL] {
            let value = headers.get(&cdn).map(HeaderValue::as_bytes);
            assert_eq!(value, Some(&b"no-store"[..]), "{cdn}");
        }
        assert_eq!(
            headers.get(CACHE_CONTROL).map(HeaderValue::as_bytes),
            Some(&b"no-store"[..])
        );
    }
}
