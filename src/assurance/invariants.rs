//! The invariants file (`policies/invariants.yaml`): what the policies must
//! never allow, or must always allow, stated as Cedar conditions over
//! `principal`, `action`, `resource` and `context`, each for a request scope.
//!
//! ```yaml
//! invariants:
//!   - id: agent-never-manages-organization
//!     description: a third-party agent never manages the organization
//!     principal: User                 # entity type(s); absent: every type
//!     actions: [organization.manage]  # actions or action groups; absent: all
//!     resource: [Organization]        # entity type(s); absent: every type
//!     never: principal.hasTag(resource.tenant) && principal.getTag(resource.tenant).agent
//! ```
//!
//! `never: C` claims that no request satisfying `C` is allowed; `always: C`
//! claims that every request satisfying `C` is allowed. Each becomes the
//! policy `permit (principal, action, resource) when { C };` (the
//! *assumption*), checked against the policy set in every request
//! environment of its scope.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{EntityUid, Policy, PolicyId, RequestEnv, Schema};
use serde::Deserialize;

/// The invariants file's name inside the policy directory.
pub const FILE_NAME: &str = "invariants.yaml";

/// An invariants file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InvariantsError {
    /// The file could not be read.
    #[error("cannot read `{}`", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the expected YAML.
    #[error("`{}` is not a valid invariants file", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's complaint, with its line and column.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// One invariant is malformed.
    #[error("`{}`: invariant `{id}`: {message}", path.display())]
    Invariant {
        /// The file.
        path: PathBuf,
        /// The invariant's id.
        id: String,
        /// What is wrong with it.
        message: String,
    },
    /// The schema's action entities could not be built.
    #[error("the schema's action hierarchy cannot be built")]
    Actions(#[source] Box<cedar_policy::entities_errors::EntitiesError>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    invariants: Vec<InvariantSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvariantSpec {
    id: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    principal: Option<OneOrMany>,
    #[serde(default)]
    actions: Option<OneOrMany>,
    #[serde(default)]
    resource: Option<OneOrMany>,
    #[serde(default)]
    never: Option<String>,
    #[serde(default)]
    always: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// What an invariant claims about the requests its condition describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// None of them is allowed.
    Never,
    /// All of them are allowed.
    Always,
}

impl Claim {
    /// `never` or `always`.
    pub fn as_str(self) -> &'static str {
        match self {
            Claim::Never => "never",
            Claim::Always => "always",
        }
    }

    /// The decision a counterexample's test case must expect.
    pub fn expected_decision(self) -> &'static str {
        match self {
            Claim::Never => "deny",
            Claim::Always => "allow",
        }
    }
}

/// One parsed, resolved invariant.
#[derive(Debug, Clone)]
pub struct Invariant {
    /// Its id (unique in the file).
    pub id: String,
    /// What it means, in words.
    pub description: Option<String>,
    /// Never or always allowed.
    pub claim: Claim,
    /// The Cedar condition, as written.
    pub condition: String,
    /// `permit (principal, action, resource) when { condition };`
    pub assumption: Policy,
    /// The request environments of its scope, in the stable order of
    /// [`request_envs`].
    pub envs: Vec<RequestEnv>,
}

/// Every request environment of the schema (principal type, action,
/// resource type), sorted by action, then principal, then resource, so that
/// every run checks and reports them in the same order.
pub fn request_envs(schema: &Schema) -> Vec<RequestEnv> {
    let mut envs: Vec<RequestEnv> = schema.request_envs().collect();
    envs.sort_by_cached_key(env_key);
    envs.dedup_by_key(|e| env_key(e));
    envs
}

fn env_key(env: &RequestEnv) -> (String, String, String) {
    (
        env.action().to_string(),
        env.principal().to_string(),
        env.resource().to_string(),
    )
}

/// Reads and resolves `path` against `schema`. The caller decides what a
/// missing file means (see [`super::check_invariants`]).
pub fn load(path: &Path, schema: &Schema) -> Result<Vec<Invariant>, InvariantsError> {
    let text = std::fs::read_to_string(path).map_err(|source| InvariantsError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path, schema)
}

/// Parses and resolves an invariants file's text (`path` names it in errors).
pub fn parse(text: &str, path: &Path, schema: &Schema) -> Result<Vec<Invariant>, InvariantsError> {
    let spec: FileSpec = serde_yaml_ng::from_str(text).map_err(|source| InvariantsError::Yaml {
        path: path.to_owned(),
        source,
    })?;
    let actions = schema
        .action_entities()
        .map_err(|e| InvariantsError::Actions(Box::new(e)))?;
    let all_envs = request_envs(schema);
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(spec.invariants.len());
    for item in spec.invariants {
        let fail = |message: String| InvariantsError::Invariant {
            path: path.to_owned(),
            id: item.id.clone(),
            message,
        };
        if !seen.insert(item.id.clone()) {
            return Err(fail("the id is used twice".to_owned()));
        }
        let (claim, condition) = match (&item.never, &item.always) {
            (Some(c), None) => (Claim::Never, c.trim().to_owned()),
            (None, Some(c)) => (Claim::Always, c.trim().to_owned()),
            _ => return Err(fail("give exactly one of `never` and `always`".to_owned())),
        };
        let principals = resolve_types(item.principal, schema).map_err(&fail)?;
        let resources = resolve_types(item.resource, schema).map_err(&fail)?;
        let scope_actions = resolve_actions(item.actions, schema).map_err(&fail)?;
        let envs: Vec<RequestEnv> = all_envs
            .iter()
            .filter(|env| {
                principals
                    .as_ref()
                    .is_none_or(|p| p.contains(&env.principal().to_string()))
                    && resources
                        .as_ref()
                        .is_none_or(|r| r.contains(&env.resource().to_string()))
                    && scope_actions.as_ref().is_none_or(|listed| {
                        // `is_ancestor_of` is strict: an action is not its own ancestor.
                        listed
                            .iter()
                            .any(|a| a == env.action() || actions.is_ancestor_of(a, env.action()))
                    })
            })
            .cloned()
            .collect();
        if envs.is_empty() {
            return Err(fail(
                "its scope matches no request the schema allows (check the principal, \
                 actions and resource)"
                    .to_owned(),
            ));
        }
        let text = format!("permit (principal, action, resource) when {{ {condition} }};");
        let assumption = Policy::parse(Some(PolicyId::new(&item.id)), &text)
            .map_err(|e| fail(format!("the condition is not Cedar: {}", with_causes(&e))))?;
        out.push(Invariant {
            id: item.id,
            description: item.description,
            claim,
            condition,
            assumption,
            envs,
        });
    }
    Ok(out)
}

/// Entity type names, each checked against the schema; `None`: every type.
fn resolve_types(
    spec: Option<OneOrMany>,
    schema: &Schema,
) -> Result<Option<BTreeSet<String>>, String> {
    let Some(spec) = spec else { return Ok(None) };
    let known: BTreeSet<String> = schema.entity_types().map(ToString::to_string).collect();
    let mut out = BTreeSet::new();
    for name in spec.into_vec() {
        if !known.contains(&name) {
            return Err(format!("the schema has no entity type `{name}`"));
        }
        out.insert(name);
    }
    Ok(Some(out))
}

/// Action uids (`organization.manage` or `Action::"organization.manage"`),
/// each checked against the schema; `None`: every action.
fn resolve_actions(
    spec: Option<OneOrMany>,
    schema: &Schema,
) -> Result<Option<Vec<EntityUid>>, String> {
    let Some(spec) = spec else { return Ok(None) };
    let known: BTreeMap<String, &EntityUid> = schema
        .actions()
        .chain(schema.action_groups())
        .map(|uid| (uid.to_string(), uid))
        .collect();
    spec.into_vec()
        .into_iter()
        .map(|name| {
            let full = if name.contains("::\"") {
                name.clone()
            } else {
                format!("Action::{}", serde_json::Value::String(name.clone()))
            };
            EntityUid::from_str(&full)
                .ok()
                .and_then(|uid| known.get(&uid.to_string()).map(|u| (*u).clone()))
                .ok_or_else(|| format!("the schema has no action `{name}`"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// An error with its chain of causes, on one line (the CLI prints them so).
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may panic")]
mod tests {
    use super::*;

    fn schema() -> Schema {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/cedargate.cedarschema");
        let text = std::fs::read_to_string(path).unwrap();
        Schema::from_cedarschema_str(&text).unwrap().0
    }

    #[test]
    fn scopes_resolve_groups_and_types() {
        let schema = schema();
        let text = r#"
invariants:
  - id: a
    principal: User
    actions: [users.administer]
    resource: Organization
    never: "true"
  - id: b
    always: principal.systemAdmin
    actions: organizations.create
"#;
        let parsed = parse(text, Path::new("x.yaml"), &schema).unwrap();
        // On an Organization: the group itself (asked before anything of the
        // organization is read) and users.invite.
        let a: Vec<String> = parsed[0]
            .envs
            .iter()
            .map(|e| e.action().to_string())
            .collect();
        assert_eq!(
            a,
            vec![r#"Action::"users.administer""#, r#"Action::"users.invite""#]
        );
        assert_eq!(parsed[1].claim, Claim::Always);
        let manage =
            "invariants:\n  - id: m\n    actions: organization.manage\n    never: 'true'\n";
        let parsed_manage = parse(manage, Path::new("x.yaml"), &schema).unwrap();
        let mut names: Vec<String> = parsed_manage[0]
            .envs
            .iter()
            .map(|e| e.action().id().unescaped().to_owned())
            .collect();
        names.sort();
        // The action itself and the action in its group.
        assert_eq!(names, vec!["audit.read", "organization.manage"]);
        assert_eq!(parsed[1].envs.len(), 1);
    }

    #[test]
    fn mistakes_are_named() {
        let schema = schema();
        for (text, needle) in [
            (
                "invariants:\n  - id: a\n    never: 'true'\n    always: 'true'\n",
                "exactly one",
            ),
            (
                "invariants:\n  - id: a\n    principal: Usr\n    never: 'true'\n",
                "entity type `Usr`",
            ),
            (
                "invariants:\n  - id: a\n    actions: [nope]\n    never: 'true'\n",
                "action `nope`",
            ),
            (
                "invariants:\n  - id: a\n    never: 'principal =='\n",
                "not Cedar",
            ),
            (
                "invariants:\n  - id: a\n    never: 'true'\n  - id: a\n    never: 'true'\n",
                "twice",
            ),
            (
                "invariants:\n  - id: a\n    principal: Platform\n    never: 'true'\n",
                "matches no request",
            ),
        ] {
            let e = parse(text, Path::new("x.yaml"), &schema).unwrap_err();
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
        let e = parse("invariant: []\n", Path::new("x.yaml"), &schema).unwrap_err();
        assert!(matches!(e, InvariantsError::Yaml { .. }), "{e}");
    }
}
