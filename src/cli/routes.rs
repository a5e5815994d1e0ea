//! `flexhook routes check|explain`: the routing rules as flexhook reads them, and what it
//! would decide for a given sender, address and time, down to the exact `Channel` and
//! `Routing` JSON. Reads only `[flex]` and `[routing]`: no Twilio credentials needed.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::{FlexConfig, RoutingConfig, RuleConfig, Settings};
use crate::domain::{ConversationSid, CustomerAddress, WorkerSid};
use crate::routing::{LastWorker, Router, RoutingInput};
use crate::twilio::InteractionRequest;

#[derive(Debug, Args)]
pub struct RoutesArgs {
    #[command(subcommand)]
    pub command: RoutesCommand,
}

#[derive(Debug, Subcommand)]
pub enum RoutesCommand {
    /// Validate [routing] and print the rules, in the order they are tried.
    Check,
    /// Show which rule a first message would match, why the rules before it did not, and
    /// the Channel and Routing JSON that would be sent to Flex.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The customer's address, e.g. whatsapp:+34600111222
    #[arg(long)]
    author: String,
    /// The address the customer wrote to, e.g. whatsapp:+15550001111
    #[arg(long)]
    address: Option<String>,
    /// When the first message was sent (RFC 3339); default: now
    #[arg(long)]
    at: Option<String>,
    /// The conversation's attributes, as a JSON object
    #[arg(long)]
    attributes: Option<String>,
    /// The conversation (CH…); default: a placeholder
    #[arg(long)]
    conversation: Option<String>,
    /// The agent known for this customer (WK…), as known-agent routing would find them
    /// (routing.known_agent_within); default: none
    #[arg(long)]
    last_worker: Option<String>,
}

pub fn run(settings: &Settings, args: &RoutesArgs) -> anyhow::Result<ExitCode> {
    // The rules are the same for every account: `check` lists them all, each with its
    // `account=` condition; `explain` decides as one account's worker would.
    let wanted = settings.account.clone().or_else(|| {
        matches!(args.command, RoutesCommand::Check).then(|| settings.account_names()[0].to_owned())
    });
    let (account, flex, routing) = match settings.routes_of(wanted.as_deref()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    match &args.command {
        RoutesCommand::Check => {
            check(&flex, &routing);
            Ok(ExitCode::SUCCESS)
        }
        RoutesCommand::Explain(args) => explain(&flex, &routing, &account, args),
    }
}

fn conditions(rule: &RuleConfig) -> String {
    let mut parts = Vec::new();
    if let Some(w) = &rule.when {
        parts.push(format!(
            "{}:{}",
            if w.open { "open" } else { "closed" },
            w.schedule.name()
        ));
    }
    if !rule.accounts.is_empty() {
        parts.push(format!("account={}", rule.accounts.join("|")));
    }
    if !rule.channel_types.is_empty() {
        let types: Vec<&str> = rule.channel_types.iter().map(|c| c.as_str()).collect();
        parts.push(format!("channel_type={}", types.join("|")));
    }
    if !rule.addresses.is_empty() {
        parts.push(format!("address={}", rule.addresses.join("|")));
    }
    if !rule.authors.is_empty() {
        parts.push(format!("author={}", rule.authors.join("|")));
    }
    for (k, v) in &rule.attributes {
        parts.push(format!("attributes.{k}={v}"));
    }
    if let Some(known) = rule.known_agent {
        parts.push(format!("known_agent={known}"));
    }
    if parts.is_empty() {
        "(every conversation)".into()
    } else {
        parts.join(" ")
    }
}

fn effects(rule: &RuleConfig) -> String {
    if rule.ignore {
        return "no task".into();
    }
    let s = &rule.set;
    let mut parts = Vec::new();
    if let Some(w) = &s.workflow_sid {
        parts.push(format!("workflow={w}"));
    }
    if let Some(t) = &s.task_channel {
        parts.push(format!("task_channel={t}"));
    }
    if let Some(p) = s.priority {
        parts.push(format!("priority={p}"));
    }
    if let Some(t) = s.timeout_secs {
        parts.push(format!("timeout={t}s"));
    }
    if !s.attributes.is_empty() {
        parts.push(format!(
            "attributes={}",
            serde_json::Value::Object(s.attributes.clone())
        ));
    }
    if parts.is_empty() {
        "the default route".into()
    } else {
        parts.join(" ")
    }
}

fn check(flex: &FlexConfig, routing: &RoutingConfig) {
    println!("routing rules: ok ({} rules)", routing.rules.len());
    println!(
        "default route: workflow={} task_channel={} (email: email)",
        flex.workflow_sid, flex.task_channel
    );
    if routing.rules.is_empty() {
        println!("no [[routing.rules]]: every conversation takes the default route");
        return;
    }
    println!(
        "{:<3}  {:<20}  {:<50}  {:<40}  REPLY",
        "#", "RULE", "MATCHES", "DOES"
    );
    for (i, rule) in routing.rules.iter().enumerate() {
        println!(
            "{:<3}  {:<20}  {:<50}  {:<40}  {}",
            i + 1,
            rule.name,
            conditions(rule),
            effects(rule),
            rule.reply.as_deref().unwrap_or("-")
        );
    }
    let mut seen = Vec::new();
    for rule in &routing.rules {
        if let Some(w) = &rule.when {
            if !seen.contains(&w.schedule.name().to_owned()) {
                seen.push(w.schedule.name().to_owned());
                println!("schedule {}", w.schedule);
            }
        }
    }
}

fn explain(
    flex: &FlexConfig,
    routing: &RoutingConfig,
    account: &str,
    args: &ExplainArgs,
) -> anyhow::Result<ExitCode> {
    let (at, attributes, conversation) = (
        args.at.as_deref(),
        args.attributes.as_deref(),
        args.conversation.as_deref(),
    );
    let last_worker = match args.last_worker.as_deref() {
        None => None,
        Some(raw) => Some(LastWorker {
            worker_sid: Some(
                WorkerSid::parse(raw.trim()).map_err(|e| anyhow::anyhow!("--last-worker: {e}"))?,
            ),
            at_ms: Some(crate::store::now_ms()),
        }),
    };
    let at_ms = match at {
        None => crate::store::now_ms(),
        Some(raw) => {
            let t = humantime::parse_rfc3339_weak(raw.trim())
                .or_else(|_| {
                    // An offset such as +01:00: turn it into UTC first.
                    parse_with_offset(raw.trim()).ok_or(())
                })
                .map_err(|()| anyhow::anyhow!("--at `{raw}` is not an RFC 3339 time"))?;
            i64::try_from(
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_err(|_| anyhow::anyhow!("--at `{raw}` is before 1970"))?
                    .as_millis(),
            )?
        }
    };
    let attributes = match attributes {
        None => None,
        Some(raw) => match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(v @ serde_json::Value::Object(_)) => Some(v),
            _ => anyhow::bail!("--attributes must be a JSON object, e.g. '{{\"vip\":true}}'"),
        },
    };
    let conversation = match conversation {
        Some(c) => {
            ConversationSid::parse(c.trim()).map_err(|e| anyhow::anyhow!("--conversation: {e}"))?
        }
        None => ConversationSid::parse(&format!("CH{}", "0".repeat(32)))?,
    };
    let author = CustomerAddress::new(&args.author);
    let input = RoutingInput {
        channel_type: author.channel_type(),
        customer_address: Some(author),
        proxy_address: None,
        source: None,
        address: args.address.clone(),
        attributes,
        at_ms: Some(at_ms),
        body: None,
        last_worker,
    };
    let router = Router::new(flex, routing, account);
    let decision = router.decide(&conversation, &input, at_ms);
    for skipped in &decision.skipped {
        println!("skipped  {}: {}", skipped.rule, skipped.why);
    }
    match &decision.rule {
        Some(rule) => println!("matched  {rule}"),
        None => println!("matched  no rule: the default route"),
    }
    println!("reply    {}", decision.reply.as_deref().unwrap_or("-"));
    if decision.ignore {
        println!("task     none: the rule only replies");
        return Ok(ExitCode::SUCCESS);
    }
    let request = InteractionRequest::new(
        &conversation,
        input.channel_type,
        input.customer_address.as_ref(),
        &decision.route,
    );
    println!(
        "Channel  {}",
        serde_json::to_string_pretty(&request.channel)?
    );
    println!(
        "Routing  {}",
        serde_json::to_string_pretty(&request.routing)?
    );
    Ok(ExitCode::SUCCESS)
}

/// `2026-11-23T20:00:00+01:00` → the instant (humantime takes only `Z`).
fn parse_with_offset(raw: &str) -> Option<std::time::SystemTime> {
    let (stamp, sign, offset) = match raw.rfind(['+', '-']) {
        Some(i) if i > 10 => (&raw[..i], &raw[i..i + 1], &raw[i + 1..]),
        _ => return None,
    };
    let (h, m) = offset.split_once(':')?;
    let secs = h.parse::<u64>().ok()? * 3600 + m.parse::<u64>().ok()? * 60;
    let local = humantime::parse_rfc3339_weak(stamp).ok()?;
    let shift = std::time::Duration::from_secs(secs);
    match sign {
        "+" => local.checked_sub(shift),
        _ => local.checked_add(shift),
    }
}
