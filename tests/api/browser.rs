//! The invitation acceptance page in a real browser: Debian's Chromium,
//! headless, driven through chromedriver (WebDriver) with fantoccini. The
//! link comes from the `.eml` file the server wrote, as a person would get it.
//!
//! `bash tests/run.sh` installs `chromium` and `chromium-driver`; without
//! them these tests fail (they are never skipped).

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{Backend, TestApp};
use crate::invite_helpers::PASSWORD;
use crate::onboarding::{
    ORG_ID, ORG_NAME, OWNER_EMAIL, create_org_inviting_the_owner, invite_link, token_of,
};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long chromedriver may take to answer `/status` with `ready`.
const DRIVER_DEADLINE: Duration = Duration::from_secs(30);
/// How long a page may take to appear after a click.
const PAGE_DEADLINE: Duration = Duration::from_secs(30);

/// A chromedriver process on a free port, killed on drop.
struct ChromeDriver {
    child: Child,
    url: String,
    /// Holds the driver's log and the browser profile.
    dir: TempDir,
}

impl ChromeDriver {
    /// Starts chromedriver and waits until it is ready.
    async fn start() -> Self {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: run `bash tests/run.sh`, which installs Debian's \
                 `chromium` and `chromium-driver` packages for the browser tests"
            );
        }
        let port = free_port();
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let log = dir.path().join("chromedriver.log");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {CHROMEDRIVER}: {e}"));
        let mut driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        driver.wait_until_ready().await;
        driver
    }

    /// Polls `GET /status` until `value.ready` is true.
    async fn wait_until_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + DRIVER_DEADLINE;
        loop {
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!(
                    "chromedriver exited ({exit}) before it was ready; its log:\n{}",
                    self.log()
                );
            }
            let status = client
                .get(format!("{}/status", self.url))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(response) = status
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver was not ready after {DRIVER_DEADLINE:?}; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    fn profile_dir(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    /// A WebDriver session with Chromium, headless, on a fresh profile.
    async fn session(&self) -> Client {
        // The test binary links two rustls crypto providers (ring for
        // lettre, aws-lc-rs for fantoccini's hyper-rustls), so one must be
        // chosen before fantoccini builds its TLS configuration.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", self.profile_dir().display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal");
        };
        ClientBuilder::rustls()
            .expect("a WebDriver client")
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no Chromium session through chromedriver: {e}; its log:\n{}",
                    self.log()
                )
            })
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on (bound, read, released).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("the bound address").port()
}

/// Runs `test` with a browser session, and closes the session (and with it
/// Chromium) whether the test passed or panicked, before failing.
pub(crate) async fn in_browser<F, Fut>(test: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let driver = ChromeDriver::start().await;
    let browser = driver.session().await;
    // A spawned task: a panic in it comes back as an error here.
    let backend = Backend::current();
    let outcome = tokio::spawn(backend.run(test(browser.clone()))).await;
    let closed = browser.close().await;
    drop(driver);
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
    closed.expect("the browser session closes");
}

/// The link in the next e-mail to `to` (an `.eml` file in the server's
/// mail directory).
pub(crate) async fn link_mailed_to(app: &TestApp, to: &str) -> String {
    let mail = app.next_mail_to(to).await;
    invite_link(&app.address, &mail.body)
}

/// Waits for the element `id` (a new page after a click) and returns its text.
pub(crate) async fn text_of(browser: &Client, id: &str) -> String {
    browser
        .wait()
        .at_most(PAGE_DEADLINE)
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no element #{id} on the page: {e}"))
        .text()
        .await
        .expect("the element's text")
}

/// The visible text of the whole page.
pub(crate) async fn page_text(browser: &Client) -> String {
    browser
        .find(Locator::Css("body"))
        .await
        .expect("a body")
        .text()
        .await
        .expect("the body's text")
}

pub(crate) async fn type_into(browser: &Client, id: &str, text: &str) {
    // Waits: the element may belong to a page still loading after a click.
    browser
        .wait()
        .at_most(PAGE_DEADLINE)
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id} field: {e}"))
        .send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("cannot type into #{id}: {e}"));
}

pub(crate) async fn click(browser: &Client, id: &str) {
    // Waits: the element may belong to a page still loading after a click.
    browser
        .wait()
        .at_most(PAGE_DEADLINE)
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id} button: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click #{id}: {e}"));
}

on_both_backends!(
    the_owner_opens_the_emailed_link_sets_a_password_and_becomes_an_active_manager,
    chromium
);
async fn the_owner_opens_the_emailed_link_sets_a_password_and_becomes_an_active_manager() {
    in_browser(|browser| async move {
        // Arrange
        let app = TestApp::spawn_with_admin().await;
        let owner_id = create_org_inviting_the_owner(&app).await;
        let link = link_mailed_to(&app, OWNER_EMAIL).await;
        assert!(!app.allowed(&owner_id, "organization.manage", ORG_ID).await);

        // Act
        browser.goto(&link).await.expect("the link opens");
        let invitation = page_text(&browser).await;
        type_into(&browser, "password", PASSWORD).await;
        type_into(&browser, "password_confirm", PASSWORD).await;
        click(&browser, "accept").await;
        let heading = text_of(&browser, "heading").await;

        // Assert
        assert!(
            invitation.contains(&format!("Join {ORG_NAME}")),
            "{invitation}"
        );
        assert!(
            invitation.contains(&format!(
                "Sam Admin invited {OWNER_EMAIL} to join {ORG_NAME}."
            )),
            "the page names the organization and the inviter: {invitation}"
        );
        assert_eq!(heading, format!("Welcome to {ORG_NAME}"));
        let owner = app.member(OWNER_EMAIL, ORG_ID, OWNER_EMAIL).await;
        assert_eq!(owner["status"], "ACTIVE", "{owner}");
        assert_eq!(owner["invitation"], "ACCEPTED", "{owner}");
        assert_eq!(owner["user_id"], owner_id.as_str(), "{owner}");
        assert!(app.allowed(&owner_id, "organization.manage", ORG_ID).await);
    })
    .await;
}

on_both_backends!(
    an_invitee_who_declines_stays_pending_and_the_link_then_shows_the_unavailable_page,
    chromium
);
async fn an_invitee_who_declines_stays_pending_and_the_link_then_shows_the_unavailable_page() {
    in_browser(|browser| async move {
        // Arrange
        let app = TestApp::spawn_with_admin().await;
        create_org_inviting_the_owner(&app).await;
        let owner_link = link_mailed_to(&app, OWNER_EMAIL).await;
        let accepted = app.accept(token_of(&owner_link)).await;
        assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
        let rita_email = "rita@acme.example";
        let outcome = app
            .invited(
                OWNER_EMAIL,
                ORG_ID,
                rita_email,
                json!({"first_name": "Rita", "last_name": "Reader", "role": "GeneralUser"}),
            )
            .await;
        let rita_id = outcome["user_id"].as_str().expect("Rita's user id");
        let link = link_mailed_to(&app, rita_email).await;

        // Act
        browser.goto(&link).await.expect("the link opens");
        let invitation = page_text(&browser).await;
        click(&browser, "decline").await;
        let heading = text_of(&browser, "heading").await;
        let message = text_of(&browser, "message").await;
        browser.goto(&link).await.expect("the link opens again");
        let heading_again = text_of(&browser, "heading").await;
        let form_again = browser.find(Locator::Id("accept")).await;
        let status_again = app.client.get(&link).send().await.expect("GET the link");

        // Assert
        assert!(
            invitation.contains(&format!(
                "Olivia Owner invited {rita_email} to join {ORG_NAME}."
            )),
            "{invitation}"
        );
        assert_eq!(heading, "Invitation declined");
        assert!(
            message.contains("You declined the invitation."),
            "{message}"
        );
        let rita = app.member(OWNER_EMAIL, ORG_ID, rita_email).await;
        assert_eq!(rita["status"], "PENDING", "{rita}");
        assert_eq!(rita["invitation"], "DECLINED", "{rita}");
        assert!(!app.allowed(rita_id, "organization.read", ORG_ID).await);
        assert_eq!(heading_again, "This link is unavailable");
        assert!(form_again.is_err(), "a dead link offers no form");
        assert_eq!(status_again.status(), StatusCode::NOT_FOUND);
    })
    .await;
}

on_both_backends!(
    mismatched_passwords_show_the_form_again_with_an_error_and_accept_nothing,
    chromium
);
async fn mismatched_passwords_show_the_form_again_with_an_error_and_accept_nothing() {
    in_browser(|browser| async move {
        // Arrange
        let app = TestApp::spawn_with_admin().await;
        let owner_id = create_org_inviting_the_owner(&app).await;
        let link = link_mailed_to(&app, OWNER_EMAIL).await;
        browser.goto(&link).await.expect("the link opens");
        type_into(&browser, "password", PASSWORD).await;
        type_into(
            &browser,
            "password_confirm",
            "correct horse battery stapler",
        )
        .await;

        // Act
        click(&browser, "accept").await;
        let error = text_of(&browser, "error").await;

        // Assert
        assert_eq!(error, "The two passwords differ.");
        let page = page_text(&browser).await;
        assert!(page.contains(&format!("Join {ORG_NAME}")), "{page}");
        assert!(
            browser.find(Locator::Id("password")).await.is_ok(),
            "the form is shown again"
        );
        assert!(!app.allowed(&owner_id, "organization.manage", ORG_ID).await);

        // The link was not used: the form shown again (with a fresh CSRF
        // token) accepts, and that is the only acceptance.
        type_into(&browser, "password", PASSWORD).await;
        type_into(&browser, "password_confirm", PASSWORD).await;
        click(&browser, "accept").await;
        assert_eq!(
            text_of(&browser, "heading").await,
            format!("Welcome to {ORG_NAME}")
        );
        let owner = app.member(OWNER_EMAIL, ORG_ID, OWNER_EMAIL).await;
        assert_eq!(owner["status"], "ACTIVE", "{owner}");
        let acceptances = app
            .audit(OWNER_EMAIL, ORG_ID, "?action=invitation.accepted")
            .await;
        assert_eq!(acceptances.len(), 1, "{acceptances:?}");
    })
    .await;
}

/// The value of the hidden input `name` in the acceptance page.
fn hidden_field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden `{name}` field in:\n{page}"))
        + marker.len();
    page[start..]
        .split('"')
        .next()
        .expect("a quoted value")
        .to_owned()
}

on_both_backends!(an_accept_form_posted_without_the_csrf_cookie_is_refused_and_accepts_nothing);
async fn an_accept_form_posted_without_the_csrf_cookie_is_refused_and_accepts_nothing() {
    // Arrange
    let app = TestApp::spawn_with_admin().await;
    let owner_id = create_org_inviting_the_owner(&app).await;
    let link = link_mailed_to(&app, OWNER_EMAIL).await;
    let client = &app.client; // no cookie store: the page's cookie is not kept
    let page = client.get(&link).send().await.expect("GET the link");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()
            .get_all(SET_COOKIE)
            .iter()
            .any(|c| c.to_str().is_ok_and(|c| c.starts_with("cedargate_csrf="))),
        "the page sets the CSRF cookie"
    );
    let page = page.text().await.expect("the page");
    let form = [
        ("token", hidden_field(&page, "token")),
        ("csrf", hidden_field(&page, "csrf")),
        ("password", PASSWORD.to_owned()),
        ("password_confirm", PASSWORD.to_owned()),
    ];
    let accept_url = app.url("/invite/accept");

    // Act
    let without_cookie = client.post(&accept_url).form(&form).send().await;
    let with_another_cookie = client
        .post(&accept_url)
        .header(COOKIE, "cedargate_csrf=forged")
        .form(&form)
        .send()
        .await;

    // Assert
    let without_cookie = without_cookie.expect("POST the form");
    assert_eq!(without_cookie.status(), StatusCode::FORBIDDEN);
    let refusal = without_cookie.text().await.expect("the refusal page");
    assert!(refusal.contains("Please open the link again"), "{refusal}");
    let with_another_cookie = with_another_cookie.expect("POST the form");
    assert_eq!(with_another_cookie.status(), StatusCode::FORBIDDEN);
    assert!(!app.allowed(&owner_id, "organization.manage", ORG_ID).await);
    // The link was not used: it still shows the form and accepts once.
    let again = client.get(&link).send().await.expect("GET the link");
    assert_eq!(again.status(), StatusCode::OK);
    let accepted = app.accept(token_of(&link)).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    let acceptances = app
        .audit(OWNER_EMAIL, ORG_ID, "?action=invitation.accepted")
        .await;
    assert_eq!(acceptances.len(), 1, "{acceptances:?}");
}
