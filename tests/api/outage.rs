//! Faults: a store that stops answering (decisions deny fast, with the
//! reason, and recover), a database file lost while serving, and floods of
//! idle or slow connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::helpers::{Backend, TestApp, fresh_postgres_database, uid};

/// A TCP relay to PostgreSQL that the test can freeze: while frozen it
/// holds every byte, as a partitioned or hung server would.
struct Relay {
    address: std::net::SocketAddr,
    frozen: Arc<AtomicBool>,
    thawed: Arc<Notify>,
}

impl Relay {
    async fn to(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("the relay's address");
        let frozen = Arc::new(AtomicBool::new(false));
        let thawed = Arc::new(Notify::new());
        let (f, t) = (frozen.clone(), thawed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, f.clone(), t.clone()));
                tokio::spawn(pump(sr, cw, f.clone(), t.clone()));
            }
        });
        Self {
            address,
            frozen,
            thawed,
        }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
        self.thawed.notify_waiters();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
    thawed: Arc<Notify>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        while frozen.load(Ordering::SeqCst) {
            let wait = thawed.notified();
            if !frozen.load(Ordering::SeqCst) {
                break;
            }
            wait.await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run `bash tests/run.sh`"]
async fn with_postgresql_unreachable_an_uncached_decision_denies_within_the_store_timeout() {
    Backend::Postgres
        .run(async {
            // Arrange: the sidecar reaches PostgreSQL through the relay.
            let direct = fresh_postgres_database().await;
            let url = reqwest::Url::parse(direct.expose()).expect("a database URL");
            let upstream = format!(
                "{}:{}",
                url.host_str().expect("a host"),
                url.port().unwrap_or(5432)
            );
            let relay = Relay::to(upstream).await;
            let mut relayed = url.clone();
            relayed
                .set_port(Some(relay.address.port()))
                .expect("a port");
            let relayed = relayed.as_str().parse().expect("a database URL");
            let app = TestApp::spawn_with(|cfg| {
                cfg.database_url = relayed;
                cfg.store_timeout_ms = 250;
            })
            .await;
            app.load_example().await;
            let ask = |who: &str| {
                app.is_authorized(
                    uid("User", who),
                    uid("Action", "billing.read"),
                    uid("Organization", "acme"),
                    json!({}),
                )
            };
            assert_eq!(ask("olivia").await["decision"], "allow");

            // Act: PostgreSQL stops answering; ruth was never read.
            relay.freeze();
            let started = Instant::now();
            let during = ask("ruth").await;
            let waited = started.elapsed();
            relay.thaw();
            let after = ask("ruth").await;

            // Assert
            eprintln!("store unreachable: denied after {} ms", waited.as_millis());
            assert_eq!(during["decision"], "deny", "{during}");
            assert!(
                during["errors"]
                    .to_string()
                    .contains("did not answer within 250 ms"),
                "{during}"
            );
            assert_eq!(after["decision"], "allow", "{after}");
        })
        .await;
}

#[tokio::test]
async fn a_deleted_or_replaced_sqlite_file_turns_readiness_off_and_refuses_writes() {
    Backend::Sqlite
        .run(async {
            for replace in [false, true] {
                // Arrange
                let app = TestApp::spawn().await;
                app.load_example().await;
                let file = app
                    .config
                    .database_url
                    .sqlite_path()
                    .expect("a SQLite file");
                let (ready, _) = app.get_json("/readyz").await;
                assert_eq!(ready, StatusCode::OK);

                // Act: the file is deleted, or replaced by a copy of itself.
                if replace {
                    let copy = file.with_extension("copy");
                    std::fs::copy(&file, &copy).expect("copy the database");
                    std::fs::rename(&copy, &file).expect("replace the database");
                } else {
                    std::fs::remove_file(&file).expect("delete the database");
                }
                let (ready, body) = app.get_json("/readyz").await;
                let account = json!([{"uid": {"type": "Account", "id": "lost"},
                    "attrs": {"tenant": "acme", "accountType": "Active"}, "parents": []}]);
                let (written, refusal) = app.put_json("/v1/entities", &account).await;

                // Assert
                assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE, "{body}");
                assert!(!written.is_success(), "a write was acknowledged: {refusal}");
                assert!(
                    refusal["error"]["message"]
                        .to_string()
                        .contains("writes are refused"),
                    "{refusal}"
                );
            }
        })
        .await;
}

#[tokio::test]
async fn a_start_does_not_silently_create_a_fresh_database_where_one_was_in_use() {
    Backend::Sqlite
        .run(async {
            // Arrange: a sidecar that used its database and token file.
            let mut app = TestApp::spawn().await;
            app.load_example().await;
            app.stop().await;
            let mut config = app.config.clone();
            config.api_token = None;
            let token_file = app.dir().join("cedargate.token");
            std::fs::write(&token_file, "a-token\n").expect("a token file");
            config.token_file = Some(token_file);
            let file = config.database_url.sqlite_path().expect("a SQLite file");
            std::fs::remove_file(&file).expect("lose the database");

            // Act
            let refused = cedargate::startup::Application::build(config.clone()).await;
            config.create_database = true;
            let created = cedargate::startup::Application::build(config).await;

            // Assert
            let Err(refusal) = refused else {
                panic!("the start on a lost database was not refused")
            };
            let message = format!("{refusal:#}");
            assert!(message.contains("is missing"), "{message}");
            assert!(message.contains("--create-database"), "{message}");
            assert!(
                created.is_ok(),
                "--create-database starts on an empty store"
            );
        })
        .await;
}

on_both_backends!(
    idle_sockets_and_slow_header_senders_are_closed_and_health_keeps_answering,
    multi_thread
);
async fn idle_sockets_and_slow_header_senders_are_closed_and_health_keeps_answering() {
    // Arrange: a small connection pool and a short header deadline.
    let app = TestApp::spawn_with(|cfg| {
        cfg.max_connections = 64;
        cfg.header_timeout_ms = 500;
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..150 {
        idle.push(TcpStream::connect(&address).await.expect("connect"));
    }
    let mut tricklers = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let address = address.clone();
        tricklers.spawn(async move {
            let mut stream = TcpStream::connect(&address).await.expect("connect");
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").await;
            // One byte at a time, never ending the headers, for up to a
            // minute: `true` when the server closed the connection first.
            for _ in 0..600 {
                if stream.write_all(b"a").await.is_err() {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            false
        });
    }

    // Act: health probes while the flood holds on.
    let mut probes = Vec::new();
    for _ in 0..5 {
        let (status, _) = app.get_json("/healthz").await;
        probes.push(status);
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    let mut closed = 0;
    for mut socket in idle {
        let mut byte = [0u8; 1];
        let left = deadline.saturating_duration_since(Instant::now());
        // EOF or a reset: the server closed the idle connection.
        if let Ok(Ok(_) | Err(_)) = tokio::time::timeout(left, socket.read(&mut byte)).await {
            closed += 1;
        }
    }
    let slow_closed = tricklers
        .join_all()
        .await
        .into_iter()
        .filter(|c| *c)
        .count();

    // Assert
    assert!(probes.iter().all(|s| *s == StatusCode::OK), "{probes:?}");
    assert_eq!(
        closed,
        150,
        "idle connections the server never closed: {}",
        150 - closed
    );
    assert_eq!(
        slow_closed,
        50,
        "slow senders the server never closed: {}",
        50 - slow_closed
    );
    let (status, _) = app.get_json("/healthz").await;
    assert_eq!(status, StatusCode::OK);
}
