//! The AuthZEN search APIs (subject, resource, action) find exactly what
//! single decisions allow: checked exhaustively on the example
//! organizations, for every user, action, resource type and resource.

use std::collections::BTreeMap;
use std::str::FromStr;

use cedar_policy::{EntityTypeName, Schema};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp, example_entities, repo_dir};

/// The shipped schema.
fn schema() -> Schema {
    let text = std::fs::read_to_string(repo_dir().join("schema/cedargate.cedarschema"))
        .expect("read the schema");
    Schema::from_cedarschema_str(&text)
        .expect("the schema parses")
        .0
}

/// Stored ids of the example, by entity type.
fn stored() -> BTreeMap<String, Vec<String>> {
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in example_entities().as_array().into_iter().flatten() {
        let (Some(ty), Some(id)) = (e["uid"]["type"].as_str(), e["uid"]["id"].as_str()) else {
            continue;
        };
        by_type
            .entry(ty.to_owned())
            .or_default()
            .push(id.to_owned());
    }
    for ids in by_type.values_mut() {
        ids.sort();
    }
    by_type
}

/// Each action of the schema with the resource types it applies to
/// (principals are `User` throughout).
fn actions(schema: &Schema) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = schema
        .actions()
        .filter_map(|a| {
            let types: Vec<String> = schema
                .resources_for_action(a)?
                .map(ToString::to_string)
                .collect();
            (!types.is_empty()).then(|| (a.id().unescaped().to_owned(), types))
        })
        .collect();
    out.sort();
    out
}

/// The single decisions on `items` (AuthZEN evaluations), in order.
async fn decisions(api: &Api, context: &Value, items: Vec<Value>) -> Vec<bool> {
    if items.is_empty() {
        return Vec::new();
    }
    let (status, answer) = api
        .post_json(
            "/access/v1/evaluations",
            &json!({"context": context, "evaluations": items}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["evaluations"]
        .as_array()
        .expect("evaluations")
        .iter()
        .map(|e| e["decision"].as_bool().expect("a decision"))
        .collect()
}

fn ids(answer: &Value, key: &str) -> Vec<String> {
    answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {answer}"))
        .iter()
        .map(|r| r[key].as_str().expect("a string").to_owned())
        .collect()
}

fn entity(kind: &str, id: &str) -> Value {
    json!({"type": kind, "id": id})
}

on_both_backends!(resource_and_subject_searches_find_exactly_what_single_decisions_allow);
async fn resource_and_subject_searches_find_exactly_what_single_decisions_allow() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let (schema, stored) = (schema(), stored());
    let users = &stored["User"];
    let mut searched = 0;
    let mut found = 0;

    for context in [json!({}), json!({"mfa": true})] {
        for (action, types) in actions(&schema) {
            for ty in &types {
                let resources = stored.get(ty).cloned().unwrap_or_default();
                for user in users {
                    // Act
                    let (status, answer) = app
                        .post_json(
                            "/access/v1/search/resource",
                            &json!({"subject": entity("User", user), "action": {"name": action},
                                    "resource": {"type": ty}, "context": context}),
                        )
                        .await;
                    let items = resources
                        .iter()
                        .map(|r| json!({"subject": entity("User", user), "action": {"name": action}, "resource": entity(ty, r)}))
                        .collect();
                    let allowed: Vec<String> = resources
                        .iter()
                        .zip(decisions(&app, &context, items).await)
                        .filter(|(_, allow)| *allow)
                        .map(|(r, _)| r.clone())
                        .collect();

                    // Assert
                    assert_eq!(status, StatusCode::OK, "{answer}");
                    assert_eq!(
                        ids(&answer, "id"),
                        allowed,
                        "resources {user} may {action} of type {ty} in {context}"
                    );
                    searched += 1;
                    found += allowed.len();
                }
                for resource in &resources {
                    let (status, answer) = app
                        .post_json(
                            "/access/v1/search/subject",
                            &json!({"subject": {"type": "User"}, "action": {"name": action},
                                    "resource": entity(ty, resource), "context": context}),
                        )
                        .await;
                    let items = users
                        .iter()
                        .map(|u| json!({"subject": entity("User", u), "action": {"name": action}, "resource": entity(ty, resource)}))
                        .collect();
                    let allowed: Vec<String> = users
                        .iter()
                        .zip(decisions(&app, &context, items).await)
                        .filter(|(_, allow)| *allow)
                        .map(|(u, _)| u.clone())
                        .collect();
                    assert_eq!(status, StatusCode::OK, "{answer}");
                    assert_eq!(
                        ids(&answer, "id"),
                        allowed,
                        "users who may {action} on {ty}::{resource} in {context}"
                    );
                    searched += 1;
                    found += allowed.len();
                }
            }
        }
    }
    assert!(
        searched > 500 && found > 100,
        "the example exercises the search: {searched} searches, {found} results"
    );
}

on_both_backends!(action_search_finds_exactly_the_actions_single_decisions_allow);
async fn action_search_finds_exactly_the_actions_single_decisions_allow() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let (schema, stored) = (schema(), stored());
    let context = json!({"mfa": true});

    for user in &stored["User"] {
        for ty in ["Organization", "Account", "Generator"] {
            let resource_type = EntityTypeName::from_str(ty).expect("a type");
            let applicable: Vec<String> = actions(&schema)
                .into_iter()
                .filter(|(_, types)| types.iter().any(|t| *t == resource_type.to_string()))
                .map(|(a, _)| a)
                .collect();
            for resource in &stored[ty] {
                // Act
                let (status, answer) = app
                    .post_json(
                        "/access/v1/search/action",
                        &json!({"subject": entity("User", user), "resource": entity(ty, resource), "context": context}),
                    )
                    .await;
                let items = applicable
                    .iter()
                    .map(|a| json!({"subject": entity("User", user), "action": {"name": a}, "resource": entity(ty, resource)}))
                    .collect();
                let allowed: Vec<String> = applicable
                    .iter()
                    .zip(decisions(&app, &context, items).await)
                    .filter(|(_, allow)| *allow)
                    .map(|(a, _)| a.clone())
                    .collect();

                // Assert
                assert_eq!(status, StatusCode::OK, "{answer}");
                assert_eq!(
                    ids(&answer, "name"),
                    allowed,
                    "actions {user} may take on {ty}::{resource}"
                );
            }
        }
    }
}

on_both_backends!(a_search_page_is_read_from_one_store_state_and_names_it);
async fn a_search_page_is_read_from_one_store_state_and_names_it() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let query = json!({"subject": entity("User", "olivia"), "action": {"name": "accounts.read"},
                       "resource": {"type": "Account"}});
    let (_, before) = app.post_json("/access/v1/search/resource", &query).await;
    let mut account = crate::helpers::example_entity("Account", "acme-active-1");
    account["uid"]["id"] = json!("acme-active-0");

    // Act
    let (status, written) = app.put_json("/v1/entities", &json!([account])).await;
    let (_, after) = app.post_json("/access/v1/search/resource", &query).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{written}");
    assert!(
        after["context"]["store_revision"].as_u64() >= written["revision"].as_u64(),
        "{after} after {written}"
    );
    assert_eq!(ids(&after, "id")[0], "acme-active-0", "{after}");
    assert_eq!(ids(&after, "id").len(), ids(&before, "id").len() + 1);
}
