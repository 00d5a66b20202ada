//! The sessions of each owner ([`OwnerIndex`]): `<dir>/.owners/<owner>/<id>`, an empty file
//! per session, where `<owner>` is the SHA-256 of the owner's name in hex (any name is a safe
//! directory name then).
//!
//! An entry is made after the session's file, at its login, and made durable with it; an
//! owner never changes under an id, so nothing else writes one. An entry leaves with its
//! session: a delete and the sweep remove it after the file. One left behind (a crash between
//! the two) names a session that is gone for good, since ids are never reused, and a list
//! removes those it finds. Like the sessions, entries are private to the user the app runs as
//! (`0700` directories, `0600` files): their names are session ids.

use std::fs;
use std::io;
use std::path::PathBuf;

use cloakroom::SessionId;
use cloakroom::store::{OwnerIndex, Record, Revoked};

use crate::{FsStore, FsStoreError, Inner, io_at, private_dir, private_file, sync};

impl Inner {
    fn owner_dir(&self, owner: &str) -> PathBuf {
        let digest = ring::digest::digest(&ring::digest::SHA256, owner.as_bytes());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        self.owners.join(hex)
    }

    /// Adds `id`, whose file was just created for `owner`, to the owner's entries, durably.
    pub(crate) fn index(&self, owner: &str, id: &SessionId) -> Result<(), FsStoreError> {
        let dir = self.owner_dir(owner);
        let entry = dir.join(id.as_str());
        // A sweep may remove the owner's directory once it is empty, between our creating it
        // and the entry: then make it again.
        let mut attempts = 0;
        loop {
            private_dir(&dir)?;
            match private_file()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&entry)
            {
                Ok(_) => break,
                Err(error) if error.kind() == io::ErrorKind::NotFound && attempts < 3 => {
                    attempts += 1;
                }
                Err(error) => return Err(io_at(&entry)(error)),
            }
        }
        sync(&dir)?;
        sync(&self.owners)
    }

    /// The ids `owner` has entries for.
    fn entries(&self, owner: &str) -> Result<Vec<SessionId>, FsStoreError> {
        let dir = self.owner_dir(owner);
        let listing = match fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_at(&dir)(error)),
        };
        let names = listing.filter_map(|entry| entry.ok()?.file_name().into_string().ok());
        // Only this store writes here; anything else names no session.
        Ok(names.filter_map(|name| SessionId::parse(&name)).collect())
    }

    /// [`unindex`](Self::unindex) for a session already removed: a failure leaves an entry a
    /// list removes later, so it is logged, not returned (the removal stands).
    pub(crate) fn unindex_or_warn(&self, owner: &str, id: &SessionId) {
        if let Err(error) = self.unindex(owner, id) {
            tracing::warn!(%error, "could not remove an owner's entry of an ended session; a list will");
        }
    }

    /// Removes the entry of `id` (a session that is gone) from `owner`'s, and the owner's
    /// directory once it is empty.
    pub(crate) fn unindex(&self, owner: &str, id: &SessionId) -> Result<(), FsStoreError> {
        let dir = self.owner_dir(owner);
        self.remove(&dir.join(id.as_str()))?;
        // Fails while other entries are left (or a login just added one): that is fine.
        let _ = fs::remove_dir(&dir);
        Ok(())
    }

    fn owned(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, FsStoreError> {
        let mut live = Vec::new();
        for id in self.entries(owner)? {
            match self.load(&id, false) {
                Ok(Some(record)) if record.owner.as_ref().is_some_and(|o| o.name == owner) => {
                    live.push((id, record));
                }
                Ok(Some(_)) => {}
                Ok(None) => self.unindex_or_warn(owner, &id),
                // One unreadable session file is not every session of the owner: it is left
                // out (and served to nobody: a load of it fails the same way).
                Err(error) => {
                    tracing::warn!(%error, "an owner's session could not be read; not listed");
                }
            }
        }
        Ok(live)
    }
}

impl Inner {
    /// Deletes every session `owner` has an entry for but `except`, without reading them: an
    /// owner never changes under an id, so a session file that cannot be read (a lock held
    /// too long, a corrupt file) is ended all the same.
    fn revoke_all(
        &self,
        owner: &str,
        except: Option<&SessionId>,
    ) -> Result<Vec<SessionId>, FsStoreError> {
        let mut ended = Vec::new();
        for id in self.entries(owner)? {
            if Some(&id) == except {
                continue;
            }
            let path = self.path(&id)?;
            let existed = fs::symlink_metadata(&path).is_ok();
            {
                let _lock = self.lock(&id)?;
                self.remove(&path)?;
            }
            self.sync_dir()?;
            self.unindex_or_warn(owner, &id);
            if existed {
                ended.push(id);
            }
        }
        Ok(ended)
    }
}

/// Each owner's sessions are entries in a directory of its own; listing reads each session's
/// file (without refreshing it), leaves out one it cannot read, and removes the entries of
/// sessions that are gone; a revoke deletes every entry's session without reading it.
impl OwnerIndex for FsStore {
    async fn owned(&self, owner: &str) -> Result<Vec<(SessionId, Record)>, FsStoreError> {
        let owner = owner.to_owned();
        self.blocking(move |inner| inner.owned(&owner)).await
    }

    async fn revoke_all(
        &self,
        owner: &str,
        except: Option<&SessionId>,
    ) -> Result<Revoked, FsStoreError> {
        let (owner, except) = (owner.to_owned(), except.cloned());
        let ended = self
            .blocking(move |inner| inner.revoke_all(&owner, except.as_ref()))
            .await?;
        Ok(Revoked::Sessions(ended))
    }
}
