//! Input rules: e-mail normalization (R72), syntax (E22), generic mailboxes
//! (R73, E21); names; organization and department ids.

use super::InviteError;

/// Local parts refused by default: role mailboxes and RFC 2142 addresses.
pub const DEFAULT_GENERIC_LOCAL_PARTS: &[&str] = &[
    "info",
    "admin",
    "administrator",
    "sales",
    "support",
    "help",
    "billing",
    "accounts",
    "contact",
    "office",
    "team",
    "hr",
    "marketing",
    "noreply",
    "no-reply",
    "postmaster",
    "hostmaster",
    "webmaster",
    "abuse",
    "noc",
    "security",
];

/// Longest address accepted (RFC 5321 path limit).
const MAX_EMAIL_LEN: usize = 254;

/// Trims and lower-cases the whole address: `Foo@X.com ` and `foo@x.com`
/// are one person.
pub fn normalize_email(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// Checks a normalized address: one `@`, no spaces or display name, a
/// non-empty local part, a dotted domain without empty labels.
pub fn validate_email(email: &str) -> Result<(), InviteError> {
    let refuse = |why: &str| {
        Err(InviteError::invalid(
            "email",
            format!("`{email}` is not a valid e-mail address: {why}"),
        ))
    };
    if email.is_empty() {
        return refuse("it is empty");
    }
    if email.len() > MAX_EMAIL_LEN {
        return refuse("it is longer than 254 characters");
    }
    if email
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '<' | '>' | '"' | ',' | ';' | '(' | ')'))
    {
        return refuse("give the bare address, without spaces, quotes or a display name");
    }
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return refuse("it needs exactly one `@`");
    };
    if local.is_empty() || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return refuse("the part before `@` is malformed");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2
        || labels
            .iter()
            .any(|l| l.is_empty() || l.starts_with('-') || l.ends_with('-'))
    {
        return refuse("the domain is malformed");
    }
    Ok(())
}

/// `true` when the local part (before any `+tag`) is a generic mailbox.
/// The whole local part must match: `adminson@` and `jane.sales@` are fine.
pub fn is_generic(email: &str, generic: &[String]) -> bool {
    let local = email.split('@').next().unwrap_or_default();
    let base = local.split('+').next().unwrap_or(local);
    generic.iter().any(|g| g.eq_ignore_ascii_case(base))
}

/// Longest first or last name.
const NAME_MAX_CHARS: usize = 100;

/// A first and a last name, checked and trimmed.
pub fn check_names(first: &str, last: &str) -> Result<(String, String), InviteError> {
    Ok((
        check_name("first_name", first)?,
        check_name("last_name", last)?,
    ))
}

/// A required name of at most [`NAME_MAX_CHARS`] printable characters, trimmed.
pub fn check_name(field: &str, value: &str) -> Result<String, InviteError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(InviteError::invalid(field, "required"));
    }
    if value.chars().count() > NAME_MAX_CHARS || value.chars().any(char::is_control) {
        return Err(InviteError::invalid(
            field,
            format!("at most {NAME_MAX_CHARS} printable characters"),
        ));
    }
    Ok(value.to_owned())
}

/// Organization and department ids: 1-64 of `a-z 0-9 - _`, lower-cased.
pub fn check_org_id(id: &str) -> Result<String, InviteError> {
    let id = id.trim().to_ascii_lowercase();
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(id)
    } else {
        Err(InviteError::invalid(
            "id",
            "organization ids are 1-64 characters of a-z, 0-9, `-` and `_`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<String> {
        DEFAULT_GENERIC_LOCAL_PARTS
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    #[test]
    fn addresses_are_trimmed_and_lower_cased() {
        assert_eq!(normalize_email("  Bob@X.com "), "bob@x.com");
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "bob.example.com",
            "bob smith@x.com",
            "bob@@x.com",
            "a@b@x.com",
            "bob@x.com.",
            "bob@x",
            "\"bob\" <b@x.com>",
            "@x.com",
        ] {
            assert!(validate_email(bad).is_err(), "{bad} should be refused");
        }
        let long = format!("{}@x.com", "a".repeat(250));
        assert!(validate_email(&long).is_err());
        assert!(validate_email("jane.doe+eu@example.co.uk").is_ok());
    }

    #[test]
    fn generic_mailboxes_are_recognized_by_the_whole_local_part() {
        let g = defaults();
        for generic in [
            "info@x.com",
            "admin@x.com",
            "sales+eu@x.com",
            "no-reply@x.com",
        ] {
            assert!(is_generic(generic, &g), "{generic}");
        }
        for personal in ["adminson@x.com", "jane.sales@x.com"] {
            assert!(!is_generic(personal, &g), "{personal}");
        }
    }

    #[test]
    fn organization_ids_are_slugs() {
        assert_eq!(check_org_id(" Acme ").ok().as_deref(), Some("acme"));
        assert!(check_org_id("acme corp").is_err());
        assert!(check_org_id("").is_err());
    }
}
