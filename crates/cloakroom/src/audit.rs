//! Audit events: what happened to whose session, as `tracing` events (target
//! `cloakroom::audit`) and through the application's hook
//! ([`SessionLayer::on_audit`](crate::SessionLayer::on_audit)), for its audit log.

use std::fmt;
use std::sync::Arc;

use crate::SessionId;

/// What happened to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditKind {
    /// A new session was stored (with an owner, if its first request gave it one: a login).
    Created,
    /// A session moved to a new id, keeping its data: a login ([`Session::set_owner`]) or
    /// [`Session::regenerate_id`].
    ///
    /// [`Session::set_owner`]: crate::Session::set_owner
    /// [`Session::regenerate_id`]: crate::Session::regenerate_id
    Regenerated,
    /// A session was ended by its own request: a logout ([`Session::destroy`]).
    ///
    /// [`Session::destroy`]: crate::Session::destroy
    Destroyed,
    /// A session was ended from elsewhere, through [`Owners`](crate::Owners).
    Revoked,
}

impl AuditKind {
    /// `created`, `regenerated`, `destroyed` or `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Regenerated => "regenerated",
            Self::Destroyed => "destroyed",
            Self::Revoked => "revoked",
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit event. Sessions are named by their short hash (as in every log line), never by
/// their id.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditEvent {
    /// What happened.
    pub kind: AuditKind,
    /// Whose session it is, if it has an owner.
    pub owner: Option<String>,
    /// The session's short hash (`SessionId`'s `Display`, without the `#`); after a
    /// regenerate, of the new id. `None` for a revoke of every session of the owner that the
    /// store ended without naming them (memcached).
    pub session: Option<String>,
    /// For [`AuditKind::Regenerated`], the short hash of the id it replaced.
    pub replaces: Option<String>,
}

/// The application's hook.
pub(crate) type OnAudit = Arc<dyn Fn(&AuditEvent) + Send + Sync>;

/// Where events go: `tracing` always, and the hook if there is one.
#[derive(Clone, Default)]
pub(crate) struct Audit(pub(crate) Option<OnAudit>);

impl fmt::Debug for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Audit").field(&self.0.is_some()).finish()
    }
}

impl Audit {
    /// Reports that `session` (replacing `replaces`, of `owner`) was `kind`. Builds nothing
    /// when neither the hook nor a `tracing` subscriber wants it.
    pub(crate) fn report(
        &self,
        kind: AuditKind,
        owner: Option<&str>,
        session: Option<&SessionId>,
        replaces: Option<&SessionId>,
    ) {
        let traced = tracing::enabled!(target: "cloakroom::audit", tracing::Level::INFO);
        if self.0.is_none() && !traced {
            return;
        }
        let event = AuditEvent {
            kind,
            owner: owner.map(str::to_owned),
            session: session.map(SessionId::short_hash),
            replaces: replaces.map(SessionId::short_hash),
        };
        if traced {
            tracing::info!(
                target: "cloakroom::audit",
                event = kind.as_str(),
                owner = event.owner.as_deref(),
                session = event.session.as_deref(),
                replaces = event.replaces.as_deref(),
                "session {kind}"
            );
        }
        if let Some(hook) = &self.0 {
            hook(&event);
        }
    }
}
