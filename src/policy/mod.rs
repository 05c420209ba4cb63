//! The policy engine: a validated snapshot of policies + schema, and the
//! fail-closed decision function every caller (server, CLI, tests) uses.
//!
//! INVARIANT: a `PolicySnapshot` only exists for a policy set that parsed and
//! passed strict validation against its schema.

mod conform;
mod deref;
mod error;
mod explain;
pub mod fmt;
mod load;
mod narrow;
mod partial;
pub mod plan;
pub mod plan_sql;
mod supplied;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Effect, Entities, EntityTypeName, EntityUid, PolicyId, PolicySet, Request,
    RestrictedExpression, Schema,
};
use serde::Serialize;

pub use error::{LoadError, RequestError, render_report};
pub use explain::{Determining, Explanation, Unsatisfied};
pub(crate) use load::list_files;
pub use load::load;
pub use partial::{Residuals, Side};
pub use plan::{Condition, FilterPlan, PlanError, plan};
pub use plan_sql::{Columns, SqlError, to_sql};
pub use supplied::{Supplied, SupplyError, describe};

/// Where a policy was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyOrigin {
    /// The file, as the policy directory path was given.
    pub file: String,
    /// 1-based line of the policy's first token (its annotations).
    pub line: usize,
    /// `permit` or `forbid`.
    #[serde(serialize_with = "serialize_effect")]
    pub effect: Effect,
}

fn serialize_effect<S: serde::Serializer>(effect: &Effect, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match effect {
        Effect::Permit => "permit",
        Effect::Forbid => "forbid",
    })
}

static NEXT_ANALYSIS_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Where the policies and the schema are.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Directory of `.cedar` policy files (searched recursively).
    #[arg(long, env = "CEDARGATE_POLICIES", default_value = "policies")]
    pub policies: std::path::PathBuf,
    /// Schema file, or a directory of `*.cedarschema` / `*.cedarschema.json` files.
    #[arg(long, env = "CEDARGATE_SCHEMA", default_value = "schema")]
    pub schema: std::path::PathBuf,
}

/// A validated policy set with its schema and the origin of every policy.
#[derive(Debug)]
pub struct PolicySnapshot {
    policies: PolicySet,
    schema: Schema,
    schema_digest: [u8; 32],
    origins: HashMap<PolicyId, PolicyOrigin>,
    files: Vec<String>,
    authorizer: Authorizer,
    /// Per request shape, only the policies whose scope can match it.
    narrowed: HashMap<EntityUid, narrow::Shapes>,
    /// Entity types the policies dereference (`None`: all of them).
    dereferenced: Option<HashSet<EntityTypeName>>,
    /// Entity literals the policies dereference.
    literals: Vec<EntityUid>,
    /// Unique per snapshot, so that what was derived from its analysis
    /// (entities a root reaches) is never used with another's.
    analysis_id: u64,
    /// The schema's entity and action type names, so that request uids
    /// need no run of Cedar's parser.
    type_names: TypeNames,
    /// What a request may say about an entity (`@source` annotations).
    supplied: Supplied,
}

/// The answer to one request. A Deny is data, not an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// `true` only when Cedar allowed the request and nothing errored.
    pub allow: bool,
    /// Ids of the policies that determined the decision (satisfied permits
    /// for an Allow, satisfied forbids for a Deny; empty for a default deny).
    pub reasons: Vec<String>,
    /// Every error met on the way. Any error makes the decision Deny.
    pub errors: Vec<String>,
    /// The principal or resource, when the store holds no such entity and
    /// the request did not describe it: it was evaluated as Cedar does, as
    /// an entity without attributes, parents or tags. Information, not an
    /// error (a policy that reads what it lacks errors, and so denies).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_entities: Vec<String>,
}

impl Decision {
    /// A Deny caused by an error before evaluation (fail closed).
    pub fn deny_with_error(error: impl ToString) -> Self {
        Self {
            allow: false,
            reasons: Vec::new(),
            errors: vec![error.to_string()],
            unknown_entities: Vec::new(),
        }
    }

    /// `"allow"` or `"deny"`.
    pub fn as_str(&self) -> &'static str {
        if self.allow { "allow" } else { "deny" }
    }
}

impl PolicySnapshot {
    fn new(
        analysis: Option<deref::Analysis>,
        supplied: Supplied,
        policies: PolicySet,
        schema: Schema,
        schema_digest: [u8; 32],
        origins: HashMap<PolicyId, PolicyOrigin>,
        files: Vec<String>,
    ) -> Self {
        let narrowed = narrow::narrow(&policies, &schema);
        let type_names = type_names(&schema);
        Self {
            policies,
            schema,
            schema_digest,
            origins,
            files,
            authorizer: Authorizer::new(),
            analysis_id: NEXT_ANALYSIS_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            narrowed,
            type_names,
            supplied,
            literals: analysis
                .as_ref()
                .map(|a| {
                    a.literals
                        .iter()
                        .filter_map(|u| EntityUid::from_json(u.clone()).ok())
                        .collect()
                })
                .unwrap_or_default(),
            dereferenced: analysis.map(|a| a.types.iter().filter_map(|t| t.parse().ok()).collect()),
        }
    }

    /// The policies that can apply to `request`: the narrowed set of its
    /// shape, or the whole set for a shape the schema does not list.
    fn applicable(&self, request: &Request) -> &PolicySet {
        let (Some(p), Some(a), Some(r)) =
            (request.principal(), request.action(), request.resource())
        else {
            return &self.policies;
        };
        self.narrowed
            .get(a)
            .and_then(|shapes| {
                shapes
                    .iter()
                    .find(|(pt, rt, _)| pt == p.type_name() && rt == r.type_name())
            })
            .map_or(&self.policies, |(_, _, set)| set)
    }

    /// What a request may say about an entity.
    pub fn supplied(&self) -> &Supplied {
        &self.supplied
    }

    /// Parses a request's entity reference like [`parse_uid`], looking the
    /// type name up among the schema's instead of parsing it when it can.
    pub fn uid(
        &self,
        field: &'static str,
        value: &serde_json::Value,
    ) -> Result<EntityUid, RequestError> {
        let known = match value {
            serde_json::Value::Object(map) if map.len() == 2 => {
                match (map.get("type"), map.get("id")) {
                    (Some(serde_json::Value::String(ty)), Some(serde_json::Value::String(id))) => {
                        self.type_names.get(ty.as_str()).map(|t| (t, id.as_str()))
                    }
                    _ => None,
                }
            }
            // `Type::"id"` with a plain id (no escapes): split at the last `::"`.
            serde_json::Value::String(s) => s.rfind("::\"").and_then(|at| {
                let id = s[at + 3..].strip_suffix('"')?;
                let plain = !id.contains(['"', '\\']);
                self.type_names
                    .get(&s[..at])
                    .filter(|_| plain)
                    .map(|t| (t, id))
            }),
            _ => None,
        };
        match known {
            Some((ty, id)) => Ok(EntityUid::from_type_name_and_id(
                ty.clone(),
                cedar_policy::EntityId::new(id),
            )),
            None => parse_uid(field, value),
        }
    }

    /// `ty` and `id` as a uid, when `ty` is one of the schema's type names.
    pub fn known_uid(&self, ty: &str, id: &str) -> Option<EntityUid> {
        let ty = self.type_names.get(ty)?;
        Some(EntityUid::from_type_name_and_id(
            ty.clone(),
            cedar_policy::EntityId::new(id),
        ))
    }

    /// The schema's entity type names (actions' too) by their text.
    pub fn type_names(&self) -> &TypeNames {
        &self.type_names
    }

    /// Entity literals some policy dereferences (every slice holds them).
    pub fn dereferenced_literals(&self) -> &[EntityUid] {
        &self.literals
    }

    /// Identifies this snapshot's dereference analysis (never reused).
    pub fn analysis_id(&self) -> u64 {
        self.analysis_id
    }

    /// The entity types the policies dereference (`None`: all).
    pub fn dereferenced_types(&self) -> Option<&HashSet<EntityTypeName>> {
        self.dereferenced.as_ref()
    }

    /// The validated policy set.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The schema the policies were validated against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// SHA-256 of the schema source files: equal digests, equal schemas.
    pub fn schema_digest(&self) -> &[u8; 32] {
        &self.schema_digest
    }

    /// The policy files, in load order.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Where the policy `id` was written.
    pub fn origin(&self, id: &str) -> Option<&PolicyOrigin> {
        self.origins.get(&PolicyId::new(id))
    }

    /// The annotation `key` of policy `id` (e.g. `@message("…")`).
    pub fn annotation(&self, id: &str, key: &str) -> Option<&str> {
        self.policies.annotation(&PolicyId::new(id), key)
    }

    /// Every policy id with its origin, sorted by file and line.
    pub fn policy_ids(&self) -> Vec<(String, &PolicyOrigin)> {
        let mut ids: Vec<_> = self
            .origins
            .iter()
            .map(|(id, origin)| (id.to_string(), origin))
            .collect();
        ids.sort_by(|a, b| (&a.1.file, a.1.line, &a.0).cmp(&(&b.1.file, b.1.line, &b.0)));
        ids
    }

    /// Builds a Cedar request validated against the schema: the action must
    /// exist, the principal and resource types must be ones it applies to,
    /// and the context must have the declared shape.
    pub fn request(
        &self,
        principal: EntityUid,
        action: EntityUid,
        resource: EntityUid,
        context: &serde_json::Value,
    ) -> Result<Request, RequestError> {
        // Most contexts are a few booleans and integers: build those
        // directly (Cedar's JSON reader costs microseconds per value) and
        // let `Request::new` check them against the schema. On any refusal
        // the JSON path below runs, so its error is the one reported.
        if let Some(flat) = flat_context(context)
            && let Ok(request) = Request::new(
                principal.clone(),
                action.clone(),
                resource.clone(),
                flat,
                Some(&self.schema),
            )
        {
            return Ok(request);
        }
        let context = Context::from_json_value(context.clone(), Some((&self.schema, &action)))
            .map_err(|e| match e {
                // The context is not at fault when the action is unknown.
                cedar_policy::ContextJsonError::MissingAction(_) => {
                    RequestError::Schema(with_causes(&e))
                }
                _ => RequestError::Context(with_causes(&e)),
            })?;
        Request::new(principal, action, resource, context, Some(&self.schema))
            .map_err(|e| RequestError::Schema(with_causes(&e)))
    }

    /// The context for `action` as AuthZEN reads it: keys the action's
    /// context type does not declare are dropped, declared values converted
    /// (see `conform`).
    pub fn conform_context(
        &self,
        action: &EntityUid,
        context: &serde_json::Value,
    ) -> serde_json::Value {
        conform::context(&self.schema, action, context)
    }

    /// Cedar entity JSON for an entity AuthZEN describes by `properties`:
    /// the attributes its type declares, converted; the others dropped.
    pub fn conform_entity(
        &self,
        uid: &EntityUid,
        properties: &serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Value {
        conform::entity(&self.schema, uid, properties)
    }

    /// Parses Cedar entity JSON and validates it against the schema (the
    /// schema's action entities are added).
    pub fn entities(&self, json: serde_json::Value) -> Result<Entities, RequestError> {
        Entities::from_json_value(json, Some(&self.schema))
            .map_err(|e| RequestError::Entities(with_causes(&e)))
    }

    /// Decides `request` against `entities`. Fail closed: any evaluation
    /// error (an erroring policy, such as one reading an attribute of an
    /// entity the store lacks) yields Deny, even where Cedar alone would
    /// have skipped the erroring policy and allowed. A principal or
    /// resource the entities lack is read as Cedar reads it (no attributes,
    /// parents or tags) and named in `unknown_entities`.
    pub fn decide(&self, request: &Request, entities: &Entities) -> Decision {
        self.decide_on(self.applicable(request), request, entities)
    }

    /// Decides `request` like [`Self::decide`] on `policies`: a subset of
    /// this snapshot's, or what partial evaluation left of them
    /// ([`Residuals::policies`]).
    pub fn decide_on(
        &self,
        policies: &PolicySet,
        request: &Request,
        entities: &Entities,
    ) -> Decision {
        let response = self.authorizer.is_authorized(request, policies, entities);
        let unknown_entities = [request.principal(), request.resource()]
            .into_iter()
            .flatten()
            .filter(|uid| entities.get(uid).is_none())
            .map(ToString::to_string)
            .collect();
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        let cedar_allow = response.decision() == cedar_policy::Decision::Allow;
        let allow = cedar_allow && errors.is_empty();
        let mut reasons: Vec<String> = if cedar_allow && !allow {
            // The permits that matched did not determine this Deny; the errors did.
            Vec::new()
        } else {
            response
                .diagnostics()
                .reason()
                .map(|id| id.to_string())
                .collect()
        };
        reasons.sort();
        Decision {
            allow,
            reasons,
            errors,
            unknown_entities,
        }
    }
}

/// A context object whose values are all booleans or 64-bit integers, as
/// Cedar values; `None` for anything else (strings may denote entities or
/// extension values, which only the schema-driven JSON reader resolves).
fn flat_context(value: &serde_json::Value) -> Option<Context> {
    let serde_json::Value::Object(map) = value else {
        return None;
    };
    let pairs = map
        .iter()
        .map(|(key, v)| {
            let value = match v {
                serde_json::Value::Bool(b) => RestrictedExpression::new_bool(*b),
                serde_json::Value::Number(n) => RestrictedExpression::new_long(n.as_i64()?),
                _ => return None,
            };
            Some((key.clone(), value))
        })
        .collect::<Option<Vec<_>>>()?;
    Context::from_pairs(pairs).ok()
}

/// `error` followed by its causes. Cedar keeps the specifics (which entity,
/// which attribute) in the source chain, not in the top-level message.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Parses an action, which people may write as a bare id (`billing.read`
/// for `Action::"billing.read"`) in policy tests and on the command line.
pub fn parse_action(value: &serde_json::Value) -> Result<EntityUid, RequestError> {
    match value {
        serde_json::Value::String(s) if !s.contains("::") => {
            let quoted = format!("Action::{}", serde_json::Value::String(s.clone()));
            parse_uid("action", &serde_json::Value::String(quoted))
        }
        other => parse_uid("action", other),
    }
}

/// Entity type names by their text, so that readers look a name up instead
/// of running Cedar's parser on it.
pub type TypeNames = HashMap<String, EntityTypeName>;

/// `schema`'s entity type names, actions' included.
pub fn type_names(schema: &Schema) -> TypeNames {
    schema
        .entity_types()
        .cloned()
        .chain(schema.actions().map(|a| a.type_name().clone()))
        .map(|t| (t.to_string(), t))
        .collect()
}

/// Parses an entity reference given as `Type::"id"` or `{"type": .., "id": ..}`
/// (also accepting Cedar's `{"__entity": {..}}` form).
pub fn parse_uid(
    field: &'static str,
    value: &serde_json::Value,
) -> Result<EntityUid, RequestError> {
    let invalid = |reason: String| RequestError::Uid {
        field,
        value: value.to_string(),
        reason,
    };
    match value {
        serde_json::Value::String(s) => EntityUid::from_str(s).map_err(|e| invalid(e.to_string())),
        // The common `{"type", "id"}` form directly: going through Cedar's
        // untagged JSON forms builds an error for each form tried first.
        serde_json::Value::Object(map) if map.len() == 2 => {
            match (map.get("type"), map.get("id")) {
                (Some(serde_json::Value::String(ty)), Some(serde_json::Value::String(id))) => {
                    let ty: EntityTypeName = ty
                        .parse()
                        .map_err(|e: cedar_policy::ParseErrors| invalid(e.to_string()))?;
                    Ok(EntityUid::from_type_name_and_id(
                        ty,
                        cedar_policy::EntityId::new(id),
                    ))
                }
                _ => EntityUid::from_json(value.clone()).map_err(|e| invalid(e.to_string())),
            }
        }
        serde_json::Value::Object(_) => {
            EntityUid::from_json(value.clone()).map_err(|e| invalid(e.to_string()))
        }
        _ => Err(invalid(
            "expected `Type::\"id\"` or an object with `type` and `id`".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_uids_from_the_type_table_equal_the_parsed_ones() {
        let snapshot = load(
            std::path::Path::new("policies"),
            std::path::Path::new("schema"),
        )
        .unwrap_or_else(|e| panic!("{}", e.render()));
        for value in [
            json!({"type": "User", "id": "alice"}),
            json!("User::\"alice\""),
            json!({"type": "Action", "id": "billing.read"}),
            json!("Action::\"billing.read\""),
            json!("User::\"a\\\"b\""),
            json!({"type": "Robot", "id": "r2"}),
            json!({"__entity": {"type": "User", "id": "alice"}}),
        ] {
            let fast = snapshot.uid("principal", &value).map(|u| u.to_string());
            let slow = parse_uid("principal", &value).map(|u| u.to_string());
            assert_eq!(fast.ok(), slow.ok(), "{value}");
        }
        assert!(snapshot.uid("principal", &json!("User::alice")).is_err());
    }

    #[test]
    fn flat_contexts_decide_and_fail_exactly_like_the_json_reader() {
        let snapshot = load(
            std::path::Path::new("policies"),
            std::path::Path::new("schema"),
        )
        .unwrap_or_else(|e| panic!("{}", e.render()));
        let uid = |v: serde_json::Value| parse_uid("uid", &v).unwrap_or_else(|e| panic!("{e}"));
        let reference = |context: serde_json::Value| {
            let action = uid(json!("Action::\"billing.read\""));
            Context::from_json_value(context, Some((snapshot.schema(), &action)))
                .map_err(|e| RequestError::Context(with_causes(&e)))
                .and_then(|c| {
                    Request::new(
                        uid(json!("User::\"alice\"")),
                        action,
                        uid(json!("Organization::\"acme\"")),
                        c,
                        Some(snapshot.schema()),
                    )
                    .map_err(|e| RequestError::Schema(with_causes(&e)))
                })
        };
        for context in [
            json!({}),
            json!({"mfa": true}),
            json!({"mfa": false}),
            json!({"mfa": 1}),
            json!({"mfa": "true"}),
            json!({"unknown": true}),
            json!({"mfa": true, "unknown": 3}),
            json!({"mfa": true, "lastActiveManager": false}),
            json!({"mfa": 18446744073709551615u64}),
            json!({"mfa": 1.5}),
            json!([]),
        ] {
            let numbers_or_bools = context
                .as_object()
                .is_some_and(|m| m.values().all(|v| v.is_boolean() || v.as_i64().is_some()));
            assert_eq!(
                flat_context(&context).is_some(),
                numbers_or_bools,
                "{context}"
            );
            let fast = snapshot.request(
                uid(json!("User::\"alice\"")),
                uid(json!("Action::\"billing.read\"")),
                uid(json!("Organization::\"acme\"")),
                &context,
            );
            let slow = reference(context.clone());
            match (&fast, &slow) {
                (Ok(f), Ok(s)) => assert_eq!(
                    format!("{:?}", f.context()),
                    format!("{:?}", s.context()),
                    "{context}"
                ),
                (Err(f), Err(s)) => assert_eq!(f.to_string(), s.to_string(), "{context}"),
                _ => panic!("{context}: fast {fast:?}, reference {slow:?}"),
            }
        }
    }
}
