//! Authentication, the native decision API, bad input, fail-closed answers,
//! metrics, the OpenAPI document and the decision log.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp, action, example_entity, uid};

/// Every endpoint behind the token, with a body it would accept.
fn protected_endpoints() -> Vec<(Method, &'static str, Option<Value>)> {
    let native = json!({"principal": uid("User", "olivia"), "action": action("billing.read"), "resource": uid("Organization", "acme")});
    let authzen = json!({
        "subject": {"type": "User", "id": "olivia"},
        "action": {"name": "billing.read"},
        "resource": {"type": "Organization", "id": "acme"},
    });
    vec![
        (Method::POST, "/v1/is_authorized", Some(native.clone())),
        (
            Method::POST,
            "/v1/is_authorized/batch",
            Some(json!({"requests": [native]})),
        ),
        (Method::POST, "/access/v1/evaluation", Some(authzen.clone())),
        (
            Method::POST,
            "/access/v1/evaluations",
            Some(json!({"evaluations": [authzen]})),
        ),
        (
            Method::PUT,
            "/v1/entities",
            Some(json!([example_entity("Organization", "acme")])),
        ),
        (Method::DELETE, "/v1/entities/Organization/acme", None),
        (Method::GET, "/v1/policies", None),
        (Method::POST, "/v1/policies/reload", None),
        (Method::GET, "/metrics", None),
        (Method::GET, "/openapi.json", None),
    ]
}

on_both_backends!(health_readiness_and_authzen_discovery_answer_without_a_token);
async fn health_readiness_and_authzen_discovery_answer_without_a_token() {
    // Arrange
    let app = TestApp::spawn().await;

    for path in ["/healthz", "/readyz", "/.well-known/authzen-configuration"] {
        // Act
        let (status, body) = Api::send(app.client.get(app.url(path))).await;

        // Assert
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (_, discovery) = Api::send(
        app.client
            .get(app.url("/.well-known/authzen-configuration")),
    )
    .await;
    assert_eq!(
        discovery["access_evaluation_endpoint"],
        format!("{}/access/v1/evaluation", app.address)
    );
}

on_both_backends!(
    every_other_endpoint_answers_401_with_a_json_error_without_the_token_or_with_a_wrong_one
);
async fn every_other_endpoint_answers_401_with_a_json_error_without_the_token_or_with_a_wrong_one()
{
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;

    for (method, path, body) in protected_endpoints() {
        for token in [None, Some("wrong-token"), Some("test-token-but-longer")] {
            let mut request = app.client.request(method.clone(), app.url(path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }

            // Act
            let (status, answer) = Api::send(request).await;

            // Assert
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}: {answer}"
            );
            assert_eq!(
                answer["error"]["code"], "unauthorized",
                "{method} {path}: {answer}"
            );
            assert!(answer["error"]["message"].is_string(), "{answer}");
        }
    }
    // Nothing was deleted by the refused DELETE.
    let (status, _) = app.delete("/v1/entities/Organization/acme").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

on_both_backends!(the_token_opens_every_protected_endpoint);
async fn the_token_opens_every_protected_endpoint() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;

    for (method, path, body) in protected_endpoints() {
        let mut request = app.request(method.clone(), path);
        if let Some(body) = &body {
            request = request.json(body);
        }

        // Act
        let status = request.send().await.expect("the request is sent").status();

        // Assert
        assert!(status.is_success(), "{method} {path}: {status}");
    }
}

on_both_backends!(an_active_member_with_billing_read_is_allowed_by_billing_read);
async fn an_active_member_with_billing_read_is_allowed_by_billing_read() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;

    // Act
    let answer = app
        .is_authorized(
            uid("User", "olivia"),
            action("billing.read"),
            uid("Organization", "acme"),
            json!({}),
        )
        .await;

    // Assert
    assert_eq!(answer["decision"], "allow", "{answer}");
    assert_eq!(answer["reasons"], json!(["billing-read"]));
    assert_eq!(answer["errors"], json!([]));
    assert_eq!(answer["policy_revision"], 1);
    assert_eq!(answer["cached"], false);
}

on_both_backends!(a_pending_member_is_denied_by_member_must_be_active);
async fn a_pending_member_is_denied_by_member_must_be_active() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;

    // Act
    let answer = app
        .is_authorized(
            uid("User", "pete"),
            action("billing.read"),
            uid("Organization", "acme"),
            json!({}),
        )
        .await;

    // Assert
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(answer["reasons"], json!(["member-must-be-active"]));
    assert_eq!(answer["errors"], json!([]));
    assert_eq!(answer["policy_revision"], 1);
}

on_both_backends!(uids_given_as_objects_are_decided_like_uid_strings);
async fn uids_given_as_objects_are_decided_like_uid_strings() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let as_string = app
        .is_authorized(
            uid("User", "olivia"),
            action("billing.read"),
            uid("Organization", "acme"),
            json!({}),
        )
        .await;

    // Act
    let as_object = app
        .is_authorized(
            json!({"type": "User", "id": "olivia"}),
            json!({"type": "Action", "id": "billing.read"}),
            json!({"type": "Organization", "id": "acme"}),
            json!({}),
        )
        .await;

    // Assert
    assert_eq!(as_object["decision"], "allow", "{as_object}");
    assert_eq!(as_object["reasons"], as_string["reasons"]);
    assert_eq!(as_object["policy_revision"], 1);
}

/// A user the store does not hold, and their membership in acme.
fn newcomer_entities() -> Value {
    let mut membership = example_entity("Membership", "acme/rita");
    membership["uid"]["id"] = json!("acme/nina");
    membership["attrs"]["user"] = json!({"__entity": {"type": "User", "id": "nina"}});
    json!([
        {
            "uid": {"type": "User", "id": "nina"},
            "attrs": {"email": "nina@example.test", "systemAdmin": false},
            "parents": [],
            "tags": {"acme": {"__entity": {"type": "Membership", "id": "acme/nina"}}},
        },
        membership,
    ])
}

on_both_backends!(request_entities_of_store_only_types_are_refused_and_deny);
async fn request_entities_of_store_only_types_are_refused_and_deny() {
    // Arrange: the model keeps users and memberships in the store only.
    let app = TestApp::spawn().await;
    app.load_example().await;
    let mut inactive = example_entity("Membership", "acme/olivia");
    inactive["attrs"]["status"] = json!("INACTIVE");
    let ask = |principal: &str, entities: Value| {
        json!({"principal": uid("User", principal), "action": action("billing.read"),
               "resource": uid("Organization", "acme"), "entities": entities})
    };

    // Act
    let newcomer = app
        .is_authorized_body(&ask("nina", newcomer_entities()))
        .await;
    let replaced = app
        .is_authorized_body(&ask("olivia", json!([inactive])))
        .await;

    // Assert
    for answer in [&newcomer, &replaced] {
        assert_eq!(answer["decision"], "deny", "{answer}");
        assert!(
            answer["errors"]
                .to_string()
                .contains("comes from the entity store only"),
            "{answer}"
        );
    }
}

on_both_backends!(request_entities_describe_host_owned_resources_the_store_does_not_hold);
async fn request_entities_describe_host_owned_resources_the_store_does_not_hold() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let account = json!({"uid": {"type": "Account", "id": "host-7"},
        "attrs": {"tenant": "globex", "accountType": "Active", "name": "host-7"}, "parents": []});
    let request = json!({"principal": uid("User", "max"), "action": action("accounts.read"),
                         "resource": uid("Account", "host-7"), "context": {"mfa": true}});
    let mut with = request.clone();
    with["entities"] = json!([account]);

    // Act
    let answer = app.is_authorized_body(&with).await;

    // Assert
    assert_eq!(answer["decision"], "allow", "{answer}");
    assert_eq!(answer["reasons"], json!(["accounts-read"]));
    let after = app.is_authorized_body(&request).await;
    assert_eq!(
        after["decision"], "deny",
        "request-scoped entities must not be stored: {after}"
    );
}

/// A request of the batch test and the answer it must get.
struct Case {
    principal: &'static str,
    action: &'static str,
    resource: &'static str,
    decision: &'static str,
    reasons: &'static [&'static str],
}

const CASES: [Case; 5] = [
    Case {
        principal: "olivia",
        action: "billing.read",
        resource: "acme",
        decision: "allow",
        reasons: &["billing-read"],
    },
    Case {
        principal: "pete",
        action: "billing.read",
        resource: "acme",
        decision: "deny",
        reasons: &["member-must-be-active"],
    },
    Case {
        principal: "mark",
        action: "transactions.read",
        resource: "acme",
        decision: "allow",
        reasons: &["transactions-read"],
    },
    Case {
        principal: "rita",
        action: "billing.manage",
        resource: "acme",
        decision: "deny",
        reasons: &[],
    },
    Case {
        principal: "gwen",
        action: "organization.read",
        resource: "globex",
        decision: "deny",
        reasons: &["organization-requires-mfa"],
    },
];

/// Which case request `i` of the batch uses: not periodic in a way that a
/// reordering could preserve.
fn case_of(i: usize) -> &'static Case {
    &CASES[(i * i + i / 7) % CASES.len()]
}

on_both_backends!(a_batch_of_1000_requests_answers_1000_results_in_request_order);
async fn a_batch_of_1000_requests_answers_1000_results_in_request_order() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let requests: Vec<Value> = (0..1000)
        .map(|i| {
            let case = case_of(i);
            json!({
                "principal": uid("User", case.principal),
                "action": action(case.action),
                "resource": uid("Organization", case.resource),
            })
        })
        .collect();

    // Act
    let (status, body) = app
        .post_json("/v1/is_authorized/batch", &json!({"requests": requests}))
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 1000);
    for (i, result) in results.iter().enumerate() {
        let case = case_of(i);
        assert_eq!(result["decision"], case.decision, "result {i}: {result}");
        assert_eq!(
            result["reasons"],
            json!(case.reasons),
            "result {i}: {result}"
        );
        assert_eq!(result["policy_revision"], 1);
    }
    assert_eq!(results[0]["reasons"], json!(["billing-read"]));
    assert_eq!(results[1]["reasons"], json!(["member-must-be-active"]));
    assert_eq!(results[2]["reasons"], json!(["organization-requires-mfa"]));
    assert_eq!(results[999]["decision"], "deny");
    assert_eq!(results[999]["reasons"], json!([]));
    let allows = results.iter().filter(|r| r["decision"] == "allow").count();
    assert!(
        allows > 100 && allows < 900,
        "the batch mixes allows and denies: {allows} allows"
    );
}

on_both_backends!(malformed_json_is_a_400_with_a_json_error);
async fn malformed_json_is_a_400_with_a_json_error() {
    // Arrange
    let app = TestApp::spawn().await;

    for path in [
        "/v1/is_authorized",
        "/access/v1/evaluation",
        "/access/v1/evaluations",
    ] {
        let request = app
            .request(Method::POST, path)
            .header("content-type", "application/json")
            .body(r#"{"principal": "User::\"olivia\"", "#);

        // Act
        let (status, body) = Api::send(request).await;

        // Assert
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
}

on_both_backends!(a_body_without_the_json_content_type_is_a_400_with_a_json_error);
async fn a_body_without_the_json_content_type_is_a_400_with_a_json_error() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let body = json!({"principal": uid("User", "olivia"), "action": action("billing.read"), "resource": uid("Organization", "acme")});

    for content_type in [None, Some("text/plain")] {
        let mut request = app
            .request(Method::POST, "/v1/is_authorized")
            .body(body.to_string());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }

        // Act
        let (status, answer) = Api::send(request).await;

        // Assert
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{content_type:?}: {answer}"
        );
        assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
    }
}

on_both_backends!(a_missing_required_field_is_a_400_with_a_json_error);
async fn a_missing_required_field_is_a_400_with_a_json_error() {
    // Arrange
    let app = TestApp::spawn().await;
    let cases = [
        (
            "/access/v1/evaluation",
            json!({"action": {"name": "billing.read"}, "resource": {"type": "Organization", "id": "acme"}}),
        ),
        (
            "/access/v1/evaluation",
            json!({"subject": {"type": "User"}, "action": {"name": "billing.read"}, "resource": {"type": "Organization", "id": "acme"}}),
        ),
        (
            "/access/v1/evaluations",
            json!({"action": {"name": "billing.read"}, "resource": {"type": "Organization", "id": "acme"}}),
        ),
        (
            "/v1/is_authorized",
            json!({"action": action("billing.read"), "resource": uid("Organization", "acme")}),
        ),
        (
            "/v1/is_authorized/batch",
            json!({"requests": [{"principal": uid("User", "olivia")}]}),
        ),
    ];

    for (path, body) in cases {
        // Act
        let (status, answer) = app.post_json(path, &body).await;

        // Assert
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
    }
}

on_both_backends!(unknown_extra_fields_are_ignored);
async fn unknown_extra_fields_are_ignored() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let native = json!({
        "principal": uid("User", "olivia"), "action": action("billing.read"), "resource": uid("Organization", "acme"),
        "client": "billing-ui", "trace": {"span": 7},
    });
    let authzen = json!({
        "subject": {"type": "User", "id": "olivia", "nickname": "o"},
        "action": {"name": "billing.read", "verb": "GET"},
        "resource": {"type": "Organization", "id": "acme"},
        "extra": [1, 2, 3],
    });

    // Act
    let (native_status, native_answer) = app.post_json("/v1/is_authorized", &native).await;
    let (authzen_status, authzen_answer) = app.post_json("/access/v1/evaluation", &authzen).await;

    // Assert
    assert_eq!(native_status, StatusCode::OK, "{native_answer}");
    assert_eq!(native_answer["decision"], "allow");
    assert_eq!(authzen_status, StatusCode::OK, "{authzen_answer}");
    assert_eq!(authzen_answer["decision"], true);
}

on_both_backends!(a_body_larger_than_the_limit_is_a_413_with_a_json_error);
async fn a_body_larger_than_the_limit_is_a_413_with_a_json_error() {
    // Arrange
    let app = TestApp::spawn_with(|cfg| cfg.max_body_bytes = 1024).await;
    let padding = "x".repeat(4096);
    let body = json!({"principal": uid("User", "olivia"), "action": action("billing.read"), "resource": uid("Organization", "acme"), "padding": padding});

    for path in ["/v1/is_authorized", "/access/v1/evaluation", "/v1/entities"] {
        let method = if path == "/v1/entities" {
            Method::PUT
        } else {
            Method::POST
        };

        // Act
        let (status, answer) = Api::send(app.request(method, path).json(&body)).await;

        // Assert
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "payload_too_large", "{answer}");
    }
    // A small body still passes.
    let small = json!({"principal": uid("User", "olivia"), "action": action("billing.read"), "resource": uid("Organization", "acme")});
    let (status, _) = app.post_json("/v1/is_authorized", &small).await;
    assert_eq!(status, StatusCode::OK);
}

on_both_backends!(unknown_actions_types_principals_and_malformed_uids_are_denied_with_errors);
async fn unknown_actions_types_principals_and_malformed_uids_are_denied_with_errors() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let cases = [
        (
            "an unknown action",
            json!(uid("User", "olivia")),
            json!(action("billing.write")),
            json!(uid("Organization", "acme")),
        ),
        (
            "an unknown entity type",
            json!(uid("Robot", "x")),
            json!(action("billing.read")),
            json!(uid("Organization", "acme")),
        ),
        (
            "a resource not in the store",
            json!(uid("User", "olivia")),
            json!(action("billing.read")),
            json!(uid("Organization", "nowhere")),
        ),
        (
            "a malformed uid string",
            json!("User::olivia"),
            json!(action("billing.read")),
            json!(uid("Organization", "acme")),
        ),
        (
            "a uid that is a number",
            json!(uid("User", "olivia")),
            json!(42),
            json!(uid("Organization", "acme")),
        ),
        (
            "a uid object without id",
            json!({"type": "User"}),
            json!(action("billing.read")),
            json!(uid("Organization", "acme")),
        ),
        (
            "a context of the wrong shape",
            json!(uid("User", "olivia")),
            json!(action("billing.read")),
            json!(uid("Organization", "acme")),
        ),
    ];

    for (what, principal, action, resource) in cases {
        let context = if what.starts_with("a context") {
            json!({"mfa": "yes"})
        } else {
            json!({})
        };

        // Act
        let answer = app
            .is_authorized(principal, action, resource, context)
            .await;

        // Assert
        assert_eq!(answer["decision"], "deny", "{what}: {answer}");
        assert!(
            answer["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{what}: a deny forced by an error must carry it: {answer}"
        );
    }
}

on_both_backends!(authzen_denies_unknown_actions_types_principals_and_malformed_types);
async fn authzen_denies_unknown_actions_types_principals_and_malformed_types() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let evaluation = |subject: Value, action: &str, resource: Value| json!({"subject": subject, "action": {"name": action}, "resource": resource});
    let olivia = json!({"type": "User", "id": "olivia"});
    let acme = json!({"type": "Organization", "id": "acme"});
    let cases = [
        (
            "an unknown action",
            evaluation(olivia.clone(), "billing.write", acme.clone()),
        ),
        (
            "an unknown entity type",
            evaluation(
                json!({"type": "Robot", "id": "x"}),
                "billing.read",
                acme.clone(),
            ),
        ),
        (
            "a malformed type",
            evaluation(
                json!({"type": "User::", "id": "olivia"}),
                "billing.read",
                acme.clone(),
            ),
        ),
        (
            "a malformed action uid",
            evaluation(olivia.clone(), "Action::billing.read", acme.clone()),
        ),
    ];

    for (what, body) in cases {
        // Act
        let (status, answer) = app.post_json("/access/v1/evaluation", &body).await;

        // Assert
        assert_eq!(status, StatusCode::OK, "{what}: {answer}");
        assert_eq!(answer["decision"], false, "{what}: {answer}");
        assert!(
            answer["context"]["reason_admin"]["errors"]
                .as_array()
                .is_some_and(|e| !e.is_empty()),
            "{what}: {answer}"
        );
    }
}

on_both_backends!(an_entity_the_store_lacks_is_evaluated_as_cedar_does_and_named);
async fn an_entity_the_store_lacks_is_evaluated_as_cedar_does_and_named() {
    // Arrange: no policy errors on a principal without tags, so the deny
    // comes from the policies, and the answer says whom the store lacks.
    let app = TestApp::spawn().await;
    app.load_example().await;
    let ghost = json!({"type": "User", "id": "ghost"});
    let acme = json!({"type": "Organization", "id": "acme"});

    // Act
    let native = app
        .is_authorized(
            ghost.clone(),
            json!(action("billing.read")),
            acme.clone(),
            json!({}),
        )
        .await;
    let (status, authzen) = app
        .post_json(
            "/access/v1/evaluation",
            &json!({"subject": ghost, "action": {"name": "billing.read"}, "resource": acme}),
        )
        .await;

    // Assert
    assert_eq!(native["decision"], "deny", "{native}");
    assert_eq!(
        native["unknown_entities"],
        json!(["User::\"ghost\""]),
        "{native}"
    );
    assert_eq!(status, StatusCode::OK, "{authzen}");
    assert_eq!(authzen["decision"], false, "{authzen}");
    assert_eq!(
        authzen["context"]["unknown_entities"],
        json!(["User::\"ghost\""]),
        "{authzen}"
    );
}

/// The value of one sample line of a Prometheus text exposition.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

on_both_backends!(metrics_count_decisions_by_outcome_and_show_the_policy_revision);
async fn metrics_count_decisions_by_outcome_and_show_the_policy_revision() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    for principal in ["olivia", "olivia", "pete"] {
        app.is_authorized(
            uid("User", principal),
            action("billing.read"),
            uid("Organization", "acme"),
            json!({}),
        )
        .await;
    }
    app.is_authorized(
        uid("User", "olivia"),
        action("billing.write"),
        uid("Organization", "acme"),
        json!({}),
    )
    .await;

    // Act
    let (status, metrics) = app.get_text("/metrics").await;

    // Assert
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sample(&metrics, r#"cedargate_decisions_total{decision="allow"}"#),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"cedargate_decisions_total{decision="deny"}"#),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "cedargate_decision_errors_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "cedargate_decision_cache_hits_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "cedargate_policy_revision"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("cedargate_decision_duration_seconds_bucket"),
        "{metrics}"
    );
}

on_both_backends!(the_openapi_document_lists_every_endpoint);
async fn the_openapi_document_lists_every_endpoint() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let (status, document) = app.get_json("/openapi.json").await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{document}");
    let paths = document["paths"].as_object().expect("paths");
    let expected = [
        ("/v1/is_authorized", "post"),
        ("/v1/is_authorized/batch", "post"),
        ("/access/v1/evaluation", "post"),
        ("/access/v1/evaluations", "post"),
        ("/.well-known/authzen-configuration", "get"),
        ("/v1/entities", "put"),
        ("/v1/entities/{type}/{id}", "delete"),
        ("/v1/policies", "get"),
        ("/v1/policies/reload", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is missing from {:?}",
            paths.keys()
        );
    }
}

on_both_backends!(the_decision_log_has_one_json_line_per_decision_and_never_the_token);
async fn the_decision_log_has_one_json_line_per_decision_and_never_the_token() {
    // Arrange
    let logs = tempfile::tempdir().expect("a temporary directory");
    let log_path = logs.path().join("decisions.jsonl");
    let log_spec = log_path.display().to_string();
    let app = TestApp::spawn_with(move |cfg| cfg.decision_log = log_spec).await;
    app.load_example().await;
    let body = json!({"principal": uid("User", "olivia"), "action": action("billing.read"), "resource": uid("Organization", "acme"), "context": {"mfa": true}});

    // Act
    let (status, answer) = Api::send(
        app.request(Method::POST, "/v1/is_authorized")
            .header("x-request-id", "log-request-1")
            .json(&body),
    )
    .await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{answer}");
    let text = std::fs::read_to_string(&log_path).expect("the decision log exists");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let record: Value = serde_json::from_str(lines[0]).expect("a JSON line");
    assert_eq!(record["principal"], uid("User", "olivia"));
    assert_eq!(record["action"], action("billing.read"));
    assert_eq!(record["resource"], uid("Organization", "acme"));
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["reasons"], json!(["billing-read"]));
    assert_eq!(record["policy_revision"], 1);
    assert_eq!(record["request_id"], "log-request-1");
    assert!(
        !text.contains("test-token"),
        "the token leaked into the decision log: {text}"
    );
    assert!(!text.contains("Bearer"), "{text}");
}

on_both_backends!(the_decision_log_never_holds_a_context_value_even_inside_an_error);
async fn the_decision_log_never_holds_a_context_value_even_inside_an_error() {
    // Arrange
    let logs = tempfile::tempdir().expect("a temporary directory");
    let log_path = logs.path().join("decisions.jsonl");
    let log_spec = log_path.display().to_string();
    let app = TestApp::spawn_with(move |cfg| cfg.decision_log = log_spec).await;
    app.load_example().await;
    let secret = "s3cret-session-value";
    let body = json!({"principal": uid("User", "olivia"), "action": action("billing.read"),
        "resource": uid("Organization", "acme"), "context": {"mfa": secret}});

    // Act
    let answer = app.is_authorized_body(&body).await;

    // Assert: the caller sees why; the log keeps the reason, not the value.
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert!(
        !answer["errors"].as_array().is_none_or(Vec::is_empty),
        "{answer}"
    );
    let text = std::fs::read_to_string(&log_path).expect("the decision log exists");
    let record: Value = serde_json::from_str(text.trim()).expect("one JSON line");
    assert!(
        !record["errors"].as_array().is_none_or(Vec::is_empty),
        "{text}"
    );
    assert!(
        !text.contains(secret),
        "a context value reached the decision log: {text}"
    );
}
