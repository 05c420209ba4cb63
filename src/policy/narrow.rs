//! Policy narrowing: for each (action, principal type, resource type) the
//! schema allows, the policies whose scope can match such a request.
//!
//! Sound: Cedar evaluates a policy's scope before its conditions, so a
//! policy whose scope cannot match is never satisfied and never errors;
//! leaving it out changes neither the decision, the reasons nor the errors.
//! It saves evaluating most of the policy set on every request.

use std::collections::{HashMap, HashSet};

use cedar_policy::{
    ActionConstraint, EntityTypeName, EntityUid, PolicySet, PrincipalConstraint,
    ResourceConstraint, Schema,
};

/// The narrowed sets of one action, per (principal type, resource type).
/// An action applies to a handful of shapes, so a scan by reference beats
/// hashing a key built for every request.
pub(super) type Shapes = Vec<(EntityTypeName, EntityTypeName, PolicySet)>;

/// Builds the narrowed policy sets for every request shape of the schema.
pub(super) fn narrow(policies: &PolicySet, schema: &Schema) -> HashMap<EntityUid, Shapes> {
    let Ok(actions) = schema.action_entities() else {
        return HashMap::new();
    };
    let mut out: HashMap<EntityUid, Shapes> = HashMap::new();
    for action in schema.actions() {
        // The action and every group it belongs to, for `action in [...]`.
        let mut lineage: HashSet<EntityUid> = actions
            .ancestors(action)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        lineage.insert(action.clone());
        let (Some(principals), Some(resources)) = (
            schema.principals_for_action(action),
            schema.resources_for_action(action),
        ) else {
            continue;
        };
        let resources: Vec<&EntityTypeName> = resources.collect();
        for principal in principals {
            for resource in &resources {
                let kept = policies.policies().filter(|p| {
                    action_matches(&p.action_constraint(), action, &lineage)
                        && principal_matches(&p.principal_constraint(), principal)
                        && resource_matches(&p.resource_constraint(), resource)
                });
                // `from_policies` only fails on duplicate ids, which a valid set has not.
                if let Ok(set) = PolicySet::from_policies(kept.cloned()) {
                    out.entry(action.clone()).or_default().push((
                        principal.clone(),
                        (*resource).clone(),
                        set,
                    ));
                }
            }
        }
    }
    out
}

/// `==` matches the action itself; `in [...]` the action or any of its groups.
fn action_matches(
    constraint: &ActionConstraint,
    action: &EntityUid,
    lineage: &HashSet<EntityUid>,
) -> bool {
    match constraint {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(a) => a == action,
        ActionConstraint::In(groups) => groups.iter().any(|g| lineage.contains(g)),
    }
}

fn principal_matches(constraint: &PrincipalConstraint, ty: &EntityTypeName) -> bool {
    match constraint {
        PrincipalConstraint::Any | PrincipalConstraint::In(_) => true,
        PrincipalConstraint::Eq(uid) => uid.type_name() == ty,
        PrincipalConstraint::Is(t) | PrincipalConstraint::IsIn(t, _) => t == ty,
    }
}

fn resource_matches(constraint: &ResourceConstraint, ty: &EntityTypeName) -> bool {
    match constraint {
        ResourceConstraint::Any | ResourceConstraint::In(_) => true,
        ResourceConstraint::Eq(uid) => uid.type_name() == ty,
        ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => t == ty,
    }
}
