//! Helpers for the invitation-service tests, as methods of [`TestApp`]: a
//! server with a manual clock, a per-test mail directory and a bootstrapped
//! system administrator, plus small verbs (create an organization with an
//! accepted owner, invite, accept, list members, decide) and readers of the
//! `.eml` files.

use std::time::{Duration, Instant};

use base64::Engine as _;
use cedargate::cli::StoreArgs;
use cedargate::config::ServeConfig;
use cedargate::invites::Actor;
use cedargate::startup::offline_service;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, uid};

/// The system administrator every test starts with.
pub const ADMIN_EMAIL: &str = "sam@registry.example";
/// The password every invitee chooses.
pub const PASSWORD: &str = "correct horse battery staple";
/// How long a test waits for an e-mail or for the outbox to drain.
const MAIL_DEADLINE: Duration = Duration::from_secs(30);

/// An answer of the API.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when empty).
    pub body: Value,
    /// The body as sent.
    pub text: String,
}

impl Reply {
    /// `error.field`.
    pub fn field(&self) -> &str {
        self.body["error"]["field"].as_str().unwrap_or_default()
    }

    /// `error.code`.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// `error.message`.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }

    /// `error.policies`.
    pub fn policies(&self) -> Vec<String> {
        self.body["error"]["policies"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Asserts a 422 naming `field`.
pub fn assert_invalid(reply: &Reply, field: &str) {
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "expected 422 for `{field}`: {}",
        reply.text
    );
    assert_eq!(reply.code(), "invalid", "{}", reply.text);
    assert_eq!(reply.field(), field, "{}", reply.text);
}

/// Asserts a 403 determined by `policy`.
pub fn assert_forbidden_by(reply: &Reply, policy: &str) {
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "expected 403 by `{policy}`: {}",
        reply.text
    );
    assert_eq!(reply.code(), "forbidden", "{}", reply.text);
    assert!(
        reply.policies().iter().any(|p| p == policy),
        "expected the policy `{policy}` among the reasons: {}",
        reply.text
    );
    assert!(
        reply.message().contains(policy),
        "the message names the policy: {}",
        reply.text
    );
}

/// One delivered e-mail.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The file name.
    pub file: String,
    /// The `To` header.
    pub to: String,
    /// The `Subject` header.
    pub subject: String,
    /// The decoded body.
    pub body: String,
}

impl Mail {
    /// The secret of the invitation link in the body, if any.
    pub fn token(&self) -> Option<String> {
        let start = self.body.find("/invite/")? + "/invite/".len();
        let token: String = self.body[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            .collect();
        (!token.is_empty()).then_some(token)
    }
}

/// The invitation service's verbs on a server.
impl TestApp {
    /// A server with a manual clock and a system administrator
    /// ([`TestApp::admin_id`]).
    pub async fn spawn_with_admin() -> Self {
        Self::spawn_with_admin_and(|_| {}).await
    }

    /// [`TestApp::spawn_with_admin`] with the configuration adjusted first.
    pub async fn spawn_with_admin_and(configure: impl FnOnce(&mut ServeConfig)) -> Self {
        let app = Self::spawn_with_manual_clock(configure).await;
        let args = StoreArgs {
            database_url: app.config.database_url.clone(),
            policy: app.config.policy.clone(),
            invites: app.config.invites.clone(),
        };
        let (service, _mailer) = offline_service(&args)
            .await
            .unwrap_or_else(|e| panic!("the offline service does not open: {e:#}"));
        let admin_id = service
            .create_admin(&Actor::cli(), ADMIN_EMAIL, "Sam", "Admin", app.now())
            .await
            .unwrap_or_else(|e| panic!("the system administrator is not created: {e}"));
        app.with_admin_id(admin_id)
    }

    // ------------------------------------------------------------ HTTP

    /// Sends a request as `actor` (no actor header when `None`).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        actor: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.request(method, path);
        if let Some(actor) = actor {
            request = request.header("X-Cedargate-Actor", actor);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        Self::reply(request).await
    }

    /// Sends a prepared request and reads the answer.
    pub async fn reply(request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the request is sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("the body is read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{status}: the body is not JSON ({e}): {text}"))
        };
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// `GET path` as `actor`.
    pub async fn get(&self, actor: &str, path: &str) -> Reply {
        self.call(Method::GET, path, Some(actor), None).await
    }

    /// `POST path` as `actor`.
    pub async fn post(&self, actor: &str, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(actor), Some(body)).await
    }

    /// `PATCH path` as `actor`.
    pub async fn patch(&self, actor: &str, path: &str, body: &Value) -> Reply {
        self.call(Method::PATCH, path, Some(actor), Some(body))
            .await
    }

    /// `PUT path` as `actor`.
    pub async fn put(&self, actor: &str, path: &str, body: &Value) -> Reply {
        self.call(Method::PUT, path, Some(actor), Some(body)).await
    }

    /// `DELETE path` as `actor` ([`Api::delete`](crate::helpers::Api::delete)
    /// sends no actor).
    pub async fn delete_as(&self, actor: &str, path: &str) -> Reply {
        self.call(Method::DELETE, path, Some(actor), None).await
    }

    // ------------------------------------------------------------ verbs

    /// Creates `org` as the system administrator; its owner `owner_email`
    /// accepts the e-mailed link. Returns the owner's user id.
    pub async fn create_org(&self, org: &str, owner_email: &str) -> String {
        let reply = self
            .post(
                ADMIN_EMAIL,
                "/v1/orgs",
                &json!({
                    "id": org,
                    "name": format!("{org} Energy"),
                    "owner": {"first_name": "Olivia", "last_name": "Owner", "email": owner_email},
                }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let token = self.next_token_for(owner_email).await;
        let accepted = self.accept(&token).await;
        assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
        assert_eq!(accepted.body["status"], "ACTIVE", "{}", accepted.text);
        reply.body["user_id"]
            .as_str()
            .expect("the owner's user id")
            .to_owned()
    }

    /// `POST /v1/orgs/{org}/invitations` as `actor` with `body`.
    pub async fn invite(&self, actor: &str, org: &str, body: &Value) -> Reply {
        self.post(actor, &format!("/v1/orgs/{org}/invitations"), body)
            .await
    }

    /// Invites `email` with `extra` fields (role, permissions, ...) merged
    /// into the body.
    pub async fn invite_email(&self, actor: &str, org: &str, email: &str, extra: Value) -> Reply {
        self.invite(actor, org, &person(email, extra)).await
    }

    /// Invites `email`, which must succeed; returns the outcome.
    pub async fn invited(&self, actor: &str, org: &str, email: &str, extra: Value) -> Value {
        let reply = self.invite_email(actor, org, email, extra).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.body
    }

    /// `POST /v1/invitations/accept` with the test password.
    pub async fn accept(&self, token: &str) -> Reply {
        self.call(
            Method::POST,
            "/v1/invitations/accept",
            None,
            Some(&json!({"token": token, "password": PASSWORD})),
        )
        .await
    }

    /// `POST /v1/invitations/decline`.
    pub async fn decline(&self, token: &str) -> Reply {
        self.call(
            Method::POST,
            "/v1/invitations/decline",
            None,
            Some(&json!({"token": token})),
        )
        .await
    }

    /// Invites `email` and accepts the link; returns the user id.
    pub async fn member_joins(&self, actor: &str, org: &str, email: &str, extra: Value) -> String {
        let outcome = self.invited(actor, org, email, extra).await;
        assert_eq!(outcome["outcome"], "invited", "{outcome}");
        let token = self.next_token_for(email).await;
        let accepted = self.accept(&token).await;
        assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
        outcome["user_id"]
            .as_str()
            .expect("the invitee's user id")
            .to_owned()
    }

    /// The member list of `org` as `actor` (must answer 200).
    pub async fn members(&self, actor: &str, org: &str) -> Vec<Value> {
        let reply = self.get(actor, &format!("/v1/orgs/{org}/members")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.body.as_array().cloned().unwrap_or_default()
    }

    /// The members of `org` with `email`.
    pub async fn members_with_email(&self, actor: &str, org: &str, email: &str) -> Vec<Value> {
        self.members(actor, org)
            .await
            .into_iter()
            .filter(|m| m["email"] == email)
            .collect()
    }

    /// The one member of `org` with `email`.
    pub async fn member(&self, actor: &str, org: &str, email: &str) -> Value {
        let mut found = self.members_with_email(actor, org, email).await;
        assert_eq!(found.len(), 1, "one member `{email}` in `{org}`: {found:?}");
        found.remove(0)
    }

    /// `POST /v1/is_authorized` for `user_id` doing `action` on the
    /// organization `org`; returns the answer.
    pub async fn decide(&self, user_id: &str, action: &str, org: &str) -> Value {
        self.is_authorized(
            uid("User", user_id),
            uid("Action", action),
            uid("Organization", org),
            json!({}),
        )
        .await
    }

    /// `true` when [`TestApp::decide`] allows.
    pub async fn allowed(&self, user_id: &str, action: &str, org: &str) -> bool {
        let answer = self.decide(user_id, action, org).await;
        match answer["decision"].as_str() {
            Some("allow") => true,
            Some("deny") => false,
            _ => panic!("not a decision: {answer}"),
        }
    }

    /// The audit trail of `org` as `actor` with a query string (must answer 200).
    pub async fn audit(&self, actor: &str, org: &str, query: &str) -> Vec<Value> {
        let reply = self
            .get(actor, &format!("/v1/orgs/{org}/audit{query}"))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.body.as_array().cloned().unwrap_or_default()
    }

    // ------------------------------------------------------------ mail

    /// Every delivered message.
    pub fn mails(&self) -> Vec<Mail> {
        let Ok(entries) = std::fs::read_dir(self.mail_dir()) else {
            return Vec::new();
        };
        let mut mails: Vec<Mail> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name.ends_with(".eml") && !name.starts_with('.')).then_some((name, e.path()))
            })
            .filter_map(|(name, path)| {
                let raw = std::fs::read_to_string(path).ok()?;
                Some(parse_mail(name, &raw))
            })
            .collect();
        mails.sort_by(|a, b| a.file.cmp(&b.file));
        mails
    }

    /// How many messages were delivered, once the outbox has drained.
    pub async fn mail_count(&self) -> usize {
        self.settle_mail().await;
        self.mails().len()
    }

    /// Waits until no due message is left unsent in the outbox.
    pub async fn settle_mail(&self) {
        let db = self.db().await;
        let deadline = Instant::now() + MAIL_DEADLINE;
        loop {
            let (unsent,): (i64,) = sqlx::query_as(
                "select count(*) from outbox where sent_at is null and attempts < 5",
            )
            .fetch_one(&db)
            .await
            .expect("the outbox is readable");
            if unsent == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{unsent} message(s) were never delivered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        db.close().await;
    }

    /// Waits for a message to `email` not handed out before, and returns it.
    pub async fn next_mail_to(&self, email: &str) -> Mail {
        let deadline = Instant::now() + MAIL_DEADLINE;
        loop {
            let fresh = {
                let seen = self.mail_seen();
                self.mails()
                    .into_iter()
                    .find(|m| m.to.eq_ignore_ascii_case(email) && !seen.contains(&m.file))
            };
            if let Some(mail) = fresh {
                self.mail_seen().insert(mail.file.clone());
                return mail;
            }
            assert!(
                Instant::now() < deadline,
                "no new e-mail to `{email}` arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The link secret of the next message to `email`.
    pub async fn next_token_for(&self, email: &str) -> String {
        let mail = self.next_mail_to(email).await;
        mail.token()
            .unwrap_or_else(|| panic!("no invitation link in: {mail:?}"))
    }
}

/// An invitation body for `email` with `extra` fields merged in.
pub fn person(email: &str, extra: Value) -> Value {
    let mut body = json!({"first_name": "Pat", "last_name": "Person", "email": email});
    if let (Some(map), Some(more)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            map.insert(k.clone(), v.clone());
        }
    }
    body
}

/// Splits an `.eml` file into headers and a decoded body.
fn parse_mail(file: String, raw: &str) -> Mail {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
    let header = |name: &str| {
        head.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let encoding = header("Content-Transfer-Encoding").to_ascii_lowercase();
    let body = match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(body),
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => body.to_owned(),
    };
    let to = header("To");
    let to = match (to.find('<'), to.rfind('>')) {
        (Some(a), Some(b)) if a < b => to[a + 1..b].to_owned(),
        _ => to,
    };
    Mail {
        file,
        to,
        subject: header("Subject"),
        body,
    }
}

/// Decodes quoted-printable text: soft line breaks (`=` at the end of a
/// line) join lines, `=XX` is a byte.
fn decode_quoted_printable(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(byte) = hex {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn quoted_printable_soft_breaks_and_escapes_are_decoded() {
    assert_eq!(
        decode_quoted_printable("http://h/invite/abc=\ndef a=3Db"),
        "http://h/invite/abcdef a=b"
    );
}
