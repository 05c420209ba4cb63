//! E-mail rules: normalization (R72), syntax (E22), generic mailboxes (R73, E21).

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
}
