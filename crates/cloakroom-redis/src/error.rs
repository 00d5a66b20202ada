//! What a failed store call reports, and how the layer weighs it.
//!
//! Every error names the Redis key it concerns with the session id replaced by the id's short
//! hash ([`SessionId::redact`]): an id is a credential, and errors end up in logs.

use cloakroom::SessionId;
use cloakroom::store::{FailureKind, StoreError};
use fred::error::{Error, ErrorKind};

use crate::batch::Failure;
use crate::lua::ScriptError;

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// No URL, client or pool was given to the builder.
    #[error("RedisStore needs a URL, a fred Config, a Client or a Pool")]
    NoConnection,
    /// The URL could not be parsed.
    #[error("invalid Redis URL {url:?}: {source}")]
    Url {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// What fred said.
        source: fred::error::Error,
    },
    /// The server may evict keys that have no TTL (`maxmemory-policy` `allkeys-*`), such as the
    /// set of a user's sessions: a revoke could then miss sessions it should end, so a login
    /// with an owner, a list and a revoke are refused (a 500: no retry fixes it). Sessions
    /// without an owner work as usual (an evicted session is a logged-out user).
    #[error(
        "Redis maxmemory-policy is {policy}, which may evict the index of a user's sessions: set noeviction or a volatile-* policy to sign users in with an owner, list or revoke their sessions"
    )]
    EvictingPolicy {
        /// The server's policy, as `CONFIG GET` gave it when the store was built.
        policy: String,
    },
    /// Connecting failed: Redis is down or unreachable at start-up, or refused the
    /// credentials. The store does not start without a first connection; a later outage is
    /// retried in the background.
    #[error("could not connect to Redis at {servers}: {reason}")]
    Connect {
        /// The servers the configuration names (`host:port`, comma-separated; no password).
        servers: String,
        /// Why, in words (fred's own message shows an I/O error in its `Debug` form).
        reason: String,
        /// What fred said.
        source: fred::error::Error,
    },
    /// A command failed (Redis down, timeout, script error).
    #[error("Redis {operation} of {key:?} failed: {source}")]
    Command {
        /// The store operation.
        operation: &'static str,
        /// The Redis key, its session id replaced by the id's short hash (`session:#1a2b3c4d`):
        /// an id is a credential and never reaches a log.
        key: String,
        /// What fred said.
        source: fred::error::Error,
    },
    /// The key holds something this store did not write (another program's data, or a
    /// different type).
    #[error("Redis key {key:?} does not hold a cloakroom session: {reason}")]
    Foreign {
        /// The Redis key, its session id replaced by the id's short hash.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Data no retry can fix is refused (500): another program's data under a session key;
/// everything else is an outage (503).
impl StoreError for RedisStoreError {
    fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Foreign { .. } | Self::EvictingPolicy { .. } => FailureKind::Rejected,
            _ => FailureKind::Unavailable,
        }
    }
}

impl RedisStoreError {
    /// The error for a key that does not hold what the store writes.
    pub(crate) fn foreign(key: &str, reason: String) -> Self {
        Self::Foreign {
            key: SessionId::redact(key, ""),
            reason,
        }
    }

    /// The error of `operation` on `key` that failed with `failure`. A key of another type
    /// (Redis's `WRONGTYPE`) holds another program's data; anything else is a failed command.
    pub(crate) fn failed(operation: &'static str, key: &str, failure: Failure) -> Self {
        let source = match failure {
            Failure::Command(error) if is_wrong_type(&error) => return wrong_type(key),
            Failure::Script(ScriptError::WrongType) => return wrong_type(key),
            Failure::Command(error) => error,
            // The kind and text the store reported before the script's errors were typed.
            Failure::Script(ScriptError::Refused(message) | ScriptError::Failed(message)) => {
                Error::new(ErrorKind::Unknown, message)
            }
            Failure::Script(ScriptError::Malformed) => Error::new(
                ErrorKind::Protocol,
                "the session script returned an unexpected reply",
            ),
        };
        Self::Command {
            operation,
            key: SessionId::redact(key, ""),
            source,
        }
    }
}

fn wrong_type(key: &str) -> RedisStoreError {
    RedisStoreError::foreign(key, "it is not a hash".to_owned())
}

/// Whether Redis refused a plain command (`HGETALL`) because the key is not a hash. fred keeps
/// Redis's error reply as the details, and a reply starts with its code.
fn is_wrong_type(error: &Error) -> bool {
    error.details().split_whitespace().next() == Some("WRONGTYPE")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "session:abc";

    #[test]
    fn a_key_of_another_type_is_foreign_whichever_way_redis_said_so() {
        let plain = Error::new(
            ErrorKind::InvalidArgument,
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        );
        for failure in [
            Failure::Command(plain),
            Failure::Script(ScriptError::WrongType),
        ] {
            let error = RedisStoreError::failed("load", KEY, failure);
            assert!(
                matches!(&error, RedisStoreError::Foreign { reason, .. } if reason == "it is not a hash"),
                "{error:?}"
            );
            assert_eq!(error.failure_kind(), FailureKind::Rejected);
        }
    }

    #[test]
    fn other_failures_are_outages() {
        for failure in [
            Failure::Command(Error::new(ErrorKind::Timeout, "Request timed out.")),
            Failure::Script(ScriptError::Refused("OOM no room".to_owned())),
            Failure::Script(ScriptError::Failed("user_script:1: oops".to_owned())),
            Failure::Script(ScriptError::Malformed),
        ] {
            let error = RedisStoreError::failed("update", KEY, failure);
            assert!(
                matches!(
                    &error,
                    RedisStoreError::Command {
                        operation: "update",
                        ..
                    }
                ),
                "{error:?}"
            );
            assert_eq!(error.failure_kind(), FailureKind::Unavailable);
        }
    }

    #[test]
    fn a_script_error_keeps_redis_s_message() {
        let error = RedisStoreError::failed(
            "update",
            KEY,
            Failure::Script(ScriptError::Refused("OOM no room".to_owned())),
        );
        assert!(error.to_string().ends_with("OOM no room"), "{error}");
    }
}
