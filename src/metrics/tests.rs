use super::*;

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
    // flexhook's own holding back has always been counted with Twilio's silence.
    for origin in [ErrorOrigin::Pacing, ErrorOrigin::Lease] {
        let held = JobError::flexhook(origin, "nothing sent");
        assert_eq!(error_code_label(&held), "network");
    }
    // The origin decides, not the words: a Twilio message that starts like the store's.
    assert_eq!(
        error_code_label(&error(None, None, "store: says Twilio")),
        "network"
    );
}

#[test]
fn the_text_has_every_family_and_counts_what_happened() {
    let metrics = Metrics::new("sqlite");
    metrics.webhook(
        "conversations",
        event_label("onMessageAdded"),
        WebhookOutcome::Known,
        Duration::from_millis(2),
    );
    metrics.twilio_request("flex", Some(201), None, Duration::from_millis(80));
    let wait = metrics.waiting_for_rate_limit();
    let text = metrics.encode();
    assert!(
        text.contains(
            r#"flexhook_webhooks_total{route="conversations",event="onMessageAdded",outcome="known"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"flexhook_twilio_requests_total{api="flex",status="201",code=""} 1"#),
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
    let metrics = Metrics::new("sqlite");
    let known = |route| {
        metrics.webhook(
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
        "conversations",
        EventLabel::UNKNOWN,
        WebhookOutcome::BadSignature,
        Duration::from_millis(1),
    );
    // A route that is not a webhook's: counted without a handle, all the same.
    metrics.webhook(
        "elsewhere",
        EventLabel::OTHER,
        WebhookOutcome::Ignored,
        Duration::from_millis(1),
    );
    let text = metrics.encode();
    for line in [
        r#"flexhook_webhooks_total{route="conversations",event="onMessageAdded",outcome="known"} 2"#,
        r#"flexhook_webhooks_total{route="taskrouter",event="onMessageAdded",outcome="known"} 1"#,
        r#"flexhook_webhooks_total{route="conversations",event="unknown",outcome="bad_signature"} 1"#,
        r#"flexhook_webhooks_total{route="elsewhere",event="other",outcome="ignored"} 1"#,
        r#"flexhook_webhook_duration_seconds_count{route="conversations"} 3"#,
        r#"flexhook_webhook_duration_seconds_count{route="taskrouter"} 1"#,
        r#"flexhook_webhook_duration_seconds_count{route="elsewhere"} 1"#,
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
