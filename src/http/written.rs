//! The answer of a successful write: its body and the store revision it
//! reached, a consistency token for decisions that must see it (the same
//! value as the `X-Cedargate-Revision` header).

use serde::Serialize;
use utoipa::ToSchema;

use crate::entities::EntityStore;

/// A write's answer with its consistency token.
#[derive(Debug, Serialize, ToSchema)]
pub struct Written<T> {
    /// The write's own answer.
    #[serde(flatten)]
    pub body: T,
    /// The store revision the write reached: send it as
    /// `X-Cedargate-Min-Revision` with decisions that must see the write.
    pub revision: u64,
}

impl<T> Written<T> {
    /// `body`, with the token of every write this sidecar has made so far.
    pub fn new(store: &EntityStore, body: T) -> Self {
        Self {
            body,
            revision: store.token(),
        }
    }
}
