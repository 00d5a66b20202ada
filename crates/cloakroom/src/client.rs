//! What the layer notes of the client for a session's owner: its user agent and its address,
//! each only when the application asks for it (both are personal data), and only kept when
//! a handler calls [`Session::set_owner`](crate::Session::set_owner).

use std::fmt;
use std::sync::Arc;

use http::header::USER_AGENT;
use http::{Extensions, HeaderMap, HeaderValue};

/// The longest user agent kept, in bytes: enough to tell browsers and devices apart, and a
/// client cannot make the store keep a long header.
pub(crate) const MAX_USER_AGENT: usize = 256;

/// The longest address kept, in bytes.
pub(crate) const MAX_ADDRESS: usize = 64;

/// How an application finds a request's client address: from the connection's extensions
/// (axum's `ConnectInfo`) or a proxy's header.
pub(crate) type AddressOf = Arc<dyn Fn(&HeaderMap, &Extensions) -> Option<String> + Send + Sync>;

/// What the layer is configured to note.
#[derive(Clone, Default)]
pub(crate) struct Notes {
    pub(crate) user_agent: bool,
    pub(crate) address: Option<AddressOf>,
}

impl fmt::Debug for Notes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notes")
            .field("user_agent", &self.user_agent)
            .field("address", &self.address.is_some())
            .finish()
    }
}

impl Notes {
    /// What a request says of its client; nothing, without a look at it, unless configured.
    pub(crate) fn of(&self, headers: &HeaderMap, extensions: &Extensions) -> Client {
        if !self.user_agent && self.address.is_none() {
            return Client::default();
        }
        Client {
            user_agent: self
                .user_agent
                .then(|| headers.get(USER_AGENT).cloned())
                .flatten(),
            address: self
                .address
                .as_ref()
                .and_then(|address_of| address_of(headers, extensions))
                .map(|address| truncated(address, MAX_ADDRESS)),
        }
    }
}

/// The client of one request, as noted.
#[derive(Clone, Debug, Default)]
pub(crate) struct Client {
    user_agent: Option<HeaderValue>,
    pub(crate) address: Option<String>,
}

impl Client {
    pub(crate) fn is_empty(&self) -> bool {
        self.user_agent.is_none() && self.address.is_none()
    }

    /// The user agent as text (bytes that are not UTF-8 replaced), at most
    /// [`MAX_USER_AGENT`] bytes.
    pub(crate) fn user_agent(&self) -> Option<String> {
        let value = self.user_agent.as_ref()?;
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        Some(truncated(text, MAX_USER_AGENT))
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncated(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_noted_unless_asked() {
        let mut headers = HeaderMap::new();
        headers.insert(USER_AGENT, HeaderValue::from_static("curl/8"));
        let client = Notes::default().of(&headers, &Extensions::new());
        assert!(client.is_empty());
        let notes = Notes {
            user_agent: true,
            address: None,
        };
        let client = notes.of(&headers, &Extensions::new());
        assert_eq!(client.user_agent().as_deref(), Some("curl/8"));
        assert_eq!(client.address, None);
    }

    #[test]
    fn long_or_odd_values_are_cut_at_a_character() {
        let long = format!("{}é", "a".repeat(MAX_USER_AGENT - 1));
        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_bytes(long.as_bytes()).expect("a valid header value"),
        );
        let notes = Notes {
            user_agent: true,
            address: Some(Arc::new(|_: &HeaderMap, _: &Extensions| {
                Some("ü".repeat(40))
            })),
        };
        let client = notes.of(&headers, &Extensions::new());
        assert_eq!(
            client.user_agent().map(|ua| ua.len()),
            Some(MAX_USER_AGENT - 1)
        );
        assert_eq!(client.address.map(|a| a.len()), Some(MAX_ADDRESS));
        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_bytes(b"bad \xff bytes").expect("a valid header value"),
        );
        let client = notes.of(&headers, &Extensions::new());
        assert_eq!(client.user_agent().as_deref(), Some("bad \u{fffd} bytes"));
    }
}
