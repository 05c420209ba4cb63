//! A running `cedargate serve` for HTTP tests (zero2prod style): each test
//! gets its own server on a random port and its own database, so tests run
//! in parallel without sharing state. The database is a SQLite file in a
//! temporary directory or a fresh PostgreSQL database, as the test's
//! [`Backend`] says: every test that starts a server runs on both
//! (`on_both_backends!`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cedargate::clock::{Clock, ManualClock};
use cedargate::config::{DatabaseUrl, ServeConfig};
use cedargate::startup::Application;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The API token of [`ServeConfig::for_tests`].
pub const TOKEN: &str = "test-token";

/// How long a server may take to answer `/readyz` after it was bound.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// The store a test's servers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the test's temporary directory.
    Sqlite,
    /// A fresh database on the PostgreSQL server of `TEST_DATABASE_URL`
    /// (`bash tests/run.sh` starts one).
    Postgres,
}

tokio::task_local! {
    static BACKEND: Backend;
}

impl Backend {
    /// Runs `test` with every server it spawns on this backend.
    pub async fn run<F: std::future::Future>(self, test: F) -> F::Output {
        BACKEND.scope(self, test).await
    }

    /// The backend of the running test (a task spawned by the test runs
    /// outside it: wrap its future in [`Backend::run`] again).
    pub fn current() -> Self {
        BACKEND
            .try_with(|b| *b)
            .unwrap_or_else(|_| panic!("declare the test with `on_both_backends!`"))
    }

    /// A new, empty database of this backend for a test in `dir`.
    async fn database(self, dir: &Path) -> DatabaseUrl {
        match self {
            Self::Sqlite => format!("sqlite://{}", dir.join("test.db").display())
                .parse()
                .expect("a valid sqlite URL"),
            Self::Postgres => fresh_postgres_database().await,
        }
    }
}

/// A new database on the server of `TEST_DATABASE_URL`.
pub async fn fresh_postgres_database() -> DatabaseUrl {
    let admin = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "TEST_DATABASE_URL is not set: the `::postgres` tests need PostgreSQL; \
             run `bash tests/run.sh`, which starts a server for them"
        )
    });
    let name = format!("cg_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::postgres::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL: {e}"));
    sqlx::query(&format!("create database {name}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
    let (base, _) = admin.rsplit_once('/').expect("a URL ending in /database");
    format!("{base}/{name}").parse().expect("a database URL")
}

/// The repository root (policies/, schema/).
pub fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The HTTP API of a server: cheap to clone into the tasks of a test
/// that talks to it concurrently.
#[derive(Debug, Clone)]
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// A client without default headers (each helper adds the token).
    pub client: reqwest::Client,
    /// The API token.
    pub token: String,
}

impl Api {
    /// `address` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A request with the API token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    /// Sends `request` and reads the body as JSON (`Null` when empty; a
    /// non-JSON body fails the test, since every answer here is JSON).
    pub async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("the request is sent");
        let status = response.status();
        let text = response.text().await.expect("the body is read");
        if text.is_empty() {
            return (status, Value::Null);
        }
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status}: the body is not JSON ({e}): {text}"));
        (status, body)
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        Self::send(self.request(reqwest::Method::POST, path).json(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        Self::send(self.request(reqwest::Method::PUT, path).json(body)).await
    }

    /// `GET path`.
    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        Self::send(self.request(reqwest::Method::GET, path)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        Self::send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// `GET path` as text.
    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("the request is sent");
        let status = response.status();
        (status, response.text().await.expect("the body is read"))
    }

    /// `POST /v1/is_authorized`, which must answer 200; returns the body.
    pub async fn is_authorized(
        &self,
        principal: impl Into<Value>,
        action: impl Into<Value>,
        resource: impl Into<Value>,
        context: Value,
    ) -> Value {
        let body = json!({
            "principal": principal.into(),
            "action": action.into(),
            "resource": resource.into(),
            "context": context,
        });
        self.is_authorized_body(&body).await
    }

    /// `POST /v1/is_authorized` with a whole body, which must answer 200.
    pub async fn is_authorized_body(&self, body: &Value) -> Value {
        let (status, answer) = self.post_json("/v1/is_authorized", body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer
    }
}

/// A server running in this test's runtime; its [`Api`] is reached
/// through `Deref`. The invitation-service verbs (acting users, e-mail, a
/// system administrator) are methods too, in `invite_helpers.rs`.
#[derive(Debug)]
pub struct TestApp {
    api: Api,
    /// The configuration the server was built with (a restart reuses it).
    pub config: ServeConfig,
    /// Holds `test.db` (SQLite), the outbox and, when asked for, copies of `policies/` and
    /// `schema/`; `None` only while restarting.
    dir: Option<TempDir>,
    /// Whether `policies/` and `schema/` were copied into `dir`.
    policy_copy: bool,
    /// The server's clock, when spawned with [`TestApp::spawn_with_manual_clock`].
    clock: Option<Arc<ManualClock>>,
    /// The system administrator's user id, when spawned with
    /// [`TestApp::spawn_with_admin`].
    admin_id: Option<String>,
    /// Mail files already handed out by [`TestApp::next_mail_to`].
    mail_seen: Mutex<HashSet<String>>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// A server on the repository's policies and schema, with an empty store.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Like [`TestApp::spawn`], with the configuration adjusted first.
    pub async fn spawn_with(configure: impl FnOnce(&mut ServeConfig)) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let config = Self::config_in(dir.path(), false, configure).await;
        Self::start(dir, false, config, None).await
    }

    /// Like [`TestApp::spawn_with`], on a [`ManualClock`] that starts at the
    /// real current time and moves only when the test advances it.
    pub async fn spawn_with_manual_clock(configure: impl FnOnce(&mut ServeConfig)) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let config = Self::config_in(dir.path(), false, configure).await;
        let clock = Arc::new(ManualClock::new(cedargate::clock::unix_now()));
        Self::start(dir, false, config, Some(clock)).await
    }

    /// A server on copies of `policies/` and `schema/` in its temporary
    /// directory, which the test may edit ([`TestApp::policies_dir`]).
    pub async fn spawn_with_policy_copy() -> Self {
        Self::spawn_with_policy_copy_and(|_| {}).await
    }

    /// Like [`TestApp::spawn_with_policy_copy`], with the configuration
    /// adjusted first (the policy paths already point at the copies).
    pub async fn spawn_with_policy_copy_and(configure: impl FnOnce(&mut ServeConfig)) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        for sub in ["policies", "schema"] {
            copy_dir(&repo_dir().join(sub), &dir.path().join(sub));
        }
        let config = Self::config_in(dir.path(), true, configure).await;
        Self::start(dir, true, config, None).await
    }

    async fn config_in(
        dir: &Path,
        policy_copy: bool,
        configure: impl FnOnce(&mut ServeConfig),
    ) -> ServeConfig {
        let url = Backend::current().database(dir).await;
        let mut config = ServeConfig::for_tests(url, if policy_copy { dir } else { repo_dir() });
        config.invites.mail_url = Some(dir.join("outbox").display().to_string());
        configure(&mut config);
        config
    }

    async fn start(
        dir: TempDir,
        policy_copy: bool,
        config: ServeConfig,
        clock: Option<Arc<ManualClock>>,
    ) -> Self {
        let app = match &clock {
            Some(clock) => Application::build_with_clock(config.clone(), clock.clone()).await,
            None => Application::build(config.clone()).await,
        }
        .unwrap_or_else(|e| panic!("the server does not start: {e:#}"));
        let port = app.local_addr().expect("the bound address").port();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let token = config
            .api_token
            .as_ref()
            .map_or_else(|| TOKEN.to_owned(), |t| t.expose().to_owned());
        let test_app = Self {
            api: Api {
                address: format!("http://127.0.0.1:{port}"),
                client: reqwest::Client::new(),
                token,
            },
            config,
            dir: Some(dir),
            policy_copy,
            clock,
            admin_id: None,
            mail_seen: Mutex::default(),
            shutdown: Some(shutdown),
            server: Some(server),
        };
        test_app.wait_until_ready().await;
        test_app
    }

    /// Polls `GET /readyz` until it answers 200.
    async fn wait_until_ready(&self) {
        let deadline = Instant::now() + READY_DEADLINE;
        let mut pause = Duration::from_millis(1);
        loop {
            let outcome = self.client.get(self.url("/readyz")).send().await;
            match outcome {
                Ok(response) if response.status() == StatusCode::OK => return,
                other => assert!(
                    Instant::now() < deadline,
                    "the server never became ready: last answer {other:?}"
                ),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Stops this server (draining in-flight requests) and starts another
    /// one with the same configuration, on the same database file (the
    /// system administrator and the mail already handed out carry over).
    pub async fn restart(mut self) -> Self {
        self.stop().await;
        let dir = self.dir.take().expect("the temporary directory");
        let mut restarted = Self::start(
            dir,
            self.policy_copy,
            self.config.clone(),
            self.clock.clone(),
        )
        .await;
        restarted.admin_id = self.admin_id.take();
        restarted.mail_seen = std::mem::take(&mut self.mail_seen);
        restarted
    }

    /// Stops the server and waits until it has.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            // A new client: idle keep-alive connections of the old one would
            // otherwise keep the graceful shutdown waiting.
            self.client = reqwest::Client::new();
            server
                .await
                .expect("the server task panicked")
                .expect("the server failed");
        }
    }

    /// A pool on the server's database, for what a test observes below the
    /// API (tables, triggers). Queries must run on both backends.
    pub async fn db(&self) -> sqlx::AnyPool {
        cedargate::db::connect(&self.config.database_url)
            .await
            .unwrap_or_else(|e| panic!("the test database opens: {e}"))
    }

    /// The temporary directory of this server.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the temporary directory").path()
    }

    /// The server's manual clock ([`TestApp::spawn_with_manual_clock`]).
    pub fn clock(&self) -> &ManualClock {
        self.clock
            .as_deref()
            .expect("spawn with `spawn_with_manual_clock` to move the clock")
    }

    /// The server's current time (unix seconds) on its manual clock.
    pub fn now(&self) -> i64 {
        self.clock().now()
    }

    /// Moves the server's manual clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.clock().advance(secs);
    }

    /// Records `admin_id` as this server's system administrator
    /// ([`TestApp::spawn_with_admin`] bootstraps one).
    pub fn with_admin_id(mut self, admin_id: String) -> Self {
        self.admin_id = Some(admin_id);
        self
    }

    /// The system administrator's user id ([`TestApp::spawn_with_admin`]).
    pub fn admin_id(&self) -> &str {
        self.admin_id
            .as_deref()
            .expect("spawn with `spawn_with_admin` to have a system administrator")
    }

    /// The mail files already handed out by [`TestApp::next_mail_to`].
    pub fn mail_seen(&self) -> MutexGuard<'_, HashSet<String>> {
        self.mail_seen.lock().expect("the seen set")
    }

    /// The per-test directory the server delivers `.eml` files into.
    pub fn mail_dir(&self) -> PathBuf {
        PathBuf::from(
            self.config
                .invites
                .mail_url
                .as_deref()
                .expect("a mail directory"),
        )
    }

    /// The editable copy of `policies/`.
    pub fn policies_dir(&self) -> PathBuf {
        assert!(
            self.policy_copy,
            "spawn with `spawn_with_policy_copy` to edit policies"
        );
        self.dir().join("policies")
    }

    /// The editable copy of `schema/`.
    pub fn schema_dir(&self) -> PathBuf {
        assert!(
            self.policy_copy,
            "spawn with `spawn_with_policy_copy` to edit the schema"
        );
        self.dir().join("schema")
    }

    /// `PUT /v1/entities` with `policies/tests/entities/orgs.json`.
    pub async fn load_example(&self) {
        let entities = example_entities();
        let (status, body) = self.put_json("/v1/entities", &entities).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["upserted"], entities.as_array().map_or(0, Vec::len));
    }

    /// `GET /v1/policies` (must answer 200).
    pub async fn policy_status(&self) -> Value {
        let (status, body) = self.get_json("/v1/policies").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl std::ops::DerefMut for TestApp {
    fn deref_mut(&mut self) -> &mut Api {
        &mut self.api
    }
}

impl TestApp {
    /// A handle on this server's API for another task.
    pub fn api(&self) -> Api {
        self.api.clone()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The example organizations: `policies/tests/entities/orgs.json`.
pub fn example_entities() -> Value {
    let path = repo_dir().join("policies/tests/entities/orgs.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("orgs.json is JSON")
}

/// One entity of the example, by type and id.
pub fn example_entity(kind: &str, id: &str) -> Value {
    example_entities()
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|e| e["uid"]["type"] == kind && e["uid"]["id"] == id)
                .cloned()
        })
        .unwrap_or_else(|| panic!("no {kind}::{id:?} in orgs.json"))
}

/// `Type::"id"`.
pub fn uid(kind: &str, id: &str) -> String {
    format!("{kind}::\"{id}\"")
}

/// `Action::"name"`.
pub fn action(name: &str) -> String {
    uid("Action", name)
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    for entry in
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display()))
    {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("cannot copy to {}: {e}", target.display()));
        }
    }
}
