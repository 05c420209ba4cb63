//! Bulk invitation from CSV (R64-R70, E3, E23, E24). The whole file is
//! validated first and every row's problem reported; nothing is written
//! when a row is invalid, unless the caller asks to import the valid rows.
//!
//! Columns (header required; names case-insensitive; only the first three
//! are required): `first_name, last_name, email, role, department,
//! is_agent, organization, transactions, accounts, generators, billing,
//! programs, api, upload_generations, restrict_active, restrict_retirement,
//! restrict_reserve`. A `restrict_*` cell lists account ids separated by
//! `;`; `none` restricts to no account; an empty cell leaves the type
//! unrestricted.
//!
//! A file with more rows to write than the `bulk_sync_rows` setting is
//! validated here all the same, then written by a background job
//! (`jobs.rs`): the caller gets the job's id at once.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::invite::{INVITE, InviteInput, Prepared};
use super::jobs::{JobAccepted, JobInput, NewJob};
use super::members::existing_org;
use super::model::{ACCOUNT_TYPES, MODULES};
use super::service::{Actor, InviteService};
use super::{Conflict, InviteError, rules};

/// Largest file accepted, in rows.
pub const MAX_ROWS: usize = 10_000;

/// The columns about the person. The others come from the model (a level
/// per module, a `restrict_*` per account type), so a file can set
/// whatever an invitation through the API can.
const PERSON_COLUMNS: [&str; 6] = [
    "first_name",
    "last_name",
    "email",
    "role",
    "department",
    "is_agent",
];

/// Every column, in the order the unknown-column error lists them.
fn columns() -> Vec<String> {
    PERSON_COLUMNS
        .iter()
        .chain(&MODULES)
        .chain(&["upload_generations"])
        .map(|c| (*c).to_owned())
        .chain(ACCOUNT_TYPES.iter().map(|ty| format!("restrict_{ty}")))
        .collect()
}

/// How to run a bulk invitation.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::IntoParams)]
pub struct BulkOptions {
    /// Validate and report only; write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Write the valid rows even when other rows are invalid.
    #[serde(default)]
    pub import_valid: bool,
    /// Send the invitations (default); `false` saves the people only.
    #[serde(default = "yes")]
    pub send: bool,
}

fn yes() -> bool {
    true
}

/// One row's result.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RowResult {
    /// 1-based data row number (the header is row 0).
    pub row: usize,
    /// The row's e-mail, as written.
    pub email: String,
    /// `invalid`, `valid` (dry run or not written), or what was done:
    /// `invited`, `saved`, `added`, `resent`.
    pub outcome: String,
    /// Why the row is invalid.
    pub error: Option<String>,
}

/// What became of a file: written within the request, or a job.
#[derive(Debug)]
pub enum BulkAnswer {
    /// Validated (and written, unless a dry run or refused).
    Report(BulkReport),
    /// Validated, and its valid rows queued as a background job.
    Job(JobAccepted),
}

/// The whole file's result.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BulkReport {
    /// Rows that passed validation.
    pub valid: usize,
    /// Rows that did not.
    pub invalid: usize,
    /// Rows written.
    pub written: usize,
    /// Per row.
    pub rows: Vec<RowResult>,
}

impl InviteService {
    /// Invites everyone in a CSV file. Whoever may not invite into `org`
    /// is refused before any row is looked at, so that no row's verdict
    /// (say, "already a member") tells them anything. More rows to write
    /// than the `bulk_sync_rows` setting go to a background job.
    pub async fn bulk_invite(
        &self,
        actor: &Actor,
        org_id: &str,
        csv_text: &str,
        options: BulkOptions,
        now: i64,
    ) -> Result<BulkAnswer, InviteError> {
        self.authorize_org(actor, INVITE, org_id, now).await?;
        existing_org(&mut *self.pool.acquire().await?, org_id).await?;
        let records = parse_csv(csv_text)?;
        let mut rows = Vec::with_capacity(records.len());
        let mut prepared = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for (i, record) in records.into_iter().enumerate() {
            let row = i + 1;
            let parsed = record.and_then(|cells| Ok((row_input(&cells, options.send)?, cells)));
            let email_shown = parsed
                .as_ref()
                .map(|(x, _)| x.email.clone())
                .unwrap_or_default();
            let checked = match parsed {
                Err(e) => Err(e),
                Ok((input, cells)) => self
                    .check_row(actor, org_id, &input, &mut seen, now)
                    .await
                    .map(|p| (p, cells)),
            };
            match checked {
                Ok((p, cells)) => {
                    rows.push(RowResult {
                        row,
                        email: email_shown,
                        outcome: "valid".to_owned(),
                        error: None,
                    });
                    prepared.push((rows.len() - 1, p, cells));
                }
                Err(e) => rows.push(RowResult {
                    row,
                    email: email_shown,
                    outcome: "invalid".to_owned(),
                    error: Some(e.to_string()),
                }),
            }
        }
        let valid = prepared.len();
        let invalid = rows.len() - valid;
        let mut report = BulkReport {
            valid,
            invalid,
            written: 0,
            rows,
        };
        if options.dry_run || (invalid > 0 && !options.import_valid) {
            return Ok(BulkAnswer::Report(report));
        }
        if options.send {
            self.check_bulk_rate(org_id, valid, now).await?;
        }
        // The command-line operator has no mailbox to hear from a job.
        if let Some(actor_id) = actor.user_id()
            && valid > self.settings.bulk_sync_rows
        {
            let job = NewJob {
                send: options.send,
                rows: prepared
                    .into_iter()
                    .map(|(index, p, cells)| JobInput {
                        row: report.rows[index].row,
                        email: p.email,
                        cells,
                    })
                    .collect(),
                invalid: report
                    .rows
                    .into_iter()
                    .filter(|r| r.error.is_some())
                    .collect(),
            };
            return Ok(BulkAnswer::Job(
                self.submit_job(actor, actor_id, org_id, job, now).await?,
            ));
        }
        for (index, p, _) in prepared {
            match self.invite_prepared(actor, org_id, p, now).await {
                Ok(outcome) => {
                    report.rows[index].outcome = outcome.outcome.to_owned();
                    report.written += 1;
                }
                Err(e) => {
                    report.rows[index].outcome = "invalid".to_owned();
                    report.rows[index].error = Some(e.to_string());
                    report.valid -= 1;
                    report.invalid += 1;
                }
            }
        }
        Ok(BulkAnswer::Report(report))
    }

    /// A row's checks: the file's rules, no earlier row with its address
    /// (`seen`), no membership, and the policies on what it grants.
    pub(crate) async fn check_row(
        &self,
        actor: &Actor,
        org_id: &str,
        input: &InviteInput,
        seen: &mut HashSet<String>,
        now: i64,
    ) -> Result<Prepared, InviteError> {
        let p = self.prepare(org_id, input).await?;
        if !seen.insert(p.email.clone()) {
            return Err(InviteError::invalid(
                "email",
                format!("`{}` appears in an earlier row", p.email),
            ));
        }
        if self.is_member(org_id, &p.email).await? {
            return Err(Conflict::AlreadyMember {
                email: p.email,
                org_id: org_id.to_owned(),
            }
            .into());
        }
        self.authorize_invite(actor, org_id, &p, now).await?;
        Ok(p)
    }
}

/// A row's cells, by column name.
pub(super) type Cells = Map<String, Value>;

/// Parses the file into the cells (or error) of each data row.
fn parse_csv(text: &str) -> Result<Vec<Result<Cells, InviteError>>, InviteError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| InviteError::invalid("file", format!("cannot read the header: {e}")))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if headers.iter().all(String::is_empty) {
        return Err(InviteError::invalid(
            "file",
            "the file is empty; the first line must name the columns",
        ));
    }
    let columns = columns();
    if let Some(unknown) = headers.iter().find(|h| !columns.contains(h)) {
        return Err(InviteError::invalid(
            "file",
            format!(
                "unknown column `{unknown}`; columns: {}",
                columns.join(", ")
            ),
        ));
    }
    for required in ["first_name", "last_name", "email"] {
        if !headers.iter().any(|h| h == required) {
            return Err(InviteError::invalid(
                "file",
                format!("missing column `{required}`"),
            ));
        }
    }
    let mut out = Vec::new();
    for record in reader.records() {
        if out.len() == MAX_ROWS {
            return Err(InviteError::invalid(
                "file",
                format!("more than {MAX_ROWS} rows; split the file"),
            ));
        }
        out.push(match record {
            Err(e) => Err(InviteError::invalid("row", e.to_string())),
            Ok(record) => Ok(headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.clone(), Value::String(v.to_owned())))
                .collect()),
        });
    }
    if out.is_empty() {
        return Err(InviteError::invalid(
            "file",
            "the file has a header but no rows",
        ));
    }
    Ok(out)
}

/// A row's invitation input from its cells (named by the header).
pub(super) fn row_input(cells: &Cells, send: bool) -> Result<InviteInput, InviteError> {
    let cell = |name: &str| {
        cells
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let mut permissions = Map::new();
    for module in MODULES {
        if let Some(v) = cell(module) {
            permissions.insert(module.to_owned(), Value::String(v.to_owned()));
        }
    }
    if let Some(v) = cell("upload_generations") {
        permissions.insert("uploadGenerations".to_owned(), Value::String(v.to_owned()));
    }
    let mut restrictions = Map::new();
    for ty in ACCOUNT_TYPES {
        if let Some(v) = cell(&format!("restrict_{ty}")) {
            let ids: Vec<Value> = if v.eq_ignore_ascii_case("none") {
                Vec::new()
            } else {
                v.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect()
            };
            restrictions.insert(ty.to_owned(), Value::Array(ids));
        }
    }
    let agent = match cell("is_agent").map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "no" | "0") => false,
        Some("true" | "yes" | "1") => true,
        Some(other) => {
            return Err(InviteError::invalid(
                "is_agent",
                format!("`{other}` is not allowed; allowed: true, false"),
            ));
        }
    };
    Ok(InviteInput {
        first_name: cell("first_name").unwrap_or_default().to_owned(),
        last_name: cell("last_name").unwrap_or_default().to_owned(),
        email: rules::normalize_email(cell("email").unwrap_or_default()),
        role: cell("role").map(str::to_owned),
        permissions: (!permissions.is_empty()).then_some(Value::Object(permissions)),
        department: cell("department").map(str::to_owned),
        restrictions: (!restrictions.is_empty()).then_some(Value::Object(restrictions)),
        agent,
        send,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_header_only_file_is_refused() {
        assert!(parse_csv("first_name,last_name,email\n").is_err());
        assert!(parse_csv("").is_err());
    }

    #[test]
    fn unknown_and_missing_columns_are_named() {
        let e = parse_csv("first_name,last_name,mail\nA,B,a@x.com\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("unknown column `mail`"), "{e}");
    }

    #[test]
    fn restriction_cells_distinguish_none_from_unrestricted() {
        let rows = parse_csv(
            "first_name,last_name,email,restrict_active,restrict_reserve\nA,B,a@x.com,none,\n",
        )
        .unwrap_or_default();
        let input = rows
            .into_iter()
            .next()
            .and_then(Result::ok)
            .and_then(|cells| row_input(&cells, true).ok())
            .map(|i| i.restrictions);
        assert_eq!(input, Some(Some(json!({"active": []}))));
    }
}
