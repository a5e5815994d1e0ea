use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;

fn load(env: &str, overrides: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::load(&LoadOptions {
        environment: Some(env.into()),
        config_dir: Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config"
        ))),
        file: None,
        read_env: false,
        overrides: overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

fn problems(err: ConfigError) -> Vec<Problem> {
    match err {
        ConfigError::Invalid(p) => p,
        other => panic!("expected validation problems, got {other}"),
    }
}

#[test]
fn local_without_an_account_is_a_dry_run_with_the_development_token() {
    let valid = load("local", &[]).unwrap().validate().unwrap();
    assert!(valid.is_dry_run());
    assert_eq!(valid.server.port, 8080);
    assert_eq!(valid.accounts.first().flex.task_channel, "chat");
    assert!(valid.accounts.first().flex.remove_webhook_after_handoff);
    assert_eq!(valid.accounts.first().flex.max_creates_per_second, 15);
    assert_eq!(valid.store.retention, Duration::from_secs(30 * 86_400));
}

#[test]
fn production_without_credentials_names_every_missing_key_and_its_variable() {
    let err = load("production", &[]).unwrap().validate().unwrap_err();
    let text = err.to_string();
    let keys: Vec<String> = problems(err).into_iter().map(|p| p.key).collect();
    assert!(keys.contains(&"twilio.account_sid".to_string()), "{keys:?}");
    assert!(keys.contains(&"twilio.auth_token".to_string()), "{keys:?}");
    assert!(keys.contains(&"flex.workflow_sid".to_string()), "{keys:?}");
    assert!(text.contains("TWILIO_AUTH_TOKEN"), "{text}");
    assert!(text.contains("FLEXHOOK_FLEX__WORKFLOW_SID"), "{text}");
}

#[test]
fn a_malformed_workflow_sid_is_rejected_by_name() {
    let err = load(
        "local",
        &[("flex.workflow_sid", "WS00000000000000000000000000000000")],
    )
    .unwrap()
    .validate()
    .unwrap_err();
    let p = problems(err);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "flex.workflow_sid");
    assert!(p[0].to_string().contains("`WW`"));
}

#[test]
fn live_mode_uses_the_api_key_when_set_and_never_prints_secrets() {
    let valid = load(
        "production",
        &[
            ("twilio.account_sid", "AC00000000000000000000000000000001"),
            ("twilio.auth_token", "tok-secret-1"),
            ("twilio.api_key", "SK00000000000000000000000000000001"),
            ("twilio.api_secret", "api-secret-2"),
            ("flex.workspace_sid", "WS00000000000000000000000000000001"),
            ("flex.workflow_sid", "WW00000000000000000000000000000001"),
            ("server.public_base_url", "https://flexhook.example.com"),
        ],
    )
    .unwrap()
    .validate()
    .unwrap();
    assert!(!valid.is_dry_run());
    let key = valid
        .accounts
        .first()
        .twilio
        .api_key
        .as_ref()
        .expect("the API key");
    assert_eq!(key.sid, "SK00000000000000000000000000000001");
    let debug = format!("{valid:?}");
    assert!(!debug.contains("tok-secret-1"), "{debug}");
    assert!(!debug.contains("api-secret-2"), "{debug}");
}

#[test]
fn customer_addresses_are_masked_in_logs_unless_log_show_addresses_is_on() {
    let valid = |o: &[(&str, &str)]| load("local", o).unwrap().validate().unwrap();
    assert!(!valid(&[]).log.show_addresses);
    assert!(!load("production", &[]).unwrap().log.show_addresses);
    assert!(valid(&[("log.show_addresses", "true")]).log.show_addresses);
}

#[test]
fn shared_keys_and_task_attributes_parse_from_strings() {
    let s = load(
        "local",
        &[
            (
                "twilio.webhook_shared_keys",
                "key_a=secret-a, key_B=secret=b",
            ),
            (
                "flex.task_attributes",
                r#"{"skillNeeded":"Spanish","vip":true}"#,
            ),
        ],
    )
    .unwrap();
    let ids: Vec<&String> = s.twilio.webhook_shared_keys.keys().collect();
    assert_eq!(ids, ["key_B", "key_a"]);
    assert_eq!(
        s.twilio.webhook_shared_keys["key_B"].expose_secret(),
        "secret=b"
    );
    assert_eq!(s.flex.task_attributes["skillNeeded"], "Spanish");
}

#[test]
fn task_attributes_that_are_not_an_object_fail_to_load() {
    let err = load("local", &[("flex.task_attributes", "[1,2]")]).unwrap_err();
    assert!(err.to_string().contains("flex.task_attributes"), "{err}");
}

#[test]
fn out_of_range_rate_and_unsupported_store_are_reported() {
    let err = load(
        "local",
        &[
            ("flex.max_creates_per_second", "25"),
            ("store.url", "mysql://u:pw@db/x"),
        ],
    )
    .unwrap()
    .validate()
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("flex.max_creates_per_second"), "{text}");
    assert!(text.contains("store.url"), "{text}");
    assert!(!text.contains(":pw@"), "passwords are redacted: {text}");
}

#[test]
fn a_queue_longer_than_the_lease_allows_is_refused() {
    let err = load(
        "local",
        &[
            ("worker.concurrency", "200"),
            ("flex.max_creates_per_second", "2"),
            ("worker.lease_secs", "60"),
        ],
    )
    .unwrap()
    .validate()
    .unwrap_err();
    assert_eq!(problems(err)[0].key, "worker.concurrency");
    assert!(load("local", &[("worker.concurrency", "16")])
        .unwrap()
        .validate()
        .is_ok());
}

#[test]
fn public_base_url_must_be_only_an_origin() {
    let err = load(
        "local",
        &[("server.public_base_url", "https://x.fly.dev/hooks")],
    )
    .unwrap()
    .validate()
    .unwrap_err();
    assert_eq!(problems(err)[0].key, "server.public_base_url");
    let ok = load("local", &[("server.public_base_url", "https://x.fly.dev/")])
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(
        ok.server.public_base_url.as_deref(),
        Some("https://x.fly.dev")
    );
}

#[test]
fn public_base_url_ngrok_is_left_to_start_up_and_needs_a_valid_agent_url() {
    let ok = load("local", &[("server.public_base_url", "ngrok")])
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(ok.server.public_base_url, None);
    assert_eq!(
        ok.server.ngrok_api_url.as_deref(),
        Some("http://127.0.0.1:4040")
    );
    let err = load(
        "local",
        &[
            ("server.public_base_url", "ngrok"),
            ("server.ngrok_api_url", "localhost"),
        ],
    )
    .unwrap()
    .validate()
    .unwrap_err();
    assert_eq!(problems(err)[0].key, "server.ngrok_api_url");
    let plain = load("local", &[]).unwrap().validate().unwrap();
    assert_eq!(plain.server.ngrok_api_url, None);
}

#[test]
fn a_twilio_only_command_needs_no_workflow_but_still_its_credentials() {
    let no_flex = [
        ("twilio.account_sid", "AC00000000000000000000000000000001"),
        ("twilio.auth_token", "tok"),
        ("server.public_base_url", "https://flexhook.example.com"),
    ];
    let settings = load("production", &no_flex).unwrap();
    let twilio = settings.twilio().unwrap();
    assert_eq!(
        twilio.account_sid.unwrap().as_str(),
        "AC00000000000000000000000000000001"
    );
    let keys: Vec<String> = problems(settings.validate().unwrap_err())
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(keys, ["flex.workspace_sid", "flex.workflow_sid"]);
    let err = load("production", &[]).unwrap().twilio().unwrap_err();
    let keys: Vec<String> = problems(err).into_iter().map(|p| p.key).collect();
    assert_eq!(keys, ["twilio.account_sid", "twilio.auth_token"]);
}

#[test]
fn the_store_section_validates_alone_and_redacts_its_password() {
    let err = load("local", &[("store.url", "mysql://u:pw@db/x")])
        .unwrap()
        .store()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("store.url") && text.contains("DATABASE_URL"),
        "{text}"
    );
    assert!(!text.contains(":pw@"), "{text}");
    let store = load("local", &[]).unwrap().store().unwrap();
    assert_eq!(store.url.expose(), "sqlite://data/flexhook-local.db");
}

const LIVE: [(&str, &str); 4] = [
    ("twilio.account_sid", "AC00000000000000000000000000000001"),
    ("twilio.auth_token", "tok"),
    ("flex.workspace_sid", "WS00000000000000000000000000000001"),
    ("flex.workflow_sid", "WW00000000000000000000000000000001"),
];

/// The problems of `env` with [`LIVE`] and `extra`, as `(key, text)`.
fn live_problems(env: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let overrides: Vec<(&str, &str)> = LIVE.iter().chain(extra).copied().collect();
    match load(env, &overrides).unwrap().validate() {
        Ok(_) => Vec::new(),
        Err(e) => problems(e)
            .into_iter()
            .map(|p| (p.key.clone(), p.to_string()))
            .collect(),
    }
}

#[test]
fn a_live_account_refuses_the_public_development_token_of_local_toml() {
    let dev = load("local", &[]).unwrap().twilio.auth_token.unwrap();
    let dev = dev.expose_secret();
    // No FLEXHOOK_ENV (local), an account and an API key, no TWILIO_AUTH_TOKEN: the
    // token would silently be local.toml's.
    let err = load(
        "local",
        &[
            ("twilio.account_sid", "AC00000000000000000000000000000001"),
            ("twilio.api_key", "SK00000000000000000000000000000001"),
            ("twilio.api_secret", "api-secret"),
        ],
    )
    .unwrap()
    .validate()
    .unwrap_err();
    let p = problems(err);
    let token = p.iter().find(|p| p.key == "twilio.auth_token");
    let text = token.map(ToString::to_string).unwrap_or_default();
    assert!(
        text.contains("TWILIO_AUTH_TOKEN") && text.contains("development"),
        "{p:?}"
    );
    assert!(
        !text.contains(dev),
        "the token itself is not printed: {text}"
    );
    // As the rotation's other token, too, and in any environment.
    let p = live_problems("production", &[("twilio.secondary_auth_token", dev)]);
    assert!(
        p.iter().any(|(k, _)| k == "twilio.secondary_auth_token"),
        "{p:?}"
    );
    let p = live_problems("staging", &[("twilio.auth_token", dev)]);
    assert!(p.iter().any(|(k, _)| k == "twilio.auth_token"), "{p:?}");
    // Dry-run is what it is for.
    assert!(load("local", &[]).unwrap().validate().unwrap().is_dry_run());
}

#[test]
fn a_retention_shorter_than_what_still_needs_the_jobs_is_refused() {
    let retention = |extra: &[(&str, &str)]| -> Vec<String> {
        live_problems("local", extra)
            .into_iter()
            .filter(|(k, _)| k == "store.retention_days")
            .map(|(_, text)| text)
            .collect()
    };
    let zero = retention(&[("store.retention_days", "0")]);
    assert_eq!(zero.len(), 1, "{zero:?}");
    assert!(
        zero[0].contains("FLEXHOOK_STORE__RETENTION_DAYS"),
        "{zero:?}"
    );
    // A task waits up to TaskRouter's default timeout, a day, for an agent; the
    // lifecycle finds its conversation by the job.
    let one = retention(&[("store.retention_days", "1")]);
    assert!(one.iter().any(|t| t.contains("at least 2")), "{one:?}");
    assert!(retention(&[("store.retention_days", "2")]).is_empty());
    for (key, value, needed) in [
        ("worker.max_age_secs", "172800", "at least 3"),
        ("lifecycle.close_after", "72h", "at least 4"),
        ("flex.task_timeout_secs", "345600", "at least 5"),
    ] {
        let short = retention(&[("store.retention_days", "2"), (key, value)]);
        assert!(
            short.iter().any(|t| t.contains(key) && t.contains(needed)),
            "{key}: {short:?}"
        );
    }
    assert!(retention(&[]).is_empty(), "the default, 30 days, is enough");
}

#[test]
fn production_needs_public_base_url_or_trusted_forwarded_headers() {
    let p = live_problems("production", &[]);
    let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["server.public_base_url"], "{p:?}");
    for needed in [
        "FLEXHOOK_SERVER__PUBLIC_BASE_URL",
        "server.trust_forwarded_headers",
        "Host",
    ] {
        assert!(p[0].1.contains(needed), "{needed}: {p:?}");
    }
    assert!(live_problems(
        "production",
        &[("server.public_base_url", "https://x.fly.dev")]
    )
    .is_empty());
    assert!(live_problems("production", &[("server.trust_forwarded_headers", "true")]).is_empty());
    assert!(live_problems("staging", &[]).is_empty(), "only production");
}

#[test]
fn every_twilio_api_has_its_base_url_key_checked_and_handed_over() {
    for api in Api::ALL {
        let err = load("local", &[(api.key(), "ftp://nope")])
            .unwrap()
            .validate()
            .unwrap_err();
        let keys: Vec<String> = problems(err).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, [api.key()], "{api:?}");
        let url = format!("http://{}.example.test:9", api.label());
        let ok = load("local", &[(api.key(), url.as_str())])
            .unwrap()
            .twilio()
            .unwrap();
        for other in Api::ALL {
            let expected = if other == api {
                url.as_str()
            } else {
                "https://"
            };
            assert!(
                ok.base_urls.get(other).starts_with(expected),
                "{other:?}: {}",
                ok.base_urls.get(other)
            );
        }
    }
}

#[test]
fn reengage_by_flexhook_needs_the_public_url_its_webhooks_point_at() {
    let problems = live_problems("local", &[("lifecycle.reengage", "flexhook")]);
    assert!(
        problems
            .iter()
            .any(|(k, t)| k == "lifecycle.reengage" && t.contains("server.public_base_url")),
        "{problems:?}"
    );
    let with_url = live_problems(
        "local",
        &[
            ("lifecycle.reengage", "flexhook"),
            ("server.public_base_url", "https://flexhook.example.com"),
        ],
    );
    assert!(
        with_url.iter().all(|(k, _)| k != "lifecycle.reengage"),
        "{with_url:?}"
    );
}

/// Two `[accounts.NAME]` tables: `acme` with `[flex]`'s defaults, `globex` with an API key
/// and settings of its own.
const TWO_ACCOUNTS: &str = r#"
[flex]
task_attributes = '{"team":"support"}'

[accounts.acme]
account_sid = "AC11111111111111111111111111111111"
auth_token = "acme-token"
workspace_sid = "WS11111111111111111111111111111111"
workflow_sid = "WW11111111111111111111111111111111"

[accounts.globex]
account_sid = "AC22222222222222222222222222222222"
auth_token = "globex-token"
api_key = "SK22222222222222222222222222222222"
api_secret = "globex-secret"
workspace_sid = "WS22222222222222222222222222222222"
workflow_sid = "WW22222222222222222222222222222222"
task_channel = "sms"
task_attributes = '{"brand":"globex"}'
max_creates_per_second = 5
"#;

fn keys_of(err: ConfigError) -> Vec<String> {
    problems(err).into_iter().map(|p| p.key).collect()
}

#[test]
fn named_accounts_replace_the_flat_one_and_take_flex_s_other_keys_as_defaults() {
    let valid = Settings::from_toml(TWO_ACCOUNTS)
        .unwrap()
        .validate()
        .unwrap();
    assert!(!valid.is_dry_run());
    assert_eq!(valid.accounts.names(), ["acme", "globex"]);
    let acme = valid.accounts.by_name("acme").unwrap();
    assert_eq!(acme.flex.task_channel, "chat");
    assert_eq!(acme.flex.task_attributes["team"], "support");
    assert_eq!(acme.flex.max_creates_per_second, 15);
    assert!(acme.twilio.api_key.is_none());
    assert_eq!(acme.twilio.auth_token.expose_secret(), "acme-token");
    let globex = valid.accounts.by_name("globex").unwrap();
    assert_eq!(globex.flex.task_channel, "sms");
    assert_eq!(globex.flex.task_attributes.get("team"), None);
    assert_eq!(globex.flex.task_attributes["brand"], "globex");
    assert_eq!(globex.flex.max_creates_per_second, 5);
    assert_eq!(
        globex.flex.workflow_sid.as_str(),
        "WW22222222222222222222222222222222"
    );
    assert_eq!(
        globex.twilio.api_key.as_ref().unwrap().sid,
        "SK22222222222222222222222222222222"
    );
    // Shared: the base URLs and the timeout.
    assert_eq!(globex.twilio.base_urls, acme.twilio.base_urls);
    let sid = crate::domain::AccountSid::parse("AC22222222222222222222222222222222").unwrap();
    assert_eq!(valid.accounts.by_sid(&sid).unwrap().name, "globex");
    // The flat sections make one account, named `default`, as before.
    let flat = load("local", &[]).unwrap().validate().unwrap();
    assert_eq!(flat.accounts.names(), [DEFAULT_ACCOUNT]);
}

#[test]
fn every_problem_of_an_account_names_its_own_key_and_variable() {
    let text = format!(
        "{TWO_ACCOUNTS}\n[accounts.initech]\naccount_sid = \"AC22222222222222222222222222222222\"\nworkspace_sid = \"WS33333333333333333333333333333333\"\nworkflow_sid = \"WS33333333333333333333333333333333\"\nmax_creates_per_second = 50\n\n[accounts.2nd]\naccount_sid = \"AC44444444444444444444444444444444\"\n"
    );
    let err = Settings::from_toml(&text).unwrap().validate().unwrap_err();
    let shown = err.to_string();
    let keys = keys_of(err);
    for key in [
        "accounts.initech.auth_token",
        "accounts.initech.workflow_sid",
        "accounts.initech.max_creates_per_second",
        "accounts.2nd",
    ] {
        assert!(keys.contains(&key.to_owned()), "{key} not in {keys:?}");
    }
    // Two accounts with one SID: a webhook could not tell them apart.
    assert!(
        shown.contains("accounts.initech.account_sid")
            && shown.contains("accounts.globex.account_sid"),
        "{shown}"
    );
    assert!(
        shown.contains("FLEXHOOK_ACCOUNTS__INITECH__AUTH_TOKEN"),
        "{shown}"
    );
    // A `[flex]` key an account leaves to `[flex]` is named as `[flex]`'s.
    let text = TWO_ACCOUNTS.replace(
        "task_attributes = '{\"team\":\"support\"}'",
        "task_channel = \" \"",
    );
    let keys = keys_of(Settings::from_toml(&text).unwrap().validate().unwrap_err());
    assert_eq!(keys, ["flex.task_channel"]);
}

#[test]
fn an_account_sid_in_twilio_beside_named_accounts_is_refused() {
    let text =
        format!("{TWO_ACCOUNTS}\n[twilio]\naccount_sid = \"AC55555555555555555555555555555555\"\n");
    let err = Settings::from_toml(&text).unwrap().validate().unwrap_err();
    let shown = err.to_string();
    assert_eq!(keys_of(err), ["twilio.account_sid"]);
    assert!(shown.contains("[accounts.acme]"), "{shown}");
}

#[test]
fn flat_credentials_beside_named_accounts_are_refused_not_kept_unused() {
    let text = format!(
        "{TWO_ACCOUNTS}\n[twilio]\nauth_token = \"left-over\"\napi_key = \"SK55555555555555555555555555555555\"\napi_secret = \"left-over\"\nwebhook_shared_keys = {{ k1 = \"left-over\" }}\n"
    );
    let err = Settings::from_toml(&text).unwrap().validate().unwrap_err();
    let shown = err.to_string();
    assert_eq!(
        keys_of(err),
        [
            "twilio.auth_token",
            "twilio.api_key",
            "twilio.api_secret",
            "twilio.webhook_shared_keys"
        ]
    );
    assert!(
        shown.contains("TWILIO_AUTH_TOKEN") && shown.contains("accounts.NAME.auth_token"),
        "{shown}"
    );
    assert!(!shown.contains("left-over"), "a secret was shown: {shown}");
    // config/local.toml's public development token is not the operator's: tables work in
    // `local` too.
    let local = load("local", &[]).unwrap();
    let mut text = TWO_ACCOUNTS.to_owned();
    text.push_str(&format!(
        "\n[twilio]\nauth_token = \"{}\"\n",
        local.twilio.auth_token.unwrap().expose_secret()
    ));
    let valid = Settings::from_toml(&text).unwrap().validate().unwrap();
    assert_eq!(valid.accounts.names(), ["acme", "globex"]);
}

#[test]
fn a_rule_may_be_for_some_accounts_but_only_configured_ones() {
    let rule = |accounts: &str| {
        format!(
            "{TWO_ACCOUNTS}\n[[routing.rules]]\nname = \"vip\"\nmatch = {{ account = [{accounts}] }}\nset = {{ priority = 9 }}\n"
        )
    };
    let valid = Settings::from_toml(&rule("\"globex\""))
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(valid.routing.rules[0].accounts, ["globex"]);
    assert!(!valid.routing.rules[0].is_catch_all());
    assert_eq!(valid.routing.for_account("globex").rules.len(), 1);
    assert!(valid.routing.for_account("acme").rules.is_empty());
    let err = Settings::from_toml(&rule("\"globex\", \"initech\""))
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("match.account `initech`") && err.contains("acme, globex"),
        "{err}"
    );
}

#[test]
fn a_command_gets_the_only_account_or_the_one_it_names() {
    let mut settings = Settings::from_toml(TWO_ACCOUNTS).unwrap();
    let err = settings.twilio().unwrap_err().to_string();
    assert!(
        err.contains("--account") && err.contains("acme, globex"),
        "{err}"
    );
    settings.account = Some("globex".into());
    let twilio = settings.twilio().unwrap();
    assert_eq!(
        twilio.account_sid.unwrap().as_str(),
        "AC22222222222222222222222222222222"
    );
    assert_eq!(
        settings.workspace_sid().unwrap().as_str(),
        "WS22222222222222222222222222222222"
    );
    let (flex, _) = settings.routes().unwrap();
    assert_eq!(flex.task_channel, "sms");
    settings.account = Some("initech".into());
    let err = settings.twilio().unwrap_err().to_string();
    assert!(
        err.contains("initech") && err.contains("acme, globex"),
        "{err}"
    );
    // With the flat sections, `default` is the one.
    let flat = load("local", &[]).unwrap();
    assert_eq!(flat.account_name().unwrap(), DEFAULT_ACCOUNT);
}

#[test]
fn an_accounts_keys_are_set_by_variables_named_after_it() {
    assert_eq!(
        env_vars_for("accounts.acme.auth_token"),
        "set by FLEXHOOK_ACCOUNTS__ACME__AUTH_TOKEN"
    );
    assert_eq!(
        env_vars_for("flex.workflow_sid"),
        "set by FLEXHOOK_FLEX__WORKFLOW_SID"
    );
}
