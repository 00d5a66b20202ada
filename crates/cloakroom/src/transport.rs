//! Where the session's signed token travels: the cookie (browsers), a header (APIs, mobile
//! apps, gRPC metadata), or either, decided per request.

use http::{HeaderMap, HeaderName};

use crate::error::ConfigError;
use crate::signer::CookieSigner;

/// How many values of the token header one request may offer; as for cookies, the cap bounds
/// the HMAC work a hostile request can cause.
const MAX_HEADER_VALUES: usize = 8;

/// Where the session's token (the same signed value the cookie carries) goes between client
/// and server ([`SessionLayer::transport`](crate::SessionLayer::transport)).
///
/// The token is signed, rotated, refreshed and regenerated exactly like the cookie; only the
/// carrier differs. A client on a header keeps the newest token it was given: a response
/// that renews or replaces the session carries the new one in the same header, and a logout
/// answers with the header present and empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// The session cookie only (the default).
    #[default]
    Cookie,
    /// The request header `name` only (e.g. `x-session-token`; in gRPC, metadata of that
    /// name); no cookie is read or sent. A client asks for its first token by sending the
    /// header empty, or simply by making a request that writes to the session.
    Header(HeaderName),
    /// The header for requests that carry a token in it, or carry it empty to ask for one and
    /// no session cookie; the cookie for all others (an empty header beside a session cookie
    /// is the cookie's request: a client that always sends the header does not lose its
    /// cookie session). A request with a token never reads the cookie, and gets its token in
    /// the header, never in `Set-Cookie`; a request on the cookie works as with
    /// [`Cookie`](Self::Cookie), and never sees a token it could read from script (the cookie
    /// stays `HttpOnly`). The header cannot be sent cross-site by a browser without the site
    /// allowing it (CORS), so header requests are not exposed to CSRF as cookie requests are.
    CookieOrHeader(HeaderName),
}

/// Which carrier one request uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    Cookie,
    Header,
}

impl Transport {
    /// The carrier of a request with `headers`, whose session cookie `cookie` names.
    pub(crate) fn via(&self, headers: &HeaderMap, cookie: &CookieSigner) -> Via {
        match self {
            Self::Cookie => Via::Cookie,
            Self::Header(_) => Via::Header,
            Self::CookieOrHeader(_) if self.tokens(headers).next().is_some() => Via::Header,
            Self::CookieOrHeader(name)
                if headers.contains_key(name) && cookie.candidates(headers).next().is_none() =>
            {
                Via::Header
            }
            Self::CookieOrHeader(_) => Via::Cookie,
        }
    }

    /// Refuses a token header a browser or proxy gives another meaning: the cookie headers,
    /// credentials a browser sends by itself (`Authorization`), hop-by-hop and framing
    /// headers, and the CORS-safelisted ones a page may send cross-site without asking (which
    /// would void the header's protection against CSRF).
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        const REFUSED: [&str; 16] = [
            "cookie",
            "set-cookie",
            "authorization",
            "proxy-authorization",
            "www-authenticate",
            "host",
            "connection",
            "keep-alive",
            "content-length",
            "transfer-encoding",
            "te",
            "upgrade",
            "accept",
            "accept-language",
            "content-language",
            "content-type",
        ];
        match self.header() {
            Some(name) if REFUSED.contains(&name.as_str()) => Err(ConfigError::TokenHeader {
                name: name.as_str().to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// The headers a response depends on besides the one that carried its token: under
    /// [`CookieOrHeader`](Self::CookieOrHeader), whether the header came decides, so a
    /// response varies on both.
    pub(crate) fn also_varies(&self) -> Option<&HeaderName> {
        match self {
            Self::CookieOrHeader(name) => Some(name),
            Self::Cookie | Self::Header(_) => None,
        }
    }

    /// The token header, if the layer has one.
    pub(crate) fn header(&self) -> Option<&HeaderName> {
        match self {
            Self::Cookie => None,
            Self::Header(name) | Self::CookieOrHeader(name) => Some(name),
        }
    }

    /// The non-empty values of the token header in `headers`, trimmed, at most
    /// [`MAX_HEADER_VALUES`]; values that are not ASCII are skipped.
    pub(crate) fn tokens<'h>(&'h self, headers: &'h HeaderMap) -> impl Iterator<Item = &'h str> {
        self.header()
            .into_iter()
            .flat_map(|name| headers.get_all(name).iter())
            .filter_map(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .take(MAX_HEADER_VALUES)
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const TOKEN: HeaderName = HeaderName::from_static("x-session-token");

    #[test]
    fn a_request_with_a_token_or_asking_for_one_uses_the_header_and_others_the_cookie() {
        let signer = crate::SessionCookie::new("s")
            .secret([7; 32])
            .into_signer()
            .expect("a valid configuration");
        let headers = |token: Option<&'static str>, cookie: bool| {
            let mut headers = HeaderMap::new();
            if let Some(token) = token {
                headers.insert(&TOKEN, HeaderValue::from_static(token));
            }
            if cookie {
                headers.insert(http::header::COOKIE, HeaderValue::from_static("s=x"));
            }
            headers
        };
        let either = Transport::CookieOrHeader(TOKEN);
        assert_eq!(either.via(&headers(Some("t"), true), &signer), Via::Header);
        assert_eq!(either.via(&headers(Some(""), false), &signer), Via::Header);
        // An empty header beside a session cookie: the cookie's request.
        assert_eq!(either.via(&headers(Some(""), true), &signer), Via::Cookie);
        assert_eq!(either.via(&headers(None, true), &signer), Via::Cookie);
        assert_eq!(
            Transport::Header(TOKEN).via(&headers(None, true), &signer),
            Via::Header
        );
        assert_eq!(
            Transport::Cookie.via(&headers(Some("t"), false), &signer),
            Via::Cookie
        );
    }

    #[test]
    fn a_header_with_another_meaning_is_refused() {
        for name in [
            http::header::COOKIE,
            http::header::SET_COOKIE,
            http::header::AUTHORIZATION,
        ] {
            let refused = Transport::CookieOrHeader(name.clone()).check();
            assert_eq!(
                refused,
                Err(ConfigError::TokenHeader {
                    name: name.to_string()
                })
            );
        }
        assert_eq!(Transport::Header(TOKEN).check(), Ok(()));
        assert_eq!(Transport::Cookie.check(), Ok(()));
    }

    #[test]
    fn tokens_are_the_headers_non_empty_values_and_bounded() {
        let mut headers = HeaderMap::new();
        headers.append(&TOKEN, HeaderValue::from_static(" a.1.x "));
        headers.append(&TOKEN, HeaderValue::from_static(""));
        for _ in 0..20 {
            headers.append(&TOKEN, HeaderValue::from_static("b"));
        }
        let transport = Transport::Header(TOKEN);
        let tokens: Vec<&str> = transport.tokens(&headers).collect();
        assert_eq!(tokens.len(), MAX_HEADER_VALUES);
        assert_eq!(tokens.first(), Some(&"a.1.x"));
        assert_eq!(Transport::Cookie.tokens(&headers).count(), 0);
    }
}
