//! `flexhook taskrouter connect|disconnect|status`: point the Flex workspace's event
//! callback at flexhook (so that orphaned conversations are closed), put back what was
//! there before, and show what the workspace has now. Needs Twilio credentials,
//! `flex.workspace_sid` and, to connect, `server.public_base_url`; no workflow.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::config::Settings;
use crate::domain::WebhookRoute;
use crate::domain::WorkspaceSid;
use crate::event::task::wanted_events;
use crate::store::{Store, StoreOptions, WorkspaceCallback};
use crate::twilio::TwilioClient;

/// The route TaskRouter's events go to.
const ROUTE: WebhookRoute = WebhookRoute::Taskrouter;

#[derive(Debug, Args)]
pub struct TaskrouterArgs {
    #[command(subcommand)]
    pub command: TaskrouterCommand,
}

#[derive(Debug, Subcommand)]
pub enum TaskrouterCommand {
    /// Send the workspace's events to server.public_base_url + /webhooks/taskrouter.
    Connect {
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Take over a callback URL that another system uses (disconnect restores it).
        #[arg(long)]
        replace: bool,
    },
    /// Put back the callback URL and filter the workspace had before connect.
    Disconnect {
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the workspace's event callback, and whether it reaches flexhook.
    Status {
        /// As one JSON document.
        #[arg(long)]
        json: bool,
    },
}

struct Context {
    client: TwilioClient,
    store: Store,
    workspace: WorkspaceSid,
    /// The events flexhook acts on, with these settings.
    events: Vec<&'static str>,
}

/// The events flexhook acts on with these settings (see [`wanted_events`]).
pub(crate) fn events_of(settings: &Settings) -> Vec<&'static str> {
    wanted_events(settings.routing.known_agent_within.is_some())
}

async fn context(settings: &Settings) -> anyhow::Result<Context> {
    let twilio = settings.twilio()?;
    let workspace = settings.workspace_sid()?;
    let store_config = settings.store()?;
    let store = Store::open(
        &store_config.url,
        &StoreOptions {
            busy_timeout: store_config.busy_timeout,
            clock: crate::clock::Clock::system(),
        },
    )
    .await?;
    Ok(Context {
        client: TwilioClient::new(&twilio)?.with_cli_retries(),
        store,
        workspace,
        events: events_of(settings),
    })
}

/// `server.public_base_url` + the route, or an error naming the key.
fn target_url(settings: &Settings) -> anyhow::Result<String> {
    match settings.server.public_base_url.as_deref() {
        Some(base) => Ok(ROUTE.url(base)),
        None => anyhow::bail!(
            "server.public_base_url is not set ({}): it is the URL TaskRouter would call",
            crate::config::env_vars_for("server.public_base_url")
        ),
    }
}

/// The existing filter's events, then those of `wanted` that it lacks.
pub(crate) fn merged_filter(existing: Option<&str>, wanted: &[&str]) -> String {
    let mut events: Vec<String> = existing
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    for ours in wanted {
        if !events.iter().any(|e| e == ours) {
            events.push((*ours).to_owned());
        }
    }
    events.join(",")
}

/// The events of `wanted` an `EventsFilter` leaves out (none when unset: every event).
pub(crate) fn missing_events<'a>(filter: Option<&str>, wanted: &[&'a str]) -> Vec<&'a str> {
    let Some(filter) = filter else {
        return Vec::new();
    };
    let listed: Vec<&str> = filter.split(',').map(str::trim).collect();
    wanted
        .iter()
        .copied()
        .filter(|e| !listed.contains(e))
        .collect()
}

fn shown(value: Option<&str>) -> &str {
    value.unwrap_or("(none)")
}

pub async fn run(settings: &Settings, args: &TaskrouterArgs) -> anyhow::Result<ExitCode> {
    let ctx = context(settings).await?;
    let code = match &args.command {
        TaskrouterCommand::Connect { dry_run, replace } => {
            connect(&ctx, &target_url(settings)?, *dry_run, *replace).await?
        }
        TaskrouterCommand::Disconnect { dry_run } => {
            disconnect(
                &ctx,
                settings
                    .server
                    .public_base_url
                    .is_some()
                    .then(|| target_url(settings))
                    .transpose()?,
                *dry_run,
            )
            .await?
        }
        TaskrouterCommand::Status { json } => {
            status(&ctx, target_url(settings).ok(), *json).await?
        }
    };
    ctx.store.close().await;
    Ok(code)
}

async fn connect(
    ctx: &Context,
    target: &str,
    dry_run: bool,
    replace: bool,
) -> anyhow::Result<ExitCode> {
    let (url, filter) = ctx.client.workspace_callback(&ctx.workspace).await?;
    let ours = url.as_deref() == Some(target);
    if let (Some(other), false, false) = (&url, ours, replace) {
        eprintln!(
            "workspace {} already sends its events to {other}, and another system may rely on them.\n\
             Run `flexhook taskrouter connect --replace` to send them to flexhook instead; \
             `flexhook taskrouter disconnect` puts {other} back.",
            ctx.workspace
        );
        return Ok(ExitCode::from(1));
    }
    let new_filter = merged_filter(filter.as_deref(), &ctx.events);
    println!("workspace {}", ctx.workspace);
    if ours && filter.as_deref() == Some(new_filter.as_str()) {
        println!("nothing to change: its events already reach {target}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("  EventCallbackUrl  {} -> {target}", shown(url.as_deref()));
    println!(
        "  EventsFilter      {} -> {new_filter}",
        shown(filter.as_deref())
    );
    if dry_run || ctx.client.is_dry_run() {
        println!("dry run: nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }
    if !ours {
        ctx.store
            .remember_callback(
                &ctx.workspace,
                &WorkspaceCallback {
                    url: url.clone(),
                    filter: filter.clone(),
                },
            )
            .await?;
    }
    ctx.client
        .set_workspace_callback(&ctx.workspace, target, &new_filter)
        .await?;
    println!("connected: `flexhook taskrouter disconnect` puts the previous callback back");
    Ok(ExitCode::SUCCESS)
}

async fn disconnect(
    ctx: &Context,
    target: Option<String>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let (url, filter) = ctx.client.workspace_callback(&ctx.workspace).await?;
    let pointed_here = match (&url, &target) {
        (Some(u), Some(t)) => u == t,
        (Some(u), None) => u.ends_with(ROUTE.path()),
        (None, _) => false,
    };
    println!("workspace {}", ctx.workspace);
    if !pointed_here {
        println!(
            "nothing to change: its events go to {}, not to flexhook",
            shown(url.as_deref())
        );
        return Ok(ExitCode::SUCCESS);
    }
    let previous = ctx
        .store
        .remembered_callback(&ctx.workspace)
        .await?
        .unwrap_or_default();
    println!(
        "  EventCallbackUrl  {} -> {}",
        shown(url.as_deref()),
        shown(previous.url.as_deref())
    );
    println!(
        "  EventsFilter      {} -> {}",
        shown(filter.as_deref()),
        shown(previous.filter.as_deref())
    );
    if dry_run || ctx.client.is_dry_run() {
        println!("dry run: nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }
    ctx.client
        .set_workspace_callback(
            &ctx.workspace,
            previous.url.as_deref().unwrap_or_default(),
            previous.filter.as_deref().unwrap_or_default(),
        )
        .await?;
    ctx.store.forget_callback(&ctx.workspace).await?;
    println!("disconnected");
    Ok(ExitCode::SUCCESS)
}

async fn status(ctx: &Context, target: Option<String>, as_json: bool) -> anyhow::Result<ExitCode> {
    let (url, filter) = ctx.client.workspace_callback(&ctx.workspace).await?;
    let reaches_flexhook = target.is_some() && url == target;
    let missing = missing_events(filter.as_deref(), &ctx.events);
    let previous = ctx.store.remembered_callback(&ctx.workspace).await?;
    if as_json {
        let doc = json!({
            "workspace_sid": ctx.workspace.as_str(),
            "event_callback_url": url,
            "events_filter": filter,
            "reaches_flexhook": reaches_flexhook,
            "missing_events": missing,
            "previous": previous.map(|p| json!({"event_callback_url": p.url, "events_filter": p.filter})),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("workspace          {}", ctx.workspace);
        println!("EventCallbackUrl   {}", shown(url.as_deref()));
        println!(
            "EventsFilter       {}",
            filter.as_deref().unwrap_or("(every event)")
        );
        println!(
            "reaches flexhook   {}",
            match (&target, reaches_flexhook) {
                (None, _) => "unknown: server.public_base_url is not set".to_owned(),
                (Some(_), true) if missing.is_empty() => "yes".to_owned(),
                (Some(_), true) => format!("yes, but the filter lacks {}", missing.join(", ")),
                (Some(t), false) =>
                    format!("no (flexhook's is {t}): run `flexhook taskrouter connect`"),
            }
        );
        if let Some(p) = previous {
            println!(
                "before connect     {} ({})",
                shown(p.url.as_deref()),
                p.filter.as_deref().unwrap_or("every event")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_keeps_what_was_there_and_adds_only_what_is_missing() {
        let lifecycle = wanted_events(false);
        assert_eq!(
            merged_filter(None, &lifecycle),
            "task.canceled,task.deleted,task.system-deleted,workflow.timeout,task.completed"
        );
        assert_eq!(
            merged_filter(Some("task.created, task.canceled"), &lifecycle),
            "task.created,task.canceled,task.deleted,task.system-deleted,workflow.timeout,task.completed"
        );
        // A filter that predates task.completed is reported as lacking it.
        let old = "task.canceled,task.deleted,task.system-deleted,workflow.timeout";
        assert_eq!(missing_events(Some(old), &lifecycle), ["task.completed"]);
        // Known-agent routing also wants reservation.accepted.
        let known = wanted_events(true);
        assert_eq!(
            missing_events(Some(&merged_filter(None, &lifecycle)), &known),
            ["reservation.accepted"]
        );
        assert!(merged_filter(Some(old), &known).ends_with("task.completed,reservation.accepted"));
    }
}
