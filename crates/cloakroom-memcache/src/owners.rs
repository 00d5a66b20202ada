//! The sessions of each owner ([`OwnerIndex`]), kept so that an eviction can only log people
//! out, never keep a revoked session alive.
//!
//! memcached may evict any item at any time, so an index of an owner's sessions could lose
//! entries, and a "log out everywhere" that went by it would miss those sessions. Instead
//! each owner has a *generation*: a random number in the item `<prefix>owner:<sha256 of the
//! name>`, stored without expiry. A session of an owner records the generation it was made in
//! (its login), and is served only while the owner's item holds that generation: a revoke
//! gives the owner a new one, which ends every session of the old one at once, on every app
//! instance; an evicted owner item ends them too (fail closed), and the next login makes a
//! new generation. Reading a session with an owner costs one more `mg` (the owner's item,
//! which these reads keep at the top of memcached's LRU).
//!
//! "All but this one" keeps the current session: the owner's item first accepts the new
//! generation as well as those it accepted, the current session moves to the new one (by
//! compare-and-swap, like an update), then the item holds only the new one. A session in use
//! meanwhile stays valid throughout, and a login meanwhile joins the new generation. If the
//! move fails, the old generations end all the same (fail closed). Revokes of one owner take
//! turns (a lock item with a TTL longer than a revoke takes), so each ends what the one before
//! left; one cut short on the way (the layer detaches revokes, so only a crash does this)
//! leaves several generations accepted and its lock until the TTL, and the next ends them.
//!
//! One race is left: a session that moves to a new id (a login, `regenerate_id`) joins the
//! newest generation, so a regenerate whose check of the old session came just before a
//! revoke, and whose create just after, survives it (a round trip wide; the layer checks the
//! old session first, so a revoke that returned before the regenerate began always wins).
//!
//! Listing cannot be exact under eviction, so [`owned`](OwnerIndex::owned) is an error,
//! [`MemcacheStoreError::Unsupported`]; so is revoking one session by its handle, which needs
//! the list.

use std::time::Duration;

use async_memcached::{Error as McError, MetaProtocol, Status};
use cloakroom::SessionId;
use cloakroom::store::{OwnerIndex, Record, Revoked};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::{MemcacheStore, MemcacheStoreError};

/// How many times a call tries again after another call changed the owner's item under it.
const ATTEMPTS: usize = 16;

/// The shortest an owner's revoke lock lasts (see [`MemcacheStore::lock_ttl`]).
const MIN_LOCK_TTL: Duration = Duration::from_secs(5);

/// The most generations an owner's item accepts at once: more than one only while revokes
/// that keep a session are under way (or were cut short before they finished, which the
/// next revoke completes).
const MAX_ACCEPTED: usize = 8;

/// What an owner's item holds: the generations whose sessions are served, oldest first. The
/// last is the one logins join; there is more than one only while a revoke that keeps one
/// session moves it to the newest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Generations {
    accepted: Vec<u64>,
}

impl Generations {
    fn only(generation: u64) -> Self {
        Self {
            accepted: vec![generation],
        }
    }

    fn holds(&self, generation: u64) -> bool {
        self.accepted.contains(&generation)
    }

    /// The generation a login joins: the newest.
    fn newest(&self) -> Option<u64> {
        self.accepted.last().copied()
    }

    /// These generations and `next`, the oldest dropped past [`MAX_ACCEPTED`] (their sessions
    /// are then ended: fail closed).
    fn and(&self, next: u64) -> Self {
        let mut accepted = self.accepted.clone();
        accepted.push(next);
        let excess = accepted.len().saturating_sub(MAX_ACCEPTED);
        accepted.drain(..excess);
        Self { accepted }
    }
}

/// A fresh generation, from the operating system's generator.
fn fresh() -> Result<u64, MemcacheStoreError> {
    let mut bytes = [0; 8];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| MemcacheStoreError::Config("the system random generator failed".to_owned()))?;
    Ok(u64::from_le_bytes(bytes))
}

impl MemcacheStore {
    /// The memcached key of `owner`'s item.
    pub fn owner_key(&self, owner: &str) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, owner.as_bytes());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{}owner:{hex}", self.inner.prefix)
    }

    /// The owner's item and its CAS token; `None` if there is none (never made, or evicted).
    async fn generations(
        &self,
        key: &str,
    ) -> Result<Option<(Generations, u64)>, MemcacheStoreError> {
        let found = self
            .with_client(key, "owner", async |client| {
                client.meta_get(key, false, None, Some(&["v", "c"])).await
            })
            .await?;
        let Some((data, cas)) = found.and_then(|value| value.data.zip(value.cas)) else {
            return Ok(None);
        };
        let generations =
            serde_json::from_slice(&data).map_err(|error| MemcacheStoreError::Corrupt {
                key: key.to_owned(),
                reason: error.to_string(),
            })?;
        Ok(Some((generations, cas)))
    }

    /// Writes the owner's item: only if it is unchanged since `cas` was read, or, without
    /// one, only if there is none. `false` if another call got there first.
    async fn put(
        &self,
        key: &str,
        generations: &Generations,
        cas: Option<u64>,
    ) -> Result<bool, MemcacheStoreError> {
        let bytes =
            serde_json::to_vec(generations).map_err(|error| MemcacheStoreError::Corrupt {
                key: key.to_owned(),
                reason: error.to_string(),
            })?;
        // No expiry: the item lives as long as memcached keeps it, and an eviction fails closed.
        let mode = cas.map_or_else(|| "ME".to_owned(), |cas| format!("C{cas}"));
        let flags = [mode.as_str(), "T0"];
        let written = self
            .with_client(key, "owner", async |client| {
                client
                    .meta_set(key, bytes.as_slice(), false, None, Some(&flags))
                    .await
            })
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(MemcacheStoreError::Server {
                source: McError::Protocol(Status::Exists | Status::NotStored | Status::NotFound),
                ..
            }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The generation a new session of `owner` joins, made if the owner has none.
    pub(crate) async fn generation(&self, owner: &str) -> Result<u64, MemcacheStoreError> {
        let key = self.owner_key(owner);
        for _ in 0..ATTEMPTS {
            if let Some(newest) = self.generations(&key).await?.and_then(|(g, _)| g.newest()) {
                return Ok(newest);
            }
            let generation = fresh()?;
            if self.put(&key, &Generations::only(generation), None).await? {
                return Ok(generation);
            }
        }
        Err(MemcacheStoreError::Contention {
            key,
            attempts: ATTEMPTS,
        })
    }

    /// Whether a session of `owner` made in `generation` is still one of its sessions.
    pub(crate) async fn belongs(
        &self,
        owner: &str,
        generation: Option<u64>,
    ) -> Result<bool, MemcacheStoreError> {
        let Some(generation) = generation else {
            return Ok(false);
        };
        let found = self.generations(&self.owner_key(owner)).await?;
        Ok(found.is_some_and(|(generations, _)| generations.holds(generation)))
    }

    /// Ends every session of `owner` but `except` (see the module's documentation), one revoke
    /// of an owner at a time.
    async fn revoke(
        &self,
        owner: &str,
        except: Option<&SessionId>,
    ) -> Result<(), MemcacheStoreError> {
        let key = self.owner_key(owner);
        let lock = self.lock(&key).await?;
        let revoked = self.revoke_locked(&key, except).await;
        self.unlock(&key, lock).await;
        revoked
    }

    async fn revoke_locked(
        &self,
        key: &str,
        except: Option<&SessionId>,
    ) -> Result<(), MemcacheStoreError> {
        for _ in 0..ATTEMPTS {
            let found = self.generations(key).await?;
            let next = fresh()?;
            let (Some(except), Some((old, cas))) = (except, &found) else {
                // Nothing to keep (or nothing left: an evicted item has ended every session
                // already): a new generation, whatever the item held.
                let only = Generations::only(next);
                let cas = found.as_ref().map(|(_, cas)| *cas);
                if self.put(key, &only, cas).await? {
                    return Ok(());
                }
                continue;
            };
            // Every generation accepted so far stays so while the kept session moves, those
            // of an earlier revoke that was cut short included.
            let both = old.and(next);
            if !self.put(key, &both, Some(*cas)).await? {
                continue;
            }
            // The session kept moves to the new generation, if it is still one of the owner's.
            // (Gone already, it has nothing to move: `Update::Missing` is fine.) Whether it
            // moved or not, the old generations end: a revoke that fails half-way fails closed
            // (the kept session may end with them).
            let moved = self
                .rewrite(&self.key(except), "revoke", |stored, _| {
                    if stored.generation.is_some_and(|g| old.holds(g)) {
                        stored.generation = Some(next);
                    }
                })
                .await;
            self.finish(key, &both, next).await?;
            return moved.map(drop);
        }
        Err(MemcacheStoreError::Contention {
            key: key.to_owned(),
            attempts: ATTEMPTS,
        })
    }

    /// Replaces `both` (what this revoke wrote) with `next` alone. If the item holds anything
    /// else, a later revoke has written it (one that took the lock after ours expired, or an
    /// eviction and a login), and what it wrote stands: it ended at least what ours would.
    async fn finish(
        &self,
        key: &str,
        both: &Generations,
        next: u64,
    ) -> Result<(), MemcacheStoreError> {
        for _ in 0..ATTEMPTS {
            match self.generations(key).await? {
                Some((now, cas)) if now == *both => {
                    if self.put(key, &Generations::only(next), Some(cas)).await? {
                        return Ok(());
                    }
                }
                _ => return Ok(()),
            }
        }
        Err(MemcacheStoreError::Contention {
            key: key.to_owned(),
            attempts: ATTEMPTS,
        })
    }

    /// Takes the owner's revoke lock (`<owner key>:lock`, on the owner's server, added with a
    /// TTL so that a revoke cut short cannot hold it for ever): concurrent revokes of one owner
    /// take turns, so each ends what the one before left. Waits as long as the TTL at most.
    async fn lock(&self, key: &str) -> Result<u64, MemcacheStoreError> {
        let lock = format!("{key}:lock");
        let token = fresh()?;
        let value = token.to_string();
        let ttl = self.lock_ttl();
        let expiry = format!("T{}", ttl.as_secs());
        let flags = ["ME", expiry.as_str()];
        let deadline = tokio::time::Instant::now() + ttl;
        let mut pause = Duration::from_millis(1);
        loop {
            let added = self
                .with_client(key, "revoke", async |client| {
                    client
                        .meta_set(&lock, value.as_bytes(), false, None, Some(&flags))
                        .await
                })
                .await;
            match added {
                Ok(_) => return Ok(token),
                Err(MemcacheStoreError::Server {
                    source: McError::Protocol(Status::NotStored),
                    ..
                }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(MemcacheStoreError::Server {
                    source: McError::Protocol(Status::NotStored),
                    ..
                }) => return Err(MemcacheStoreError::Locked { waited: ttl }),
                Err(error) => return Err(error),
            }
        }
    }

    /// How long a revoke lock lasts: longer than a revoke can take (its calls, and an update's
    /// compare-and-swap rounds on the kept session), so only a revoke cut short leaves one to
    /// expire.
    fn lock_ttl(&self) -> Duration {
        let longest = self
            .inner
            .timeout
            .saturating_mul(crate::UPDATE_TIMEOUTS + 8);
        let seconds = longest
            .as_secs()
            .saturating_add(1)
            .max(MIN_LOCK_TTL.as_secs());
        Duration::from_secs(seconds)
    }

    /// Gives the lock back if it is still ours (it may have expired and gone to another).
    async fn unlock(&self, key: &str, token: u64) {
        let lock = format!("{key}:lock");
        let found = self
            .with_client(key, "revoke", async |client| {
                client.meta_get(&lock, false, None, Some(&["v", "c"])).await
            })
            .await;
        let Ok(Some((value, cas))) = found.map(|found| found.and_then(|v| v.data.zip(v.cas)))
        else {
            return;
        };
        if value == token.to_string().as_bytes() {
            let cas = format!("C{cas}");
            let _ = self
                .with_client(key, "revoke", async |client| {
                    client
                        .meta_delete(&lock, false, None, Some(&[cas.as_str()]))
                        .await
                })
                .await;
        }
    }
}

/// Revokes by generation, fail-closed under eviction; cannot list (see the module).
impl OwnerIndex for MemcacheStore {
    async fn owned(&self, _owner: &str) -> Result<Vec<(SessionId, Record)>, MemcacheStoreError> {
        Err(MemcacheStoreError::Unsupported {
            operation: "listing an owner's sessions",
        })
    }

    async fn revoke_all(
        &self,
        owner: &str,
        except: Option<&SessionId>,
    ) -> Result<Revoked, MemcacheStoreError> {
        self.revoke(owner, except).await.map(|()| Revoked::Unnamed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoke_that_keeps_a_session_holds_every_generation_until_it_is_done() {
        let both = Generations::only(1).and(2);
        assert!(both.holds(1) && both.holds(2) && !both.holds(3));
        assert_eq!(both.newest(), Some(2));
        // A revoke cut short left 1 and 2 accepted: the next keeps both until it is done.
        let again = both.and(3);
        assert!(again.holds(1) && again.holds(2) && again.holds(3));
        let mut many = Generations::only(0);
        for n in 1..20 {
            many = many.and(n);
        }
        assert_eq!(many.accepted.len(), MAX_ACCEPTED);
        assert!(!many.holds(0) && many.holds(19));
        let text = serde_json::to_string(&Generations::only(2)).ok();
        assert_eq!(text.as_deref(), Some(r#"{"accepted":[2]}"#));
    }
}
