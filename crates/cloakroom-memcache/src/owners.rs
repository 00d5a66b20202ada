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
//! "All but this one" keeps the current session: the owner's item first holds the old
//! generation and the new one together, the current session moves to the new one (by
//! compare-and-swap, like an update), then the item holds only the new one. A session in use
//! meanwhile stays valid throughout, and a login meanwhile joins the new generation.
//!
//! Listing cannot be exact under eviction, so [`owned`](OwnerIndex::owned) is an error,
//! [`MemcacheStoreError::Unsupported`]; so is revoking one session by its handle, which needs
//! the list.

use async_memcached::{Error as McError, MetaProtocol, Status};
use cloakroom::SessionId;
use cloakroom::store::{OwnerIndex, Record, Revoked};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::{MemcacheStore, MemcacheStoreError};

/// How many times a call tries again after another call changed the owner's item under it.
const ATTEMPTS: usize = 16;

/// What an owner's item holds: the generation sessions must belong to, and, while a revoke
/// that keeps one session is under way, the one it moves that session to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Generations {
    current: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<u64>,
}

impl Generations {
    fn holds(&self, generation: u64) -> bool {
        self.current == generation || self.next == Some(generation)
    }

    /// The generation a login joins: the newest.
    fn newest(&self) -> u64 {
        self.next.unwrap_or(self.current)
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
        generations: Generations,
        cas: Option<u64>,
    ) -> Result<bool, MemcacheStoreError> {
        let bytes =
            serde_json::to_vec(&generations).map_err(|error| MemcacheStoreError::Corrupt {
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
            if let Some((generations, _)) = self.generations(&key).await? {
                return Ok(generations.newest());
            }
            let made = Generations {
                current: fresh()?,
                next: None,
            };
            if self.put(&key, made, None).await? {
                return Ok(made.current);
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

    /// Ends every session of `owner` but `except` (see the module's documentation).
    async fn revoke(
        &self,
        owner: &str,
        except: Option<&SessionId>,
    ) -> Result<(), MemcacheStoreError> {
        let key = self.owner_key(owner);
        for _ in 0..ATTEMPTS {
            let found = self.generations(&key).await?;
            let next = fresh()?;
            let (Some(except), Some((old, cas))) = (except, found) else {
                // Nothing to keep (or nothing left: an evicted item has ended every session
                // already): a new generation, whatever the item held.
                let generations = Generations {
                    current: next,
                    next: None,
                };
                match found {
                    Some((_, cas)) if self.put(&key, generations, Some(cas)).await? => {
                        return Ok(());
                    }
                    None if self.put(&key, generations, None).await? => return Ok(()),
                    _ => continue,
                }
            };
            let both = Generations {
                current: old.current,
                next: Some(next),
            };
            if !self.put(&key, both, Some(cas)).await? {
                continue;
            }
            // The session kept moves to the new generation, if it is still one of the owner's.
            // (Gone already, it has nothing to move: `Update::Missing` is fine.)
            self.rewrite(&self.key(except), "revoke", |stored, _| {
                if stored.generation.is_some_and(|g| old.holds(g)) {
                    stored.generation = Some(next);
                }
            })
            .await?;
            let Some((now, cas)) = self.generations(&key).await? else {
                return Ok(());
            };
            if now != both {
                // Another revoke came after ours: it decides what is left.
                return Ok(());
            }
            let only = Generations {
                current: next,
                next: None,
            };
            if self.put(&key, only, Some(cas)).await? {
                return Ok(());
            }
        }
        Err(MemcacheStoreError::Contention {
            key,
            attempts: ATTEMPTS,
        })
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
    fn a_revoke_that_keeps_a_session_holds_both_generations_until_it_is_done() {
        let both = Generations {
            current: 1,
            next: Some(2),
        };
        assert!(both.holds(1) && both.holds(2) && !both.holds(3));
        assert_eq!(both.newest(), 2);
        let one = Generations {
            current: 2,
            next: None,
        };
        assert!(!one.holds(1) && one.holds(2));
        let text = serde_json::to_string(&one).ok();
        assert_eq!(text.as_deref(), Some(r#"{"current":2}"#));
    }
}
