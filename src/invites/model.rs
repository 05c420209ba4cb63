//! The invitation service's domain types: levels, permissions, roles,
//! restrictions, statuses, and how an administrator's input is parsed.
//! Parsing errors name the field and list the allowed values (E20).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::InviteError;

/// A module permission level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    /// No access.
    None,
    /// View only.
    Read,
    /// View, create, edit, act (implies Read).
    Manage,
}

impl Level {
    /// The number the Cedar schema uses (0, 1, 2).
    pub fn cedar(self) -> i64 {
        self as i64
    }

    fn parse(field: &str, value: &Value) -> Result<Self, InviteError> {
        match value
            .as_str()
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("none") => Ok(Level::None),
            Some("read") => Ok(Level::Read),
            Some("manage") => Ok(Level::Manage),
            _ => Err(InviteError::invalid(
                field,
                format!(
                    "`{}` is not a level; allowed: None, Read, Manage",
                    display(value)
                ),
            )),
        }
    }
}

fn display(value: &Value) -> String {
    value
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string())
}

/// The modules that take a None/Read/Manage level, in display order.
pub const MODULES: [&str; 7] = [
    "organization",
    "transactions",
    "accounts",
    "generators",
    "billing",
    "programs",
    "api",
];

/// A member's permissions in one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Level per module (every module of [`MODULES`]).
    pub levels: BTreeMap<String, Level>,
    /// Upload Generations: Yes/No.
    pub upload_generations: bool,
}

impl Permissions {
    /// Every module at `level`.
    pub fn all(level: Level, upload_generations: bool) -> Self {
        Self {
            levels: MODULES.iter().map(|m| ((*m).to_owned(), level)).collect(),
            upload_generations,
        }
    }

    /// The level of `module` (None if unknown).
    pub fn level(&self, module: &str) -> Level {
        self.levels.get(module).copied().unwrap_or(Level::None)
    }

    /// Parses `{"billing": "Manage", ..., "uploadGenerations": "Yes"}`.
    /// Module names and values are case-insensitive. Modules not given take
    /// `base` (the role preset); without a base, every module is required.
    pub fn parse(value: &Value, base: Option<&Permissions>) -> Result<Self, InviteError> {
        let Some(map) = value.as_object() else {
            return Err(InviteError::invalid(
                "permissions",
                "expected an object of module: level",
            ));
        };
        let mut levels: BTreeMap<String, Level> =
            base.map(|b| b.levels.clone()).unwrap_or_default();
        let mut upload = base.map(|b| b.upload_generations);
        for (key, v) in map {
            let module = key.to_ascii_lowercase();
            let field = format!("permissions.{key}");
            if module == "uploadgenerations" {
                upload = Some(parse_yes_no(&field, v)?);
            } else if MODULES.contains(&module.as_str()) {
                levels.insert(module, Level::parse(&field, v)?);
            } else {
                return Err(InviteError::invalid(
                    &field,
                    format!(
                        "unknown module `{key}`; modules: {}, uploadGenerations",
                        MODULES.join(", ")
                    ),
                ));
            }
        }
        if let Some(missing) = MODULES.iter().find(|m| !levels.contains_key(**m)) {
            return Err(InviteError::invalid(
                &format!("permissions.{missing}"),
                "missing; give every module a level (None, Read, Manage) or choose a role",
            ));
        }
        let Some(upload_generations) = upload else {
            return Err(InviteError::invalid(
                "permissions.uploadGenerations",
                "missing; allowed: Yes, No (or choose a role)",
            ));
        };
        Ok(Self {
            levels,
            upload_generations,
        })
    }

    /// The JSON stored in the `membership.permissions` column and returned by the API.
    pub fn to_json(&self) -> Value {
        let mut map: serde_json::Map<String, Value> = self
            .levels
            .iter()
            .map(|(m, l)| (m.clone(), json!(l)))
            .collect();
        map.insert(
            "uploadGenerations".to_owned(),
            json!(if self.upload_generations { "Yes" } else { "No" }),
        );
        Value::Object(map)
    }

    /// The Cedar `ModulePerms` record.
    pub fn to_cedar(&self) -> Value {
        let mut map: serde_json::Map<String, Value> = MODULES
            .iter()
            .map(|m| ((*m).to_owned(), json!(self.level(m).cedar())))
            .collect();
        map.insert(
            "uploadGenerations".to_owned(),
            json!(self.upload_generations),
        );
        Value::Object(map)
    }
}

fn parse_yes_no(field: &str, value: &Value) -> Result<bool, InviteError> {
    let yes = match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "true" => Some(true),
            "no" | "false" => Some(false),
            _ => None,
        },
        _ => None,
    };
    yes.ok_or_else(|| {
        InviteError::invalid(
            field,
            format!("`{}` is not allowed; allowed: Yes, No", display(value)),
        )
    })
}

/// Role presets (schema/README.md, "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Everything, including user administration.
    Owner,
    /// Everything, including account settings and user administration.
    AccountAdmin,
    /// User administration; Read on every other module.
    UserAdmin,
    /// Manage on every module but the organization (no user administration).
    Admin,
    /// Nothing until levels are given.
    GeneralUser,
}

impl Role {
    /// Parses a role name (case-insensitive; spaces and underscores ignored).
    pub fn parse(value: &str) -> Result<Self, InviteError> {
        let key: String = value
            .chars()
            .filter(|c| !matches!(c, ' ' | '_' | '-'))
            .collect::<String>()
            .to_ascii_lowercase();
        Ok(match key.as_str() {
            "owner" => Role::Owner,
            "accountadmin" => Role::AccountAdmin,
            "useradmin" => Role::UserAdmin,
            "admin" => Role::Admin,
            "generaluser" | "general" => Role::GeneralUser,
            _ => {
                return Err(InviteError::invalid(
                    "role",
                    format!(
                        "unknown role `{value}`; roles: Owner, AccountAdmin, UserAdmin, Admin, GeneralUser"
                    ),
                ));
            }
        })
    }

    /// The preset's permissions.
    pub fn preset(self) -> Permissions {
        match self {
            Role::Owner | Role::AccountAdmin => Permissions::all(Level::Manage, true),
            Role::UserAdmin => {
                let mut p = Permissions::all(Level::Read, false);
                p.levels.insert("organization".to_owned(), Level::Manage);
                p
            }
            Role::Admin => {
                let mut p = Permissions::all(Level::Manage, true);
                p.levels.insert("organization".to_owned(), Level::Read);
                p
            }
            Role::GeneralUser => Permissions::all(Level::None, false),
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "Owner",
            Role::AccountAdmin => "AccountAdmin",
            Role::UserAdmin => "UserAdmin",
            Role::Admin => "Admin",
            Role::GeneralUser => "GeneralUser",
        }
    }
}

/// Account types that can be restricted.
pub const ACCOUNT_TYPES: [&str; 3] = ["active", "retirement", "reserve"];

/// Per account type: `Some(ids)` restricts to those accounts (empty = none);
/// `None` leaves the type unrestricted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restrictions(pub BTreeMap<String, Vec<String>>);

impl Restrictions {
    /// Parses `{"active": ["a1"], "retirement": [], "reserve": null}`.
    /// Duplicate ids are refused (E19).
    pub fn parse(value: &Value) -> Result<Self, InviteError> {
        let Some(map) = value.as_object() else {
            return Err(InviteError::invalid(
                "restrictions",
                "expected an object of account type: [account ids]",
            ));
        };
        let mut out = BTreeMap::new();
        for (key, v) in map {
            let ty = key.to_ascii_lowercase();
            let field = format!("restrictions.{key}");
            if !ACCOUNT_TYPES.contains(&ty.as_str()) {
                return Err(InviteError::invalid(
                    &field,
                    "unknown account type; types: active, retirement, reserve",
                ));
            }
            if v.is_null() {
                continue;
            }
            let Some(items) = v.as_array() else {
                return Err(InviteError::invalid(
                    &field,
                    "expected a list of account ids (empty = no account), or null",
                ));
            };
            let mut ids: Vec<String> = Vec::with_capacity(items.len());
            for item in items {
                let Some(id) = item.as_str().map(str::trim).filter(|s| !s.is_empty()) else {
                    return Err(InviteError::invalid(
                        &field,
                        "account ids are non-empty strings",
                    ));
                };
                if ids.iter().any(|x| x == id) {
                    return Err(InviteError::invalid(
                        &field,
                        format!("account `{id}` is listed twice"),
                    ));
                }
                ids.push(id.to_owned());
            }
            out.insert(ty, ids);
        }
        Ok(Self(out))
    }

    /// The Cedar `AccountRestrictions` record.
    pub fn to_cedar(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(ty, ids)| {
                    let refs: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({"__entity": {"type": "Account", "id": id}}))
                        .collect();
                    (ty.clone(), Value::Array(refs))
                })
                .collect(),
        )
    }
}

/// A membership's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Invited, not yet accepted.
    Pending,
    /// Allowed what the policies allow.
    Active,
    /// Deactivated: denied everything in this organization.
    Inactive,
}

impl Status {
    /// The stored (and Cedar) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Active => "ACTIVE",
            Status::Inactive => "INACTIVE",
        }
    }

    /// Parses a stored or requested status.
    pub fn parse(value: &str) -> Result<Self, InviteError> {
        match value.trim().to_ascii_uppercase().as_str() {
            "PENDING" => Ok(Status::Pending),
            "ACTIVE" => Ok(Status::Active),
            "INACTIVE" => Ok(Status::Inactive),
            _ => Err(InviteError::invalid(
                "status",
                format!("`{value}` is not a status; allowed: ACTIVE, INACTIVE"),
            )),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An invitation's stored state (the `invitation.state` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationState {
    /// Live until `expires_at`.
    Pending,
    /// Used once.
    Accepted,
    /// The invitee declined.
    Declined,
    /// Revoked, or replaced by a resend.
    Revoked,
}

impl InvitationState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationState::Pending => "PENDING",
            InvitationState::Accepted => "ACCEPTED",
            InvitationState::Declined => "DECLINED",
            InvitationState::Revoked => "REVOKED",
        }
    }

    /// Parses a stored state; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "PENDING" => Some(InvitationState::Pending),
            "ACCEPTED" => Some(InvitationState::Accepted),
            "DECLINED" => Some(InvitationState::Declined),
            "REVOKED" => Some(InvitationState::Revoked),
            _ => None,
        }
    }
}

impl fmt::Display for InvitationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An invitation's state as shown, derived from its row and the time
/// (kanidm style): a pending invitation past its expiry is `Expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum InviteState {
    /// The link works until `expires_at`.
    Pending,
    /// Used once; dead.
    Accepted,
    /// The invitee declined; dead.
    Declined,
    /// Revoked (or replaced by a resend); dead.
    Revoked,
    /// Not used in time; dead until resent.
    Expired,
}

impl InviteState {
    /// The state of a row with stored `state` and `expires_at`, at `now`.
    pub fn derive(state: InvitationState, expires_at: i64, now: i64) -> Self {
        match state {
            InvitationState::Pending if expires_at <= now => InviteState::Expired,
            InvitationState::Pending => InviteState::Pending,
            InvitationState::Accepted => InviteState::Accepted,
            InvitationState::Declined => InviteState::Declined,
            InvitationState::Revoked => InviteState::Revoked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_text<T>(parsed: Result<T, InviteError>) -> String {
        parsed.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn levels_are_case_insensitive_and_unknown_values_name_the_field() {
        let p = Permissions::parse(
            &json!({"Billing": "MANAGE"}),
            Some(&Role::GeneralUser.preset()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.level("billing"), Level::Manage);
        let e = error_text(Permissions::parse(
            &json!({"billing": "Write"}),
            Some(&Role::GeneralUser.preset()),
        ));
        assert!(
            e.contains("permissions.billing") && e.contains("None, Read, Manage"),
            "{e}"
        );
    }

    #[test]
    fn without_a_role_every_module_is_required() {
        let e = error_text(Permissions::parse(&json!({"billing": "Read"}), None));
        assert!(e.contains("permissions.organization"), "{e}");
    }

    #[test]
    fn an_unknown_module_is_refused() {
        let e = error_text(Permissions::parse(
            &json!({"payroll": "Read"}),
            Some(&Role::Owner.preset()),
        ));
        assert!(e.contains("unknown module `payroll`"), "{e}");
    }

    #[test]
    fn explicit_levels_override_the_role_preset() {
        let p = Permissions::parse(&json!({"billing": "None"}), Some(&Role::Owner.preset()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.level("billing"), Level::None);
        assert_eq!(p.level("accounts"), Level::Manage);
    }

    #[test]
    fn restricted_with_nothing_selected_is_kept_apart_from_unrestricted() {
        let r = Restrictions::parse(&json!({"active": [], "reserve": null}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.to_cedar(), json!({"active": []}));
    }

    #[test]
    fn a_duplicate_account_is_refused() {
        assert!(Restrictions::parse(&json!({"active": ["a1", "a1"]})).is_err());
    }

    #[test]
    fn invitation_state_is_derived_from_time() {
        assert_eq!(
            InviteState::derive(InvitationState::Pending, 100, 99),
            InviteState::Pending
        );
        assert_eq!(
            InviteState::derive(InvitationState::Pending, 100, 100),
            InviteState::Expired
        );
        assert_eq!(
            InviteState::derive(InvitationState::Accepted, 100, 200),
            InviteState::Accepted
        );
    }

    #[test]
    fn stored_invitation_states_round_trip() {
        for state in [
            InvitationState::Pending,
            InvitationState::Accepted,
            InvitationState::Declined,
            InvitationState::Revoked,
        ] {
            assert_eq!(InvitationState::parse(state.as_str()), Some(state));
        }
        assert_eq!(InvitationState::parse("EXPIRED"), None);
    }
}
