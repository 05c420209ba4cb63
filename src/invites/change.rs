//! One write of the invitation service: a transaction holding the store's
//! write lock, the Cedar entities it rewrote and whether it queued mail.
//! [`Change::commit`] settles what the write owes: the caches drop the
//! entities and the mailer wakes, both only after the commit, so neither a
//! cache fill nor the mailer can read the state before it.
//!
//! Writes that touch only rows without a Cedar projection (invitations, the
//! audit trail) and queue no mail use [`RowsOnly`] instead: there is nothing
//! to invalidate and no one to wake, and the type says so.

use std::ops::{Deref, DerefMut};

use cedar_policy::EntityUid;

use super::InviteError;
use super::uid::ModelUid;
use crate::audit::{self, Event};
use crate::entities::EntityStore;
use crate::mail::{self, Mailer, Outgoing};

/// The transaction of one write.
pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A write that may rewrite Cedar entities and queue mail.
#[derive(Debug)]
pub(crate) struct Change {
    tx: Tx,
    /// Entities written or deleted: dropped from the caches at commit.
    touched: Vec<EntityUid>,
    /// Mail was queued: the mailer is woken at commit.
    mailed: bool,
}

impl Change {
    /// Opens a write (the store's write lock first, see
    /// [`EntityStore::begin_write`]).
    pub async fn begin(store: &EntityStore) -> Result<Self, InviteError> {
        Ok(Self {
            tx: store.begin_write().await?,
            touched: Vec::new(),
            mailed: false,
        })
    }

    /// Records entities a projection wrote in this transaction.
    pub fn project(&mut self, uids: impl IntoIterator<Item = EntityUid>) {
        self.touched.extend(uids);
    }

    /// Deletes an entity in this transaction.
    pub async fn delete_entity(&mut self, uid: &ModelUid) -> Result<(), InviteError> {
        let uid = uid.typed();
        EntityStore::delete_in(&mut self.tx, std::slice::from_ref(&uid)).await?;
        self.touched.push(uid);
        Ok(())
    }

    /// Queues a message, sent only if this transaction commits; it replaces
    /// an unsent message with the same dedupe key (see [`mail::enqueue`]).
    pub async fn enqueue(&mut self, now: i64, message: &Outgoing) -> Result<(), InviteError> {
        mail::enqueue(&mut self.tx, now, message).await?;
        self.mailed = true;
        Ok(())
    }

    /// Appends an audit record in this transaction.
    pub async fn audit(&mut self, now: i64, event: Event<'_>) -> Result<(), InviteError> {
        Ok(audit::record(&mut self.tx, now, event).await?)
    }

    /// Commits as one store revision, then drops the touched entities from
    /// the caches and wakes the mailer if mail was queued.
    pub async fn commit(
        self,
        store: &EntityStore,
        mailer: Option<&Mailer>,
    ) -> Result<(), InviteError> {
        store.commit(self.tx, &self.touched).await?;
        if self.mailed
            && let Some(mailer) = mailer
        {
            mailer.wake();
        }
        Ok(())
    }
}

impl Deref for Change {
    type Target = Tx;

    fn deref(&self) -> &Tx {
        &self.tx
    }
}

impl DerefMut for Change {
    fn deref_mut(&mut self) -> &mut Tx {
        &mut self.tx
    }
}

/// A write of rows that have no Cedar projection (invitation states, the
/// audit trail) and that queues no mail. It still takes the store's write
/// lock, so it queues behind the other writes in one order, but its commit
/// takes no store revision, invalidates nothing and wakes no one: no
/// decision reads what it changes. Used by revoking, declining, and the
/// revocation of a former inviter's links.
#[derive(Debug)]
pub(crate) struct RowsOnly {
    tx: Tx,
}

impl RowsOnly {
    /// Opens the write (the store's write lock first).
    pub async fn begin(store: &EntityStore) -> Result<Self, InviteError> {
        Ok(Self {
            tx: store.begin_write().await?,
        })
    }

    /// Appends an audit record in this transaction.
    pub async fn audit(&mut self, now: i64, event: Event<'_>) -> Result<(), InviteError> {
        Ok(audit::record(&mut self.tx, now, event).await?)
    }

    /// Commits. Nothing to invalidate, no mail to wake for.
    pub async fn commit(self) -> Result<(), InviteError> {
        Ok(self.tx.commit().await?)
    }
}

impl Deref for RowsOnly {
    type Target = Tx;

    fn deref(&self) -> &Tx {
        &self.tx
    }
}

impl DerefMut for RowsOnly {
    fn deref_mut(&mut self) -> &mut Tx {
        &mut self.tx
    }
}
