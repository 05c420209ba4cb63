//! The audit trail, and the link secret kept out of API answers, the audit trail and the database.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ORG, OWNER, acme, members_path, str_of};

// ------------------------------------------------------------------ audit

on_both_backends!(the_audit_trail_lists_invitation_events_with_actor_target_and_time);
async fn the_audit_trail_lists_invitation_events_with_actor_target_and_time() {
    // Arrange
    let (app, olivia) = acme().await;
    let rita = app
        .member_joins(OWNER, ORG, "rita@acme.example", json!({}))
        .await;
    let nina = app
        .invited(OWNER, ORG, "nina@acme.example", json!({}))
        .await;
    let nina = str_of(&nina["user_id"]).to_owned();
    let revoked = app
        .delete_as(OWNER, &format!("{}/invitation", members_path(&nina)))
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);

    // Act
    let events = app.audit(OWNER, ORG, "?action=invitation.").await;

    // Assert
    assert!(
        events
            .iter()
            .all(|e| str_of(&e["action"]).starts_with("invitation.")),
        "{events:?}"
    );
    let find = |action: &str, user: &str| {
        events
            .iter()
            .find(|e| {
                e["action"] == action
                    && e["target"] == format!("Membership::\"{ORG}/{user}\"").as_str()
            })
            .cloned()
            .unwrap_or_else(|| panic!("no {action} for {user}: {events:?}"))
    };
    let created = find("invitation.created", &rita);
    assert_eq!(created["actor"], olivia.as_str());
    assert_eq!(created["at"], app.now());
    assert_eq!(created["outcome"], "ok");
    assert_eq!(created["org"], ORG);
    let accepted = find("invitation.accepted", &rita);
    assert_eq!(accepted["actor"], rita.as_str());
    assert_eq!(accepted["before"]["status"], "PENDING");
    assert_eq!(accepted["after"]["status"], "ACTIVE");
    find("invitation.created", &nina);
    let revoked = find("invitation.revoked", &nina);
    assert_eq!(revoked["actor"], olivia.as_str());
    assert_eq!(revoked["at"], app.now());
}

on_both_backends!(a_refused_action_is_audited_as_denied_and_a_general_user_cannot_read_the_audit);
async fn a_refused_action_is_audited_as_denied_and_a_general_user_cannot_read_the_audit() {
    // Arrange
    let (app, _) = acme().await;
    let rita = app
        .member_joins(
            OWNER,
            ORG,
            "rita@acme.example",
            json!({"permissions": {"billing": "Read"}}),
        )
        .await;

    // Act
    let invite = app
        .invite_email("rita@acme.example", ORG, "friend@acme.example", json!({}))
        .await;
    let read = app
        .get("rita@acme.example", &format!("/v1/orgs/{ORG}/audit"))
        .await;

    // Assert
    assert_eq!(invite.status, StatusCode::FORBIDDEN, "{}", invite.text);
    assert!(invite.message().contains("users.invite"), "{}", invite.text);
    assert_eq!(read.status, StatusCode::FORBIDDEN, "{}", read.text);
    assert!(read.message().contains("audit.read"), "{}", read.text);
    let denied: Vec<Value> = app
        .audit(OWNER, ORG, &format!("?user={rita}"))
        .await
        .into_iter()
        .filter(|e| str_of(&e["outcome"]).starts_with("denied: "))
        .collect();
    let actions: Vec<&str> = denied.iter().map(|e| str_of(&e["action"])).collect();
    assert!(actions.contains(&"users.invite"), "{denied:?}");
    assert!(actions.contains(&"audit.read"), "{denied:?}");
    assert!(denied.iter().all(|e| e["actor"] == rita.as_str()));
}

on_both_backends!(the_audit_table_refuses_updates_and_deletes);
async fn the_audit_table_refuses_updates_and_deletes() {
    // Arrange
    let (app, _) = acme().await;
    let db = app.db().await;
    let (before,): (i64,) = sqlx::query_as("select count(*) from audit_event")
        .fetch_one(&db)
        .await
        .expect("count audit events");

    // Act
    let update = sqlx::query("update audit_event set outcome = 'tampered'")
        .execute(&db)
        .await;
    let delete = sqlx::query("delete from audit_event").execute(&db).await;

    // Assert
    let update = update.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(update.contains("append-only"), "{update}");
    let delete = delete.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(delete.contains("append-only"), "{delete}");
    let (after,): (i64,) = sqlx::query_as("select count(*) from audit_event")
        .fetch_one(&db)
        .await
        .expect("count audit events");
    let (tampered,): (i64,) =
        sqlx::query_as("select count(*) from audit_event where outcome = 'tampered'")
            .fetch_one(&db)
            .await
            .expect("count tampered events");
    assert!(before > 0);
    assert_eq!((after, tampered), (before, 0));
}

// ------------------------------------------------------------------ token hygiene

on_both_backends!(the_link_secret_never_appears_in_api_answers_or_the_audit_trail);
async fn the_link_secret_never_appears_in_api_answers_or_the_audit_trail() {
    // Arrange
    let (app, _) = acme().await;
    let invited = app
        .invite_email(OWNER, ORG, "sid@acme.example", json!({}))
        .await;
    let token = app.next_token_for("sid@acme.example").await;
    let members_pending = app.get(OWNER, &format!("/v1/orgs/{ORG}/members")).await;
    let accepted = app.accept(&token).await;

    // Act
    let members = app.get(OWNER, &format!("/v1/orgs/{ORG}/members")).await;
    let audit = app.get(OWNER, &format!("/v1/orgs/{ORG}/audit")).await;

    // Assert
    assert_eq!(token.len(), 43, "256 bits, base64url");
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    for (what, reply) in [
        ("invite", &invited),
        ("members while pending", &members_pending),
        ("accept", &accepted),
        ("members", &members),
        ("audit", &audit),
    ] {
        assert!(reply.status.is_success(), "{what}: {}", reply.text);
        assert!(
            !reply.text.contains(&token),
            "the secret appears in the {what} answer"
        );
    }
    let db = app.db().await;
    let rows: Vec<(String,)> = sqlx::query_as(
        "select coalesce(target, '') || ' ' || outcome || ' ' || coalesce(before_state, '') || ' '
                || coalesce(after_state, '') || ' ' || coalesce(request_id, '') from audit_event",
    )
    .fetch_all(&db)
    .await
    .expect("read the audit table");
    assert!(rows.iter().all(|(row,)| !row.contains(&token)));
    let (stored,): (i64,) = sqlx::query_as("select count(*) from invitation where token_hash = $1")
        .bind(&token)
        .fetch_one(&db)
        .await
        .expect("look the secret up");
    assert_eq!(stored, 0, "only the hash of the secret is stored");
}

on_both_backends!(once_the_email_is_delivered_the_database_keeps_no_copy_of_the_link_secret);
async fn once_the_email_is_delivered_the_database_keeps_no_copy_of_the_link_secret() {
    // Arrange
    let (app, _) = acme().await;
    app.invited(OWNER, ORG, "sid@acme.example", json!({})).await;
    let token = app.next_token_for("sid@acme.example").await;

    // Act
    app.settle_mail().await;

    // Assert
    let db = app.db().await;
    let postgres = app.config.database_url.is_postgres();
    let columns: Vec<(String, String)> = sqlx::query_as(if postgres {
        "select table_name::text, column_name::text from information_schema.columns
         where table_schema = 'public'"
    } else {
        "select m.name, c.name from sqlite_master m, pragma_table_info(m.name) c
         where m.type = 'table' and m.name not like 'sqlite_%'"
    })
    .fetch_all(&db)
    .await
    .expect("list the columns");
    assert!(
        columns.iter().any(|(t, _)| t == "invitation"),
        "{columns:?}"
    );
    let mut holding = Vec::new();
    for (table, column) in columns {
        // `like` treats `_` in the secret as any character: a stricter search.
        let (hits,): (i64,) = sqlx::query_as(&format!(
            "select count(*) from \"{table}\" where cast(\"{column}\" as text) like '%' || $1 || '%'"
        ))
        .bind(&token)
        .fetch_one(&db)
        .await
        .expect("search a column");
        if hits > 0 {
            holding.push(format!("{table}.{column}"));
        }
    }
    assert!(
        holding.is_empty(),
        "the link secret is stored in {holding:?}"
    );
    let accepted = app.accept(&token).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
}

on_both_backends!(an_accept_or_decline_through_the_api_is_audited_with_its_request_id);
async fn an_accept_or_decline_through_the_api_is_audited_with_its_request_id() {
    // Arrange
    let (app, _) = acme().await;
    app.invited(OWNER, ORG, "rita@acme.example", json!({}))
        .await;
    app.invited(OWNER, ORG, "dan@acme.example", json!({})).await;
    let rita = app.next_token_for("rita@acme.example").await;
    let dan = app.next_token_for("dan@acme.example").await;
    let send = |path: &'static str, body: Value, id: &'static str| {
        let request = app
            .request(reqwest::Method::POST, path)
            .header("X-Request-ID", id)
            .json(&body);
        crate::helpers::TestApp::reply(request)
    };

    // Act
    let accepted = send(
        "/v1/invitations/accept",
        json!({"token": rita, "password": crate::invite_helpers::PASSWORD}),
        "req-accept-1",
    )
    .await;
    let declined = send(
        "/v1/invitations/decline",
        json!({"token": dan}),
        "req-decline-1",
    )
    .await;
    let events = app.audit(OWNER, ORG, "?action=invitation.").await;

    // Assert
    assert!(accepted.status.is_success(), "{}", accepted.text);
    assert!(declined.status.is_success(), "{}", declined.text);
    for (action, id) in [
        ("invitation.accepted", "req-accept-1"),
        ("invitation.declined", "req-decline-1"),
    ] {
        assert!(
            events
                .iter()
                .any(|e| e["action"] == action && e["request_id"] == id),
            "{action} with request id {id}: {events:?}"
        );
    }
}

on_both_backends!(invitations_refused_by_input_rules_are_audited_with_the_rule);
async fn invitations_refused_by_input_rules_are_audited_with_the_rule() {
    // Arrange
    let (app, _) = acme().await;
    app.member_joins(OWNER, ORG, "rita@acme.example", json!({}))
        .await;

    // Act
    let generic = app
        .invite_email(OWNER, ORG, "info@acme.example", json!({}))
        .await;
    let member = app
        .invite_email(OWNER, ORG, "rita@acme.example", json!({}))
        .await;
    let events = app.audit(OWNER, ORG, "?action=invitation.created").await;

    // Assert
    assert_eq!(
        generic.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        generic.text
    );
    assert_eq!(member.status, StatusCode::CONFLICT, "{}", member.text);
    let refused = |target: &str, rule: &str| {
        events.iter().any(|e| {
            e["target"] == target
                && str_of(&e["outcome"]).starts_with("refused: ")
                && str_of(&e["outcome"]).contains(rule)
        })
    };
    assert!(refused("info@acme.example", "email: "), "{events:?}");
    assert!(
        refused("rita@acme.example", "already a member"),
        "{events:?}"
    );
}
