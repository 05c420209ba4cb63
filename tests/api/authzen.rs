//! The AuthZEN Access Evaluation(s) API.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;

fn user(id: &str) -> Value {
    json!({"type": "User", "id": id})
}

fn org(id: &str) -> Value {
    json!({"type": "Organization", "id": id})
}

fn evaluation(subject: &str, action: &str, resource: &str) -> Value {
    json!({"subject": user(subject), "action": {"name": action}, "resource": org(resource)})
}

/// The decisions of an evaluations answer, in order.
fn decisions(answer: &Value) -> Vec<bool> {
    answer["evaluations"]
        .as_array()
        .unwrap_or_else(|| panic!("no `evaluations` in {answer}"))
        .iter()
        .map(|e| {
            e["decision"]
                .as_bool()
                .unwrap_or_else(|| panic!("no boolean decision in {e}"))
        })
        .collect()
}

on_both_backends!(an_evaluation_permits_with_the_determining_policy_as_reason);
async fn an_evaluation_permits_with_the_determining_policy_as_reason() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;

    // Act
    let (status, answer) = app
        .post_json(
            "/access/v1/evaluation",
            &evaluation("olivia", "billing.read", "acme"),
        )
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], true, "{answer}");
    assert_eq!(
        answer["context"]["reason_admin"]["policies"],
        json!(["billing-read"])
    );
    assert_eq!(answer["context"]["policy_revision"], 1);
}

on_both_backends!(an_evaluation_denies_with_the_determining_forbid_as_reason);
async fn an_evaluation_denies_with_the_determining_forbid_as_reason() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;

    // Act
    let (status, answer) = app
        .post_json(
            "/access/v1/evaluation",
            &evaluation("pete", "billing.read", "acme"),
        )
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], false, "{answer}");
    assert_eq!(
        answer["context"]["reason_admin"]["policies"],
        json!(["member-must-be-active"])
    );
}

on_both_backends!(an_evaluation_passes_the_context_to_the_policies);
async fn an_evaluation_passes_the_context_to_the_policies() {
    // Arrange: globex requires MFA.
    let app = TestApp::spawn().await;
    app.load_example().await;
    let mut with_mfa = evaluation("gwen", "billing.read", "globex");
    with_mfa["context"] = json!({"mfa": true});

    // Act
    let (_, without) = app
        .post_json(
            "/access/v1/evaluation",
            &evaluation("gwen", "billing.read", "globex"),
        )
        .await;
    let (status, with) = app.post_json("/access/v1/evaluation", &with_mfa).await;

    // Assert
    assert_eq!(without["decision"], false, "{without}");
    assert_eq!(
        without["context"]["reason_admin"]["policies"],
        json!(["organization-requires-mfa"])
    );
    assert_eq!(status, StatusCode::OK, "{with}");
    assert_eq!(with["decision"], true, "{with}");
}

on_both_backends!(subject_properties_replace_the_stored_entity_for_the_request);
async fn subject_properties_replace_the_stored_entity_for_the_request() {
    // Arrange: nina is not in the store; her properties make her a systemAdmin.
    let app = TestApp::spawn().await;
    app.load_example().await;
    let body = json!({
        "subject": {"type": "User", "id": "nina", "properties": {"email": "nina@example.test", "systemAdmin": true}},
        "action": {"name": "organizations.create"},
        "resource": org("acme"),
    });

    // Act
    let (status, answer) = app.post_json("/access/v1/evaluation", &body).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], true, "{answer}");
    assert_eq!(
        answer["context"]["reason_admin"]["policies"],
        json!(["platform-administer"])
    );
}

on_both_backends!(the_request_id_sent_is_echoed_and_one_is_generated_when_absent);
async fn the_request_id_sent_is_echoed_and_one_is_generated_when_absent() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let body = evaluation("olivia", "billing.read", "acme");

    // Act
    let echoed = app
        .request(Method::POST, "/access/v1/evaluation")
        .header("x-request-id", "req-authzen-42")
        .json(&body)
        .send()
        .await
        .expect("the request is sent");
    let generated_1 = app
        .request(Method::POST, "/access/v1/evaluation")
        .json(&body)
        .send()
        .await
        .expect("the request is sent");
    let generated_2 = app
        .request(Method::POST, "/access/v1/evaluation")
        .json(&body)
        .send()
        .await
        .expect("the request is sent");

    // Assert
    let header = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .map(|v| v.to_str().expect("an ASCII request id").to_owned())
    };
    assert_eq!(echoed.status(), StatusCode::OK);
    assert_eq!(header(&echoed).as_deref(), Some("req-authzen-42"));
    let first = header(&generated_1).expect("a generated request id");
    let second = header(&generated_2).expect("a generated request id");
    assert!(!first.is_empty());
    assert_ne!(first, second, "each request gets its own id");
}

on_both_backends!(evaluations_items_inherit_the_top_level_subject_action_resource_and_context);
async fn evaluations_items_inherit_the_top_level_subject_action_resource_and_context() {
    // Arrange: gwen (globex, MFA required), max (globex billing 0, acme billing 2).
    let app = TestApp::spawn().await;
    app.load_example().await;
    let body = json!({
        "subject": user("gwen"),
        "action": {"name": "billing.read"},
        "resource": org("globex"),
        "context": {"mfa": true},
        "evaluations": [
            {},
            {"context": {"mfa": false}},
            {"action": {"name": "billing.manage"}},
            {"subject": user("max")},
            {"subject": user("max"), "resource": org("acme")},
            {"resource": org("acme")},
        ],
    });

    // Act
    let (status, answer) = app.post_json("/access/v1/evaluations", &body).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        decisions(&answer),
        [true, false, true, false, true, false],
        "{answer}"
    );
    let reasons =
        |i: usize| answer["evaluations"][i]["context"]["reason_admin"]["policies"].clone();
    assert_eq!(reasons(0), json!(["billing-read"]));
    assert_eq!(reasons(1), json!(["organization-requires-mfa"]));
    assert_eq!(reasons(2), json!(["billing-manage"]));
    assert_eq!(reasons(3), json!([]));
    assert_eq!(reasons(4), json!(["billing-read"]));
}

on_both_backends!(evaluations_execute_all_answers_every_item_by_default_and_when_asked);
async fn evaluations_execute_all_answers_every_item_by_default_and_when_asked() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let items = json!([
        {"subject": user("pete")},
        {"subject": user("olivia")},
        {"subject": user("ivan")},
        {"subject": user("rita")},
    ]);
    let defaults =
        json!({"action": {"name": "billing.read"}, "resource": org("acme"), "evaluations": items});
    let mut explicit = defaults.clone();
    explicit["options"] = json!({"evaluations_semantic": "execute_all"});

    // Act
    let (status, by_default) = app.post_json("/access/v1/evaluations", &defaults).await;
    let (_, asked) = app.post_json("/access/v1/evaluations", &explicit).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{by_default}");
    assert_eq!(decisions(&by_default), [false, true, false, true]);
    assert_eq!(decisions(&asked), [false, true, false, true]);
}

on_both_backends!(evaluations_deny_on_first_deny_stops_after_the_first_deny);
async fn evaluations_deny_on_first_deny_stops_after_the_first_deny() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let body = json!({
        "action": {"name": "billing.read"},
        "resource": org("acme"),
        "evaluations": [
            {"subject": user("olivia")},
            {"subject": user("rita")},
            {"subject": user("pete")},
            {"subject": user("olivia")},
            {"subject": user("ivan")},
        ],
        "options": {"evaluations_semantic": "deny_on_first_deny"},
    });

    // Act
    let (status, answer) = app.post_json("/access/v1/evaluations", &body).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(decisions(&answer), [true, true, false], "{answer}");
    assert_eq!(
        answer["evaluations"][2]["context"]["reason_admin"]["policies"],
        json!(["member-must-be-active"])
    );
}

on_both_backends!(evaluations_permit_on_first_permit_stops_after_the_first_permit);
async fn evaluations_permit_on_first_permit_stops_after_the_first_permit() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let body = json!({
        "action": {"name": "billing.read"},
        "resource": org("acme"),
        "evaluations": [
            {"subject": user("pete")},
            {"subject": user("nora")},
            {"subject": user("rita")},
            {"subject": user("ivan")},
            {"subject": user("olivia")},
        ],
        "options": {"evaluations_semantic": "permit_on_first_permit"},
    });

    // Act
    let (status, answer) = app.post_json("/access/v1/evaluations", &body).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(decisions(&answer), [false, false, true], "{answer}");
}

on_both_backends!(evaluations_without_items_is_one_evaluation_of_the_top_level_fields);
async fn evaluations_without_items_is_one_evaluation_of_the_top_level_fields() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let empty = json!({"subject": user("olivia"), "action": {"name": "billing.read"}, "resource": org("acme"), "evaluations": []});
    let absent = json!({"subject": user("pete"), "action": {"name": "billing.read"}, "resource": org("acme")});

    // Act
    let (status, answer) = app.post_json("/access/v1/evaluations", &empty).await;
    let (absent_status, absent_answer) = app.post_json("/access/v1/evaluations", &absent).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], true, "{answer}");
    assert_eq!(
        answer["context"]["reason_admin"]["policies"],
        json!(["billing-read"])
    );
    assert_eq!(absent_status, StatusCode::OK, "{absent_answer}");
    assert_eq!(absent_answer["decision"], false, "{absent_answer}");
}

on_both_backends!(an_unknown_evaluations_semantic_is_a_400);
async fn an_unknown_evaluations_semantic_is_a_400() {
    // Arrange
    let app = TestApp::spawn().await;
    let body = json!({
        "subject": user("olivia"), "action": {"name": "billing.read"}, "resource": org("acme"),
        "evaluations": [{}],
        "options": {"evaluations_semantic": "deny_on_a_whim"},
    });

    // Act
    let (status, answer) = app.post_json("/access/v1/evaluations", &body).await;

    // Assert
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "bad_request");
}
