//! What console tests share: a browser-like client (a cookie jar, no
//! automatic redirects) that signs in through the real sign-in form, and
//! the ways a test gets a person with a password.

use std::sync::{Arc, Mutex};

use reqwest::cookie::{CookieStore, Jar};
use reqwest::{StatusCode, Url};

use crate::helpers::TestApp;
use crate::invite_helpers::PASSWORD;

/// A console client: a cookie jar, no automatic redirects, and the CSRF
/// token of the last page it read that had one.
#[derive(Debug)]
pub(crate) struct ConsoleClient {
    client: reqwest::Client,
    jar: Arc<Jar>,
    address: String,
    csrf: Mutex<Option<String>>,
}

impl ConsoleClient {
    /// A client of `app` with no cookies yet.
    pub(crate) fn new(app: &TestApp) -> Self {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client");
        Self {
            client,
            jar,
            address: app.address.clone(),
            csrf: Mutex::new(None),
        }
    }

    /// Signs in to `app` as `email` with `password` through the sign-in
    /// form, which must succeed with a complete session (no two-step
    /// verification pending). The client then knows its session's token.
    pub(crate) async fn sign_in(app: &TestApp, email: &str, password: &str) -> Self {
        let client = Self::new(app);
        let response = client.try_sign_in(email, password).await;
        let status = response.status();
        let location = location(&response);
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::SEE_OTHER, "sign-in of {email}: {body}");
        assert!(
            !location.starts_with("/console/sign-in") && !location.starts_with("/console/two-step"),
            "sign-in of {email} is not complete: 303 to {location}"
        );
        client.refresh_csrf().await;
        client
    }

    /// Posts the sign-in form (with the token of a freshly read sign-in
    /// page) and returns the answer, whatever it is.
    pub(crate) async fn try_sign_in(&self, email: &str, password: &str) -> reqwest::Response {
        let (status, page) = self.get_text("/console/sign-in").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let csrf = csrf_from(&page);
        self.post_raw(
            "/console/sign-in",
            &[("csrf", &csrf), ("email", email), ("password", password)],
        )
        .await
    }

    /// `address` + `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("the request is sent")
    }

    /// `GET path` as text; remembers the page's CSRF token if it has one.
    pub(crate) async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let response = self.get(path).await;
        let status = response.status();
        let text = response.text().await.expect("the body is read");
        if let Some(csrf) = try_csrf_from(&text) {
            *self.csrf.lock().expect("the token") = Some(csrf);
        }
        (status, text)
    }

    /// `POST path` with `fields` and the CSRF token of the last page read
    /// (the session's, read from `/console/account` if none was yet).
    pub(crate) async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let known = self.csrf.lock().expect("the token").clone();
        let csrf = match known {
            Some(csrf) => csrf,
            None => self.refresh_csrf().await,
        };
        let mut all: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        all.extend(fields.iter().filter(|(k, _)| *k != "csrf"));
        self.post_raw(path, &all).await
    }

    /// `POST path` with exactly `fields` (no token added).
    pub(crate) async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .form(fields)
            .send()
            .await
            .expect("the request is sent")
    }

    /// Reads the session's token from `/console/account` (the session must
    /// be complete) and remembers it.
    pub(crate) async fn refresh_csrf(&self) -> String {
        let (status, page) = self.get_text("/console/account").await;
        assert_eq!(status, StatusCode::OK, "the account page: {page}");
        csrf_from(&page)
    }

    /// The CSRF token remembered.
    pub(crate) fn csrf(&self) -> String {
        self.csrf
            .lock()
            .expect("the token")
            .clone()
            .unwrap_or_default()
    }

    /// The value of the cookie `name` the client would send to the console.
    pub(crate) fn cookie(&self, name: &str) -> Option<String> {
        let url = Url::parse(&self.url("/console")).expect("a URL");
        let header = self.jar.cookies(&url)?;
        let header = header.to_str().ok()?.to_owned();
        header.split(';').find_map(|pair| {
            pair.trim()
                .strip_prefix(&format!("{name}="))
                .map(str::to_owned)
        })
    }

    /// Puts the cookie `name=value` in the jar (as a planted cookie).
    pub(crate) fn set_cookie(&self, name: &str, value: &str) {
        let url = Url::parse(&self.url("/")).expect("a URL");
        self.jar
            .add_cookie_str(&format!("{name}={value}; Path=/"), &url);
    }

    /// The session cookie's value.
    pub(crate) fn session(&self) -> Option<String> {
        self.cookie("cedargate_session")
    }
}

/// The `Location` of a redirect (empty when none).
pub(crate) fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn try_csrf_from(html: &str) -> Option<String> {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned()).filter(|t| !t.is_empty())
}

/// The value of the first hidden `csrf` field of a page.
pub(crate) fn csrf_from(html: &str) -> String {
    try_csrf_from(html).unwrap_or_else(|| panic!("no csrf field in the page:\n{html}"))
}

/// Accepts the next invitation mailed to `email` with
/// [`PASSWORD`](crate::invite_helpers::PASSWORD) (invite them first, e.g.
/// with `app.invited(..)`): afterwards they sign in with it. Returns their
/// user id. (`app.create_org(org, owner)` and `app.member_joins(..)` do
/// the same for an owner and a member.)
pub(crate) async fn set_password_for(app: &TestApp, email: &str) -> String {
    let token = app.next_token_for(email).await;
    let accepted = app.accept(&token).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    accepted.body["user_id"]
        .as_str()
        .expect("the user id")
        .to_owned()
}

/// The password [`set_password_for`] sets.
pub(crate) const CONSOLE_PASSWORD: &str = PASSWORD;
