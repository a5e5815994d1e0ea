//! Black-box tests of the real `flexhook` binary, run as a subprocess.
//!
//! Every command starts from an empty environment, a fresh temporary working directory and
//! a store inside it, so these tests never touch the repository's `data/` folder and never
//! depend on the developer's environment. Every wait is bounded by [`DEADLINE`].

mod common;

use common::binary::CONFIG_DIR;
use common::{flexhook, run, Run, Served, SignedPost, DEADLINE};

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const SHARED_KEY_VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/twilio/shared_key_vectors.json"
);
/// The development token of `config/local.toml`.
const DEV_TOKEN: &str = "local-development-token-not-secret";
const CUSTOMER: &str = "whatsapp:+34600111222";
const CUSTOMER_NUMBER: &str = "+34600111222";
const SIMULATE_DEFAULT_BODY: &str = "Hello from flexhook simulate";
/// The auth token of [`Sandbox::live`].
const LIVE_TOKEN: &str = "live-test-auth-token";

/// A temporary working directory and store, and the variables every command gets.
struct Sandbox {
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl Sandbox {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("create a temporary directory"),
            vars: Vec::new(),
        }
    }

    /// Live mode (an account, no dry-run) against `base`, a wiremock stand-in for all three
    /// Twilio APIs; `suffix` is the 32 hex digits of the workspace and workflow SIDs.
    fn live(base: &str, suffix: &str) -> Self {
        Self::new()
            .with("TWILIO_ACCOUNT_SID", &account_sid())
            .with("TWILIO_AUTH_TOKEN", LIVE_TOKEN)
            .with("FLEXHOOK_FLEX__WORKSPACE_SID", &format!("WS{suffix}"))
            .with("FLEXHOOK_FLEX__WORKFLOW_SID", &format!("WW{suffix}"))
            .with("FLEXHOOK_TWILIO__FLEX_API_BASE_URL", base)
            .with("FLEXHOOK_TWILIO__CONVERSATIONS_API_BASE_URL", base)
            .with("FLEXHOOK_TWILIO__TASKROUTER_API_BASE_URL", base)
    }

    /// Adds a variable given to every command of this sandbox.
    fn with(mut self, name: &str, value: &str) -> Self {
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn store_url(&self) -> String {
        format!("sqlite://{}/flexhook.db", self.path().display())
    }

    /// `flexhook ARGS` with only the sandbox's environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = flexhook(args);
        cmd.env("FLEXHOOK_CONFIG_DIR", CONFIG_DIR)
            .env("FLEXHOOK_STORE__URL", self.store_url())
            .env("FLEXHOOK_SERVER__PORT", "0")
            .env("FLEXHOOK_SERVER__HOST", "127.0.0.1")
            // No sweep against stand-ins that serve no lists, unless a test asks for one.
            .env("FLEXHOOK_RECONCILE__INTERVAL", "")
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(self.path());
        cmd
    }

    /// Runs `flexhook ARGS` to completion (within the deadline).
    fn run(&self, args: &[&str]) -> Run {
        run(self.command(args))
    }

    /// Starts `flexhook serve` and waits until it listens.
    fn serve(&self) -> Served {
        Served::start(self.command(&["serve"]))
    }

    /// `flexhook simulate`: a first message of `conversation`, sent to `server`, with
    /// `extra` arguments.
    fn simulate_command(&self, server: &Served, conversation: &str, extra: &[&str]) -> Command {
        let url = server.webhook_url();
        let mut args = vec!["simulate", "--url", &url, "--conversation", conversation];
        args.extend_from_slice(extra);
        self.command(&args)
    }

    /// Runs [`Sandbox::simulate_command`] to completion.
    fn simulate(&self, server: &Served, conversation: &str, extra: &[&str]) -> Run {
        run(self.simulate_command(server, conversation, extra))
    }

    /// `jobs list --json [extra…]`, one parsed object per line.
    fn jobs_json(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["jobs", "list", "--json"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert!(out.status.success(), "jobs list failed: {out:?}");
        out.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// Polls `jobs list --json [extra…]` until the conversation's job satisfies `done`.
    fn wait_for_job(
        &self,
        conversation: &str,
        extra: &[&str],
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let until = Instant::now() + DEADLINE;
        loop {
            let jobs = self.jobs_json(extra);
            if let Some(job) = jobs
                .iter()
                .find(|j| j["conversation_sid"] == conversation && done(j))
            {
                return job.clone();
            }
            assert!(
                Instant::now() < until,
                "no matching job for {conversation} within {DEADLINE:?}; jobs: {jobs:#?}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A runtime for the wiremock stand-ins of the tests that drive the binary.
fn mock_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// How many requests to `path` the stand-in has received so far.
fn requests_to(
    runtime: &tokio::runtime::Runtime,
    server: &wiremock::MockServer,
    path: &str,
) -> usize {
    runtime
        .block_on(server.received_requests())
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == path)
        .count()
}

fn account_sid() -> String {
    format!("AC{}", "0123456789abcdef".repeat(2))
}

// ---------------------------------------------------------------------------------------
// sign
// ---------------------------------------------------------------------------------------

/// `flexhook sign` for the Twilio docs' worked example (token 12345).
const DOCS_EXAMPLE_SIGN: &[&str] = &[
    "sign",
    "--url",
    "https://example.com/myapp.php?foo=1&bar=2",
    "--param",
    "Digits=1234",
    "--param",
    "To=+18005551212",
    "--param",
    "From=+14158675310",
    "--param",
    "Caller=+14158675310",
    "--param",
    "CallSid=CA1234567890ABCDE",
];

fn assert_docs_example_signature(out: &Run) {
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim() == "X-Twilio-Signature: L/OH5YylLD5NRKLltdqwSvS0BnU="),
        "{out:?}"
    );
}

#[test]
fn sign_prints_the_docs_worked_example_signature() {
    let sandbox = Sandbox::new().with("TWILIO_AUTH_TOKEN", "12345");
    let out = sandbox.run(DOCS_EXAMPLE_SIGN);
    assert_docs_example_signature(&out);
}

#[test]
fn flexhook_variables_win_over_twilio_standard_ones() {
    let sandbox = Sandbox::new()
        .with("TWILIO_AUTH_TOKEN", "not-this-one")
        .with("FLEXHOOK_TWILIO__AUTH_TOKEN", "12345");
    let out = sandbox.run(DOCS_EXAMPLE_SIGN);
    assert_docs_example_signature(&out);
}

#[test]
fn sign_with_a_shared_key_prints_the_settings_header() {
    let vectors: Value = serde_json::from_str(
        &std::fs::read_to_string(SHARED_KEY_VECTORS).expect("read shared_key_vectors.json"),
    )
    .expect("shared_key_vectors.json is JSON");
    let key_id = vectors["key_id"].as_str().unwrap();
    let secret = vectors["secret"].as_str().unwrap();
    assert_eq!(key_id, "webhooks_sharedkey_01jz8example0000000000000");
    let case = vectors["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["algorithm"] == "HMAC_SHA256" && c.get("signed_url").is_none())
        .expect("an HMAC_SHA256 case over the plain url");
    let expected = case["signature"].as_str().unwrap();
    assert_eq!(expected, "/PiBh48fJf6uuyttyeaqG3yU25Qanx+XiDk0VWiwQ6A=");

    let params: Vec<String> = vectors["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
        .collect();
    let mut args = vec![
        "sign",
        "--url",
        vectors["url"].as_str().unwrap(),
        "--shared-key",
        key_id,
        "--algorithm",
        "HMAC_SHA256",
    ];
    for p in &params {
        args.extend(["--param", p.as_str()]);
    }
    let sandbox = Sandbox::new().with("TWILIO_WEBHOOK_SHARED_KEYS", &format!("{key_id}={secret}"));
    let out = sandbox.run(&args);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    assert!(
        lines.contains(&format!("X-Twilio-Signature: {expected}").as_str()),
        "{out:?}"
    );
    assert!(
        lines.contains(
            &"X-Twilio-Webhooks-Signature-Settings: key=webhooks_sharedkey_01jz8example0000000000000,algorithm=HMAC_SHA256"
        ),
        "{out:?}"
    );
    assert!(
        !out.stdout.contains(secret),
        "the secret is never printed: {out:?}"
    );
}

#[test]
fn sign_with_an_unknown_shared_key_fails_naming_the_setting() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&[
        "sign",
        "--url",
        "https://example.com/webhooks/conversations",
        "--param",
        "EventType=onMessageAdded",
        "--shared-key",
        "webhooks_sharedkey_not_configured",
    ]);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("twilio.webhook_shared_keys"), "{out:?}");
    assert!(!out.stdout.contains("X-Twilio-Signature"), "{out:?}");
}

// ---------------------------------------------------------------------------------------
// serve + simulate (dry-run)
// ---------------------------------------------------------------------------------------

/// The request id `flexhook simulate` printed (the answer's `X-Request-Id`).
fn printed_request_id(out: &Run) -> &str {
    out.stdout
        .split("request id ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("simulate prints the request id: {out:?}"))
}

/// Serves in dry-run, simulates one message and checks what the log and the store say.
fn dry_run_round_trip(conversation: &str, json: bool) {
    let sandbox = Sandbox::new().with("FLEXHOOK_ENV", "local");
    let server = sandbox.serve();
    assert!(server.logs().contains("DRY-RUN"), "{}", server.logs());

    let mut args = vec!["--author", CUSTOMER];
    if json {
        args.push("--json");
    }
    let out = sandbox.simulate(&server, conversation, &args);
    assert!(
        out.status.success(),
        "{out:?}\nserve logs:\n{}",
        server.logs()
    );
    assert!(out.stdout.contains("200"), "{out:?}");
    // The answer's X-Request-Id is the one the webhook's log lines carry.
    let request_id = printed_request_id(&out);
    let queued = server.wait_for_log("new conversation: job queued");
    assert!(
        queued.contains(&format!("request_id={request_id}")),
        "the webhook's span carries {request_id}: {queued}"
    );

    let would = server.wait_for_log("would POST /v1/Interactions");
    assert!(would.contains(conversation), "{would}");
    sandbox.wait_for_job(conversation, &[], |j| j["state"] == "created");

    let logs = server.logs();
    assert!(logs.contains(conversation), "{logs}");
    assert!(
        !logs.contains(CUSTOMER_NUMBER),
        "the full address is never logged:\n{logs}"
    );
    assert!(
        !logs.contains(SIMULATE_DEFAULT_BODY),
        "message text is never logged:\n{logs}"
    );
    drop(server);

    let jobs = sandbox.jobs_json(&[]);
    let job = jobs
        .iter()
        .find(|j| j["conversation_sid"] == conversation)
        .unwrap_or_else(|| panic!("no job for {conversation}: {jobs:#?}"));
    assert_eq!(job["state"], "created", "{job:#}");
    assert_eq!(job["kind"], "interaction", "{job:#}");
    // Dry-run's one account, whatever AccountSid the message named.
    assert_eq!(job["account"], "default", "{job:#}");
    assert!(!job.to_string().contains(CUSTOMER_NUMBER), "{job:#}");
    let of_kind = sandbox.jobs_json(&["--kind", "interaction"]);
    assert!(of_kind
        .iter()
        .any(|j| j["conversation_sid"] == conversation));
    let unknown = sandbox.run(&["jobs", "list", "--kind", "telepathy"]);
    assert!(!unknown.status.success(), "{unknown:?}");
    assert!(unknown.stderr.contains("not a job kind"), "{unknown:?}");

    let show = sandbox.run(&["jobs", "show", conversation]);
    assert!(show.status.success(), "{show:?}");
    assert!(show.stdout.contains(conversation), "{show:?}");
    assert!(show.stdout.contains("created"), "{show:?}");
    assert!(!show.stdout.contains(CUSTOMER_NUMBER), "{show:?}");
}

#[test]
fn quick_start_dry_run_accepts_a_simulated_message_and_logs_the_interaction() {
    dry_run_round_trip("CH0000000000000000000000000000a001", false);
}

#[test]
fn simulate_with_json_body_is_accepted() {
    dry_run_round_trip("CH0000000000000000000000000000a002", true);
}

/// JSON logs (`log.format = "json"`, as on Fly): a webhook's log line is one JSON object
/// whose `span` carries the answer's `X-Request-Id` and the fields the handler added later.
#[test]
fn json_logs_carry_the_webhooks_span_with_its_request_id() {
    let conversation = "CH0000000000000000000000000000a004";
    let sandbox = Sandbox::new()
        .with("FLEXHOOK_ENV", "local")
        .with("FLEXHOOK_LOG__FORMAT", "json");
    let server = sandbox.serve();
    let out = sandbox.simulate(&server, conversation, &["--author", CUSTOMER]);
    assert!(out.status.success(), "{out:?}\n{}", server.logs());
    let request_id = printed_request_id(&out);
    let queued = server.wait_for_log("new conversation: job queued");
    let line: serde_json::Value = serde_json::from_str(queued.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {queued}"));
    let span = &line["span"];
    assert_eq!(span["name"], "webhook", "{line:#}");
    assert_eq!(span["request_id"], request_id, "{line:#}");
    assert_eq!(span["route"], "conversations", "{line:#}");
    assert_eq!(span["conversation"], conversation, "{line:#}");
    assert_eq!(span["retry_count"], 0, "{line:#}");
    assert_eq!(line["author"], CUSTOMER_MASKED, "{line:#}");
}

/// What the logs and the CLI show of [`CUSTOMER`] when it is masked.
const CUSTOMER_MASKED: &str = "whatsapp:+34*******22";

/// `log.show_addresses`, off by default: the logs mask the customer's address. Turned on by
/// its variable, they show it in full, and start-up warns that personal data is logged.
/// The CLI's output stays masked either way.
#[test]
fn customer_addresses_are_logged_in_full_only_with_log_show_addresses_which_warns() {
    for (shown, conversation) in [
        (false, "CH0000000000000000000000000000b001"),
        (true, "CH0000000000000000000000000000b002"),
    ] {
        let mut sandbox = Sandbox::new().with("FLEXHOOK_ENV", "local");
        if shown {
            sandbox = sandbox.with("FLEXHOOK_LOG__SHOW_ADDRESSES", "true");
        }
        let server = sandbox.serve();
        let out = sandbox.simulate(&server, conversation, &["--author", CUSTOMER]);
        assert!(out.status.success(), "{out:?}\n{}", server.logs());
        let queued = server.wait_for_log("new conversation: job queued");
        let would = server.wait_for_log("would POST /v1/Interactions");
        let logs = server.logs();
        let warning = logs
            .lines()
            .find(|l| l.contains("WARN") && l.contains("log.show_addresses"));
        let expected = if shown { CUSTOMER } else { CUSTOMER_MASKED };
        for line in [&queued, &would] {
            assert!(
                line.contains(expected),
                "show_addresses={shown}: {expected} in {line}\n{logs}"
            );
        }
        if shown {
            let warning = warning.unwrap_or_else(|| panic!("no start-up warning:\n{logs}"));
            assert!(warning.contains("unmasked"), "{warning}");
            assert!(warning.contains("personal data"), "{warning}");
        } else {
            assert!(warning.is_none(), "{logs}");
            assert!(!logs.contains(CUSTOMER_NUMBER), "{logs}");
        }
        drop(server);

        let show = sandbox.run(&["jobs", "show", conversation]);
        assert!(show.status.success(), "{show:?}");
        assert!(show.stdout.contains(CUSTOMER_MASKED), "{show:?}");
        assert!(!show.stdout.contains(CUSTOMER_NUMBER), "{show:?}");
    }
}

#[test]
fn a_request_signed_with_another_token_is_refused_and_the_log_names_the_urls_tried() {
    let sandbox = Sandbox::new().with("FLEXHOOK_ENV", "local");
    let server = sandbox.serve();
    let url = server.webhook_url();
    let mut cmd = sandbox.simulate_command(&server, "CH0000000000000000000000000000a003", &[]);
    cmd.env("FLEXHOOK_TWILIO__AUTH_TOKEN", "wrong-token");
    let out = run(cmd);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.contains("403"), "{out:?}");

    let refused = server.wait_for_log("does not match");
    let logs = server.logs();
    assert!(
        refused.contains(&url),
        "the refusal names {url}: {refused}\n{logs}"
    );
    // A refusal's line is in the webhook's span too, under the answer's X-Request-Id.
    let request_id = printed_request_id(&out);
    assert!(
        refused.contains(&format!("request_id={request_id}")),
        "the refusal's span carries {request_id}: {refused}"
    );
    assert!(!logs.contains("wrong-token"), "{logs}");
    assert!(!logs.contains(DEV_TOKEN), "{logs}");
    drop(server);
    assert!(
        sandbox.jobs_json(&[]).is_empty(),
        "a refused webhook makes no job"
    );
}

// ---------------------------------------------------------------------------------------
// start-up refusals
// ---------------------------------------------------------------------------------------

/// `serve` refused its settings (exit code 2), naming each of `names` on stderr.
fn assert_refused_naming(out: &Run, names: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    for name in names {
        assert!(out.stderr.contains(name), "stderr names {name}: {out:?}");
    }
}

#[test]
fn production_without_credentials_refuses_to_start_naming_the_keys() {
    let sandbox = Sandbox::new().with("FLEXHOOK_ENV", "production");
    assert_refused_naming(
        &sandbox.run(&["serve"]),
        &[
            "twilio.account_sid",
            "TWILIO_ACCOUNT_SID",
            "twilio.auth_token",
            "flex.workflow_sid",
        ],
    );
}

/// `fly ssh console -C "flexhook jobs list"` starts in `/`, not in the image's `/app`: with
/// no config folder there, production must refuse rather than open a new, empty store.
#[test]
fn production_without_its_config_file_refuses_instead_of_opening_a_new_store() {
    let sandbox = Sandbox::new().with("FLEXHOOK_ENV", "production");
    let mut cmd = sandbox.command(&["jobs", "list"]);
    cmd.env_remove("FLEXHOOK_CONFIG_DIR")
        .env_remove("FLEXHOOK_STORE__URL");
    let out = run(cmd);
    assert!(!out.status.success(), "{out:?}");
    let looked_at = sandbox.path().join("config/production.toml");
    assert!(
        out.stderr.contains(&looked_at.display().to_string()),
        "names the path it looked at: {out:?}"
    );
    assert!(out.stderr.contains("FLEXHOOK_CONFIG_DIR"), "{out:?}");
    assert!(
        !sandbox.path().join("data").exists(),
        "no store was created in the working directory"
    );
}

#[test]
fn a_malformed_workflow_sid_is_refused_at_start() {
    let sandbox = Sandbox::new()
        .with("FLEXHOOK_ENV", "local")
        .with("FLEXHOOK_FLEX__WORKFLOW_SID", "WS123");
    let out = sandbox.run(&["serve"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("flex.workflow_sid"), "{out:?}");
    assert!(
        out.stderr.contains("FLEXHOOK_FLEX__WORKFLOW_SID"),
        "{out:?}"
    );
}

#[test]
fn a_store_that_cannot_be_opened_stops_start_up_naming_store_url() {
    let sandbox = Sandbox::new().with("FLEXHOOK_ENV", "local");
    let blocker = sandbox.path().join("blocker");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let mut cmd = sandbox.command(&["serve"]);
    cmd.env(
        "FLEXHOOK_STORE__URL",
        format!("sqlite://{}/sub/flexhook.db", blocker.display()),
    );
    let out = run(cmd);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("store.url"), "{out:?}");
    assert!(!out.stderr.contains("flexhook listening"), "{out:?}");
}

/// No FLEXHOOK_ENV (so `local`), an account and an API key, but no TWILIO_AUTH_TOKEN: the
/// token would silently be local.toml's public development token, which anyone can sign with.
#[test]
fn a_live_account_without_its_auth_token_refuses_to_start_rather_than_take_the_development_token() {
    let sandbox = Sandbox::new()
        .with("TWILIO_ACCOUNT_SID", &account_sid())
        .with(
            "TWILIO_API_KEY",
            &format!("SK{}", "0123456789abcdef".repeat(2)),
        )
        .with("TWILIO_API_SECRET", "api-secret-not-a-token");
    let out = sandbox.run(&["serve"]);
    assert_refused_naming(
        &out,
        &[
            "twilio.auth_token",
            "TWILIO_AUTH_TOKEN",
            "development token",
        ],
    );
    assert!(!out.stderr.contains(DEV_TOKEN), "{out:?}");
}

/// A password given in the store URL's query (`?password=`, `?sslpassword=`) is redacted
/// wherever the URL is printed: start-up's refusal, and `store copy`'s error.
#[test]
fn a_password_in_the_store_urls_query_is_never_printed() {
    let url = "postgres://flexhook@127.0.0.1:1/flexhook?sslmode=disable&password=pw-in-query&sslpassword=key-passphrase";
    let sandbox = Sandbox::new().with("FLEXHOOK_ENV", "local");
    let mut serve = sandbox.command(&["serve"]);
    serve.env("FLEXHOOK_STORE__URL", url);
    // `jobs list` creates the SQLite store that `store copy` reads.
    assert!(sandbox.run(&["jobs", "list"]).status.success());
    let from = sandbox.store_url();
    for out in [
        run(serve),
        sandbox.run(&["store", "copy", "--from", &from, "--to", url]),
    ] {
        assert!(!out.status.success(), "{out:?}");
        let printed = format!("{}{}", out.stdout, out.stderr);
        assert!(
            printed.contains("store.url") || printed.contains("--to"),
            "{out:?}"
        );
        assert!(
            printed.contains("password=[redacted]") && printed.contains("sslmode=disable"),
            "the URL is printed, redacted: {out:?}"
        );
        assert!(!printed.contains("pw-in-query"), "{out:?}");
        assert!(!printed.contains("key-passphrase"), "{out:?}");
    }
}

/// `store.retention_days = 0` would purge every finished job at start-up, dead ones too:
/// the lifecycle could then not find a task's conversation, and a restart could create an
/// interaction twice. It is refused before the store is touched.
#[test]
fn retention_days_0_refuses_to_start_and_leaves_the_stores_jobs_alone() {
    let conversation = "CH0000000000000000000000000000a010";
    let sandbox = Sandbox::new().with("FLEXHOOK_ENV", "local");
    let server = sandbox.serve();
    let out = sandbox.simulate(&server, conversation, &["--author", CUSTOMER]);
    assert!(out.status.success(), "{out:?}");
    sandbox.wait_for_job(conversation, &[], |j| j["state"] == "created");
    drop(server);

    let mut serve = sandbox.command(&["serve"]);
    serve.env("FLEXHOOK_STORE__RETENTION_DAYS", "0");
    assert_refused_naming(
        &run(serve),
        &["store.retention_days", "FLEXHOOK_STORE__RETENTION_DAYS"],
    );
    let jobs = sandbox.jobs_json(&[]);
    assert!(
        jobs.iter()
            .any(|j| j["conversation_sid"] == conversation && j["state"] == "created"),
        "the job is still there: {jobs:#?}"
    );
}

/// In production, the URL Twilio signed must not be rebuilt from the client's `Host`:
/// `server.public_base_url` (or trusted forwarded headers) is required, and either starts it.
#[test]
fn production_without_public_base_url_refuses_to_start_naming_what_to_set() {
    let production = || {
        Sandbox::live("http://127.0.0.1:9", "0000000000000000000000000000b011")
            .with("FLEXHOOK_ENV", "production")
    };
    assert_refused_naming(
        &production().run(&["serve"]),
        &[
            "server.public_base_url",
            "FLEXHOOK_SERVER__PUBLIC_BASE_URL",
            "server.trust_forwarded_headers",
        ],
    );
    let sandbox = production().with(
        "FLEXHOOK_SERVER__PUBLIC_BASE_URL",
        "https://flexhook.example.com",
    );
    let server = sandbox.serve();
    assert!(
        server.logs().contains("https://flexhook.example.com"),
        "{}",
        server.logs()
    );
    drop(server);
    let sandbox = production().with("FLEXHOOK_SERVER__TRUST_FORWARDED_HEADERS", "true");
    drop(sandbox.serve());
}

// ---------------------------------------------------------------------------------------
// jobs retry (live mode against a mock Twilio)
// ---------------------------------------------------------------------------------------

#[test]
fn jobs_retry_moves_a_dead_job_back_to_pending() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer};

    let runtime = mock_runtime();
    let twilio = runtime.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/Interactions"))
            .respond_with(common::twilio_error(
                400,
                80102,
                "Participant already in an interaction",
            ))
            .mount(&server)
            .await;
        server
    });
    let base = twilio.uri();
    let conversation = "CH0000000000000000000000000000b001";
    let sandbox = Sandbox::live(&base, "0000000000000000000000000000b001");

    let server = sandbox.serve();
    assert!(
        !server.logs().contains("DRY-RUN"),
        "live mode: {}",
        server.logs()
    );
    let out = sandbox.simulate(&server, conversation, &["--author", CUSTOMER]);
    assert!(
        out.status.success(),
        "{out:?}\nserve logs:\n{}",
        server.logs()
    );

    let dead = sandbox.wait_for_job(conversation, &["--state", "dead"], |_| true);
    assert_eq!(dead["state"], "dead", "{dead:#}");
    assert_eq!(dead["last_error"]["code"], 80102, "{dead:#}");
    server.wait_for_log("80102");
    let requests = runtime
        .block_on(twilio.received_requests())
        .unwrap_or_default();
    assert!(
        requests
            .iter()
            .any(|r| r.method.as_str() == "POST" && r.url.path() == "/v1/Interactions"),
        "the worker called the mock Flex API: {requests:?}"
    );
    // Stopped, so that nothing picks the retried job up again: its state is then exact.
    drop(server);

    let retry = sandbox.run(&["jobs", "retry", conversation]);
    assert!(retry.status.success(), "{retry:?}");
    assert!(
        retry.stdout.contains("1 job(s) moved back to pending"),
        "{retry:?}"
    );

    let show = sandbox.run(&["jobs", "show", conversation, "--json"]);
    assert!(show.status.success(), "{show:?}");
    let job: Value = serde_json::from_str(&show.stdout).expect("jobs show --json prints JSON");
    assert_eq!(job["state"], "pending", "{job:#}");
    assert_eq!(job["attempts"], 0, "{job:#}");

    let again = sandbox.run(&["jobs", "retry", conversation]);
    assert!(
        !again.status.success(),
        "a pending job is not dead: {again:?}"
    );
    assert!(again.stderr.contains("not dead"), "{again:?}");

    let unknown = sandbox.run(&["jobs", "retry", "CH0000000000000000000000000000ffff"]);
    assert!(!unknown.status.success(), "{unknown:?}");
    assert!(
        unknown
            .stderr
            .contains("no job for conversation CH0000000000000000000000000000ffff"),
        "{unknown:?}"
    );

    let usage = sandbox.run(&["jobs", "retry"]);
    assert_eq!(usage.status.code(), Some(2), "a usage error: {usage:?}");
    assert!(usage.stderr.contains("Usage"), "{usage:?}");
    assert!(usage.stderr.contains("CONVERSATION"), "{usage:?}");
}

// ---------------------------------------------------------------------------------------
// help
// ---------------------------------------------------------------------------------------

#[test]
fn flex_answering_500_is_logged_with_twilios_error_code_while_twilio_gets_its_200() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let runtime = mock_runtime();
    let twilio = runtime.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/Interactions"))
            .respond_with(common::twilio_error(500, 20500, "Internal Server Error"))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"tasks": []})),
            )
            .mount(&server)
            .await;
        server
    });
    let base = twilio.uri();
    let conversation = "CH0000000000000000000000000000c500";
    let sandbox = Sandbox::live(&base, "0000000000000000000000000000c500");
    let server = sandbox.serve();
    let out = sandbox.simulate(&server, conversation, &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("200 OK"), "{out:?}");
    server.wait_for_log("code=20500");
    let logs = server.logs();
    assert!(logs.contains("will retry"), "{logs}");
    assert!(!logs.contains(LIVE_TOKEN), "no token in logs: {logs}");
    let pending = sandbox.wait_for_job(conversation, &["--state", "pending"], |_| true);
    assert_eq!(pending["last_error"]["code"], 20500, "{pending:#}");
}

#[test]
fn database_url_sets_the_store_when_flexhook_store_url_is_not_set() {
    let sandbox = Sandbox::new();
    let file = sandbox.path().join("from-database-url").join("jobs.db");
    let mut cmd = sandbox.command(&["jobs", "list"]);
    cmd.env_remove("FLEXHOOK_STORE__URL")
        .env("DATABASE_URL", format!("sqlite://{}", file.display()));
    let out = run(cmd);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("no jobs"), "{out:?}");
    assert!(file.is_file(), "the store was created at DATABASE_URL");
}

/// Killed (SIGKILL) while its create was in flight at Flex: after a restart the job's lease
/// expires, its write-ahead mark makes the worker look in TaskRouter first, and the task
/// Flex did create is adopted instead of created twice.
#[test]
fn a_crash_mid_create_is_recovered_by_adopting_the_task_not_creating_another() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let conversation = "CH0000000000000000000000000000dead";
    let runtime = mock_runtime();
    let twilio = runtime.block_on(async {
        let server = MockServer::start().await;
        // Flex takes the request and is slow to answer: the process dies meanwhile.
        Mock::given(method("POST"))
            .and(path("/v1/Interactions"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"sid": "KD0000000000000000000000000000dead"}))
                    .set_delay(Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(
                "/v1/Workspaces/WS0000000000000000000000000000dead/Tasks",
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "tasks": [{
                    "sid": "WT0000000000000000000000000000dead",
                    "attributes": format!("{{\"conversationSid\":\"{conversation}\"}}"),
                }]
            })))
            .mount(&server)
            .await;
        server
    });
    let base = twilio.uri();
    let sandbox = Sandbox::live(&base, "0000000000000000000000000000dead")
        .with("FLEXHOOK_TWILIO__REQUEST_TIMEOUT_MS", "2000")
        .with("FLEXHOOK_WORKER__LEASE_SECS", "5")
        .with("FLEXHOOK_WORKER__POLL_INTERVAL_MS", "100");
    let posts = || requests_to(&runtime, &twilio, "/v1/Interactions");

    let server = sandbox.serve();
    let out = sandbox.simulate(&server, conversation, &[]);
    assert!(out.status.success(), "{out:?}");
    let until = Instant::now() + DEADLINE;
    while posts() == 0 {
        assert!(Instant::now() < until, "the create never reached Flex");
        thread::sleep(Duration::from_millis(20));
    }
    drop(server); // SIGKILL, mid-request

    let pending = sandbox.wait_for_job(conversation, &["--state", "pending"], |_| true);
    assert_eq!(pending["needs_lookup"], true, "{pending:#}");
    // The restarted service takes the job once the dead process's 5 s lease has expired.
    let _server = sandbox.serve();
    let created = sandbox.wait_for_job(conversation, &["--state", "created"], |_| true);
    assert_eq!(
        created["task_sid"], "WT0000000000000000000000000000dead",
        "{created:#}"
    );
    assert_eq!(
        posts(),
        1,
        "the create that reached Flex before the crash is the only one"
    );
}

#[test]
fn sigint_lets_a_webhook_in_flight_get_its_answer_before_the_process_exits() {
    use sqlx::Connection;

    // Fly's default kill signal is SIGINT, which actix alone treats as a forced stop.
    let conversation = "CH0000000000000000000000000000a1a1";
    let sandbox = Sandbox::new()
        .with("FLEXHOOK_ENV", "local")
        .with("FLEXHOOK_STORE__BUSY_TIMEOUT_MS", "4000");
    let mut server = sandbox.serve();
    let runtime = mock_runtime();
    // Another process holds the store's write lock, so the webhook waits for its commit.
    let mut other = runtime.block_on(async {
        let mut c = sqlx::SqliteConnection::connect(&sandbox.store_url())
            .await
            .unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut c)
            .await
            .unwrap();
        c
    });
    let simulate = sandbox
        .simulate_command(&server, conversation, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the webhook is inside the server: its connection is open and unanswered.
    let until = Instant::now() + DEADLINE;
    while !established_connection_to(server.port) {
        assert!(
            Instant::now() < until,
            "the webhook never reached the server"
        );
        thread::sleep(Duration::from_millis(10));
    }
    server.signal("INT");
    server.wait_for_log("shutting down gracefully");
    runtime.block_on(async {
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        other.close().await.unwrap();
    });

    let answer = simulate.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&answer.stdout);
    assert!(
        answer.status.success() && stdout.contains("200"),
        "the webhook got its answer: {answer:?}\nserve logs:\n{}",
        server.logs()
    );
    let status = server.wait_for_exit("SIGINT");
    assert!(status.success(), "{status:?}\n{}", server.logs());
    let logs = server.logs();
    assert!(logs.contains("SIGINT"), "{logs}");
    assert!(logs.contains("worker stopped"), "{logs}");
    sandbox.wait_for_job(conversation, &[], |_| true);
}

/// What became of one webhook of a burst.
struct Delivery {
    conversation: String,
    /// The HTTP status, or `None` when no answer came (refused, reset).
    status: Option<u16>,
    /// Sent once `signalled` was set.
    after_signal: bool,
}

/// `senders` at once, each on its own connection, each sending `per_sender` first
/// messages of new conversations one after the other, signed with [`LIVE_TOKEN`].
/// `answered` counts the 200s as they come.
async fn burst_of_first_messages(
    base: String,
    senders: usize,
    per_sender: usize,
    answered: Arc<AtomicUsize>,
    signalled: Arc<AtomicBool>,
) -> Vec<Delivery> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..senders {
        let (base, answered, signalled) = (base.clone(), answered.clone(), signalled.clone());
        tasks.spawn(async move {
            let client = reqwest::Client::new();
            let mut deliveries = Vec::new();
            for _ in 0..per_sender {
                let conversation = common::random_sid("CH");
                let params = common::message(&conversation, "+14155550100");
                let after_signal = signalled.load(Ordering::SeqCst);
                let status = SignedPost::new(&client, &base, params)
                    .signed_with_token(LIVE_TOKEN)
                    .timeout(DEADLINE)
                    .try_send()
                    .await
                    .ok()
                    .map(|r| r.status().as_u16());
                if status == Some(200) {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                deliveries.push(Delivery {
                    conversation,
                    status,
                    after_signal,
                });
            }
            deliveries
        });
    }
    let mut all = Vec::new();
    while let Some(deliveries) = tasks.join_next().await {
        all.extend(deliveries.unwrap());
    }
    all
}

/// SIGTERM in the middle of a burst of new conversations, while a slow Flex holds jobs in
/// flight: the process exits 0 within `server.shutdown_timeout_secs`, and after a restart
/// every conversation that was answered 200 has its job, created or pending. What was
/// refused on the way down (no connection, 503) is Twilio's to retry, so it does not count.
#[test]
fn sigterm_mid_burst_exits_within_the_budget_and_every_answered_conversation_has_its_job() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const BUDGET: Duration = Duration::from_secs(3);
    /// What process exit may add to the budget: closing the store, the runtime's end.
    const EXIT_MARGIN: Duration = Duration::from_millis(750);
    const SENDERS: usize = 8;
    const PER_SENDER: usize = 50;

    let runtime = mock_runtime();
    let twilio = runtime.block_on(async {
        let server = MockServer::start().await;
        // Flex is slow: every other create takes 1 s, and can finish within the budget;
        // the rest outlast it (and the request timeout), and are abandoned in flight.
        let nth = AtomicUsize::new(0);
        Mock::given(method("POST"))
            .and(path("/v1/Interactions"))
            .respond_with(move |_: &wiremock::Request| {
                let slow = nth.fetch_add(1, Ordering::SeqCst) % 2 == 1;
                common::created(&common::random_sid("CH")).set_delay(if slow {
                    Duration::from_secs(30)
                } else {
                    Duration::from_secs(1)
                })
            })
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(common::no_tasks()))
            .mount(&server)
            .await;
        Mock::given(method("DELETE"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&server)
            .await;
        server
    });
    let creates = || requests_to(&runtime, &twilio, "/v1/Interactions");
    let sandbox = Sandbox::live(&twilio.uri(), "0000000000000000000000000000b057").with(
        "FLEXHOOK_SERVER__SHUTDOWN_TIMEOUT_SECS",
        &BUDGET.as_secs().to_string(),
    );
    let mut server = sandbox.serve();

    let answered = Arc::new(AtomicUsize::new(0));
    let signalled = Arc::new(AtomicBool::new(false));
    let burst = runtime.spawn(burst_of_first_messages(
        server.address(),
        SENDERS,
        PER_SENDER,
        answered.clone(),
        signalled.clone(),
    ));

    // SIGTERM once a quarter of the burst is in and Flex holds creates in flight.
    let until = Instant::now() + DEADLINE;
    while answered.load(Ordering::SeqCst) < SENDERS * PER_SENDER / 4 || creates() == 0 {
        assert!(
            Instant::now() < until,
            "the burst never got going: {} answered, {} creates\n{}",
            answered.load(Ordering::SeqCst),
            creates(),
            server.logs()
        );
        thread::sleep(Duration::from_millis(5));
    }
    let signalled_at = Instant::now();
    signalled.store(true, Ordering::SeqCst);
    server.signal("TERM");
    let status = server.wait_for_exit("SIGTERM");
    let took = signalled_at.elapsed();
    let logs = server.logs();
    assert!(status.success(), "{status:?}\n{logs}");
    assert!(
        took <= BUDGET + EXIT_MARGIN,
        "exited {took:?} after SIGTERM, over the {BUDGET:?} budget (+{EXIT_MARGIN:?})\n{logs}"
    );
    assert!(logs.contains("SIGTERM"), "{logs}");
    assert!(
        logs.contains("jobs still in flight at shutdown were abandoned"),
        "the slow creates outlasted the budget: {logs}"
    );

    let deliveries = runtime.block_on(burst).unwrap();
    assert!(
        deliveries.iter().any(|d| d.after_signal),
        "the burst was over before the SIGTERM"
    );
    let answered: Vec<&str> = deliveries
        .iter()
        .filter(|d| d.status == Some(200))
        .map(|d| d.conversation.as_str())
        .collect();
    let refused: Vec<Option<u16>> = deliveries
        .iter()
        .filter(|d| d.status != Some(200))
        .map(|d| d.status)
        .collect();
    assert!(
        refused.iter().all(|s| matches!(s, None | Some(503))),
        "anything but a 200 is a refusal Twilio retries: {refused:?}"
    );

    // The restarted service opens the same store; every answered conversation is in it.
    let _restarted = sandbox.serve();
    let jobs = sandbox.jobs_json(&["--limit", "100000"]);
    let mut states = std::collections::HashMap::new();
    for job in &jobs {
        let conversation = job["conversation_sid"].as_str().unwrap_or_default();
        assert_eq!(job["kind"], "interaction", "{job:#}");
        assert!(
            job["state"] == "created" || job["state"] == "pending",
            "neither created nor pending: {job:#}"
        );
        assert!(
            states
                .insert(conversation.to_owned(), job["state"].clone())
                .is_none(),
            "two jobs for {conversation}"
        );
    }
    let lost: Vec<&&str> = answered
        .iter()
        .filter(|c| !states.contains_key(**c))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} conversations answered 200 have no job: {lost:?}\n{logs}",
        lost.len(),
        answered.len()
    );
    eprintln!(
        "{} answered 200, {} refused ({} sent after SIGTERM); exit {took:?} after SIGTERM; jobs: {} created, {} pending",
        answered.len(),
        refused.len(),
        deliveries.iter().filter(|d| d.after_signal).count(),
        states.values().filter(|s| **s == "created").count(),
        states.values().filter(|s| **s == "pending").count(),
    );
}

/// Whether a TCP connection to `127.0.0.1:port` is established (from `/proc/net/tcp`).
fn established_connection_to(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // local address, remote address, state (01 = ESTABLISHED)
        fields.len() > 3 && fields[1] == local && fields[3] == "01"
    })
}

// ---------------------------------------------------------------------------------------
// taskrouter connect / disconnect / status (live mode against a mock TaskRouter)
// ---------------------------------------------------------------------------------------

const WORKSPACE_SID: &str = "WS0000000000000000000000000000beef";
const PUBLIC_BASE: &str = "https://flexhook.example.com";

/// A production sandbox with credentials and a workspace, but no workflow: the taskrouter
/// commands need none.
fn workspace_sandbox(base: &str) -> Sandbox {
    Sandbox::new()
        .with("FLEXHOOK_ENV", "production")
        .with("TWILIO_ACCOUNT_SID", &account_sid())
        .with("TWILIO_AUTH_TOKEN", LIVE_TOKEN)
        .with("FLEXHOOK_FLEX__WORKSPACE_SID", WORKSPACE_SID)
        .with("FLEXHOOK_SERVER__PUBLIC_BASE_URL", PUBLIC_BASE)
        .with("FLEXHOOK_TWILIO__TASKROUTER_API_BASE_URL", base)
}

/// TaskRouter's workspace as GET answers it, and a POST that accepts any update.
fn mock_workspace(
    runtime: &tokio::runtime::Runtime,
    server: &wiremock::MockServer,
    url: Option<&str>,
    filter: Option<&str>,
) {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    let workspace = format!("/v1/Workspaces/{WORKSPACE_SID}");
    runtime.block_on(async {
        server.reset().await;
        Mock::given(method("GET"))
            .and(path(workspace.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "sid": WORKSPACE_SID,
                "friendly_name": "Flex Task Assignment",
                "event_callback_url": url,
                "events_filter": filter,
            })))
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path(workspace.as_str()))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"sid": WORKSPACE_SID})),
            )
            .mount(server)
            .await;
    });
}

/// The `EventCallbackUrl` and `EventsFilter` of every workspace update received.
fn workspace_updates(
    runtime: &tokio::runtime::Runtime,
    server: &wiremock::MockServer,
) -> Vec<(String, String)> {
    runtime
        .block_on(server.received_requests())
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| {
            let field = |name: &str| {
                form_urlencoded::parse(&r.body)
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_else(|| panic!("no {name} in the update"))
            };
            (field("EventCallbackUrl"), field("EventsFilter"))
        })
        .collect()
}

/// The lifecycle's events, and reservation.accepted for known-agent routing (on by default).
const OUR_EVENTS: &str = "task.canceled,task.deleted,task.system-deleted,workflow.timeout,task.completed,reservation.accepted";

#[test]
fn taskrouter_connect_shows_its_plan_then_points_the_workspace_at_flexhook() {
    let runtime = mock_runtime();
    let twilio = runtime.block_on(wiremock::MockServer::start());
    let sandbox = workspace_sandbox(&twilio.uri());
    mock_workspace(&runtime, &twilio, None, None);

    let plan = sandbox.run(&["taskrouter", "connect", "--dry-run"]);
    assert!(plan.status.success(), "{plan:?}");
    let ours = format!("{PUBLIC_BASE}/webhooks/taskrouter");
    assert!(
        plan.stdout.contains(&format!("(none) -> {ours}")),
        "{plan:?}"
    );
    assert!(plan.stdout.contains(OUR_EVENTS), "{plan:?}");
    assert!(
        workspace_updates(&runtime, &twilio).is_empty(),
        "a dry run changes nothing"
    );

    let connect = sandbox.run(&["taskrouter", "connect"]);
    assert!(connect.status.success(), "{connect:?}");
    assert_eq!(
        workspace_updates(&runtime, &twilio),
        [(ours.clone(), OUR_EVENTS.to_owned())]
    );

    // Connected: status says so, and connecting again changes nothing.
    mock_workspace(&runtime, &twilio, Some(&ours), Some(OUR_EVENTS));
    let status = sandbox.run(&["taskrouter", "status", "--json"]);
    assert!(status.status.success(), "{status:?}");
    let doc: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(doc["reaches_flexhook"], true, "{doc:#}");
    assert_eq!(doc["missing_events"], serde_json::json!([]), "{doc:#}");
    let again = sandbox.run(&["taskrouter", "connect"]);
    assert!(again.status.success(), "{again:?}");
    assert!(again.stdout.contains("nothing to change"), "{again:?}");
    assert!(workspace_updates(&runtime, &twilio).is_empty());
}

#[test]
fn taskrouter_connect_refuses_to_take_another_systems_callback_unless_told_and_disconnect_restores_it(
) {
    let runtime = mock_runtime();
    let twilio = runtime.block_on(wiremock::MockServer::start());
    let sandbox = workspace_sandbox(&twilio.uri());
    let theirs = "https://reports.example.com/taskrouter-events";
    let their_filter = "task.created,task.completed";
    mock_workspace(&runtime, &twilio, Some(theirs), Some(their_filter));

    let refused = sandbox.run(&["taskrouter", "connect"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains(theirs),
        "names the URL: {refused:?}"
    );
    assert!(refused.stderr.contains("--replace"), "{refused:?}");
    assert!(workspace_updates(&runtime, &twilio).is_empty());

    let replaced = sandbox.run(&["taskrouter", "connect", "--replace"]);
    assert!(replaced.status.success(), "{replaced:?}");
    let ours = format!("{PUBLIC_BASE}/webhooks/taskrouter");
    // task.completed, already in their filter, is not listed twice.
    let merged =
        format!("{their_filter},task.canceled,task.deleted,task.system-deleted,workflow.timeout,reservation.accepted");
    assert_eq!(
        workspace_updates(&runtime, &twilio),
        [(ours.clone(), merged.clone())]
    );

    mock_workspace(&runtime, &twilio, Some(&ours), Some(&merged));
    let status = sandbox.run(&["taskrouter", "status"]);
    assert!(
        status.stdout.contains(theirs),
        "shows what connect replaced: {status:?}"
    );
    let plan = sandbox.run(&["taskrouter", "disconnect", "--dry-run"]);
    assert!(plan.status.success(), "{plan:?}");
    assert!(
        plan.stdout.contains(&format!("{ours} -> {theirs}")),
        "{plan:?}"
    );
    assert!(workspace_updates(&runtime, &twilio).is_empty());
    let disconnect = sandbox.run(&["taskrouter", "disconnect"]);
    assert!(disconnect.status.success(), "{disconnect:?}");
    assert_eq!(
        workspace_updates(&runtime, &twilio),
        [(theirs.to_owned(), their_filter.to_owned())]
    );

    // Once restored, flexhook no longer owns the callback: disconnect does nothing.
    mock_workspace(&runtime, &twilio, Some(theirs), Some(their_filter));
    let again = sandbox.run(&["taskrouter", "disconnect"]);
    assert!(again.status.success(), "{again:?}");
    assert!(again.stdout.contains("nothing to change"), "{again:?}");
    assert!(workspace_updates(&runtime, &twilio).is_empty());
}

#[test]
fn taskrouter_connect_without_a_public_url_names_the_setting() {
    let runtime = mock_runtime();
    let twilio = runtime.block_on(wiremock::MockServer::start());
    mock_workspace(&runtime, &twilio, None, None);
    let sandbox = workspace_sandbox(&twilio.uri());
    let mut cmd = sandbox.command(&["taskrouter", "connect"]);
    cmd.env_remove("FLEXHOOK_SERVER__PUBLIC_BASE_URL");
    let out = run(cmd);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("server.public_base_url"), "{out:?}");
    assert!(
        out.stderr.contains("FLEXHOOK_SERVER__PUBLIC_BASE_URL"),
        "{out:?}"
    );
    assert!(workspace_updates(&runtime, &twilio).is_empty());
}

// ---------------------------------------------------------------------------------------
// routes check / explain (no Twilio credentials)
// ---------------------------------------------------------------------------------------

const ROUTING_RULES: &str = r#"
[[routing.schedules]]
name = "support-hours"
timezone = "Europe/Madrid"
open = ["mon-fri 09:00-18:00"]

[[routing.rules]]
name = "closed"
when = "closed:support-hours"
reply = "We're closed."
action = "ignore"

[[routing.rules]]
name = "whatsapp-es"
match = { channel_type = ["whatsapp"], author = ["whatsapp:+34*"] }
set = { workflow_sid = "WW22222222222222222222222222222222", priority = 10, attributes = { team = "es" } }
"#;

/// Production, with a workflow but without any Twilio credential, and `rules` as --config.
fn routes_sandbox(rules: &str) -> (Sandbox, String) {
    let sandbox = Sandbox::new()
        .with("FLEXHOOK_ENV", "production")
        .with(
            "FLEXHOOK_FLEX__WORKSPACE_SID",
            "WS11111111111111111111111111111111",
        )
        .with(
            "FLEXHOOK_FLEX__WORKFLOW_SID",
            "WW11111111111111111111111111111111",
        );
    let file = sandbox.path().join("rules.toml");
    std::fs::write(&file, rules).unwrap();
    let file = file.display().to_string();
    (sandbox, file)
}

#[test]
fn routes_check_prints_the_rules_and_refuses_bad_ones_by_name() {
    let (sandbox, file) = routes_sandbox(ROUTING_RULES);
    let out = sandbox.run(&["--config", &file, "routes", "check"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains("routing rules: ok (2 rules)"),
        "{out:?}"
    );
    assert!(out.stdout.contains("closed:support-hours"), "{out:?}");
    assert!(
        out.stdout
            .contains("workflow=WW22222222222222222222222222222222"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("support-hours (Europe/Madrid): mon-fri 09:00-18:00"),
        "{out:?}"
    );

    let broken = ROUTING_RULES.replace("{ team = \"es\" }", "{ team = \"{teem}\" }");
    let (sandbox, file) = routes_sandbox(&broken);
    let out = sandbox.run(&["--config", &file, "routes", "check"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("rule `whatsapp-es`"), "{out:?}");
    assert!(out.stderr.contains("{teem}"), "{out:?}");
}

#[test]
fn routes_explain_shows_the_matching_rule_why_the_others_did_not_and_the_json() {
    let (sandbox, file) = routes_sandbox(ROUTING_RULES);
    // Monday 2026-11-23 10:00 in Madrid: open.
    let open = sandbox.run(&[
        "--config",
        &file,
        "routes",
        "explain",
        "--author",
        "whatsapp:+34600111222",
        "--at",
        "2026-11-23T10:00:00+01:00",
        "--conversation",
        "CH0000000000000000000000000000e5e5",
    ]);
    assert!(open.status.success(), "{open:?}");
    assert!(
        open.stdout
            .contains("skipped  closed: support-hours is open at the first message"),
        "{open:?}"
    );
    assert!(open.stdout.contains("matched  whatsapp-es"), "{open:?}");
    let routing: Value = serde_json::from_str(
        open.stdout
            .split("Routing  ")
            .nth(1)
            .expect("the Routing JSON"),
    )
    .unwrap();
    assert_eq!(
        routing["properties"]["workflow_sid"],
        "WW22222222222222222222222222222222"
    );
    assert_eq!(routing["properties"]["priority"], 10);
    assert_eq!(routing["properties"]["attributes"]["team"], "es");
    assert_eq!(
        routing["properties"]["attributes"]["conversationSid"],
        "CH0000000000000000000000000000e5e5"
    );

    // The same sender at 20:00: closed, a reply and no task.
    let closed = sandbox.run(&[
        "--config",
        &file,
        "routes",
        "explain",
        "--author",
        "whatsapp:+34600111222",
        "--at",
        "2026-11-23T20:00:00+01:00",
    ]);
    assert!(closed.status.success(), "{closed:?}");
    assert!(closed.stdout.contains("matched  closed"), "{closed:?}");
    assert!(
        closed.stdout.contains("reply    We're closed."),
        "{closed:?}"
    );
    assert!(closed.stdout.contains("task     none"), "{closed:?}");
    assert!(!closed.stdout.contains("Routing"), "{closed:?}");

    // An SMS in hours: no rule, the default route.
    let sms = sandbox.run(&[
        "--config",
        &file,
        "routes",
        "explain",
        "--author",
        "+14155550100",
        "--at",
        "2026-11-23T10:00:00+01:00",
    ]);
    assert!(sms.status.success(), "{sms:?}");
    assert!(
        sms.stdout
            .contains("skipped  whatsapp-es: channel type sms is not whatsapp"),
        "{sms:?}"
    );
    assert!(
        sms.stdout.contains("matched  no rule: the default route"),
        "{sms:?}"
    );
    assert!(
        sms.stdout.contains("WW11111111111111111111111111111111"),
        "{sms:?}"
    );
}

#[test]
fn every_command_has_help() {
    let sandbox = Sandbox::new();
    for (args, word) in [
        (&["--help"][..], "Twilio Conversations webhooks"),
        (&["serve", "--help"][..], "Run the service"),
        (&["sign", "--help"][..], "X-Twilio-Signature"),
        (&["simulate", "--help"][..], "onMessageAdded"),
        (&["jobs", "--help"][..], "Inspect and replay"),
        (&["jobs", "list", "--help"][..], "List jobs"),
        (&["jobs", "show", "--help"][..], "Show one conversation"),
        (
            &["jobs", "retry", "--help"][..],
            "Move dead jobs back to pending",
        ),
        (&["taskrouter", "--help"][..], "orphaned"),
        (&["taskrouter", "connect", "--help"][..], "--replace"),
        (&["taskrouter", "disconnect", "--help"][..], "Put back"),
        (&["taskrouter", "status", "--help"][..], "reaches flexhook"),
        (&["store", "--help"][..], "Copy the job store"),
        (&["store", "copy", "--help"][..], "safe to re-run"),
        (&["routes", "--help"][..], "routing rules"),
        (&["address", "--help"][..], "address configurations"),
        (&["address", "list", "--help"][..], "following every page"),
        (&["address", "get", "--help"][..], "IG SID"),
        (&["address", "create", "--help"][..], "--webhook-filter"),
        (&["address", "update", "--help"][..], "--studio-retry-count"),
        (&["address", "delete", "--help"][..], "--yes"),
        (&["address", "connect", "--help"][..], "changes nothing"),
        (
            &["address", "disconnect", "--help"][..],
            "auto-creation off",
        ),
        (&["flexflow", "list", "--help"][..], "Flex Flows"),
        (&["migrate", "--help"][..], "--yes"),
        (&["routes", "check", "--help"][..], "Validate [routing]"),
        (
            &["routes", "explain", "--help"][..],
            "Channel and Routing JSON",
        ),
        (
            &["check", "--help"][..],
            "Check the whole set-up against Twilio",
        ),
    ] {
        let out = sandbox.run(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(
            out.stdout.contains(word),
            "{args:?} mentions {word:?}: {out:?}"
        );
        assert!(out.stdout.contains("Usage: flexhook"), "{args:?}: {out:?}");
    }
}

// ---------------------------------------------------------------------------------------
// check (live mode against a mock Twilio)
// ---------------------------------------------------------------------------------------

const CHECK_SUFFIX: &str = "0000000000000000000000000000c0de";

/// A Twilio that answers every check well; `public_base_url` is the mock itself, so that
/// its `/healthz` answers too.
fn mock_healthy_twilio(runtime: &tokio::runtime::Runtime, server: &wiremock::MockServer) {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    let ws = format!("WS{CHECK_SUFFIX}");
    let base = server.uri();
    runtime.block_on(async {
        Mock::given(method("GET"))
            .and(path(format!("/v1/Workspaces/{ws}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "sid": ws,
                "event_callback_url": format!("{base}/webhooks/taskrouter"),
                "events_filter": OUR_EVENTS,
            })))
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/v1/Workspaces/{ws}/Workflows/WW{CHECK_SUFFIX}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"sid": format!("WW{CHECK_SUFFIX}"), "friendly_name": "Assign to Anyone"}),
            ))
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/v1/Workspaces/{ws}/TaskChannels")))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "channels": [{"unique_name": "default"}, {"unique_name": "chat"}, {"unique_name": "email"}],
                "meta": {"next_page_url": null},
            })))
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/Configuration/Addresses"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "address_configurations": [
                    {"address": "+15550001111", "auto_creation": {"enabled": true,
                        "webhook_url": format!("{base}/webhooks/conversations")}},
                    {"address": "+15550002222", "auto_creation": {"enabled": true,
                        "webhook_url": "https://old.example.com/webhooks/conversations"}},
                ],
                "meta": {"next_page_url": null},
            })))
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path("/healthz"))
            .respond_with(ResponseTemplate::new(200))
            .mount(server)
            .await;
    });
}

fn check_sandbox(base: &str) -> Sandbox {
    Sandbox::live(base, CHECK_SUFFIX).with("FLEXHOOK_SERVER__PUBLIC_BASE_URL", base)
}

#[test]
fn check_says_ok_for_each_line_of_a_working_set_up() {
    let runtime = mock_runtime();
    let twilio = runtime.block_on(wiremock::MockServer::start());
    mock_healthy_twilio(&runtime, &twilio);
    let sandbox = check_sandbox(&twilio.uri());

    let out = sandbox.run(&["check"]);
    assert!(out.status.success(), "{out:?}");
    for line in [
        "ok   the credentials work",
        "ok   the workspace",
        "ok   the workflow: WW",
        "ok   the task channel",
        "ok   server.public_base_url answers /healthz",
        "ok   the connected addresses: +15550001111",
        "ok   the TaskRouter event callback",
        "ok   the last reconciliation sweep: none yet",
    ] {
        assert!(out.stdout.contains(line), "{line:?} in {out:?}");
    }
    assert!(
        out.stdout
            .contains("note: +15550002222 points at another service"),
        "{out:?}"
    );

    let json = sandbox.run(&["check", "--json"]);
    assert!(json.status.success(), "{json:?}");
    let doc: Value = serde_json::from_str(&json.stdout).unwrap();
    let lines = doc.as_array().unwrap();
    assert_eq!(lines.len(), 8, "{doc:#}");
    assert!(lines.iter().all(|l| l["ok"] == true), "{doc:#}");
    assert_eq!(lines[0]["check"], "the credentials work");
}

#[test]
fn check_names_a_wrong_workflow_sid_and_the_setting_that_fixes_it() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    let runtime = mock_runtime();
    let twilio = runtime.block_on(wiremock::MockServer::start());
    runtime.block_on(async {
        Mock::given(method("GET"))
            .and(path(format!(
                "/v1/Workspaces/WS{CHECK_SUFFIX}/Workflows/WW{CHECK_SUFFIX}"
            )))
            .respond_with(ResponseTemplate::new(404).set_body_json(serde_json::json!({
                "code": 20404, "message": "The requested resource was not found", "status": 404,
            })))
            .mount(&twilio)
            .await;
    });
    mock_healthy_twilio(&runtime, &twilio);
    let sandbox = check_sandbox(&twilio.uri());

    let out = sandbox.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("ok   the credentials work"), "{out:?}");
    let expected = format!(
        "FAIL the workflow: 20404: no workflow WW{CHECK_SUFFIX} in workspace WS{CHECK_SUFFIX}: \
         fix flex.workflow_sid (FLEXHOOK_FLEX__WORKFLOW_SID"
    );
    assert!(out.stdout.contains(&expected), "{expected:?} in {out:?}");
    assert!(out.stdout.contains("ok   the task channel"), "{out:?}");
}

#[test]
fn check_with_wrong_credentials_says_which_variables_to_check() {
    use wiremock::matchers::any;
    use wiremock::{Mock, ResponseTemplate};
    let runtime = mock_runtime();
    let twilio = runtime.block_on(wiremock::MockServer::start());
    runtime.block_on(async {
        Mock::given(any())
            .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
                "code": 20003, "message": "Authenticate", "status": 401,
            })))
            .mount(&twilio)
            .await;
    });
    let sandbox = check_sandbox(&twilio.uri());

    let out = sandbox.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stdout.contains(
            "FAIL the credentials work: 20003: check TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN"
        ),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("FAIL the workflow: not checked: the credentials do not work"),
        "{out:?}"
    );
    assert!(
        !out.stdout.contains(LIVE_TOKEN) && !out.stderr.contains(LIVE_TOKEN),
        "{out:?}"
    );
}

#[test]
fn check_tries_a_rate_limited_call_again() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    let runtime = mock_runtime();
    let twilio = runtime.block_on(wiremock::MockServer::start());
    let workflow = format!("/v1/Workspaces/WS{CHECK_SUFFIX}/Workflows/WW{CHECK_SUFFIX}");
    runtime.block_on(async {
        Mock::given(method("GET"))
            .and(path(workflow.as_str()))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", "0")
                    .set_body_json(
                        serde_json::json!({"code": 20429, "message": "Too Many Requests"}),
                    ),
            )
            .up_to_n_times(2)
            .mount(&twilio)
            .await;
    });
    mock_healthy_twilio(&runtime, &twilio);
    let sandbox = check_sandbox(&twilio.uri());

    let out = sandbox.run(&["check"]);
    assert!(out.status.success(), "{out:?}");
    let calls = requests_to(&runtime, &twilio, &workflow);
    assert_eq!(calls, 3, "two 429s, then the answer");
}

#[test]
fn a_command_refused_by_twilio_for_its_credentials_says_which_variables_to_check() {
    use wiremock::matchers::any;
    use wiremock::{Mock, ResponseTemplate};
    let runtime = mock_runtime();
    let twilio = runtime.block_on(wiremock::MockServer::start());
    runtime.block_on(async {
        Mock::given(any())
            .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
                "code": 20003, "message": "Authenticate", "status": 401,
            })))
            .mount(&twilio)
            .await;
    });
    let out = workspace_sandbox(&twilio.uri()).run(&["taskrouter", "status"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("Twilio error 20003"), "{out:?}");
    assert!(
        out.stderr
            .contains("check TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN"),
        "{out:?}"
    );
}

#[test]
fn check_with_public_base_url_ngrok_uses_the_agents_tunnel() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    let runtime = mock_runtime();
    let twilio = runtime.block_on(wiremock::MockServer::start());
    // The mock stands in for the ngrok agent too, and its tunnel leads back to it.
    runtime.block_on(async {
        Mock::given(method("GET"))
            .and(path("/api/tunnels"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "tunnels": [{"public_url": twilio.uri(), "proto": "https",
                             "config": {"addr": "http://localhost:8080"}}]
            })))
            .mount(&twilio)
            .await;
    });
    mock_healthy_twilio(&runtime, &twilio);
    let sandbox = Sandbox::live(&twilio.uri(), CHECK_SUFFIX)
        .with("FLEXHOOK_SERVER__PUBLIC_BASE_URL", "ngrok")
        .with("FLEXHOOK_SERVER__NGROK_API_URL", &twilio.uri())
        .with("FLEXHOOK_SERVER__PORT", "8080");

    let out = sandbox.run(&["check"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "ok   server.public_base_url answers /healthz: {}/healthz",
            twilio.uri()
        )),
        "{out:?}"
    );

    let no_agent = Sandbox::live(&twilio.uri(), CHECK_SUFFIX)
        .with("FLEXHOOK_SERVER__PUBLIC_BASE_URL", "ngrok")
        .with("FLEXHOOK_SERVER__NGROK_API_URL", "http://127.0.0.1:9")
        .with("FLEXHOOK_SERVER__PORT", "8080");
    let out = no_agent.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("ngrok http 8080"), "{out:?}");
}

// ---------------------------------------------------------------------------------------
// several accounts
// ---------------------------------------------------------------------------------------

/// The real binary with two accounts: their tables in a `--config` file, their secrets in
/// `FLEXHOOK_ACCOUNTS__NAME__…` variables, as Fly secrets set them.
#[test]
fn two_accounts_are_served_chosen_with_account_and_listed_by_name() {
    use common::accounts::{credentials_of, ACME, BOTH, GLOBEX};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let runtime = mock_runtime();
    // globex's Flex refuses its hand-off for good (its job goes dead); acme's creates.
    let globex = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            GLOBEX.credentials()
        )
    );
    let twilio =
        runtime.block_on(async {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .and(path("/v1/Interactions"))
                .and(wiremock::matchers::header("authorization", globex.as_str()))
                .respond_with(common::twilio_error(
                    400,
                    80102,
                    "Participant already in an interaction",
                ))
                .with_priority(1)
                .mount(&server)
                .await;
            Mock::given(method("POST"))
                .and(path("/v1/Interactions"))
                .respond_with(ResponseTemplate::new(201).set_body_json(
                    common::interaction_created("CH00000000000000000000000000000000"),
                ))
                .mount(&server)
                .await;
            Mock::given(method("DELETE"))
                .respond_with(ResponseTemplate::new(204))
                .mount(&server)
                .await;
            server
        });
    let base = twilio.uri();
    let mut sandbox = Sandbox::new()
        .with("FLEXHOOK_TWILIO__FLEX_API_BASE_URL", &base)
        .with("FLEXHOOK_TWILIO__CONVERSATIONS_API_BASE_URL", &base)
        .with("FLEXHOOK_TWILIO__TASKROUTER_API_BASE_URL", &base);
    // The tables hold no secret; the variables do.
    let mut tables = String::new();
    for account in BOTH {
        tables.push_str(&format!(
            "[accounts.{}]\naccount_sid = \"{}\"\nworkspace_sid = \"{}\"\nworkflow_sid = \"{}\"\n",
            account.name, account.sid, account.workspace, account.workflow
        ));
        let var = |key: &str| format!("FLEXHOOK_ACCOUNTS__{}__{key}", account.name.to_uppercase());
        sandbox = sandbox.with(&var("AUTH_TOKEN"), account.token);
        if let Some((key, secret)) = account.api_key {
            sandbox = sandbox
                .with(&var("API_KEY"), key)
                .with(&var("API_SECRET"), secret);
        }
    }
    let file = sandbox.path().join("accounts.toml");
    std::fs::write(&file, tables).unwrap();
    let config = file.to_str().unwrap().to_owned();
    let sandbox = sandbox.with("FLEXHOOK_CONFIG", &config);

    // Which account? A command that works on one must be told, among the names there are.
    let url = "https://flexhook.example.com/webhooks/conversations";
    let unnamed = sandbox.run(&["sign", "--url", url, "--param", "A=1"]);
    assert_eq!(unnamed.status.code(), Some(1), "{unnamed:?}");
    assert!(
        unnamed.stderr.contains("--account") && unnamed.stderr.contains("acme, globex"),
        "{unnamed:?}"
    );
    let unknown = sandbox.run(&[
        "sign",
        "--account",
        "initech",
        "--url",
        url,
        "--param",
        "A=1",
    ]);
    assert!(
        !unknown.status.success() && unknown.stderr.contains("acme, globex"),
        "{unknown:?}"
    );
    // `sign` signs with the account's own token, from its variable.
    let signed = sandbox.run(&[
        "sign",
        "--account",
        "globex",
        "--url",
        url,
        "--param",
        "A=1",
    ]);
    assert!(signed.status.success(), "{signed:?}");
    let params = vec![("A".to_owned(), "1".to_owned())];
    assert!(
        signed
            .stdout
            .contains(&common::signature(GLOBEX.token, url, &params)),
        "{signed:?}"
    );
    let serve_one = sandbox.run(&["serve", "--account", "acme"]);
    assert_eq!(serve_one.status.code(), Some(2), "{serve_one:?}");

    // `serve` runs both; `simulate --account` signs and names each account's message.
    let server = sandbox.serve();
    let mut owners = std::collections::BTreeMap::new();
    let (acme_ch, globex_ch) = (
        "CH0000000000000000000000000000c001",
        "CH0000000000000000000000000000c002",
    );
    for (account, conversation, ends) in [(&ACME, acme_ch, "created"), (&GLOBEX, globex_ch, "dead")]
    {
        let out = sandbox.simulate(
            &server,
            conversation,
            &["--account", account.name, "--author", CUSTOMER],
        );
        assert!(out.status.success(), "{out:?}\n{}", server.logs());
        sandbox.wait_for_job(conversation, &[], |j| j["state"] == ends);
        owners.insert(conversation, account);
    }
    drop(server);

    // One account's jobs: shown, and retried, only under its own name.
    let elsewhere = sandbox.run(&["jobs", "show", acme_ch, "--account", "globex"]);
    assert_eq!(elsewhere.status.code(), Some(1), "{elsewhere:?}");
    let mine = sandbox.run(&["jobs", "show", acme_ch, "--account", "acme"]);
    assert!(mine.stdout.contains("account          acme"), "{mine:?}");
    let wrong = sandbox.run(&["jobs", "retry", globex_ch, "--account", "acme"]);
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    assert!(wrong.stderr.contains("account globex's"), "{wrong:?}");
    let none = sandbox.run(&["jobs", "retry", "--all-dead", "--account", "acme"]);
    assert!(none.stdout.contains("0 job(s) moved back"), "{none:?}");
    let one = sandbox.run(&["jobs", "retry", "--all-dead", "--account", "globex"]);
    assert!(one.stdout.contains("1 job(s) moved back"), "{one:?}");

    let table = sandbox.run(&["jobs", "list"]);
    assert!(table.status.success(), "{table:?}");
    for (conversation, account) in &owners {
        let row = table
            .stdout
            .lines()
            .find(|l| l.starts_with(*conversation))
            .unwrap_or_else(|| panic!("{conversation} not listed: {table:?}"));
        assert_eq!(row.split_whitespace().nth(1), Some(account.name), "{row}");
    }
    let only = sandbox.jobs_json(&["--account", "globex"]);
    assert_eq!(only.len(), 1, "{only:#?}");
    assert_eq!(only[0]["account"], "globex");
    assert_eq!(only[0]["account_sid"], GLOBEX.sid);

    // A command's own requests go out as the account it names.
    sandbox.run(&["taskrouter", "status", "--account", "globex"]);
    sandbox.run(&["address", "list", "--account", "acme"]);
    let requests = runtime.block_on(twilio.received_requests()).unwrap();
    let workspace = format!("/v1/Workspaces/{}", GLOBEX.workspace);
    let status: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path() == workspace)
        .collect();
    let listed: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path() == "/v1/Configuration/Addresses")
        .collect();
    assert!(!status.is_empty() && !listed.is_empty(), "{requests:?}");
    for r in status {
        assert_eq!(credentials_of(r), Some(GLOBEX.credentials()));
    }
    for r in listed {
        assert_eq!(credentials_of(r), Some(ACME.credentials()));
    }
    let creates: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path() == "/v1/Interactions")
        .collect();
    assert_eq!(
        creates.len(),
        2,
        "one each; the refused one is not tried again"
    );
    for create in creates {
        let body = String::from_utf8_lossy(&create.body);
        let (_, account) = owners
            .iter()
            .find(|(ch, _)| body.contains(**ch))
            .expect("a create names its conversation");
        assert_eq!(credentials_of(create), Some(account.credentials()));
    }
}

/// `check` checks every account, one block each, and says which line is whose.
#[test]
fn check_checks_every_account_in_a_block_of_its_own() {
    use common::accounts::BOTH;

    let mut sandbox = Sandbox::new()
        .with("FLEXHOOK_TWILIO__FLEX_API_BASE_URL", "http://127.0.0.1:9")
        .with(
            "FLEXHOOK_TWILIO__CONVERSATIONS_API_BASE_URL",
            "http://127.0.0.1:9",
        )
        .with(
            "FLEXHOOK_TWILIO__TASKROUTER_API_BASE_URL",
            "http://127.0.0.1:9",
        )
        .with("FLEXHOOK_TWILIO__REQUEST_TIMEOUT_MS", "500");
    let tables: String = BOTH.iter().map(|a| a.table()).collect();
    let file = sandbox.path().join("accounts.toml");
    std::fs::write(&file, tables).unwrap();
    let config = file.to_str().unwrap().to_owned();
    sandbox = sandbox.with("FLEXHOOK_CONFIG", &config);

    let out = sandbox.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "nothing answers: {out:?}");
    let acme = out.stdout.find("account acme:").expect("acme's block");
    let globex = out.stdout.find("account globex:").expect("globex's block");
    assert!(acme < globex, "{out:?}");
    assert_eq!(
        out.stdout.matches("the credentials work").count(),
        2,
        "{out:?}"
    );

    let json = sandbox.run(&["check", "--json"]);
    let lines: Vec<Value> = serde_json::from_str(&json.stdout).expect("check --json is JSON");
    for account in BOTH {
        assert!(
            lines.iter().any(|l| l["account"] == account.name),
            "{}: {lines:#?}",
            account.name
        );
    }
    let one = sandbox.run(&["check", "--account", "globex", "--json"]);
    let lines: Vec<Value> = serde_json::from_str(&one.stdout).expect("check --json is JSON");
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l["account"] == "globex"),
        "{lines:#?}"
    );
}
