//! A filter plan's condition as a SQL `WHERE` expression
//! (`cedargate plan --sql`), for the common operators.
//!
//! The resource is one row of a table:
//!
//! - `{"var": "resource"}` is the row's id column, `"id"` unless
//!   [`Columns::id`] says otherwise.
//! - The attribute path `resource.a.b` is the column `"a_b"` (names joined
//!   by `_`, double-quoted), unless [`Columns::attrs`] maps the path `a.b`
//!   to another SQL expression (`--column a.b=orgs.group_id`).
//! - An entity value compares by its id (`Organization::"acme"` is
//!   `'acme'`): a column holding an entity reference holds its id.
//! - `in` (the resource, or an entity attribute, is one of the listed
//!   entities or below one of them) needs a table of ancestors, one row per
//!   (entity id, ancestor id) pair, in columns `entity_id` and `ancestor_id`
//!   ([`Columns::ancestors_table`], `--ancestors-table`).
//! - `contains` on a set-valued attribute needs the path mapped to a
//!   subquery listing the set's elements for the current row
//!   ([`Columns::sets`], `--set-column tags="SELECT tag FROM account_tags t WHERE t.account_id = accounts.id"`).
//!
//! Missing attributes are `NULL` columns: SQL's three-valued logic then
//! gives exactly the plan's semantics (the tree is in negation normal
//! form, an unknown test and its `NOT` both exclude the row).
//!
//! Literals are quoted (`'` doubled; identifiers double-quoted with `"`
//! doubled), so a value from a policy or an entity cannot inject SQL.
//! Column expressions given by the operator are used verbatim. The output
//! is standard SQL as SQLite and PostgreSQL read it (backslashes are not
//! escapes in string literals; `LIKE … ESCAPE '\'`). SQLite's `LIKE` is
//! case-insensitive for ASCII unless `PRAGMA case_sensitive_like = ON`,
//! whereas Cedar's `like` is case-sensitive.
//!
//! Not translated (a [`SqlError`] names the node): `is`, `is_empty`,
//! `contains_all`, `contains_any`, set-valued `one_of`, and sets or
//! records used as values.

use std::collections::BTreeMap;

use super::plan::{CmpOp, Condition, SetOp, Term, Value};

/// How the resource's attributes map to SQL.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    /// The SQL expression of the resource's id (default `"id"`).
    pub id: Option<String>,
    /// SQL expressions for attribute paths (`a.b`), used verbatim.
    pub attrs: BTreeMap<String, String>,
    /// Subqueries listing the elements of set-valued attribute paths.
    pub sets: BTreeMap<String, String>,
    /// The table of (entity_id, ancestor_id) pairs, for `in`.
    pub ancestors_table: Option<String>,
}

/// Why a condition has no SQL translation.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The node or value is not translated.
    #[error("no SQL translation for {0}")]
    Unsupported(String),
    /// A string cannot be a SQL literal.
    #[error("a string holds a NUL character, which SQL strings cannot: {0:?}")]
    Nul(String),
}

/// Translates `condition` into a SQL boolean expression over one row.
pub fn to_sql(condition: &Condition, columns: &Columns) -> Result<String, SqlError> {
    Sql { columns }.condition(condition)
}

/// A double-quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted SQL string literal.
pub fn quote_str(s: &str) -> Result<String, SqlError> {
    if s.contains('\0') {
        return Err(SqlError::Nul(s.to_owned()));
    }
    Ok(format!("'{}'", s.replace('\'', "''")))
}

struct Sql<'a> {
    columns: &'a Columns,
}

impl Sql<'_> {
    fn condition(&self, c: &Condition) -> Result<String, SqlError> {
        Ok(match c {
            Condition::Bool(true) => "TRUE".to_owned(),
            Condition::Bool(false) => "FALSE".to_owned(),
            Condition::And(items) | Condition::Or(items) => {
                let joiner = if matches!(c, Condition::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                let parts = items
                    .iter()
                    .map(|i| self.condition(i))
                    .collect::<Result<Vec<_>, _>>()?;
                match parts.len() {
                    0 => if matches!(c, Condition::And(_)) {
                        "TRUE"
                    } else {
                        "FALSE"
                    }
                    .to_owned(),
                    1 => parts.concat(),
                    _ => format!("({})", parts.join(joiner)),
                }
            }
            Condition::Not(inner) => format!("NOT ({})", self.condition(inner)?),
            Condition::Compare(op, l, r) => {
                let sym = match op {
                    CmpOp::Ne => "<>",
                    other => match other.symbol() {
                        "==" => "=",
                        s => s,
                    },
                };
                format!("{} {sym} {}", self.term(l)?, self.term(r)?)
            }
            Condition::Like(t, pattern) => {
                format!(
                    "{} LIKE {} ESCAPE '\\'",
                    self.term(t)?,
                    quote_str(&like_pattern(pattern))?
                )
            }
            Condition::Has(path) => format!("{} IS NOT NULL", self.attr(path)),
            Condition::OneOf(t, values) => {
                if let Term::Attr(path) = t
                    && self.columns.sets.contains_key(&path.join("."))
                {
                    return Err(SqlError::Unsupported(format!(
                        "one_of on the set-valued attribute {}",
                        path.join(".")
                    )));
                }
                self.in_list(&self.term(t)?, values)?
            }
            Condition::In(t, entities) => {
                let id = self.term(t)?;
                let Some(table) = &self.columns.ancestors_table else {
                    return Err(SqlError::Unsupported(
                        "`in` (an ancestors test) without an ancestors table (--ancestors-table)"
                            .to_owned(),
                    ));
                };
                let table = quote_ident(table);
                format!(
                    "({} OR EXISTS (SELECT 1 FROM {table} WHERE {table}.\"entity_id\" = {id} AND {}))",
                    self.in_list(&id, entities)?,
                    self.in_list(&format!("{table}.\"ancestor_id\""), entities)?,
                )
            }
            Condition::Set(SetOp::Contains, Term::Attr(path), elem) => {
                let key = path.join(".");
                let Some(subquery) = self.columns.sets.get(&key) else {
                    return Err(SqlError::Unsupported(format!(
                        "contains on {key} without a set mapping (--set-column {key}=SUBQUERY)"
                    )));
                };
                // NULL when the attribute is absent would need the set's
                // presence; a set mapping lists elements of present sets only.
                format!("{} IN ({subquery})", self.term(elem)?)
            }
            Condition::Set(op, _, _) => {
                return Err(SqlError::Unsupported(format!(
                    "`{}` on these operands",
                    op.name()
                )));
            }
            Condition::IsEmpty(_) => return Err(SqlError::Unsupported("`is_empty`".to_owned())),
            Condition::Is(_, ty) => return Err(SqlError::Unsupported(format!("`is {ty}`"))),
        })
    }

    /// `x IN (…)`; an empty list is false, or unknown when `x` is NULL.
    fn in_list(&self, x: &str, values: &[Value]) -> Result<String, SqlError> {
        if values.is_empty() {
            return Ok(format!("CASE WHEN {x} IS NULL THEN NULL ELSE FALSE END"));
        }
        let items = values
            .iter()
            .map(|v| self.value(v))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(format!("{x} IN ({})", items.join(", ")))
    }

    fn attr(&self, path: &[String]) -> String {
        let key = path.join(".");
        match self.columns.attrs.get(&key) {
            Some(expr) => expr.clone(),
            None => quote_ident(&path.join("_")),
        }
    }

    fn term(&self, t: &Term) -> Result<String, SqlError> {
        match t {
            Term::Resource => Ok(self.columns.id.clone().unwrap_or_else(|| quote_ident("id"))),
            Term::Attr(path) => Ok(self.attr(path)),
            Term::Value(v) => self.value(v),
        }
    }

    fn value(&self, v: &Value) -> Result<String, SqlError> {
        match v {
            Value::Bool(true) => Ok("TRUE".to_owned()),
            Value::Bool(false) => Ok("FALSE".to_owned()),
            Value::Long(n) => Ok(n.to_string()),
            Value::String(s) => quote_str(s),
            Value::Entity { id, .. } => quote_str(id),
            Value::Set(_) => Err(SqlError::Unsupported("a set value".to_owned())),
            Value::Record(_) => Err(SqlError::Unsupported("a record value".to_owned())),
        }
    }
}

/// A Cedar pattern (`*` wildcard, `\*`, `\\`) as a `LIKE` pattern with
/// `\` as escape character.
fn like_pattern(pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push('%'),
            '\\' => match chars.next() {
                Some('*') => out.push('*'),
                Some(other) => {
                    out.push_str("\\\\");
                    if other != '\\' {
                        push_like_literal(&mut out, other);
                    }
                }
                None => out.push_str("\\\\"),
            },
            c => push_like_literal(&mut out, c),
        }
    }
    out
}

fn push_like_literal(out: &mut String, c: char) {
    if matches!(c, '%' | '_') {
        out.push('\\');
    }
    out.push(c);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn condition(json: serde_json::Value) -> Condition {
        Condition::from_json(&json).unwrap_or_else(|e| panic!("{e}"))
    }

    fn sql(json: serde_json::Value, columns: &Columns) -> Result<String, SqlError> {
        to_sql(&condition(json), columns)
    }

    fn attr(path: &[&str]) -> serde_json::Value {
        let mut names = vec!["resource"];
        names.extend(path);
        json!({ "attr": names })
    }

    #[test]
    fn common_operators_translate_with_default_column_names() {
        let c = json!({"op": "and", "args": [
            {"op": "==", "args": [attr(&["org", "tenant"]), {"value": "acme"}]},
            {"op": "or", "args": [
                {"op": ">=", "args": [attr(&["level"]), {"value": 2}]},
                {"op": "!=", "args": [attr(&["secret"]), {"value": true}]},
                {"op": "not", "args": [{"op": "has", "args": [attr(&["label"])]}]},
            ]},
            {"op": "one_of", "args": [{"var": "resource"}, {"values": [{"type": "Doc", "id": "d1"}, {"type": "Doc", "id": "d2"}]}]},
        ]});
        assert_eq!(
            sql(c, &Columns::default()).unwrap_or_else(|e| panic!("{e}")),
            r#"("org_tenant" = 'acme' AND ("level" >= 2 OR "secret" <> TRUE OR NOT ("label" IS NOT NULL)) AND "id" IN ('d1', 'd2'))"#
        );
    }

    #[test]
    fn literals_and_identifiers_cannot_inject_sql() {
        let c = json!({"op": "==", "args": [attr(&["we\"ird"]), {"value": "x'; DROP TABLE accounts; --"}]});
        assert_eq!(
            sql(c, &Columns::default()).unwrap_or_else(|e| panic!("{e}")),
            r#""we""ird" = 'x''; DROP TABLE accounts; --'"#
        );
        let c = json!({"op": "one_of", "args": [attr(&["owner"]), {"values": [{"type": "User", "id": "o'brien"}, "a'b"]}]});
        assert_eq!(
            sql(c, &Columns::default()).unwrap_or_else(|e| panic!("{e}")),
            r#""owner" IN ('o''brien', 'a''b')"#
        );
        let c = json!({"op": "==", "args": [attr(&["name"]), {"value": "nul\u{0}"}]});
        assert!(matches!(sql(c, &Columns::default()), Err(SqlError::Nul(_))));
    }

    #[test]
    fn like_patterns_escape_sql_wildcards() {
        let c = json!({"op": "like", "args": [attr(&["name"])], "pattern": "50%_off*\\*\\\\'"});
        assert_eq!(
            sql(c, &Columns::default()).unwrap_or_else(|e| panic!("{e}")),
            r#""name" LIKE '50\%\_off%*\\''' ESCAPE '\'"#
        );
    }

    #[test]
    fn column_overrides_ancestors_and_sets_are_used_as_configured() {
        let columns = Columns {
            id: Some("a.id".to_owned()),
            attrs: [("org.tenant".to_owned(), "orgs.tenant".to_owned())].into(),
            sets: [(
                "tags".to_owned(),
                "SELECT tag FROM tags t WHERE t.id = a.id".to_owned(),
            )]
            .into(),
            ancestors_table: Some("ancestors".to_owned()),
        };
        let c = json!({"op": "and", "args": [
            {"op": "==", "args": [attr(&["org", "tenant"]), {"value": "acme"}]},
            {"op": "in", "args": [{"var": "resource"}, {"entities": [{"type": "Folder", "id": "root"}]}]},
            {"op": "contains", "args": [attr(&["tags"]), {"value": "x"}]},
        ]});
        assert_eq!(
            sql(c, &columns).unwrap_or_else(|e| panic!("{e}")),
            "(orgs.tenant = 'acme' AND (a.id IN ('root') OR EXISTS (SELECT 1 FROM \"ancestors\" WHERE \
             \"ancestors\".\"entity_id\" = a.id AND \"ancestors\".\"ancestor_id\" IN ('root'))) AND \
             'x' IN (SELECT tag FROM tags t WHERE t.id = a.id))"
        );
    }

    #[test]
    fn untranslatable_nodes_are_errors_naming_them() {
        let in_test = json!({"op": "in", "args": [{"var": "resource"}, {"entities": [{"type": "F", "id": "f"}]}]});
        let err = sql(in_test, &Columns::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--ancestors-table"), "{err}");
        let is = json!({"op": "is", "args": [{"var": "resource"}], "entity_type": "Doc"});
        let err = sql(is, &Columns::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("is Doc"), "{err}");
        let contains = json!({"op": "contains", "args": [attr(&["tags"]), {"value": "x"}]});
        let err = sql(contains, &Columns::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--set-column tags"), "{err}");
    }

    #[test]
    fn an_empty_list_is_false_but_unknown_on_null() {
        let c = json!({"op": "one_of", "args": [attr(&["org"]), {"values": []}]});
        assert_eq!(
            sql(c, &Columns::default()).unwrap_or_else(|e| panic!("{e}")),
            r#"CASE WHEN "org" IS NULL THEN NULL ELSE FALSE END"#
        );
    }
}
