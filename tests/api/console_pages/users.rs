//! The Users tab and its row controls: the permission matrix, the status
//! filter, Edit User, deactivate/reactivate, resend/revoke, and what a
//! member without Organization=Manage sees and may post.

use reqwest::StatusCode;
use serde_json::json;

use super::{ORG, OWNER, acme, open, row_of, signed_in, submit};
use crate::invite_helpers::PASSWORD;

const RITA: &str = "rita@acme.example";
const PETE: &str = "pete@acme.example";

fn users_path() -> String {
    format!("/console/orgs/{ORG}/users")
}

/// The Edit User form's fields for `levels` (module, level), everything
/// else None/No/unrestricted.
fn edit_fields(levels: &[(&str, &str)]) -> Vec<(String, String)> {
    let modules = [
        "organization",
        "transactions",
        "accounts",
        "generators",
        "billing",
        "programs",
        "api",
    ];
    let mut fields: Vec<(String, String)> = modules
        .iter()
        .map(|m| {
            let level = levels
                .iter()
                .find(|(name, _)| name == m)
                .map_or("None", |(_, l)| l);
            (format!("perm_{m}"), level.to_owned())
        })
        .collect();
    fields.push(("role".to_owned(), "GeneralUser".to_owned()));
    fields.push(("upload_generations".to_owned(), "No".to_owned()));
    for ty in ["active", "retirement", "reserve"] {
        fields.push((format!("restrict_{ty}"), "all".to_owned()));
    }
    fields.push(("department".to_owned(), String::new()));
    fields
}

/// The `<input …>` tag with `id`.
fn input_tag<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in:\n{html}"));
    let start = html[..at].rfind("<input").unwrap_or(at);
    let end = html[at..].find('>').map_or(html.len(), |e| at + e);
    &html[start..end]
}

fn borrowed(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

on_both_backends!(the_users_tab_lists_each_member_s_permission_per_module_and_filters_by_status);
async fn the_users_tab_lists_each_member_s_permission_per_module_and_filters_by_status() {
    // Arrange
    let (app, owner_id) = acme().await;
    let rita = app
        .member_joins(
            OWNER,
            ORG,
            RITA,
            json!({"first_name": "Rita", "last_name": "Reader",
                   "permissions": {"billing": "Manage", "transactions": "Read"}}),
        )
        .await;
    let pete = app.invited(OWNER, ORG, PETE, json!({})).await["user_id"]
        .as_str()
        .expect("Pete's id")
        .to_owned();
    let console = signed_in(&app, OWNER).await;

    // Act
    let all = open(&console, &users_path()).await;
    let pending = open(&console, &format!("{}?status=PENDING", users_path())).await;

    // Assert
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    let rita_row = row_of(&all.body, RITA);
    assert!(rita_row.contains("Rita Reader"), "{rita_row}");
    assert!(rita_row.contains("ACTIVE"), "{rita_row}");
    // organization, transactions, accounts, generators, billing, programs, api
    assert!(
        rita_row.contains(
            "<td>None</td><td>Read</td><td>None</td><td>None</td><td>Manage</td><td>None</td><td>None</td>"
        ),
        "the matrix in module order: {rita_row}"
    );
    assert!(rita_row.contains("ACCEPTED"), "{rita_row}");
    assert!(
        rita_row.contains(&format!("id=\"deactivate-{rita}\"")),
        "{rita_row}"
    );
    assert!(
        rita_row.contains(&format!("id=\"edit-{rita}\"")),
        "{rita_row}"
    );
    let pete_row = row_of(&all.body, PETE);
    assert!(pete_row.contains("PENDING"), "{pete_row}");
    assert!(
        pete_row.contains(&format!("id=\"resend-{pete}\"")),
        "{pete_row}"
    );
    assert!(
        pete_row.contains(&format!("id=\"revoke-{pete}\"")),
        "{pete_row}"
    );
    // The policies let nobody change their own status: no such button on
    // the owner's own row.
    let own_row = row_of(&all.body, OWNER);
    assert!(
        !own_row.contains(&format!("deactivate-{owner_id}")),
        "{own_row}"
    );
    assert!(
        !own_row.contains(&format!("remove-{owner_id}")),
        "{own_row}"
    );
    assert!(all.body.contains("id=\"add-user\""), "{}", all.body);
    assert_eq!(pending.status, StatusCode::OK, "{}", pending.body);
    assert!(pending.body.contains(PETE), "{}", pending.body);
    assert!(!pending.body.contains(RITA), "{}", pending.body);
}

on_both_backends!(edit_user_changes_the_member_s_permissions_and_the_next_decision);
async fn edit_user_changes_the_member_s_permissions_and_the_next_decision() {
    // Arrange
    let (app, _) = acme().await;
    let rita = app
        .member_joins(
            OWNER,
            ORG,
            RITA,
            json!({"permissions": {"billing": "Manage"}}),
        )
        .await;
    assert!(app.allowed(&rita, "billing.manage", ORG).await);
    let console = signed_in(&app, OWNER).await;
    let edit = format!("{}/{rita}", users_path());
    let fields = edit_fields(&[("billing", "Read"), ("transactions", "Manage")]);

    // Act
    let form = open(&console, &edit).await;
    let saved = submit(&console, &edit, &edit, &borrowed(&fields)).await;

    // Assert
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let billing = input_tag(&form.body, "perm-billing-Manage");
    assert!(
        billing.contains(" checked"),
        "the current level is checked: {billing}"
    );
    saved.assert_redirect(&format!("{}?notice=updated", users_path()));
    assert!(!app.allowed(&rita, "billing.manage", ORG).await);
    assert!(app.allowed(&rita, "billing.read", ORG).await);
    assert!(app.allowed(&rita, "transactions.manage", ORG).await);
    let member = app.member(OWNER, ORG, RITA).await;
    assert_eq!(member["permissions"]["billing"], "Read", "{member}");
}

on_both_backends!(the_owner_deactivates_and_reactivates_a_member_restoring_or_starting_fresh);
async fn the_owner_deactivates_and_reactivates_a_member_restoring_or_starting_fresh() {
    // Arrange
    let (app, _) = acme().await;
    let rita = app
        .member_joins(
            OWNER,
            ORG,
            RITA,
            json!({"permissions": {"billing": "Manage"}}),
        )
        .await;
    let console = signed_in(&app, OWNER).await;
    let status = format!("{}/{rita}/status", users_path());

    // Act
    let off = submit(&console, &users_path(), &status, &[("status", "INACTIVE")]).await;
    let while_off = app.allowed(&rita, "billing.read", ORG).await;
    let tab = open(&console, &users_path()).await;
    let restored = submit(
        &console,
        &users_path(),
        &status,
        &[("status", "ACTIVE"), ("reactivate", "restore")],
    )
    .await;
    let after_restore = app.allowed(&rita, "billing.manage", ORG).await;
    submit(&console, &users_path(), &status, &[("status", "INACTIVE")]).await;
    let edit = format!("{}/{rita}", users_path());
    let mut fresh = edit_fields(&[("billing", "Read")]);
    fresh.push(("submit".to_owned(), "reactivate".to_owned()));
    let edit_page = open(&console, &edit).await;
    let fresh_start = submit(&console, &edit, &edit, &borrowed(&fresh)).await;

    // Assert
    off.assert_redirect(&format!("{}?notice=deactivated", users_path()));
    assert!(!while_off);
    let row = row_of(&tab.body, RITA);
    assert!(row.contains("INACTIVE"), "{row}");
    assert!(row.contains(&format!("id=\"reactivate-{rita}\"")), "{row}");
    restored.assert_redirect(&format!("{}?notice=reactivated", users_path()));
    assert!(after_restore, "restore gives back Billing=Manage");
    assert!(
        edit_page.body.contains("id=\"reactivate-fresh\""),
        "{}",
        edit_page.body
    );
    fresh_start.assert_redirect(&format!("{}?notice=reactivated", users_path()));
    assert!(app.allowed(&rita, "billing.read", ORG).await);
    assert!(!app.allowed(&rita, "billing.manage", ORG).await);
    let member = app.member(OWNER, ORG, RITA).await;
    assert_eq!(member["status"], "ACTIVE", "{member}");
    let audit = app
        .audit(OWNER, ORG, "?action=membership.reactivated")
        .await;
    let outcomes: Vec<&str> = audit.iter().filter_map(|r| r["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["ok: restore", "ok: fresh"], "{audit:?}");
}

on_both_backends!(resend_sends_a_new_link_and_revoke_kills_it);
async fn resend_sends_a_new_link_and_revoke_kills_it() {
    // Arrange
    let (app, _) = acme().await;
    let pete = app.invited(OWNER, ORG, PETE, json!({})).await["user_id"]
        .as_str()
        .expect("Pete's id")
        .to_owned();
    let first = app.next_token_for(PETE).await;
    let console = signed_in(&app, OWNER).await;

    // Act
    let resent = submit(
        &console,
        &users_path(),
        &format!("{}/{pete}/resend", users_path()),
        &[],
    )
    .await;
    let second = app.next_token_for(PETE).await;
    let revoked = submit(
        &console,
        &users_path(),
        &format!("{}/{pete}/revoke", users_path()),
        &[],
    )
    .await;

    // Assert
    resent.assert_redirect(&format!("{}?notice=resent", users_path()));
    assert_ne!(first, second, "a new link");
    revoked.assert_redirect(&format!("{}?notice=revoked", users_path()));
    let member = app.member(OWNER, ORG, PETE).await;
    assert_eq!(member["invitation"], "REVOKED", "{member}");
    assert_eq!(app.accept(&second).await.status, StatusCode::NOT_FOUND);
    let tab = open(&console, &users_path()).await;
    assert!(
        !row_of(&tab.body, PETE).contains("id=\"revoke-"),
        "{}",
        tab.body
    );
}

on_both_backends!(
    a_member_without_organization_manage_sees_no_controls_and_is_refused_posting_anyway
);
async fn a_member_without_organization_manage_sees_no_controls_and_is_refused_posting_anyway() {
    // Arrange
    let (app, _) = acme().await;
    let rita = app
        .member_joins(
            OWNER,
            ORG,
            RITA,
            json!({"permissions": {"billing": "Manage"}}),
        )
        .await;
    let pat_email = "pat@acme.example";
    app.member_joins(
        OWNER,
        ORG,
        pat_email,
        json!({"permissions": {"organization": "Read", "billing": "Manage"}}),
    )
    .await;
    let pat = signed_in(&app, pat_email).await;
    let members_before = app.members(OWNER, ORG).await.len();

    // Act
    let tab = open(&pat, &users_path()).await;
    let home = open(&pat, "/console").await;
    let new_form = open(&pat, &format!("{}/new", users_path())).await;
    let deactivate = submit(
        &pat,
        &users_path(),
        &format!("{}/{rita}/status", users_path()),
        &[("status", "INACTIVE")],
    )
    .await;
    let invite = submit(
        &pat,
        &users_path(),
        &format!("{}/new", users_path()),
        &[
            ("first_name", "Zed"),
            ("last_name", "Zero"),
            ("email", "zed@acme.example"),
            ("email_confirm", "zed@acme.example"),
            ("submit", "send"),
        ],
    )
    .await;

    // Assert
    assert_eq!(tab.status, StatusCode::OK, "{}", tab.body);
    assert!(
        tab.body.contains(RITA),
        "the list itself is visible: {}",
        tab.body
    );
    let admin_forms = tab
        .body
        .matches("<form method=\"post\" action=\"/console/orgs")
        .count();
    assert_eq!(admin_forms, 0, "no administration control: {}", tab.body);
    for control in [
        "id=\"add-user\"",
        "id=\"edit-",
        "Security Policies",
        "Bulk upload",
    ] {
        assert!(
            !tab.body.contains(control),
            "`{control}` shown: {}",
            tab.body
        );
    }
    assert!(!home.body.contains("Security Policies"), "{}", home.body);
    assert_eq!(new_form.status, StatusCode::FORBIDDEN, "{}", new_form.body);
    assert_eq!(
        deactivate.status,
        StatusCode::FORBIDDEN,
        "{}",
        deactivate.body
    );
    assert!(
        deactivate.body.contains("users-administer"),
        "the refusal names the missing permission: {}",
        deactivate.body
    );
    assert_eq!(invite.status, StatusCode::FORBIDDEN, "{}", invite.body);
    assert_eq!(app.member(OWNER, ORG, RITA).await["status"], "ACTIVE");
    assert_eq!(app.members(OWNER, ORG).await.len(), members_before);
    // Organization=None: not even the list.
    let rita_console = crate::console::support::ConsoleClient::sign_in(&app, RITA, PASSWORD).await;
    let refused = open(&rita_console, &users_path()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
}

on_both_backends!(
    a_system_administrator_creates_an_organization_and_approves_an_agent_from_the_console
);
async fn a_system_administrator_creates_an_organization_and_approves_an_agent_from_the_console() {
    // Arrange
    let (app, _) = acme().await;
    let agent_email = "ava@agency.example";
    let agent = app
        .member_joins(
            OWNER,
            ORG,
            agent_email,
            json!({"agent": true, "permissions": {"billing": "Read"}}),
        )
        .await;
    crate::console::reset::set_password_by_link(&app, crate::invite_helpers::ADMIN_EMAIL, PASSWORD)
        .await;
    let admin = signed_in(&app, crate::invite_helpers::ADMIN_EMAIL).await;
    let owner = signed_in(&app, OWNER).await;

    // Act
    let admin_home = open(&admin, "/console").await;
    let owner_home = open(&owner, "/console").await;
    let created = submit(
        &admin,
        "/console",
        "/console/admin/orgs",
        &[
            ("id", "globex"),
            ("name", "Globex"),
            ("first_name", "Gina"),
            ("last_name", "Owner"),
            ("email", "gina@globex.example"),
        ],
    )
    .await;
    let approved = submit(
        &admin,
        "/console",
        &format!("/console/orgs/{ORG}/users/{agent}/agent"),
        &[
            ("decision", "approve"),
            ("designation", "NAD-2026-1"),
            ("back", "home"),
        ],
    )
    .await;

    // Assert
    assert_eq!(admin_home.status, StatusCode::OK, "{}", admin_home.body);
    assert!(
        admin_home.body.contains("id=\"create-org\""),
        "{}",
        admin_home.body
    );
    assert!(admin_home.body.contains(agent_email), "{}", admin_home.body);
    assert!(
        admin_home.body.contains("id=\"users-acme\""),
        "oversight: {}",
        admin_home.body
    );
    assert!(
        !owner_home.body.contains("id=\"create-org\""),
        "{}",
        owner_home.body
    );
    assert!(
        !owner_home.body.contains(agent_email),
        "{}",
        owner_home.body
    );
    created.assert_redirect("/console?notice=org-created");
    let gina = app
        .member(
            crate::invite_helpers::ADMIN_EMAIL,
            "globex",
            "gina@globex.example",
        )
        .await;
    assert_eq!(gina["role"], "Owner", "{gina}");
    approved.assert_redirect("/console?notice=agent");
    let ava = app.member(OWNER, ORG, agent_email).await;
    assert_eq!(ava["agent_approved"], true, "{ava}");
}
