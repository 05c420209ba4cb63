//! Searches: the stored subjects a request allows on a resource, the
//! stored resources it allows a subject, the actions it allows a subject
//! on a resource (the AuthZEN search APIs).
//!
//! Exact: an entity is found if and only if the single decision on it
//! (same semantics, fail closed) allows, every result of one answer read
//! from one store state. Built on typed partial evaluation
//! ([`PolicySnapshot::partially_evaluate`]): a query the residual denies
//! reads no candidate, one it allows whatever the entity lists the stored
//! ids, and otherwise each candidate is decided on the residual policies.
//!
//! Unknown types, actions that do not apply to the types, and a known side
//! the store does not hold (and the request does not describe) find
//! nothing: a search is over what the store knows.

use std::str::FromStr;

use cedar_policy::{Entities, EntityId, EntityTypeName, EntityUid, Request};

use super::{AuthzRequest, Engine, Loaded, conform, request_entities, uid};
use crate::entities::{Reader, SliceError};
use crate::policy::{FilterPlan, PlanError, RequestError, Residuals, Side};

/// How many candidate ids one read fetches.
const CHUNK: usize = 256;

/// The side of the request a search looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Searched {
    /// Subjects (principals) allowed on the resource.
    Subject,
    /// Resources the subject is allowed.
    Resource,
}

/// A subject or resource search.
#[derive(Debug, Clone)]
pub struct Search {
    /// The request; its searched side's reference is ignored.
    pub request: AuthzRequest,
    /// Which side is searched.
    pub searched: Searched,
    /// The entity type searched.
    pub kind: String,
    /// Start after this id (`""`: from the first).
    pub after: String,
    /// At most this many results.
    pub limit: usize,
}

/// One page of search results.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The ids found, in id order.
    pub ids: Vec<String>,
    /// Whether more results follow the last one.
    pub more: bool,
    /// The policy revision that decided.
    pub policy_revision: u64,
    /// The store revision every result was decided on.
    pub store_revision: u64,
    /// Why nothing can be found, when the query itself fails (a context of
    /// the wrong type): as for a single decision, an error denies.
    pub errors: Vec<String>,
}

/// The actions a subject may take on a resource.
#[derive(Debug, Clone, Default)]
pub struct FoundActions {
    /// The allowed actions' ids, in id order.
    pub actions: Vec<String>,
    /// The policy revision that decided.
    pub policy_revision: u64,
    /// The store revision they were decided on.
    pub store_revision: u64,
}

/// Why a search has no answer.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The request is malformed (a reference that does not parse).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] SliceError),
}

/// A filter plan and the state it holds for.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The plan.
    pub plan: FilterPlan,
    /// The policy revision it was made under.
    pub policy_revision: u64,
    /// The store revision of the principal's entities it was made on.
    pub store_revision: u64,
}

/// Why there is no filter plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanFailure {
    /// The query is malformed, or names a type the schema lacks.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The residual policies cannot be written as a condition.
    #[error(transparent)]
    Unsupported(#[from] PlanError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] SliceError),
}

impl Engine {
    /// The filter plan of `request` (its resource's reference ignored) over
    /// the resources of type `kind`: which of them the principal may take
    /// the action on, as one condition over their attributes.
    pub async fn plan(&self, request: &AuthzRequest, kind: &str) -> Result<Planned, PlanFailure> {
        let loaded = self.current();
        let snapshot = &loaded.snapshot;
        let Some(kind) = entity_type(&loaded, kind)? else {
            return Err(
                RequestError::Schema(format!("no entity type `{kind}` in the schema")).into(),
            );
        };
        let principal = uid(snapshot, "principal", &request.principal)?;
        let action = uid(snapshot, "action", &request.action)?;
        let denied = |store_revision| Planned {
            plan: FilterPlan::AlwaysDenied,
            policy_revision: loaded.revision,
            store_revision,
        };
        if !loaded.actions.contains_key(&action) {
            return Ok(denied(self.store.revision()));
        }
        let request = conform(snapshot, &action, request);
        let extra = request_entities(&loaded, &request.entities)?;
        let store = &self.store;
        for attempt in 0.. {
            let reader = store.reader(loaded.schema_ref(), attempt).await?;
            let known = reader
                .slice(loaded.wanted([&principal, &principal], &[], &extra, request.described_by))
                .await;
            if let Some((known, revision)) = store.settle(&reader, known).await? {
                let residuals = match snapshot.partially_evaluate(
                    &Side::Known(principal.clone()),
                    &action,
                    &Side::Any(kind),
                    &request.context,
                    &known,
                ) {
                    Ok(r) => r,
                    // The action does not apply to these types.
                    Err(RequestError::Schema(_)) => return Ok(denied(revision)),
                    Err(e) => return Err(e.into()),
                };
                return Ok(Planned {
                    plan: crate::policy::plan(&residuals, &principal, &known)?,
                    policy_revision: loaded.revision,
                    store_revision: revision,
                });
            }
        }
        unreachable!("a snapshot reader always settles")
    }

    /// The stored entities of the searched type the request allows, in id
    /// order, one page at a time.
    pub async fn search(&self, search: &Search) -> Result<Found, SearchError> {
        let loaded = self.current();
        let snapshot = &loaded.snapshot;
        let mut found = Found {
            policy_revision: loaded.revision,
            store_revision: self.store.revision(),
            ..Found::default()
        };
        let Some(kind) = entity_type(&loaded, &search.kind)? else {
            return Ok(found);
        };
        let request = &search.request;
        let action = uid(snapshot, "action", &request.action)?;
        let (fixed, fixed_json) = match search.searched {
            Searched::Subject => ("resource", &request.resource),
            Searched::Resource => ("subject", &request.principal),
        };
        let fixed = uid(snapshot, fixed, fixed_json)?;
        if !loaded.actions.contains_key(&action) {
            return Ok(found);
        }
        let request = conform(snapshot, &action, request);
        let extra = request_entities(&loaded, &request.entities)?;
        let query = Query {
            loaded: &loaded,
            search,
            kind: &kind,
            action: &action,
            fixed: &fixed,
            request: &request,
            extra: &extra,
        };
        let store = &self.store;
        for attempt in 0.. {
            let reader = store.reader(loaded.schema_ref(), attempt).await?;
            let page = query.page(&reader).await;
            if let Some((page, revision)) = store.settle(&reader, page).await? {
                (found.ids, found.more, found.errors) = page;
                found.store_revision = revision;
                return Ok(found);
            }
        }
        unreachable!("a snapshot reader always settles")
    }

    /// The actions the request's subject may take on its resource, decided
    /// one by one on one store state.
    pub async fn search_actions(
        &self,
        request: &AuthzRequest,
    ) -> Result<FoundActions, SearchError> {
        let loaded = self.current();
        let snapshot = &loaded.snapshot;
        let principal = uid(snapshot, "subject", &request.principal)?;
        let resource = uid(snapshot, "resource", &request.resource)?;
        let mut found = FoundActions {
            policy_revision: loaded.revision,
            store_revision: self.store.revision(),
            ..FoundActions::default()
        };
        let mut actions: Vec<&EntityUid> = snapshot
            .schema()
            .actions_for_principal_and_resource(principal.type_name(), resource.type_name())
            .collect();
        actions.sort_by_key(|a| a.id().unescaped().to_owned());
        actions.dedup();
        // One slice serves every action: it holds all their entities.
        let mut action_entities: Vec<_> = actions
            .iter()
            .filter_map(|a| loaded.actions.get(*a))
            .flatten()
            .cloned()
            .collect();
        action_entities.sort_by_key(|e| e.uid().to_string());
        action_entities.dedup_by_key(|e| e.uid().to_string());
        // The request as each action's context type reads it.
        let conformed: Vec<AuthzRequest> = actions
            .iter()
            .map(|action| conform(snapshot, action, request))
            .collect();
        let extras = conformed
            .iter()
            .map(|r| request_entities(&loaded, &r.entities))
            .collect::<Result<Vec<_>, _>>()?;
        let store = &self.store;
        for attempt in 0.. {
            let reader = store.reader(loaded.schema_ref(), attempt).await?;
            let mut allowed = Vec::new();
            let read = async {
                for ((action, request), extra) in actions.iter().zip(&conformed).zip(&extras) {
                    let wanted = loaded.wanted(
                        [&principal, &resource],
                        &action_entities,
                        extra,
                        request.described_by,
                    );
                    let entities = reader.slice(wanted).await?;
                    if [&principal, &resource]
                        .iter()
                        .any(|u| entities.get(u).is_none())
                    {
                        // A side the store does not know: nothing is found.
                        allowed.clear();
                        break;
                    }
                    let Ok(cedar) = snapshot.request(
                        principal.clone(),
                        (*action).clone(),
                        resource.clone(),
                        &request.context,
                    ) else {
                        continue;
                    };
                    if snapshot.decide(&cedar, &entities).allow {
                        allowed.push(action.id().unescaped().to_owned());
                    }
                }
                Ok(())
            }
            .await;
            if let Some(((), revision)) = store.settle(&reader, read).await? {
                found.actions = allowed;
                found.store_revision = revision;
                return Ok(found);
            }
        }
        unreachable!("a snapshot reader always settles")
    }
}

/// The searched type, if the schema declares it.
fn entity_type(loaded: &Loaded, kind: &str) -> Result<Option<EntityTypeName>, RequestError> {
    let ty = EntityTypeName::from_str(kind).map_err(|e| RequestError::Uid {
        field: "type",
        value: kind.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(loaded
        .snapshot
        .schema()
        .entity_types()
        .any(|t| *t == ty)
        .then_some(ty))
}

/// A search under way, its parts parsed.
struct Query<'a> {
    loaded: &'a Loaded,
    search: &'a Search,
    kind: &'a EntityTypeName,
    action: &'a EntityUid,
    fixed: &'a EntityUid,
    request: &'a AuthzRequest,
    extra: &'a [&'a serde_json::Value],
}

/// A page: ids, whether more follow, errors that denied everything.
type Page = (Vec<String>, bool, Vec<String>);

impl Query<'_> {
    fn sides(&self, candidate: Option<&EntityUid>) -> (Side, Side) {
        let searched = match candidate {
            Some(uid) => Side::Known(uid.clone()),
            None => Side::Any(self.kind.clone()),
        };
        let fixed = Side::Known(self.fixed.clone());
        match self.search.searched {
            Searched::Subject => (searched, fixed),
            Searched::Resource => (fixed, searched),
        }
    }

    /// One page of results as of `reader`'s store state.
    async fn page(&self, reader: &Reader<'_>) -> Result<Page, SliceError> {
        let loaded = self.loaded;
        let snapshot = &loaded.snapshot;
        let known = match reader
            .slice(loaded.wanted(
                [self.fixed, self.fixed],
                &[],
                self.extra,
                self.request.described_by,
            ))
            .await
        {
            Ok(known) => known,
            // The request contradicts the store: denied, as a decision is.
            Err(SliceError::Supplied(e)) => return Ok((Vec::new(), false, vec![e.to_string()])),
            Err(e) => return Err(e),
        };
        if known.get(self.fixed).is_none() {
            return Ok((Vec::new(), false, Vec::new()));
        }
        let (principal, resource) = self.sides(None);
        let residuals = match snapshot.partially_evaluate(
            &principal,
            self.action,
            &resource,
            &self.request.context,
            &known,
        ) {
            Ok(r) => r,
            // The action does not apply to these types: every request of
            // this shape is invalid, so none is allowed.
            Err(RequestError::Schema(_)) => return Ok((Vec::new(), false, Vec::new())),
            Err(e) => return Ok((Vec::new(), false, vec![e.to_string()])),
        };
        if residuals.decided == Some(false) {
            return Ok((Vec::new(), false, Vec::new()));
        }
        let limit = self.search.limit;
        let mut ids = Vec::with_capacity(limit.min(CHUNK));
        let mut after = self.search.after.clone();
        loop {
            let chunk = reader.ids(self.kind, &after, CHUNK).await?;
            let end = chunk.len() < CHUNK;
            for id in chunk {
                if self.allows(reader, &residuals, &id).await? {
                    if ids.len() == limit {
                        return Ok((ids, true, Vec::new()));
                    }
                    ids.push(id.clone());
                }
                after = id;
            }
            if end {
                return Ok((ids, false, Vec::new()));
            }
        }
    }

    /// The decision on one candidate, on the residual policies.
    async fn allows(
        &self,
        reader: &Reader<'_>,
        residuals: &Residuals,
        id: &str,
    ) -> Result<bool, SliceError> {
        if residuals.decided == Some(true) {
            return Ok(true);
        }
        let loaded = self.loaded;
        let candidate = EntityUid::from_type_name_and_id(self.kind.clone(), EntityId::new(id));
        let (Side::Known(principal), Side::Known(resource)) = self.sides(Some(&candidate)) else {
            return Ok(false);
        };
        let entities: Entities = reader
            .slice(loaded.wanted(
                [&principal, &resource],
                loaded.actions.get(self.action).map_or(&[], Vec::as_slice),
                self.extra,
                self.request.described_by,
            ))
            .await?;
        let Ok(request) = Request::new(
            principal,
            self.action.clone(),
            resource,
            residuals.context.clone(),
            Some(loaded.snapshot.schema()),
        ) else {
            return Ok(false);
        };
        Ok(loaded
            .snapshot
            .decide_on(&residuals.policies, &request, &entities)
            .allow)
    }
}
