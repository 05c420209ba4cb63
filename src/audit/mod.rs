//! The audit trail: every administrative action and invitation state
//! change, appended in the transaction of the change (or alone, for
//! refusals). The table refuses updates and deletes (triggers).

use serde::Serialize;
use sqlx::{AnyPool, Row};

/// One audit record to append.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    /// User id of the actor, or `cli` / `system`.
    pub actor: &'a str,
    /// The organization concerned.
    pub org: Option<&'a str>,
    /// What was acted on, e.g. `Membership::"acme/u1"`.
    pub target: Option<String>,
    /// What happened, e.g. `invitation.created`.
    pub action: &'a str,
    /// `ok` or `denied: …`.
    pub outcome: String,
    /// State before (JSON), when something changed.
    pub before: Option<serde_json::Value>,
    /// State after (JSON), when something changed.
    pub after: Option<serde_json::Value>,
    /// The HTTP request id, when there is one.
    pub request_id: Option<&'a str>,
}

/// Appends `event` inside a transaction.
pub async fn record(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: i64,
    event: Event<'_>,
) -> Result<(), sqlx::Error> {
    insert(tx, now, event).await
}

/// Appends `event` on its own (refusals, which change nothing else).
pub async fn record_alone(pool: &AnyPool, now: i64, event: Event<'_>) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    insert(&mut conn, now, event).await
}

async fn insert(
    conn: &mut sqlx::AnyConnection,
    now: i64,
    event: Event<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_event (at, actor, org_id, target, action, outcome, before_state, after_state, request_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(now)
    .bind(event.actor)
    .bind(event.org)
    .bind(event.target)
    .bind(event.action)
    .bind(event.outcome)
    .bind(event.before.map(|v| v.to_string()))
    .bind(event.after.map(|v| v.to_string()))
    .bind(event.request_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A stored audit record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Record {
    /// Sequence number.
    pub id: i64,
    /// Unix seconds (UTC).
    pub at: i64,
    /// Who.
    pub actor: String,
    /// The organization.
    pub org: Option<String>,
    /// On what.
    pub target: Option<String>,
    /// What.
    pub action: String,
    /// `ok` or `denied: …`.
    pub outcome: String,
    /// State before.
    pub before: Option<serde_json::Value>,
    /// State after.
    pub after: Option<serde_json::Value>,
    /// The HTTP request id.
    pub request_id: Option<String>,
}

/// Filters of an audit query; all optional.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
pub struct Filter {
    /// Only events whose actor or target names this user id.
    pub user: Option<String>,
    /// Only this action (e.g. `invitation.created`), or a prefix ending in
    /// `.` (e.g. `invitation.`).
    pub action: Option<String>,
    /// From this unix time (inclusive).
    pub since: Option<i64>,
    /// Until this unix time (exclusive).
    pub until: Option<i64>,
    /// At most this many records (default 1,000).
    pub limit: Option<i64>,
}

/// The audit trail of `org`, oldest first.
pub async fn query(pool: &AnyPool, org: &str, filter: &Filter) -> Result<Vec<Record>, sqlx::Error> {
    let action_pattern = filter.action.as_ref().map(|a| {
        if a.ends_with('.') {
            format!("{a}%")
        } else {
            a.clone()
        }
    });
    let user_pattern = filter.user.as_ref().map(|u| format!("%{u}%"));
    let rows = sqlx::query(
        "select event_id, at, actor, org_id, target, action, outcome, before_state, after_state, request_id
         from audit_event
         where org_id = $1
           and ($2 is null or actor = $3 or target like $2)
           and ($4 is null or action like $4)
           and ($5 is null or at >= $5)
           and ($6 is null or at < $6)
         order by event_id
         limit $7",
    )
    .bind(org)
    .bind(user_pattern)
    .bind(filter.user.clone())
    .bind(action_pattern)
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.limit.unwrap_or(1000).clamp(1, 10_000))
    .fetch_all(pool)
    .await?;
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    Ok(rows
        .into_iter()
        .map(|r| Record {
            id: r.get(0),
            at: r.get(1),
            actor: r.get(2),
            org: r.get(3),
            target: r.get(4),
            action: r.get(5),
            outcome: r.get(6),
            before: json(r.get(7)),
            after: json(r.get(8)),
            request_id: r.get(9),
        })
        .collect())
}
