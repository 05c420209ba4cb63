//! Delivery over SMTP (`--mail-url smtp://…`) to a minimal SMTP server
//! written here, which records what it receives, refuses every sender, or
//! accepts connections and never answers; and the outbox's record of
//! failed deliveries and their retries.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cedargate::mail::MAX_ATTEMPTS;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::TestApp;
use crate::onboarding::{
    ORG_ID, ORG_NAME, OWNER_EMAIL, create_org_inviting_the_owner, header, invite_link,
    message_body, token_of,
};

/// How long a message may take to reach the SMTP server, or a delivery
/// attempt to be recorded (the mail worker polls every 5 seconds).
const DEADLINE: Duration = Duration::from_secs(30);

/// The person the owner invites.
pub const RITA_EMAIL: &str = "rita@acme.example";

/// Bounded polling: `loop { if done { break } patience.pause().await }`,
/// failing the test after [`DEADLINE`].
pub struct Patience {
    what: String,
    deadline: Instant,
    pause: Duration,
}

impl Patience {
    pub fn new(what: impl Into<String>) -> Self {
        Self::for_at_most(what, DEADLINE)
    }

    /// Patience failing the test after `limit` instead of [`DEADLINE`].
    pub fn for_at_most(what: impl Into<String>, limit: Duration) -> Self {
        Self {
            what: what.into(),
            deadline: Instant::now() + limit,
            pause: Duration::from_millis(10),
        }
    }

    pub async fn pause(&mut self) {
        assert!(
            Instant::now() < self.deadline,
            "gave up waiting for {}",
            self.what
        );
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(250));
    }
}

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// The envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The message, dot-stuffing removed, lines ending in CRLF.
    pub data: String,
}

/// How the SMTP server behaves, changed by the test while it runs.
#[derive(Debug, Default)]
struct Behaviour {
    /// Answer `554` to MAIL FROM.
    refusing: AtomicBool,
    /// Accept new connections and never say anything on them.
    silent: AtomicBool,
    /// Milliseconds to wait before accepting each message's data.
    delay_ms: AtomicU64,
}

/// A local SMTP server on a random port. It answers EHLO/HELO, MAIL FROM,
/// RCPT TO, DATA, RSET, NOOP and QUIT, and records every message; while
/// `refusing`, it answers `554` to MAIL FROM; while `silent`, it accepts
/// connections and never answers.
#[derive(Debug)]
pub struct SmtpSink {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Behaviour>,
    server: JoinHandle<()>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SMTP server");
        let port = listener.local_addr().expect("the bound address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Behaviour::default());
        let server = tokio::spawn({
            let received = received.clone();
            let behaviour = behaviour.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    if behaviour.silent.load(Ordering::SeqCst) {
                        tokio::spawn(say_nothing(stream));
                    } else {
                        tokio::spawn(session(stream, received.clone(), behaviour.clone()));
                    }
                }
            }
        });
        Self {
            port,
            received,
            behaviour,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// From now on, answer `554` to every sender (or stop doing so).
    pub fn refuse_senders(&self, refusing: bool) {
        self.behaviour.refusing.store(refusing, Ordering::SeqCst);
    }

    /// From now on, accept connections and never answer on them (or stop
    /// doing so; connections already held stay silent).
    pub fn fall_silent(&self, silent: bool) {
        self.behaviour.silent.store(silent, Ordering::SeqCst);
    }

    /// From now on, take `delay` to accept each message's data.
    pub fn slow_down(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.behaviour.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Stops listening: connections to the port are refused from now on.
    async fn stop(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("the message list").clone()
    }

    /// Waits for the message to `to`.
    pub async fn message_to(&self, to: &str) -> Received {
        let mut patience = Patience::new(format!("a message to {to} over SMTP"));
        loop {
            let found = self
                .received()
                .into_iter()
                .find(|m| m.to.iter().any(|r| r == to));
            if let Some(message) = found {
                return message;
            }
            patience.pause().await;
        }
    }

    /// The invitation link of the message to `to`.
    pub async fn link_to(&self, app: &TestApp, to: &str) -> String {
        let message = self.message_to(to).await;
        invite_link(&app.address, &message_body(&message.data))
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The address inside `<…>` of `MAIL FROM:<a@b>` or `RCPT TO:<a@b>`.
fn path_of(argument: &str) -> String {
    argument
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_owned())
        .unwrap_or_else(|| argument.trim().to_owned())
}

/// A connection accepted and never answered: held until the client
/// closes it.
async fn say_nothing(mut stream: TcpStream) -> std::io::Result<()> {
    let mut sink = [0u8; 1024];
    while tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await? > 0 {}
    Ok(())
}

/// One SMTP session (RFC 5321, the commands a client needs to send).
async fn session(
    stream: TcpStream,
    received: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Behaviour>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let (mut from, mut to) = (None::<String>, Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end();
        let verb = command.to_ascii_uppercase();
        let reply = if verb.starts_with("EHLO") || verb.starts_with("HELO") {
            "250 sink.test".to_owned()
        } else if verb.starts_with("MAIL FROM:") {
            if behaviour.refusing.load(Ordering::SeqCst) {
                "554 5.7.1 the test sink refuses every sender".to_owned()
            } else {
                from = Some(path_of(&command["MAIL FROM:".len()..]));
                to.clear();
                "250 2.1.0 sender ok".to_owned()
            }
        } else if verb.starts_with("RCPT TO:") {
            if from.is_some() {
                to.push(path_of(&command["RCPT TO:".len()..]));
                "250 2.1.5 recipient ok".to_owned()
            } else {
                "503 5.5.1 MAIL first".to_owned()
            }
        } else if verb == "DATA" {
            match (from.take(), to.is_empty()) {
                (Some(sender), false) => {
                    write
                        .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let mut data = String::new();
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).await? == 0 {
                            return Ok(());
                        }
                        let text = line.trim_end_matches(['\r', '\n']);
                        if text == "." {
                            break;
                        }
                        data.push_str(text.strip_prefix('.').unwrap_or(text));
                        data.push_str("\r\n");
                    }
                    let delay = behaviour.delay_ms.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    received.lock().expect("the message list").push(Received {
                        from: sender,
                        to: std::mem::take(&mut to),
                        data,
                    });
                    "250 2.0.0 queued".to_owned()
                }
                _ => "503 5.5.1 MAIL and RCPT first".to_owned(),
            }
        } else if verb == "RSET" {
            (from, to) = (None, Vec::new());
            "250 2.0.0 ok".to_owned()
        } else if verb == "NOOP" {
            "250 2.0.0 ok".to_owned()
        } else if verb == "QUIT" {
            write.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 command not implemented".to_owned()
        };
        write.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

/// The outbox row of the one message to `to`.
#[derive(Debug)]
pub struct OutboxRow {
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
    pub invitation_id: Option<String>,
}

/// The server's database, read (and, to skip retry delays, written) directly.
pub struct Outbox(pub sqlx::AnyPool);

impl Outbox {
    pub async fn open(app: &TestApp) -> Self {
        Self(app.db().await)
    }

    pub async fn row(&self, to: &str) -> OutboxRow {
        let (attempts, last_error, sent_at, invitation_id) = sqlx::query_as::<
            _,
            (i64, Option<String>, Option<i64>, Option<String>),
        >(
            "select attempts, last_error, sent_at, invitation_id from outbox where recipient = $1",
        )
        .bind(to)
        .fetch_one(&self.0)
        .await
        .unwrap_or_else(|e| panic!("no single outbox row for {to}: {e}"));
        OutboxRow {
            attempts,
            last_error,
            sent_at,
            invitation_id,
        }
    }

    /// Waits until the message to `to` has had `attempts` delivery attempts.
    pub async fn attempts_reach(&self, to: &str, attempts: i64) -> OutboxRow {
        let mut patience = Patience::new(format!("delivery attempt {attempts} to {to}"));
        loop {
            let row = self.row(to).await;
            if row.attempts >= attempts {
                return row;
            }
            patience.pause().await;
        }
    }

    /// Makes the retry of the message to `to` due now instead of after its
    /// backoff (the mail worker picks it up within its 5-second poll).
    pub async fn make_due(&self, to: &str) {
        sqlx::query(
            "update outbox set next_attempt_at = 0 where recipient = $1 and sent_at is null",
        )
        .bind(to)
        .execute(&self.0)
        .await
        .expect("move the retry forward");
    }
}

/// A server sending its mail to `sink`, and [`ORG_ID`] whose owner
/// accepted the e-mailed link.
pub async fn org_with_an_active_owner(sink: &SmtpSink) -> TestApp {
    org_with_an_active_owner_and(sink, |_| {}).await
}

/// [`org_with_an_active_owner`] with the configuration adjusted first.
pub async fn org_with_an_active_owner_and(
    sink: &SmtpSink,
    configure: impl FnOnce(&mut cedargate::config::ServeConfig),
) -> TestApp {
    let mail_url = sink.url();
    let app = TestApp::spawn_with_admin_and(|cfg| {
        cfg.invites.mail_url = Some(mail_url);
        configure(cfg);
    })
    .await;
    create_org_inviting_the_owner(&app).await;
    let link = sink.link_to(&app, OWNER_EMAIL).await;
    let accepted = app.accept(token_of(&link)).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    app
}

/// The owner invites Rita; returns her user id.
pub async fn invite_rita(app: &TestApp) -> String {
    let outcome = app
        .invited(
            OWNER_EMAIL,
            ORG_ID,
            RITA_EMAIL,
            json!({"first_name": "Rita", "last_name": "Reader"}),
        )
        .await;
    assert_eq!(outcome["outcome"], "invited", "{outcome}");
    outcome["user_id"]
        .as_str()
        .expect("Rita's user id")
        .to_owned()
}

on_both_backends!(an_invitation_sent_over_smtp_arrives_with_a_link_that_activates_the_member);
async fn an_invitation_sent_over_smtp_arrives_with_a_link_that_activates_the_member() {
    // Arrange
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_with_admin_and(|cfg| cfg.invites.mail_url = Some(sink.url())).await;
    let owner_id = create_org_inviting_the_owner(&app).await;

    // Act
    let message = sink.message_to(OWNER_EMAIL).await;
    let link = invite_link(&app.address, &message_body(&message.data));
    let accepted = app.accept(token_of(&link)).await;

    // Assert
    assert_eq!(message.from, "noreply@cedargate.localhost");
    assert_eq!(message.to, [OWNER_EMAIL]);
    assert_eq!(
        header(&message.data, "Subject").as_deref(),
        Some(format!("Invitation to join {ORG_NAME}").as_str())
    );
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(accepted.body["status"], "ACTIVE", "{}", accepted.text);
    assert_eq!(
        accepted.body["user_id"],
        owner_id.as_str(),
        "{}",
        accepted.text
    );
    let owner = app.member(OWNER_EMAIL, ORG_ID, OWNER_EMAIL).await;
    assert_eq!(owner["status"], "ACTIVE", "{owner}");
    assert_eq!(owner["invitation_delivery_failed"], false, "{owner}");
    assert!(app.allowed(&owner_id, "organization.manage", ORG_ID).await);
    let row = Outbox::open(&app).await.row(OWNER_EMAIL).await;
    assert_eq!(row.attempts, 1, "{row:?}");
    assert!(row.sent_at.is_some(), "{row:?}");
    assert_eq!(row.last_error, None, "{row:?}");
    assert_eq!(sink.received().len(), 1, "one message, sent once");
}

on_both_backends!(a_refused_delivery_is_recorded_and_retried_until_the_server_accepts_it);
async fn a_refused_delivery_is_recorded_and_retried_until_the_server_accepts_it() {
    // Arrange
    let sink = SmtpSink::start().await;
    let app = org_with_an_active_owner(&sink).await;
    let outbox = Outbox::open(&app).await;
    sink.refuse_senders(true);

    // Act
    let rita_id = invite_rita(&app).await;
    let first = outbox.attempts_reach(RITA_EMAIL, 1).await;
    outbox.make_due(RITA_EMAIL).await;
    let second = outbox.attempts_reach(RITA_EMAIL, 2).await;

    // Assert
    for row in [&first, &second] {
        assert_eq!(row.sent_at, None, "{row:?}");
        let error = row.last_error.as_deref().unwrap_or_default();
        assert!(
            error.contains("554"),
            "the SMTP answer is recorded: {row:?}"
        );
        assert!(row.invitation_id.is_some(), "{row:?}");
    }
    assert_eq!(first.attempts, 1, "no retry before the backoff: {first:?}");
    assert!(!sink.received().iter().any(|m| m.to == [RITA_EMAIL]));
    let rita = app.member(OWNER_EMAIL, ORG_ID, RITA_EMAIL).await;
    assert_eq!(rita["status"], "PENDING", "{rita}");
    assert_eq!(
        rita["invitation"], "PENDING",
        "the invitation is kept: {rita}"
    );
    assert_eq!(
        rita["invitation_delivery_failed"], false,
        "retries remain: {rita}"
    );

    // Once the server accepts, the same invitation arrives and works.
    sink.refuse_senders(false);
    outbox.make_due(RITA_EMAIL).await;
    let link = sink.link_to(&app, RITA_EMAIL).await;
    let accepted = app.accept(token_of(&link)).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(
        accepted.body["user_id"],
        rita_id.as_str(),
        "{}",
        accepted.text
    );
    let delivered = outbox.row(RITA_EMAIL).await;
    assert_eq!(delivered.attempts, 3, "{delivered:?}");
    assert!(delivered.sent_at.is_some(), "{delivered:?}");
    assert_eq!(delivered.last_error, None, "{delivered:?}");
    assert_eq!(delivered.invitation_id, first.invitation_id);
    let rita = app.member(OWNER_EMAIL, ORG_ID, RITA_EMAIL).await;
    assert_eq!(rita["status"], "ACTIVE", "{rita}");
}

on_both_backends!(
    an_unreachable_smtp_server_keeps_the_invitation_and_flags_the_member_after_the_last_attempt
);
async fn an_unreachable_smtp_server_keeps_the_invitation_and_flags_the_member_after_the_last_attempt()
 {
    // Arrange
    let mut sink = SmtpSink::start().await;
    let app = org_with_an_active_owner(&sink).await;
    let outbox = Outbox::open(&app).await;
    sink.stop().await;

    // Act
    invite_rita(&app).await;
    let first = outbox.attempts_reach(RITA_EMAIL, 1).await;
    let pending = app.member(OWNER_EMAIL, ORG_ID, RITA_EMAIL).await;
    for attempt in 2..=MAX_ATTEMPTS {
        outbox.make_due(RITA_EMAIL).await;
        outbox.attempts_reach(RITA_EMAIL, attempt).await;
    }
    let last = outbox.row(RITA_EMAIL).await;
    let flagged = app.member(OWNER_EMAIL, ORG_ID, RITA_EMAIL).await;

    // Assert
    assert_eq!(first.sent_at, None, "{first:?}");
    assert!(
        first.last_error.is_some(),
        "the error is recorded: {first:?}"
    );
    assert_eq!(pending["invitation"], "PENDING", "{pending}");
    assert_eq!(pending["invitation_delivery_failed"], false, "{pending}");
    assert_eq!(last.attempts, MAX_ATTEMPTS, "{last:?}");
    assert_eq!(last.sent_at, None, "{last:?}");
    assert!(last.last_error.is_some(), "{last:?}");
    assert_eq!(flagged["status"], "PENDING", "{flagged}");
    assert_eq!(
        flagged["invitation"], "PENDING",
        "the invitation is kept: {flagged}"
    );
    assert_eq!(flagged["invitation_delivery_failed"], true, "{flagged}");
}

/// A second invitee, whose message must not wait behind a stuck one.
const BORIS_EMAIL: &str = "boris@acme.example";

on_both_backends!(
    a_server_that_never_answers_fails_each_attempt_within_the_limit_and_the_member_is_flagged
);
async fn a_server_that_never_answers_fails_each_attempt_within_the_limit_and_the_member_is_flagged()
{
    // Arrange: a short limit on each SMTP exchange.
    let sink = SmtpSink::start().await;
    let app = org_with_an_active_owner_and(&sink, |cfg| {
        cfg.invites.smtp_timeout = Duration::from_secs(2);
    })
    .await;
    let outbox = Outbox::open(&app).await;
    sink.fall_silent(true);

    // Act: every connection is accepted and never answered.
    invite_rita(&app).await;
    let first = outbox.attempts_reach(RITA_EMAIL, 1).await;
    for attempt in 2..=MAX_ATTEMPTS {
        outbox.make_due(RITA_EMAIL).await;
        outbox.attempts_reach(RITA_EMAIL, attempt).await;
    }
    let last = outbox.row(RITA_EMAIL).await;
    let flagged = app.member(OWNER_EMAIL, ORG_ID, RITA_EMAIL).await;
    sink.fall_silent(false);
    let boris = app
        .invited(
            OWNER_EMAIL,
            ORG_ID,
            BORIS_EMAIL,
            json!({"first_name": "Boris", "last_name": "Builder"}),
        )
        .await;
    let boris_message = sink.message_to(BORIS_EMAIL).await;

    // Assert
    assert_eq!(first.sent_at, None, "{first:?}");
    let error = first.last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("no answer") && error.contains("2s"),
        "the timeout is recorded as the attempt's error: {first:?}"
    );
    assert_eq!(last.attempts, MAX_ATTEMPTS, "{last:?}");
    assert_eq!(last.sent_at, None, "{last:?}");
    assert_eq!(flagged["invitation"], "PENDING", "{flagged}");
    assert_eq!(flagged["invitation_delivery_failed"], true, "{flagged}");
    assert_eq!(boris["outcome"], "invited", "{boris}");
    assert_eq!(boris_message.to, [BORIS_EMAIL]);
    assert!(!sink.received().iter().any(|m| m.to == [RITA_EMAIL]));
}
