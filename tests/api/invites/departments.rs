//! Departments: saved and deleted under the same id rules.

use reqwest::StatusCode;
use serde_json::json;

use super::{ORG, OWNER, acme};

on_both_backends!(a_department_saved_under_an_id_is_deleted_under_the_same_id);
async fn a_department_saved_under_an_id_is_deleted_under_the_same_id() {
    // Arrange: ids are case-insensitive when saved ("Sales" is `sales`).
    let (app, _) = acme().await;
    let path = format!("/v1/orgs/{ORG}/departments/Sales");
    let saved = app.put(OWNER, &path, &json!({"name": "Sales"})).await;

    // Act
    let deleted = app.delete_as(OWNER, &path).await;
    let again = app.delete_as(OWNER, &path).await;

    // Assert
    assert!(saved.status.is_success(), "{}", saved.text);
    assert!(deleted.status.is_success(), "{}", deleted.text);
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);
}
