//! E-mail: an outbox table written in the transaction of the change that
//! causes a message, and a worker that delivers due messages with retries.
//! Delivery goes to `.eml` files in a directory (the embedded default) or to
//! an SMTP server (`smtp://` / `smtps://` URL), through `lettre`.
//!
//! Several sidecars may share one outbox: a worker claims a message for one
//! attempt before sending it (`outbox.rs`), so each is sent once. An
//! invitation's message, and an e-mail change's confirmation, is queued
//! with [`SECRET_PLACEHOLDER`] where its link's secret goes: the secret is
//! minted when the message is sent ([`token`]), so the outbox never holds
//! a working link.

mod outbox;
mod smtp;
pub mod token;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, Message, header::ContentType};
use sqlx::AnyPool;
use tokio::sync::Notify;

use outbox::{
    Claimed, claim, mint, mint_email_change, mint_password_reset, settle_cancelled, settle_failed,
    settle_sent,
};
pub use outbox::{carry_email_change, carry_password_reset, delivery_failed, enqueue};
use smtp::Smtp;
use token::InviteToken;

/// Attempts before a message is marked failed.
pub const MAX_ATTEMPTS: i64 = 5;
/// First retry delay in seconds; doubled after each failure.
const RETRY_BASE_SECS: i64 = 30;
/// What a queued body holds where its link's secret goes (an invitation's,
/// an e-mail change's). Not base64url, so never mistaken for a secret.
pub const SECRET_PLACEHOLDER: &str = "{{invitation-secret}}";
/// How long a claim outlives the delivery limit: the attempt's own
/// database statements, and some disagreement between sidecars' clocks.
const CLAIM_MARGIN_SECS: i64 = 60;
/// Messages one pass of the worker handles before it looks up again.
const PASS_SIZE: usize = 100;

/// Where messages go.
#[derive(Debug, Clone)]
pub enum MailSink {
    /// Each message as `<message id>.eml` in this directory.
    Dir(PathBuf),
    /// An SMTP server, e.g. `smtp://localhost:2525` or `smtps://user:pass@host`.
    Smtp(String),
}

impl MailSink {
    /// Parses `file:///path/to/dir`, a bare directory path, or an SMTP URL.
    pub fn parse(spec: &str) -> Self {
        if spec.starts_with("smtp://") || spec.starts_with("smtps://") {
            MailSink::Smtp(spec.to_owned())
        } else {
            MailSink::Dir(PathBuf::from(spec.strip_prefix("file://").unwrap_or(spec)))
        }
    }

    /// Where messages go, for people.
    pub fn describe(&self) -> String {
        match self {
            MailSink::Dir(dir) => format!("`{}` (one .eml file per message)", dir.display()),
            MailSink::Smtp(url) => {
                // Hide credentials: keep the host and what follows it.
                let host = url.rsplit('@').next().unwrap_or(url);
                let host = host.strip_prefix("smtp://").unwrap_or(host);
                let host = host.strip_prefix("smtps://").unwrap_or(host);
                format!("the SMTP server {host}")
            }
        }
    }
}

/// How delivery behaves.
#[derive(Debug, Clone)]
pub struct MailOptions {
    /// Longest one delivery may take: for SMTP, connection, greeting,
    /// every command and the data together.
    pub timeout: Duration,
    /// Send SMTP credentials without TLS (a relay on this host only).
    pub allow_plaintext_auth: bool,
}

impl Default for MailOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            allow_plaintext_auth: false,
        }
    }
}

/// A message to queue.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body; an invitation's holds [`SECRET_PLACEHOLDER`] where
    /// the secret of its link goes.
    pub body: String,
    /// The invitation the message carries, if any.
    pub invitation_id: Option<String>,
    /// Unsent messages with one key are one message: queuing another
    /// replaces the one waiting (the newest invitation of a member).
    pub dedupe_key: Option<String>,
}

/// Where the worker delivers.
#[derive(Debug)]
enum Transport {
    Dir(PathBuf),
    Smtp(Smtp),
}

/// What one pass of the worker did.
#[derive(Debug, Default)]
struct Pass {
    sent: usize,
    failed: usize,
    /// Messages claimed, whatever became of them.
    handled: usize,
}

/// How one attempt ended.
enum Attempt {
    Sent,
    Failed,
    Cancelled,
}

/// Delivers the outbox.
#[derive(Debug)]
pub struct Mailer {
    pool: AnyPool,
    transport: Transport,
    from: Mailbox,
    timeout: Duration,
    wake: Arc<Notify>,
}

impl Mailer {
    /// A mailer sending from `from` (e.g. `cedargate <noreply@example.com>`).
    /// Refuses an SMTP URL with credentials but without TLS, unless
    /// `options` allows it.
    pub fn new(
        pool: AnyPool,
        sink: MailSink,
        from: &str,
        options: MailOptions,
    ) -> anyhow::Result<Self> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid sender `{from}`: {e}"))?;
        let transport = match &sink {
            MailSink::Dir(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dir.display()))?;
                Transport::Dir(dir.clone())
            }
            MailSink::Smtp(url) => Transport::Smtp(Smtp::new(
                url,
                &sink.describe(),
                options.timeout,
                options.allow_plaintext_auth,
            )?),
        };
        Ok(Self {
            pool,
            transport,
            from,
            timeout: options.timeout,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Wakes the worker (call after committing a transaction that queued mail).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delivers every message due at `now`, once. Returns (sent, failed)
    /// counts.
    pub async fn deliver_due(&self, now: i64) -> Result<(usize, usize), sqlx::Error> {
        let (mut sent, mut failed) = (0, 0);
        loop {
            let pass = self.pass(&|| now).await?;
            (sent, failed) = (sent + pass.sent, failed + pass.failed);
            if pass.handled == 0 {
                return Ok((sent, failed));
            }
        }
    }

    /// Claims and attempts due messages one at a time, up to [`PASS_SIZE`],
    /// each on the time `now` gives at its claim.
    async fn pass(&self, now: &(dyn Fn() -> i64 + Sync)) -> Result<Pass, sqlx::Error> {
        let lease = i64::try_from(self.timeout.as_secs())
            .unwrap_or(i64::MAX / 2)
            .saturating_add(1 + CLAIM_MARGIN_SECS);
        let mut pass = Pass::default();
        while pass.handled < PASS_SIZE {
            let Some(message) = claim(&self.pool, now(), lease).await? else {
                break;
            };
            match self.attempt(message, now).await? {
                Attempt::Sent => pass.sent += 1,
                Attempt::Failed => pass.failed += 1,
                Attempt::Cancelled => {}
            }
            pass.handled += 1;
        }
        Ok(pass)
    }

    /// One attempt at a claimed message: mints its link's secret if it
    /// carries one, sends it, records the outcome.
    async fn attempt(
        &self,
        message: Claimed,
        now: &(dyn Fn() -> i64 + Sync),
    ) -> Result<Attempt, sqlx::Error> {
        let body = match self.render(&message, now()).await? {
            Ok(body) => body,
            Err(reason) => {
                tracing::info!(message = %message.message_id, reason, "mail not sent");
                settle_cancelled(&self.pool, &message, reason, now()).await?;
                return Ok(Attempt::Cancelled);
            }
        };
        match self.send(&message, body).await {
            Ok(()) => {
                settle_sent(&self.pool, &message, now()).await?;
                Ok(Attempt::Sent)
            }
            Err(e) => {
                let backoff = RETRY_BASE_SECS << message.attempts.clamp(0, 10);
                tracing::warn!(message = %message.message_id, attempt = message.attempts + 1, error = %e, "mail delivery failed");
                settle_failed(&self.pool, &message, &e.to_string(), now() + backoff).await?;
                Ok(Attempt::Failed)
            }
        }
    }

    /// The body to send, or why the message is not to be sent. A link's
    /// secret is minted here: the invitation (or e-mail change) takes the
    /// new hash only while it is pending and unexpired, and the secret
    /// exists nowhere but in this body. A failed send reveals nothing, so
    /// the next attempt mints again.
    async fn render(
        &self,
        message: &Claimed,
        now: i64,
    ) -> Result<Result<String, &'static str>, sqlx::Error> {
        if !message.body.contains(SECRET_PLACEHOLDER) {
            return Ok(Ok(message.body.clone()));
        }
        let token = InviteToken::generate();
        let (minted, dead) = match (&message.invitation_id, &message.email_change_id) {
            (Some(invitation), _) => (
                mint(&self.pool, invitation, &token.hash(), now).await?,
                "the invitation is no longer pending (accepted, declined, revoked or expired)",
            ),
            (None, Some(change)) => (
                mint_email_change(&self.pool, change, &token.hash(), now).await?,
                "the e-mail change is no longer pending (confirmed, superseded or expired)",
            ),
            (None, None) => match &message.password_reset_id {
                Some(reset) => (
                    mint_password_reset(&self.pool, reset, &token.hash(), now).await?,
                    "the password reset link is used or expired",
                ),
                None => return Ok(Err("a link without an invitation, e-mail change or reset")),
            },
        };
        if !minted {
            return Ok(Err(dead));
        }
        Ok(Ok(message.body.replace(SECRET_PLACEHOLDER, token.expose())))
    }

    async fn send(&self, queued: &Claimed, body: String) -> anyhow::Result<()> {
        let to: Mailbox = queued
            .recipient
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(queued.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(body)?;
        match &self.transport {
            Transport::Dir(dir) => {
                let id = &queued.message_id;
                let path = dir.join(format!("{id}.eml"));
                let tmp = dir.join(format!(".{id}.eml.tmp"));
                // Written then renamed, so a reader never sees half a message.
                tokio::fs::write(&tmp, message.formatted()).await?;
                tokio::fs::rename(&tmp, &path).await?;
            }
            Transport::Smtp(smtp) => smtp.send(message).await?,
        }
        Ok(())
    }

    /// Runs forever: delivers messages due by `clock` (the clock of the
    /// service that queued them) when woken, and every `every`.
    pub async fn run(self: Arc<Self>, every: Duration, clock: Arc<dyn crate::clock::Clock>) {
        loop {
            match self.pass(&|| clock.now()).await {
                // More may be due (a full pass, or on PostgreSQL a message
                // another sidecar took as this one looked): look again.
                Ok(pass) if pass.handled > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the outbox"),
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}
