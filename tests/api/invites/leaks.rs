//! What a caller without rights in an organization learns about it:
//! nothing. Every administrative request is authorized against the
//! organization before anything of it is read, so an outsider (a user with
//! no membership anywhere, or the owner of another organization) gets the
//! same 403, byte for byte, whether the member, department, account or the
//! organization itself exists. A legitimate administrator still gets the
//! precise 404, 409 and 422 answers.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{ORG, OWNER, acme, str_of};
use crate::helpers::TestApp;
use crate::invite_helpers::{ADMIN_EMAIL, Reply, assert_invalid, person};

/// The owner of another organization.
const OTHER_OWNER: &str = "gwen@globex.example";
/// A user without any membership.
const NOBODY: &str = "zed@nowhere.example";
/// A member id that exists nowhere.
const GHOST: &str = "00000000-0000-4000-8000-000000000000";
/// An organization that does not exist.
const MISSING_ORG: &str = "nowhere";
/// An account of `acme`, and one of `globex`.
const ACME_ACCOUNT: &str = "acme-active-1";
const GLOBEX_ACCOUNT: &str = "globex-active-1";

/// `acme` with an active member (Rita), a pending one (Paula), a
/// department and an account; `globex` owned by Gwen with an account; and
/// Zed, whom Gwen invited and removed, so he is a member of nothing.
struct World {
    app: TestApp,
    rita: String,
    paula: String,
    zed: String,
}

async fn world() -> World {
    let (app, _) = acme().await;
    let rita = app
        .member_joins(
            OWNER,
            ORG,
            "rita@acme.example",
            json!({"permissions": {"billing": "Read"}}),
        )
        .await;
    let paula = app
        .invited(OWNER, ORG, "paula@acme.example", json!({}))
        .await["user_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let saved = app
        .put(
            OWNER,
            &format!("/v1/orgs/{ORG}/departments/trading"),
            &json!({"name": "Trading"}),
        )
        .await;
    assert!(saved.status.is_success(), "{}", saved.text);
    app.create_org("globex", OTHER_OWNER).await;
    let accounts = json!([
        {"uid": {"type": "Account", "id": ACME_ACCOUNT}, "attrs": {"tenant": ORG, "accountType": "Active"}, "parents": []},
        {"uid": {"type": "Account", "id": GLOBEX_ACCOUNT}, "attrs": {"tenant": "globex", "accountType": "Active"}, "parents": []},
    ]);
    let (status, body) = app.put_json("/v1/entities", &accounts).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let zed = app.invited(OTHER_OWNER, "globex", NOBODY, json!({})).await["user_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let removed = app
        .delete_as(OTHER_OWNER, &format!("/v1/orgs/globex/members/{zed}"))
        .await;
    assert!(removed.status.is_success(), "{}", removed.text);
    World {
        app,
        rita,
        paula,
        zed,
    }
}

/// One administrative request.
#[derive(Debug, Clone)]
enum Call {
    Json(Method, String, Option<Value>),
    Csv(String, String),
}

impl Call {
    fn get(path: String) -> Self {
        Self::Json(Method::GET, path, None)
    }

    fn delete(path: String) -> Self {
        Self::Json(Method::DELETE, path, None)
    }

    fn with(method: Method, path: String, body: Value) -> Self {
        Self::Json(method, path, Some(body))
    }

    async fn send(&self, app: &TestApp, actor: &str) -> Reply {
        match self {
            Self::Json(method, path, body) => {
                app.call(method.clone(), path, Some(actor), body.as_ref())
                    .await
            }
            Self::Csv(path, csv) => {
                let request = app
                    .request(Method::POST, path)
                    .header("X-Cedargate-Actor", actor)
                    .header("Content-Type", "text/csv")
                    .body(csv.clone());
                TestApp::reply(request).await
            }
        }
    }
}

/// Every request on one member of `org`.
fn member_calls(org: &str, user: &str) -> Vec<(&'static str, Call)> {
    let member = format!("/v1/orgs/{org}/members/{user}");
    vec![
        (
            "edit",
            Call::with(
                Method::PATCH,
                member.clone(),
                json!({"permissions": {"billing": "None"}}),
            ),
        ),
        (
            "status",
            Call::with(
                Method::PUT,
                format!("{member}/status"),
                json!({"status": "INACTIVE"}),
            ),
        ),
        ("remove", Call::delete(member.clone())),
        (
            "agent approval",
            Call::with(
                Method::PUT,
                format!("{member}/agent-approval"),
                json!({"approved": true, "designation": "NAD-1"}),
            ),
        ),
    ]
}

/// The requests on a pending member's invitation.
fn invitation_calls(org: &str, user: &str) -> Vec<(&'static str, Call)> {
    let invitation = format!("/v1/orgs/{org}/members/{user}/invitation");
    vec![
        (
            "resend",
            Call::with(Method::POST, invitation.clone(), json!({})),
        ),
        ("revoke", Call::delete(invitation)),
    ]
}

fn invite_call(org: &str, extra: Value) -> Call {
    Call::with(
        Method::POST,
        format!("/v1/orgs/{org}/invitations"),
        person("newcomer@example.org", extra),
    )
}

fn dry_run(org: &str, email: &str) -> Call {
    Call::Csv(
        format!("/v1/orgs/{org}/invitations/bulk?dry_run=true"),
        format!("first_name,last_name,email\nPat,Person,{email}\n"),
    )
}

/// Every administrative request on `org` (members named `user`).
fn org_calls(org: &str, user: &str) -> Vec<(&'static str, Call)> {
    let mut calls = vec![
        ("members", Call::get(format!("/v1/orgs/{org}/members"))),
        ("audit", Call::get(format!("/v1/orgs/{org}/audit"))),
        ("settings", Call::get(format!("/v1/orgs/{org}"))),
        (
            "settings change",
            Call::with(
                Method::PATCH,
                format!("/v1/orgs/{org}"),
                json!({"requireMfa": true}),
            ),
        ),
        ("invite", invite_call(org, json!({}))),
        ("bulk dry run", dry_run(org, "newcomer@example.org")),
        (
            "bulk",
            Call::Csv(
                format!("/v1/orgs/{org}/invitations/bulk"),
                "first_name,last_name,email\nPat,Person,newcomer@example.org\n".to_owned(),
            ),
        ),
        (
            "department save",
            Call::with(
                Method::PUT,
                format!("/v1/orgs/{org}/departments/trading"),
                json!({"name": "Trading"}),
            ),
        ),
        (
            "department delete",
            Call::delete(format!("/v1/orgs/{org}/departments/trading")),
        ),
    ];
    calls.extend(member_calls(org, user));
    calls.extend(invitation_calls(org, user));
    calls
}

/// Sends both requests of each pair as each outsider, and asserts the two
/// answers are the same refusal, byte for byte.
async fn assert_indistinguishable(app: &TestApp, pairs: &[(String, Call, Call)]) {
    let mut problems = Vec::new();
    for outsider in [NOBODY, OTHER_OWNER] {
        for (what, existing, missing) in pairs {
            let a = existing.send(app, outsider).await;
            let b = missing.send(app, outsider).await;
            if a.status != StatusCode::FORBIDDEN || a.code() != "forbidden" {
                problems.push(format!("{outsider}, {what}: not refused: {}", a.text));
            }
            if (a.status, &a.text) != (b.status, &b.text) {
                problems.push(format!(
                    "{outsider}, {what}: {} {} / {} {}",
                    a.status, a.text, b.status, b.text
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

on_both_backends!(an_outsider_cannot_tell_a_member_from_a_stranger);
async fn an_outsider_cannot_tell_a_member_from_a_stranger() {
    // Arrange
    let w = world().await;
    let mut pairs: Vec<(String, Call, Call)> = member_calls(ORG, &w.rita)
        .into_iter()
        .zip(member_calls(ORG, GHOST))
        .map(|((what, a), (_, b))| (what.to_owned(), a, b))
        .collect();
    pairs.extend(
        invitation_calls(ORG, &w.paula)
            .into_iter()
            .zip(invitation_calls(ORG, GHOST))
            .map(|((what, a), (_, b))| (what.to_owned(), a, b)),
    );
    pairs.push((
        "bulk dry run with a member's e-mail".to_owned(),
        dry_run(ORG, "rita@acme.example"),
        dry_run(ORG, "stranger@example.org"),
    ));

    // Act + Assert
    assert_indistinguishable(&w.app, &pairs).await;
    let members = w.app.members(OWNER, ORG).await;
    let rita = members.iter().find(|m| m["user_id"] == w.rita.as_str());
    assert_eq!(rita.map(|m| str_of(&m["status"])), Some("ACTIVE"));
}

on_both_backends!(an_outsider_cannot_tell_a_department_or_an_account_from_a_missing_one);
async fn an_outsider_cannot_tell_a_department_or_an_account_from_a_missing_one() {
    // Arrange
    let w = world().await;
    let restricted =
        |id: &str| json!({"permissions": {"accounts": "Read"}, "restrictions": {"active": [id]}});
    let pairs = vec![
        (
            "department".to_owned(),
            invite_call(ORG, json!({"department": "trading"})),
            invite_call(ORG, json!({"department": "ghost-department"})),
        ),
        (
            "account".to_owned(),
            invite_call(ORG, restricted(ACME_ACCOUNT)),
            invite_call(ORG, restricted("ghost-account")),
        ),
        (
            "another organization's account".to_owned(),
            invite_call(ORG, restricted(GLOBEX_ACCOUNT)),
            invite_call(ORG, restricted("ghost-account")),
        ),
        (
            "department deletion".to_owned(),
            Call::delete(format!("/v1/orgs/{ORG}/departments/trading")),
            Call::delete(format!("/v1/orgs/{ORG}/departments/ghost-department")),
        ),
    ];

    // Act + Assert
    assert_indistinguishable(&w.app, &pairs).await;
}

on_both_backends!(a_manager_of_another_organization_cannot_tell_its_accounts_from_missing_ones);
async fn a_manager_of_another_organization_cannot_tell_its_accounts_from_missing_ones() {
    // Arrange: Gwen manages globex and restricts an invitee of globex to
    // an account of acme, or to one that exists nowhere.
    let w = world().await;
    let restricted = |id: &str| {
        person(
            "newcomer@example.org",
            json!({"permissions": {"accounts": "Read"}, "restrictions": {"active": [id]}}),
        )
    };

    // Act
    let acme_account = w
        .app
        .invite(OTHER_OWNER, "globex", &restricted(ACME_ACCOUNT))
        .await;
    let missing = w
        .app
        .invite(OTHER_OWNER, "globex", &restricted("ghost-account"))
        .await;

    // Assert: the same refusal but for the id the caller sent.
    assert_invalid(&acme_account, "restrictions.active");
    assert_invalid(&missing, "restrictions.active");
    assert_eq!(
        acme_account.text.replace(ACME_ACCOUNT, "ID"),
        missing.text.replace("ghost-account", "ID"),
    );
}

on_both_backends!(an_outsider_cannot_tell_an_organization_from_a_missing_one);
async fn an_outsider_cannot_tell_an_organization_from_a_missing_one() {
    // Arrange
    let w = world().await;
    let pairs: Vec<(String, Call, Call)> = org_calls(ORG, &w.rita)
        .into_iter()
        .zip(org_calls(MISSING_ORG, &w.rita))
        .map(|((what, a), (_, b))| (what.to_owned(), a, b))
        .collect();

    // Act + Assert
    assert_indistinguishable(&w.app, &pairs).await;
    // Each refusal is audited, in the organization probed, existing or not.
    for org in [ORG, MISSING_ORG] {
        let denied: Vec<Value> = w
            .app
            .audit(ADMIN_EMAIL, org, &format!("?user={}", w.zed))
            .await
            .into_iter()
            .filter(|r| str_of(&r["outcome"]).starts_with("denied: "))
            .collect();
        assert!(denied.len() >= pairs.len(), "{org}: {denied:?}");
    }
}

on_both_backends!(an_administrator_still_gets_precise_answers);
async fn an_administrator_still_gets_precise_answers() {
    // Arrange
    let w = world().await;
    let app = &w.app;
    let restricted =
        json!({"permissions": {"accounts": "Read"}, "restrictions": {"active": ["ghost-account"]}});

    // Act
    let unknown_member: Vec<(&str, Reply)> = {
        let mut out = Vec::new();
        for (what, call) in member_calls(ORG, GHOST)
            .into_iter()
            .chain(invitation_calls(ORG, GHOST))
        {
            let actor = if what == "agent approval" {
                ADMIN_EMAIL
            } else {
                OWNER
            };
            out.push((what, call.send(app, actor).await));
        }
        out
    };
    let resend_active = invitation_calls(ORG, &w.rita)[0].1.send(app, OWNER).await;
    let invite_member = app
        .invite_email(OWNER, ORG, "rita@acme.example", json!({}))
        .await;
    let department = invite_call(ORG, json!({"department": "ghost-department"}))
        .send(app, OWNER)
        .await;
    let account = invite_call(ORG, restricted).send(app, OWNER).await;
    let dry_run_member = dry_run(ORG, "rita@acme.example").send(app, OWNER).await;
    let admin_missing_members = Call::get(format!("/v1/orgs/{MISSING_ORG}/members"))
        .send(app, ADMIN_EMAIL)
        .await;
    let admin_missing_invite = invite_call(MISSING_ORG, json!({}))
        .send(app, ADMIN_EMAIL)
        .await;
    let admin_missing_member = member_calls(MISSING_ORG, &w.rita)[1]
        .1
        .send(app, ADMIN_EMAIL)
        .await;

    // Assert
    for (what, reply) in &unknown_member {
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{what}: {}",
            reply.text
        );
    }
    assert_eq!(
        resend_active.status,
        StatusCode::CONFLICT,
        "{}",
        resend_active.text
    );
    assert_eq!(
        invite_member.status,
        StatusCode::CONFLICT,
        "{}",
        invite_member.text
    );
    assert_invalid(&department, "department");
    assert_invalid(&account, "restrictions.active");
    assert_eq!(
        dry_run_member.status,
        StatusCode::OK,
        "{}",
        dry_run_member.text
    );
    assert!(
        str_of(&dry_run_member.body["rows"][0]["error"]).contains("already a member"),
        "{}",
        dry_run_member.text
    );
    // A system administrator may act on any organization, so may learn
    // that one does not exist.
    for reply in [
        &admin_missing_members,
        &admin_missing_invite,
        &admin_missing_member,
    ] {
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
        assert!(
            reply.message().contains("no organization `nowhere`"),
            "{}",
            reply.text
        );
    }
}
