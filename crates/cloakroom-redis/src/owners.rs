//! The sessions of each owner ([`OwnerIndex`]): one sorted set per owner, `<prefix>owner:<name>`,
//! of the ids of its sessions, each scored by an expiry its session had (Unix ms).
//!
//! An owner never changes under an id, so the set is written only at a login: after the
//! create script has stored the session (`ZADD`), never before. So an id in the set whose key
//! is missing is gone for good and may be dropped (`ZREM`): a list drops those it finds (it
//! reads every session anyway), and each login looks at up to [`PRUNE`] ids whose score has
//! passed (`PTTL` each), drops the gone ones and scores the others with their expiry now, so
//! the set holds about the owner's sessions of one idle timeout, however many logins it had.
//! A session in use outlives any TTL its set could be given, so the set has none, and an owner
//! who never comes back leaves one set behind; without a TTL, it is never evicted under a
//! `volatile-*` `maxmemory-policy`. An `allkeys-*` policy could evict it, so a store built on a
//! server with one refuses logins with an owner, lists and revokes
//! ([`RedisStoreError::EvictingPolicy`]) rather than let a revoke miss sessions.
//!
//! A revoke deletes each session as [`delete`](SessionStore::delete) does (through the batch,
//! so every instance's local copy is invalidated by Redis), then takes its id out of the set.
//! On a cluster, an owner's sessions live on many slots and the set on one of its own: each
//! command goes to its key's node.

use std::time::{Duration, SystemTime};

use cloakroom::SessionId;
use cloakroom::store::{OwnerIndex, Record, Revoked, SessionStore};
use fred::interfaces::{KeysInterface, SortedSetsInterface};
use fred::types::SetOptions;
use futures_util::future::join_all;

use crate::{RedisStore, RedisStoreError};

/// The most ids one login looks at when it prunes its owner's set: a login costs a bounded
/// number of commands however many sessions the owner has, and since each login adds one id,
/// the set never holds more than the sessions of one idle timeout, plus this many.
const PRUNE: i64 = 64;

const HOUR: Duration = Duration::from_secs(3600);

/// A time as a set's score: Unix milliseconds.
fn score(time: SystemTime) -> f64 {
    crate::codec::millis(time) as f64
}

impl RedisStore {
    /// Refuses what needs the owner index on a server that may evict it.
    pub(crate) fn owner_index_kept(&self) -> Result<(), RedisStoreError> {
        match &self.inner.evicting {
            Some(policy) => Err(RedisStoreError::EvictingPolicy {
                policy: policy.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The Redis key of the set of `owner`'s sessions.
    pub fn owner_key(&self, owner: &str) -> String {
        format!("{}owner:{owner}", self.inner.prefix)
    }

    /// Adds the session `id` just created for `owner`, which expires at `expires` unless it
    /// is used, to its set; then prunes the set. A failed prune fails no login: the next one
    /// prunes again.
    pub(crate) async fn index(
        &self,
        owner: &str,
        id: &SessionId,
        expires: SystemTime,
    ) -> Result<(), RedisStoreError> {
        let index = self.owner_key(owner);
        let member = id.as_str().to_owned();
        self.inner
            .batcher
            .direct(&index, true, |client| {
                client.zadd::<(), _, _>(&index, None, None, false, false, (score(expires), member))
            })
            .await
            .map_err(|failure| RedisStoreError::failed("index", &index, failure))?;
        if let Err(error) = self.prune(&index).await {
            tracing::warn!(%error, "could not prune the sessions of an owner; the next login will");
        }
        Ok(())
    }

    /// Looks at up to [`PRUNE`] ids of the set `index` whose score (an expiry their session
    /// had) has passed: one `PTTL` each, sent together; the ids of sessions that are gone leave
    /// the set, and the others are scored with their expiry now.
    async fn prune(&self, index: &str) -> Result<(), RedisStoreError> {
        let batcher = &self.inner.batcher;
        let now = SystemTime::now();
        let limit = Some((0, PRUNE));
        let due: Vec<String> = batcher
            .direct(index, false, |client| {
                client.zrangebyscore(index, "-inf", score(now), false, limit)
            })
            .await
            .map_err(|failure| RedisStoreError::failed("index", index, failure))?;
        let ttls = join_all(
            due.iter()
                .filter_map(|member| SessionId::parse(member))
                .map(|id| {
                    let key = self.key(&id);
                    async move {
                        let ttl = batcher
                            .direct(&key, false, |client| client.pttl::<i64, _>(&key))
                            .await;
                        (
                            id,
                            ttl.map_err(|failure| RedisStoreError::failed("index", &key, failure)),
                        )
                    }
                }),
        )
        .await;
        let (mut gone, mut live) = (Vec::new(), Vec::new());
        for (id, ttl) in ttls {
            match ttl? {
                // No such key.
                -2 => gone.push(id.as_str().to_owned()),
                // No TTL (not a key this store wrote): look again in an hour.
                -1 => live.push((score(now + HOUR), id.as_str().to_owned())),
                ms => {
                    let expires = now + Duration::from_millis(ms.unsigned_abs());
                    live.push((score(expires), id.as_str().to_owned()));
                }
            }
        }
        if !live.is_empty() {
            batcher
                .direct(index, true, |client| {
                    let only_existing = Some(SetOptions::XX);
                    client.zadd::<(), _, _>(index, only_existing, None, false, false, live)
                })
                .await
                .map_err(|failure| RedisStoreError::failed("index", index, failure))?;
        }
        self.unindex(index, gone).await
    }

    /// The ids in the set `index`, with their session keys.
    async fn members(&self, index: &str) -> Result<Vec<(SessionId, String)>, RedisStoreError> {
        let members: Vec<String> = self
            .inner
            .batcher
            .direct(index, false, |client| {
                client.zrange(index, 0, -1, None, false, None, false)
            })
            .await
            .map_err(|failure| RedisStoreError::failed("list", index, failure))?;
        Ok(members
            .iter()
            .filter_map(|member| {
                // Only this store writes the set; anything else in it names no session.
                let id = SessionId::parse(member)?;
                let key = self.key(&id);
                Some((id, key))
            })
            .collect())
    }

    /// Takes `ids` (whose sessions are gone) out of the set `index`.
    async fn unindex(&self, index: &str, ids: Vec<String>) -> Result<(), RedisStoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.inner
            .batcher
            .direct(index, true, |client| client.zrem::<(), _, _>(index, ids))
            .await
            .map_err(|failure| RedisStoreError::failed("unindex", index, failure))
    }
}

impl OwnerIndex for RedisStore {
    /// One `ZRANGE`, then each session as [`read`](SessionStore::read) has it (the local copy,
    /// or one `HGETALL` each, sent together); ids whose session is gone leave the set.
    async fn owned(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, RedisStoreError> {
        self.owner_index_kept()?;
        let index = self.owner_key(owner);
        let members = self.members(&index).await?;
        let reads = join_all(members.into_iter().map(|(id, _)| async move {
            let record = self.read(&id).await;
            (id, record)
        }))
        .await;
        let (mut live, mut gone) = (Vec::new(), Vec::new());
        for (id, record) in reads {
            match record? {
                Some(record) if record.owner.as_ref().is_some_and(|o| o.name == owner) => {
                    live.push((id, record));
                }
                Some(_) => {}
                None => gone.push(id.as_str().to_owned()),
            }
        }
        self.unindex(&index, gone).await?;
        Ok(live)
    }

    /// One `ZRANGE`, a `DEL` of every session but `except` (sent together), and a `ZREM` of
    /// their ids.
    async fn revoke_all(
        &self,
        owner: &str,
        except: Option<&SessionId>,
    ) -> Result<Revoked, RedisStoreError> {
        self.owner_index_kept()?;
        let index = self.owner_key(owner);
        let members = self.members(&index).await?;
        let ended: Vec<SessionId> = members
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| Some(id) != except)
            .collect();
        let deletes = join_all(ended.iter().map(|id| self.delete(id))).await;
        deletes.into_iter().collect::<Result<Vec<()>, _>>()?;
        let ids = ended.iter().map(|id| id.as_str().to_owned()).collect();
        self.unindex(&index, ids).await?;
        Ok(Revoked::Sessions(ended))
    }
}
