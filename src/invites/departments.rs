//! Departments of an organization (E29).

use serde_json::json;

use super::members::existing_org;
use super::rules::{check_name, check_org_id};
use super::service::{Actor, InviteService};
use super::store;
use super::uid::ModelUid;
use super::{InviteError, NotFound, project};
use crate::audit::Event;

impl InviteService {
    /// Creates or renames a department.
    pub async fn save_department(
        &self,
        actor: &Actor,
        org_id: &str,
        department_id: &str,
        name: &str,
        now: i64,
    ) -> Result<(), InviteError> {
        self.authorize_org(actor, "organization.manage", org_id, now)
            .await?;
        let department_id = check_org_id(department_id).map_err(|_| {
            InviteError::invalid(
                "department",
                "ids are 1-64 characters of a-z, 0-9, `-` and `_`",
            )
        })?;
        let name = check_name("name", name)?;
        let mut change = self.begin().await?;
        existing_org(&mut change, org_id).await?;
        store::save_department(&mut change, org_id, &department_id, &name).await?;
        project::department(
            &mut change,
            self.schema().schema(),
            org_id,
            &department_id,
            &name,
        )
        .await?;
        change
            .audit(
                now,
                Event {
                    after: Some(json!({"name": name})),
                    ..actor.event(
                        Some(org_id),
                        &ModelUid::department(org_id, &department_id),
                        "department.saved",
                    )
                },
            )
            .await?;
        self.commit(change).await
    }

    /// Deletes a department; its members keep no department (E29), so they
    /// see no department-only item rather than all of them.
    pub async fn delete_department(
        &self,
        actor: &Actor,
        org_id: &str,
        department_id: &str,
        now: i64,
    ) -> Result<(), InviteError> {
        self.authorize_org(actor, "organization.manage", org_id, now)
            .await?;
        let missing = || NotFound::Department {
            org_id: org_id.to_owned(),
            department_id: department_id.to_owned(),
        };
        // The id as saving it stored it (trimmed, lower case); an id that
        // could not have been saved names no department.
        let department_id = &check_org_id(department_id).map_err(|_| missing())?;
        let mut change = self.begin().await?;
        existing_org(&mut change, org_id).await?;
        let Some(members) = store::delete_department(&mut change, org_id, department_id).await?
        else {
            return Err(missing().into());
        };
        for user_id in &members {
            project::user(&mut change, self.schema().schema(), user_id).await?;
        }
        let gone = ModelUid::department(org_id, department_id);
        change.delete_entity(&gone).await?;
        change
            .audit(
                now,
                Event {
                    outcome: format!("ok: {} members now have no department", members.len()),
                    ..actor.event(Some(org_id), &gone, "department.deleted")
                },
            )
            .await?;
        self.commit(change).await
    }
}

/// `department` when it exists in `org`, else an `Invalid` naming the field.
pub(crate) async fn existing_department(
    conn: &mut sqlx::AnyConnection,
    org_id: &str,
    department: &str,
) -> Result<String, InviteError> {
    if store::department_exists(conn, org_id, department).await? {
        Ok(department.to_owned())
    } else {
        Err(InviteError::invalid(
            "department",
            format!("no department `{department}` in `{org_id}`"),
        ))
    }
}
