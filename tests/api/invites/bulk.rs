//! Bulk invitations from a CSV file: dry runs, all-or-nothing and partial imports, refused files.

use reqwest::StatusCode;

use super::{ORG, OWNER, acme, bulk, str_of};
use crate::invite_helpers::assert_invalid;

const MIXED_CSV: &str = "first_name,last_name,email,role,billing\n\
                         Ann,Able,ann@acme.example,GeneralUser,Read\n\
                         Ben,Baker,ben@acme.example,,\n\
                         Cat,Cole,info@acme.example,,\n";

on_both_backends!(a_bulk_dry_run_reports_every_row_and_writes_nothing);
async fn a_bulk_dry_run_reports_every_row_and_writes_nothing() {
    // Arrange
    let (app, _) = acme().await;
    let mails_before = app.mail_count().await;

    // Act
    let reply = bulk(&app, OWNER, "?dry_run=true", MIXED_CSV).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["valid"], 2, "{}", reply.text);
    assert_eq!(reply.body["invalid"], 1, "{}", reply.text);
    assert_eq!(reply.body["written"], 0, "{}", reply.text);
    let rows = reply.body["rows"].as_array().cloned().unwrap_or_default();
    let outcomes: Vec<&str> = rows.iter().map(|r| str_of(&r["outcome"])).collect();
    assert_eq!(outcomes, ["valid", "valid", "invalid"]);
    assert_eq!(rows[2]["row"], 3);
    assert!(str_of(&rows[2]["error"]).contains("`email`"), "{}", rows[2]);
    assert_eq!(app.members(OWNER, ORG).await.len(), 1);
    assert_eq!(app.mail_count().await, mails_before);
}

on_both_backends!(
    a_bulk_file_with_one_invalid_row_writes_nothing_unless_asked_to_import_the_valid_rows
);
async fn a_bulk_file_with_one_invalid_row_writes_nothing_unless_asked_to_import_the_valid_rows() {
    // Arrange
    let (app, _) = acme().await;
    let mails_before = app.mail_count().await;

    // Act
    let refused = bulk(&app, OWNER, "", MIXED_CSV).await;
    let members_after_refusal = app.members(OWNER, ORG).await.len();
    let mails_after_refusal = app.mail_count().await;
    let imported = bulk(&app, OWNER, "?import_valid=true", MIXED_CSV).await;

    // Assert
    assert_eq!(refused.status, StatusCode::OK, "{}", refused.text);
    assert_eq!(refused.body["invalid"], 1, "{}", refused.text);
    assert_eq!(refused.body["written"], 0, "{}", refused.text);
    assert_eq!(members_after_refusal, 1);
    assert_eq!(mails_after_refusal, mails_before);
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.text);
    assert_eq!(imported.body["written"], 2, "{}", imported.text);
    let outcomes: Vec<&str> = imported.body["rows"]
        .as_array()
        .map(|rows| rows.iter().map(|r| str_of(&r["outcome"])).collect())
        .unwrap_or_default();
    assert_eq!(outcomes, ["invited", "invited", "invalid"]);
    let ann = app.member(OWNER, ORG, "ann@acme.example").await;
    assert_eq!(ann["status"], "PENDING");
    assert_eq!(ann["permissions"]["billing"], "Read");
    app.member(OWNER, ORG, "ben@acme.example").await;
    assert!(
        app.members_with_email(OWNER, ORG, "info@acme.example")
            .await
            .is_empty()
    );
    assert!(app.next_mail_to("ann@acme.example").await.token().is_some());
    assert!(app.next_mail_to("ben@acme.example").await.token().is_some());
}

on_both_backends!(bulk_files_without_rows_or_with_an_unknown_column_are_refused_naming_the_file);
async fn bulk_files_without_rows_or_with_an_unknown_column_are_refused_naming_the_file() {
    // Arrange
    let (app, _) = acme().await;

    // Act
    let header_only = bulk(&app, OWNER, "", "first_name,last_name,email\n").await;
    let unknown_column = bulk(
        &app,
        OWNER,
        "",
        "first_name,last_name,email,phone\nAnn,Able,ann@acme.example,555\n",
    )
    .await;
    let missing_column = bulk(&app, OWNER, "", "first_name,email\nAnn,ann@acme.example\n").await;
    let empty = bulk(&app, OWNER, "", "").await;

    // Assert
    assert_invalid(&header_only, "file");
    assert!(
        header_only.message().contains("no rows"),
        "{}",
        header_only.text
    );
    assert_invalid(&unknown_column, "file");
    assert!(
        unknown_column.message().contains("unknown column `phone`"),
        "{}",
        unknown_column.text
    );
    assert_invalid(&missing_column, "file");
    assert!(
        missing_column.message().contains("last_name"),
        "{}",
        missing_column.text
    );
    assert_invalid(&empty, "file");
    assert_eq!(app.members(OWNER, ORG).await.len(), 1);
}

on_both_backends!(bulk_rows_repeating_an_address_or_naming_an_existing_member_are_reported);
async fn bulk_rows_repeating_an_address_or_naming_an_existing_member_are_reported() {
    // Arrange
    let (app, _) = acme().await;
    let csv = "first_name,last_name,email\n\
               Bob,One,Bob@X.com\n\
               Bob,Two, bob@x.com \n\
               Olivia,Again,OLIVIA@acme.example\n";

    // Act
    let reply = bulk(&app, OWNER, "?dry_run=true", csv).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let rows = reply.body["rows"].as_array().cloned().unwrap_or_default();
    let outcomes: Vec<&str> = rows.iter().map(|r| str_of(&r["outcome"])).collect();
    assert_eq!(outcomes, ["valid", "invalid", "invalid"], "{}", reply.text);
    assert!(
        str_of(&rows[1]["error"]).contains("earlier row"),
        "{}",
        rows[1]
    );
    assert!(
        str_of(&rows[2]["error"]).contains("already a member"),
        "{}",
        rows[2]
    );
    assert_eq!(app.members(OWNER, ORG).await.len(), 1);
}
