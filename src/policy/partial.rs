//! Typed partial evaluation (Cedar's TPE, feature `tpe`) for searches and
//! filter plans: one of principal and resource is known with its entities,
//! the other only by its type.
//!
//! Soundness under fail-closed decisions: TPE's Deny holds for every entity
//! of the unknown type (fail-closed only ever turns allows into denies),
//! so a denied query reads no candidate. TPE's Allow is taken for every
//! entity only when no policy is left undecided or erroring; otherwise each
//! candidate is decided on the residual policies, errors denying as usual.

use cedar_policy::{
    Context, Entities, EntityTypeName, EntityUid, PartialEntities, PartialEntityUid,
    PartialRequest, Policy, PolicySet,
};

use super::{PolicySnapshot, RequestError, with_causes};

/// One side of a partial request.
#[derive(Debug, Clone)]
pub enum Side {
    /// This entity.
    Known(EntityUid),
    /// Any entity of this type.
    Any(EntityTypeName),
}

impl Side {
    fn partial(&self) -> PartialEntityUid {
        match self {
            Self::Known(uid) => PartialEntityUid::from_concrete(uid.clone()),
            Self::Any(ty) => PartialEntityUid::new(ty.clone(), None),
        }
    }
}

/// What partial evaluation left of a query.
#[derive(Debug)]
pub struct Residuals {
    /// `Some(true)`: allowed whatever the unknown entity, with no policy
    /// left undecided or erroring; `Some(false)`: denied whatever it is;
    /// `None`: it depends on the entity.
    pub decided: Option<bool>,
    /// Every policy as partial evaluation left it (decided ones included,
    /// so that an erroring one still denies): what each candidate is
    /// decided on.
    pub policies: PolicySet,
    /// The permits whose condition depends on the unknown entity.
    pub permits: Vec<Policy>,
    /// The forbids whose condition depends on the unknown entity.
    pub forbids: Vec<Policy>,
    /// Whether some permit holds whatever the unknown entity.
    pub permitted: bool,
    /// The context, read against the action's context type.
    pub context: Context,
}

impl PolicySnapshot {
    /// Partially evaluates the policies for `principal`, `action`,
    /// `resource` (one of them [`Side::Any`]) with the known side's
    /// `entities` and `context` (Cedar JSON). Fails when the query does
    /// not fit the schema (an action that does not apply to the types).
    pub fn partially_evaluate(
        &self,
        principal: &Side,
        action: &EntityUid,
        resource: &Side,
        context: &serde_json::Value,
        entities: &Entities,
    ) -> Result<Residuals, RequestError> {
        let context = Context::from_json_value(context.clone(), Some((&self.schema, action)))
            .map_err(|e| RequestError::Context(with_causes(&e)))?;
        let request = PartialRequest::new(
            principal.partial(),
            action.clone(),
            resource.partial(),
            Some(context.clone()),
            &self.schema,
        )
        .map_err(|e| RequestError::Schema(with_causes(&e)))?;
        // Action entities come from the schema.
        let known = Entities::from_entities(
            entities
                .iter()
                .filter(|e| !self.is_action(&e.uid()))
                .cloned(),
            None,
        )
        .map_err(|e| RequestError::Entities(with_causes(&e)))?;
        let known = PartialEntities::from_concrete(known, &self.schema)
            .map_err(|e| RequestError::Entities(with_causes(&e)))?;
        let response = self
            .policies
            .tpe(&request, &known, &self.schema)
            .map_err(|e| RequestError::Partial(with_causes(&e)))?;
        let ids = |it: &mut dyn Iterator<Item = &cedar_policy::PolicyId>| it.count();
        let undecided = ids(&mut response.residual_permits())
            + ids(&mut response.residual_forbids())
            + ids(&mut response.error_permits())
            + ids(&mut response.error_forbids());
        let decided = match response.decision() {
            Some(cedar_policy::Decision::Deny) => Some(false),
            Some(cedar_policy::Decision::Allow) if undecided == 0 => Some(true),
            _ => None,
        };
        let residual = |id: &cedar_policy::PolicyId| response.get_policy(id);
        Ok(Residuals {
            decided,
            policies: response.policy_set(),
            permits: response.residual_permits().filter_map(residual).collect(),
            forbids: response.residual_forbids().filter_map(residual).collect(),
            permitted: response.true_permits().next().is_some(),
            context,
        })
    }

    fn is_action(&self, uid: &EntityUid) -> bool {
        uid.type_name().basename() == "Action"
    }
}
