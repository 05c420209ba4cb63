//! The console's administration pages in a real browser (headless
//! Chromium through chromedriver, as `tests/api/browser.rs`): the owner
//! signs in, adds a user with module permissions and account restrictions
//! and sends the invitation; the invitee accepts through the e-mailed link,
//! sets a password and signs in; the owner deactivates and reactivates the
//! member, turns on two-step verification, after which the member must
//! enroll at her next sign-in; and uploads a file with one bad row. A
//! member without Organization=Manage sees no administration control and
//! is refused when she posts Add New User anyway. Keyboard and mouse go
//! through the same controls a person uses (labels, buttons, links).
//!
//! The run saves screenshots of the Users tab and of Add New User (PNG):
//! into `tests/screenshots/` with `CEDARGATE_UPDATE_SCREENSHOTS=1` (for the
//! README), else into a temporary directory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::json;

use super::{ORG, OWNER};
use crate::browser::{click, in_browser, link_mailed_to, page_text, text_of, type_into};
use crate::console::two_step::code_at;
use crate::helpers::{Backend, TestApp, repo_dir};
use crate::invite_helpers::PASSWORD;

const NINA: &str = "nina@acme.example";
const ACCOUNT: &str = "acme-active-1";
/// How long a page may take to show an expected text.
const TEXT_DEADLINE: Duration = Duration::from_secs(30);

/// Waits until the element `id` holds `expected` and returns its text.
async fn wait_for_text(browser: &Client, id: &str, expected: &str) -> String {
    let deadline = Instant::now() + TEXT_DEADLINE;
    loop {
        let text = match browser.find(Locator::Id(id)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(expected) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "#{id} never showed `{expected}` (last: `{text}`); the page:\n{}",
            page_text(browser).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the organization requires two-step verification (the
/// Security Policies form was saved).
async fn wait_until_mfa_required(app: &TestApp) {
    let deadline = Instant::now() + TEXT_DEADLINE;
    loop {
        let settings = TestApp::reply(
            app.request(reqwest::Method::GET, &format!("/v1/orgs/{ORG}"))
                .header("X-Cedargate-Actor", OWNER)
                .header("X-Cedargate-Actor-Mfa", "true"),
        )
        .await;
        if settings.body["requireMfa"] == true {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never required: {}",
            settings.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn click_css(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}`: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click `{css}`: {e}"));
}

async fn sign_in(browser: &Client, app: &TestApp, email: &str) {
    browser
        .goto(&app.url("/console/sign-in"))
        .await
        .expect("the sign-in page opens");
    type_into(browser, "email", email).await;
    type_into(browser, "password", PASSWORD).await;
    click_css(browser, "form[action='/console/sign-in'] button").await;
    wait_for_text(browser, "heading", "Your organizations").await;
}

async fn sign_out(browser: &Client) {
    click_css(browser, "form[action='/console/sign-out'] button").await;
    let deadline = Instant::now() + TEXT_DEADLINE;
    while browser.find(Locator::Id("orgs")).await.is_ok() {
        assert!(Instant::now() < deadline, "still signed in");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Saves a PNG of the page as `name` (see the module's comment for where).
async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let update = std::env::var("CEDARGATE_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1");
    // One backend's run updates the README's pictures; the other's (and
    // every run without the variable) goes to a temporary directory.
    let dir: PathBuf = if update && Backend::current() == Backend::Sqlite {
        repo_dir().join("tests/screenshots")
    } else {
        std::env::temp_dir().join("cedargate-console-screenshots")
    };
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    let partial = dir.join(format!(".{name}.{}", std::process::id()));
    std::fs::write(&partial, png).expect("the screenshot is written");
    std::fs::rename(&partial, dir.join(name)).expect("the screenshot is in place");
}

on_both_backends!(
    the_owner_adds_a_user_who_joins_is_deactivated_and_reactivated_and_must_enroll_in_two_step,
    chromium
);
async fn the_owner_adds_a_user_who_joins_is_deactivated_and_reactivated_and_must_enroll_in_two_step()
 {
    in_browser(|browser| async move {
        // Arrange
        let app = TestApp::spawn_with_admin().await;
        app.create_org(ORG, OWNER).await;
        app.member_joins(
            OWNER,
            ORG,
            "rita@acme.example",
            json!({"first_name": "Rita", "last_name": "Reader", "permissions": {"billing": "Manage", "transactions": "Read"}}),
        )
        .await;
        let accounts = json!([
            {"uid": {"type": "Account", "id": ACCOUNT}, "attrs": {"tenant": ORG, "accountType": "Active", "name": "Main active"}, "parents": []},
        ]);
        let (status, body) = app.put_json("/v1/entities", &accounts).await;
        assert!(status.is_success(), "{body}");
        // Tall enough for the whole Add New User form in one picture.
        browser
            .set_window_size(1400, 1900)
            .await
            .expect("the window is sized");

        // Act: the owner adds Nina and sends the invitation.
        sign_in(&browser, &app, OWNER).await;
        browser
            .goto(&app.url(&format!("/console/orgs/{ORG}/users/new")))
            .await
            .expect("Add New User opens");
        type_into(&browser, "first_name", "Nina").await;
        type_into(&browser, "last_name", "New").await;
        type_into(&browser, "email", NINA).await;
        type_into(&browser, "email_confirm", NINA).await;
        click(&browser, "perm-billing-Read").await;
        click(&browser, "perm-transactions-Manage").await;
        click(&browser, "upload-Yes").await;
        click(&browser, "restrict-active-selected").await;
        click(&browser, &format!("account-active-{ACCOUNT}")).await;
        screenshot(&browser, "console-add-user.png").await;
        click(&browser, "save-and-send").await;
        let notice = wait_for_text(&browser, "notice", "invitation sent").await;
        browser
            .set_window_size(1800, 760)
            .await
            .expect("the window is sized");
        screenshot(&browser, "console-users.png").await;
        let nina = app.member(OWNER, ORG, NINA).await;
        let nina_id = nina["user_id"].as_str().expect("Nina's id").to_owned();
        let link = link_mailed_to(&app, NINA).await;
        sign_out(&browser).await;

        // Act: Nina accepts, sets her password and signs in.
        browser.goto(&link).await.expect("the link opens");
        type_into(&browser, "password", PASSWORD).await;
        type_into(&browser, "password_confirm", PASSWORD).await;
        click(&browser, "accept").await;
        let welcome = text_of(&browser, "heading").await;
        sign_in(&browser, &app, NINA).await;
        let nina_home = page_text(&browser).await;
        sign_out(&browser).await;

        // Act: the owner deactivates and reactivates her.
        sign_in(&browser, &app, OWNER).await;
        let users = app.url(&format!("/console/orgs/{ORG}/users"));
        browser.goto(&users).await.expect("the Users tab opens");
        click(&browser, &format!("deactivate-{nina_id}")).await;
        wait_for_text(&browser, "notice", "deactivated").await;
        let while_off = app.allowed(&nina_id, "billing.read", ORG).await;
        let off_row = text_of(&browser, &format!("row-{nina_id}")).await;
        click(&browser, &format!("reactivate-{nina_id}")).await;
        wait_for_text(&browser, "notice", "reactivated").await;
        let on_row = text_of(&browser, &format!("row-{nina_id}")).await;
        let reads_again = app.allowed(&nina_id, "billing.read", ORG).await;
        let manages = app.allowed(&nina_id, "billing.manage", ORG).await;

        // Act: the owner requires two-step verification; Nina is made to
        // enroll at her next sign-in.
        browser
            .goto(&app.url(&format!("/console/orgs/{ORG}/security")))
            .await
            .expect("Security Policies opens");
        click(&browser, "require_mfa").await;
        click(&browser, "save-security").await;
        wait_until_mfa_required(&app).await;
        browser.delete_all_cookies().await.expect("signed out");
        browser
            .goto(&app.url("/console/sign-in"))
            .await
            .expect("the sign-in page opens");
        type_into(&browser, "email", NINA).await;
        type_into(&browser, "password", PASSWORD).await;
        click_css(&browser, "form[action='/console/sign-in'] button").await;
        let secret = text_of(&browser, "totp-secret").await;
        let enroll_page = page_text(&browser).await;
        type_into(&browser, "code", &code_at(&secret, app.now())).await;
        click_css(&browser, "form[action='/console/two-step/enroll'] button").await;
        let codes = text_of(&browser, "recovery-codes").await;
        browser
            .goto(&app.url("/console"))
            .await
            .expect("the console opens");
        let enrolled_home = wait_for_text(&browser, "orgs", "acme Energy").await;

        // Assert
        assert!(notice.contains("invitation sent"), "{notice}");
        assert_eq!(nina["permissions"]["billing"], "Read", "{nina}");
        assert_eq!(nina["permissions"]["transactions"], "Manage", "{nina}");
        assert_eq!(nina["permissions"]["uploadGenerations"], "Yes", "{nina}");
        assert_eq!(nina["restrictions"], json!({"active": [ACCOUNT]}), "{nina}");
        assert_eq!(welcome, "Welcome to acme Energy");
        assert!(nina_home.contains("acme Energy"), "{nina_home}");
        assert!(nina_home.contains("ACTIVE"), "{nina_home}");
        assert!(!while_off, "deactivated: denied");
        assert!(off_row.contains("INACTIVE"), "{off_row}");
        assert!(on_row.contains("ACTIVE") && !on_row.contains("INACTIVE"), "{on_row}");
        assert!(reads_again, "reactivated: Billing=Read again");
        assert!(!manages);
        assert!(
            enroll_page.contains("requires two-step verification"),
            "{enroll_page}"
        );
        assert!(!codes.trim().is_empty(), "recovery codes are shown");
        assert!(enrolled_home.contains("ACTIVE"), "{enrolled_home}");
    })
    .await;
}

on_both_backends!(
    a_bulk_upload_with_one_bad_row_shows_the_per_row_report_in_the_browser,
    chromium
);
async fn a_bulk_upload_with_one_bad_row_shows_the_per_row_report_in_the_browser() {
    in_browser(|browser| async move {
        // Arrange
        let app = TestApp::spawn_with_admin().await;
        app.create_org(ORG, OWNER).await;
        let file = app.dir().join("people.csv");
        std::fs::write(
            &file,
            "first_name,last_name,email,billing\nAda,One,ada@acme.example,Read\nBob,Two,not-an-address,Read\n",
        )
        .expect("the file is written");
        let members_before = app.members(OWNER, ORG).await.len();
        sign_in(&browser, &app, OWNER).await;

        // Act
        browser
            .goto(&app.url(&format!("/console/orgs/{ORG}/bulk")))
            .await
            .expect("the bulk page opens");
        type_into(&browser, "file", &file.display().to_string()).await;
        click(&browser, "upload").await;
        let summary = wait_for_text(&browser, "report-summary", "invalid").await;
        let bad = text_of(&browser, "report-row-2").await;
        let good = text_of(&browser, "report-row-1").await;

        // Assert
        assert_eq!(summary, "1 valid, 1 invalid, 0 written.");
        assert!(bad.contains("invalid") && bad.contains("not-an-address"), "{bad}");
        assert!(good.contains("ada@acme.example") && good.contains("valid"), "{good}");
        assert_eq!(app.members(OWNER, ORG).await.len(), members_before);
    })
    .await;
}

/// The visible texts of the page's links and buttons.
async fn control_labels(browser: &Client) -> Vec<String> {
    let labels = browser
        .execute(
            "return Array.from(document.querySelectorAll('a, button, input[type=submit]'))\
             .map(e => (e.innerText || e.value || '').trim());",
            vec![],
        )
        .await
        .expect("the controls are read");
    serde_json::from_value(labels).expect("a list of labels")
}

on_both_backends!(
    a_member_without_organization_manage_sees_no_controls_and_is_refused_in_the_browser,
    chromium
);
async fn a_member_without_organization_manage_sees_no_controls_and_is_refused_in_the_browser() {
    in_browser(|browser| async move {
        // Arrange: an active member and a pending invitee, so that every
        // row control (Edit, Deactivate, Resend, Revoke, Remove) has a row
        // it would be shown on to an administrator.
        let app = TestApp::spawn_with_admin().await;
        app.create_org(ORG, OWNER).await;
        app.member_joins(OWNER, ORG, "rita@acme.example", json!({"permissions": {"billing": "Manage"}}))
            .await;
        app.invited(OWNER, ORG, "pia@acme.example", json!({})).await;
        let pat = "pat@acme.example";
        app.member_joins(
            OWNER,
            ORG,
            pat,
            json!({"permissions": {"organization": "Read", "billing": "Manage"}}),
        )
        .await;
        let members_before = app.members(OWNER, ORG).await.len();
        let mails_before = app.mail_count().await;
        let zed = "zed@acme.example";

        // Act: Pat signs in and opens the Users tab.
        sign_in(&browser, &app, pat).await;
        let home_controls = control_labels(&browser).await;
        let users = app.url(&format!("/console/orgs/{ORG}/users"));
        browser.goto(&users).await.expect("the Users tab opens");
        let tab = wait_for_text(&browser, "users", "rita@acme.example").await;
        let tab_controls = control_labels(&browser).await;
        let post_forms = browser
            .find_all(Locator::Css("form[method=post][action^='/console/orgs']"))
            .await
            .expect("the forms are listed")
            .len();

        // Act: Add New User by its address, then its form posted anyway
        // from the Users tab with the session's own CSRF token.
        browser
            .goto(&app.url(&format!("/console/orgs/{ORG}/users/new")))
            .await
            .expect("the address opens");
        let new_form = wait_for_text(&browser, "heading", "Not allowed").await;
        browser.goto(&users).await.expect("the Users tab opens");
        wait_for_text(&browser, "users", "rita@acme.example").await;
        // The form's `submit` field hides `form.submit`: the prototype's.
        browser
            .execute(
                "const [action, fields] = arguments;\
                 const csrf = document.querySelector(\"form[action='/console/sign-out'] input[name=csrf]\").value;\
                 const form = document.createElement('form');\
                 form.method = 'post';\
                 form.action = action;\
                 for (const [name, value] of Object.entries({...fields, csrf})) {\
                   const input = document.createElement('input');\
                   input.type = 'hidden';\
                   input.name = name;\
                   input.value = value;\
                   form.appendChild(input);\
                 }\
                 document.body.appendChild(form);\
                 HTMLFormElement.prototype.submit.call(form);",
                vec![
                    json!(format!("/console/orgs/{ORG}/users/new")),
                    json!({
                        "first_name": "Zed",
                        "last_name": "Zero",
                        "email": zed,
                        "email_confirm": zed,
                        "perm_billing": "Read",
                        "upload_generations": "No",
                        "submit": "send",
                    }),
                ],
            )
            .await
            .expect("the form is posted");
        let heading = wait_for_text(&browser, "heading", "Not allowed").await;
        let refusal = text_of(&browser, "message").await;
        browser.goto(&users).await.expect("the Users tab opens");
        let tab_after = wait_for_text(&browser, "users", "rita@acme.example").await;

        // Assert
        assert!(tab.contains("pia@acme.example"), "the list itself is visible: {tab}");
        assert!(tab_controls.iter().any(|l| l == "Sign out"), "{tab_controls:?}");
        for label in [
            "Add New User",
            "Bulk upload",
            "Edit",
            "Deactivate",
            "Reactivate",
            "Resend",
            "Revoke",
            "Remove",
            "Security Policies",
        ] {
            assert!(
                !tab_controls.iter().any(|l| l == label),
                "`{label}` on the Users tab: {tab_controls:?}"
            );
            assert!(
                !home_controls.iter().any(|l| l == label),
                "`{label}` on the home page: {home_controls:?}"
            );
        }
        assert_eq!(post_forms, 0, "no administration form on the Users tab");
        assert_eq!(new_form, "Not allowed");
        assert_eq!(heading, "Not allowed");
        assert!(
            refusal.contains("users.invite") && refusal.contains("users-administer"),
            "the refusal names the action and the missing permission: {refusal}"
        );
        assert!(!tab_after.contains(zed), "{tab_after}");
        assert!(app.members_with_email(OWNER, ORG, zed).await.is_empty());
        assert_eq!(app.members(OWNER, ORG).await.len(), members_before);
        assert_eq!(app.mail_count().await, mails_before, "no invitation mailed");
    })
    .await;
}
