use super::*;
use crate::store::ErrorOrigin;
use crate::twilio::RequestObserver;

#[test]
fn unknown_event_types_share_one_label() {
    assert_eq!(event_label("onMessageAdded").as_str(), "onMessageAdded");
    assert_eq!(event_label("task.canceled").as_str(), "task.canceled");
    assert_eq!(event_label("CH0123456789abcdef").as_str(), OTHER_EVENT);
    assert_eq!(event_label("").as_str(), OTHER_EVENT);
    assert_eq!(EventLabel::UNKNOWN.as_str(), UNKNOWN_EVENT);
    assert_ne!(EventLabel::OTHER, EventLabel::UNKNOWN);
}

#[test]
fn a_failure_is_labelled_by_its_twilio_code_else_by_where_it_failed() {
    let error = |code, status, message: &str| JobError::twilio(code, status, message);
    assert_eq!(
        error_code_label(&error(Some(20429), Some(429), "")),
        "20429"
    );
    assert_eq!(error_code_label(&error(None, Some(503), "")), "http_503");
    assert_eq!(error_code_label(&JobError::store("locked")), "store");
    assert_eq!(error_code_label(&error(None, None, "timed out")), "network");
    // flexhook's own holding back (nothing was sent) is told from Twilio's silence.
    for (origin, label) in [
        (ErrorOrigin::Pacing, "pacing"),
        (ErrorOrigin::Lease, "lease"),
    ] {
        let held = JobError::flexhook(origin, "nothing sent");
        assert_eq!(error_code_label(&held), label);
    }
    // The origin decides, not the words: a Twilio message that starts like the store's.
    assert_eq!(
        error_code_label(&error(None, None, "store: says Twilio")),
        "network"
    );
}

#[test]
fn the_text_has_every_family_and_counts_what_happened() {
    let metrics = Metrics::new("sqlite", &["default"]);
    metrics.webhook(
        Some(0),
        "conversations",
        event_label("onMessageAdded"),
        WebhookOutcome::Known,
        Duration::from_millis(2),
    );
    metrics.twilio_request(
        "default",
        "flex",
        Some(201),
        None,
        Duration::from_millis(80),
    );
    let wait = metrics.waiting_for_rate_limit();
    let text = metrics.encode();
    assert!(
        text.contains(
            r#"flexhook_webhooks_total{account="default",route="conversations",event="onMessageAdded",outcome="known"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"flexhook_twilio_requests_total{account="default",api="flex",status="201",code=""} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("flexhook_rate_limit_queue_depth 1"), "{text}");
    assert!(
        text.contains(r#"flexhook_build_info{version=""#) && text.contains(r#"store="sqlite"}"#),
        "{text}"
    );
    drop(wait);
    assert!(metrics
        .encode()
        .contains("flexhook_rate_limit_queue_depth 0"));
}
#[test]
fn the_webhook_paths_handles_count_into_the_series_the_text_shows() {
    let metrics = Metrics::new("sqlite", &["default"]);
    let known = |route| {
        metrics.webhook(
            Some(0),
            route,
            event_label("onMessageAdded"),
            WebhookOutcome::Known,
            Duration::from_millis(1),
        )
    };
    known("conversations");
    known("conversations");
    known("taskrouter");
    // The series made at 0 for the alerts is the one a refusal counts into.
    metrics.clone().webhook(
        Some(0),
        "conversations",
        EventLabel::UNKNOWN,
        WebhookOutcome::BadSignature,
        Duration::from_millis(1),
    );
    // A route that is not a webhook's: counted without a handle, all the same.
    metrics.webhook(
        Some(0),
        "elsewhere",
        EventLabel::OTHER,
        WebhookOutcome::Ignored,
        Duration::from_millis(1),
    );
    let text = metrics.encode();
    for line in [
        r#"flexhook_webhooks_total{account="default",route="conversations",event="onMessageAdded",outcome="known"} 2"#,
        r#"flexhook_webhooks_total{account="default",route="taskrouter",event="onMessageAdded",outcome="known"} 1"#,
        r#"flexhook_webhooks_total{account="default",route="conversations",event="unknown",outcome="bad_signature"} 1"#,
        r#"flexhook_webhooks_total{account="default",route="elsewhere",event="other",outcome="ignored"} 1"#,
        r#"flexhook_webhook_duration_seconds_count{account="default",route="conversations"} 3"#,
        r#"flexhook_webhook_duration_seconds_count{account="default",route="taskrouter"} 1"#,
        r#"flexhook_webhook_duration_seconds_count{account="default",route="elsewhere"} 1"#,
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
    assert_eq!(
        text.matches(r#"event="onMessageAdded",outcome="known"} "#)
            .count(),
        2,
        "one series per route: {text}"
    );
}

#[test]
fn each_account_counts_under_its_own_name_and_an_unpicked_webhook_under_unknown() {
    let metrics = Metrics::new("postgres", &["acme", "globex"]);
    let answer = |account| {
        metrics.webhook(
            account,
            "conversations",
            event_label("onMessageAdded"),
            WebhookOutcome::Accepted,
            Duration::from_millis(1),
        )
    };
    answer(Some(0));
    answer(Some(1));
    answer(Some(1));
    answer(None);
    // An index past the configured accounts is not one of them.
    answer(Some(7));
    metrics.job("globex", JobKind::Interaction, "created", None);
    metrics.for_account("acme").request(
        crate::twilio::Api::Flex,
        Some(500),
        None,
        Duration::from_millis(3),
    );
    let text = metrics.encode();
    for line in [
        r#"flexhook_webhooks_total{account="acme",route="conversations",event="onMessageAdded",outcome="accepted"} 1"#,
        r#"flexhook_webhooks_total{account="globex",route="conversations",event="onMessageAdded",outcome="accepted"} 2"#,
        r#"flexhook_webhooks_total{account="unknown",route="conversations",event="onMessageAdded",outcome="accepted"} 2"#,
        r#"flexhook_webhook_duration_seconds_count{account="globex",route="conversations"} 2"#,
        r#"flexhook_jobs_total{account="globex",kind="interaction",outcome="created",code=""} 1"#,
        r#"flexhook_twilio_requests_total{account="acme",api="flex",status="500",code=""} 1"#,
        r#"flexhook_twilio_request_duration_seconds_count{account="acme",api="flex"} 1"#,
        // The alerts' series exist for each account from the start.
        r#"flexhook_webhooks_total{account="globex",route="taskrouter",event="unknown",outcome="bad_signature"} 0"#,
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
}
