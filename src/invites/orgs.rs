//! An organization's settings after creation: its name and whether it
//! requires two-step verification (the owner's "Security Policies" page).
//! Reading asks `organization.read`, changing asks `organization.manage`,
//! both before the organization is looked up, so that an outsider learns
//! nothing about which organizations exist.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::rules::check_name;
use super::service::{Actor, InviteService};
use super::store::OrgRow;
use super::uid::ModelUid;
use super::{InviteError, members::existing_org, project};
use crate::audit::Event;

/// What an organization's settings are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgSettings {
    /// The organization's id.
    pub org_id: String,
    /// Its display name.
    pub name: String,
    /// Every request in the organization must come from a session that
    /// passed two-step verification.
    pub require_mfa: bool,
}

impl From<OrgRow> for OrgSettings {
    fn from(org: OrgRow) -> Self {
        Self {
            org_id: org.org_id,
            name: org.name,
            require_mfa: org.require_mfa,
        }
    }
}

/// A change of settings: absent fields are left as they are.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsChange {
    /// A new display name.
    pub name: Option<String>,
    /// Whether to require two-step verification.
    pub require_mfa: Option<bool>,
}

impl InviteService {
    /// The settings of `org_id`.
    pub async fn org_settings(
        &self,
        actor: &Actor,
        org_id: &str,
        now: i64,
    ) -> Result<OrgSettings, InviteError> {
        self.authorize_org(actor, "organization.read", org_id, now)
            .await?;
        let mut conn = self.pool.acquire().await?;
        Ok(existing_org(&mut conn, org_id).await?.into())
    }

    /// Changes the settings of `org_id`: the row, its Cedar projection and
    /// the audit record in one transaction, so the next decision already
    /// sees, for example, that the organization requires two-step
    /// verification.
    pub async fn update_org_settings(
        &self,
        actor: &Actor,
        org_id: &str,
        change: &SettingsChange,
        now: i64,
    ) -> Result<OrgSettings, InviteError> {
        self.authorize_org(actor, "organization.manage", org_id, now)
            .await?;
        let name = change
            .name
            .as_deref()
            .map(|n| check_name("name", n))
            .transpose()?;
        let schema = self.schema();
        let mut write = self.begin().await?;
        let before = existing_org(&mut write, org_id).await?;
        let after = OrgRow {
            org_id: before.org_id.clone(),
            name: name.unwrap_or_else(|| before.name.clone()),
            require_mfa: change.require_mfa.unwrap_or(before.require_mfa),
        };
        if after == before {
            return Ok(after.into());
        }
        sqlx::query("update organization set name = $1, require_mfa = $2 where org_id = $3")
            .bind(&after.name)
            .bind(i64::from(after.require_mfa))
            .bind(&after.org_id)
            .execute(&mut **write)
            .await?;
        project::organization(
            &mut write,
            schema.schema(),
            org_id,
            &after.name,
            after.require_mfa,
        )
        .await?;
        write
            .audit(
                now,
                Event {
                    before: Some(settings_json(&before)),
                    after: Some(settings_json(&after)),
                    ..actor.event(
                        Some(org_id),
                        &ModelUid::organization(org_id),
                        "organization.settingsChanged",
                    )
                },
            )
            .await?;
        self.commit(write).await?;
        Ok(after.into())
    }
}

fn settings_json(org: &OrgRow) -> serde_json::Value {
    json!({"name": org.name, "requireMfa": org.require_mfa})
}
