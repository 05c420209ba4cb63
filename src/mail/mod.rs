//! E-mail: an outbox table written in the transaction of the change that
//! causes a message, and a worker that delivers due messages with retries.
//! Delivery goes to `.eml` files in a directory (the embedded default) or to
//! an SMTP server (`smtp://` / `smtps://` URL), through `lettre`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, Message, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use sqlx::{AnyPool, Row};
use tokio::sync::Notify;

/// Attempts before a message is marked failed.
pub const MAX_ATTEMPTS: i64 = 5;
/// First retry delay in seconds; doubled after each failure.
const RETRY_BASE_SECS: i64 = 30;
/// What a delivered message's `body` becomes.
const DELIVERED_BODY: &str = "(delivered; the body is not kept)";

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
}

impl MailSink {
    /// Where messages go, for people.
    pub fn describe(&self) -> String {
        match self {
            MailSink::Dir(dir) => format!("`{}` (one .eml file per message)", dir.display()),
            MailSink::Smtp(url) => {
                // Hide credentials: keep scheme and host.
                let host = url.rsplit('@').next().unwrap_or(url);
                format!("the SMTP server {host}")
            }
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
    /// Plain-text body.
    pub body: String,
    /// The invitation the message carries, if any.
    pub invitation_id: Option<String>,
}

/// Queues `message` inside the caller's transaction: it is sent only if
/// the transaction commits.
pub async fn enqueue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: i64,
    message: &Outgoing,
) -> Result<String, sqlx::Error> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "insert into outbox (message_id, invitation_id, recipient, subject, body, created_at, next_attempt_at)
         values ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(&id)
    .bind(message.invitation_id.clone())
    .bind(&message.to)
    .bind(&message.subject)
    .bind(&message.body)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Whether the e-mail of `invitation_id` could not be delivered: a message
/// still unsent after [`MAX_ATTEMPTS`] attempts.
pub async fn delivery_failed(
    conn: &mut sqlx::AnyConnection,
    invitation_id: &str,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "select 1 from outbox where invitation_id = $1 and sent_at is null and attempts >= $2",
    )
    .bind(invitation_id)
    .bind(MAX_ATTEMPTS)
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// Delivers the outbox.
#[derive(Debug)]
pub struct Mailer {
    pool: AnyPool,
    sink: MailSink,
    from: Mailbox,
    wake: Arc<Notify>,
}

impl Mailer {
    /// A mailer sending from `from` (e.g. `cedargate <noreply@example.com>`).
    pub fn new(pool: AnyPool, sink: MailSink, from: &str) -> anyhow::Result<Self> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid sender `{from}`: {e}"))?;
        if let MailSink::Dir(dir) = &sink {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dir.display()))?;
        }
        Ok(Self {
            pool,
            sink,
            from,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Wakes the worker (call after committing a transaction that queued mail).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delivers every due message once. Returns (sent, failed) counts.
    pub async fn deliver_due(&self, now: i64) -> Result<(usize, usize), sqlx::Error> {
        let rows = sqlx::query(
            "select message_id, recipient, subject, body, attempts from outbox
             where sent_at is null and attempts < $1 and next_attempt_at <= $2
             order by created_at limit 100",
        )
        .bind(MAX_ATTEMPTS)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let (mut sent, mut failed) = (0, 0);
        for row in rows {
            let id: String = row.get(0);
            let attempts: i64 = row.get(4);
            match self.send(&id, row.get(1), row.get(2), row.get(3)).await {
                Ok(()) => {
                    // The body may carry a one-time invitation link, whose
                    // secret must not outlive its delivery (only its hash
                    // is kept, R59): the sent record keeps no body.
                    sqlx::query("update outbox set sent_at = $1, attempts = attempts + 1, last_error = null, body = $2 where message_id = $3")
                        .bind(now)
                        .bind(DELIVERED_BODY)
                        .bind(&id)
                        .execute(&self.pool)
                        .await?;
                    sent += 1;
                }
                Err(e) => {
                    let backoff = RETRY_BASE_SECS << attempts.clamp(0, 10);
                    tracing::warn!(message = %id, attempt = attempts + 1, error = %e, "mail delivery failed");
                    sqlx::query(
                        "update outbox set attempts = attempts + 1, last_error = $1, next_attempt_at = $2 where message_id = $3",
                    )
                    .bind(e.to_string())
                    .bind(now + backoff)
                    .bind(&id)
                    .execute(&self.pool)
                    .await?;
                    failed += 1;
                }
            }
        }
        Ok((sent, failed))
    }

    async fn send(
        &self,
        id: &str,
        to: String,
        subject: String,
        body: String,
    ) -> anyhow::Result<()> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)?;
        match &self.sink {
            MailSink::Dir(dir) => {
                let path = dir.join(format!("{id}.eml"));
                let tmp = dir.join(format!(".{id}.eml.tmp"));
                // Written then renamed, so a reader never sees half a message.
                tokio::fs::write(&tmp, message.formatted()).await?;
                tokio::fs::rename(&tmp, &path).await?;
            }
            MailSink::Smtp(url) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?
                    .timeout(Some(Duration::from_secs(10)))
                    .build();
                transport.send(message).await?;
            }
        }
        Ok(())
    }

    /// Runs forever: delivers messages due by `clock` (the clock of the
    /// service that queued them) when woken, and every `every`.
    pub async fn run(self: Arc<Self>, every: Duration, clock: Arc<dyn crate::clock::Clock>) {
        loop {
            if let Err(e) = self.deliver_due(clock.now()).await {
                tracing::warn!(error = %e, "cannot read the outbox");
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}
