//! Where the session's signed token travels: the cookie (browsers), a header (APIs, mobile
//! apps, gRPC metadata), or either, decided per request.

use http::{HeaderMap, HeaderName};

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
    /// The header for requests that carry it (a token, or empty to ask for one), the cookie for
    /// all others. A request with the header never reads the cookie, and gets its token in
    /// the header, never in `Set-Cookie`; a browser request without it works as with
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
    /// The carrier of a request with `headers`.
    pub(crate) fn via(&self, headers: &HeaderMap) -> Via {
        match self {
            Self::Cookie => Via::Cookie,
            Self::Header(_) => Via::Header,
            Self::CookieOrHeader(name) if headers.contains_key(name) => Via::Header,
            Self::CookieOrHeader(_) => Via::Cookie,
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
    fn a_request_with_the_header_uses_it_and_others_the_cookie() {
        let mut with = HeaderMap::new();
        with.insert(&TOKEN, HeaderValue::from_static(""));
        let without = HeaderMap::new();
        let either = Transport::CookieOrHeader(TOKEN);
        assert_eq!(either.via(&with), Via::Header);
        assert_eq!(either.via(&without), Via::Cookie);
        assert_eq!(Transport::Header(TOKEN).via(&without), Via::Header);
        assert_eq!(Transport::Cookie.via(&with), Via::Cookie);
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
