//! Sending the commands of requests that are ready at the same time together.
//!
//! Under load, a system call per command is most of what a session costs, in the app and in
//! Redis: on loopback a `write` that wakes the other side measured 7-20 us here, against a few
//! for the rest of fred's work. fred pipelines on its own (a command queued behind another
//! is written without a flush) but not here, for two reasons: Tokio runs a task that another
//! task has just woken next (its LIFO slot), so fred's writer runs as soon as the first
//! request has queued its command and finds nothing behind it; and fred flushes after every
//! `EVALSHA` whatever is queued.
//!
//! So the store queues its calls in a [`Batcher`]. The first call spawns a task that waits
//! until the tasks that are ready now have had their turn (one
//! [`yield_now`](tokio::task::yield_now)), then sends everything queued at once: reads and
//! deletes as plain commands, which then leave in one write, and every script call as a
//! single `EVALSHA` of the session script with one key per call (at most
//! [`max_script_calls`]; one per hash slot on a cluster, where a script's keys must share a
//! slot). When one request is in flight, it costs that one yield.
//!
//! With a pool, every call of one key goes to the same pooled client (by the key's hash slot),
//! so Redis runs a session's commands in the order they were sent and the local copy's
//! tracking sees the same connection read and write it.
//!
//! A server that lacks the script (restarted, or failed over) answers the whole `EVALSHA` with
//! `NOSCRIPT`. The batch that got it loads the script and fails its calls with that error, and
//! [`Batcher::script`] sends each such call once more. Each call's own reply is read here too:
//! an operation that failed inside the script is a [`ScriptError`] of that call alone.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use fred::clients::Client;
use fred::error::{Error, ErrorKind};
use fred::interfaces::{ClientLike, HashesInterface, KeysInterface, LuaInterface};
use fred::types::config::Options;
use fred::types::{ClusterHash, CustomCommand};
use fred::types::{Key, Value};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::cache::InFlight;
use crate::lua::{Operation, Script, ScriptError, operation_reply};
use crate::replicas::{Replicas, Replication};

/// The most calls one `EVALSHA` carries: 16 where a script tracks all of its keys at every
/// read (`tracks_all_keys`), 128 elsewhere.
///
/// Redis runs a script to the end before serving anyone else, so a bound keeps a batch from
/// holding it up (about 2 us a call): 128 calls. On a tracking connection (the local copy's)
/// Redis before 7.2 makes every read-only command inside a script track all of the script's
/// keys (fixed by redis/redis#11770), so a script of n calls costs n² tracking-table inserts
/// (most calls read twice or more, a create once): 64 calls of one `EXISTS` each took 127 us
/// instead of 14. Past 16 calls that costs Redis more than another `EVALSHA` in the same
/// batch does, so such batches are split there.
pub(crate) fn max_script_calls(tracks_all_keys: bool) -> usize {
    if tracks_all_keys { 16 } else { 128 }
}

/// How many times a script call is sent when Redis lacked the script (a restarted or
/// failed-over server; the batch that got `NOSCRIPT` has loaded it since).
const SCRIPT_ATTEMPTS: usize = 2;

/// Why a call failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The command failed as a whole (Redis down, a timeout, a closed connection, too few
    /// replicas, `NOSCRIPT` twice): fred's error.
    Command(Error),
    /// The call's operation failed inside the script; the batch's other calls did not.
    Script(ScriptError),
}

impl Failure {
    /// Whether the command timed out: a connection may have stalled without closing.
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, Self::Command(error) if *error.kind() == ErrorKind::Timeout)
    }

    /// Whether Redis lacked the session script; the batch that heard it has loaded it since.
    fn is_noscript(&self) -> bool {
        matches!(self, Self::Command(error) if is_noscript(error))
    }
}

/// Whether Redis answered `NOSCRIPT`. fred keeps Redis's error reply, which starts with its
/// code, as the details (and files `NOSCRIPT` under no kind of its own).
fn is_noscript(error: &Error) -> bool {
    error.details().starts_with("NOSCRIPT")
}

/// What a queued call asks of Redis.
enum Command {
    Read,
    Delete,
    Script(Operation, Vec<Value>),
}

/// A queued call: the session's key, the command and where its reply goes.
struct Call {
    key: String,
    command: Command,
    answer: Answer,
}

/// A queued script call, once its slot is known.
struct ScriptCall {
    key: Key,
    operation: Operation,
    args: Vec<Value>,
    answer: Answer,
}

/// Where a call's reply goes, and, for a write, the guard that keeps the local copy from
/// keeping any reply of its key until the command is done, even if the caller has gone.
struct Answer {
    reply: oneshot::Sender<Result<Value, Failure>>,
    in_flight: Option<Arc<InFlight>>,
}

impl Answer {
    /// Delivers `result` once the command is done: the guard goes first, so the caller weighs
    /// the reply with its write no longer in flight.
    fn send(self, result: Result<Value, Failure>) {
        drop(self.in_flight);
        // A caller that went away no longer wants the reply.
        let _ = self.reply.send(result);
    }
}

/// Queues store calls and sends them together. Cheap to clone: clones share the queue.
#[derive(Clone)]
pub(crate) struct Batcher {
    shared: Arc<Shared>,
}

struct Shared {
    /// One client, or a pool's; a key's calls always go to the same one (see
    /// [`Shared::route`]).
    clients: Vec<Client>,
    /// Whether script calls must be grouped by hash slot.
    clustered: bool,
    script: Script,
    /// [`max_script_calls`] for these connections.
    max_script_calls: usize,
    replication: Replication,
    waiting: Mutex<Vec<Call>>,
}

impl Batcher {
    /// A batcher sending through `clients` (one, or a pool's), whose scripts track all their
    /// keys at every read if `tracks_all_keys` (see [`max_script_calls`]). `replicas`: see
    /// [`Replicas`].
    pub(crate) fn new(
        clients: Vec<Client>,
        replicas: Option<Replicas>,
        tracks_all_keys: bool,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                clustered: clients.first().is_some_and(ClientLike::is_clustered),
                clients,
                script: Script::sessions(),
                max_script_calls: max_script_calls(tracks_all_keys),
                replication: Replication::new(replicas),
                waiting: Mutex::new(Vec::new()),
            }),
        }
    }

    /// `HGETALL key`.
    pub(crate) async fn read(&self, key: &str) -> Result<Value, Failure> {
        self.call(key, Command::Read, None).await
    }

    /// `DEL key`; `in_flight` is the write's guard, if the cache is on.
    pub(crate) async fn delete(
        &self,
        key: &str,
        in_flight: Option<Arc<InFlight>>,
    ) -> Result<Value, Failure> {
        self.call(key, Command::Delete, in_flight).await
    }

    /// `operation` of the session script on `key`, with the arguments `args` builds;
    /// `in_flight` is the write's guard, if the cache is on. Sent once more after a
    /// `NOSCRIPT` (the batch has loaded the script by then): the arguments went with the
    /// first command, and keeping a copy of every batch for this rare case would cost an
    /// allocation per argument, so they are built again.
    pub(crate) async fn script(
        &self,
        operation: Operation,
        key: &str,
        args: impl Fn() -> Vec<Value>,
        in_flight: Option<Arc<InFlight>>,
    ) -> Result<Value, Failure> {
        let mut attempts = 0;
        loop {
            let command = Command::Script(operation, args());
            let reply = self.call(key, command, in_flight.clone()).await;
            attempts += 1;
            match reply {
                Err(failure) if failure.is_noscript() && attempts < SCRIPT_ATTEMPTS => {}
                reply => return reply,
            }
        }
    }

    /// Runs `command` on the client that serves `key`, outside any batch: an owner's index is
    /// off the request path, and its commands are of other kinds. After a write (`write`), waits
    /// for replicas as configured.
    ///
    /// fred's command futures are kilobytes each; they are boxed here, so that a store call
    /// that may run one (a create indexes its owner, if it has one) does not carry it inline
    /// and every request moving that call's future does not copy it.
    pub(crate) async fn direct<'a, T, F>(
        &'a self,
        key: &str,
        write: bool,
        command: impl FnOnce(&'a Client) -> F,
    ) -> Result<T, Failure>
    where
        F: Future<Output = Result<T, Error>>,
    {
        let shared = &*self.shared;
        let route = shared.route(key);
        let client = shared.client(route).map_err(Failure::Command)?;
        let reply = Box::pin(command(client)).await.map_err(Failure::Command)?;
        if write {
            Box::pin(shared.replication.wait(client, route))
                .await
                .map_err(Failure::Command)?;
        }
        Ok(reply)
    }

    async fn call(
        &self,
        key: &str,
        command: Command,
        in_flight: Option<Arc<InFlight>>,
    ) -> Result<Value, Failure> {
        let (reply, replied) = oneshot::channel();
        let call = Call {
            key: key.to_owned(),
            command,
            answer: Answer { reply, in_flight },
        };
        match Handle::try_current() {
            Ok(runtime) => {
                let first = {
                    let mut waiting = self.shared.waiting();
                    waiting.push(call);
                    waiting.len() == 1
                };
                if first {
                    let shared = Arc::clone(&self.shared);
                    runtime.spawn(async move {
                        tokio::task::yield_now().await;
                        let calls = mem::take(&mut *shared.waiting());
                        shared.send(calls).await;
                    });
                }
            }
            // Not on a Tokio runtime (where fred does not run either): nothing to wait for.
            Err(_) => self.shared.send(vec![call]).await,
        }
        replied.await.unwrap_or_else(|_| {
            Err(Failure::Command(Error::new(
                ErrorKind::Canceled,
                "the runtime shut down before the command was sent",
            )))
        })
    }
}

/// One command in flight.
type Sending<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

impl Shared {
    fn waiting(&self) -> MutexGuard<'_, Vec<Call>> {
        // Nothing panics while holding the lock; a poisoned queue is still a good queue.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the calls of `key` go: the hash slot on a cluster, else which of the clients
    /// (0 for one). A key's calls always take the same connection, so Redis runs them in the
    /// order they were sent, and its client tracking (see [`cache`](crate::cache)) sees one
    /// connection read and write it.
    fn route(&self, key: &str) -> u16 {
        match self.clients.len() {
            _ if self.clustered => fred::util::redis_keyslot(key.as_bytes()),
            0 | 1 => 0,
            n => fred::util::redis_keyslot(key.as_bytes()) % u16::try_from(n).unwrap_or(u16::MAX),
        }
    }

    /// The client of a [`route`](Self::route).
    fn client(&self, route: u16) -> Result<&Client, Error> {
        let count = self.clients.len().max(1);
        self.clients
            .get(usize::from(route) % count)
            .ok_or_else(|| Error::new(ErrorKind::Config, "the fred pool has no clients"))
    }

    /// Sends `calls` (reads and deletes one command each, script calls one `EVALSHA` per
    /// route) and delivers every reply.
    async fn send(&self, calls: Vec<Call>) {
        tracing::trace!(
            calls = calls.len(),
            "sending a batch of session calls to Redis"
        );
        let mut sending: FuturesUnordered<Sending<'_>> = FuturesUnordered::new();
        let mut scripts: Vec<(u16, Vec<ScriptCall>)> = Vec::new();
        for call in calls {
            match call.command {
                Command::Read => sending.push(Box::pin(async move {
                    let reply = match self.client(self.route(&call.key)) {
                        Ok(client) => client.hgetall(call.key).await,
                        Err(error) => Err(error),
                    };
                    call.answer.send(reply.map_err(Failure::Command));
                })),
                Command::Delete => sending.push(Box::pin(async move {
                    let route = self.route(&call.key);
                    let reply = match self.client(route) {
                        Ok(client) => match client.del(call.key).await {
                            Ok(reply) => self.replication.wait(client, route).await.map(|()| reply),
                            Err(error) => Err(error),
                        },
                        Err(error) => Err(error),
                    };
                    call.answer.send(reply.map_err(Failure::Command));
                })),
                Command::Script(operation, args) => {
                    let route = self.route(&call.key);
                    let call = ScriptCall {
                        key: Key::from(call.key),
                        operation,
                        args,
                        answer: call.answer,
                    };
                    match scripts.iter_mut().find(|(r, _)| *r == route) {
                        Some((_, group)) => group.push(call),
                        None => scripts.push((route, vec![call])),
                    }
                }
            }
        }
        for (route, mut group) in scripts {
            while group.len() > self.max_script_calls {
                let rest = group.split_off(self.max_script_calls);
                sending.push(Box::pin(self.run_script(route, group)));
                group = rest;
            }
            sending.push(Box::pin(self.run_script(route, group)));
        }
        // The first poll starts every command, so they reach fred's queue together.
        while sending.next().await.is_some() {}
    }

    /// One `EVALSHA` for `calls` (whose keys share a route). After a `NOSCRIPT` (a restarted
    /// or failed-over server) it loads the script and answers every call with that error, for
    /// [`Batcher::script`] to send again.
    async fn run_script(&self, route: u16, calls: Vec<ScriptCall>) {
        // EVALSHA sha1 numkeys key... arg...
        let mut command = Vec::with_capacity(2 + calls.len());
        command.push(Value::String(self.script.sha1.clone()));
        command.push(Value::Integer(calls.len() as i64));
        let mut args = Vec::new();
        let mut replies = Vec::with_capacity(calls.len());
        for mut call in calls {
            command.push(Value::from(call.key));
            args.push(Value::from_static_str(call.operation.name()));
            args.push(Value::Integer(call.args.len() as i64));
            args.append(&mut call.args);
            replies.push(call.answer);
        }
        command.append(&mut args);
        let result = match self.client(route) {
            Ok(client) => {
                // fred's `evalsha` ignores `with_options`; a custom command takes them. On a
                // cluster the route is the keys' hash slot.
                let evalsha =
                    CustomCommand::new_static("EVALSHA", ClusterHash::Custom(route), false);
                let mut result = client
                    .with_options(&once())
                    .custom::<Value, Value>(evalsha, command)
                    .await;
                if result.as_ref().is_err_and(is_noscript) {
                    tracing::debug!("loading the session script into Redis");
                    let source = self.script.source.as_str();
                    if let Err(failed) = client.script_load_cluster::<(), _>(source).await {
                        result = Err(failed);
                    }
                }
                // Every operation of the script writes (a load refreshes the expiry).
                if result.is_ok() {
                    if let Err(error) = self.replication.wait(client, route).await {
                        result = Err(error);
                    }
                }
                result
            }
            Err(error) => Err(error),
        };
        let error = match result {
            Ok(Value::Array(items)) if items.len() == replies.len() => {
                for (item, reply) in items.into_iter().zip(replies) {
                    reply.send(operation_reply(item).map_err(Failure::Script));
                }
                return;
            }
            Ok(other) => Error::new(
                ErrorKind::Protocol,
                format!("the session script returned {:?}", other.kind()),
            ),
            Err(error) => error,
        };
        for reply in replies {
            reply.send(Err(Failure::Command(error.clone())));
        }
    }
}

/// Script calls are sent once: fred re-sends a command whose connection closed before the
/// reply, and a script call that ran before the close would then run twice, its second answer
/// hiding the first (an update applied, then reported missing because a delete came between).
/// A call that lost its connection fails instead, and may or may not have applied. fred counts
/// following a cluster's `MOVED` or `ASK` as a second attempt too, and answers it with the same
/// error as a call it would replay after its connection broke (which may have run), so the
/// store cannot send it again safely: the first script call after a slot moved fails (fred has
/// refreshed its slot map by then, and the next call goes to the new owner).
fn once() -> Options {
    Options {
        max_attempts: Some(1),
        ..Options::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_noscript_reply_is_sent_again() {
        let noscript = Error::new(
            ErrorKind::Unknown,
            "NOSCRIPT No matching script. Please use EVAL.",
        );
        assert!(Failure::Command(noscript).is_noscript());
        let other = Error::new(ErrorKind::Unknown, "ERR something else");
        assert!(!Failure::Command(other).is_noscript());
        // A call's own error inside the script never is: the script ran.
        let own = Failure::Script(ScriptError::Failed("NOSCRIPT in a message".to_owned()));
        assert!(!own.is_noscript());
    }

    #[test]
    fn a_timeout_is_told_apart() {
        let timeout = Error::new(ErrorKind::Timeout, "Request timed out.");
        assert!(Failure::Command(timeout).is_timeout());
        assert!(!Failure::Script(ScriptError::WrongType).is_timeout());
    }
}
