//! The deployment files agree with the service: fly.toml's port, health check and warm
//! machine; the Dockerfile's non-root runtime; a comment on every setting.

use std::path::Path;

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap()
}

#[test]
fn fly_toml_serves_the_default_port_checks_healthz_and_keeps_a_machine_warm() {
    let fly: toml::Value = toml::from_str(&read("fly.toml")).unwrap();
    let defaults: toml::Value = toml::from_str(&read("config/default.toml")).unwrap();
    let http = &fly["http_service"];
    assert_eq!(http["internal_port"], defaults["server"]["port"]);
    assert_eq!(http["force_https"].as_bool(), Some(true));
    assert_eq!(http["min_machines_running"].as_integer(), Some(1));
    assert_eq!(http["auto_stop_machines"].as_str(), Some("off"));
    let checks = http["checks"].as_array().unwrap();
    assert!(checks
        .iter()
        .any(|c| c["path"].as_str() == Some("/healthz")));
    let env = &fly["env"];
    assert_eq!(env["FLEXHOOK_ENV"].as_str(), Some("production"));
    let store = env["FLEXHOOK_STORE__URL"].as_str().unwrap();
    let mount = fly["mounts"][0]["destination"].as_str().unwrap();
    assert!(
        store.starts_with(&format!("sqlite://{mount}/")),
        "the store lives on the volume: {store} vs {mount}"
    );
    assert!(env["FLEXHOOK_SERVER__PUBLIC_BASE_URL"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
}

#[test]
fn the_dockerfile_builds_in_two_stages_and_runs_as_a_non_root_user() {
    let dockerfile = read("Dockerfile");
    assert_eq!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")),
        2
    );
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert_ne!(user.trim(), "root");
    assert!(dockerfile.contains("--release --locked"));
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let source = line.split_whitespace().nth(1).unwrap();
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(source).exists(),
            "the Dockerfile copies {source}, which does not exist"
        );
    }
}

#[test]
fn every_setting_in_default_toml_has_a_comment() {
    let text = read("config/default.toml");
    let mut previous = "";
    for line in text.lines() {
        let trimmed = line.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') && !trimmed.starts_with('[') {
            let key = trimmed.split('=').next().unwrap().trim();
            assert!(
                previous.starts_with('#') || previous.contains('='),
                "`{key}` in config/default.toml has no comment above it"
            );
        }
        if !trimmed.is_empty() {
            previous = trimmed;
        }
    }
}
