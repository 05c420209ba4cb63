//! The AuthZEN Authorization API 1.0 certification scenario, level by
//! level (Basic, Batch, Search, Discovery; Core and Properties), on its
//! own fixture: `tests/fixtures/authzen` (users alice and bob the admin,
//! records record-1 active and record-2 archived, actions read, write and
//! delete with `soft`). Test numbers are the scenario's.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp, repo_dir};

async fn spawn_fixture() -> TestApp {
    let fixture = repo_dir().join("tests/fixtures/authzen");
    TestApp::spawn_with(|c| {
        c.policy.policies = fixture.join("policies");
        c.policy.schema = fixture.join("schema");
        c.entities = Some(fixture.join("entities.json"));
        c.invites.public_url = Some("https://pdp.example.com".to_owned());
    })
    .await
}

fn alice() -> Value {
    json!({"type": "user", "id": "alice"})
}

fn bob() -> Value {
    json!({"type": "user", "id": "bob"})
}

fn bob_admin() -> Value {
    json!({"type": "user", "id": "bob", "properties": {"role": "admin"}})
}

fn record_1() -> Value {
    json!({"type": "record", "id": "record-1"})
}

fn record_2_archived() -> Value {
    json!({"type": "record", "id": "record-2", "properties": {"status": "archived"}})
}

fn read() -> Value {
    json!({"name": "read"})
}

fn write() -> Value {
    json!({"name": "write"})
}

fn eval(subject: Value, action: Value, resource: Value) -> Value {
    json!({"subject": subject, "action": action, "resource": resource})
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

on_both_backends!(basic_evaluations_reach_the_required_decisions);
async fn basic_evaluations_reach_the_required_decisions() {
    // Arrange
    let app = spawn_fixture().await;
    let cases = [
        ("2.2.1", eval(alice(), read(), record_1()), true),
        ("2.2.2", eval(bob(), write(), record_1()), false),
        (
            "2.2.3 context",
            with(
                eval(alice(), read(), record_1()),
                "context",
                json!({"time": "2025-06-27T18:03-07:00", "ip": "192.168.1.1"}),
            ),
            true,
        ),
        ("2.2.4", eval(alice(), write(), record_2_archived()), false),
        (
            "2.2.5",
            eval(bob_admin(), write(), record_2_archived()),
            true,
        ),
        (
            "2.2.6",
            eval(
                alice(),
                json!({"name": "delete", "properties": {"soft": true}}),
                record_1(),
            ),
            true,
        ),
        (
            "2.2.7",
            eval(
                alice(),
                json!({"name": "delete", "properties": {"soft": false}}),
                record_1(),
            ),
            false,
        ),
        (
            "2.2.8 properties everywhere",
            eval(
                json!({"type": "user", "id": "alice", "properties": {"department": "Sales", "role": "manager"}}),
                json!({"name": "read", "properties": {"method": "GET"}}),
                json!({"type": "record", "id": "record-1", "properties": {"status": "active", "owner": "bob"}}),
            ),
            true,
        ),
        (
            "2.2.9 unknown fields",
            with(
                with(eval(alice(), read(), record_1()), "foo", json!("bar")),
                "futureField",
                json!({"nested": true}),
            ),
            true,
        ),
    ];

    for (test, body, expected) in cases {
        // Act
        let (status, answer) = app.post_json("/access/v1/evaluation", &body).await;
        let (_, again) = app.post_json("/access/v1/evaluation", &body).await;

        // Assert
        assert_eq!(status, StatusCode::OK, "{test}: {answer}");
        assert_eq!(answer["decision"], expected, "{test}: {answer}");
        assert!(answer["context"].is_object(), "{test} (2.3): {answer}");
        assert_eq!(
            again["decision"], expected,
            "{test} (2.6, repeated): {again}"
        );
    }
}

on_both_backends!(malformed_evaluations_are_400s);
async fn malformed_evaluations_are_400s() {
    // Arrange
    let app = spawn_fixture().await;
    let cases = [
        (
            "no subject",
            json!({"action": read(), "resource": record_1()}),
        ),
        (
            "no action",
            json!({"subject": alice(), "resource": record_1()}),
        ),
        ("no resource", json!({"subject": alice(), "action": read()})),
        (
            "subject without type",
            eval(json!({"id": "alice"}), read(), record_1()),
        ),
        (
            "subject without id",
            eval(json!({"type": "user"}), read(), record_1()),
        ),
        ("an empty action", eval(alice(), json!({}), record_1())),
        (
            "resource without type",
            eval(alice(), read(), json!({"id": "record-1"})),
        ),
        (
            "resource without id",
            eval(alice(), read(), json!({"type": "record"})),
        ),
        ("a string subject", eval(json!("alice"), read(), record_1())),
        (
            "a numeric action name",
            eval(alice(), json!({"name": 123}), record_1()),
        ),
    ];
    let raw = [
        ("text/plain", "{}"),
        ("application/json", "{\"subject\": "),
        ("application/json", ""),
    ];

    for (what, body) in cases {
        // Act
        let (status, answer) = app.post_json("/access/v1/evaluation", &body).await;

        // Assert
        assert_eq!(status, StatusCode::BAD_REQUEST, "2.4 {what}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{what}: {answer}");
    }
    for (content_type, body) in raw {
        let request = app
            .request(Method::POST, "/access/v1/evaluation")
            .header("content-type", content_type)
            .body(body);
        let (status, answer) = Api::send(request).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "2.4 {content_type} {body:?}: {answer}"
        );
    }
}

on_both_backends!(batches_inherit_defaults_and_answer_every_item_in_order);
async fn batches_inherit_defaults_and_answer_every_item_in_order() {
    // Arrange
    let app = spawn_fixture().await;
    let record_2 = json!({"type": "record", "id": "record-2"});
    let cases = [
        (
            "3.2.1",
            json!({"subject": alice(), "action": read(), "evaluations": [{"resource": record_1()}, {"resource": record_2}]}),
            Some(vec![true, true]),
        ),
        (
            "3.2.2",
            json!({"subject": bob(), "resource": record_1(), "evaluations": [{"action": read()}, {"action": write()}]}),
            Some(vec![true, false]),
        ),
        (
            "3.2.3",
            json!({"subject": alice(), "action": write(), "evaluations": [
                {"resource": {"type": "record", "id": "record-1", "properties": {"status": "active"}}},
                {"resource": record_2_archived()}]}),
            Some(vec![true, false]),
        ),
        (
            "3.2.4",
            json!({"action": write(), "resource": record_2_archived(), "evaluations": [{"subject": alice()}, {"subject": bob_admin()}]}),
            Some(vec![false, true]),
        ),
        (
            "3.2.5",
            json!({"evaluations": [eval(alice(), read(), record_1()), eval(bob(), write(), record_1())]}),
            Some(vec![true, false]),
        ),
        (
            "3.2.6 context defaults and overrides",
            json!({"subject": alice(), "action": read(), "context": {"time": "2025-06-27T18:03-07:00"},
                   "evaluations": [{"resource": record_1()},
                                   {"resource": record_2, "context": {"time": "2025-06-27T19:00-07:00", "source": "batch-override"}}]}),
            None,
        ),
        (
            "3.2.7 an item's resource without type takes the default's",
            json!({"subject": alice(), "action": write(), "resource": {"type": "record"}, "evaluations": [
                {"resource": {"id": "record-1", "properties": {"status": "active"}}},
                {"resource": record_2_archived()}]}),
            Some(vec![true, false]),
        ),
    ];

    for (test, body, expected) in cases {
        // Act
        let (status, answer) = app.post_json("/access/v1/evaluations", &body).await;

        // Assert
        assert_eq!(status, StatusCode::OK, "{test}: {answer}");
        let items = answer["evaluations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(items.len(), 2, "{test} (3.3): {answer}");
        assert!(answer.get("decision").is_none(), "{test} (3.3): {answer}");
        let got: Vec<bool> = items
            .iter()
            .filter_map(|i| i["decision"].as_bool())
            .collect();
        assert_eq!(
            got.len(),
            2,
            "{test}: every item has a boolean decision: {answer}"
        );
        if let Some(expected) = expected {
            assert_eq!(got, expected, "{test}: {answer}");
        }
    }
}

on_both_backends!(a_batch_item_that_is_no_evaluation_is_a_deny_in_its_place);
async fn a_batch_item_that_is_no_evaluation_is_a_deny_in_its_place() {
    // Arrange
    let app = spawn_fixture().await;
    let body = json!({"subject": alice(), "action": read(),
                      "evaluations": [{"resource": record_1()}, {}, {"resource": record_1(), "subject": 7}]});

    // Act
    let (status, answer) = app.post_json("/access/v1/evaluations", &body).await;
    let (deny_first, stopped) = app
        .post_json(
            "/access/v1/evaluations",
            &with(
                body.clone(),
                "options",
                json!({"evaluations_semantic": "deny_on_first_deny"}),
            ),
        )
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK, "3.4.1: {answer}");
    let items = answer["evaluations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(items.len(), 3, "{answer}");
    assert_eq!(items[0]["decision"], true, "{answer}");
    for item in &items[1..] {
        assert_eq!(item["decision"], false, "{answer}");
        assert_eq!(item["context"]["error"]["code"], "bad_request", "{answer}");
    }
    assert!(
        items[1]["context"]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("resource")),
        "{answer}"
    );
    assert_eq!(deny_first, StatusCode::OK);
    assert_eq!(
        stopped["evaluations"].as_array().map(Vec::len),
        Some(2),
        "{stopped}"
    );
}

on_both_backends!(a_batch_without_items_is_one_evaluation);
async fn a_batch_without_items_is_one_evaluation() {
    // Arrange
    let app = spawn_fixture().await;
    let single = eval(alice(), read(), record_1());

    for (test, body) in [
        ("3.4.2 no evaluations", single.clone()),
        (
            "3.4.3 empty evaluations",
            with(single, "evaluations", json!([])),
        ),
    ] {
        // Act
        let (status, answer) = app.post_json("/access/v1/evaluations", &body).await;

        // Assert
        assert_eq!(status, StatusCode::OK, "{test}: {answer}");
        assert_eq!(answer["decision"], true, "{test}: {answer}");
    }
}

/// The `(type, id)` or `name` of each result of a search answer.
fn found(answer: &Value, key: &str) -> Vec<String> {
    answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no `results` in {answer}"))
        .iter()
        .map(|r| {
            r[key]
                .as_str()
                .unwrap_or_else(|| panic!("a result without `{key}`: {r}"))
                .to_owned()
        })
        .collect()
}

on_both_backends!(searches_find_the_required_entities_and_actions);
async fn searches_find_the_required_entities_and_actions() {
    // Arrange
    let app = spawn_fixture().await;
    let user = json!({"type": "user"});
    let record = json!({"type": "record"});
    let cases = [
        (
            "4.2.1",
            "subject",
            json!({"subject": user, "action": read(), "resource": record_1()}),
            "id",
            vec!["alice", "bob"],
        ),
        (
            "4.2.2 context",
            "subject",
            json!({"subject": user, "action": read(), "resource": record_1(), "context": {"ip": "10.0.0.1"}}),
            "id",
            vec!["alice", "bob"],
        ),
        (
            "4.2.3 a subject id is ignored",
            "subject",
            json!({"subject": {"type": "user", "id": "carol"}, "action": read(), "resource": record_1()}),
            "id",
            vec!["alice", "bob"],
        ),
        (
            "4.2.4",
            "subject",
            json!({"subject": user, "action": write(), "resource": record_2_archived()}),
            "id",
            vec!["bob"],
        ),
        (
            "4.3.1",
            "resource",
            json!({"subject": alice(), "action": read(), "resource": record}),
            "id",
            vec!["record-1", "record-2"],
        ),
        (
            "4.3.1 write",
            "resource",
            json!({"subject": alice(), "action": write(), "resource": record}),
            "id",
            vec!["record-1"],
        ),
        (
            "4.3.3",
            "resource",
            json!({"subject": bob_admin(), "action": write(), "resource": record}),
            "id",
            vec!["record-2"],
        ),
        (
            "4.4.1",
            "action",
            json!({"subject": alice(), "resource": record_1()}),
            "name",
            vec!["read", "write"],
        ),
        (
            "4.4.2 context",
            "action",
            json!({"subject": alice(), "resource": record_1(), "context": {}}),
            "name",
            vec!["read", "write"],
        ),
        (
            "4.4.3",
            "action",
            json!({"subject": bob_admin(), "resource": record_2_archived()}),
            "name",
            vec!["read", "write"],
        ),
        (
            "4.6 an unknown subject id",
            "action",
            json!({"subject": {"type": "user", "id": "nonexistent-user"}, "resource": record_1()}),
            "name",
            vec![],
        ),
        (
            "4.6 an unknown type",
            "subject",
            json!({"subject": {"type": "spaceship"}, "action": read(), "resource": record_1()}),
            "id",
            vec![],
        ),
        (
            "4.6 an unknown action",
            "resource",
            json!({"subject": alice(), "action": {"name": "fly"}, "resource": record}),
            "id",
            vec![],
        ),
    ];

    for (test, endpoint, body, key, expected) in cases {
        // Act
        let (status, answer) = app
            .post_json(&format!("/access/v1/search/{endpoint}"), &body)
            .await;

        // Assert
        assert_eq!(status, StatusCode::OK, "{test}: {answer}");
        assert_eq!(found(&answer, key), expected, "{test}: {answer}");
        if key == "id" {
            let wanted = if endpoint == "subject" {
                "user"
            } else {
                "record"
            };
            for result in answer["results"].as_array().into_iter().flatten() {
                assert_eq!(result["type"], wanted, "{test}: {answer}");
            }
        }
        assert_eq!(
            answer["page"]["next_token"], "",
            "{test}: one page: {answer}"
        );
    }
}

on_both_backends!(malformed_searches_are_400s);
async fn malformed_searches_are_400s() {
    // Arrange
    let app = spawn_fixture().await;
    let record = json!({"type": "record"});
    let cases = [
        (
            "subject",
            json!({"subject": {"type": "user"}, "resource": record_1()}),
        ),
        ("resource", json!({"action": read(), "resource": record})),
        ("action", json!({"subject": alice()})),
        (
            "subject",
            json!({"subject": {"type": "user"}, "action": read(), "resource": record}),
        ),
        (
            "resource",
            json!({"subject": {"type": "user"}, "action": read(), "resource": record}),
        ),
        (
            "resource",
            json!({"subject": alice(), "action": read(), "resource": record, "page": {"limit": 0}}),
        ),
        (
            "resource",
            json!({"subject": alice(), "action": read(), "resource": record, "page": {"token": "not-ours"}}),
        ),
    ];

    for (endpoint, body) in cases {
        // Act
        let (status, answer) = app
            .post_json(&format!("/access/v1/search/{endpoint}"), &body)
            .await;

        // Assert
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "4.7 {endpoint} {body}: {answer}"
        );
    }
}

on_both_backends!(search_pages_follow_tokens_to_the_whole_result);
async fn search_pages_follow_tokens_to_the_whole_result() {
    // Arrange
    let app = spawn_fixture().await;
    let query = json!({"subject": {"type": "user"}, "action": read(), "resource": record_1()});

    // Act
    let mut pages = Vec::new();
    let mut page = json!({"limit": 1});
    loop {
        let (status, answer) = app
            .post_json(
                "/access/v1/search/subject",
                &with(query.clone(), "page", page.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "4.5: {answer}");
        let token = answer["page"]["next_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        pages.push(answer);
        if token.is_empty() || pages.len() > 10 {
            break;
        }
        page = json!({"limit": 1, "token": token});
    }
    let (status, other) = app
        .post_json(
            "/access/v1/search/subject",
            &with(
                with(query.clone(), "action", write()),
                "page",
                json!({"limit": 1, "token": pages[0]["page"]["next_token"]}),
            ),
        )
        .await;

    // Assert
    let ids: Vec<String> = pages.iter().flat_map(|p| found(p, "id")).collect();
    assert_eq!(ids, ["alice", "bob"], "{pages:?}");
    assert_eq!(
        pages.len(),
        2,
        "the last page is the one with the last result: {pages:?}"
    );
    assert_eq!(pages[0]["page"]["count"], 1);
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a token of another query is refused: {other}"
    );
}

on_both_backends!(the_metadata_lists_every_endpoint_under_the_public_url);
async fn the_metadata_lists_every_endpoint_under_the_public_url() {
    // Arrange
    let app = spawn_fixture().await;
    let request = app
        .request(Method::GET, "/.well-known/authzen-configuration")
        .header("host", "attacker.example");

    // Act
    let (status, metadata) = Api::send(request).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{metadata}");
    assert_eq!(
        metadata,
        json!({
            "policy_decision_point": "https://pdp.example.com",
            "access_evaluation_endpoint": "https://pdp.example.com/access/v1/evaluation",
            "access_evaluations_endpoint": "https://pdp.example.com/access/v1/evaluations",
            "search_subject_endpoint": "https://pdp.example.com/access/v1/search/subject",
            "search_resource_endpoint": "https://pdp.example.com/access/v1/search/resource",
            "search_action_endpoint": "https://pdp.example.com/access/v1/search/action",
        })
    );
}
