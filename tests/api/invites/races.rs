//! Simultaneous accepts, invitations and manager changes leave one consistent outcome (E10).

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ORG, OWNER, acme, members_path, set_status, str_of};
use crate::invite_helpers::person;

// ------------------------------------------------------------------ simultaneous links and invitations

on_both_backends!(
    two_simultaneous_accepts_of_one_link_make_exactly_one_membership_and_one_audit_event
);
async fn two_simultaneous_accepts_of_one_link_make_exactly_one_membership_and_one_audit_event() {
    // Arrange
    let (app, _) = acme().await;
    let outcome = app
        .invited(OWNER, ORG, "twin@acme.example", json!({}))
        .await;
    let twin = str_of(&outcome["user_id"]).to_owned();
    let token = app.next_token_for("twin@acme.example").await;

    // Act
    let (a, b) = tokio::join!(app.accept(&token), app.accept(&token));

    // Assert
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::NOT_FOUND],
        "{} / {}",
        a.text,
        b.text
    );
    let loser = if a.status == StatusCode::OK { &b } else { &a };
    assert_eq!(loser.code(), "link_unavailable", "{}", loser.text);
    let accepted: Vec<Value> = app
        .audit(OWNER, ORG, "?action=invitation.accepted")
        .await
        .into_iter()
        .filter(|e| e["actor"] == twin.as_str())
        .collect();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(
        app.members_with_email(OWNER, ORG, "twin@acme.example")
            .await
            .len(),
        1
    );
}

on_both_backends!(
    two_simultaneous_invitations_of_one_address_make_one_membership_and_one_live_link
);
async fn two_simultaneous_invitations_of_one_address_make_one_membership_and_one_live_link() {
    // Arrange
    let (app, _) = acme().await;
    let body = person(
        "dup@acme.example",
        json!({"permissions": {"billing": "Read"}}),
    );

    // Act
    let (a, b) = tokio::join!(app.invite(OWNER, ORG, &body), app.invite(OWNER, ORG, &body));

    // Assert
    for reply in [&a, &b] {
        assert!(
            reply.status == StatusCode::CREATED || reply.status == StatusCode::CONFLICT,
            "a resend or a conflict, never an error: {}",
            reply.text
        );
    }
    let mut outcomes: Vec<&str> = [&a, &b]
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .map(|r| str_of(&r.body["outcome"]))
        .collect();
    outcomes.sort_unstable();
    assert!(
        outcomes == ["invited", "resent"] || outcomes == ["invited"],
        "{outcomes:?}"
    );
    let dups = app.members_with_email(OWNER, ORG, "dup@acme.example").await;
    assert_eq!(dups.len(), 1, "{dups:?}");
    let db = app.db().await;
    let (memberships,): (i64,) = sqlx::query_as(
        "select count(*) from membership m join app_user u on u.user_id = m.user_id
         where m.org_id = $1 and u.email = $2",
    )
    .bind(ORG)
    .bind("dup@acme.example")
    .fetch_one(&db)
    .await
    .expect("count memberships");
    let (live,): (i64,) = sqlx::query_as(
        "select count(*) from invitation where org_id = $1 and email = $2 and state = 'PENDING'",
    )
    .bind(ORG)
    .bind("dup@acme.example")
    .fetch_one(&db)
    .await
    .expect("count invitations");
    let (users,): (i64,) = sqlx::query_as("select count(*) from app_user where email = $1")
        .bind("dup@acme.example")
        .fetch_one(&db)
        .await
        .expect("count users");
    assert_eq!((memberships, live, users), (1, 1, 1));
}

// ------------------------------------------------------------------ simultaneous manager changes

on_both_backends!(two_managers_deactivating_each_other_at_the_same_moment_leave_one_active_manager);
async fn two_managers_deactivating_each_other_at_the_same_moment_leave_one_active_manager() {
    // Arrange
    let (app, olivia) = acme().await;
    let mark = app
        .member_joins(OWNER, ORG, "mark@acme.example", json!({"role": "Owner"}))
        .await;

    // Act
    let (a, b) = tokio::join!(
        set_status(&app, OWNER, &mark, "INACTIVE"),
        set_status(&app, "mark@acme.example", &olivia, "INACTIVE"),
    );

    // Assert
    let ok = [&a, &b]
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "exactly one succeeds: {} / {}", a.text, b.text);
    let refused = if a.status == StatusCode::OK { &b } else { &a };
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let survivor = if a.status == StatusCode::OK {
        OWNER
    } else {
        "mark@acme.example"
    };
    let active_managers = app
        .members(survivor, ORG)
        .await
        .into_iter()
        .filter(|m| m["status"] == "ACTIVE" && m["permissions"]["organization"] == "Manage")
        .count();
    assert_eq!(active_managers, 1);
}

on_both_backends!(two_managers_demoting_each_other_at_the_same_moment_leave_one_manager);
async fn two_managers_demoting_each_other_at_the_same_moment_leave_one_manager() {
    // Arrange
    let (app, olivia) = acme().await;
    let mark = app
        .member_joins(OWNER, ORG, "mark@acme.example", json!({"role": "Owner"}))
        .await;
    let demote = json!({"permissions": {"organization": "Read"}});
    let (mark_path, olivia_path) = (members_path(&mark), members_path(&olivia));

    // Act
    let (a, b) = tokio::join!(
        app.patch(OWNER, &mark_path, &demote),
        app.patch("mark@acme.example", &olivia_path, &demote),
    );

    // Assert
    let ok = [&a, &b]
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "exactly one succeeds: {} / {}", a.text, b.text);
    let survivor = if a.status == StatusCode::OK {
        OWNER
    } else {
        "mark@acme.example"
    };
    let active_managers = app
        .members(survivor, ORG)
        .await
        .into_iter()
        .filter(|m| m["status"] == "ACTIVE" && m["permissions"]["organization"] == "Manage")
        .count();
    assert_eq!(active_managers, 1);
}
