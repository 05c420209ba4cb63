//! SQL of the invitation service's own tables (`app_user`, `organization`,
//! `membership`, `invitation`, `department`). Flags are integers (0/1) and
//! times unix seconds, for the `Any` driver. Every function takes a
//! connection so the service can compose them in one transaction. Other
//! tables belong to their modules: entities to `crate::entities`, the
//! outbox to `crate::mail`, the audit trail to `crate::audit`.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::model::{InvitationState, Permissions, Restrictions, Status};

type Conn = AnyConnection;

/// A person.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub user_id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub has_password: bool,
    pub system_admin: bool,
    /// A placeholder ([`insert_placeholder`]); `email` is then the address
    /// it was invited at, not a login.
    pub placeholder: bool,
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRow {
    pub org_id: String,
    pub name: String,
    pub require_mfa: bool,
}

/// One person's membership in one organization.
#[derive(Debug, Clone, PartialEq)]
pub struct MembershipRow {
    pub org_id: String,
    pub user_id: String,
    pub status: Status,
    pub role: String,
    pub permissions: Permissions,
    pub restrictions: Restrictions,
    pub department_id: Option<String>,
    pub agent: bool,
    pub agent_approved: bool,
    pub agent_designation: Option<String>,
    pub invited_by: Option<String>,
}

/// An invitation.
#[derive(Debug, Clone)]
pub struct InvitationRow {
    pub invitation_id: String,
    pub org_id: String,
    pub user_id: String,
    pub email: String,
    pub state: InvitationState,
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
}

fn flag(row: &AnyRow, i: usize) -> bool {
    row.get::<i64, _>(i) != 0
}

fn user(row: AnyRow) -> UserRow {
    UserRow {
        user_id: row.get(0),
        email: row.get(1),
        first_name: row.get(2),
        last_name: row.get(3),
        has_password: row.get::<Option<String>, _>(4).is_some(),
        system_admin: flag(&row, 5),
        placeholder: row.get::<Option<String>, _>(6).is_some(),
    }
}

/// A placeholder's address is the invited one (its login column is none).
const USER_COLUMNS: &str = "user_id, coalesce(invited_email, email), first_name, last_name, \
                            password_hash, system_admin, invited_email";

pub async fn user_by_id(conn: &mut Conn, user_id: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("select {USER_COLUMNS} from app_user where user_id = $1");
    Ok(sqlx::query(&sql)
        .bind(user_id)
        .fetch_optional(conn)
        .await?
        .map(user))
}

pub async fn user_by_email(conn: &mut Conn, email: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("select {USER_COLUMNS} from app_user where email = $1");
    Ok(sqlx::query(&sql)
        .bind(email)
        .fetch_optional(conn)
        .await?
        .map(user))
}

pub async fn insert_user(
    conn: &mut Conn,
    user_id: &str,
    email: &str,
    first_name: &str,
    last_name: &str,
    system_admin: bool,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into app_user (user_id, email, first_name, last_name, system_admin, created_at)
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(user_id)
    .bind(email)
    .bind(first_name)
    .bind(last_name)
    .bind(i64::from(system_admin))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Creates a placeholder: the user a pending member invited at `email` is
/// held under when the address already has a user row, so that the inviter
/// learns neither the account's id nor that it exists. No login (its
/// `email` column is no address), no password; accepting moves the
/// membership to the account ([`move_placeholder_membership`]).
pub async fn insert_placeholder(
    conn: &mut Conn,
    user_id: &str,
    email: &str,
    first_name: &str,
    last_name: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into app_user (user_id, email, invited_email, first_name, last_name, system_admin, created_at)
         values ($1, 'placeholder:' || $1, $2, $3, $4, 0, $5)",
    )
    .bind(user_id)
    .bind(email)
    .bind(first_name)
    .bind(last_name)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Makes a placeholder the account of its invited address (which nobody
/// holds any more: the account it stood in for changed its address).
pub async fn promote_placeholder(conn: &mut Conn, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update app_user set email = invited_email, invited_email = null
         where user_id = $1 and invited_email is not null",
    )
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Makes an existing user a system administrator.
pub async fn promote_to_admin(conn: &mut Conn, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("update app_user set system_admin = 1 where user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets the password hash only if none is set yet.
pub async fn set_password_if_unset(
    conn: &mut Conn,
    user_id: &str,
    hash: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update app_user set password_hash = $1 where user_id = $2 and password_hash is null",
    )
    .bind(hash)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn org_by_id(conn: &mut Conn, org_id: &str) -> Result<Option<OrgRow>, sqlx::Error> {
    let row = sqlx::query("select org_id, name, require_mfa from organization where org_id = $1")
        .bind(org_id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| OrgRow {
        org_id: r.get(0),
        name: r.get(1),
        require_mfa: flag(&r, 2),
    }))
}

pub async fn insert_org(conn: &mut Conn, org: &OrgRow, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into organization (org_id, name, require_mfa, created_at) values ($1, $2, $3, $4)",
    )
    .bind(&org.org_id)
    .bind(&org.name)
    .bind(i64::from(org.require_mfa))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

const MEMBERSHIP_COLUMNS: &str = "org_id, user_id, status, role, permissions, restrictions, department_id, \
                                  agent, agent_approved, agent_designation, invited_by";

fn membership(row: AnyRow) -> Result<MembershipRow, sqlx::Error> {
    let decode = |i: usize| -> Result<Value, sqlx::Error> {
        serde_json::from_str(&row.get::<String, _>(i)).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    let permissions =
        Permissions::parse(&decode(4)?, None).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let restrictions: Restrictions =
        serde_json::from_value(decode(5)?).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let status =
        Status::parse(&row.get::<String, _>(2)).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(MembershipRow {
        org_id: row.get(0),
        user_id: row.get(1),
        status,
        role: row.get(3),
        permissions,
        restrictions,
        department_id: row.get(6),
        agent: flag(&row, 7),
        agent_approved: flag(&row, 8),
        agent_designation: row.get(9),
        invited_by: row.get(10),
    })
}

pub async fn membership_of(
    conn: &mut Conn,
    org_id: &str,
    user_id: &str,
) -> Result<Option<MembershipRow>, sqlx::Error> {
    let sql =
        format!("select {MEMBERSHIP_COLUMNS} from membership where org_id = $1 and user_id = $2");
    sqlx::query(&sql)
        .bind(org_id)
        .bind(user_id)
        .fetch_optional(conn)
        .await?
        .map(membership)
        .transpose()
}

/// The membership in `org_id` of a placeholder invited at `email`, if any
/// (there is at most one: inviting the address again finds it).
pub async fn placeholder_membership(
    conn: &mut Conn,
    org_id: &str,
    email: &str,
) -> Result<Option<MembershipRow>, sqlx::Error> {
    let sql = format!(
        "select {MEMBERSHIP_COLUMNS} from membership
         where org_id = $1
           and user_id in (select user_id from app_user where invited_email = $2)
         order by created_at, user_id limit 1"
    );
    sqlx::query(&sql)
        .bind(org_id)
        .bind(email)
        .fetch_optional(conn)
        .await?
        .map(membership)
        .transpose()
}

/// Moves the membership of the placeholder `placeholder_id` to `to.user_id`
/// (no member of the organization), with its invitations, and deletes the
/// placeholder.
pub async fn move_placeholder_membership(
    conn: &mut Conn,
    to: &MembershipRow,
    placeholder_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    save_membership(&mut *conn, to, now).await?;
    sqlx::query("update invitation set user_id = $1 where org_id = $2 and user_id = $3")
        .bind(&to.user_id)
        .bind(&to.org_id)
        .bind(placeholder_id)
        .execute(&mut *conn)
        .await?;
    delete_membership(&mut *conn, &to.org_id, placeholder_id).await?;
    sqlx::query(
        "delete from app_user where user_id = $1 and invited_email is not null
           and not exists (select 1 from membership where user_id = $1)",
    )
    .bind(placeholder_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn memberships_of_user(
    conn: &mut Conn,
    user_id: &str,
) -> Result<Vec<MembershipRow>, sqlx::Error> {
    let sql =
        format!("select {MEMBERSHIP_COLUMNS} from membership where user_id = $1 order by org_id");
    sqlx::query(&sql)
        .bind(user_id)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(membership)
        .collect()
}

pub async fn memberships_of_org(
    conn: &mut Conn,
    org_id: &str,
) -> Result<Vec<MembershipRow>, sqlx::Error> {
    let sql =
        format!("select {MEMBERSHIP_COLUMNS} from membership where org_id = $1 order by user_id");
    sqlx::query(&sql)
        .bind(org_id)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(membership)
        .collect()
}

/// Inserts or replaces a membership row.
pub async fn save_membership(
    conn: &mut Conn,
    m: &MembershipRow,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into membership (org_id, user_id, status, role, permissions, restrictions, department_id,
                                 agent, agent_approved, agent_designation, invited_by, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
         on conflict (org_id, user_id) do update set
             status = excluded.status, role = excluded.role, permissions = excluded.permissions,
             restrictions = excluded.restrictions, department_id = excluded.department_id,
             agent = excluded.agent, agent_approved = excluded.agent_approved,
             agent_designation = excluded.agent_designation, updated_at = excluded.updated_at",
    )
    .bind(&m.org_id)
    .bind(&m.user_id)
    .bind(m.status.as_str())
    .bind(&m.role)
    .bind(m.permissions_json())
    .bind(serde_json::to_string(&m.restrictions).unwrap_or_else(|_| "{}".to_owned()))
    .bind(m.department_id.clone())
    .bind(i64::from(m.agent))
    .bind(i64::from(m.agent_approved))
    .bind(m.agent_designation.clone())
    .bind(m.invited_by.clone())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

impl MembershipRow {
    fn permissions_json(&self) -> String {
        self.permissions.to_json().to_string()
    }
}

pub async fn delete_membership(
    conn: &mut Conn,
    org_id: &str,
    user_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query("delete from invitation where org_id = $1 and user_id = $2")
        .bind(org_id)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    let done = sqlx::query("delete from membership where org_id = $1 and user_id = $2")
        .bind(org_id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

const INVITATION_COLUMNS: &str =
    "invitation_id, org_id, user_id, email, state, invited_by, created_at, expires_at";

fn invitation(row: AnyRow) -> InvitationRow {
    InvitationRow {
        invitation_id: row.get(0),
        org_id: row.get(1),
        user_id: row.get(2),
        email: row.get(3),
        // The service writes no other state; an unknown one is a dead
        // link, as revoked is.
        state: InvitationState::parse(&row.get::<String, _>(4)).unwrap_or(InvitationState::Revoked),
        invited_by: row.get(5),
        created_at: row.get(6),
        expires_at: row.get(7),
    }
}

/// The newest invitation of a membership, whatever its state.
pub async fn latest_invitation(
    conn: &mut Conn,
    org_id: &str,
    user_id: &str,
) -> Result<Option<InvitationRow>, sqlx::Error> {
    let sql = format!(
        "select {INVITATION_COLUMNS} from invitation where org_id = $1 and user_id = $2 order by created_at desc, invitation_id limit 1"
    );
    Ok(sqlx::query(&sql)
        .bind(org_id)
        .bind(user_id)
        .fetch_optional(conn)
        .await?
        .map(invitation))
}

pub async fn insert_invitation(
    conn: &mut Conn,
    inv: &InvitationRow,
    token_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into invitation (invitation_id, org_id, user_id, email, token_hash, state, invited_by, created_at, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&inv.invitation_id)
    .bind(&inv.org_id)
    .bind(&inv.user_id)
    .bind(&inv.email)
    .bind(token_hash)
    .bind(inv.state.as_str())
    .bind(&inv.invited_by)
    .bind(inv.created_at)
    .bind(inv.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Revokes the live invitation of a membership. Returns how many were revoked.
pub async fn revoke_pending(
    conn: &mut Conn,
    org_id: &str,
    user_id: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "update invitation set state = $1, decided_at = $2 where org_id = $3 and user_id = $4 and state = $5",
    )
    .bind(InvitationState::Revoked.as_str())
    .bind(now)
    .bind(org_id)
    .bind(user_id)
    .bind(InvitationState::Pending.as_str())
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Revokes every live invitation `inviter` sent in `org` (E26).
pub async fn revoke_sent_by(
    conn: &mut Conn,
    org_id: &str,
    inviter: &str,
    now: i64,
) -> Result<Vec<InvitationRow>, sqlx::Error> {
    let sql = format!(
        "update invitation set state = $1, decided_at = $2 where org_id = $3 and invited_by = $4 and state = $5
         returning {INVITATION_COLUMNS}"
    );
    Ok(sqlx::query(&sql)
        .bind(InvitationState::Revoked.as_str())
        .bind(now)
        .bind(org_id)
        .bind(inviter)
        .bind(InvitationState::Pending.as_str())
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(invitation)
        .collect())
}

/// Claims a live, unexpired invitation for `claim_id` until `until`,
/// unless another claim holds it still. At most one caller at a time gets
/// `Some` for one token: an accept claims its link before it pays for
/// hashing the new password, and finishes with [`consume_claimed`].
pub async fn claim(
    conn: &mut Conn,
    token_hash: &str,
    claim_id: &str,
    now: i64,
    until: i64,
) -> Result<Option<InvitationRow>, sqlx::Error> {
    let sql = format!(
        "update invitation set claim_id = $1, claimed_until = $2
         where token_hash = $3 and state = $4 and expires_at > $5
           and (claimed_until is null or claimed_until <= $5)
         returning {INVITATION_COLUMNS}"
    );
    Ok(sqlx::query(&sql)
        .bind(claim_id)
        .bind(until)
        .bind(token_hash)
        .bind(InvitationState::Pending.as_str())
        .bind(now)
        .fetch_optional(conn)
        .await?
        .map(invitation))
}

/// Gives a claim back, if it is still `claim_id`'s.
pub async fn release_claim(
    conn: &mut Conn,
    invitation_id: &str,
    claim_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update invitation set claim_id = null, claimed_until = null
         where invitation_id = $1 and claim_id = $2",
    )
    .bind(invitation_id)
    .bind(claim_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves the invitation of `token_hash` that `claim_id` claimed to
/// `state`, if it is still live, unexpired and claimed by it (not revoked,
/// resent or taken over after the claim's lease ended in between).
pub async fn consume_claimed(
    conn: &mut Conn,
    token_hash: &str,
    claim_id: &str,
    state: InvitationState,
    now: i64,
) -> Result<Option<InvitationRow>, sqlx::Error> {
    let sql = format!(
        "update invitation set state = $1, decided_at = $2, claim_id = null, claimed_until = null
         where token_hash = $3 and claim_id = $4 and state = $5 and expires_at > $2
         returning {INVITATION_COLUMNS}"
    );
    Ok(sqlx::query(&sql)
        .bind(state.as_str())
        .bind(now)
        .bind(token_hash)
        .bind(claim_id)
        .bind(InvitationState::Pending.as_str())
        .fetch_optional(conn)
        .await?
        .map(invitation))
}

/// Atomically moves a live, unexpired, unclaimed invitation to `state`
/// (declining). At most one caller ever gets `Some` for one token, and
/// none while an accept holds the link (E10).
pub async fn consume(
    conn: &mut Conn,
    token_hash: &str,
    state: InvitationState,
    now: i64,
) -> Result<Option<InvitationRow>, sqlx::Error> {
    let sql = format!(
        "update invitation set state = $1, decided_at = $2, claim_id = null, claimed_until = null
         where token_hash = $3 and state = $4 and expires_at > $2
           and (claimed_until is null or claimed_until <= $2)
         returning {INVITATION_COLUMNS}"
    );
    Ok(sqlx::query(&sql)
        .bind(state.as_str())
        .bind(now)
        .bind(token_hash)
        .bind(InvitationState::Pending.as_str())
        .fetch_optional(conn)
        .await?
        .map(invitation))
}

/// A live, unexpired invitation by token hash (for showing the page).
pub async fn live_invitation(
    conn: &mut Conn,
    token_hash: &str,
    now: i64,
) -> Result<Option<InvitationRow>, sqlx::Error> {
    let sql = format!(
        "select {INVITATION_COLUMNS} from invitation where token_hash = $1 and state = $2 and expires_at > $3"
    );
    Ok(sqlx::query(&sql)
        .bind(token_hash)
        .bind(InvitationState::Pending.as_str())
        .bind(now)
        .fetch_optional(conn)
        .await?
        .map(invitation))
}

/// Invitations created in `org` since `since`: (count, oldest created_at).
pub async fn invitations_since(
    conn: &mut Conn,
    org_id: &str,
    since: i64,
) -> Result<(i64, Option<i64>), sqlx::Error> {
    let row = sqlx::query(
        "select count(*), min(created_at) from invitation where org_id = $1 and created_at > $2",
    )
    .bind(org_id)
    .bind(since)
    .fetch_one(conn)
    .await?;
    Ok((row.get(0), row.get(1)))
}

pub async fn department_exists(
    conn: &mut Conn,
    org_id: &str,
    department_id: &str,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("select 1 from department where org_id = $1 and department_id = $2")
        .bind(org_id)
        .bind(department_id)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

pub async fn save_department(
    conn: &mut Conn,
    org_id: &str,
    department_id: &str,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into department (org_id, department_id, name) values ($1, $2, $3)
         on conflict (org_id, department_id) do update set name = excluded.name",
    )
    .bind(org_id)
    .bind(department_id)
    .bind(name)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes a department and returns the members who were in it (E29:
/// they now have no department).
pub async fn delete_department(
    conn: &mut Conn,
    org_id: &str,
    department_id: &str,
) -> Result<Option<Vec<String>>, sqlx::Error> {
    let members: Vec<String> =
        sqlx::query("select user_id from membership where org_id = $1 and department_id = $2")
            .bind(org_id)
            .bind(department_id)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
    sqlx::query(
        "update membership set department_id = null where org_id = $1 and department_id = $2",
    )
    .bind(org_id)
    .bind(department_id)
    .execute(&mut *conn)
    .await?;
    let done = sqlx::query("delete from department where org_id = $1 and department_id = $2")
        .bind(org_id)
        .bind(department_id)
        .execute(conn)
        .await?;
    Ok((done.rows_affected() > 0).then_some(members))
}
