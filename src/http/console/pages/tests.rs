//! Rendering of the pages' templates: every form carries the CSRF field,
//! controls appear only when the batch allowed them, errors sit next to
//! their fields.

use axum::body::to_bytes;
use axum::http::StatusCode;
use minijinja::context;

use super::*;
use crate::invites::controls::{Control, MemberRef};
use crate::invites::model::{ACCOUNT_TYPES, MODULES};

async fn body_of(response: Response) -> String {
    let bytes = to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn row(user_id: &str, status: &str, allowed: bool) -> Value {
    context! {
        user_id, name => "Rita Reader", email => format!("{user_id}@acme.example"), status,
        role => "GeneralUser", levels => vec!["None", "None", "None", "None", "Read", "None", "None"],
        upload => "No", restrictions => vec!["active: a1"], department => "Trading",
        invitation => "PENDING", delivery_failed => true, agent => false, agent_approved => false,
        can_edit => allowed, can_status => allowed, can_resend => allowed, can_revoke => allowed,
        can_remove => allowed, can_approve => allowed,
    }
}

fn users_page(rows: Vec<Value>, can_invite: bool) -> Response {
    render(
        "console/pages/users.html",
        StatusCode::OK,
        context! {
            me => "olivia@acme.example", csrf => "CSRF-TOKEN", nav => Vec::<Value>::new(),
            org => "acme", rows, modules => MODULES, status => "", notice => Option::<&str>::None,
            can_invite,
        },
    )
}

#[tokio::test]
async fn the_users_tab_shows_the_matrix_and_only_the_allowed_controls() {
    let allowed = body_of(users_page(
        vec![row("rita", "ACTIVE", true), row("pete", "PENDING", true)],
        true,
    ))
    .await;
    let denied = body_of(users_page(vec![row("rita", "ACTIVE", false)], false)).await;

    assert!(
        allowed.contains("<th scope=\"col\">Billing</th>"),
        "{allowed}"
    );
    assert!(allowed.contains("active: a1"), "{allowed}");
    assert!(allowed.contains("Delivery failed"), "{allowed}");
    assert!(allowed.contains("id=\"deactivate-rita\""), "{allowed}");
    assert!(allowed.contains("id=\"resend-pete\""), "{allowed}");
    assert!(
        !allowed.contains("id=\"resend-rita\""),
        "an active member has no invitation to resend"
    );
    assert!(allowed.contains("id=\"add-user\""), "{allowed}");
    assert!(
        allowed.contains("name=\"csrf\" value=\"CSRF-TOKEN\""),
        "{allowed}"
    );
    for control in [
        "deactivate-",
        "edit-",
        "remove-",
        "add-user",
        "resend-",
        "<form method=\"post\" action=\"/console/orgs",
    ] {
        assert!(
            !denied.contains(control),
            "`{control}` shown without permission: {denied}"
        );
    }
    assert!(denied.contains("rita@acme.example"), "{denied}");
}

async fn member_form(error_field: Option<&str>) -> String {
    let form = context! {
        first_name => "Rita", last_name => "Reader", email => "rita@acme.example",
        email_confirm => "rita@acme.exampel", role => "GeneralUser",
        levels => MODULES.iter().map(|m| ((*m).to_owned(), "None")).collect::<std::collections::BTreeMap<_, _>>(),
        upload => "No",
        restrict => ACCOUNT_TYPES.iter().map(|t| ((*t).to_owned(), Option::<Vec<String>>::None)).collect::<std::collections::BTreeMap<_, _>>(),
        department => "", agent => false,
    };
    let accounts = ACCOUNT_TYPES
        .iter()
        .map(|t| {
            (
                (*t).to_owned(),
                vec![context! { id => format!("{t}-1"), name => format!("{t} one") }],
            )
        })
        .collect::<std::collections::BTreeMap<_, _>>();
    let response = render(
        "console/pages/member_form.html",
        StatusCode::UNPROCESSABLE_ENTITY,
        context! {
            me => "olivia@acme.example", csrf => "CSRF-TOKEN", nav => Vec::<Value>::new(),
            org => "acme", form, modules => MODULES, account_types => ACCOUNT_TYPES,
            roles => ["GeneralUser", "Owner"], accounts, departments => Vec::<Value>::new(),
            member => Option::<Value>::None, error_field, error => error_field.map(|_| "the two e-mail addresses differ"),
            can_status => false, can_remove => false,
        },
    );
    body_of(response).await
}

#[tokio::test]
async fn the_add_user_form_labels_every_input_and_shows_the_error_next_to_its_field() {
    let page = member_form(Some("email_confirm")).await;

    assert!(
        page.contains("<label for=\"email_confirm\">E-mail again</label>"),
        "{page}"
    );
    assert!(
        page.contains("id=\"email_confirm\" name=\"email_confirm\" value=\"rita@acme.exampel\" autocomplete=\"off\" required aria-invalid=\"true\" aria-describedby=\"email_confirm-error\""),
        "{page}"
    );
    let field = page.find("id=\"email_confirm\"").unwrap_or_default();
    let error = page.find("id=\"email_confirm-error\"").unwrap_or_default();
    let next_field = page.find("for=\"role\"").unwrap_or_default();
    assert!(
        field < error && error < next_field,
        "the error follows its field: {page}"
    );
    for m in MODULES {
        for level in ["None", "Read", "Manage"] {
            assert!(
                page.contains(&format!("id=\"perm-{m}-{level}\"")),
                "{m} {level}"
            );
        }
    }
    assert!(page.contains("id=\"account-active-active-1\""), "{page}");
    assert!(page.contains("id=\"save-and-send\""), "{page}");
    assert!(
        page.contains("name=\"csrf\" value=\"CSRF-TOKEN\""),
        "{page}"
    );
    let clean = member_form(None).await;
    assert!(!clean.contains("aria-invalid"), "{clean}");
    assert!(!clean.contains("role=\"alert\""), "{clean}");
}

#[tokio::test]
async fn every_page_template_renders_with_the_csrf_field_on_its_forms() {
    let common = |extra: Value| {
        let base = context! {
            me => "olivia@acme.example", csrf => "CSRF-TOKEN", nav => Vec::<Value>::new(), org => "acme",
            manage => true, name => "Acme Energy", require_mfa => false,
            departments => vec![context! { id => "trading", name => "Trading" }],
            records => vec![context! { at => 1, actor => "u1", action => "invitation.created", outcome => "ok" }],
            orgs => vec![context! { id => "acme", name => "Acme", status => "ACTIVE", users => true, security => true }],
            agents => Vec::<Value>::new(), can_create => true,
            new_org => context! { id => "", name => "", first_name => "", last_name => "", email => "", require_mfa => false },
            heading => "h", message => "m", action => "", user => "",
        };
        context! { ..extra, ..base }
    };
    for name in [
        "console/pages/home.html",
        "console/pages/bulk.html",
        "console/pages/departments.html",
        "console/pages/audit.html",
        "console/pages/security.html",
        "console/pages/message.html",
    ] {
        let page = body_of(render(name, StatusCode::OK, common(context! {}))).await;
        assert!(!page.contains("Something went wrong."), "{name}: {page}");
        for form in page.split("<form method=\"post\"").skip(1) {
            assert!(
                form.contains("name=\"csrf\" value=\"CSRF-TOKEN\""),
                "{name}: {form}"
            );
        }
    }
    let security = body_of(render(
        "console/pages/security.html",
        StatusCode::OK,
        common(context! {}),
    ))
    .await;
    assert!(security.contains("id=\"require_mfa\""), "{security}");
    let report = context! {
        report => context! { valid => 1, invalid => 1, written => 0, rows => vec![
            context! { row => 1, email => "a@acme.example", outcome => "valid", error => Option::<String>::None },
            context! { row => 2, email => "b", outcome => "invalid", error => "`email`: not an e-mail address" },
        ]},
    };
    let bulk = body_of(render(
        "console/pages/bulk.html",
        StatusCode::OK,
        common(report),
    ))
    .await;
    assert!(bulk.contains("id=\"report-row-2\""), "{bulk}");
    assert!(bulk.contains("not an e-mail address"), "{bulk}");
    assert!(bulk.contains("enctype=\"multipart/form-data\""), "{bulk}");
}

#[test]
fn the_navigation_offers_only_the_tabs_the_batch_allowed() {
    let member = MemberRef {
        org_id: "acme".to_owned(),
        user_id: "u1".to_owned(),
        last_active_manager: false,
    };
    let none = crate::invites::controls::Allowed::default();
    let nav = org_nav("acme", &none, "users");
    assert_eq!(nav.len(), 1, "only the way back: {nav:?}");
    assert!(!none.allows(&Control::member("users.remove", &member)));
}

#[test]
fn a_service_refusal_keeps_the_api_status_and_names_the_field() {
    let invalid = Refusal::from(InviteError::invalid("permissions.billing", "not a level"));
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid.field.as_deref(), Some("permissions.billing"));
    assert_eq!(invalid.message, "not a level");
    let forbidden = Refusal::from(InviteError::Forbidden {
        policies: vec!["users-administer".to_owned()],
        message: "`users.invite` not allowed: `users-administer` needs …".to_owned(),
    });
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert!(forbidden.message.contains("users-administer"));
    assert!(notice_text("invited").is_some());
    assert_eq!(notice_text("<script>"), None);
}
