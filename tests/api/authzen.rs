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

/// `POST /access/v1/evaluation`, which must answer 200.
async fn evaluate(app: &TestApp, body: &Value) -> Value {
    let (status, answer) = app.post_json("/access/v1/evaluation", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

fn errors(answer: &Value) -> String {
    answer["context"]["reason_admin"]["errors"].to_string()
}

on_both_backends!(subject_properties_cannot_forge_a_system_administrator);
async fn subject_properties_cannot_forge_a_system_administrator() {
    // Arrange: nina is not in the store, olivia is; the properties of both
    // claim a system administrator.
    let app = TestApp::spawn().await;
    app.load_example().await;
    let forged = |id: &str, action: &str, org_id: &str| {
        json!({
            "subject": {"type": "User", "id": id,
                        "properties": {"email": "x@example.test", "systemAdmin": true}},
            "action": {"name": action},
            "resource": org(org_id),
        })
    };

    // Act
    let create = evaluate(&app, &forged("nina", "organizations.create", "acme")).await;
    let list = evaluate(&app, &forged("olivia", "members.list", "globex")).await;

    // Assert
    for answer in [&create, &list] {
        assert_eq!(answer["decision"], false, "{answer}");
        assert!(
            errors(answer).contains("comes from the entity store only"),
            "{answer}"
        );
    }
}

/// `max` reads an account: Accounts=None at acme, Manage at globex.
fn max_reads_account(properties: Value) -> Value {
    json!({
        "subject": user("max"),
        "action": {"name": "accounts.read"},
        "resource": {"type": "Account", "id": "acme-active-1", "properties": properties},
    })
}

on_both_backends!(resource_properties_cannot_move_a_stored_resource_into_another_tenant);
async fn resource_properties_cannot_move_a_stored_resource_into_another_tenant() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;

    // Act
    let forged = evaluate(&app, &max_reads_account(json!({"tenant": "globex"}))).await;
    let agreeing = evaluate(&app, &max_reads_account(json!({"tenant": "acme"}))).await;

    // Assert
    assert_eq!(forged["decision"], false, "{forged}");
    assert!(
        errors(&forged).contains("the stored attribute `tenant` cannot be overridden"),
        "{forged}"
    );
    assert_eq!(agreeing["decision"], false, "{agreeing}");
    assert_eq!(errors(&agreeing), "[]", "{agreeing}");
}

on_both_backends!(a_host_owned_resource_the_store_does_not_hold_is_described_by_its_properties);
async fn a_host_owned_resource_the_store_does_not_hold_is_described_by_its_properties() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let body = |tenant: &str| {
        json!({
            "subject": user("max"),
            "action": {"name": "accounts.read"},
            "resource": {"type": "Account", "id": "host-7",
                         "properties": {"tenant": tenant, "accountType": "Active", "name": "host-7"}},
            "context": {"mfa": true},
        })
    };

    // Act
    let globex = evaluate(&app, &body("globex")).await;
    let acme = evaluate(&app, &body("acme")).await;

    // Assert
    assert_eq!(globex["decision"], true, "{globex}");
    assert_eq!(acme["decision"], false, "{acme}");
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

on_both_backends!(properties_are_read_by_their_declared_types_and_undeclared_ones_ignored);
async fn properties_are_read_by_their_declared_types_and_undeclared_ones_ignored() {
    // Arrange: dana is in acme's trading department; a host account tagged
    // with a department is visible to that department only.
    let app = TestApp::spawn().await;
    app.load_example().await;
    let body = |department: Value, extra: Value| {
        let mut properties =
            json!({"tenant": "acme", "accountType": "Active", "department": department});
        if let (Some(p), Value::Object(more)) = (properties.as_object_mut(), extra) {
            p.extend(more);
        }
        json!({
            "subject": user("dana"),
            "action": {"name": "accounts.read"},
            "resource": {"type": "Account", "id": "host-9", "properties": properties},
        })
    };

    // Act
    let as_string = evaluate(
        &app,
        &body(json!("Department::\"acme/trading\""), json!({})),
    )
    .await;
    let as_object = evaluate(
        &app,
        &body(
            json!({"type": "Department", "id": "acme/trading"}),
            json!({}),
        ),
    )
    .await;
    let other = evaluate(&app, &body(json!("Department::\"acme/sales\""), json!({}))).await;
    let undeclared = evaluate(
        &app,
        &body(
            json!("Department::\"acme/trading\""),
            json!({"colour": "red", "owner": {"x": 1}}),
        ),
    )
    .await;
    let wrong_type = evaluate(
        &app,
        &body(json!("Department::\"acme/trading\""), json!({"name": 42})),
    )
    .await;

    // Assert
    assert_eq!(as_string["decision"], true, "{as_string}");
    assert_eq!(as_object["decision"], true, "{as_object}");
    assert_eq!(other["decision"], false, "{other}");
    assert_eq!(undeclared["decision"], true, "{undeclared}");
    assert_eq!(wrong_type["decision"], false, "{wrong_type}");
    assert!(
        wrong_type["context"]["reason_admin"]["errors"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "a property of the wrong type denies with the error: {wrong_type}"
    );
}

on_both_backends!(context_keys_the_schema_does_not_declare_are_ignored);
async fn context_keys_the_schema_does_not_declare_are_ignored() {
    // Arrange: globex requires two-step verification (`mfa`).
    let app = TestApp::spawn().await;
    app.load_example().await;
    let body = |context: Value| {
        json!({"subject": user("gwen"), "action": {"name": "organization.read", "properties": {"method": "GET"}},
               "resource": org("globex"), "context": context})
    };

    // Act
    let plain = evaluate(&app, &body(json!({"mfa": true}))).await;
    let extra = evaluate(
        &app,
        &body(json!({"mfa": true, "ip": "10.0.0.1", "time": {"hour": 3}})),
    )
    .await;
    let without = evaluate(&app, &body(json!({"ip": "10.0.0.1"}))).await;
    let wrong = evaluate(&app, &body(json!({"mfa": "yes", "ip": "10.0.0.1"}))).await;

    // Assert
    assert_eq!(plain["decision"], true, "{plain}");
    assert_eq!(extra["decision"], true, "{extra}");
    assert_eq!(without["decision"], false, "{without}");
    assert_eq!(wrong["decision"], false, "{wrong}");
    assert!(
        wrong["context"]["reason_admin"]["errors"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "a declared key of the wrong type denies with the error: {wrong}"
    );
}

on_both_backends!(undeclared_properties_of_a_store_only_subject_are_ignored_not_refused);
async fn undeclared_properties_of_a_store_only_subject_are_ignored_not_refused() {
    // Arrange: `User` comes from the store only; `department` is no
    // attribute of it, so the description says nothing the schema knows.
    let app = TestApp::spawn().await;
    app.load_example().await;
    let mut body = evaluation("olivia", "billing.read", "acme");
    body["subject"]["properties"] = json!({"department": "Sales", "title": "CFO"});

    // Act
    let answer = evaluate(&app, &body).await;

    // Assert
    assert_eq!(answer["decision"], true, "{answer}");
    assert_eq!(
        answer["context"]["reason_admin"]["errors"],
        json!([]),
        "{answer}"
    );
}
