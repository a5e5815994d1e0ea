//! The decision: walk the rules in order, take the first that matches, and build the route
//! it gives (the default route, changed by its `set`, attribute placeholders filled in). The
//! reasons the earlier rules did not match are kept, for `flexhook routes explain`.

use serde_json::{json, Map, Value};
use wildmatch::WildMatch;

use super::{Route, Router, RoutingInput};
use crate::config::RuleConfig;
use crate::domain::{ChannelType, ConversationSid, CustomerAddress};

/// What routing decided for one conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The rule that matched; `None`: the default route.
    pub rule: Option<String>,
    pub route: Route,
    /// Posted to the customer, once.
    pub reply: Option<String>,
    /// No task: the rule only replies.
    pub ignore: bool,
    /// The rules before it, each with why it did not match.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub rule: String,
    pub why: String,
}

impl Router {
    /// Decides for this conversation; `at_ms` is when its first message was sent.
    pub fn decide(
        &self,
        conversation: &ConversationSid,
        input: &RoutingInput,
        at_ms: i64,
    ) -> Decision {
        let mut skipped = Vec::new();
        for rule in &self.rules.rules {
            match mismatch(rule, input, at_ms) {
                Some(why) => skipped.push(Skipped {
                    rule: rule.name.clone(),
                    why,
                }),
                None => {
                    return Decision {
                        rule: Some(rule.name.clone()),
                        route: self.build(conversation, input, Some(rule)),
                        reply: rule.reply.clone(),
                        ignore: rule.ignore,
                        skipped,
                    }
                }
            }
        }
        Decision {
            rule: None,
            route: self.build(conversation, input, None),
            reply: None,
            ignore: false,
            skipped,
        }
    }

    fn build(
        &self,
        conversation: &ConversationSid,
        input: &RoutingInput,
        rule: Option<&RuleConfig>,
    ) -> Route {
        let flex = &self.default;
        let author = input
            .customer_address
            .as_ref()
            .map_or("unknown", CustomerAddress::expose);
        // Studio's Send to Flex names the task after the sender; Flex UI shows `name`, then
        // `customerName`, then `from`. A team may label tasks otherwise in task_attributes.
        let mut attributes = Map::new();
        attributes.insert("name".into(), json!(author));
        attributes.insert("customerName".into(), json!(author));
        attributes.extend(flex.task_attributes.clone());
        // Flex expects e-mail on its `email` task channel, messaging on `chat`.
        let mut task_channel = match input.channel_type {
            ChannelType::Email => "email".to_owned(),
            _ => flex.task_channel.clone(),
        };
        let mut route = Route {
            workspace_sid: flex.workspace_sid.clone(),
            workflow_sid: flex.workflow_sid.clone(),
            task_channel: String::new(),
            priority: flex.priority,
            timeout_secs: flex.task_timeout_secs,
            attributes: Map::new(),
        };
        if let Some(rule) = rule {
            let set = &rule.set;
            if let Some(w) = &set.workflow_sid {
                route.workflow_sid = w.clone();
            }
            if let Some(t) = &set.task_channel {
                task_channel = t.clone();
            }
            route.priority = set.priority.or(route.priority);
            route.timeout_secs = set.timeout_secs.or(route.timeout_secs);
            for (k, v) in &set.attributes {
                attributes.insert(k.clone(), fill(v, conversation, input, &rule.name));
            }
        }
        // flexhook's own attributes win: the task lookup relies on conversationSid.
        for (k, v) in [
            ("from", json!(author)),
            ("customerAddress", json!(author)),
            ("conversationSid", json!(conversation.as_str())),
            ("channelType", json!(input.channel_type.as_str())),
        ] {
            attributes.insert(k.to_owned(), v);
        }
        // Known-agent routing: a workflow's filter matches `knownAgent == true` (a missing
        // key is NULL to TaskRouter, and its expressions have no NULL test), and its target's
        // `known_worker_sid` reads `task.lastWorkerSid`.
        if let Some(last) = &input.last_worker {
            if let Some(worker) = &last.worker_sid {
                attributes.insert("knownAgent".into(), json!(true));
                attributes.insert("lastWorkerSid".into(), json!(worker.as_str()));
                if let Some(at) = last.at_ms.and_then(rfc3339) {
                    attributes.insert("lastWorkerAt".into(), json!(at));
                }
            }
        }
        route.task_channel = task_channel;
        route.attributes = attributes;
        route
    }
}

/// Why `rule` does not match, or `None` when it does.
fn mismatch(rule: &RuleConfig, input: &RoutingInput, at_ms: i64) -> Option<String> {
    if let Some(when) = &rule.when {
        let open = when.schedule.is_open_at(at_ms);
        if open != when.open {
            return Some(format!(
                "{} is {} at the first message",
                when.schedule.name(),
                if open { "open" } else { "closed" }
            ));
        }
    }
    if !rule.channel_types.is_empty() && !rule.channel_types.contains(&input.channel_type) {
        return Some(format!(
            "channel type {} is not {}",
            input.channel_type,
            rule.channel_types
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    if !rule.addresses.is_empty() {
        match input.address.as_deref() {
            None => return Some("the address the customer wrote to is unknown".into()),
            Some(a) if !rule.addresses.iter().any(|x| x == a) => {
                return Some(format!(
                    "address {a} is not {}",
                    rule.addresses.join(" or ")
                ))
            }
            Some(_) => {}
        }
    }
    if !rule.authors.is_empty() {
        let author = input
            .customer_address
            .as_ref()
            .map_or("", CustomerAddress::expose);
        if !rule
            .authors
            .iter()
            .any(|pattern| WildMatch::new(pattern).matches(author))
        {
            let shown = input
                .customer_address
                .as_ref()
                .map_or("(none)".to_owned(), CustomerAddress::masked);
            return Some(format!(
                "author {shown} is not {}",
                rule.authors.join(" or ")
            ));
        }
    }
    if let Some(wanted) = rule.known_agent {
        let known = last_worker_sid(input).is_some();
        if known != wanted {
            return Some(
                if wanted {
                    "no agent is known for this customer"
                } else {
                    "an agent is known for this customer"
                }
                .into(),
            );
        }
    }
    for (key, wanted) in &rule.attributes {
        let actual = input.attributes.as_ref().and_then(|a| a.get(key));
        if actual != Some(wanted) {
            return Some(format!(
                "attribute {key} is {}, not {wanted}",
                actual.map_or("unset".to_owned(), Value::to_string)
            ));
        }
    }
    None
}

/// A `set.attributes` value with its placeholders filled in (nested values too).
fn fill(value: &Value, conversation: &ConversationSid, input: &RoutingInput, rule: &str) -> Value {
    match value {
        Value::String(s) => Value::String(fill_text(s, conversation, input, rule)),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| fill(v, conversation, input, rule))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill(v, conversation, input, rule)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn fill_text(s: &str, conversation: &ConversationSid, input: &RoutingInput, rule: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        let text = match name {
            "author" => input
                .customer_address
                .as_ref()
                .map(|a| a.expose().to_owned()),
            "channel_type" => Some(input.channel_type.as_str().to_owned()),
            "address" => input.address.clone(),
            "conversation_sid" => Some(conversation.to_string()),
            "rule" => Some(rule.to_owned()),
            "body" => input.body.clone(),
            "last_worker_sid" => last_worker_sid(input).map(str::to_owned),
            other => other.strip_prefix("attributes.").and_then(|field| {
                input
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(field))
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        v => v.to_string(),
                    })
            }),
        };
        out.push_str(&text.unwrap_or_default());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The agent known for this conversation's customer, if any.
fn last_worker_sid(input: &RoutingInput) -> Option<&str> {
    input
        .last_worker
        .as_ref()
        .and_then(|l| l.worker_sid.as_ref())
        .map(|w| w.as_str())
}

/// Unix ms as RFC 3339 in UTC, to the second (`2026-12-05T17:30:00Z`).
fn rfc3339(ms: i64) -> Option<String> {
    jiff::Timestamp::from_second(ms.div_euclid(1000))
        .ok()
        .map(|t| t.to_string())
}
