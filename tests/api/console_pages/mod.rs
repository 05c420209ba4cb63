//! The console's administration pages (the Users tab and what it leads
//! to), signed in through the console like a person: the pages call the
//! invitation service as the API does, show only the controls the policies
//! allow in one batch, and refuse a form without the session's CSRF token.

mod browser;
mod forms;
mod users;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION};

use crate::console::support::ConsoleClient;
use crate::helpers::TestApp;
use crate::invite_helpers::PASSWORD;

/// The organization.
pub(crate) const ORG: &str = "acme";
/// Its owner (an accepted Owner with a password).
pub(crate) const OWNER: &str = "olivia@acme.example";

/// A page as the console answered it.
#[derive(Debug)]
pub(crate) struct Page {
    /// The status.
    pub status: StatusCode,
    /// `Location` of a redirect.
    pub location: String,
    /// The HTML.
    pub body: String,
}

impl Page {
    async fn of(response: reqwest::Response) -> Self {
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.expect("the page's body");
        Self {
            status,
            location,
            body,
        }
    }

    /// Asserts a 303 to `prefix…`.
    pub(crate) fn assert_redirect(&self, prefix: &str) {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.body);
        assert!(
            self.location.starts_with(prefix),
            "redirect to `{}`, not `{prefix}…`",
            self.location
        );
    }
}

/// An app with `acme`, whose owner Olivia accepted with [`PASSWORD`].
pub(crate) async fn acme() -> (TestApp, String) {
    let app = TestApp::spawn_with_admin().await;
    let owner_id = app.create_org(ORG, OWNER).await;
    (app, owner_id)
}

/// `email` signed in to the console.
pub(crate) async fn signed_in(app: &TestApp, email: &str) -> ConsoleClient {
    ConsoleClient::sign_in(app, email, PASSWORD).await
}

/// `GET path`.
pub(crate) async fn open(console: &ConsoleClient, path: &str) -> Page {
    Page::of(console.get(path).await).await
}

/// Posts a form of `path`'s page (opened first, so that its CSRF token is
/// the one sent).
pub(crate) async fn submit(
    console: &ConsoleClient,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> Page {
    let (status, body) = console.get_text(page).await;
    assert_eq!(status, StatusCode::OK, "{page}: {body}");
    Page::of(console.post_form(action, fields).await).await
}

/// Posts a form with the CSRF field `csrf` (`None`: without one) as is.
pub(crate) async fn post_raw(
    console: &ConsoleClient,
    action: &str,
    csrf: Option<&str>,
    fields: &[(&str, &str)],
) -> Page {
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    if let Some(csrf) = csrf {
        form.push(("csrf", csrf));
    }
    Page::of(console.post_raw(action, &form).await).await
}

/// Uploads `csv` as the bulk page's file (multipart), with `csrf` and the
/// checkboxes named in `checked`.
pub(crate) async fn upload(
    app: &TestApp,
    console: &ConsoleClient,
    csrf: Option<&str>,
    csv: &str,
    checked: &[&str],
) -> Page {
    const BOUNDARY: &str = "cedargate-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = String::new();
    let mut part = |disposition: &str, value: &str| {
        body.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n{value}\r\n"
        ));
    };
    if let Some(csrf) = csrf {
        part("name=\"csrf\"", csrf);
    }
    for name in checked {
        part(&format!("name=\"{name}\""), "yes");
    }
    part(
        "name=\"file\"; filename=\"people.csv\"\r\nContent-Type: text/csv",
        csv,
    );
    body.push_str(&format!("--{BOUNDARY}--\r\n"));
    // The session's cookie, sent as the browser would with the file.
    let session = console.session().expect("a session cookie");
    let response = reqwest::Client::new()
        .post(app.url(&format!("/console/orgs/{ORG}/bulk")))
        .header(COOKIE, format!("cedargate_session={session}"))
        .header(
            CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .expect("the file is posted");
    Page::of(response).await
}

/// The HTML of the table row of `email` on the Users tab (from its `<tr`
/// to its `</tr>`).
pub(crate) fn row_of<'a>(users: &'a str, email: &str) -> &'a str {
    let marker = format!("data-email=\"{email}\"");
    let at = users
        .find(&marker)
        .unwrap_or_else(|| panic!("no row of {email} in:\n{users}"));
    let start = users[..at].rfind("<tr").unwrap_or(at);
    let end = users[at..].find("</tr>").map_or(users.len(), |e| at + e);
    &users[start..end]
}
