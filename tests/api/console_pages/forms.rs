//! Add New User, bulk upload, departments, the audit trail, Security
//! Policies, and the CSRF check of every form of the pages.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{ORG, OWNER, acme, open, post_raw, signed_in, submit, upload};
use crate::helpers::TestApp;
use crate::invite_helpers::ADMIN_EMAIL;

const NEW_USER: &str = "nina@acme.example";
const ACCOUNT: &str = "acme-active-1";

fn new_path() -> String {
    format!("/console/orgs/{ORG}/users/new")
}

/// The Add New User form for Nina: Billing=Read, Upload Generations Yes,
/// active accounts restricted to [`ACCOUNT`], `submit` save or send.
fn nina(email_confirm: &'static str, submit: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut fields = vec![
        ("first_name", "Nina"),
        ("last_name", "New"),
        ("email", NEW_USER),
        ("email_confirm", email_confirm),
        ("role", "GeneralUser"),
        ("perm_organization", "None"),
        ("perm_transactions", "None"),
        ("perm_accounts", "None"),
        ("perm_generators", "None"),
        ("perm_billing", "Read"),
        ("perm_programs", "None"),
        ("perm_api", "None"),
        ("upload_generations", "Yes"),
        ("restrict_active", "selected"),
        ("account_active", ACCOUNT),
        ("restrict_retirement", "all"),
        ("restrict_reserve", "all"),
        ("department", ""),
    ];
    fields.push(("submit", submit));
    fields
}

/// `GET path` as the owner in a session that passed two-step verification.
async fn get_with_mfa(app: &TestApp, path: &str) -> crate::invite_helpers::Reply {
    TestApp::reply(
        app.request(Method::GET, path)
            .header("X-Cedargate-Actor", OWNER)
            .header("X-Cedargate-Actor-Mfa", "true"),
    )
    .await
}

async fn with_account(app: &TestApp) {
    let accounts = json!([
        {"uid": {"type": "Account", "id": ACCOUNT}, "attrs": {"tenant": ORG, "accountType": "Active", "name": "Main active"}, "parents": []},
    ]);
    let (status, body) = app.put_json("/v1/entities", &accounts).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

on_both_backends!(add_new_user_saves_the_person_with_modules_and_accounts_and_mails_the_invitation);
async fn add_new_user_saves_the_person_with_modules_and_accounts_and_mails_the_invitation() {
    // Arrange
    let (app, _) = acme().await;
    with_account(&app).await;
    let console = signed_in(&app, OWNER).await;

    // Act
    let form = open(&console, &new_path()).await;
    let sent = submit(&console, &new_path(), &new_path(), &nina(NEW_USER, "send")).await;
    let mail = app.next_mail_to(NEW_USER).await;

    // Assert
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    for label in [
        "First name",
        "Last name",
        "E-mail again",
        "Upload Generations",
        "Advanced Account Permissions",
        "Main active",
    ] {
        assert!(form.body.contains(label), "`{label}`: {}", form.body);
    }
    sent.assert_redirect(&format!("/console/orgs/{ORG}/users?notice=invited"));
    assert!(
        mail.token().is_some(),
        "the e-mail carries the link: {mail:?}"
    );
    let member = app.member(OWNER, ORG, NEW_USER).await;
    assert_eq!(member["status"], "PENDING", "{member}");
    assert_eq!(member["first_name"], "Nina", "{member}");
    assert_eq!(member["permissions"]["billing"], "Read", "{member}");
    assert_eq!(
        member["permissions"]["uploadGenerations"], "Yes",
        "{member}"
    );
    assert_eq!(
        member["restrictions"],
        json!({"active": [ACCOUNT]}),
        "{member}"
    );
    assert_eq!(member["invitation"], "PENDING", "{member}");
}

on_both_backends!(save_keeps_the_person_pending_without_sending_anything);
async fn save_keeps_the_person_pending_without_sending_anything() {
    // Arrange
    let (app, _) = acme().await;
    with_account(&app).await;
    let console = signed_in(&app, OWNER).await;
    let mails_before = app.mail_count().await;

    // Act
    let saved = submit(&console, &new_path(), &new_path(), &nina(NEW_USER, "save")).await;

    // Assert
    saved.assert_redirect(&format!("/console/orgs/{ORG}/users?notice=saved"));
    let member = app.member(OWNER, ORG, NEW_USER).await;
    assert_eq!(member["status"], "PENDING", "{member}");
    assert!(
        member["invitation"].is_null(),
        "no invitation sent: {member}"
    );
    assert_eq!(app.mail_count().await, mails_before);
}

on_both_backends!(add_new_user_shows_errors_next_to_their_fields_and_creates_nobody);
async fn add_new_user_shows_errors_next_to_their_fields_and_creates_nobody() {
    // Arrange
    let (app, _) = acme().await;
    with_account(&app).await;
    let console = signed_in(&app, OWNER).await;
    let mut unknown_account = nina(NEW_USER, "send");
    for field in &mut unknown_account {
        if field.0 == "account_active" {
            field.1 = "globex-active-9";
        }
    }

    // Act
    let mismatch = submit(
        &console,
        &new_path(),
        &new_path(),
        &nina("nina@acme.exampel", "send"),
    )
    .await;
    let bad_account = submit(&console, &new_path(), &new_path(), &unknown_account).await;

    // Assert
    assert_eq!(
        mismatch.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        mismatch.body
    );
    assert!(
        mismatch
            .body
            .contains("aria-describedby=\"email_confirm-error\""),
        "{}",
        mismatch.body
    );
    assert!(
        mismatch.body.contains(
            "<p class=\"error\" id=\"email_confirm-error\">the two e-mail addresses differ</p>"
        ),
        "{}",
        mismatch.body
    );
    assert!(
        mismatch.body.contains("value=\"Nina\""),
        "the input is kept: {}",
        mismatch.body
    );
    assert_eq!(
        bad_account.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        bad_account.body
    );
    assert!(
        bad_account
            .body
            .contains("id=\"restrictions-active-error\""),
        "{}",
        bad_account.body
    );
    assert!(
        bad_account.body.contains("globex-active-9"),
        "{}",
        bad_account.body
    );
    assert!(
        app.members_with_email(OWNER, ORG, NEW_USER)
            .await
            .is_empty()
    );
}

on_both_backends!(a_bulk_upload_with_one_bad_row_reports_every_row_and_writes_nothing);
async fn a_bulk_upload_with_one_bad_row_reports_every_row_and_writes_nothing() {
    // Arrange
    let (app, _) = acme().await;
    let console = signed_in(&app, OWNER).await;
    let form = open(&console, &format!("/console/orgs/{ORG}/bulk")).await;
    let csrf = crate::console::support::csrf_from(&form.body);
    let csv = "first_name,last_name,email,billing\nAda,One,ada@acme.example,Read\nBob,Two,not-an-address,Read\nCy,Three,cy@acme.example,None\n";
    let members_before = app.members(OWNER, ORG).await.len();

    // Act
    let report = upload(&app, &console, Some(&csrf), csv, &["send"]).await;
    let members_after_report = app.members(OWNER, ORG).await.len();
    let imported = upload(&app, &console, Some(&csrf), csv, &["send", "import_valid"]).await;

    // Assert
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(form.body.contains("type=\"file\""), "{}", form.body);
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert!(
        report.body.contains("2 valid, 1 invalid, 0 written."),
        "{}",
        report.body
    );
    assert!(
        report.body.contains("id=\"report-row-2\""),
        "{}",
        report.body
    );
    let bad_row = report
        .body
        .split("id=\"report-row-2\"")
        .nth(1)
        .unwrap_or_default();
    let bad_row = bad_row.split("</tr>").next().unwrap_or_default();
    assert!(
        bad_row.contains("invalid") && bad_row.contains("email"),
        "{bad_row}"
    );
    assert_eq!(members_after_report, members_before, "nothing written");
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.body);
    assert!(imported.body.contains("2 written."), "{}", imported.body);
    assert_eq!(app.members(OWNER, ORG).await.len(), members_before + 2);
}

on_both_backends!(security_policies_turn_on_two_step_verification_for_the_next_decision);
async fn security_policies_turn_on_two_step_verification_for_the_next_decision() {
    // Arrange
    let (app, _) = acme().await;
    let rita = app
        .member_joins(
            OWNER,
            ORG,
            "rita@acme.example",
            json!({"permissions": {"billing": "Read"}}),
        )
        .await;
    let console = signed_in(&app, OWNER).await;
    let path = format!("/console/orgs/{ORG}/security");

    // Act
    let page = open(&console, &path).await;
    let saved = submit(
        &console,
        &path,
        &path,
        &[("name", "Acme Energy"), ("require_mfa", "yes")],
    )
    .await;

    // Assert
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains("Two-step verification is <strong>not required"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("<label><input type=\"checkbox\" id=\"require_mfa\""),
        "{}",
        page.body
    );
    saved.assert_redirect(&format!("{path}?notice=security"));
    let settings = get_with_mfa(&app, &format!("/v1/orgs/{ORG}")).await;
    assert_eq!(settings.body["requireMfa"], true, "{}", settings.text);
    assert!(
        !app.allowed(&rita, "billing.read", ORG).await,
        "no MFA, no access"
    );
    let changed = get_with_mfa(
        &app,
        &format!("/v1/orgs/{ORG}/audit?action=organization.settingsChanged"),
    )
    .await;
    assert_eq!(
        changed.body.as_array().map(Vec::len),
        Some(1),
        "{}",
        changed.text
    );
}

on_both_backends!(departments_are_saved_and_deleted_and_the_audit_trail_lists_the_events);
async fn departments_are_saved_and_deleted_and_the_audit_trail_lists_the_events() {
    // Arrange
    let (app, _) = acme().await;
    let console = signed_in(&app, OWNER).await;
    let path = format!("/console/orgs/{ORG}/departments");

    // Act
    let saved = submit(
        &console,
        &path,
        &path,
        &[("department", "trading"), ("name", "Trading")],
    )
    .await;
    let listed = open(&console, &path).await;
    let invalid = submit(
        &console,
        &path,
        &path,
        &[("department", "Not An Id!"), ("name", "X")],
    )
    .await;
    let deleted = submit(&console, &path, &format!("{path}/trading/delete"), &[]).await;
    let audit = open(
        &console,
        &format!("/console/orgs/{ORG}/audit?action=department."),
    )
    .await;

    // Assert
    saved.assert_redirect(&format!("{path}?notice=department"));
    assert!(
        listed.body.contains("id=\"department-trading\""),
        "{}",
        listed.body
    );
    assert_eq!(
        invalid.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        invalid.body
    );
    assert!(
        invalid.body.contains("id=\"department-error\""),
        "{}",
        invalid.body
    );
    deleted.assert_redirect(&format!("{path}?notice=department-deleted"));
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    assert!(audit.body.contains("department.saved"), "{}", audit.body);
    assert!(audit.body.contains("department.deleted"), "{}", audit.body);
}

on_both_backends!(every_form_of_the_pages_is_refused_without_the_session_s_csrf_token);
async fn every_form_of_the_pages_is_refused_without_the_session_s_csrf_token() {
    // Arrange
    let (app, _) = acme().await;
    let rita = app
        .member_joins(
            OWNER,
            ORG,
            "rita@acme.example",
            json!({"permissions": {"billing": "Read"}}),
        )
        .await;
    let pete = app
        .invited(OWNER, ORG, "pete@acme.example", json!({}))
        .await["user_id"]
        .as_str()
        .expect("Pete's id")
        .to_owned();
    let saved = app
        .put(
            OWNER,
            &format!("/v1/orgs/{ORG}/departments/trading"),
            &json!({"name": "Trading"}),
        )
        .await;
    assert!(saved.status.is_success(), "{}", saved.text);
    let console = signed_in(&app, OWNER).await;
    let users = format!("/console/orgs/{ORG}/users");
    let forms: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/console/admin/orgs".to_owned(),
            vec![
                ("id", "globex"),
                ("name", "Globex"),
                ("first_name", "G"),
                ("last_name", "O"),
                ("email", "g@globex.example"),
            ],
        ),
        (format!("{users}/new"), nina(NEW_USER, "send")),
        (
            format!("{users}/{rita}"),
            vec![("perm_billing", "Manage"), ("submit", "save")],
        ),
        (
            format!("{users}/{rita}/status"),
            vec![("status", "INACTIVE")],
        ),
        (format!("{users}/{pete}/resend"), vec![]),
        (format!("{users}/{pete}/revoke"), vec![]),
        (format!("{users}/{rita}/remove"), vec![]),
        (
            format!("{users}/{rita}/agent"),
            vec![("decision", "reject")],
        ),
        (
            format!("/console/orgs/{ORG}/departments"),
            vec![("department", "ops"), ("name", "Ops")],
        ),
        (
            format!("/console/orgs/{ORG}/departments/trading/delete"),
            vec![],
        ),
        (
            format!("/console/orgs/{ORG}/security"),
            vec![("name", "Acme"), ("require_mfa", "yes")],
        ),
    ];
    let audit_before = app.audit(OWNER, ORG, "").await.len();
    let csv = "first_name,last_name,email\nAda,One,ada@acme.example\n";

    // Act
    let mut answers = Vec::new();
    for (action, fields) in &forms {
        for csrf in [None, Some("forged-token")] {
            let page = post_raw(&console, action, csrf, fields).await;
            answers.push((format!("{action} with {csrf:?}"), page));
        }
    }
    for csrf in [None, Some("forged-token")] {
        let page = upload(&app, &console, csrf, csv, &["send"]).await;
        answers.push((format!("bulk with {csrf:?}"), page));
    }

    // Assert
    for (what, page) in &answers {
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{what}: {}", page.body);
        assert!(
            page.body.contains("This form could not be verified"),
            "{what}: refused by the CSRF check, before anything else: {}",
            page.body
        );
    }
    assert_eq!(
        app.audit(OWNER, ORG, "").await.len(),
        audit_before,
        "nothing happened"
    );
    assert_eq!(app.members(OWNER, ORG).await.len(), 3);
    assert_eq!(
        app.member(OWNER, ORG, "rita@acme.example").await["status"],
        "ACTIVE"
    );
    assert_eq!(
        app.member(OWNER, ORG, "pete@acme.example").await["invitation"],
        "PENDING"
    );
    let settings = app.get(OWNER, &format!("/v1/orgs/{ORG}")).await;
    assert_eq!(settings.body["requireMfa"], false, "{}", settings.text);
    let orgs = app.get(ADMIN_EMAIL, "/v1/orgs/globex/members").await;
    assert_eq!(orgs.status, StatusCode::NOT_FOUND, "{}", orgs.text);
}
