//! The real binary: [`flexhook`] (a command with an empty environment), [`run`] to
//! completion, and [`Served`], a `flexhook serve` started on port 0 whose port is read from
//! its `flexhook listening … port=N` log line by [`listening_port`], the one parser of it.
//! Every wait is bounded by [`DEADLINE`].

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{ACCOUNT, PATH, TOKEN, WORKFLOW, WORKSPACE};

/// The longest any single wait on the binary may take before the test fails instead of
/// hanging.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The repository's `config/`.
pub const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config");

/// `flexhook ARGS` with an empty environment but `PATH` and `NO_COLOR=1`, and no stdin:
/// each test adds the variables it is about.
pub fn flexhook(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flexhook"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

/// `flexhook serve` as the tests that kill the real binary start it: the test account,
/// workspace and workflow, settings from `config_dir` (only the compiled-in defaults when it
/// holds none), `store`, `twilio` as the base URL of all three Twilio APIs, a quick worker
/// (3 s leases, retries after 50 to 500 ms, lookups 100 ms after an ambiguous failure,
/// polls every 100 ms), no sweeps, and a port of its own on 127.0.0.1.
pub fn serve_command(config_dir: &Path, store: &str, twilio: &str) -> Command {
    let mut command = flexhook(&["serve"]);
    command
        .env("FLEXHOOK_TWILIO__FLEX_API_BASE_URL", twilio)
        .env("FLEXHOOK_TWILIO__CONVERSATIONS_API_BASE_URL", twilio)
        .env("FLEXHOOK_TWILIO__TASKROUTER_API_BASE_URL", twilio)
        .env("FLEXHOOK_WORKER__LEASE_SECS", "3")
        .env("FLEXHOOK_WORKER__RETRY_BASE_MS", "50")
        .env("FLEXHOOK_WORKER__RETRY_CAP_MS", "500")
        .env("FLEXHOOK_WORKER__LOOKUP_DELAY_MS", "100")
        .env("FLEXHOOK_WORKER__POLL_INTERVAL_MS", "100")
        .env("FLEXHOOK_ENV", "test")
        .env("FLEXHOOK_CONFIG_DIR", config_dir)
        .env("FLEXHOOK_STORE__URL", store)
        .env("FLEXHOOK_SERVER__HOST", "127.0.0.1")
        .env("FLEXHOOK_SERVER__PORT", "0")
        .env("TWILIO_ACCOUNT_SID", ACCOUNT)
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("FLEXHOOK_FLEX__WORKSPACE_SID", WORKSPACE)
        .env("FLEXHOOK_FLEX__WORKFLOW_SID", WORKFLOW)
        .env("FLEXHOOK_RECONCILE__INTERVAL", "");
    command
}

/// A finished command.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

fn read_all(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs a command to completion, killing it (and failing the test) at the [`DEADLINE`].
pub fn run(mut command: Command) -> Run {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flexhook");
    let stdout = read_all(child.stdout.take().expect("piped stdout"));
    let stderr = read_all(child.stderr.take().expect("piped stderr"));
    let until = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for flexhook") {
            break status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {DEADLINE:?}\nstdout:\n{}\nstderr:\n{}",
                stdout.join().unwrap_or_default(),
                stderr.join().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: stdout.join().expect("read stdout"),
        stderr: stderr.join().expect("read stderr"),
    }
}

/// [`run`], off the async runtime's threads.
pub async fn run_blocking(command: Command) -> Run {
    tokio::task::spawn_blocking(move || run(command))
        .await
        .unwrap()
}

/// The port of a `flexhook listening … port=N` log line (text or `log.format = "json"`);
/// `None` for any other line.
pub fn listening_port(line: &str) -> Option<u16> {
    if !line.contains("flexhook listening") {
        return None;
    }
    if let Ok(event) = serde_json::from_str::<serde_json::Value>(line) {
        return event["port"].as_u64().and_then(|p| u16::try_from(p).ok());
    }
    line.split_whitespace()
        .find_map(|token| token.strip_prefix("port="))
        .and_then(|p| p.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
}

/// A running `flexhook serve` (or a command that execs it), killed when dropped; its stderr
/// is collected as it comes.
pub struct Served {
    child: Child,
    pub port: u16,
    logs: Arc<Mutex<String>>,
    pub client: reqwest::Client,
}

impl Served {
    /// Starts `command` and waits (within the [`DEADLINE`]) until it listens.
    pub fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flexhook serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<u16>();
        let sink = Arc::clone(&logs);
        thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut tx = Some(tx);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&raw);
                sink.lock().unwrap().push_str(&line);
                if let Some(port) = listening_port(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let mut served = Self {
            child,
            port: 0,
            logs,
            client: reqwest::Client::new(),
        };
        match rx.recv_timeout(DEADLINE) {
            Ok(port) => served.port = port,
            Err(e) => {
                let status = served.child.try_wait().ok().flatten();
                panic!(
                    "flexhook serve did not report `flexhook listening … port=N` ({e}; exit status {status:?}); logs:\n{}",
                    served.logs()
                );
            }
        }
        served
    }

    /// [`Served::start`], off the async runtime's threads.
    pub async fn start_blocking(command: Command) -> Self {
        tokio::task::spawn_blocking(move || Self::start(command))
            .await
            .unwrap()
    }

    /// Its stderr so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn webhook_url(&self) -> String {
        format!("{}{PATH}", self.address())
    }

    /// Waits until the logs contain `needle`; returns the first line that does.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let until = Instant::now() + DEADLINE;
        loop {
            let logs = self.logs();
            if let Some(line) = logs.lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < until,
                "the serve logs never contained {needle:?} within {DEADLINE:?}; logs:\n{logs}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (`INT`, `TERM`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// Waits (within the deadline) until the process has exited, after `signal`.
    pub fn wait_for_exit(&mut self, signal: &str) -> ExitStatus {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for flexhook serve") {
                return status;
            }
            assert!(
                Instant::now() < until,
                "serve did not exit after {signal}; logs:\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// `kill -9`: no shutdown hook, no drain, no last write.
    pub fn sigkill(mut self) {
        // Child::kill is SIGKILL on Unix.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
