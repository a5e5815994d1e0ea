//! `flexhook check`: the whole set-up checked against Twilio, one line per check, each
//! either `ok` or what to fix and how. It reports problems rather than refusing to run,
//! so it reads the settings it needs one by one instead of validating them all.

use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::config::{env_vars_for, Api, Settings};
use crate::domain::WebhookRoute;
use crate::domain::{WorkflowSid, WorkspaceSid};
use crate::twilio::{TwilioClient, TwilioError, CREDENTIALS_HINT};

/// How long `/healthz` may take to answer.
const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// As one JSON document: a list of {check, ok, detail, notes}.
    #[arg(long)]
    pub json: bool,
}

/// One line of the checklist.
#[derive(Debug, Serialize)]
struct Line {
    /// The account it checks (filled in once its block is done).
    account: String,
    check: &'static str,
    ok: bool,
    detail: String,
    /// Worth knowing, but not a failure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

impl Line {
    fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            account: String::new(),
            check,
            ok: true,
            detail: detail.into(),
            notes: Vec::new(),
        }
    }

    fn fail(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            ok: false,
            ..Self::ok(check, detail)
        }
    }
}

const CREDENTIALS: &str = "the credentials work";
const WORKSPACE: &str = "the workspace";
const WORKFLOW: &str = "the workflow";
const TASK_CHANNEL: &str = "the task channel";
const HEALTHZ: &str = "server.public_base_url answers /healthz";
const ADDRESSES: &str = "the connected addresses";
const CALLBACK: &str = "the TaskRouter event callback";
const SWEEP: &str = "the last reconciliation sweep";

/// `fix KEY (ENV)`.
fn fix(key: &str) -> String {
    let vars = env_vars_for(key);
    format!("fix {key} ({})", vars.trim_start_matches("set by "))
}

/// A Twilio failure as a line's detail: its code, what was not found, and what to do.
fn failure(e: &TwilioError, not_found: &str, key: &str) -> String {
    match (e.code(), e.status()) {
        (Some(20404), _) | (None, Some(404)) => {
            format!("{}: {not_found}: {}", e.code().unwrap_or(20404), fix(key))
        }
        _ if e.is_bad_credentials() => format!("20003: {CREDENTIALS_HINT}"),
        _ => match e.hint() {
            Some(hint) => format!("{e}: {hint}"),
            None => e.to_string(),
        },
    }
}

/// Checks every account (or only `--account NAME`'s), one block each.
pub async fn run(settings: &Settings, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let names: Vec<String> = match &settings.account {
        // An unknown name is refused, with the names there are.
        Some(_) => vec![settings.account_name()?],
        None => settings
            .account_names()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    };
    let several = names.len() > 1;
    let mut lines = Vec::new();
    for name in names {
        let one = Settings {
            account: Some(name.clone()),
            ..settings.clone()
        };
        let mut block = checklist(&one).await;
        block.push(last_sweep(&one).await);
        if several && !args.json {
            println!("account {name}:");
        }
        for mut line in block {
            line.account = name.clone();
            if !args.json {
                let mark = if line.ok { "ok  " } else { "FAIL" };
                println!("{mark} {}: {}", line.check, line.detail);
                for note in &line.notes {
                    println!("     note: {note}");
                }
            }
            lines.push(line);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
    }
    Ok(if lines.iter().all(|l| l.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn checklist(settings: &Settings) -> Vec<Line> {
    let base = settings
        .server
        .public_base_url
        .as_deref()
        .map(|b| b.trim().trim_end_matches('/').to_owned());
    let (base, healthz) = match base {
        Some(_) if settings.server.wants_ngrok() => {
            let server = &settings.server;
            match crate::ngrok::public_url(&server.ngrok_api_url, server.port).await {
                Ok(url) => {
                    let line = healthz(Some(&url)).await;
                    (Some(url), line)
                }
                Err(e) => (None, Line::fail(HEALTHZ, format!("{e:#}"))),
            }
        }
        b => {
            let line = healthz(b.as_deref()).await;
            (b, line)
        }
    };
    let client = match settings
        .twilio()
        .map_err(|e| e.to_string())
        .and_then(|t| TwilioClient::new(&t).map_err(|e| e.to_string()))
    {
        Ok(c) if !c.is_dry_run() => c.with_cli_retries(),
        Ok(_) => return not_checked(format!("no Twilio account: {CREDENTIALS_HINT}"), healthz),
        Err(e) => return not_checked(e, healthz),
    };
    let account = match settings.raw_account() {
        Ok(account) => account,
        Err(e) => return not_checked(e.to_string(), healthz),
    };
    let workspace_key = account.keys.flex("workspace_sid");
    let workflow_key = account.keys.flex("workflow_sid");
    let workspace = account
        .flex
        .workspace_sid
        .as_deref()
        .ok_or_else(|| format!("{workspace_key} is not set"))
        .and_then(|s| WorkspaceSid::parse(s.trim()).map_err(|e| e.to_string()));
    let workflow = account
        .flex
        .workflow_sid
        .as_deref()
        .ok_or_else(|| format!("{workflow_key} is not set"))
        .and_then(|s| WorkflowSid::parse(s.trim()).map_err(|e| e.to_string()));

    // The first call answers whether the credentials work.
    let fetched = match &workspace {
        Ok(ws) => Some(client.workspace_callback(ws).await),
        Err(_) => None,
    };
    let addresses = match &fetched {
        Some(Err(e)) if e.is_bad_credentials() => None,
        _ => Some(client.address_webhook_urls().await),
    };
    let first_error = match (&fetched, &addresses) {
        (Some(Err(e)), _) | (None, Some(Err(e))) => Some(e),
        _ => None,
    };
    match first_error {
        Some(e) if e.is_bad_credentials() => {
            return not_checked(format!("20003: {CREDENTIALS_HINT}"), healthz)
        }
        Some(e @ (TwilioError::Connect(_) | TwilioError::Timeout(_))) => {
            return not_checked(format!("Twilio did not answer: {e}"), healthz)
        }
        _ => {}
    }

    let mut lines = vec![Line::ok(CREDENTIALS, "Twilio accepted them")];
    let callback = match (&workspace, fetched) {
        (Err(e), _) => {
            lines.push(Line::fail(
                WORKSPACE,
                format!("{e}: {}", fix(&workspace_key)),
            ));
            None
        }
        (Ok(ws), Some(Err(e))) => {
            lines.push(Line::fail(
                WORKSPACE,
                failure(&e, &format!("no workspace {ws}"), &workspace_key),
            ));
            None
        }
        (Ok(ws), Some(Ok(callback))) => {
            lines.push(Line::ok(WORKSPACE, ws.to_string()));
            Some(callback)
        }
        (Ok(_), None) => unreachable!("the workspace is fetched when its SID parses"),
    };
    let found = callback.is_some();
    lines.push(match (&workspace, &workflow) {
        (_, Err(e)) => Line::fail(WORKFLOW, format!("{e}: {}", fix(&workflow_key))),
        (Err(_), Ok(_)) => Line::fail(WORKFLOW, "not checked: no workspace"),
        (Ok(ws), Ok(ww)) => match client.workflow_name(ws, ww).await {
            Ok(name) if name.is_empty() => Line::ok(WORKFLOW, ww.to_string()),
            Ok(name) => Line::ok(WORKFLOW, format!("{ww} ({name})")),
            Err(e) => Line::fail(
                WORKFLOW,
                failure(
                    &e,
                    &format!("no workflow {ww} in workspace {ws}"),
                    &workflow_key,
                ),
            ),
        },
    });
    lines.push(match &workspace {
        Ok(ws) if found => {
            let key = account.keys.flex("task_channel");
            task_channel(
                &client,
                ws,
                &account.flex.task_channel,
                &key,
                &workspace_key,
            )
            .await
        }
        _ => Line::fail(TASK_CHANNEL, "not checked: no workspace"),
    });
    lines.push(healthz);
    lines.push(match addresses {
        Some(Ok(list)) => connected_addresses(base.as_deref(), &list),
        Some(Err(e)) => Line::fail(
            ADDRESSES,
            failure(&e, "no address list", Api::Conversations.key()),
        ),
        None => Line::fail(ADDRESSES, "not checked"),
    });
    lines.push(match callback {
        Some((url, filter)) => event_callback(
            base.as_deref(),
            url,
            filter,
            &super::taskrouter::events_of(settings),
        ),
        None => Line::fail(CALLBACK, "not checked: no workspace"),
    });
    lines
}

/// What the account's last reconciliation sweep found, from the store.
async fn last_sweep(settings: &Settings) -> Line {
    let account = settings
        .raw_account()
        .ok()
        .and_then(|a| a.twilio.account_sid)
        .map(|sid| sid.trim().to_owned());
    let Some(account) = account else {
        return Line::ok(SWEEP, "not checked: no Twilio account");
    };
    let status = match read_sweep(settings, &account).await {
        Ok(status) => status.unwrap_or_default(),
        Err(e) => return Line::fail(SWEEP, format!("could not read the store: {e:#}")),
    };
    let interval = settings.reconcile().ok().and_then(|r| r.interval);
    let Some(success) = status.last_success_at else {
        return match status.last_error {
            Some(error) => Line::fail(SWEEP, format!("no sweep has succeeded yet: {error}")),
            None => {
                let mut line = Line::ok(SWEEP, "none yet");
                line.notes.push(
                    "the service sweeps at start-up and every reconcile.interval; `flexhook reconcile` sweeps now"
                        .into(),
                );
                line
            }
        };
    };
    let findings: Vec<crate::reconcile::Finding> = status
        .last_findings
        .as_deref()
        .and_then(|f| serde_json::from_str(f).ok())
        .unwrap_or_default();
    let when = jiff::Timestamp::from_millisecond(success)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let mut line = Line::ok(
        SWEEP,
        format!("{when}: {}", crate::reconcile::summarize(&findings)),
    );
    line.notes = findings.iter().take(10).map(ToString::to_string).collect();
    if let Some(error) = status.last_error {
        line = Line::fail(
            SWEEP,
            format!("the latest sweep failed: {error}; {}", line.detail),
        );
    } else if let Some(interval) = interval {
        let age =
            Duration::from_millis(u64::try_from(crate::store::now_ms() - success).unwrap_or(0));
        if age > interval * 3 {
            line = Line::fail(
                SWEEP,
                format!(
                    "no successful sweep for {} (3 × reconcile.interval): is the service running? {}",
                    humantime::format_duration(Duration::from_secs(age.as_secs())),
                    line.detail
                ),
            );
        }
    }
    line
}

async fn read_sweep(
    settings: &Settings,
    account: &str,
) -> anyhow::Result<Option<crate::store::SweepStatus>> {
    let config = settings.store()?;
    if config.url.backend() == Some(crate::domain::Backend::Sqlite) {
        // No store yet: nothing swept, and `check` creates none.
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(config.url.expose())?;
        if !options.get_filename().exists() {
            return Ok(None);
        }
    }
    let store = crate::store::Store::open(
        &config.url,
        &crate::store::StoreOptions {
            busy_timeout: config.busy_timeout,
            clock: crate::clock::Clock::system(),
        },
    )
    .await?;
    let status = store.sweep_status(account).await;
    store.close().await;
    Ok(status?)
}

/// The credentials failed (or there are none): every Twilio line says so.
fn not_checked(why: impl Into<String>, healthz: Line) -> Vec<Line> {
    let mut lines = vec![Line::fail(CREDENTIALS, why)];
    for check in [WORKSPACE, WORKFLOW, TASK_CHANNEL] {
        lines.push(Line::fail(
            check,
            "not checked: the credentials do not work",
        ));
    }
    lines.push(healthz);
    for check in [ADDRESSES, CALLBACK] {
        lines.push(Line::fail(
            check,
            "not checked: the credentials do not work",
        ));
    }
    lines
}

async fn task_channel(
    client: &TwilioClient,
    workspace: &WorkspaceSid,
    wanted: &str,
    key: &str,
    workspace_key: &str,
) -> Line {
    match client.task_channel_names(workspace).await {
        Ok(names) => {
            let mut line = if names.iter().any(|n| n == wanted) {
                Line::ok(TASK_CHANNEL, format!("`{wanted}` is in {workspace}"))
            } else {
                Line::fail(
                    TASK_CHANNEL,
                    format!(
                        "no task channel `{wanted}` in workspace {workspace} (it has {}): {}",
                        names.join(", "),
                        fix(key)
                    ),
                )
            };
            if !names.iter().any(|n| n == "email") {
                line.notes
                    .push("no `email` task channel: e-mail routing needs one".to_owned());
            }
            line
        }
        Err(e) => Line::fail(
            TASK_CHANNEL,
            failure(&e, &format!("no workspace {workspace}"), workspace_key),
        ),
    }
}

async fn healthz(base: Option<&str>) -> Line {
    let Some(base) = base else {
        return Line::fail(
            HEALTHZ,
            format!(
                "server.public_base_url is not set ({}): it is the URL Twilio calls",
                env_vars_for("server.public_base_url")
            ),
        );
    };
    let url = format!("{base}/healthz");
    let answer = match reqwest::Client::builder().timeout(HEALTHZ_TIMEOUT).build() {
        Ok(http) => http.get(&url).send().await,
        Err(e) => return Line::fail(HEALTHZ, e.to_string()),
    };
    match answer {
        Ok(r) if r.status().is_success() => Line::ok(HEALTHZ, url),
        Ok(r) => Line::fail(
            HEALTHZ,
            format!(
                "{url} answered {}: is flexhook serving there? {}",
                r.status(),
                fix("server.public_base_url")
            ),
        ),
        Err(e) => Line::fail(
            HEALTHZ,
            format!(
                "{url} did not answer ({e}): start `flexhook serve` (and the tunnel), or {}",
                fix("server.public_base_url")
            ),
        ),
    }
}

/// Ok when at least one enabled address sends its conversations to this service; the
/// others are notes, and a flexhook route on another host is named as such.
fn connected_addresses(base: Option<&str>, list: &[(String, Option<String>, bool)]) -> Line {
    let Some(base) = base else {
        return Line::fail(ADDRESSES, "not checked: server.public_base_url is not set");
    };
    let ours = WebhookRoute::Conversations.url(base);
    let mut connected = Vec::new();
    let mut notes = Vec::new();
    for (address, url, enabled) in list {
        match url.as_deref() {
            Some(u) if u.starts_with(&ours) && *enabled => connected.push(address.as_str()),
            Some(u) if u.starts_with(&ours) => notes.push(format!(
                "{address} points here but its auto-creation is off"
            )),
            Some(u) if u.contains(WebhookRoute::Conversations.path()) => {
                notes.push(format!("{address} points at another service: {u}"))
            }
            Some(u) => notes.push(format!("{address} points elsewhere: {u}")),
            None => notes.push(format!("{address} has no webhook")),
        }
    }
    let mut line = if connected.is_empty() {
        Line::fail(
            ADDRESSES,
            format!("no address sends its messages to {ours}: run `flexhook address connect`"),
        )
    } else {
        Line::ok(ADDRESSES, connected.join(", "))
    };
    line.notes = notes;
    line
}

fn event_callback(
    base: Option<&str>,
    url: Option<String>,
    filter: Option<String>,
    wanted: &[&str],
) -> Line {
    let Some(base) = base else {
        return Line::fail(CALLBACK, "not checked: server.public_base_url is not set");
    };
    let ours = WebhookRoute::Taskrouter.url(base);
    if url.as_deref() != Some(ours.as_str()) {
        return Line::fail(
            CALLBACK,
            format!(
                "events go to {}, not {ours}: run `flexhook taskrouter connect`",
                url.as_deref().unwrap_or("(none)")
            ),
        );
    }
    let missing = super::taskrouter::missing_events(filter.as_deref(), wanted);
    if missing.is_empty() {
        Line::ok(CALLBACK, ours)
    } else {
        Line::fail(
            CALLBACK,
            format!(
                "the filter lacks {}: run `flexhook taskrouter connect`",
                missing.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_elsewhere_are_notes_and_a_flexhook_on_another_host_is_named() {
        let base = Some("https://flexhook.example.com");
        let list = vec![
            (
                "+1555".to_owned(),
                Some("https://flexhook.example.com/webhooks/conversations".to_owned()),
                true,
            ),
            (
                "+1666".to_owned(),
                Some("https://staging.example.com/webhooks/conversations".to_owned()),
                true,
            ),
            (
                "+1777".to_owned(),
                Some("https://studio.example.com/x".to_owned()),
                true,
            ),
        ];
        let line = connected_addresses(base, &list);
        assert!(line.ok, "{line:?}");
        assert_eq!(line.detail, "+1555");
        assert!(
            line.notes[0].contains("points at another service"),
            "{line:?}"
        );
        assert!(line.notes[1].contains("points elsewhere"), "{line:?}");
        let none = connected_addresses(base, &list[1..]);
        assert!(!none.ok);
        assert!(none.detail.contains("flexhook address connect"), "{none:?}");
    }
}
