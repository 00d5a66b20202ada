//! What a request does to its session: every decision of the request path, as values, with
//! no store and no I/O, so a table of cases tests them.
//!
//! Before the handler, [`Refresh::at_arrival`] says whether the cookie is due for a refresh,
//! and [`Refresh::fetch`] which store call reads the session (`load` refreshes, `read` does
//! not). After it, [`decide`] turns what is known into one [`Outcome`], the store call and the
//! cookie together, and [`Outcome::cookie`] says what the cookie becomes once the store has
//! answered.

use std::time::{Duration, SystemTime};

use http::StatusCode;

use crate::SessionId;
use crate::call::StoreOperation;
use crate::layer::Config;
use crate::session::{Fate, State};
use crate::store::{Changes, Record};

/// What the request's cookie told the layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CookieSeen {
    /// No cookie of our name.
    Absent,
    /// A cookie of our name that names no session: forged, of another secret, or not an id
    /// of the store's scheme.
    NotOurs,
    /// A verified cookie with an id, issued at this time, with the persistence a handler chose
    /// for it, if one did (`None`: the layer's default).
    Ours {
        issued: SystemTime,
        chosen: Option<bool>,
    },
}

/// Whether this request refreshes its session's expiry, and who does it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// Not due: the cookie is younger than the refresh interval.
    NotDue,
    /// Due, and still to be made: by the load before the handler, or else by the update after
    /// it.
    Owed,
    /// Due, and made by the load before the handler: only the cookie is left to re-send.
    Made,
}

impl Refresh {
    /// The refresh a cookie issued at `issued` asks for when it arrives at `now`. A cookie
    /// signed with an older secret (`current` false) is due at once, so it is re-signed.
    pub(crate) fn at_arrival(
        config: &Config,
        issued: SystemTime,
        current: bool,
        now: SystemTime,
    ) -> Self {
        if !current || due(config, issued, now, config.idle_timeout) {
            Self::Owed
        } else {
            Self::NotDue
        }
    }

    /// The store call that reads the session before the handler, when the store cannot answer
    /// at once: `load` makes a refresh that is owed, `read` does not.
    pub(crate) fn fetch(self) -> StoreOperation {
        match self {
            Self::Owed => StoreOperation::Load,
            Self::NotDue | Self::Made => StoreOperation::Read,
        }
    }

    /// The refresh once the store has answered `operation`.
    pub(crate) fn after(self, operation: StoreOperation) -> Self {
        match (self, operation) {
            (Self::Owed, StoreOperation::Load) => Self::Made,
            (refresh, _) => refresh,
        }
    }
}

/// Everything [`decide`] looks at, once the handler has answered.
pub(crate) struct Facts<'a> {
    /// When the request came: the expiry, `Max-Age` and the cookie's issue time count from it.
    pub(crate) now: SystemTime,
    pub(crate) cookie: CookieSeen,
    pub(crate) refresh: Refresh,
    /// The session as the handler left it.
    pub(crate) session: &'a State,
    pub(crate) status: StatusCode,
    /// Whether the session travels in its id ([`Ids::Sealed`](crate::store::Ids::Sealed)), so
    /// every request rewrites it.
    pub(crate) sealed: bool,
}

/// What happens after the handler: at most one store call (a regenerate's check, create and
/// delete count as one), and what it means for the cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No store call; the cookie stays as it is.
    Nothing,
    /// No store call; the cookie is cleared: it was not ours, or the session it named was
    /// destroyed before it was ever stored.
    Clear,
    /// No store call (the load refreshed the session); the cookie is re-sent.
    Resend { id: SessionId, grant: Grant },
    /// Store a new session and send its cookie.
    Create { record: Record, grant: Grant },
    /// Write the changes; re-send the cookie if `grant` is set.
    Update {
        id: SessionId,
        changes: Changes,
        grant: Option<Grant>,
    },
    /// Move the session to a new id (create, then delete the old one) and send its cookie.
    /// `check`: first make sure the old one is still there, and move nothing if it is not: a
    /// plain regenerate of a signed-in session, which a revoke may have ended since this
    /// request loaded it. (A login in this request is honoured whatever happened to the
    /// session it started from.)
    Regenerate {
        old: Option<SessionId>,
        record: Record,
        grant: Grant,
        check: bool,
    },
    /// Delete the session (of `owner`, for the audit event) and clear the cookie.
    Delete {
        id: SessionId,
        owner: Option<String>,
    },
}

/// A cookie to send: its `Max-Age` (sent only if `persistent`: otherwise it is a
/// browser-session cookie), the issue time signed into it, and the handler's choice of
/// persistence it carries (`chosen`, marked in the signed value; `None`: the layer's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) max_age: Duration,
    pub(crate) issued: SystemTime,
    pub(crate) persistent: bool,
    pub(crate) chosen: Option<bool>,
}

/// What the response does to the session cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SetCookie {
    Keep,
    Clear,
    Send { id: SessionId, grant: Grant },
}

/// The one decision of what the request does to its session.
pub(crate) fn decide(config: &Config, facts: &Facts<'_>) -> Outcome {
    let Facts {
        now,
        cookie,
        refresh,
        session: state,
        status,
        sealed,
    } = *facts;
    if status.is_server_error() && !config.save_on_server_error {
        // A logout always happens, even from a handler that failed after `destroy`; the rest
        // (its changes, and a regenerate, whose login failed with it) is dropped.
        return match (state.fate, &state.id) {
            (Fate::Destroy, Some(id)) => delete(id, state),
            _ => Outcome::Nothing,
        };
    }
    let idle = state.idle_timeout.unwrap_or(state.record.idle_timeout);
    // Outlives the browser or not: a choice made in this request, else one the cookie
    // carries, else the layer's default, which so reaches every cookie nobody chose for. A
    // new id leaves a carried "remember me" behind (a login on a shared computer does not
    // inherit the last user's), but never "don't remember me": a regenerate must not make a
    // cookie outlive the browser that chose otherwise.
    let carried = match cookie {
        CookieSeen::Ours { chosen, .. } => chosen,
        CookieSeen::Absent | CookieSeen::NotOurs => None,
    };
    let chosen = match state.fate {
        Fate::Regenerate => state
            .persistent
            .or(carried.filter(|persistent| !persistent)),
        Fate::Keep | Fate::Destroy => state.persistent.or(carried),
    };
    let grant = || Grant {
        max_age: state.record.deadline.map_or(idle, |deadline| {
            deadline.duration_since(now).unwrap_or_default().min(idle)
        }),
        issued: now,
        persistent: chosen.unwrap_or(config.cookie.persistent()),
        chosen,
    };
    match (state.fate, &state.id) {
        (Fate::Destroy, Some(id)) => delete(id, state),
        // A logout clears any cookie of ours, even when its session was gone already.
        (Fate::Destroy, None) if cookie != CookieSeen::Absent => Outcome::Clear,
        (Fate::Destroy, None) => Outcome::Nothing,
        (Fate::Regenerate, old) => Outcome::Regenerate {
            old: old.clone(),
            record: record_to_save(state, idle, now),
            grant: grant(),
            check: old.is_some() && state.record.owner.is_some() && !state.logged_in,
        },
        (Fate::Keep, None) if state.is_modified() || config.save_uninitialized => Outcome::Create {
            record: record_to_save(state, idle, now),
            grant: grant(),
        },
        // Without a logout, only a cookie that is not ours is cleared: a valid one whose
        // session is gone was ended by another request (a logout, a login's new id), which
        // cleared it, and a removal from here could land after that request's new cookie.
        (Fate::Keep, None) if cookie == CookieSeen::NotOurs => Outcome::Clear,
        (Fate::Keep, None) => Outcome::Nothing,
        (Fate::Keep, Some(id)) => {
            // Due now if it was when the request came, or if the session's own idle timeout
            // (known only now) makes the cookie old enough; a new idle timeout or deadline
            // needs a new Max-Age.
            let refresh = match (refresh, cookie) {
                (Refresh::NotDue, CookieSeen::Ours { issued, .. })
                    if state.idle_timeout.is_some()
                        || state.deadline.is_some()
                        || (state.persistent.is_some() && state.persistent != carried)
                        || due(config, issued, now, idle) =>
                {
                    Refresh::Owed
                }
                (refresh, _) => refresh,
            };
            let due = refresh != Refresh::NotDue;
            let write = state.is_modified() || sealed || refresh == Refresh::Owed;
            let resend = due || sealed;
            match (write, resend) {
                (true, _) => Outcome::Update {
                    id: id.clone(),
                    changes: state.changes(due),
                    grant: resend.then(grant),
                },
                (false, true) => Outcome::Resend {
                    id: id.clone(),
                    grant: grant(),
                },
                (false, false) => Outcome::Nothing,
            }
        }
    }
}

impl Outcome {
    /// What the cookie becomes, given the id the session goes by after the store call
    /// (`None`: there was no store call, or the session was gone when it came, or the call
    /// ended without an answer).
    pub(crate) fn cookie(&self, saved_as: Option<SessionId>) -> SetCookie {
        match self {
            Self::Nothing => SetCookie::Keep,
            Self::Clear | Self::Delete { .. } => SetCookie::Clear,
            Self::Resend { id, grant } => SetCookie::Send {
                id: id.clone(),
                grant: *grant,
            },
            Self::Create { grant, .. }
            | Self::Regenerate { grant, .. }
            | Self::Update {
                grant: Some(grant), ..
            } => match saved_as {
                Some(id) => SetCookie::Send { id, grant: *grant },
                // Gone when the update came: another request ended it and cleared the cookie
                // (or gave it a new one, which a removal from here could override).
                None => SetCookie::Keep,
            },
            Self::Update { grant: None, .. } => SetCookie::Keep,
        }
    }
}

/// Whether a cookie issued at `issued` is due for a refresh at `now`, for a session that lives
/// `idle` without requests: older than the refresh interval, which is at most a tenth of
/// `idle`.
fn due(config: &Config, issued: SystemTime, now: SystemTime, idle: Duration) -> bool {
    let interval = config.refresh_interval.min(idle / 10);
    match now.duration_since(issued) {
        Ok(age) => age >= interval,
        // Issued "in the future": another instance's clock runs a little ahead, or this
        // clock was set back, in which case waiting for it would let sessions expire.
        Err(ahead) => ahead.duration() > interval,
    }
}

/// The logout of the session `id`.
fn delete(id: &SessionId, state: &State) -> Outcome {
    let owner = state.record.owner.as_ref();
    Outcome::Delete {
        id: id.clone(),
        owner: owner.map(|owner| owner.name.clone()),
    }
}

/// The record to create: the session's current data, with the handler's idle timeout.
fn record_to_save(state: &State, idle: Duration, now: SystemTime) -> Record {
    let mut record = state.record.clone();
    record.idle_timeout = idle;
    record.expires = crate::store::expiry(now, idle, record.deadline);
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionCookie;

    const MINUTE: Duration = Duration::from_secs(60);

    fn config() -> Config {
        let cookie = SessionCookie::new("s").secret([7; 32]).into_signer();
        Config::new(cookie.expect("a valid test configuration"))
    }

    /// What the handler did, in the table's words.
    #[derive(Clone, Copy, Debug)]
    enum Handler {
        Nothing,
        Wrote,
        OwnIdle,
        Destroyed,
        Regenerated,
    }

    /// The session a handler leaves: one that was stored (`stored`) or new.
    fn session(stored: bool, handler: Handler, now: SystemTime) -> State {
        let id = stored.then(SessionId::generate);
        let mut state = State::new(id, Record::new(now, crate::DEFAULT_IDLE_TIMEOUT, None));
        match handler {
            Handler::Nothing => {}
            Handler::Wrote => {
                let entry = crate::store::Entry {
                    json: "1".to_owned(),
                    flash: false,
                };
                state.changed.insert("k".to_owned(), Some(entry));
            }
            Handler::OwnIdle => state.idle_timeout = Some(MINUTE * 30),
            Handler::Destroyed => state.fate = Fate::Destroy,
            Handler::Regenerated => state.fate = Fate::Regenerate,
        }
        state
    }

    /// The kind of outcome and whether the cookie is (re)sent, cleared or kept.
    fn shape(outcome: &Outcome) -> (&'static str, &'static str) {
        let cookie = match outcome.cookie(Some(SessionId::generate())) {
            SetCookie::Keep => "keep",
            SetCookie::Clear => "clear",
            SetCookie::Send { .. } => "send",
        };
        let kind = match outcome {
            Outcome::Nothing => "nothing",
            Outcome::Clear => "clear",
            Outcome::Resend { .. } => "resend",
            Outcome::Create { .. } => "create",
            Outcome::Update { changes, .. } if changes.touch => "update+touch",
            Outcome::Update { .. } => "update",
            Outcome::Regenerate { .. } => "regenerate",
            Outcome::Delete { .. } => "delete",
        };
        (kind, cookie)
    }

    #[test]
    fn the_decision_table() {
        use Handler::*;
        let config = config();
        let now = SystemTime::now();
        let fresh = CookieSeen::Ours {
            issued: now - Duration::from_secs(5),
            chosen: None,
        };
        let old = CookieSeen::Ours {
            issued: now - MINUTE * 2,
            chosen: None,
        };
        let (ok, failed) = (StatusCode::OK, StatusCode::INTERNAL_SERVER_ERROR);
        // (cookie, stored session, refresh at arrival, what the store answered before the
        // handler, handler, status, sealed) → (outcome, cookie)
        #[rustfmt::skip]
        let table = [
            // No cookie: a new session is stored only when written to.
            (CookieSeen::Absent, false, Refresh::NotDue, None, Nothing, ok, false, ("nothing", "keep")),
            (CookieSeen::Absent, false, Refresh::NotDue, None, Wrote, ok, false, ("create", "send")),
            (CookieSeen::Absent, false, Refresh::NotDue, None, Regenerated, ok, false, ("regenerate", "send")),
            (CookieSeen::Absent, false, Refresh::NotDue, None, Destroyed, ok, false, ("nothing", "keep")),
            // A cookie that is not ours is cleared, unless the handler stored a session.
            (CookieSeen::NotOurs, false, Refresh::NotDue, None, Nothing, ok, false, ("clear", "clear")),
            (CookieSeen::NotOurs, false, Refresh::NotDue, None, Wrote, ok, false, ("create", "send")),
            // A valid cookie whose session is gone is left alone: its ender cleared it.
            (fresh, false, Refresh::NotDue, Some(StoreOperation::Read), Nothing, ok, false, ("nothing", "keep")),
            (fresh, false, Refresh::NotDue, Some(StoreOperation::Read), Destroyed, ok, false, ("clear", "clear")),
            // Within the refresh interval: only writes, and no cookie.
            (fresh, true, Refresh::NotDue, Some(StoreOperation::Read), Nothing, ok, false, ("nothing", "keep")),
            (fresh, true, Refresh::NotDue, Some(StoreOperation::Read), Wrote, ok, false, ("update", "keep")),
            // The handler's own idle timeout: a refresh with the write, and a new Max-Age.
            (fresh, true, Refresh::NotDue, Some(StoreOperation::Read), OwnIdle, ok, false, ("update+touch", "send")),
            // Due, and the load made it: the cookie alone is re-sent.
            (old, true, Refresh::Owed, Some(StoreOperation::Load), Nothing, ok, false, ("resend", "send")),
            (old, true, Refresh::Owed, Some(StoreOperation::Load), Wrote, ok, false, ("update+touch", "send")),
            // Due, and answered at once (no load): the update makes it.
            (old, true, Refresh::Owed, None, Nothing, ok, false, ("update+touch", "send")),
            // Logout and login.
            (old, true, Refresh::Owed, Some(StoreOperation::Load), Destroyed, ok, false, ("delete", "clear")),
            (fresh, true, Refresh::NotDue, Some(StoreOperation::Read), Regenerated, ok, false, ("regenerate", "send")),
            // A 5xx drops everything but a logout.
            (fresh, true, Refresh::NotDue, Some(StoreOperation::Read), Wrote, failed, false, ("nothing", "keep")),
            (old, true, Refresh::Owed, None, Nothing, failed, false, ("nothing", "keep")),
            (fresh, true, Refresh::NotDue, Some(StoreOperation::Read), Regenerated, failed, false, ("nothing", "keep")),
            (fresh, true, Refresh::NotDue, Some(StoreOperation::Read), Destroyed, failed, false, ("delete", "clear")),
            // A sealed session is rewritten and re-sent by every request.
            (fresh, true, Refresh::NotDue, None, Nothing, ok, true, ("update", "send")),
        ];
        for (i, (cookie, stored, arrival, fetched, handler, status, sealed, expected)) in
            table.into_iter().enumerate()
        {
            let refresh = fetched.map_or(arrival, |operation| arrival.after(operation));
            let state = session(stored, handler, now);
            let facts = Facts {
                now,
                cookie,
                refresh,
                session: &state,
                status,
                sealed,
            };
            let outcome = decide(&config, &facts);
            assert_eq!(
                shape(&outcome),
                expected,
                "row {i}: {handler:?}, {outcome:?}"
            );
        }
    }

    #[test]
    fn a_cookie_is_due_once_older_than_the_interval_or_signed_with_an_older_secret() {
        let config = config();
        let now = SystemTime::now();
        let at = |age: Duration, current| Refresh::at_arrival(&config, now - age, current, now);
        assert_eq!(at(Duration::from_secs(59), true), Refresh::NotDue);
        assert_eq!(at(MINUTE, true), Refresh::Owed);
        assert_eq!(at(Duration::from_secs(1), false), Refresh::Owed);
        // Issued a little "in the future" (another instance's clock runs ahead): not due
        // until it is more than an interval ahead, so a clock set back cannot stop refreshes.
        let ahead = |by| Refresh::at_arrival(&config, now + by, true, now);
        assert_eq!(ahead(Duration::from_secs(30)), Refresh::NotDue);
        assert_eq!(ahead(MINUTE * 2), Refresh::Owed);
        assert_eq!(Refresh::Owed.fetch(), StoreOperation::Load);
        assert_eq!(Refresh::NotDue.fetch(), StoreOperation::Read);
    }

    #[test]
    fn the_interval_is_at_most_a_tenth_of_the_idle_timeout() {
        let config = config();
        let now = SystemTime::now();
        let issued = now - Duration::from_secs(7);
        assert!(!due(&config, issued, now, MINUTE * 10));
        assert!(due(&config, issued, now, MINUTE));
    }

    /// Whether the cookie is sent with `Max-Age`: the handler's choice, else the one the cookie
    /// carries (not across a new id), else the layer's default; a change of mind re-sends the
    /// cookie at once.
    #[test]
    fn a_cookie_outlives_the_browser_as_the_handler_the_cookie_or_the_layer_says() {
        let now = SystemTime::now();
        let browser_session = {
            let cookie = SessionCookie::new("s").secret([7; 32]).persistent(false);
            Config::new(cookie.into_signer().expect("a valid test configuration"))
        };
        let seen = |chosen| CookieSeen::Ours {
            issued: now - Duration::from_secs(5),
            chosen,
        };
        use Handler::{Nothing, Regenerated, Wrote};
        // (layer default persistent, cookie, stored, handler, its choice) → (persistent, mark) sent
        #[rustfmt::skip]
        let table = [
            (true, CookieSeen::Absent, false, Wrote, None, Some((true, None))),
            (false, CookieSeen::Absent, false, Wrote, None, Some((false, None))),
            (false, CookieSeen::Absent, false, Wrote, Some(true), Some((true, Some(true)))),
            // A choice the cookie carries stays, whatever the layer's default.
            (true, seen(Some(false)), true, Wrote, None, None),
            (false, seen(Some(true)), true, Nothing, None, None),
            // A change of mind is sent at once, written or not.
            (true, seen(Some(false)), true, Nothing, Some(true), Some((true, Some(true)))),
            (false, seen(Some(true)), true, Nothing, Some(false), Some((false, Some(false)))),
            (true, seen(Some(true)), true, Nothing, Some(true), None),
            // A login (a new id) starts from the layer's default unless it chooses.
            (false, seen(Some(true)), true, Regenerated, None, Some((false, None))),
            (false, seen(Some(true)), true, Regenerated, Some(true), Some((true, Some(true)))),
            // ...but a new id keeps "don't remember me" on a layer that remembers.
            (true, seen(Some(false)), true, Regenerated, None, Some((false, Some(false)))),
            (true, seen(Some(false)), true, Regenerated, Some(true), Some((true, Some(true)))),
            // A cookie nobody chose for follows the default, changed or not.
            (false, seen(None), true, Regenerated, None, Some((false, None))),
            (true, seen(None), true, Regenerated, None, Some((true, None))),
        ];
        for (i, (default, cookie, stored, handler, chosen, expected)) in
            table.into_iter().enumerate()
        {
            let config = if default {
                config()
            } else {
                Config::new(browser_session.cookie.clone())
            };
            let mut state = session(stored, handler, now);
            state.persistent = chosen;
            let facts = Facts {
                now,
                cookie,
                refresh: Refresh::NotDue,
                session: &state,
                status: StatusCode::OK,
                sealed: false,
            };
            let outcome = decide(&config, &facts);
            let sent = match outcome.cookie(Some(SessionId::generate())) {
                SetCookie::Send { grant, .. } => Some((grant.persistent, grant.chosen)),
                _ => None,
            };
            assert_eq!(sent, expected, "row {i}: {outcome:?}");
        }
    }

    #[test]
    fn a_session_gone_before_its_update_keeps_the_cookie_as_it_is() {
        let grant = Grant {
            max_age: MINUTE,
            issued: SystemTime::now(),
            persistent: true,
            chosen: None,
        };
        let update = Outcome::Update {
            id: SessionId::generate(),
            changes: Changes::default(),
            grant: Some(grant),
        };
        assert_eq!(update.cookie(None), SetCookie::Keep);
        let delete = Outcome::Delete {
            id: SessionId::generate(),
            owner: None,
        };
        assert_eq!(delete.cookie(None), SetCookie::Clear);
        let reissued = SessionId::generate();
        assert_eq!(
            update.cookie(Some(reissued.clone())),
            SetCookie::Send {
                id: reissued,
                grant
            }
        );
    }

    #[test]
    fn max_age_never_outlives_the_deadline() {
        let config = config();
        let now = SystemTime::now();
        let mut state = session(false, Handler::Wrote, now);
        state.record.deadline = Some(now + MINUTE);
        let facts = Facts {
            now,
            cookie: CookieSeen::Absent,
            refresh: Refresh::NotDue,
            session: &state,
            status: StatusCode::OK,
            sealed: false,
        };
        let Outcome::Create { grant, .. } = decide(&config, &facts) else {
            panic!("a written new session is created");
        };
        assert_eq!(grant.max_age, MINUTE);
    }
}
