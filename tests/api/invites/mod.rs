//! The invitation service through HTTP, against the real server and a real
//! store: invitations and their links, decisions that follow every change,
//! input rules (E3, E19-E22), the policies on user administration
//! (E12-E17), rate limits (E23), link hygiene (R59, E6-E11), concurrency
//! (E10), existing accounts (R48, E30), agents, bulk CSV and the audit trail.
//! The shared arrangement (the organization `acme` and its owner) is here.

mod accept;
mod audit;
mod bulk;
mod departments;
mod email_change;
mod existing_account;
mod jobs;
mod leaks;
mod lifecycle;
mod races;
mod reactivate;
mod rules;
mod settings;
mod validation;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::invite_helpers::Reply;

const ORG: &str = "acme";
const OWNER: &str = "olivia@acme.example";

/// An app with the organization `acme` whose owner Olivia has accepted.
async fn acme() -> (TestApp, String) {
    let app = TestApp::spawn_with_admin().await;
    let owner_id = app.create_org(ORG, OWNER).await;
    (app, owner_id)
}

fn members_path(user_id: &str) -> String {
    format!("/v1/orgs/{ORG}/members/{user_id}")
}

async fn set_status(app: &TestApp, actor: &str, user_id: &str, status: &str) -> Reply {
    app.put(
        actor,
        &format!("{}/status", members_path(user_id)),
        &json!({"status": status}),
    )
    .await
}

async fn bulk(app: &TestApp, actor: &str, query: &str, csv: &str) -> Reply {
    let request = app
        .request(
            Method::POST,
            &format!("/v1/orgs/{ORG}/invitations/bulk{query}"),
        )
        .header("X-Cedargate-Actor", actor)
        .header("Content-Type", "text/csv")
        .body(csv.to_owned());
    TestApp::reply(request).await
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}
