//! `cargo bench --bench webhook_throughput`: how many signed `onMessageAdded` webhooks
//! flexhook acknowledges per second, in process, over real TCP.
//!
//! * first-message path: every request is a new conversation, so each 200 waits for its job
//!   to be committed (WAL, `synchronous=FULL`, group commit). Requirement: 10,000 req/s on
//!   2 cores.
//! * hot path: later messages of known conversations, answered from memory. Requirement: no
//!   disk at all (checked with `/proc/self/io` and the database files' sizes and times).
//! * hot path against a bare actix-web handler (one route at the same path that reads the
//!   body and answers 200): both run as processes of their own, `flexhook serve` (the real
//!   binary, logging as in production: JSON at `info`) and this bench's own
//!   `--bare-actix-server`, each with actix's default worker count (one per core), and take
//!   turns (bare, flexhook, flexhook, bare, …) on the same pre-signed requests and
//!   connections. Targets: throughput at least 0.8 of the bare handler's (the median of the
//!   turn-by-turn ratios, each turn against the other's beside it), p99 at most 1.5×
//!   its p99, flexhook's peak RSS (its own process's VmHWM) under 30 MB.
//! * the same, while a reconciliation sweep runs: `flexhook serve` live against a Twilio
//!   stand-in (threads of this bench) whose conversation list is long and slow, sweeping from
//!   start-up; every flexhook turn must overlap the sweep's requests. Target: the same ratio.
//!
//! Every request is signed and serialized before the clock starts; the load generator is
//! raw HTTP/1.1 over keep-alive connections on a thread of its own, so that the cores mostly
//! serve (its share of the CPU is printed). Any answer other than 200 fails the run, and
//! afterwards the store must hold exactly the conversations that were sent.
//!
//! Knobs (environment): `FLEXHOOK_BENCH_N` (first-message requests per run, default 50000;
//! 0 skips that path),
//! `FLEXHOOK_BENCH_C` (its connection counts, default `64,256`), `FLEXHOOK_BENCH_POSTGRES_URL`
//! (a PostgreSQL server to run the first-message path on as well, in a fresh database;
//! target 5,000 req/s at p99 under 30 ms), `FLEXHOOK_BENCH_HOT_N`
//! (hot-path requests per run, default 50000; 0 skips it), `FLEXHOOK_BENCH_ROUNDS` (turns
//! each of the bare handler and flexhook take, default 9), `FLEXHOOK_BENCH_DIR` (where
//! the databases go, default the system temp dir), `FLEXHOOK_BENCH_LOG` (a log filter, e.g.
//! `info`, to include logging's cost in the in-process runs, whose logs go to stderr; it is
//! also the `flexhook serve` process's filter, default `info`), `FLEXHOOK_BENCH_SERVE_BIN` (the
//! flexhook binary to compare with the bare handler, e.g. a build of another commit; default
//! the one cargo built with this bench), `FLEXHOOK_BENCH_SWEEP_PAGES` (pages of 100
//! conversations the sweep reads, default 400). Run without `--bench` (as
//! `cargo test --benches` does) it is a quick smoke run, which judges no target.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use flexhook::config::{LoadOptions, LogSettings, Settings};
use flexhook::signature::{compute_signature, Algorithm, SIGNATURE_HEADER};
use flexhook::startup::Application;
use flexhook::store::{JobState, Store, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `twilio.auth_token` of config/local.toml.
const DEV_TOKEN: &str = "local-development-token-not-secret";
/// The live flexhook's (a live account refuses the development token).
const LIVE_TOKEN: &str = "bench-auth-token-not-secret";
/// The live flexhook's `server.public_base_url`, which its webhooks are signed for.
const LIVE_BASE_URL: &str = "https://flexhook.bench.example";
const WEBHOOK_PATH: &str = "/webhooks/conversations";
const TARGET_RPS: f64 = 10_000.0;
/// The PostgreSQL first-message path's target at 64 connections.
const TARGET_RPS_POSTGRES: f64 = 5_000.0;
/// The highest VmHWM seen before each reset of it.
static PEAK_RSS_KB: AtomicU64 = AtomicU64::new(0);
/// `/proc` reports CPU time in USER_HZ ticks, which Linux fixes at 100 per second.
const TICKS_PER_SECOND: f64 = 100.0;
/// Run with this argument, the bench binary is the bare actix-web baseline server.
const BARE_SERVER_ARG: &str = "--bare-actix-server";
/// The hot path against the bare handler: throughput ratio, p99 ratio, peak RSS.
const TARGET_RATIO: f64 = 0.8;
const TARGET_P99_RATIO: f64 = 1.5;
const TARGET_RSS_MB: f64 = 30.0;

struct Plan {
    /// `cargo bench`, as opposed to the quick smoke run of `cargo test --benches`.
    full: bool,
    /// New conversations sent (and not measured) before each first-message run.
    warmup: usize,
    first_n: usize,
    first_concurrency: Vec<usize>,
    hot_conversations: usize,
    hot_n: usize,
    hot_concurrency: usize,
    /// Turns each of the bare handler and flexhook take in the comparison.
    rounds: usize,
}

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name}=`{v}` is not a number")),
        Err(_) => Ok(default),
    }
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == BARE_SERVER_ARG) {
        return bare_server();
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then only a smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let plan = if full {
        Plan {
            full,
            warmup: 1_000,
            first_n: env_usize("FLEXHOOK_BENCH_N", 50_000)?,
            first_concurrency: match std::env::var("FLEXHOOK_BENCH_C") {
                Ok(list) => list
                    .split(',')
                    .map(|c| c.trim().parse().context("FLEXHOOK_BENCH_C: e.g. `64,256`"))
                    .collect::<Result<_>>()?,
                Err(_) => vec![64, 256],
            },
            hot_conversations: 100,
            hot_n: env_usize("FLEXHOOK_BENCH_HOT_N", 50_000)?,
            hot_concurrency: 64,
            rounds: env_usize("FLEXHOOK_BENCH_ROUNDS", 9)?.max(1),
        }
    } else {
        Plan {
            full,
            warmup: 50,
            first_n: 500,
            first_concurrency: vec![16],
            hot_conversations: 10,
            hot_n: 1_000,
            hot_concurrency: 16,
            rounds: 1,
        }
    };
    if let Ok(filter) = std::env::var("FLEXHOOK_BENCH_LOG") {
        flexhook::telemetry::init(&LogSettings {
            format: "pretty".into(),
            filter,
            show_addresses: false,
        });
    }
    // The service's runtime, as `flexhook serve` builds it (#[tokio::main]: one worker per core).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&plan))
}

async fn run(plan: &Plan) -> Result<()> {
    let base = match std::env::var_os("FLEXHOOK_BENCH_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir(),
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "webhook_throughput: {cores} cores available, databases under {}",
        base.display()
    );
    let probe = tempfile::tempdir_in(&base)?;
    let (fdatasync, fsync) = fsync_cost(probe.path(), 200)?;
    println!(
        "fsync context: 4 KiB append + fdatasync {:.3}ms, + fsync {:.3}ms (mean of 200 each, on the databases' filesystem)",
        ms(fdatasync),
        ms(fsync)
    );
    drop(probe);

    // Stores are checked after every run, so that reading them back does not weigh on the
    // memory figures of the runs.
    let mut checks = Vec::new();
    for &c in plan.first_concurrency.iter().filter(|_| plan.first_n > 0) {
        checks.push(first_message_scenario(&base, plan, c, None).await?);
    }
    match std::env::var("FLEXHOOK_BENCH_POSTGRES_URL") {
        Ok(_) if plan.first_n == 0 => {}
        Ok(server) => {
            for &c in &plan.first_concurrency {
                checks.push(first_message_scenario(&base, plan, c, Some(&server)).await?);
            }
        }
        Err(_) => println!(
            "first-message path on PostgreSQL: skipped (set FLEXHOOK_BENCH_POSTGRES_URL to a server flexhook may create databases on)"
        ),
    }
    if plan.hot_n > 0 {
        checks.push(hot_path_scenario(&base, plan).await?);
        checks.push(bare_comparison_scenario(&base, plan).await?);
        checks.push(sweep_comparison_scenario(&base, plan).await?);
    }
    for check in checks {
        check.verify().await?;
    }

    let status = proc_status()?;
    let peak_kb = PEAK_RSS_KB
        .load(Ordering::Relaxed)
        .max(status.get("VmHWM").copied().unwrap_or(0));
    println!(
        "peak RSS (VmHWM) of this bench process {:.1} MB over the whole run (in-process service, load generator, pre-built requests, verification); RSS now {:.1} MB",
        mb(peak_kb),
        mb(status.get("VmRSS").copied().unwrap_or(0))
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Scenarios

async fn first_message_scenario(
    base: &Path,
    plan: &Plan,
    connections: usize,
    postgres: Option<&str>,
) -> Result<StoreCheck> {
    let (label, target_rps) = match postgres {
        None => ("first-message path", TARGET_RPS),
        Some(_) => ("first-message path on PostgreSQL", TARGET_RPS_POSTGRES),
    };
    let dir = tempfile::tempdir_in(base)?;
    let mut service = match postgres {
        None => Service::start(dir.path(), &[]).await?,
        Some(server) => Service::start_postgres(server).await?,
    };
    let warmup: Vec<String> = (0..plan.warmup).map(|_| random_sid("CH")).collect();
    let measured: Vec<String> = (0..plan.first_n).map(|_| random_sid("CH")).collect();
    let build = |conversations: &[String]| -> Vec<Vec<u8>> {
        conversations
            .iter()
            .enumerate()
            .map(|(i, ch)| service.webhook(ch, &random_sid("IM"), 0, i))
            .collect()
    };
    let warmup_requests = build(&warmup);
    let requests = build(&measured);

    load(service.port, warmup_requests, connections)
        .await?
        .expect_all_ok("first-message path (warm-up)", plan.warmup, connections);
    let result = load(service.port, requests, connections).await?;
    result.report(label, plan.first_n, connections);
    let durable = match postgres {
        None => "synchronous=FULL",
        Some(_) => "synchronous_commit=on, p99 under 30 ms",
    };
    let met = result.rps() >= target_rps
        && (postgres.is_none() || result.p99() <= Duration::from_millis(30));
    println!(
        "  target {target_rps:.0} req/s with {durable}: {}",
        match (plan.full, met) {
            (false, _) => "not judged (smoke run, e.g. a debug build: use `cargo bench`)",
            (true, true) => "met",
            (true, false) => "NOT met",
        }
    );
    result.expect_all_ok(label, plan.first_n, connections);
    service.stop().await?;

    Ok(StoreCheck {
        label: format!("{label} C={connections}"),
        store_url: service.store_url.clone(),
        expected: warmup.into_iter().chain(measured).collect(),
        _dir: dir,
    })
}

async fn hot_path_scenario(base: &Path, plan: &Plan) -> Result<StoreCheck> {
    let dir = tempfile::tempdir_in(base)?;
    // The fastest allowed pace, so that the worker is done with the seed jobs sooner.
    let mut service = Service::start(dir.path(), &[("flex.max_creates_per_second", "20")]).await?;
    let n = plan.hot_conversations;
    let conversations: Vec<String> = (0..n).map(|_| random_sid("CH")).collect();
    let seed: Vec<Vec<u8>> = conversations
        .iter()
        .enumerate()
        .map(|(i, ch)| service.webhook(ch, &random_sid("IM"), 0, i))
        .collect();
    let requests: Vec<Vec<u8>> = (0..plan.hot_n)
        .map(|i| service.webhook(&conversations[i % n], &random_sid("IM"), 1 + i / n, i % n))
        .collect();

    load(service.port, seed, plan.hot_concurrency.min(n))
        .await?
        .expect_all_ok("hot path (first messages)", n, plan.hot_concurrency.min(n));
    // Let the worker finish the seed jobs (in dry-run it only records them), so that its
    // writes are not counted as the hot path's.
    let settle = Instant::now();
    wait_until_no_pending(&service.store_url, Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let files_before = db_files(&service.db_path);
    let io_before = proc_io()?;

    let result = load(service.port, requests, plan.hot_concurrency).await?;

    let io_after = proc_io()?;
    let files_after = db_files(&service.db_path);
    result.report("hot path", plan.hot_n, plan.hot_concurrency);
    result.expect_all_ok("hot path", plan.hot_n, plan.hot_concurrency);
    let delta = |k: &str| {
        io_after
            .get(k)
            .copied()
            .unwrap_or(0)
            .saturating_sub(io_before.get(k).copied().unwrap_or(0))
    };
    println!(
        "  {n} conversations known (worker idle after {:.1}s); during the run: storage read_bytes +{}, write_bytes +{}, database files {}",
        settle.elapsed().as_secs_f64(),
        delta("read_bytes"),
        delta("write_bytes"),
        if files_before == files_after {
            "unchanged (size, mtime of db, -wal, -shm)"
        } else {
            "CHANGED"
        }
    );
    ensure!(
        files_before == files_after,
        "the hot path touched the database: before {files_before:?}, after {files_after:?}"
    );
    ensure!(
        delta("write_bytes") == 0,
        "the hot path wrote {} bytes to storage",
        delta("write_bytes")
    );
    service.stop().await?;
    Ok(StoreCheck {
        label: "hot path".into(),
        store_url: service.store_url.clone(),
        expected: conversations.into_iter().collect(),
        _dir: dir,
    })
}

/// The hot path of `flexhook serve` against a bare actix-web handler, each in a process of
/// its own (so that each one's peak RSS is its own), taking turns on the same requests.
async fn bare_comparison_scenario(base: &Path, plan: &Plan) -> Result<StoreCheck> {
    let dir = tempfile::tempdir_in(base)?;
    let store_url = format!("sqlite://{}", dir.path().join("serve.db").display());
    let log_filter = std::env::var("FLEXHOOK_BENCH_LOG").unwrap_or_else(|_| "info".into());
    let flexhook = ChildServer::flexhook(&store_url, &log_filter)?;
    let signer = Signer::local(flexhook.port);
    let conversations = take_turns(plan, flexhook, &store_url, &signer, None).await?;
    Ok(StoreCheck {
        label: "flexhook serve".into(),
        store_url,
        expected: conversations.into_iter().collect(),
        _dir: dir,
    })
}

/// The same comparison while a reconciliation sweep runs in `flexhook serve` (live against
/// a Twilio stand-in whose conversation list is long, each answer a little late): the sweep
/// must not slow the hot path. Every flexhook turn must see the sweep's requests go on.
async fn sweep_comparison_scenario(base: &Path, plan: &Plan) -> Result<StoreCheck> {
    let pages = env_usize(
        "FLEXHOOK_BENCH_SWEEP_PAGES",
        if plan.full { 400 } else { 5 },
    )?;
    let twilio = TwilioStandIn::start(pages, Duration::from_millis(2))?;
    let dir = tempfile::tempdir_in(base)?;
    let store_url = format!("sqlite://{}", dir.path().join("sweep.db").display());
    let log_filter = std::env::var("FLEXHOOK_BENCH_LOG").unwrap_or_else(|_| "info".into());
    let flexhook = ChildServer::flexhook_sweeping(&store_url, &log_filter, &twilio.url)?;
    let signer = Signer::live(flexhook.port);
    println!(
        "while a reconciliation sweep runs: {pages} pages of 100 conversations, each answer 2 ms late, each conversation's webhooks read one by one"
    );
    let conversations = take_turns(plan, flexhook, &store_url, &signer, Some(&twilio)).await?;
    println!(
        "  the sweep's requests served in all: {}",
        twilio.requests()
    );
    Ok(StoreCheck {
        label: "flexhook serve while sweeping".into(),
        store_url,
        expected: conversations.into_iter().collect(),
        _dir: dir,
    })
}

/// Seeds `flexhook`'s conversations, then lets it and a bare handler take turns on their
/// later messages, and judges the targets; stops it and returns the conversations. With
/// `sweeping`, each flexhook turn must overlap the sweep's requests.
async fn take_turns(
    plan: &Plan,
    mut flexhook: ChildServer,
    store_url: &str,
    signer: &Signer,
    sweeping: Option<&TwilioStandIn>,
) -> Result<Vec<String>> {
    let bare = ChildServer::bare()?;
    let n = plan.hot_conversations;
    let conversations: Vec<String> = (0..n).map(|_| random_sid("CH")).collect();
    let seed: Vec<Vec<u8>> = conversations
        .iter()
        .enumerate()
        .map(|(i, ch)| signed_webhook_for(signer, ch, &random_sid("IM"), 0, i))
        .collect();
    // The same bytes go to both: the bare handler reads the body and checks nothing.
    let requests: Arc<[Vec<u8>]> = (0..plan.hot_n)
        .map(|i| {
            let ch = &conversations[i % n];
            signed_webhook_for(signer, ch, &random_sid("IM"), 1 + i / n, i % n)
        })
        .collect::<Vec<_>>()
        .into();
    let c = plan.hot_concurrency;
    load(flexhook.port, seed, c.min(n)).await?.expect_all_ok(
        "flexhook serve (first messages)",
        n,
        c.min(n),
    );
    wait_until_no_pending(store_url, Duration::from_secs(30)).await?;

    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!(
        "hot path against a bare actix-web handler (POST {WEBHOOK_PATH}: read the body, 200), each a process of its own with actix's default {workers} workers: N={} C={c} per turn, turns each: {}",
        plan.hot_n, plan.rounds
    );
    // [bare, flexhook]; the order alternates so that neither always runs first.
    let servers = [&bare, &flexhook];
    let mut turns: [Vec<Turn>; 2] = Default::default();
    for round in 0..plan.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let server = servers[which];
            if plan.full {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let swept_before = sweeping.map(TwilioStandIn::requests);
            let cpu_before = server.cpu_ticks()?;
            let result = load(server.port, requests.clone(), c).await?;
            let cpu_ticks = server.cpu_ticks()?.saturating_sub(cpu_before);
            result.expect_all_ok(server.name, plan.hot_n, c);
            let turn = Turn {
                rps: result.rps(),
                p50: result.percentile(500),
                p99: result.percentile(990),
                cpu_us: cpu_ticks as f64 / TICKS_PER_SECOND * 1e6 / plan.hot_n as f64,
            };
            let swept = match (sweeping, swept_before) {
                (Some(twilio), Some(before)) => {
                    let during = twilio.requests() - before;
                    ensure!(
                        which == 0 || during > 0,
                        "the sweep was over before flexhook's turn {}: raise FLEXHOOK_BENCH_SWEEP_PAGES",
                        round + 1
                    );
                    format!(", sweep requests meanwhile {during}")
                }
                _ => String::new(),
            };
            println!("  turn {}: {:<13} {turn}{swept}", round + 1, server.name);
            turns[which].push(turn);
        }
    }
    let [bare_turns, flexhook_turns] = &turns;
    let bare_m = Turn::median(bare_turns);
    let flexhook_m = Turn::median(flexhook_turns);
    // Each turn's ratio is against the bare handler's turn beside it, so a drift in the
    // machine's speed (a third within minutes on a shared VM) touches both sides of it alike:
    // their median is the figure judged. The ratio of the two medians mixes turns run
    // minutes apart, and is shown for comparison.
    let turn_ratios: Vec<f64> = bare_turns
        .iter()
        .zip(flexhook_turns)
        .map(|(b, f)| f.rps / b.rps)
        .collect();
    let spread = Spread::of(&turn_ratios);
    let ratio = spread.median;
    let ratio_of_medians = flexhook_m.rps / bare_m.rps;
    let p99_ratio = flexhook_m.p99.as_secs_f64() / bare_m.p99.as_secs_f64().max(1e-6);
    let shown: Vec<String> = turn_ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!("  median: {:<13} {bare_m}", bare.name);
    println!("  median: {:<13} {flexhook_m}", flexhook.name);
    println!(
        "  flexhook / bare: throughput {ratio:.2}, the median of the turn-by-turn ratios (middle half {:.2}–{:.2}; turn by turn {}; ratio of the medians {ratio_of_medians:.2}), p99 {p99_ratio:.2}x",
        spread.lower_quartile,
        spread.upper_quartile,
        shown.join(" ")
    );
    let flexhook_kb = flexhook.status()?.get("VmHWM").copied().unwrap_or(0);
    let bare_kb = bare.status()?.get("VmHWM").copied().unwrap_or(0);
    println!(
        "  peak RSS (VmHWM of each server's own process, from start through every turn): {} {:.1} MB, {} {:.1} MB",
        flexhook.name,
        mb(flexhook_kb),
        bare.name,
        mb(bare_kb)
    );
    let judge = |met: bool| match (plan.full, met) {
        (false, _) => "not judged (smoke run)",
        (true, true) => "met",
        (true, false) => "NOT met",
    };
    println!(
        "  targets: throughput ≥ {TARGET_RATIO} of bare: {}; p99 ≤ {TARGET_P99_RATIO}x bare: {}; peak RSS < {TARGET_RSS_MB} MB: {}",
        judge(ratio >= TARGET_RATIO),
        judge(p99_ratio <= TARGET_P99_RATIO),
        judge(mb(flexhook_kb) < TARGET_RSS_MB)
    );
    drop(bare);
    flexhook.stop()?;
    Ok(conversations)
}

/// The median and quartiles of some figures (each the nearest figure, no interpolation).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Spread {
    lower_quartile: f64,
    median: f64,
    upper_quartile: f64,
}

impl Spread {
    fn of(figures: &[f64]) -> Spread {
        let mut sorted = figures.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |q: usize| sorted.get(sorted.len().saturating_sub(1) * q / 4).copied();
        Spread {
            lower_quartile: at(1).unwrap_or(f64::NAN),
            median: at(2).unwrap_or(f64::NAN),
            upper_quartile: at(3).unwrap_or(f64::NAN),
        }
    }
}

/// One server's turn in the comparison.
#[derive(Debug, Clone, Copy, Default)]
struct Turn {
    rps: f64,
    p50: Duration,
    p99: Duration,
    /// The server process's CPU time per request.
    cpu_us: f64,
}

impl Turn {
    /// The median of each figure on its own.
    fn median(turns: &[Turn]) -> Turn {
        fn mid<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
            v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
            v[v.len() / 2]
        }
        Turn {
            rps: mid(turns.iter().map(|t| t.rps).collect()),
            p50: mid(turns.iter().map(|t| t.p50).collect()),
            p99: mid(turns.iter().map(|t| t.p99).collect()),
            cpu_us: mid(turns.iter().map(|t| t.cpu_us).collect()),
        }
    }
}

impl std::fmt::Display for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>7.0} req/s  p50={:.2}ms p99={:.2}ms  server CPU {:.1} µs/request",
            self.rps,
            ms(self.p50),
            ms(self.p99),
            self.cpu_us
        )
    }
}

/// What a run's store must hold afterwards: one job for each conversation sent, no more.
struct StoreCheck {
    label: String,
    store_url: String,
    expected: HashSet<String>,
    _dir: tempfile::TempDir,
}

impl StoreCheck {
    async fn verify(self) -> Result<()> {
        let stored = stored_conversations(&self.store_url, None).await?;
        let missing = self.expected.difference(&stored).count();
        let extra = stored.difference(&self.expected).count();
        ensure!(
            missing == 0 && extra == 0,
            "{}: the store holds {} jobs for {} conversations sent: {missing} acknowledged conversations have no job, {extra} jobs were not expected",
            self.label,
            stored.len(),
            self.expected.len()
        );
        println!(
            "store check, {}: {} jobs, exactly one per conversation sent",
            self.label,
            stored.len()
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The service under test

struct Service {
    port: u16,
    handle: actix_web::dev::ServerHandle,
    join: tokio::task::JoinHandle<Result<()>>,
    store_url: String,
    db_path: PathBuf,
}

impl Service {
    async fn start(dir: &Path, extra: &[(&str, &str)]) -> Result<Self> {
        let db_path = dir.join("bench.db");
        let store_url = format!("sqlite://{}", db_path.display());
        Self::start_on(store_url, db_path, extra).await
    }

    /// On PostgreSQL: a fresh database on the server `server_url` names.
    async fn start_postgres(server_url: &str) -> Result<Self> {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(server_url)
            .await
            .context("FLEXHOOK_BENCH_POSTGRES_URL does not connect")?;
        let name = format!("flexhook_bench_{:016x}", rand::random::<u64>());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let mut url = url::Url::parse(server_url)?;
        url.set_path(&name);
        Self::start_on(url.to_string(), PathBuf::new(), &[]).await
    }

    async fn start_on(store_url: String, db_path: PathBuf, extra: &[(&str, &str)]) -> Result<Self> {
        let mut overrides: Vec<(String, String)> = vec![
            ("server.host".into(), "127.0.0.1".into()),
            ("server.port".into(), "0".into()),
            ("store.url".into(), store_url.clone()),
            ("log.filter".into(), "warn".into()),
        ];
        overrides.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = Settings::load(&LoadOptions {
            environment: Some("local".into()),
            config_dir: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/config").into()),
            read_env: false,
            overrides,
            ..Default::default()
        })?
        .validate()?;
        ensure!(settings.is_dry_run(), "the bench must run in dry-run mode");
        let app = Application::build(settings).await?;
        let port = app.port();
        let handle = app.server_handle();
        let join = tokio::spawn(app.run_until_stopped());
        Ok(Self {
            port,
            handle,
            join,
            store_url,
            db_path,
        })
    }

    /// Stops the server gracefully and waits until the worker, writer and store are closed.
    async fn stop(&mut self) -> Result<()> {
        self.handle.stop(true).await;
        (&mut self.join)
            .await
            .context("the service task panicked")??;
        Ok(())
    }

    fn webhook(&self, conversation: &str, message: &str, index: usize, n: usize) -> Vec<u8> {
        signed_webhook(self.port, conversation, message, index, n)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.join.abort();
    }
}

/// A signed `onMessageAdded` to the service on `port`, as raw HTTP/1.1 bytes.
fn signed_webhook(port: u16, conversation: &str, message: &str, index: usize, n: usize) -> Vec<u8> {
    signed_webhook_for(&Signer::local(port), conversation, message, index, n)
}

/// Who a webhook is signed for: the URL Twilio called, the token, and the account.
struct Signer {
    port: u16,
    url: String,
    token: &'static str,
}

impl Signer {
    /// flexhook on `port`, in dry-run, as the request itself says (no public_base_url).
    fn local(port: u16) -> Self {
        Self {
            port,
            url: format!("http://127.0.0.1:{port}{WEBHOOK_PATH}"),
            token: DEV_TOKEN,
        }
    }

    /// The live flexhook of [`ChildServer::flexhook_sweeping`].
    fn live(port: u16) -> Self {
        Self {
            port,
            url: format!("{LIVE_BASE_URL}{WEBHOOK_PATH}"),
            token: LIVE_TOKEN,
        }
    }
}

fn signed_webhook_for(
    signer: &Signer,
    conversation: &str,
    message: &str,
    index: usize,
    n: usize,
) -> Vec<u8> {
    let host = format!("127.0.0.1:{}", signer.port);
    let url = &signer.url;
    let author = format!("+1555{:07}", n % 10_000_000);
    let params: Vec<(String, String)> = [
        ("EventType", "onMessageAdded".to_owned()),
        ("AccountSid", format!("AC{}", "0".repeat(32))),
        ("ConversationSid", conversation.to_owned()),
        ("ChatServiceSid", format!("IS{}", "1".repeat(32))),
        ("MessageSid", message.to_owned()),
        ("ParticipantSid", format!("MB{n:032x}")),
        ("WebhookSid", format!("WH{}", "5".repeat(32))),
        ("Author", author.clone()),
        ("Body", format!("Hello, I need help with order {n}")),
        ("Attributes", "{}".to_owned()),
        ("Index", index.to_string()),
        ("Source", "SMS".to_owned()),
        ("RetryCount", "0".to_owned()),
        ("DateCreated", "2025-01-01T12:00:00Z".to_owned()),
        ("MessagingBinding.Address", author),
        ("MessagingBinding.ProxyAddress", "+15550000000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let signature = compute_signature(signer.token.as_bytes(), Algorithm::HmacSha1, url, &params);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let mut request = Vec::with_capacity(body.len() + 400);
    write!(
        request,
        "POST {WEBHOOK_PATH} HTTP/1.1\r\n\
         Host: {host}\r\n\
         User-Agent: TwilioProxy/1.1\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         {SIGNATURE_HEADER}: {signature}\r\n\
         I-Twilio-Idempotency-Token: {message}-{index}\r\n\
         Content-Length: {}\r\n\
         \r\n\
         {body}",
        body.len()
    )
    .expect("writing to a Vec cannot fail");
    request
}

/// A server in a process of its own: `flexhook serve`, or the bare baseline.
struct ChildServer {
    name: &'static str,
    child: Child,
    port: u16,
    /// The last lines of its stderr, for the error when it fails.
    log: Arc<Mutex<VecDeque<String>>>,
}

impl ChildServer {
    /// The release binary, as deployed but in dry-run: JSON logs at `log_filter`, to a pipe
    /// this bench drains.
    fn flexhook(store_url: &str, log_filter: &str) -> Result<Self> {
        Self::flexhook_with(store_url, log_filter, &[])
    }

    /// Live against `twilio` (a [`TwilioStandIn`]), sweeping at start-up: a reconciliation
    /// sweep runs while the turns are taken.
    fn flexhook_sweeping(store_url: &str, log_filter: &str, twilio: &str) -> Result<Self> {
        Self::flexhook_with(
            store_url,
            log_filter,
            &[
                ("TWILIO_ACCOUNT_SID", &format!("AC{}", "0".repeat(32))),
                ("TWILIO_AUTH_TOKEN", LIVE_TOKEN),
                ("FLEXHOOK_SERVER__PUBLIC_BASE_URL", LIVE_BASE_URL),
                ("FLEXHOOK_TWILIO__FLEX_API_BASE_URL", twilio),
                ("FLEXHOOK_TWILIO__CONVERSATIONS_API_BASE_URL", twilio),
                ("FLEXHOOK_TWILIO__TASKROUTER_API_BASE_URL", twilio),
                ("FLEXHOOK_RECONCILE__INTERVAL", "30s"),
            ],
        )
    }

    fn flexhook_with(store_url: &str, log_filter: &str, extra: &[(&str, &str)]) -> Result<Self> {
        let bin = std::env::var_os("FLEXHOOK_BENCH_SERVE_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_flexhook").into());
        let mut child = Command::new(&bin)
            .arg("serve")
            .env_clear()
            .env("FLEXHOOK_ENV", "local")
            .env(
                "FLEXHOOK_CONFIG_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
            )
            .env("FLEXHOOK_SERVER__PORT", "0")
            .env("FLEXHOOK_STORE__URL", store_url)
            .env("FLEXHOOK_FLEX__MAX_CREATES_PER_SECOND", "20")
            .env("FLEXHOOK_LOG__FORMAT", "json")
            .env("FLEXHOOK_LOG__FILTER", log_filter)
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {} serve", Path::new(&bin).display()))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(|l| l.ok())
            {
                if let Some(port) = listening_port(&line) {
                    let _ = tx.send(port);
                }
                let mut kept = kept.lock().expect("log lock");
                if kept.len() == 50 {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        let mut server = Self {
            name: "flexhook serve",
            child,
            port: 0,
            log,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(port) => server.port = port,
            Err(_) => bail!("flexhook serve did not start: {}", server.log_tail()),
        }
        Ok(server)
    }

    /// This bench's own binary as the bare baseline ([`bare_server`]); it exits when its
    /// stdin closes, that is with this process.
    fn bare() -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg(BARE_SERVER_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the bare actix-web server")?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("no stdout pipe")?)
            .read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("the bare server said `{}`, not its port", line.trim()))?;
        Ok(Self {
            name: "bare actix-web",
            child,
            port,
            log: Arc::default(),
        })
    }

    fn proc_dir(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}", self.child.id()))
    }

    fn status(&self) -> Result<BTreeMap<String, u64>> {
        proc_status_at(&self.proc_dir())
    }

    /// CPU of the whole process so far.
    fn cpu_ticks(&self) -> Result<u64> {
        let stat = std::fs::read_to_string(self.proc_dir().join("stat"))?;
        stat_ticks(&stat).with_context(|| format!("{}: unreadable stat", self.name))
    }

    fn log_tail(&self) -> String {
        let kept = self.log.lock().expect("log lock");
        kept.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, as a platform stops it; it must exit 0 within its shutdown budget.
    fn stop(&mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status()?;
        ensure!(sent.success(), "kill -TERM {pid} failed");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "{} exited with {status}: {}",
                    self.name,
                    self.log_tail()
                );
                return Ok(());
            }
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "{} did not stop within 30s of SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in `flexhook serve`'s JSON line "flexhook listening".
fn listening_port(line: &str) -> Option<u16> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    let message = event.get("message")?.as_str()?;
    if !message.starts_with("flexhook listening") {
        return None;
    }
    u16::try_from(event.get("port")?.as_u64()?).ok()
}

/// The baseline (`--bare-actix-server`): actix-web with one route at the webhook's path that
/// reads the body (`web::Bytes`, as flexhook's extractor does) and answers 200, on a runtime
/// built as `flexhook serve` builds its own, with actix's default worker count as flexhook's
/// server has. Prints `port N`, then serves until its stdin closes.
fn bare_server() -> Result<()> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(|| {
            App::new().route(
                WEBHOOK_PATH,
                web::post().to(|body: web::Bytes| async move {
                    drop(body);
                    HttpResponse::Ok().finish()
                }),
            )
        })
        .listen(listener)?
        .disable_signals()
        .run();
        println!("port {port}");
        std::io::stdout().flush()?;
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
        server.await?;
        Ok(())
    })
}

/// `PREFIX` + 32 random hex digits, as Twilio's SIDs look (so the primary key's index is
/// written all over, not appended to).
fn random_sid(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

async fn stored_conversations(url: &str, state: Option<JobState>) -> Result<HashSet<String>> {
    let store = Store::open(
        &flexhook::domain::DatabaseUrl::new(url),
        &StoreOptions {
            busy_timeout: Duration::from_secs(5),
            clock: flexhook::clock::Clock::system(),
        },
    )
    .await?;
    let jobs = store.list(state, None, None, usize::MAX).await;
    store.close().await;
    Ok(jobs?
        .into_iter()
        .map(|j| j.conversation_sid.as_str().to_owned())
        .collect())
}

async fn wait_until_no_pending(url: &str, limit: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let pending = stored_conversations(url, Some(JobState::Pending))
            .await?
            .len();
        if pending == 0 {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("the worker still has {pending} pending jobs after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

type FileState = (String, Option<(u64, SystemTime)>);

/// Size and modification time of the database, its WAL and its shared-memory index.
fn db_files(db: &Path) -> Vec<FileState> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let path = format!("{}{suffix}", db.display());
            let meta = std::fs::metadata(&path)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)));
            (path, meta)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Load generator: raw HTTP/1.1, keep-alive, one request in flight per connection

#[derive(Default)]
struct LoadResult {
    elapsed: Duration,
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, usize>,
    first_failure: Option<String>,
    /// CPU ticks of the whole process during the run.
    process_ticks: u64,
    /// The load generator's thread during the run.
    client: ThreadTime,
    /// Per kind of thread (its name without numbers), e.g. the service's HTTP workers.
    threads: BTreeMap<String, ThreadTime>,
    request_bytes: usize,
    rss_before_kb: u64,
    peak_rss_kb: u64,
    /// Bytes the process caused to be written to storage during the run (`/proc/self/io`).
    storage_write_bytes: u64,
}

impl LoadResult {
    fn merge(&mut self, other: LoadResult) {
        self.latencies_us.extend(other.latencies_us);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }

    fn rps(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn p99(&self) -> Duration {
        self.percentile(990)
    }

    fn percentile(&self, per_mille: usize) -> Duration {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        match sorted.len() {
            0 => Duration::ZERO,
            len => Duration::from_micros(u64::from(sorted[(len - 1) * per_mille / 1000])),
        }
    }

    fn not_ok(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(s, _)| **s != 200)
            .map(|(_, n)| n)
            .sum()
    }

    fn report(&self, label: &str, n: usize, connections: usize) {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let pct = |per_mille: usize| match sorted.len() {
            0 => 0.0,
            len => f64::from(sorted[(len - 1) * per_mille / 1000]) / 1000.0,
        };
        println!(
            "{label}: N={n} C={connections}  {:.0} req/s  p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms  ({:.2}s{})",
            self.rps(),
            pct(500),
            pct(900),
            pct(990),
            pct(1000),
            self.elapsed.as_secs_f64(),
            match self.not_ok() {
                0 => String::new(),
                bad => format!(", {bad} NOT 200: {:?}", self.statuses),
            }
        );
        let secs = self.elapsed.as_secs_f64();
        let cores = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / secs;
        let client_ticks = self.client.cpu_ns as f64 * TICKS_PER_SECOND / 1e9;
        let service = (self.process_ticks as f64 - client_ticks).max(0.0);
        let share = |ns: u64| ns as f64 / 1e9 / secs;
        let threads: Vec<String> = self
            .threads
            .iter()
            .filter(|(name, t)| t.cpu_ns > 0 && name.as_str() != "load-generator")
            .map(|(name, t)| format!("{name} {:.2}/{:.2}", share(t.cpu_ns), share(t.runqueue_ns)))
            .collect();
        println!(
            "  CPU: {:.2} cores busy: service {:.2} ({:.0} µs/request), load generator {:.2}",
            cores(self.process_ticks),
            service / TICKS_PER_SECOND / secs,
            service / TICKS_PER_SECOND * 1e6 / self.latencies_us.len().max(1) as f64,
            share(self.client.cpu_ns),
        );
        println!(
            "  threads (cores running/runnable but waiting for a core): {}",
            threads.join(", ")
        );
        println!(
            "  storage writes {:.1} MB ({:.1} KB/request); RSS {:.1} MB before the run (pre-built requests {:.1} MB), peak {:.1} MB during it",
            self.storage_write_bytes as f64 / 1e6,
            self.storage_write_bytes as f64 / 1e3 / self.latencies_us.len().max(1) as f64,
            mb(self.rss_before_kb),
            self.request_bytes as f64 / 1e6,
            mb(self.peak_rss_kb)
        );
    }

    /// Correctness first: a single answer other than 200 fails the bench.
    fn expect_all_ok(&self, label: &str, n: usize, connections: usize) {
        let answered = self.latencies_us.len();
        let bad = self.not_ok();
        if bad > 0 || answered != n {
            self.report(label, n, connections);
            panic!(
                "{label}: {bad} of {answered} answers were not 200 ({n} requests sent), statuses {:?}; first: {}",
                self.statuses,
                self.first_failure.as_deref().unwrap_or("-")
            );
        }
    }
}

/// Sends `requests` over `connections` connections (request i on connection i % C), on a
/// thread and runtime of its own, and times them from the first send to the last answer.
async fn load(
    port: u16,
    requests: impl Into<Arc<[Vec<u8>]>>,
    connections: usize,
) -> Result<LoadResult> {
    let requests: Arc<[Vec<u8>]> = requests.into();
    let connections = connections.clamp(1, requests.len().max(1));
    let request_bytes = requests.iter().map(Vec::len).sum();
    // Resets VmHWM to the current RSS (Linux ≥ 4.0), so the peak after the run is this run's;
    // the peak so far is kept for the whole-run figure.
    let status = proc_status()?;
    PEAK_RSS_KB.fetch_max(status.get("VmHWM").copied().unwrap_or(0), Ordering::Relaxed);
    let rss_before_kb = status.get("VmRSS").copied().unwrap_or(0);
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let threads_before = thread_times();
    let process_before = process_ticks()?;
    let written_before = proc_io()?.get("write_bytes").copied().unwrap_or(0);

    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("load-generator".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(drive(port, requests, connections)));
            let _ = tx.send(result);
        })?;
    let mut result = rx.await.context("the load generator died")??;

    result.process_ticks = process_ticks()?.saturating_sub(process_before);
    result.storage_write_bytes = proc_io()?
        .get("write_bytes")
        .copied()
        .unwrap_or(0)
        .saturating_sub(written_before);
    for (name, after) in thread_times() {
        let before = threads_before.get(&name).copied().unwrap_or_default();
        result.threads.insert(name, after.since(before));
    }
    result.request_bytes = request_bytes;
    result.rss_before_kb = rss_before_kb;
    result.peak_rss_kb = proc_status()?.get("VmHWM").copied().unwrap_or(0);
    Ok(result)
}

async fn drive(port: u16, requests: Arc<[Vec<u8>]>, connections: usize) -> Result<LoadResult> {
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    let cpu_before = own_thread_time();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, stream) in streams.into_iter().enumerate() {
        tasks.spawn(connection(stream, requests.clone(), i, connections));
    }
    let mut total = LoadResult::default();
    while let Some(done) = tasks.join_next().await {
        total.merge(done.context("a connection task panicked")??);
    }
    total.elapsed = started.elapsed();
    total.client = own_thread_time().since(cpu_before);
    Ok(total)
}

/// Requests `first`, `first + step`, … of `requests`, one after the other.
async fn connection(
    mut stream: TcpStream,
    requests: Arc<[Vec<u8>]>,
    first: usize,
    step: usize,
) -> Result<LoadResult> {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut out = LoadResult {
        latencies_us: Vec::with_capacity(requests.len() / step + 1),
        ..LoadResult::default()
    };
    for request in requests.iter().skip(first).step_by(step) {
        let sent = Instant::now();
        stream.write_all(request).await?;
        let (status, body) = read_response(&mut stream, &mut buf).await?;
        out.latencies_us
            .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
        *out.statuses.entry(status).or_default() += 1;
        if status != 200 && out.first_failure.is_none() {
            out.first_failure = Some(format!("{status} {}", String::from_utf8_lossy(&body)));
        }
    }
    Ok(out)
}

/// Reads one response: status line, headers up to the blank line, `Content-Length` bytes.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(u16, Vec<u8>)> {
    loop {
        if let Some((status, head_len, body_len)) = parse_head(buf)? {
            let total = head_len + body_len;
            while buf.len() < total {
                read_more(stream, buf).await?;
            }
            let body = buf[head_len..total].to_vec();
            buf.drain(..total);
            return Ok((status, body));
        }
        read_more(stream, buf).await?;
    }
}

/// `(status, head length including the blank line, body length)` once the head is complete.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line `{status_line}`"))?;
    let mut body_len = 0;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                body_len = value.trim().parse().context("bad Content-Length")?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("unexpected Transfer-Encoding: {}", value.trim());
            }
        }
    }
    Ok(Some((status, end + 4, body_len)))
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<()> {
    buf.reserve(4096);
    let n = stream.read_buf(buf).await?;
    ensure!(n > 0, "the server closed the connection");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Machine context

/// Mean cost of a 4 KiB append followed by fdatasync, then by fsync, on `dir`'s filesystem.
fn fsync_cost(dir: &Path, rounds: u32) -> Result<(Duration, Duration)> {
    let mut file = std::fs::File::create(dir.join("fsync-probe"))?;
    let page = [0u8; 4096];
    let started = Instant::now();
    for _ in 0..rounds {
        file.write_all(&page)?;
        file.sync_data()?;
    }
    let data = started.elapsed() / rounds;
    let started = Instant::now();
    for _ in 0..rounds {
        file.write_all(&page)?;
        file.sync_all()?;
    }
    Ok((data, started.elapsed() / rounds))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// `/proc/self/io`: bytes this process caused to be read from / written to storage.
fn proc_io() -> Result<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string("/proc/self/io").context("/proc/self/io")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().parse().ok()?))
        })
        .collect())
}

/// `/proc/self/status` sizes, in kB.
fn proc_status() -> Result<BTreeMap<String, u64>> {
    proc_status_at(Path::new("/proc/self"))
}

/// A process's `/proc/<pid>/status` sizes, in kB.
fn proc_status_at(dir: &Path) -> Result<BTreeMap<String, u64>> {
    let path = dir.join("status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let kb = v.trim().strip_suffix("kB")?.trim().parse().ok()?;
            Some((k.trim().to_owned(), kb))
        })
        .collect())
}

/// `utime + stime` from a `/proc/…/stat` line.
fn stat_ticks(stat: &str) -> Option<u64> {
    // After the name (which may hold spaces): state, ppid, …; utime and stime are fields 14
    // and 15 of the line.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU of the whole process, threads that have exited included.
fn process_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    stat_ticks(&stat).context("unreadable /proc/self/stat")
}

/// Time a thread (or a kind of threads) spent running, and runnable but waiting for a core.
#[derive(Debug, Default, Clone, Copy)]
struct ThreadTime {
    cpu_ns: u64,
    runqueue_ns: u64,
}

impl ThreadTime {
    fn since(self, before: ThreadTime) -> ThreadTime {
        ThreadTime {
            cpu_ns: self.cpu_ns.saturating_sub(before.cpu_ns),
            runqueue_ns: self.runqueue_ns.saturating_sub(before.runqueue_ns),
        }
    }
}

/// `…/schedstat`: nanoseconds on a CPU, nanoseconds waiting on a run queue, time slices.
fn schedstat(path: &Path) -> Option<ThreadTime> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some(ThreadTime {
        cpu_ns: fields.next()??,
        runqueue_ns: fields.next()??,
    })
}

fn own_thread_time() -> ThreadTime {
    schedstat(Path::new("/proc/thread-self/schedstat")).unwrap_or_default()
}

/// Per kind of live thread (digits dropped from the name, so that workers add up).
fn thread_times() -> BTreeMap<String, ThreadTime> {
    let mut out: BTreeMap<String, ThreadTime> = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let (Ok(name), Some(time)) = (
            std::fs::read_to_string(task.path().join("comm")),
            schedstat(&task.path().join("schedstat")),
        ) else {
            continue;
        };
        let kind: String = name
            .trim()
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect();
        let entry = out.entry(kind).or_default();
        entry.cpu_ns += time.cpu_ns;
        entry.runqueue_ns += time.runqueue_ns;
    }
    out
}

/// Twilio as a reconciliation sweep reads it, on threads of this process: `pages` pages of
/// 100 active conversations (none of them flexhook's: each has Studio's webhook, so the
/// sweep reads every one's webhooks and moves on), no task events, and each answer `delay`
/// late. It also accepts the seed conversations' creates and webhook removals.
struct TwilioStandIn {
    url: String,
    served: Arc<AtomicU64>,
}

impl TwilioStandIn {
    fn start(pages: usize, delay: Duration) -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let served = Arc::new(AtomicU64::new(0));
        let (base, count) = (url.clone(), served.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (base, count) = (base.clone(), count.clone());
                std::thread::spawn(move || serve_twilio(stream, &base, pages, delay, &count));
            }
        });
        Ok(Self { url, served })
    }

    /// GETs answered so far (the sweep's requests).
    fn requests(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

/// One keep-alive connection of the stand-in, until the client closes it.
fn serve_twilio(
    stream: std::net::TcpStream,
    base: &str,
    pages: usize,
    delay: Duration,
    served: &AtomicU64,
) {
    use std::io::Read;
    let mut reader = std::io::BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    loop {
        let mut head = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&line);
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut words = head.split_whitespace();
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        std::thread::sleep(delay);
        let (status, answer) = twilio_answer(method, target, base, pages);
        if method == "GET" {
            served.fetch_add(1, Ordering::Relaxed);
        }
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// The stand-in's answer to `method target`.
fn twilio_answer(method: &str, target: &str, base: &str, pages: usize) -> (&'static str, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let page: usize = query
        .split('&')
        .find_map(|p| p.strip_prefix("Page="))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let meta = |key: &str, next: Option<String>| serde_json::json!({"page": page, "page_size": 100, "key": key, "next_page_url": next});
    let ok = |v: serde_json::Value| ("200 OK", v.to_string());
    match (method, path) {
        ("GET", "/v1/Conversations") => {
            let conversations: Vec<serde_json::Value> = (0..100)
                .map(|i| {
                    serde_json::json!({"sid": format!("CH{page:016x}{i:016x}"),
                        "chat_service_sid": format!("IS{}", "1".repeat(32)),
                        "state": "active", "date_created": "2026-12-05T10:00:00Z"})
                })
                .collect();
            let next = (page + 1 < pages).then(|| {
                format!(
                    "{base}/v1/Conversations?State=active&PageSize=100&Page={}",
                    page + 1
                )
            });
            ok(
                serde_json::json!({"conversations": conversations, "meta": meta("conversations", next)}),
            )
        }
        ("GET", p) if p.ends_with("/Webhooks") => ok(serde_json::json!({
            "webhooks": [{"sid": format!("WH{}", "6".repeat(32)), "target": "studio",
                "configuration": {"flow_sid": format!("FW{}", "7".repeat(32))}}],
            "meta": meta("webhooks", None),
        })),
        ("GET", p) if p.ends_with("/Events") => {
            ok(serde_json::json!({"events": [], "meta": meta("events", None)}))
        }
        ("GET", p) if p.ends_with("/Tasks") => {
            ok(serde_json::json!({"tasks": [], "meta": meta("tasks", None)}))
        }
        ("POST", "/v1/Interactions") => ok(serde_json::json!({
            "sid": format!("KD{}", "8".repeat(32)),
            "channel": {"type": "sms", "sid": format!("UO{}", "8".repeat(32))},
            "routing": {"properties": {"sid": format!("WT{}", "8".repeat(32))}},
        })),
        ("DELETE", _) => ("204 No Content", String::new()),
        _ => (
            "404 Not Found",
            r#"{"code": 20404, "message": "The requested resource was not found", "status": 404}"#
                .into(),
        ),
    }
}
