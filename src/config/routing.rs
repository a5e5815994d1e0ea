//! `[routing]`: business-hours schedules and first-match rules that pick each
//! conversation's workflow, task channel, priority, timeout, attributes and reply. Checked
//! here as plain data; `routing::rules` compiles them (time zones, placeholders) and says
//! which rule is wrong.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::de::empty_as_none;
use super::problems::Problems;
use crate::domain::{ChannelType, Schedule, WorkflowSid};

/// `[[routing.schedules]]`.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
pub struct ScheduleSettings {
    pub name: String,
    pub timezone: String,
    pub open: Vec<String>,
    #[serde(default)]
    pub closed_dates: Vec<String>,
}

/// `match = { … }` of a rule: every listed condition must hold (an empty one always does).
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatchSettings {
    /// The accounts (`[accounts.NAME]`'s names) whose conversations the rule is for.
    #[serde(default)]
    pub account: Vec<String>,
    #[serde(default)]
    pub channel_type: Vec<String>,
    #[serde(default)]
    pub address: Vec<String>,
    #[serde(default)]
    pub author: Vec<String>,
    #[serde(default)]
    pub attributes: Map<String, Value>,
    /// `true`: an agent is known for this customer (`routing.known_agent_within`);
    /// `false`: none is.
    pub known_agent: Option<bool>,
}

/// `set = { … }` of a rule: what it changes in the default route.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SetSettings {
    pub workflow_sid: Option<String>,
    pub task_channel: Option<String>,
    pub priority: Option<u32>,
    pub timeout_secs: Option<u32>,
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

/// `[[routing.rules]]`, in order: the first that matches decides.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    pub name: String,
    /// `open:SCHEDULE` or `closed:SCHEDULE`.
    pub when: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: MatchSettings,
    pub set: Option<SetSettings>,
    /// Posted to the customer, once per conversation.
    pub reply: Option<String>,
    /// `route` (the default: create the task) or `ignore` (reply only, no task).
    pub action: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
pub struct RoutingSettings {
    /// `{body}` in attributes: off, since a message body is personal data.
    #[serde(default)]
    pub allow_body: bool,
    /// How long the agent who accepted a customer's task is remembered for their next
    /// tasks (`lastWorkerSid`); empty turns known-agent routing off.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub known_agent_within: Option<String>,
    #[serde(default)]
    pub schedules: Vec<ScheduleSettings>,
    #[serde(default)]
    pub rules: Vec<RuleSettings>,
}

/// The placeholders a rule's attribute values may use (`{attributes.FIELD}` besides).
pub const PLACEHOLDERS: [&str; 7] = [
    "author",
    "channel_type",
    "address",
    "conversation_sid",
    "rule",
    "body",
    "last_worker_sid",
];

/// A rule's `when`: the schedule, and whether the rule wants it open or closed.
#[derive(Debug, Clone)]
pub struct When {
    pub open: bool,
    pub schedule: Arc<Schedule>,
}

/// `set`, checked.
#[derive(Debug, Clone, Default)]
pub struct SetConfig {
    pub workflow_sid: Option<WorkflowSid>,
    pub task_channel: Option<String>,
    pub priority: Option<u32>,
    pub timeout_secs: Option<u32>,
    pub attributes: Map<String, Value>,
}

/// A rule, checked: its conditions, and what it does.
#[derive(Debug, Clone)]
pub struct RuleConfig {
    pub name: String,
    pub when: Option<When>,
    /// `match.account`: empty for every account.
    pub accounts: Vec<String>,
    pub channel_types: Vec<ChannelType>,
    pub addresses: Vec<String>,
    /// Exact, or `*` globs.
    pub authors: Vec<String>,
    pub attributes: Map<String, Value>,
    /// `match.known_agent`: whether an agent must (`true`) or must not (`false`) be known.
    pub known_agent: Option<bool>,
    pub set: SetConfig,
    pub reply: Option<String>,
    pub ignore: bool,
}

impl RuleConfig {
    /// A rule without conditions matches everything: nothing after it can.
    pub fn is_catch_all(&self) -> bool {
        self.when.is_none()
            && self.accounts.is_empty()
            && self.channel_types.is_empty()
            && self.addresses.is_empty()
            && self.authors.is_empty()
            && self.attributes.is_empty()
            && self.known_agent.is_none()
    }

    /// Whether the rule asks who last handled the customer.
    /// Whether the rule is for `account`'s conversations.
    pub fn applies_to(&self, account: &str) -> bool {
        self.accounts.is_empty() || self.accounts.iter().any(|a| a == account)
    }

    pub fn uses_known_agent(&self) -> bool {
        self.known_agent.is_some() || mentions(&self.set.attributes, "{last_worker_sid}")
    }

    /// Whether deciding needs the address the customer wrote to.
    pub fn uses_address(&self) -> bool {
        !self.addresses.is_empty() || mentions(&self.set.attributes, "{address}")
    }

    /// Whether deciding needs the conversation's attributes.
    pub fn uses_attributes(&self) -> bool {
        !self.attributes.is_empty() || mentions(&self.set.attributes, "{attributes.")
    }
}

fn mentions(attributes: &Map<String, Value>, needle: &str) -> bool {
    attributes.values().any(|v| v.to_string().contains(needle))
}

/// `[routing]`, checked.
#[derive(Debug, Clone, Default)]
pub struct RoutingConfig {
    pub allow_body: bool,
    /// `routing.known_agent_within`: `None` turns known-agent routing off.
    pub known_agent_within: Option<Duration>,
    pub rules: Vec<RuleConfig>,
}

impl RoutingConfig {
    /// Whether some rule may turn a conversation away (`action = "ignore"`): its later
    /// messages are then decided again.
    pub fn may_ignore(&self) -> bool {
        self.rules.iter().any(|r| r.ignore)
    }

    /// The rules `account` goes by: those whose `match.account` is empty or names it.
    pub fn for_account(&self, account: &str) -> Self {
        Self {
            rules: self
                .rules
                .iter()
                .filter(|r| r.applies_to(account))
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    /// Refuses a rule whose `match.account` names an account that is not configured.
    pub(super) fn check_accounts(&self, names: &[&str], p: &mut Problems) {
        for (i, rule) in self.rules.iter().enumerate() {
            for account in &rule.accounts {
                if !names.contains(&account.as_str()) {
                    p.add(
                        "routing.rules",
                        format!(
                            "rule `{}` (routing.rules[{i}]): match.account `{account}` is not an account; this deployment has {}",
                            rule.name,
                            names.join(", ")
                        ),
                    );
                }
            }
        }
    }
}

impl RoutingSettings {
    pub(super) fn validate(&self, p: &mut Problems) -> Option<RoutingConfig> {
        let before = p.count();
        let known_agent_within = self.known_agent_within.as_deref().and_then(|raw| {
            let raw = raw.trim();
            let within = p.check(
                "routing.known_agent_within",
                humantime::parse_duration(raw).map_err(|e| {
                    format!("`{raw}` is not a duration like `30d` or `12h`, nor empty to turn it off ({e})")
                }),
            )?;
            if within.is_zero() {
                p.add(
                    "routing.known_agent_within",
                    "is 0: leave it empty to turn known-agent routing off",
                );
                return None;
            }
            Some(within)
        });
        let mut schedules: HashMap<&str, Arc<Schedule>> = HashMap::new();
        for (i, s) in self.schedules.iter().enumerate() {
            let at = format!("schedule `{}` (routing.schedules[{i}])", s.name);
            if s.name.trim().is_empty() {
                p.add(
                    "routing.schedules",
                    format!("routing.schedules[{i}] has no name"),
                );
                continue;
            }
            if schedules.contains_key(s.name.as_str()) {
                p.add("routing.schedules", format!("{at}: the name is used twice"));
                continue;
            }
            match Schedule::parse(&s.name, &s.timezone, &s.open, &s.closed_dates) {
                Ok(schedule) => {
                    schedules.insert(&s.name, Arc::new(schedule));
                }
                Err(e) => p.add("routing.schedules", format!("{at}: {e}")),
            }
        }
        let mut rules: Vec<RuleConfig> = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let mut bad = |message: String| {
                p.add(
                    "routing.rules",
                    format!("rule `{}` (routing.rules[{i}]): {message}", r.name),
                )
            };
            if r.name.trim().is_empty() {
                bad("has no name".into());
            }
            if names.contains(&r.name.as_str()) {
                bad("the name is used twice".into());
            }
            names.push(&r.name);
            if let Some(catch_all) = rules.iter().find(|earlier| earlier.is_catch_all()) {
                bad(format!(
                    "can never match: rule `{}` before it matches every conversation",
                    catch_all.name
                ));
            }
            let ignore = match r.action.as_deref() {
                None | Some("route") => false,
                Some("ignore") => true,
                Some(other) => {
                    bad(format!("action `{other}` is not `route` or `ignore`"));
                    false
                }
            };
            if ignore && r.set.is_some() {
                bad("has both `set` and action = \"ignore\": an ignored conversation gets no task to set".into());
            }
            if ignore && r.reply.is_none() {
                bad(
                    "action = \"ignore\" without a `reply` would leave the customer unanswered"
                        .into(),
                );
            }
            let when = match r.when.as_deref() {
                None => None,
                Some(w) => match w.split_once(':') {
                    Some((kind @ ("open" | "closed"), name)) => match schedules.get(name.trim()) {
                        Some(schedule) => Some(When {
                            open: kind == "open",
                            schedule: schedule.clone(),
                        }),
                        None => {
                            bad(format!(
                                "when = \"{w}\": no schedule is named `{}`",
                                name.trim()
                            ));
                            None
                        }
                    },
                    _ => {
                        bad(format!(
                            "when = \"{w}\" is not `open:SCHEDULE` or `closed:SCHEDULE`"
                        ));
                        None
                    }
                },
            };
            let mut channel_types = Vec::new();
            for c in &r.matches.channel_type {
                match ChannelType::parse(c) {
                    Some(t) => channel_types.push(t),
                    None => bad(format!(
                        "channel_type `{c}` is not one of sms, whatsapp, messenger, gbm, email, web"
                    )),
                }
            }
            let set = r.set.clone().unwrap_or_default();
            let workflow_sid = match &set.workflow_sid {
                Some(s) => match WorkflowSid::parse(s.trim()) {
                    Ok(sid) => Some(sid),
                    Err(e) => {
                        bad(format!("set.workflow_sid: {e}"));
                        None
                    }
                },
                None => None,
            };
            if set
                .task_channel
                .as_deref()
                .is_some_and(|t| t.trim().is_empty())
            {
                bad("set.task_channel must not be empty".into());
            }
            for (key, value) in &set.attributes {
                if let Err(e) = check_placeholders(value, self.allow_body) {
                    bad(format!("set.attributes.{key}: {e}"));
                }
            }
            rules.push(RuleConfig {
                name: r.name.clone(),
                when,
                accounts: r
                    .matches
                    .account
                    .iter()
                    .map(|a| a.trim().to_owned())
                    .collect(),
                channel_types,
                addresses: r.matches.address.clone(),
                authors: r.matches.author.clone(),
                attributes: r.matches.attributes.clone(),
                known_agent: r.matches.known_agent,
                set: SetConfig {
                    workflow_sid,
                    task_channel: set.task_channel.map(|t| t.trim().to_owned()),
                    priority: set.priority,
                    timeout_secs: set.timeout_secs,
                    attributes: set.attributes,
                },
                reply: r.reply.clone().filter(|t| !t.trim().is_empty()),
                ignore,
            });
        }
        if self.known_agent_within.is_none() {
            for (i, rule) in rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.uses_known_agent())
            {
                p.add(
                    "routing.rules",
                    format!(
                        "rule `{}` (routing.rules[{i}]): match.known_agent and {{last_worker_sid}} need routing.known_agent_within, which is empty (off)",
                        rule.name
                    ),
                );
            }
        }
        (p.count() == before).then(|| RoutingConfig {
            allow_body: self.allow_body,
            known_agent_within,
            rules,
        })
    }
}

/// Every `{…}` in a string value (nested too) is a known placeholder.
fn check_placeholders(value: &Value, allow_body: bool) -> Result<(), String> {
    match value {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find('{') {
                let after = &rest[start + 1..];
                let Some(end) = after.find('}') else {
                    return Err(format!("`{s}` has a `{{` without its `}}`"));
                };
                let name = &after[..end];
                let known = PLACEHOLDERS.contains(&name)
                    || name
                        .strip_prefix("attributes.")
                        .is_some_and(|field| !field.is_empty());
                if !known {
                    return Err(format!(
                        "unknown placeholder `{{{name}}}` (known: {}, {{attributes.FIELD}})",
                        PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                    ));
                }
                if name == "body" && !allow_body {
                    return Err(
                        "`{body}` needs routing.allow_body = true: a message body is personal data"
                            .into(),
                    );
                }
                rest = &after[end + 1..];
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|v| check_placeholders(v, allow_body)),
        Value::Object(map) => map
            .values()
            .try_for_each(|v| check_placeholders(v, allow_body)),
        _ => Ok(()),
    }
}
