//! Reactivating an inactive member: restore the permissions held before, or
//! start fresh, either way authorized as an edit and validated by the input
//! rules in force (R44, E1); and a status change or an edit that takes away
//! the right to invite revokes the links sent in the same transaction (E26).

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ORG, OWNER, acme, members_path, set_status, str_of};
use crate::helpers::{Backend, TestApp};
use crate::invite_helpers::{Reply, assert_forbidden_by, assert_invalid};

async fn put_status(app: &TestApp, actor: &str, user_id: &str, body: Value) -> Reply {
    app.put(actor, &format!("{}/status", members_path(user_id)), &body)
        .await
}

/// A member who joined with `extra` and was deactivated by the owner.
async fn deactivated(app: &TestApp, email: &str, extra: Value) -> String {
    let id = app.member_joins(OWNER, ORG, email, extra).await;
    let off = set_status(app, OWNER, &id, "INACTIVE").await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);
    id
}

fn accounts(ids: &[&str]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| json!({"uid": {"type": "Account", "id": id}, "attrs": {"tenant": ORG, "accountType": "Active"}, "parents": []}))
            .collect(),
    )
}

// ------------------------------------------------------------------ restore or start fresh

on_both_backends!(reactivating_restores_the_previous_permissions_by_default_and_audits_the_choice);
async fn reactivating_restores_the_previous_permissions_by_default_and_audits_the_choice() {
    // Arrange
    let (app, _) = acme().await;
    let granted = json!({"role": "GeneralUser", "permissions": {"billing": "Manage", "transactions": "Read"}});
    let rita = deactivated(&app, "rita@acme.example", granted).await;
    let pete = deactivated(
        &app,
        "pete@acme.example",
        json!({"permissions": {"api": "Read"}}),
    )
    .await;
    let held = app.member(OWNER, ORG, "rita@acme.example").await;
    assert!(!app.allowed(&rita, "billing.manage", ORG).await);

    // Act: the documented shape, and the choice spelled out
    let by_default = put_status(&app, OWNER, &rita, json!({"status": "ACTIVE"})).await;
    let spelled = put_status(
        &app,
        OWNER,
        &pete,
        json!({"status": "ACTIVE", "reactivate": "restore"}),
    )
    .await;

    // Assert
    assert_eq!(by_default.status, StatusCode::OK, "{}", by_default.text);
    assert_eq!(by_default.body["status"], "ACTIVE");
    assert_eq!(by_default.body["permissions"], held["permissions"]);
    assert_eq!(by_default.body["role"], held["role"]);
    assert!(app.allowed(&rita, "billing.manage", ORG).await);
    assert!(app.allowed(&rita, "transactions.read", ORG).await);
    assert_eq!(spelled.status, StatusCode::OK, "{}", spelled.text);
    assert_eq!(spelled.body["permissions"]["api"], "Read");
    let records = app
        .audit(OWNER, ORG, "?action=membership.reactivated")
        .await;
    let of_rita = records
        .iter()
        .find(|r| str_of(&r["target"]).contains(&rita))
        .unwrap_or_else(|| panic!("rita's reactivation is audited: {records:?}"));
    assert!(
        str_of(&of_rita["outcome"]).starts_with("ok: restore"),
        "{of_rita}"
    );
    assert_eq!(of_rita["before"]["status"], "INACTIVE", "{of_rita}");
    assert_eq!(of_rita["after"]["status"], "ACTIVE", "{of_rita}");
    assert_eq!(
        of_rita["after"]["permissions"], held["permissions"],
        "{of_rita}"
    );
}

on_both_backends!(reactivating_fresh_replaces_the_previous_permissions_with_the_given_set_only);
async fn reactivating_fresh_replaces_the_previous_permissions_with_the_given_set_only() {
    // Arrange
    let (app, _) = acme().await;
    let (status, body) = app
        .put_json("/v1/entities", &accounts(&["acme-active-1"]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let granted = json!({
        "role": "Admin",
        "restrictions": {"active": ["acme-active-1"]},
    });
    let rita = deactivated(&app, "rita@acme.example", granted).await;

    // Act
    let fresh = put_status(
        &app,
        OWNER,
        &rita,
        json!({"status": "ACTIVE", "reactivate": "fresh", "permissions": {"programs": "Read"}}),
    )
    .await;

    // Assert: the given level, None for every other module, the role a new
    // invitation takes, and no restriction left
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.text);
    assert_eq!(fresh.body["status"], "ACTIVE");
    assert_eq!(fresh.body["role"], "GeneralUser");
    assert_eq!(fresh.body["restrictions"], json!({}), "{}", fresh.text);
    let permissions = &fresh.body["permissions"];
    assert_eq!(permissions["programs"], "Read", "{permissions}");
    for module in [
        "organization",
        "transactions",
        "accounts",
        "generators",
        "billing",
        "api",
    ] {
        assert_eq!(permissions[module], "None", "{module}: {permissions}");
    }
    assert!(app.allowed(&rita, "programs.read", ORG).await);
    assert!(!app.allowed(&rita, "billing.read", ORG).await);
    assert!(!app.allowed(&rita, "organization.read", ORG).await);
    let records = app
        .audit(OWNER, ORG, "?action=membership.reactivated")
        .await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(
        str_of(&records[0]["outcome"]).starts_with("ok: fresh"),
        "{}",
        records[0]
    );
    assert_eq!(records[0]["before"]["role"], "Admin", "{}", records[0]);
    assert_eq!(records[0]["after"]["role"], "GeneralUser", "{}", records[0]);
}

// ------------------------------------------------------------------ the restored set meets today's rules

on_both_backends!(restoring_permissions_beyond_the_actor_s_own_is_refused_by_the_policies);
async fn restoring_permissions_beyond_the_actor_s_own_is_refused_by_the_policies() {
    // Arrange: Uma (User Admin: Organization=Manage, Read elsewhere) may
    // change Rita's status, but not give back Billing=Manage
    let (app, _) = acme().await;
    app.member_joins(OWNER, ORG, "uma@acme.example", json!({"role": "UserAdmin"}))
        .await;
    let rita = deactivated(
        &app,
        "rita@acme.example",
        json!({"permissions": {"billing": "Manage"}}),
    )
    .await;

    // Act
    let restore = put_status(&app, "uma@acme.example", &rita, json!({"status": "ACTIVE"})).await;
    let after_refusal = app.member(OWNER, ORG, "rita@acme.example").await;
    let reads_after_refusal = app.allowed(&rita, "billing.read", ORG).await;
    let fresh = put_status(
        &app,
        "uma@acme.example",
        &rita,
        json!({"status": "ACTIVE", "reactivate": "fresh", "permissions": {"billing": "Read"}}),
    )
    .await;

    // Assert
    assert_forbidden_by(&restore, "no-grant-beyond-own");
    assert_eq!(after_refusal["status"], "INACTIVE", "{after_refusal}");
    assert!(!reads_after_refusal);
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.text);
    assert_eq!(fresh.body["permissions"]["billing"], "Read");
    assert!(app.allowed(&rita, "billing.read", ORG).await);
    assert!(!app.allowed(&rita, "billing.manage", ORG).await);
}

on_both_backends!(restoring_what_the_agent_rule_now_forbids_is_refused_even_to_the_owner);
async fn restoring_what_the_agent_rule_now_forbids_is_refused_even_to_the_owner() {
    // Arrange: an agent whose stored record says Organization=Manage, as one
    // saved before that rule existed would
    let (app, _) = acme().await;
    let alex = deactivated(
        &app,
        "alex@acme.example",
        json!({"agent": true, "permissions": {"organization": "Read"}}),
    )
    .await;
    let mut stored = app.member(OWNER, ORG, "alex@acme.example").await["permissions"].clone();
    stored["organization"] = json!("Manage");
    let db = app.db().await;
    sqlx::query("update membership set permissions = $1 where org_id = $2 and user_id = $3")
        .bind(stored.to_string())
        .bind(ORG)
        .bind(&alex)
        .execute(&db)
        .await
        .expect("the stored permissions are rewritten");
    db.close().await;

    // Act
    let restore = put_status(&app, OWNER, &alex, json!({"status": "ACTIVE"})).await;
    let after_refusal = app.member(OWNER, ORG, "alex@acme.example").await;
    let fresh = put_status(
        &app,
        OWNER,
        &alex,
        json!({"status": "ACTIVE", "reactivate": "fresh", "permissions": {"organization": "Read"}}),
    )
    .await;

    // Assert
    assert_forbidden_by(&restore, "no-agent-organization-manage-grant");
    assert_eq!(after_refusal["status"], "INACTIVE", "{after_refusal}");
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.text);
    assert_eq!(fresh.body["agent"], true, "{}", fresh.text);
    assert_eq!(fresh.body["permissions"]["organization"], "Read");
}

on_both_backends!(
    restoring_restrictions_that_name_a_deleted_account_is_refused_and_fresh_is_offered
);
async fn restoring_restrictions_that_name_a_deleted_account_is_refused_and_fresh_is_offered() {
    // Arrange
    let (app, _) = acme().await;
    let (status, body) = app
        .put_json(
            "/v1/entities",
            &accounts(&["acme-active-1", "acme-active-2"]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rita = deactivated(
        &app,
        "rita@acme.example",
        json!({"permissions": {"accounts": "Read"}, "restrictions": {"active": ["acme-active-1", "acme-active-2"]}}),
    )
    .await;
    let (status, body) = app.delete("/v1/entities/Account/acme-active-2").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // Act
    let restore = put_status(&app, OWNER, &rita, json!({"status": "ACTIVE"})).await;
    let after_refusal = app.member(OWNER, ORG, "rita@acme.example").await;
    let fresh = put_status(
        &app,
        OWNER,
        &rita,
        json!({
            "status": "ACTIVE", "reactivate": "fresh",
            "permissions": {"accounts": "Read"}, "restrictions": {"active": ["acme-active-1"]},
        }),
    )
    .await;

    // Assert
    assert_invalid(&restore, "restrictions.active");
    assert!(
        restore.message().contains("acme-active-2"),
        "{}",
        restore.text
    );
    assert!(restore.message().contains("fresh"), "{}", restore.text);
    assert_eq!(after_refusal["status"], "INACTIVE", "{after_refusal}");
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.text);
    assert_eq!(
        fresh.body["restrictions"],
        json!({"active": ["acme-active-1"]})
    );
}

// ------------------------------------------------------------------ input rules of the request

on_both_backends!(reactivation_choices_are_refused_where_they_do_not_apply);
async fn reactivation_choices_are_refused_where_they_do_not_apply() {
    // Arrange
    let (app, _) = acme().await;
    let rita = app
        .member_joins(OWNER, ORG, "rita@acme.example", json!({}))
        .await;
    let nora = deactivated(&app, "nora@acme.example", json!({})).await;

    // Act
    let off_restore = put_status(
        &app,
        OWNER,
        &rita,
        json!({"status": "INACTIVE", "reactivate": "restore"}),
    )
    .await;
    let off_permissions = put_status(
        &app,
        OWNER,
        &rita,
        json!({"status": "INACTIVE", "permissions": {"billing": "Read"}}),
    )
    .await;
    let unknown = put_status(
        &app,
        OWNER,
        &nora,
        json!({"status": "ACTIVE", "reactivate": "merge"}),
    )
    .await;
    let restore_with_set = put_status(
        &app,
        OWNER,
        &nora,
        json!({"status": "ACTIVE", "reactivate": "restore", "permissions": {"billing": "Read"}}),
    )
    .await;
    let already_active = put_status(
        &app,
        OWNER,
        &rita,
        json!({"status": "ACTIVE", "reactivate": "fresh"}),
    )
    .await;

    // Assert
    assert_invalid(&off_restore, "reactivate");
    assert_invalid(&off_permissions, "permissions");
    assert_invalid(&unknown, "reactivate");
    assert!(unknown.message().contains("restore"), "{}", unknown.text);
    assert!(unknown.message().contains("fresh"), "{}", unknown.text);
    assert_invalid(&restore_with_set, "permissions");
    assert!(
        restore_with_set.message().contains("fresh"),
        "{}",
        restore_with_set.text
    );
    assert_eq!(
        already_active.status,
        StatusCode::CONFLICT,
        "{}",
        already_active.text
    );
    assert_eq!(
        app.member(OWNER, ORG, "rita@acme.example").await["status"],
        "ACTIVE"
    );
    assert_eq!(
        app.member(OWNER, ORG, "nora@acme.example").await["status"],
        "INACTIVE"
    );
}

on_both_backends!(inviting_an_inactive_member_names_the_two_ways_to_reactivate);
async fn inviting_an_inactive_member_names_the_two_ways_to_reactivate() {
    // Arrange
    let (app, _) = acme().await;
    deactivated(&app, "rita@acme.example", json!({})).await;

    // Act
    let reply = app
        .invite_email(OWNER, ORG, "rita@acme.example", json!({}))
        .await;

    // Assert
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    for words in [
        "\"reactivate\":\"restore\"",
        "\"reactivate\":\"fresh\"",
        "/status",
    ] {
        assert!(reply.message().contains(words), "`{words}`: {}", reply.text);
    }
}

// ------------------------------------------------------------------ E26: one transaction

/// Installs a trigger that makes revoking the invitations `inviter` sent
/// fail, as a database that fails at that step would.
async fn refuse_revoking_links_sent_by(app: &TestApp, inviter: &str) {
    let statements = match Backend::current() {
        Backend::Sqlite => vec![format!(
            "create trigger refuse_revocation before update of state on invitation
             when new.state = 'REVOKED' and old.invited_by = '{inviter}'
             begin select raise(abort, 'the test refuses this revocation'); end"
        )],
        Backend::Postgres => vec![
            "create function refuse_revocation() returns trigger language plpgsql as
             $$ begin raise exception 'the test refuses this revocation'; end $$"
                .to_owned(),
            format!(
                "create trigger refuse_revocation before update of state on invitation for each row
                 when (new.state = 'REVOKED' and old.invited_by = '{inviter}')
                 execute function refuse_revocation()"
            ),
        ],
    };
    run_sql(app, &statements).await;
}

async fn allow_revocations_again(app: &TestApp) {
    let drop = match Backend::current() {
        Backend::Sqlite => "drop trigger refuse_revocation",
        Backend::Postgres => "drop trigger refuse_revocation on invitation",
    };
    run_sql(app, &[drop.to_owned()]).await;
}

async fn run_sql(app: &TestApp, statements: &[String]) {
    let db = app.db().await;
    for sql in statements {
        sqlx::raw_sql(sql)
            .execute(&db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    db.close().await;
}

/// Fails when the inviter is INACTIVE or may no longer invite while the
/// invitee's link is still live, and says whether that link still accepts.
async fn assert_never_a_disabled_inviter_with_a_live_link(
    app: &TestApp,
    mark: &Value,
    token: &str,
) {
    let nina = app.member(OWNER, ORG, "nina@acme.example").await;
    let disabled = mark["status"] != "ACTIVE" || mark["permissions"]["organization"] != "Manage";
    if disabled && nina["invitation"] == "PENDING" {
        let accepted = app.accept(token).await;
        panic!(
            "the inviter can no longer invite ({mark}) while the link they sent is live \
             ({nina}); accepting it answered {}",
            accepted.status
        );
    }
}

on_both_backends!(deactivating_an_inviter_and_revoking_their_links_is_one_transaction);
async fn deactivating_an_inviter_and_revoking_their_links_is_one_transaction() {
    // Arrange
    let (app, _) = acme().await;
    let mark = app
        .member_joins(OWNER, ORG, "mark@acme.example", json!({"role": "Owner"}))
        .await;
    app.invited("mark@acme.example", ORG, "nina@acme.example", json!({}))
        .await;
    let token = app.next_token_for("nina@acme.example").await;
    refuse_revoking_links_sent_by(&app, &mark).await;

    // Act
    let failed = set_status(&app, OWNER, &mark, "INACTIVE").await;

    // Assert: the failure took the status change with it
    assert_eq!(
        failed.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        failed.text
    );
    let mark_now = app.member(OWNER, ORG, "mark@acme.example").await;
    assert_never_a_disabled_inviter_with_a_live_link(&app, &mark_now, &token).await;
    assert_eq!(mark_now["status"], "ACTIVE", "{mark_now}");
    assert!(app.allowed(&mark, "organization.read", ORG).await);
    let deactivations = app
        .audit(OWNER, ORG, "?action=membership.deactivated")
        .await;
    assert!(deactivations.is_empty(), "{deactivations:?}");

    // Act: once the database lets it, both happen
    allow_revocations_again(&app).await;
    let off = set_status(&app, OWNER, &mark, "INACTIVE").await;

    // Assert
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);
    let nina = app.member(OWNER, ORG, "nina@acme.example").await;
    assert_eq!(nina["invitation"], "REVOKED", "{nina}");
    let accepted = app.accept(&token).await;
    assert_eq!(accepted.status, StatusCode::NOT_FOUND, "{}", accepted.text);
}

on_both_backends!(an_edit_that_takes_away_inviting_and_the_revocation_are_one_transaction);
async fn an_edit_that_takes_away_inviting_and_the_revocation_are_one_transaction() {
    // Arrange
    let (app, _) = acme().await;
    let mark = app
        .member_joins(OWNER, ORG, "mark@acme.example", json!({"role": "Owner"}))
        .await;
    app.invited("mark@acme.example", ORG, "nina@acme.example", json!({}))
        .await;
    let token = app.next_token_for("nina@acme.example").await;
    refuse_revoking_links_sent_by(&app, &mark).await;
    let demote = json!({"permissions": {"organization": "Read"}});

    // Act
    let failed = app.patch(OWNER, &members_path(&mark), &demote).await;

    // Assert
    assert_eq!(
        failed.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        failed.text
    );
    let mark_now = app.member(OWNER, ORG, "mark@acme.example").await;
    assert_never_a_disabled_inviter_with_a_live_link(&app, &mark_now, &token).await;
    assert_eq!(
        mark_now["permissions"]["organization"], "Manage",
        "{mark_now}"
    );

    // Act: once the database lets it, both happen
    allow_revocations_again(&app).await;
    let demoted = app.patch(OWNER, &members_path(&mark), &demote).await;

    // Assert
    assert_eq!(demoted.status, StatusCode::OK, "{}", demoted.text);
    let nina = app.member(OWNER, ORG, "nina@acme.example").await;
    assert_eq!(nina["invitation"], "REVOKED", "{nina}");
    let accepted = app.accept(&token).await;
    assert_eq!(accepted.status, StatusCode::NOT_FOUND, "{}", accepted.text);
}

on_both_backends!(reactivating_an_inviter_leaves_the_links_revoked_at_deactivation_dead);
async fn reactivating_an_inviter_leaves_the_links_revoked_at_deactivation_dead() {
    // Arrange
    let (app, _) = acme().await;
    let mark = app
        .member_joins(OWNER, ORG, "mark@acme.example", json!({"role": "Owner"}))
        .await;
    app.invited("mark@acme.example", ORG, "nina@acme.example", json!({}))
        .await;
    let token = app.next_token_for("nina@acme.example").await;
    let off = set_status(&app, OWNER, &mark, "INACTIVE").await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);

    // Act
    let back = put_status(&app, OWNER, &mark, json!({"status": "ACTIVE"})).await;
    let accepted = app.accept(&token).await;

    // Assert
    assert_eq!(back.status, StatusCode::OK, "{}", back.text);
    assert_eq!(back.body["role"], "Owner");
    assert_eq!(accepted.status, StatusCode::NOT_FOUND, "{}", accepted.text);
    assert!(app.allowed(&mark, "organization.manage", ORG).await);
}

on_both_backends!(reactivating_someone_who_never_accepted_makes_them_pending_not_active);
async fn reactivating_someone_who_never_accepted_makes_them_pending_not_active() {
    // Arrange: Paula was invited with Billing=Read, never accepted, and was
    // deactivated.
    let (app, _) = acme().await;
    let invited = app
        .invited(
            OWNER,
            ORG,
            "paula@acme.example",
            json!({"permissions": {"billing": "Read"}}),
        )
        .await;
    let paula = str_of(&invited["user_id"]).to_owned();
    let first_link = app.next_token_for("paula@acme.example").await;
    let off = set_status(&app, OWNER, &paula, "INACTIVE").await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);

    // Act
    let back = put_status(&app, OWNER, &paula, json!({"status": "ACTIVE"})).await;

    // Assert: she still has to consent; then a new link makes her ACTIVE.
    assert_eq!(back.status, StatusCode::OK, "{}", back.text);
    assert_eq!(back.body["status"], "PENDING", "{}", back.text);
    assert!(!app.allowed(&paula, "billing.read", ORG).await);
    let resent = app
        .invite_email(OWNER, ORG, "paula@acme.example", json!({}))
        .await;
    assert_eq!(resent.body["outcome"], "resent", "{}", resent.text);
    let token = app.next_token_for("paula@acme.example").await;
    assert_ne!(token, first_link);
    let accepted = app.accept(&token).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert!(app.allowed(&paula, "billing.read", ORG).await);
}
