//! Building and running the server: policies, database, engine, router,
//! background tasks (file watch, SIGHUP, cross-sidecar sync), graceful
//! shutdown.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use tokio::net::TcpListener;

use crate::clock::{Clock, SystemClock};
use crate::config::{DatabaseUrl, InviteArgs, ServeConfig};
use crate::decisionlog::DecisionLog;
use crate::engine::Engine;
use crate::entities::EntityStore;
use crate::http::{self, AppState, Auth, Limits, Services};
use crate::invites::InviteService;
use crate::mail::Mailer;
use crate::metrics::Metrics;
use crate::policy;

/// How often the mail worker looks for due retries when nothing wakes it.
const MAIL_POLL: Duration = Duration::from_secs(5);
/// How often the bulk-job worker looks for jobs when nothing wakes it:
/// those whose worker died (their lease ended) and those due a retry.
const BULK_JOB_POLL: Duration = Duration::from_secs(5);

/// The invitation service and its mailer, when the schema is the cedargate
/// organization model (another model gets the decision API only).
pub fn invitation_service(
    engine: &Arc<Engine>,
    database_url: &DatabaseUrl,
    invites: &InviteArgs,
    bound: &str,
) -> anyhow::Result<Option<(InviteService, Arc<Mailer>)>> {
    if !has_organization_model(engine) {
        return Ok(None);
    }
    let sink = invites.mail_sink(database_url);
    let mailer = Arc::new(Mailer::new(
        engine.store().pool().clone(),
        sink,
        &invites.mail_from,
        invites.mail_options(),
    )?);
    let service = InviteService::new(
        engine.clone(),
        engine.store().clone(),
        Some(mailer.clone()),
        invites.settings(bound),
    );
    Ok(Some((service, mailer)))
}

/// Loads and validates the policies, with every problem rendered.
fn load_policies(args: &crate::policy::PolicyArgs) -> anyhow::Result<policy::PolicySnapshot> {
    policy::load(&args.policies, &args.schema)
        .map_err(|e| anyhow::anyhow!("the policies cannot be loaded:\n{}", e.render()))
}

/// The entity store of a command-line run (no HTTP server), synced to
/// the database's current revision.
pub async fn open_store(url: &crate::config::DatabaseUrl) -> anyhow::Result<Arc<EntityStore>> {
    let pool = crate::db::connect(url)
        .await
        .context("cannot open the database")?;
    let store = Arc::new(EntityStore::new(
        pool,
        10_000,
        crate::entities::DEFAULT_CHANGE_LOG_KEEP,
    ));
    store
        .mark_synced()
        .await
        .context("cannot read the store revision")?;
    Ok(store)
}

/// The invitation service for a command-line run (no HTTP server): the
/// same engine, store and mail settings as `serve`.
pub async fn offline_service(
    args: &crate::config::StoreArgs,
) -> anyhow::Result<(InviteService, Arc<Mailer>)> {
    let snapshot = load_policies(&args.policy)?;
    let store = open_store(&args.database_url).await?;
    let engine = Arc::new(Engine::new(
        args.policy.clone(),
        snapshot,
        store,
        0,
        Duration::from_secs(1),
        Arc::new(Metrics::default()),
        DecisionLog::off(),
    )?);
    // Links point at `serve`'s default address; `--public-url` overrides it.
    invitation_service(&engine, &args.database_url, &args.invites, "127.0.0.1:8180")?.ok_or_else(|| {
        anyhow::anyhow!("the schema is not the cedargate organization model (User, Organization, Membership, Department)")
    })
}

/// The schema declares the entity types the invitation service writes.
pub fn has_organization_model(engine: &Engine) -> bool {
    let loaded = engine.current();
    let declared: Vec<String> = loaded
        .snapshot
        .schema()
        .entity_types()
        .map(|t| t.to_string())
        .collect();
    ["User", "Organization", "Membership", "Department"]
        .iter()
        .all(|t| declared.iter().any(|d| d == t))
}

/// A built server, bound to its socket, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    engine: Arc<Engine>,
    mailer: Option<Arc<Mailer>>,
    invites: Option<Arc<InviteService>>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    config: ServeConfig,
}

impl Application {
    /// Loads and validates the policies, opens and migrates the database,
    /// seeds entities, and binds the socket.
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with a given clock (tests pass a `ManualClock`).
    pub async fn build_with_clock(
        config: ServeConfig,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let snapshot = load_policies(&config.policy)?;
        refuse_lost_database(&config)?;
        match crate::server::raise_open_file_limit() {
            Ok(files) if (files as usize) < config.max_connections.saturating_add(64) => {
                tracing::warn!(
                    open_files = files,
                    max_connections = config.max_connections,
                    "the open-file limit is below --max-connections: lower it or raise the hard limit"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
        }
        let pool = crate::db::connect(&config.database_url)
            .await
            .context("cannot open the database")?;
        let file = crate::db::FileIdentity::of(&config.database_url)
            .context("cannot read the database file")?;
        let store = Arc::new(
            EntityStore::new(pool, config.entity_cache_capacity, config.change_log_keep)
                .with_read_timeout(Duration::from_millis(config.store_timeout_ms))
                .with_file_identity(file),
        );
        store
            .mark_synced()
            .await
            .context("cannot read the store revision")?;
        if let Some(path) = &config.entities {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            let json = serde_json::from_str(&text)
                .with_context(|| format!("`{}` is not JSON", path.display()))?;
            let n = store
                .upsert(snapshot.schema(), json)
                .await
                .with_context(|| format!("cannot load the entities of `{}`", path.display()))?;
            tracing::info!(entities = n, file = %path.display(), "entities loaded");
        }

        let metrics = Arc::new(Metrics::default());
        let mut log = DecisionLog::open(&config.decision_log, config.decision_log_sample)
            .with_context(|| format!("cannot open the decision log `{}`", config.decision_log))?;
        if config.decision_log_requests {
            log = log.with_requests(config.decision_log_redact.clone());
        }
        let engine = Arc::new(
            Engine::new(
                config.policy.clone(),
                snapshot,
                store,
                config.decision_cache_capacity,
                Duration::from_secs(config.decision_cache_ttl_secs),
                metrics.clone(),
                log,
            )?
            .with_test_gate(config.reload_test_gate)
            .with_consistency_wait(Duration::from_millis(config.consistency_wait_ms)),
        );
        let auth = Arc::new(resolve_auth(&config)?);
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let bound = listener.local_addr()?;
        let (invites, mailer) = match invitation_service(
            &engine,
            &config.database_url,
            &config.invites,
            &bound.to_string(),
        )? {
            Some((service, mailer)) => (
                Some(Arc::new(
                    service.with_hash_counter(metrics.password_hashes.clone()),
                )),
                Some(mailer),
            ),
            None => {
                tracing::info!(
                    "the schema is not the cedargate organization model: invitation service off"
                );
                (None, None)
            }
        };
        let public_url = config
            .invites
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"));
        let state = AppState::new(Services {
            public_url,
            engine: engine.clone(),
            metrics: metrics.clone(),
            auth,
            invites: invites.clone(),
            clock: clock.clone(),
        });
        let limits = Limits {
            max_body_bytes: config.max_body_bytes,
            timeout: Duration::from_millis(config.request_timeout_ms),
        };
        Ok(Self {
            listener,
            router: http::router(state, limits),
            engine,
            mailer,
            invites,
            metrics,
            clock,
            config,
        })
    }

    /// The bound address (the real port when the config said port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(sync_loop(
            self.engine.clone(),
            Duration::from_millis(self.config.sync_interval_ms),
        ));
        tasks.spawn(sighup_loop(self.engine.clone()));
        if self.config.database_url.is_postgres() {
            tasks.spawn(notification_loop(
                self.engine.clone(),
                self.config.database_url.clone(),
                self.metrics.clone(),
            ));
        }
        if let Some(mailer) = &self.mailer {
            tasks.spawn(mailer.clone().run(MAIL_POLL, self.clock.clone()));
        }
        if let Some(service) = &self.invites {
            tasks.spawn(
                service
                    .clone()
                    .run_bulk_jobs(BULK_JOB_POLL, self.clock.clone()),
            );
        }
        if self.config.watch {
            let watch = PolicyWatch::start(&self.config.policy)?;
            tasks.spawn(watch.run(
                self.engine.clone(),
                Duration::from_millis(self.config.watch_settle_ms),
            ));
        }
        tracing::info!(address = %self.local_addr()?, database = %self.config.database_url, "cedargate serving");
        crate::server::serve(
            self.listener,
            self.router,
            crate::server::ConnectionLimits {
                max_connections: self.config.max_connections,
                header_timeout: Duration::from_millis(self.config.header_timeout_ms),
            },
            shutdown,
        )
        .await;
        tasks.abort_all();
        Ok(())
    }
}

/// The API token: given, read from the token file, or generated into it.
fn resolve_auth(config: &ServeConfig) -> anyhow::Result<Auth> {
    if config.insecure_no_auth {
        tracing::warn!(
            "--insecure-no-auth: ANY CALLER CAN READ DECISIONS AND WRITE ENTITIES; never use this outside a local experiment"
        );
        return Ok(Auth::Disabled);
    }
    if let Some(token) = &config.api_token {
        return Ok(Auth::token(token.expose()));
    }
    let path = config
        .token_file
        .clone()
        .unwrap_or_else(|| default_token_file(config));
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let token = existing.trim();
        anyhow::ensure!(
            !token.is_empty(),
            "the token file `{}` is empty",
            path.display()
        );
        tracing::info!(file = %path.display(), "API token read from file");
        return Ok(Auth::token(token));
    }
    let token = generate_token();
    write_private(&path, &token)
        .with_context(|| format!("cannot write the token file `{}`", path.display()))?;
    eprintln!(
        "cedargate: generated an API token in {} (readable only by you); send it as `Authorization: Bearer $(cat {})`",
        path.display(),
        path.display()
    );
    Ok(Auth::token(&token))
}

/// A missing SQLite file is created on first start, but not where the
/// files it leaves beside it (the token file, the outbox) show that a
/// database was in use: starting on an empty store would silently forget
/// every entity, member and invitation.
fn refuse_lost_database(config: &ServeConfig) -> anyhow::Result<()> {
    let Some(path) = config.database_url.sqlite_path() else {
        return Ok(());
    };
    if path.exists() || config.create_database {
        return Ok(());
    }
    let token = config
        .token_file
        .clone()
        .unwrap_or_else(|| default_token_file(config));
    let outbox = match config.invites.mail_sink(&config.database_url) {
        crate::mail::MailSink::Dir(dir) => Some(dir),
        _ => None,
    };
    if let Some(evidence) = std::iter::once(token).chain(outbox).find(|p| p.exists()) {
        anyhow::bail!(
            "the database `{}` is missing, but `{}` shows one was in use here; if it was lost, restore it, or start with --create-database to begin with an empty store",
            path.display(),
            evidence.display()
        );
    }
    Ok(())
}

fn default_token_file(config: &ServeConfig) -> PathBuf {
    let dir = config
        .database_url
        .sqlite_path()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    dir.join("cedargate.token")
}

/// 256 random bits, base64url without padding.
fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")
}

/// Picks up entity changes written by other sidecars sharing the database.
async fn sync_loop(engine: Arc<Engine>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(e) = engine.store().sync().await {
            tracing::warn!(error = %e, "cannot read entity changes");
        }
    }
}

/// Catches up as soon as another sidecar sharing the PostgreSQL database
/// announces a committed store revision. Polling (`sync_loop`) goes on
/// beside it, so a lost notification connection delays other sidecars'
/// writes by one sync interval at most; its loss and recovery are logged
/// and shown in the metrics.
async fn notification_loop(
    engine: Arc<Engine>,
    url: crate::config::DatabaseUrl,
    metrics: Arc<Metrics>,
) {
    let mut pause = Duration::from_millis(100);
    loop {
        match sqlx::postgres::PgListener::connect(url.expose()).await {
            Ok(mut listener) => match listener.listen(crate::entities::CHANGE_CHANNEL).await {
                Ok(()) => {
                    metrics.change_notifications_connected.set(1);
                    tracing::info!("listening for other sidecars' store changes");
                    pause = Duration::from_millis(100);
                    listen(&engine, &mut listener, &metrics).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for store changes; polling only")
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect for store change notifications; polling only")
            }
        }
        metrics.change_notifications_connected.set(0);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

/// Applies each announced revision; returns when the connection fails.
async fn listen(engine: &Engine, listener: &mut sqlx::postgres::PgListener, metrics: &Metrics) {
    // Whatever was committed before the listening started.
    let _ = engine.store().sync().await;
    loop {
        match listener.try_recv().await {
            Ok(Some(_)) => {
                if let Err(e) = engine.store().sync().await {
                    tracing::warn!(error = %e, "cannot read entity changes");
                }
            }
            Ok(None) => {
                // Reconnected by sqlx: notifications in between were lost.
                metrics.change_notification_losses.inc();
                tracing::warn!(
                    "the store change notification connection was lost and re-established"
                );
                let _ = engine.store().sync().await;
            }
            Err(e) => {
                metrics.change_notification_losses.inc();
                tracing::warn!(error = %e, "lost the store change notifications; polling only until they are back");
                return;
            }
        }
    }
}

/// SIGHUP reloads the policies.
async fn sighup_loop(engine: Arc<Engine>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP");
            return;
        };
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading policies");
            // The outcome is logged and kept for GET /v1/policies.
            let _ = engine.reload().await;
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await;
}

/// Reloads the policies when a file under the policy or schema path
/// changes, once the files have settled.
///
/// Besides the paths themselves, their parent directories are watched: a
/// policy directory deleted and recreated, or a symlink swapped to a new
/// release (`ln -s v2 policies.new && mv -T policies.new policies`), is
/// seen there, and every watch is then set up again on what the paths now
/// name.
struct PolicyWatch {
    watcher: notify::RecommendedWatcher,
    events: tokio::sync::mpsc::UnboundedReceiver<()>,
    paths: Vec<std::path::PathBuf>,
    parents: Vec<std::path::PathBuf>,
}

impl PolicyWatch {
    fn start(policy: &crate::policy::PolicyArgs) -> anyhow::Result<Self> {
        let mut paths = vec![std::path::absolute(&policy.policies)?];
        if policy.schema != policy.policies {
            paths.push(std::path::absolute(&policy.schema)?);
        }
        let parents = paths
            .iter()
            .filter_map(|p| p.parent().map(Path::to_owned))
            .collect();
        // The parents hold other files too (a database beside `policies/`):
        // only changes of the policy and schema paths count.
        let ours = paths.clone();
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| {
                !e.kind.is_access()
                    && e.paths
                        .iter()
                        .any(|p| ours.iter().any(|o| p.starts_with(o)))
            }) {
                let _ = tx.send(());
            }
        })
        .context("cannot watch the policy files")?;
        let mut watch = Self {
            watcher,
            events,
            paths,
            parents,
        };
        watch.arm().context("cannot watch the policy files")?;
        Ok(watch)
    }

    /// (Re)watches every path as it is now; a path that is missing right
    /// now is watched again after the next change of its parent.
    fn arm(&mut self) -> notify::Result<()> {
        use notify::{RecursiveMode, Watcher};
        for path in self.paths.iter().chain(&self.parents) {
            let _ = self.watcher.unwatch(path);
        }
        for parent in &self.parents {
            self.watcher.watch(parent, RecursiveMode::NonRecursive)?;
        }
        for path in &self.paths {
            if let Err(e) = self.watcher.watch(path, RecursiveMode::Recursive) {
                tracing::warn!(path = %path.display(), error = %e, "cannot watch a policy path (yet)");
            }
        }
        Ok(())
    }

    async fn run(mut self, engine: Arc<Engine>, settle: Duration) {
        while self.events.recv().await.is_some() {
            // Wait until the files have been quiet for a whole settle
            // interval: a truncate-then-write is one change, not two.
            loop {
                tokio::time::sleep(settle).await;
                let mut more = false;
                while self.events.try_recv().is_ok() {
                    more = true;
                }
                if !more {
                    break;
                }
            }
            if let Err(e) = self.arm() {
                tracing::warn!(error = %e, "cannot watch the policy directories again");
            }
            tracing::info!("policy files changed and settled: reloading");
            // The outcome is logged and kept for GET /v1/policies.
            let _ = engine.reload().await;
        }
    }
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// Logs to stderr, filtered by `CEDARGATE_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CEDARGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
