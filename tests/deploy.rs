//! The deployment files agree with the service: fly.toml's port, health check and warm
//! machine; the Dockerfile's non-root runtime and fixed config folder; a comment on every
//! setting.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap()
}

/// The Dockerfile's last stage, the runtime image, one instruction a line.
fn runtime_stage() -> String {
    let dockerfile = read("Dockerfile").replace("\\\n", " ");
    dockerfile.rsplit("\nFROM ").next().unwrap().to_owned()
}

/// The runtime image's `ENV` variables, as every process in it gets them.
fn image_env() -> BTreeMap<String, String> {
    runtime_stage()
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(str::split_whitespace)
        .map(|pair| {
            let (name, value) = pair.split_once('=').expect("ENV NAME=value");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// Where the runtime image holds `config/`.
fn image_config_dir() -> String {
    runtime_stage()
        .lines()
        .find_map(|l| l.strip_prefix("COPY config "))
        .expect("the image copies config/")
        .trim()
        .to_owned()
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
    // The store comes from production.toml, so that DATABASE_URL can replace it: a
    // FLEXHOOK_STORE__URL in fly.toml or the image would win over `fly postgres attach`.
    assert!(env.get("FLEXHOOK_STORE__URL").is_none());
    let production: toml::Value = toml::from_str(&read("config/production.toml")).unwrap();
    let store = production["store"]["url"].as_str().unwrap();
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
fn the_dockerfile_builds_in_two_stages_and_starts_through_the_privilege_dropping_entrypoint() {
    let dockerfile = read("Dockerfile");
    assert_eq!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")),
        2
    );
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
    // The container starts as root (a USER line would keep the entrypoint from handing the
    // volume over), and the entrypoint drops to the user the image creates.
    assert!(
        !dockerfile.lines().any(|l| l.starts_with("USER ")),
        "a USER line would stop the entrypoint from fixing the volume's owner"
    );
    assert!(dockerfile
        .lines()
        .any(|l| l == "COPY deploy/entrypoint.sh /usr/local/bin/flexhook-entrypoint"));
    assert!(dockerfile
        .lines()
        .any(|l| l == r#"ENTRYPOINT ["flexhook-entrypoint"]"#));
    let env = image_env();
    let run_as = env
        .get("FLEXHOOK_RUN_AS")
        .expect("the image names the service user");
    assert!(
        dockerfile.contains(&format!(
            "useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin {run_as}"
        )),
        "the image creates {run_as}"
    );
    assert!(
        !dockerfile.contains("FLEXHOOK_STORE__URL"),
        "the image leaves the store to production.toml and DATABASE_URL"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode =
        std::fs::metadata(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/entrypoint.sh"))
            .unwrap()
            .permissions()
            .mode();
    assert_eq!(
        mode & 0o111,
        0o111,
        "deploy/entrypoint.sh must be executable"
    );
}

/// `server.shutdown_timeout_secs` as production runs it: default.toml, then production.toml,
/// then fly.toml's `[env]`.
fn production_shutdown_timeout_secs(fly: &toml::Value) -> u64 {
    let defaults: toml::Value = toml::from_str(&read("config/default.toml")).unwrap();
    let production: toml::Value = toml::from_str(&read("config/production.toml")).unwrap();
    if let Some(v) = fly["env"].get("FLEXHOOK_SERVER__SHUTDOWN_TIMEOUT_SECS") {
        return v.as_str().unwrap().parse().unwrap();
    }
    production
        .get("server")
        .and_then(|s| s.get("shutdown_timeout_secs"))
        .unwrap_or(&defaults["server"]["shutdown_timeout_secs"])
        .as_integer()
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn fly_waits_longer_than_the_graceful_shutdown_before_killing() {
    let fly: toml::Value = toml::from_str(&read("fly.toml")).unwrap();
    let signal = fly["kill_signal"].as_str().expect("kill_signal is set");
    assert!(
        matches!(signal, "SIGTERM" | "SIGINT"),
        "flexhook stops gracefully on SIGTERM and SIGINT, not on {signal}"
    );
    let kill_timeout = match &fly["kill_timeout"] {
        toml::Value::Integer(secs) => std::time::Duration::from_secs((*secs).try_into().unwrap()),
        toml::Value::String(s) => humantime::parse_duration(s).unwrap(),
        other => panic!("kill_timeout is neither seconds nor a duration: {other}"),
    };
    let shutdown = std::time::Duration::from_secs(production_shutdown_timeout_secs(&fly));
    assert!(
        kill_timeout > shutdown,
        "kill_timeout {kill_timeout:?} must exceed server.shutdown_timeout_secs {shutdown:?}"
    );
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

#[test]
fn fly_scrapes_the_metrics_port_flexhook_serves_and_never_exposes_it() {
    let fly: toml::Value = toml::from_str(&read("fly.toml")).unwrap();
    let scraped = fly["metrics"]["port"].as_integer().expect("[metrics] port");
    assert_eq!(fly["metrics"]["path"].as_str(), Some("/metrics"));
    let served: i64 = fly["env"]["FLEXHOOK_SERVER__METRICS_PORT"]
        .as_str()
        .expect("fly.toml's [env] sets server.metrics_port")
        .parse()
        .unwrap();
    assert_eq!(
        scraped, served,
        "[metrics] scrapes the port flexhook serves"
    );
    let internal = fly["http_service"]["internal_port"].as_integer().unwrap();
    assert_ne!(served, internal, "metrics stay off the public webhook port");
    assert!(
        fly.get("services").is_none(),
        "no [[services]] could publish the metrics port"
    );
}

#[test]
fn the_image_reads_its_config_from_where_it_copies_it_whatever_the_working_directory() {
    let env = image_env();
    assert_eq!(env["FLEXHOOK_ENV"], "production");
    let dir = env.get("FLEXHOOK_CONFIG_DIR").expect(
        "the image sets FLEXHOOK_CONFIG_DIR, or a command run outside WORKDIR reads no config",
    );
    assert!(
        dir.starts_with('/'),
        "FLEXHOOK_CONFIG_DIR={dir} is relative"
    );
    assert_eq!(*dir, image_config_dir());
    let production: toml::Value = toml::from_str(&read("config/production.toml")).unwrap();
    let store = production["store"]["url"].as_str().unwrap();
    assert!(
        store.starts_with("sqlite:///"),
        "production's store must not depend on the working directory: {store}"
    );
}

/// `fly ssh console -C "flexhook jobs list"`: the image's environment, but not its WORKDIR.
#[test]
fn a_command_run_in_the_image_from_another_folder_uses_production_toml_and_its_store() {
    // The image's file system under a temporary root: config/ where the Dockerfile copies
    // it, production.toml's store on the volume under that root too.
    let root = tempfile::tempdir().unwrap();
    let in_image = |path: &str| root.path().join(path.trim_start_matches('/'));
    let config_dir = in_image(&image_config_dir());
    std::fs::create_dir_all(&config_dir).unwrap();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("config")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "sqlite:///",
            &format!("sqlite://{}/", root.path().display()),
        );
        std::fs::write(config_dir.join(path.file_name().unwrap()), text).unwrap();
    }
    let store = in_image("/data/flexhook.db");
    let elsewhere = in_image("/tmp");
    std::fs::create_dir(&elsewhere).unwrap();

    let image_env = image_env().into_iter().map(|(name, value)| {
        let value = if value.starts_with('/') {
            in_image(&value).into_os_string()
        } else {
            value.into()
        };
        (name, value)
    });
    let out = Command::new(env!("CARGO_BIN_EXE_flexhook"))
        .args(["jobs", "list"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .envs(image_env)
        .current_dir(&elsewhere)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);

    assert!(out.status.success(), "{stderr}");
    assert!(store.is_file(), "production.toml's store was opened");
    assert!(
        std::fs::read_dir(&elsewhere).unwrap().next().is_none(),
        "nothing was created in the working directory"
    );
}
