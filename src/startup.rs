//! Wiring: settings → store → job writer → worker → HTTP server on its own listener
//! (port 0 in tests). `run_until_stopped` stops everything in order on shutdown.
//! Nothing imports this module but the CLI: it sits above everything it wires.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::KeepAlive;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{ClientTimeouts, ValidSettings};
use crate::domain::WebhookRoute;
use crate::intake::Intake;
use crate::jobs;
use crate::known_agents::KnownAgents;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::reconcile::{self, ReconcileHandle, Reconciler, Target};
use crate::routes::{track_answers, watch_connections, AccountAuth, AppState, WebhookAuth};
use crate::routing::Router;
use crate::signature::Verifier;
use crate::store::{JobWriter, Store, StoreOptions};
use crate::twilio::TwilioClient;
use crate::worker::{self, AccountWorker, WorkerHandle, WorkerOptions};

pub struct Application {
    port: u16,
    server: Server,
    /// `server.metrics_port`'s server and its port, when set.
    metrics_server: Option<(u16, Server)>,
    worker: WorkerHandle,
    /// Each account's periodic reconciliation sweep, when `reconcile.interval` is set.
    reconcile: Vec<ReconcileHandle>,
    writer: JoinHandle<()>,
    store: Store,
    /// `server.shutdown_timeout_secs`: in-flight webhooks and jobs share it.
    shutdown_budget: Duration,
}

impl Application {
    /// The app as production runs it: timed by the system clock.
    pub async fn build(settings: ValidSettings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Clock::system()).await
    }

    /// The app timed by `clock`, which the store, and through it the worker, the jobs, the
    /// intake, the lifecycle and the reconciler, read: a test passes a [`Clock::manual`]
    /// and moves time with [`Clock::advance`] instead of sleeping.
    pub async fn build_with_clock(settings: ValidSettings, clock: Clock) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| {
                format!(
                    "cannot listen on {}:{} (server.host, server.port)",
                    settings.server.host, settings.server.port
                )
            })?;
        let port = listener.local_addr()?.port();
        // "ngrok": the tunnel to the port just bound (known only now when it is 0).
        let public_base_url = match &settings.server.ngrok_api_url {
            Some(api) => {
                let url = crate::ngrok::public_url(api, port).await?;
                tracing::info!(public_base_url = %url, "public_base_url found from ngrok");
                Some(url)
            }
            None => settings.server.public_base_url.clone(),
        };
        let store = Store::open(
            &settings.store.url,
            &StoreOptions {
                busy_timeout: settings.store.busy_timeout,
                clock,
            },
        )
        .await?;

        let metrics = Metrics::new(store.backend().as_str(), &settings.accounts.names()).with_sids(
            settings
                .accounts
                .iter()
                .map(|a| a.twilio.account_sid.as_ref().map(|s| s.to_string()))
                .collect(),
        );
        adopt_known_agents(&store, &settings).await;
        let wake = Arc::new(Notify::new());
        let (writer, writer_task) =
            JobWriter::spawn(store.clone(), settings.store.batch_max, wake.clone());
        // Each account: its client, its worker, its reconciler and its webhook keys.
        let mut workers = Vec::new();
        let mut reconcilers = Vec::new();
        let mut webhook_accounts = Vec::new();
        for account in &settings.accounts {
            let client = TwilioClient::new(&account.twilio)?
                .observed_by(Arc::new(metrics.for_account(&account.name)));
            if let (Some(interval), Some(target)) = (
                settings.reconcile.interval,
                Target::of(account, public_base_url.as_deref()),
            ) {
                let reconciler = Reconciler::new(
                    store.clone(),
                    client.clone(),
                    wake.clone(),
                    &settings.lifecycle,
                    target,
                    settings.reconcile.clone(),
                )
                .with_metrics(metrics.clone());
                reconcilers.push(reconcile::spawn(reconciler, interval));
            }
            let options = WorkerOptions::from_settings(&settings, account);
            workers.push(AccountWorker {
                name: account.name.clone(),
                claims_for: account.twilio.account_sid.as_ref().map(|s| s.to_string()),
                client,
                router: Router::new(&account.flex, &settings.routing, &account.name),
                options: WorkerOptions {
                    jobs: jobs::Settings {
                        public_base_url: public_base_url.clone(),
                        ..options.jobs
                    },
                    ..options
                },
            });
            let twilio = &account.twilio;
            webhook_accounts.push(AccountAuth {
                name: account.name.clone(),
                account_sid: twilio.account_sid.clone(),
                verifier: Verifier::new(
                    twilio.auth_token.clone(),
                    twilio.secondary_auth_token.clone(),
                    twilio.webhook_shared_keys.clone(),
                ),
                workspace_sid: account.flex.workspace_sid.clone(),
            });
        }
        let worker = worker::spawn(store.clone(), workers, wake.clone(), metrics.clone());

        let server_settings = &settings.server;
        let state = web::Data::new(AppState {
            webhook_auth: WebhookAuth {
                accounts: webhook_accounts,
                public_base_url: public_base_url.clone(),
                trust_forwarded_headers: server_settings.trust_forwarded_headers,
            },
            intake: Intake::new(
                writer,
                settings.store.known_cache_capacity,
                server_settings.ack_timeout,
                settings.routing.allow_body,
                settings.routing.may_ignore().then(|| store.clone()),
            ),
            lifecycle: Lifecycle::new(store.clone(), &settings.lifecycle, wake.clone()),
            known_agents: KnownAgents::new(store.clone(), settings.routing.known_agent_within),
            ack_timeout: server_settings.ack_timeout,
            body_timeout: server_settings.client_timeouts.body,
            store: store.clone(),
            worker_running: worker.running(),
            metrics,
            metrics_token: server_settings.metrics_token.clone(),
        });

        let max_body = server_settings.max_body_bytes;
        let shutdown_budget = server_settings.shutdown_timeout;
        let timeouts = server_settings.client_timeouts;
        let metrics_server = match server_settings.metrics_port {
            Some(metrics_port) => {
                let listener = TcpListener::bind((server_settings.host.as_str(), metrics_port))
                    .with_context(|| {
                        format!(
                            "cannot listen on {}:{metrics_port} (server.host, server.metrics_port)",
                            server_settings.host
                        )
                    })?;
                let bound = listener.local_addr()?.port();
                let state = state.clone();
                let server = HttpServer::new(move || {
                    App::new()
                        .wrap(from_fn(track_answers))
                        .app_data(state.clone())
                        .configure(crate::routes::configure_metrics_port)
                })
                .workers(1)
                .on_connect(watch_connections(timeouts.patience()))
                .client_request_timeout(timeouts.request_head)
                .client_disconnect_timeout(timeouts.disconnect)
                .keep_alive(keep_alive(timeouts))
                .listen(listener)?
                .shutdown_timeout(1)
                .disable_signals()
                .run();
                tracing::info!(
                    port = bound,
                    "metrics on GET /metrics (server.metrics_port)"
                );
                Some((bound, server))
            }
            None => None,
        };
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(track_answers))
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .configure(crate::routes::configure)
        })
        // Slow clients: actix times a connection's first head, `VerifiedWebhook` a webhook's
        // body, and each connection's watchdog (routes::connection) the rest.
        .on_connect(watch_connections(timeouts.patience()))
        .client_request_timeout(timeouts.request_head)
        .client_disconnect_timeout(timeouts.disconnect)
        .keep_alive(keep_alive(timeouts))
        .listen(listener)?
        .shutdown_timeout(shutdown_budget.as_secs())
        // actix treats SIGINT (Fly's default kill signal) as a forced stop that drops
        // in-flight webhooks; `run_until_stopped` handles both signals gracefully instead.
        .disable_signals()
        .run();

        if let Some(within) = settings.routing.known_agent_within {
            if within > settings.store.retention {
                tracing::warn!(
                    known_agent_within = %humantime::format_duration(within),
                    retention_days = settings.store.retention.as_secs() / 86_400,
                    "routing.known_agent_within is longer than store.retention_days, after which the store forgets who handled a customer: a customer's agent is known only that long"
                );
            }
        }
        if settings.is_dry_run() {
            tracing::warn!(
                "DRY-RUN MODE: no twilio.account_sid, so no Twilio API is called; signatures are checked with the development token, and each interaction is logged instead of created"
            );
        }
        let paths: Vec<&str> = WebhookRoute::ALL.iter().map(|r| r.path()).collect();
        tracing::info!(
            port,
            accounts = %settings.accounts.names().join(" "),
            store = %settings.store.url,
            public_base_url = public_base_url.as_deref().unwrap_or("(rebuilt from each request)"),
            webhooks = %paths.join(" "),
            "flexhook listening"
        );
        Ok(Self {
            port,
            server,
            metrics_server,
            worker,
            reconcile: reconcilers,
            writer: writer_task,
            store,
            shutdown_budget,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of `server.metrics_port`'s server (the bound one when it was 0).
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(port, _)| *port)
    }

    /// Stops the HTTP server (gracefully) from elsewhere, e.g. a test.
    pub fn server_handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM or SIGINT (both graceful) or [`ServerHandle::stop`]; then lets
    /// in-flight webhooks finish, gives the worker what is left of
    /// `server.shutdown_timeout_secs` to finish its jobs, drains the writer and closes the
    /// store. The whole stop fits in that one budget, which fly.toml's `kill_timeout` exceeds.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let mut server = self.server;
        // The metrics port serves until the webhooks have stopped, so a scrape sees the end.
        let metrics_server = self.metrics_server.map(|(_, s)| {
            let handle = s.handle();
            (handle, tokio::spawn(s))
        });
        let (served, stopping) = tokio::select! {
            served = &mut server => (served, Instant::now()),
            signal = shutdown_signal() => {
                let stopping = Instant::now();
                tracing::info!(
                    signal,
                    budget_secs = self.shutdown_budget.as_secs(),
                    "shutting down gracefully"
                );
                let ((), served) = tokio::join!(handle.stop(true), &mut server);
                (served, stopping)
            }
        };
        tracing::info!("HTTP server stopped; stopping the worker");
        if let Some((handle, served)) = metrics_server {
            handle.stop(true).await;
            let _ = served.await;
        }
        for reconcile in self.reconcile {
            reconcile.stop().await;
        }
        self.worker
            .stop(self.shutdown_budget.saturating_sub(stopping.elapsed()))
            .await;
        // Every webhook has had its answer, so nothing waits on the writer any more.
        self.writer.abort();
        self.store.close().await;
        served.context("HTTP server failed")
    }
}

/// Known agents remembered before accounts were kept belong to the deployment's one
/// account; with several, which one is unknown, and they are left to expire.
async fn adopt_known_agents(store: &Store, settings: &ValidSettings) {
    if settings.accounts.len() != 1 {
        return;
    }
    let Some(sid) = &settings.accounts.first().twilio.account_sid else {
        return;
    };
    match store.adopt_agents(sid).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            customers = n,
            "known agents of earlier versions kept for the account"
        ),
        Err(e) => tracing::warn!(error = %e, "could not keep the known agents of earlier versions"),
    }
}

fn keep_alive(timeouts: ClientTimeouts) -> KeepAlive {
    timeouts
        .keep_alive
        .map_or(KeepAlive::Disabled, KeepAlive::Timeout)
}

/// The first SIGTERM or SIGINT, by name.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    async fn one(kind: SignalKind, name: &'static str) -> &'static str {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
                name
            }
            Err(e) => {
                tracing::error!(error = %e, signal = name, "cannot listen for a shutdown signal");
                std::future::pending().await
            }
        }
    }
    tokio::select! {
        name = one(SignalKind::terminate(), "SIGTERM") => name,
        name = one(SignalKind::interrupt(), "SIGINT") => name,
    }
}
