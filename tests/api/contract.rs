//! The error contract holds for every input: whatever the sidecar cannot
//! read (a path segment or query that is not UTF-8 or does not parse, a
//! header that is not UTF-8, a body that is not UTF-8, not JSON or of the
//! wrong type, too large or too slow, a route or method that does not
//! exist) is answered with `{"error": {"code", "message"}}` as JSON, never
//! with a framework's plain-text rejection.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TOKEN, TestApp};

const ACTOR: &str = "x-cedargate-actor";

/// What came back, read without assuming it is JSON so that a failure
/// shows the body that broke the contract.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: String,
    text: String,
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the request is sent");
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let text = response.text().await.expect("the body is read");
    Answer {
        status,
        content_type,
        text,
    }
}

/// Asserts `answer` is `status` with the JSON error body, and returns its
/// `error.code`.
fn assert_error(what: &str, answer: &Answer, status: StatusCode) -> String {
    assert_eq!(answer.status, status, "{what}: {answer:?}");
    assert!(
        answer.content_type.starts_with("application/json"),
        "{what}: the error is not JSON: {answer:?}"
    );
    let body: Value = serde_json::from_str(&answer.text)
        .unwrap_or_else(|e| panic!("{what}: the body is not JSON ({e}): {answer:?}"));
    let code = body["error"]["code"].as_str();
    let message = body["error"]["message"].as_str();
    assert!(
        code.is_some_and(|c| !c.is_empty()) && message.is_some_and(|m| !m.is_empty()),
        "{what}: no error code and message: {body}"
    );
    code.unwrap_or_default().to_owned()
}

on_both_backends!(a_path_segment_that_is_not_utf8_is_a_json_400);
async fn a_path_segment_that_is_not_utf8_is_a_json_400() {
    // Arrange
    let app = TestApp::spawn().await;
    let cases = [
        (Method::DELETE, "/v1/entities/Account/%FF"),
        (Method::DELETE, "/v1/entities/%C3%28/acme"),
        (Method::GET, "/v1/orgs/%FF/members"),
        (Method::DELETE, "/v1/orgs/acme/members/%FF%FE"),
    ];

    for (method, path) in cases {
        // Act
        let reply = answer(app.request(method.clone(), path).header(ACTOR, "someone")).await;

        // Assert
        let code = assert_error(&format!("{method} {path}"), &reply, StatusCode::BAD_REQUEST);
        assert_eq!(code, "bad_request", "{method} {path}: {reply:?}");
    }
}

on_both_backends!(a_query_that_does_not_parse_is_a_json_400);
async fn a_query_that_does_not_parse_is_a_json_400() {
    // Arrange
    let app = TestApp::spawn().await;
    let cases = [
        (Method::GET, "/v1/orgs/acme/audit?since=yesterday"),
        (Method::POST, "/v1/orgs/acme/invitations/bulk?dry_run=maybe"),
    ];

    for (method, path) in cases {
        // Act
        let reply = answer(
            app.request(method.clone(), path)
                .header(ACTOR, "someone")
                .header(CONTENT_TYPE, "text/csv")
                .body("first_name,last_name,email\n"),
        )
        .await;

        // Assert
        let code = assert_error(&format!("{method} {path}"), &reply, StatusCode::BAD_REQUEST);
        assert_eq!(code, "bad_request", "{method} {path}: {reply:?}");
    }
}

on_both_backends!(a_header_that_is_not_utf8_is_answered_with_a_json_error);
async fn a_header_that_is_not_utf8_is_answered_with_a_json_error() {
    // Arrange
    let app = TestApp::spawn().await;
    let latin1 = |bytes: &[u8]| HeaderValue::from_bytes(bytes).expect("obs-text is a valid header");
    let body =
        r#"{"principal": "User::\"a\"", "action": "Action::\"b\"", "resource": "User::\"c\""}"#;

    // Act
    let bad_token = answer(
        app.client
            .post(app.url("/v1/is_authorized"))
            .header(AUTHORIZATION, latin1(b"Bearer t\xe9st-token"))
            .header(CONTENT_TYPE, "application/json")
            .body(body),
    )
    .await;
    let bad_json_type = answer(
        app.request(Method::POST, "/v1/is_authorized")
            .header(CONTENT_TYPE, latin1(b"application/j\xa7son"))
            .body(body),
    )
    .await;
    let bad_csv_type = answer(
        app.request(Method::POST, "/v1/orgs/acme/invitations/bulk")
            .header(ACTOR, "someone")
            .header(CONTENT_TYPE, latin1(b"text/csv; charset=\xff"))
            .body("first_name,last_name,email\n"),
    )
    .await;
    let bad_actor = answer(
        app.request(Method::GET, "/v1/orgs/acme/members")
            .header(ACTOR, latin1(b"\xe9ric@acme.example")),
    )
    .await;

    // Assert
    assert_error("Authorization", &bad_token, StatusCode::UNAUTHORIZED);
    assert_error("JSON Content-Type", &bad_json_type, StatusCode::BAD_REQUEST);
    assert_error(
        "CSV Content-Type",
        &bad_csv_type,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    assert_error("X-Cedargate-Actor", &bad_actor, StatusCode::BAD_REQUEST);
}

on_both_backends!(a_csv_body_that_is_not_utf8_is_a_json_400);
async fn a_csv_body_that_is_not_utf8_is_a_json_400() {
    // Arrange
    let app = TestApp::spawn().await;
    let csv = b"first_name,last_name,email\nRen\xe9e,Roe,renee@acme.example\n".to_vec();

    // Act
    let reply = answer(
        app.request(Method::POST, "/v1/orgs/acme/invitations/bulk?dry_run=true")
            .header(ACTOR, "someone")
            .header(CONTENT_TYPE, "text/csv")
            .body(csv),
    )
    .await;

    // Assert
    let code = assert_error("bulk CSV", &reply, StatusCode::BAD_REQUEST);
    assert_eq!(code, "bad_request", "{reply:?}");
}

on_both_backends!(a_body_of_the_wrong_type_or_that_does_not_parse_is_a_json_error);
async fn a_body_of_the_wrong_type_or_that_does_not_parse_is_a_json_error() {
    // Arrange
    let app = TestApp::spawn().await;
    let cases = [
        // (method, path, content type, body, status)
        (
            Method::POST,
            "/v1/is_authorized",
            "application/json",
            "{\"principal\": ",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PUT,
            "/v1/entities",
            "application/json",
            "[{]",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/orgs/acme/invitations",
            "application/json",
            "nope",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/invitations/accept",
            "application/json",
            "{\"token\": 5}",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/is_authorized",
            "text/csv",
            "{}",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/orgs/acme/invitations/bulk",
            "application/json",
            "{\"first_name\": \"Ann\"}",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];

    for (method, path, content_type, body, status) in cases {
        // Act
        let reply = answer(
            app.request(method.clone(), path)
                .header(ACTOR, "someone")
                .header(CONTENT_TYPE, content_type)
                .body(body),
        )
        .await;

        // Assert
        assert_error(
            &format!("{method} {path} as {content_type}"),
            &reply,
            status,
        );
    }
}

on_both_backends!(an_unknown_route_is_a_json_404_and_a_wrong_method_a_json_405);
async fn an_unknown_route_is_a_json_404_and_a_wrong_method_a_json_405() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let unknown = answer(app.request(Method::GET, "/v1/nothing/here")).await;
    let unknown_without_token = answer(app.client.get(app.url("/nothing"))).await;
    let wrong_method = answer(app.request(Method::GET, "/v1/is_authorized")).await;
    let wrong_public_method = answer(app.client.delete(app.url("/healthz"))).await;

    // Assert
    assert_eq!(
        assert_error("unknown route", &unknown, StatusCode::NOT_FOUND),
        "not_found"
    );
    assert_error(
        "unknown route without the token",
        &unknown_without_token,
        StatusCode::NOT_FOUND,
    );
    assert_eq!(
        assert_error(
            "wrong method",
            &wrong_method,
            StatusCode::METHOD_NOT_ALLOWED
        ),
        "method_not_allowed"
    );
    assert_error(
        "wrong method on a public route",
        &wrong_public_method,
        StatusCode::METHOD_NOT_ALLOWED,
    );
}

on_both_backends!(a_body_over_the_limit_is_a_json_413);
async fn a_body_over_the_limit_is_a_json_413() {
    // Arrange
    let app = TestApp::spawn_with(|config| config.max_body_bytes = 1024).await;
    let big_json = format!("{{\"principal\": \"{}\"}}", "x".repeat(4096));
    let big_csv = format!(
        "first_name,last_name,email\n{}",
        "Ann,Roe,ann@acme.example\n".repeat(200)
    );

    // Act
    let json = answer(
        app.request(Method::POST, "/v1/is_authorized")
            .header(CONTENT_TYPE, "application/json")
            .body(big_json),
    )
    .await;
    let csv = answer(
        app.request(Method::POST, "/v1/orgs/acme/invitations/bulk")
            .header(ACTOR, "someone")
            .header(CONTENT_TYPE, "text/csv")
            .body(big_csv),
    )
    .await;

    // Assert
    assert_error("JSON", &json, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error("CSV", &csv, StatusCode::PAYLOAD_TOO_LARGE);
}

on_both_backends!(a_request_over_the_time_limit_is_a_json_503);
async fn a_request_over_the_time_limit_is_a_json_503() {
    // Arrange: a body announced but never sent keeps the request open past
    // the limit, whatever the machine's speed.
    let app = TestApp::spawn_with(|config| config.request_timeout_ms = 300).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect to the server");
    let head = format!(
        "POST /v1/is_authorized HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );

    // Act
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send the request head");
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.expect("read the answer");
            raw.extend_from_slice(&chunk[..n]);
            if n == 0 || complete(&raw) {
                break;
            }
        }
    })
    .await;

    // Assert
    assert!(read.is_ok(), "no answer: {}", String::from_utf8_lossy(&raw));
    let reply = parse(&raw);
    let code = assert_error("timeout", &reply, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code, "timeout", "{reply:?}");
}

/// Whether `raw` holds a whole response with a `Content-Length` body.
fn complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .is_some_and(|len| body.len() >= len)
}

/// A raw HTTP/1.1 response as an [`Answer`].
fn parse(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    Answer {
        status,
        content_type,
        text: body.to_owned(),
    }
}

on_both_backends!(an_invitation_link_that_is_not_utf8_gets_the_unavailable_page);
async fn an_invitation_link_that_is_not_utf8_gets_the_unavailable_page() {
    // Arrange: the acceptance page is for people, so its errors are pages;
    // a secret that is not UTF-8 is one more unknown link.
    let app = TestApp::spawn().await;

    // Act
    let reply = answer(app.client.get(app.url("/invite/%FF%FE"))).await;

    // Assert
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    assert!(
        reply.content_type.starts_with("text/html"),
        "the unavailable page, not a plain-text rejection: {reply:?}"
    );
    assert!(reply.text.contains("unavailable"), "{reply:?}");
}

on_both_backends!(the_openapi_document_declares_the_error_body_for_every_error_status);
async fn the_openapi_document_declares_the_error_body_for_every_error_status() {
    // Arrange
    let app = TestApp::spawn().await;
    let public = [
        "GET /healthz",
        "GET /readyz",
        "GET /.well-known/authzen-configuration",
    ];

    // Act
    let (status, document) = app.get_json("/openapi.json").await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{document}");
    let paths = document["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item") {
            operations += 1;
            let name = format!("{} {path}", method.to_uppercase());
            let responses = operation["responses"].as_object().expect("responses");
            for (code, response) in responses {
                if code.starts_with('4') || code.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{name} {code}: {response}"
                    );
                }
            }
            let is_public = public.contains(&name.as_str());
            assert_eq!(
                responses.contains_key("401"),
                !is_public,
                "{name}: 401 is declared exactly where the token is needed"
            );
            if operation.get("requestBody").is_some() {
                assert!(responses.contains_key("413"), "{name}: no 413");
            }
        }
    }
    assert!(operations >= 28, "{operations} operations");
    let detail = &document["components"]["schemas"]["ErrorDetail"];
    assert_eq!(
        detail["required"],
        serde_json::json!(["code", "message"]),
        "{detail}"
    );
}
