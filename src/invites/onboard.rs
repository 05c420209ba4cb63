//! Bootstrap: system administrators and organizations with their first
//! owner.

use serde_json::json;

use super::invite::InviteInput;
use super::invite::InviteOutcome;
use super::rules::{check_name, check_names, check_org_id};
use super::service::{Actor, InviteService};
use super::store::{self, OrgRow};
use super::uid::ModelUid;
use super::{Conflict, InviteError, project};
use crate::audit::Event;

impl InviteService {
    /// Creates (or promotes) a system administrator.
    pub async fn create_admin(
        &self,
        actor: &Actor,
        email: &str,
        first_name: &str,
        last_name: &str,
        now: i64,
    ) -> Result<String, InviteError> {
        let email = self.check_email(email)?;
        let (first_name, last_name) = check_names(first_name, last_name)?;
        self.authorize_platform(actor, "admins.create", now).await?;
        let schema = self.schema();
        let mut change = self.begin().await?;
        let user_id = match store::user_by_email(&mut change, &email).await? {
            Some(u) => {
                store::promote_to_admin(&mut change, &u.user_id).await?;
                u.user_id
            }
            None => {
                let id = new_user_id();
                store::insert_user(&mut change, &id, &email, &first_name, &last_name, true, now)
                    .await?;
                id
            }
        };
        project::user(&mut change, schema.schema(), &user_id).await?;
        change
            .audit(
                now,
                Event {
                    after: Some(json!({"email": email, "systemAdmin": true})),
                    ..actor.event(None, &ModelUid::user(&user_id), "admin.created")
                },
            )
            .await?;
        self.commit(change).await?;
        Ok(user_id)
    }

    /// Creates an organization and invites its first owner.
    pub async fn create_org(
        &self,
        actor: &Actor,
        org_id: &str,
        name: &str,
        require_mfa: bool,
        owner: InviteInput,
        now: i64,
    ) -> Result<InviteOutcome, InviteError> {
        let org_id = check_org_id(org_id)?;
        let name = check_name("name", name)?;
        let entity = project::organization_entity(&org_id, &name, require_mfa);
        self.authorize_new_org(actor, &org_id, entity, now).await?;
        let owner = InviteInput {
            role: Some("Owner".to_owned()),
            permissions: None,
            agent: false,
            ..owner
        };
        let prepared = self.prepare(&org_id, &owner).await?;
        let schema = self.schema();
        let mut change = self.begin().await?;
        if store::org_by_id(&mut change, &org_id).await?.is_some() {
            return Err(Conflict::OrganizationExists { org_id }.into());
        }
        let org = OrgRow {
            org_id: org_id.clone(),
            name: name.clone(),
            require_mfa,
        };
        store::insert_org(&mut change, &org, now).await?;
        project::organization(&mut change, schema.schema(), &org_id, &name, require_mfa).await?;
        change
            .audit(
                now,
                Event {
                    after: Some(json!({"name": name, "requireMfa": require_mfa})),
                    ..actor.event(
                        Some(&org_id),
                        &ModelUid::organization(&org_id),
                        "organization.created",
                    )
                },
            )
            .await?;
        let outcome = self
            .write_invite(&mut change, actor, &org, prepared, now)
            .await?;
        self.commit(change).await?;
        Ok(outcome)
    }
}

/// A new user id.
pub(crate) fn new_user_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
