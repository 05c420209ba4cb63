//! The SMTP transport: built once from the `smtp://` / `smtps://` URL,
//! refused when it would send credentials without TLS, and each exchange
//! bounded as a whole.

use std::time::Duration;

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// An SMTP server to deliver to.
#[derive(Clone)]
pub(super) struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    limit: Duration,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the credentials: never shown.
        f.debug_struct("Smtp").field("limit", &self.limit).finish()
    }
}

impl Smtp {
    /// The transport of `url`. Credentials without TLS (`smtps://`, or
    /// `smtp://…?tls=required` for STARTTLS) are refused unless
    /// `allow_plaintext_auth`: `smtp://` alone, or with
    /// `tls=opportunistic`, would let anyone on the path read them or
    /// strip the TLS offer. `shown` names the server without credentials.
    pub fn new(
        url: &str,
        shown: &str,
        limit: Duration,
        allow_plaintext_auth: bool,
    ) -> anyhow::Result<Self> {
        let security = Security::of(url);
        if security.credentials && !security.tls && !allow_plaintext_auth {
            anyhow::bail!(
                "the mail URL for {shown} carries SMTP credentials without TLS: they would cross \
                 the network in clear. Use `smtps://` (TLS from the start) or \
                 `smtp://…?tls=required` (STARTTLS), or, for a relay on this host only, pass \
                 `--smtp-allow-plaintext-auth`"
            );
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("the mail URL for {shown} is not usable: {e}"))?
            .timeout(Some(limit))
            .build();
        Ok(Self { transport, limit })
    }

    /// Sends `message`: connection, greeting, every command and the data
    /// within the limit, or the attempt fails (lettre's own timeout bounds
    /// each read and write only, so a server that accepts the connection
    /// and never speaks would otherwise hold the worker).
    pub async fn send(&self, message: Message) -> anyhow::Result<()> {
        match tokio::time::timeout(self.limit, self.transport.send(message)).await {
            Ok(sent) => {
                sent?;
                Ok(())
            }
            Err(_) => anyhow::bail!(
                "no answer from the SMTP server within {}",
                humantime::format_duration(self.limit)
            ),
        }
    }
}

/// What an SMTP URL says about its credentials and TLS, read the way
/// lettre reads it (the first `tls` query parameter).
#[derive(Debug, PartialEq, Eq)]
struct Security {
    /// A user or password before the host.
    credentials: bool,
    /// TLS from the start or STARTTLS required.
    tls: bool,
}

impl Security {
    fn of(url: &str) -> Self {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let credentials = authority
            .rsplit_once('@')
            .is_some_and(|(userinfo, _)| !userinfo.is_empty());
        let query = rest
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or_default())
            .unwrap_or_default();
        let tls_parameter = query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == "tls").then_some(value)
        });
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "smtps" => true,
            "smtp" => tls_parameter == Some("required"),
            _ => false,
        };
        Self { credentials, tls }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_count_as_protected_only_with_implicit_tls_or_required_starttls() {
        let cases = [
            ("smtp://host:25", false, false),
            ("smtp://user:pw@host:25", true, false),
            ("smtp://user@host:25", true, false),
            ("smtp://user:pw@host:587?tls=opportunistic", true, false),
            ("smtp://user:pw@host:587?tls=required", true, true),
            (
                "smtp://user:pw@host:587?tls=opportunistic&tls=required",
                true,
                false,
            ),
            ("smtps://user:pw@host:465", true, true),
            ("smtp://host/hello.example?tls=required", false, true),
            ("smtp://host:25?user=a@b", false, false),
        ];
        for (url, credentials, tls) in cases {
            assert_eq!(Security::of(url), Security { credentials, tls }, "{url}");
        }
    }
}
