//! Routing rules, end to end from TOML: events × rules → the decision and the route.

use serde_json::json;

use super::*;
use crate::config::{ConfigError, LoadOptions, Settings};

const CH: &str = "CH11111111111111111111111111111111";

/// The local settings plus `toml` (rules, schedules) as a `--config` file.
fn settings(toml: &str) -> Result<crate::config::ValidSettings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.toml");
    std::fs::write(&file, toml).unwrap();
    Settings::load(&LoadOptions {
        environment: Some("local".into()),
        config_dir: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/config").into()),
        file: Some(file),
        read_env: false,
        overrides: Vec::new(),
    })?
    .validate()
}

fn router(toml: &str) -> Router {
    let s = settings(toml).unwrap();
    Router::new(&s.accounts.first().flex, &s.routing, "default")
}

fn problems(toml: &str) -> String {
    match settings(toml) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected the rules to be refused:\n{toml}"),
    }
}

fn input(author: &str, address: Option<&str>) -> RoutingInput {
    let a = CustomerAddress::new(author);
    RoutingInput {
        channel_type: a.channel_type(),
        customer_address: Some(a),
        proxy_address: None,
        source: None,
        address: address.map(str::to_owned),
        attributes: None,
        at_ms: None,
        body: None,
        last_worker: None,
    }
}

/// Unix ms of an RFC 3339 instant.
fn at(rfc3339: &str) -> i64 {
    let t = humantime::parse_rfc3339(rfc3339).unwrap();
    i64::try_from(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

const RULES: &str = r#"
[[routing.schedules]]
name = "support-hours"
timezone = "Europe/Madrid"
open = ["mon-fri 09:00-18:00", "sat 10:00-14:00"]
closed_dates = ["2026-12-25"]

[[routing.rules]]
name = "closed"
when = "closed:support-hours"
reply = "We're closed. We open Monday to Friday 9:00-18:00 and will answer then."
action = "ignore"

[[routing.rules]]
name = "vip"
match = { attributes = { vip = true } }
set = { priority = 50, attributes = { tier = "{attributes.tier}", vipOf = "{address}" } }

[[routing.rules]]
name = "whatsapp-es"
match = { channel_type = ["whatsapp"], address = ["whatsapp:+15550001111"], author = ["whatsapp:+34*"] }
set = { workflow_sid = "WW22222222222222222222222222222222", task_channel = "chat", priority = 10, timeout_secs = 3600, attributes = { team = "es", name = "{author}", routedBy = "{rule}" } }

[[routing.rules]]
name = "email"
match = { channel_type = ["email"] }
set = { attributes = { team = "mail", conversation = "{conversation_sid}", kind = "{channel_type}" } }
"#;

/// A weekday at 10:00 in Madrid (CET, UTC+1): open.
const OPEN: &str = "2026-11-23T09:00:00Z";
/// The same Monday at 20:00 in Madrid: closed.
const CLOSED: &str = "2026-11-23T19:00:00Z";

/// (author, address, attributes, at) → (rule, workflow, task channel, priority, ignore)
type Case<'a> = (
    &'a str,
    Option<&'a str>,
    Option<serde_json::Value>,
    &'a str,
    Option<&'a str>,
    &'a str,
    &'a str,
    Option<u32>,
    bool,
);

#[test]
fn events_against_rules_give_the_expected_decisions_and_routes() {
    let r = router(RULES);
    let ch = ConversationSid::parse(CH).unwrap();
    // (author, address, attributes, at) → (rule, workflow, task channel, priority, ignore)
    let cases: Vec<Case> = vec![
        (
            "whatsapp:+34600111222",
            Some("whatsapp:+15550001111"),
            None,
            OPEN,
            Some("whatsapp-es"),
            "WW22222222222222222222222222222222",
            "chat",
            Some(10),
            false,
        ),
        // Another sender, another address: the default route.
        (
            "whatsapp:+44700111222",
            Some("whatsapp:+15550001111"),
            None,
            OPEN,
            None,
            "WW00000000000000000000000000000000",
            "chat",
            None,
            false,
        ),
        (
            "whatsapp:+34600111222",
            Some("whatsapp:+15550009999"),
            None,
            OPEN,
            None,
            "WW00000000000000000000000000000000",
            "chat",
            None,
            false,
        ),
        // E-mail gets Flex's email task channel by default.
        (
            "ana@example.com",
            None,
            None,
            OPEN,
            Some("email"),
            "WW00000000000000000000000000000000",
            "email",
            None,
            false,
        ),
        (
            "+14155550100",
            None,
            Some(json!({"vip": true, "tier": "gold"})),
            OPEN,
            Some("vip"),
            "WW00000000000000000000000000000000",
            "chat",
            Some(50),
            false,
        ),
        (
            "+14155550100",
            None,
            Some(json!({"vip": false})),
            OPEN,
            None,
            "WW00000000000000000000000000000000",
            "chat",
            None,
            false,
        ),
        // Out of hours, everyone gets the reply and no task.
        (
            "whatsapp:+34600111222",
            Some("whatsapp:+15550001111"),
            None,
            CLOSED,
            Some("closed"),
            "WW00000000000000000000000000000000",
            "chat",
            None,
            true,
        ),
    ];
    for (author, address, attributes, when, rule, workflow, channel, priority, ignore) in cases {
        let mut i = input(author, address);
        i.attributes = attributes;
        let d = r.decide(&ch, &i, at(when));
        let case = format!("{author} {address:?} at {when}");
        assert_eq!(d.rule.as_deref(), rule, "{case}");
        assert_eq!(d.route.workflow_sid.as_str(), workflow, "{case}");
        assert_eq!(d.route.task_channel, channel, "{case}");
        assert_eq!(d.route.priority, priority, "{case}");
        assert_eq!(d.ignore, ignore, "{case}");
        assert_eq!(d.reply.is_some(), ignore, "{case}");
        // Whatever the rule, flexhook's own attributes stay.
        assert_eq!(d.route.attributes["conversationSid"], CH, "{case}");
        assert_eq!(d.route.attributes["from"], author, "{case}");
    }
}

#[test]
fn placeholders_are_filled_from_the_conversation_and_the_rule() {
    let r = router(RULES);
    let ch = ConversationSid::parse(CH).unwrap();
    let d = r.decide(
        &ch,
        &input("whatsapp:+34600111222", Some("whatsapp:+15550001111")),
        at(OPEN),
    );
    let a = &d.route.attributes;
    assert_eq!(a["team"], "es");
    assert_eq!(a["name"], "whatsapp:+34600111222");
    assert_eq!(a["routedBy"], "whatsapp-es");
    assert_eq!(d.route.timeout_secs, Some(3600));
    let d = r.decide(&ch, &input("ana@example.com", None), at(OPEN));
    assert_eq!(d.route.attributes["conversation"], CH);
    assert_eq!(d.route.attributes["kind"], "email");
    let mut vip = input("+14155550100", Some("+15550002222"));
    vip.attributes = Some(json!({"vip": true, "tier": "gold"}));
    let d = r.decide(&ch, &vip, at(OPEN));
    assert_eq!(d.route.attributes["tier"], "gold");
    assert_eq!(d.route.attributes["vipOf"], "+15550002222");
}

#[test]
fn skipped_rules_say_why_they_did_not_match() {
    let r = router(RULES);
    let ch = ConversationSid::parse(CH).unwrap();
    let d = r.decide(&ch, &input("ana@example.com", None), at(OPEN));
    let why: Vec<(&str, &str)> = d
        .skipped
        .iter()
        .map(|s| (s.rule.as_str(), s.why.as_str()))
        .collect();
    assert_eq!(
        why[0],
        ("closed", "support-hours is open at the first message")
    );
    assert_eq!(why[1], ("vip", "attribute vip is unset, not true"));
    assert_eq!(
        why[2],
        ("whatsapp-es", "channel type email is not whatsapp")
    );
    assert_eq!(d.rule.as_deref(), Some("email"));
}

#[test]
fn the_schedule_is_judged_at_the_first_message_across_a_dst_change_and_a_closed_date() {
    let r = router(RULES);
    let ch = ConversationSid::parse(CH).unwrap();
    let decide = |when: &str| r.decide(&ch, &input("+14155550100", None), at(when)).rule;
    // Friday 2026-03-27, 09:30 CET = 08:30Z: open. Monday 2026-03-30, 09:30 CEST = 07:30Z:
    // open, although the same UTC time a week before (08:30 CET) was not yet 09:30.
    assert_eq!(decide("2026-03-27T08:30:00Z"), None);
    assert_eq!(decide("2026-03-30T07:30:00Z"), None);
    assert_eq!(decide("2026-03-23T07:30:00Z").as_deref(), Some("closed"));
    // 08:30Z on Monday 2026-03-30 is 10:30 CEST: open; 06:30Z is 08:30 CEST: closed.
    assert_eq!(decide("2026-03-30T06:30:00Z").as_deref(), Some("closed"));
    // Christmas Day 2026 is a Friday, closed all day; the 24th at 11:00 CET is open.
    assert_eq!(decide("2026-12-25T10:00:00Z").as_deref(), Some("closed"));
    assert_eq!(decide("2026-12-24T10:00:00Z"), None);
}

#[test]
fn each_configuration_error_names_its_rule() {
    let base = "[[routing.rules]]\nname = \"r1\"\n";
    let unknown = problems(&format!(
        "{base}set = {{ attributes = {{ x = \"{{author}} {{nope}}\" }} }}\n"
    ));
    assert!(
        unknown.contains("rule `r1`") && unknown.contains("{nope}"),
        "{unknown}"
    );
    let body = problems(&format!(
        "{base}set = {{ attributes = {{ x = \"{{body}}\" }} }}\n"
    ));
    assert!(body.contains("routing.allow_body"), "{body}");
    let sid = problems(&format!(
        "{base}set = {{ workflow_sid = \"WS22222222222222222222222222222222\" }}\n"
    ));
    assert!(
        sid.contains("rule `r1`") && sid.contains("set.workflow_sid"),
        "{sid}"
    );
    let schedule = problems(&format!("{base}when = \"closed:nope\"\n"));
    assert!(
        schedule.contains("no schedule is named `nope`"),
        "{schedule}"
    );
    let tz = problems(
        "[[routing.schedules]]\nname = \"h\"\ntimezone = \"Europe/Madird\"\nopen = [\"mon 09:00-17:00\"]\n",
    );
    assert!(
        tz.contains("schedule `h`") && tz.contains("Europe/Madird"),
        "{tz}"
    );
    let duration = problems(
        "[[routing.schedules]]\nname = \"h\"\ntimezone = \"UTC\"\nopen = [\"mon 09:00-25:00\"]\n",
    );
    assert!(
        duration.contains("schedule `h`") && duration.contains("25:00"),
        "{duration}"
    );
    let after = problems(&format!(
        "{base}\n[[routing.rules]]\nname = \"r2\"\nmatch = {{ channel_type = [\"sms\"] }}\n"
    ));
    assert!(
        after.contains("rule `r2`") && after.contains("can never match") && after.contains("`r1`"),
        "{after}"
    );
    let ignore = problems(&format!(
        "{base}match = {{ channel_type = [\"sms\"] }}\naction = \"ignore\"\nreply = \"hi\"\nset = {{ priority = 1 }}\n"
    ));
    assert!(
        ignore.contains("rule `r1`") && ignore.contains("`set` and action"),
        "{ignore}"
    );
    let channel = problems(&format!("{base}match = {{ channel_type = [\"fax\"] }}\n"));
    assert!(channel.contains("`fax`"), "{channel}");
}

const KNOWN_AGENT_RULES: &str = r#"
[[routing.rules]]
name = "back-to-their-agent"
match = { known_agent = true }
set = { priority = 20, attributes = { preferred = "{last_worker_sid}" } }

[[routing.rules]]
name = "new-customer"
match = { known_agent = false }
set = { attributes = { firstContact = true } }
"#;

fn known(worker: &str, at_ms: i64) -> Option<LastWorker> {
    Some(LastWorker {
        worker_sid: Some(crate::domain::WorkerSid::parse(worker).unwrap()),
        at_ms: Some(at_ms),
    })
}

#[test]
fn a_known_agent_is_matched_filled_in_and_carried_as_last_worker_sid_and_at() {
    let router = router(KNOWN_AGENT_RULES);
    let ch = ConversationSid::parse(CH).unwrap();
    let wk = "WK11111111111111111111111111111111";
    let returning = RoutingInput {
        last_worker: known(wk, at("2026-12-01T10:30:00.250Z")),
        ..input("whatsapp:+34600111222", None)
    };
    let d = router.decide(&ch, &returning, 0);
    assert_eq!(d.rule.as_deref(), Some("back-to-their-agent"));
    let a = &d.route.attributes;
    assert_eq!(a["lastWorkerSid"], wk);
    assert_eq!(a["lastWorkerAt"], "2026-12-01T10:30:00Z");
    assert_eq!(a["knownAgent"], true);
    assert_eq!(a["preferred"], wk);
    assert_eq!(d.route.priority, Some(20));

    // Looked up, nobody within the window; or not looked up at all (feature off).
    for nobody in [Some(LastWorker::default()), None] {
        let first = RoutingInput {
            last_worker: nobody,
            ..input("whatsapp:+34600111222", None)
        };
        let d = router.decide(&ch, &first, 0);
        assert_eq!(d.rule.as_deref(), Some("new-customer"));
        assert_eq!(
            d.skipped[0].why, "no agent is known for this customer",
            "{d:?}"
        );
        assert!(!d.route.attributes.contains_key("lastWorkerSid"));
        assert!(!d.route.attributes.contains_key("lastWorkerAt"));
        assert!(!d.route.attributes.contains_key("knownAgent"));
    }
}

#[test]
fn known_agent_rules_need_known_agent_within() {
    let off = format!("[routing]\nknown_agent_within = \"\"\n{KNOWN_AGENT_RULES}");
    let text = problems(&off);
    assert!(
        text.contains("back-to-their-agent") && text.contains("routing.known_agent_within"),
        "{text}"
    );
    assert!(text.contains("new-customer"), "{text}");
    for bad in ["\"soon\"", "\"0s\""] {
        let text = problems(&format!("[routing]\nknown_agent_within = {bad}\n"));
        assert!(text.contains("routing.known_agent_within"), "{bad}: {text}");
    }
    let on = settings("[routing]\nknown_agent_within = \"12h\"\n").unwrap();
    assert_eq!(
        on.routing.known_agent_within,
        Some(std::time::Duration::from_secs(12 * 3600))
    );
    let default = settings("").unwrap();
    assert_eq!(
        default.routing.known_agent_within,
        Some(std::time::Duration::from_secs(30 * 86_400))
    );
}
