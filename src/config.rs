//! `cedargate serve` configuration: one struct, filled from flags and
//! `CEDARGATE_*` environment variables by clap. Tests build it as a literal.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;

pub use crate::db::DatabaseUrl;
use crate::policy::PolicyArgs;

/// Everything `serve` needs.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Socket to listen on. Tests pass `127.0.0.1:0` and read back the bound port.
    #[arg(long, env = "CEDARGATE_BIND", default_value = "127.0.0.1:8180")]
    pub bind: SocketAddr,

    /// Database: `sqlite://FILE` (created and migrated on first start) or
    /// `postgres://USER:PASSWORD@HOST/DB` for many sidecars sharing one store.
    #[arg(
        long,
        env = "CEDARGATE_DATABASE_URL",
        default_value = "sqlite://cedargate.db"
    )]
    pub database_url: DatabaseUrl,

    /// Where the policies and the schema are.
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// A JSON file of Cedar entities upserted into the store at start
    /// (validated against the schema; nothing is written if any is invalid).
    #[arg(long, env = "CEDARGATE_ENTITIES", value_name = "FILE")]
    pub entities: Option<PathBuf>,

    /// The API token callers send as `Authorization: Bearer <token>`. When
    /// unset, a random token is generated on first start and kept in
    /// `--token-file`.
    #[arg(long, env = "CEDARGATE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<Secret>,

    /// File holding the generated API token (mode 0600). Defaults to
    /// `cedargate.token` beside the SQLite database (or in the working
    /// directory for PostgreSQL).
    #[arg(long, env = "CEDARGATE_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Serve without any authentication. For local experiments only: every
    /// caller can read decisions and write entities.
    #[arg(long, env = "CEDARGATE_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// Maximum number of cached decisions (0 turns the decision cache off).
    #[arg(
        long,
        env = "CEDARGATE_DECISION_CACHE_CAPACITY",
        default_value_t = 100_000
    )]
    pub decision_cache_capacity: u64,

    /// Seconds a cached decision may be served (it is also dropped at once
    /// when a policy or entity change could affect it).
    #[arg(long, env = "CEDARGATE_DECISION_CACHE_TTL_SECS", default_value_t = 60)]
    pub decision_cache_ttl_secs: u64,

    /// Maximum number of parsed entities kept in memory.
    #[arg(
        long,
        env = "CEDARGATE_ENTITY_CACHE_CAPACITY",
        default_value_t = 200_000
    )]
    pub entity_cache_capacity: u64,

    /// Decision log: `off`, `stdout`, or a file path (JSON lines, appended).
    #[arg(long, env = "CEDARGATE_DECISION_LOG", default_value = "off")]
    pub decision_log: String,

    /// Fraction of decisions written to the decision log (0.0 to 1.0).
    #[arg(long, env = "CEDARGATE_DECISION_LOG_SAMPLE", default_value_t = 1.0)]
    pub decision_log_sample: f64,

    /// Log whole requests: each decision's context and request-scoped
    /// entities too, so that `cedargate replay` can decide them again.
    /// Off by default: the context may carry host data.
    #[arg(long, env = "CEDARGATE_DECISION_LOG_REQUESTS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub decision_log_requests: bool,

    /// Context keys whose values the decision log replaces with
    /// `<redacted>` (at any depth; comma-separated), with
    /// `--decision-log-requests`.
    #[arg(long, env = "CEDARGATE_DECISION_LOG_REDACT", value_delimiter = ',')]
    pub decision_log_redact: Vec<String>,

    /// Reload the policies when a file under the policy or schema
    /// directory changes.
    #[arg(long, env = "CEDARGATE_WATCH", default_value_t = true, action = clap::ArgAction::Set)]
    pub watch: bool,

    /// How long (milliseconds) the watched files must stay unchanged before
    /// a reload: an editor's truncate-then-write is never loaded halfway.
    #[arg(long, env = "CEDARGATE_WATCH_SETTLE_MS", default_value_t = 500)]
    pub watch_settle_ms: u64,

    /// Take a reloaded policy set only if the test suites under
    /// `<policies>/tests/` pass on it (a directory without suites passes).
    /// Turn off for a model without suites.
    #[arg(long, env = "CEDARGATE_RELOAD_TEST_GATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub reload_test_gate: bool,

    /// How often (milliseconds) to look for entity changes written by other
    /// sidecars sharing the database (PostgreSQL). Changes made through this
    /// sidecar take effect before the write returns.
    #[arg(long, env = "CEDARGATE_SYNC_INTERVAL_MS", default_value_t = 500)]
    pub sync_interval_ms: u64,

    /// How many store revisions of the entity change log each write keeps
    /// for the other sidecars. A sidecar that falls further behind (paused,
    /// partitioned) empties all its caches when it catches up.
    #[arg(long, env = "CEDARGATE_CHANGE_LOG_KEEP", default_value_t = crate::entities::DEFAULT_CHANGE_LOG_KEEP)]
    pub change_log_keep: u64,

    /// How long (milliseconds) a decision waits for the entity store before
    /// it denies with an error (a store that is down must not hold callers).
    #[arg(long, env = "CEDARGATE_STORE_TIMEOUT_MS", default_value_t = 250)]
    pub store_timeout_ms: u64,

    /// Create a new, empty SQLite database even where the files beside it
    /// (the token file, the outbox) show that one was in use.
    #[arg(long, env = "CEDARGATE_CREATE_DATABASE")]
    pub create_database: bool,

    /// Connections served at once; more wait in the listen backlog. Keep it
    /// below the open-file limit (raised to the hard limit at start).
    #[arg(long, env = "CEDARGATE_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Time (milliseconds) a client has to send a request's headers, from
    /// the connection's start or the end of the previous response; it also
    /// closes keep-alive connections left idle that long.
    #[arg(long, env = "CEDARGATE_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,

    /// Longest wait (milliseconds) for the store revision a decision asks
    /// for (`X-Cedargate-Min-Revision`); past it the answer is 503.
    #[arg(long, env = "CEDARGATE_CONSISTENCY_WAIT_MS", default_value_t = 1000)]
    pub consistency_wait_ms: u64,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "CEDARGATE_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Requests taking longer than this (milliseconds) are answered 503.
    #[arg(long, env = "CEDARGATE_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// Invitations and e-mail.
    #[command(flatten)]
    pub invites: InviteArgs,
}

/// Settings of the invitation service and its e-mail.
#[derive(Debug, Clone, Args)]
pub struct InviteArgs {
    /// Base URL of this sidecar as callers and invitees reach it, used in
    /// invitation links and the AuthZEN metadata document (default
    /// `http://<bind address>`).
    #[arg(long, env = "CEDARGATE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Where e-mail goes: a directory (`file:///var/mail/cedargate` or a
    /// path; each message one `.eml` file) or an SMTP server
    /// (`smtp://host:25`, `smtps://user:password@host:465`,
    /// `smtp://user:password@host:587?tls=required` for STARTTLS).
    /// Credentials require TLS (`smtps://` or `?tls=required`): without it
    /// the server refuses to start, unless `--smtp-allow-plaintext-auth`.
    /// Default: the `outbox/` directory beside the SQLite database.
    #[arg(long, env = "CEDARGATE_MAIL_URL", hide_env_values = true)]
    pub mail_url: Option<String>,

    /// Longest time one SMTP delivery may take, from the connection to the
    /// server's answer to the message (e.g. `30s`, `2m`; from 1 second to
    /// 10 minutes). A server that accepts the connection and never answers
    /// fails the attempt, which is retried later with backoff.
    #[arg(long, env = "CEDARGATE_SMTP_TIMEOUT", default_value = "30s", value_parser = parse_smtp_timeout)]
    pub smtp_timeout: std::time::Duration,

    /// Send SMTP credentials over a connection without TLS (`smtp://` with
    /// a user and password but without `?tls=required`). Only for a relay
    /// on this host: anyone on the path can read the password.
    #[arg(long, env = "CEDARGATE_SMTP_ALLOW_PLAINTEXT_AUTH")]
    pub smtp_allow_plaintext_auth: bool,

    /// Sender of every message.
    #[arg(
        long,
        env = "CEDARGATE_MAIL_FROM",
        default_value = "cedargate <noreply@cedargate.localhost>"
    )]
    pub mail_from: String,

    /// How long an invitation link works: a duration such as `15m`, `36h`
    /// or `7d`, from 5 minutes to 90 days.
    #[arg(long, env = "CEDARGATE_INVITE_TTL", default_value = "7d", value_parser = parse_invite_ttl)]
    pub invite_ttl: std::time::Duration,

    /// Invitations one organization may send per 24 hours.
    #[arg(long, env = "CEDARGATE_INVITE_RATE_LIMIT", default_value_t = 500)]
    pub invite_rate_limit: i64,

    /// Local parts (before `@` and any `+tag`) refused as shared or generic
    /// mailboxes, comma-separated.
    #[arg(
        long,
        env = "CEDARGATE_GENERIC_EMAILS",
        value_delimiter = ',',
        default_value = "info,admin,administrator,sales,support,help,billing,accounts,contact,office,team,hr,marketing,noreply,no-reply,postmaster,hostmaster,webmaster,abuse,noc,security"
    )]
    pub generic_emails: Vec<String>,

    /// Accept generic mailboxes instead of refusing them.
    #[arg(long, env = "CEDARGATE_ALLOW_GENERIC_EMAILS")]
    pub allow_generic_emails: bool,

    /// Bulk invitations (`POST /v1/orgs/{org}/invitations/bulk`) writing
    /// more rows than this run as a background job: the request validates
    /// the whole file, then answers 202 with the job's id at once; the job
    /// writes each row all-or-nothing, resumes after a crash, reports at
    /// `GET /v1/orgs/{org}/invitations/bulk/{job}` and e-mails the
    /// submitting administrator when done. Smaller files are written within
    /// the request.
    #[arg(long, env = "CEDARGATE_BULK_SYNC_ROWS", default_value_t = 100)]
    pub bulk_sync_rows: usize,

    /// People sign in through an external identity provider: the
    /// acceptance page asks new people for no password (and sets none, so
    /// they have no console or `/v1/auth/verify` login).
    #[arg(long, env = "CEDARGATE_ACCEPT_WITHOUT_PASSWORD")]
    pub accept_without_password: bool,
}

/// The shortest and longest invitation link lifetimes accepted.
const INVITE_TTL_BOUNDS: (std::time::Duration, std::time::Duration) = (
    std::time::Duration::from_secs(5 * 60),
    std::time::Duration::from_secs(90 * 24 * 3600),
);

/// Parses `--invite-ttl`: a duration within [`INVITE_TTL_BOUNDS`]. A zero,
/// negative or unitless value is refused, never rounded to something else.
fn parse_invite_ttl(text: &str) -> Result<std::time::Duration, String> {
    let (low, high) = INVITE_TTL_BOUNDS;
    let bounds = "between 5 minutes (`5m`) and 90 days (`90d`)";
    let ttl = humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "`{text}` is not a duration such as `15m`, `36h` or `7d` ({e}); it must be {bounds}"
        )
    })?;
    if ttl < low || ttl > high {
        return Err(format!(
            "`{text}` is out of range: an invitation link must work {bounds}"
        ));
    }
    Ok(ttl)
}

/// The shortest and longest limits of one SMTP delivery.
const SMTP_TIMEOUT_BOUNDS: (std::time::Duration, std::time::Duration) = (
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(10 * 60),
);

/// Parses `--smtp-timeout`: a duration within [`SMTP_TIMEOUT_BOUNDS`].
fn parse_smtp_timeout(text: &str) -> Result<std::time::Duration, String> {
    let (low, high) = SMTP_TIMEOUT_BOUNDS;
    let bounds = "between 1 second (`1s`) and 10 minutes (`10m`)";
    let limit = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration such as `30s` or `2m` ({e}); it must be {bounds}")
    })?;
    if limit < low || limit > high {
        return Err(format!("`{text}` is out of range: it must be {bounds}"));
    }
    Ok(limit)
}

impl InviteArgs {
    /// Defaults for tests: mail into `mail_dir`, 7-day links.
    pub fn for_tests(mail_dir: &std::path::Path) -> Self {
        Self {
            public_url: None,
            mail_url: Some(mail_dir.display().to_string()),
            mail_from: "cedargate <noreply@cedargate.localhost>".to_owned(),
            smtp_timeout: crate::mail::MailOptions::default().timeout,
            smtp_allow_plaintext_auth: false,
            invite_ttl: std::time::Duration::from_secs(7 * 24 * 3600),
            invite_rate_limit: 500,
            generic_emails: crate::invites::rules::DEFAULT_GENERIC_LOCAL_PARTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            allow_generic_emails: false,
            bulk_sync_rows: 100,
            accept_without_password: false,
        }
    }

    /// How the mailer delivers.
    pub fn mail_options(&self) -> crate::mail::MailOptions {
        crate::mail::MailOptions {
            timeout: self.smtp_timeout,
            allow_plaintext_auth: self.smtp_allow_plaintext_auth,
        }
    }

    /// The mail destination, defaulting to `outbox/` beside the database.
    pub fn mail_sink(&self, database_url: &DatabaseUrl) -> crate::mail::MailSink {
        match &self.mail_url {
            Some(url) => crate::mail::MailSink::parse(url),
            None => {
                let dir = database_url
                    .sqlite_path()
                    .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
                    .unwrap_or_default();
                crate::mail::MailSink::Dir(dir.join("outbox"))
            }
        }
    }

    /// The service settings; `bind` gives the default public URL.
    pub fn settings(&self, bind: &str) -> crate::invites::InviteSettings {
        crate::invites::InviteSettings {
            ttl_secs: i64::try_from(self.invite_ttl.as_secs()).unwrap_or(i64::MAX),
            rate_limit: self.invite_rate_limit.max(1),
            generic_local_parts: self
                .generic_emails
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect(),
            block_generic: !self.allow_generic_emails,
            public_url: self
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{bind}")),
            bulk_sync_rows: self.bulk_sync_rows,
            accept_without_password: self.accept_without_password,
        }
    }
}

impl ServeConfig {
    /// A configuration for tests: port 0, the given database and the
    /// repository's policies and schema, no watcher, a fixed token.
    pub fn for_tests(database_url: DatabaseUrl, repo: &std::path::Path) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url,
            policy: PolicyArgs {
                policies: repo.join("policies"),
                schema: repo.join("schema"),
            },
            entities: None,
            api_token: Some(Secret::new("test-token")),
            token_file: None,
            insecure_no_auth: false,
            decision_cache_capacity: 10_000,
            decision_cache_ttl_secs: 60,
            entity_cache_capacity: 10_000,
            decision_log: "off".to_owned(),
            decision_log_sample: 1.0,
            decision_log_requests: false,
            decision_log_redact: Vec::new(),
            watch: false,
            watch_settle_ms: 100,
            reload_test_gate: true,
            sync_interval_ms: 100,
            change_log_keep: crate::entities::DEFAULT_CHANGE_LOG_KEEP,
            // Generous: a test machine may be busy; the outage test sets its own.
            store_timeout_ms: 10_000,
            create_database: false,
            max_connections: 4096,
            header_timeout_ms: 10_000,
            consistency_wait_ms: 1000,
            max_body_bytes: 4 * 1024 * 1024,
            request_timeout_ms: 10_000,
            invites: InviteArgs::for_tests(&repo.join("target").join("test-outbox")),
        }
    }
}

/// Where the store is, for the administrative commands.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// `sqlite://FILE` or `postgres://…` (the same database `serve` uses).
    #[arg(
        long,
        env = "CEDARGATE_DATABASE_URL",
        default_value = "sqlite://cedargate.db"
    )]
    pub database_url: DatabaseUrl,
    /// Where the policies and the schema are.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Invitations and e-mail.
    #[command(flatten)]
    pub invites: InviteArgs,
}

/// A secret string whose `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            Err("must not be empty".to_owned())
        } else {
            Ok(Self(s.to_owned()))
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_hides_the_password() {
        let url: DatabaseUrl = "postgres://app:hunter2@db.internal/authz"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            format!("{url:?}"),
            "DatabaseUrl(postgres://app:***@db.internal/authz)"
        );
        assert!(!url.to_string().contains("hunter2"));
    }

    #[test]
    fn sqlite_path_ignores_query_options() {
        let url: DatabaseUrl = "sqlite://data/authz.db?mode=rwc"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url.sqlite_path(), Some(PathBuf::from("data/authz.db")));
    }

    #[test]
    fn other_schemes_are_refused() {
        assert!("mysql://x".parse::<DatabaseUrl>().is_err());
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("abc")), "Secret(***)");
    }

    #[test]
    fn smtp_timeout_takes_durations_within_its_bounds() {
        assert_eq!(parse_smtp_timeout("30s").map(|d| d.as_secs()), Ok(30));
        assert_eq!(parse_smtp_timeout("2m").map(|d| d.as_secs()), Ok(120));
        for text in ["0s", "500ms", "11m", "30", "never"] {
            let refused = parse_smtp_timeout(text);
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.contains("between 1 second")),
                "{text}: {refused:?}"
            );
        }
    }

    #[test]
    fn invite_ttl_takes_durations_within_its_bounds_and_refuses_zero() {
        let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
        for (text, expected) in [
            ("15m", 900),
            ("36h", 36 * 3600),
            ("7d", 7 * 24 * 3600),
            ("90d", 90 * 24 * 3600),
        ] {
            assert_eq!(
                parse_invite_ttl(text).map(|d| d.as_secs()),
                Ok(expected),
                "{text}"
            );
        }
        for text in ["0", "0s", "0h", "-1h", "1m", "91d", "soon", "168"] {
            let refused = parse_invite_ttl(text);
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.contains("between 5 minutes")),
                "{text}: {refused:?}"
            );
        }
        assert_eq!(
            InviteArgs::for_tests(std::path::Path::new("mail")).invite_ttl,
            hours(168)
        );
    }
}
