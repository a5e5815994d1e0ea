//! The deployment files agree with the service: fly.toml's port, health check and warm
//! machine; the Dockerfile's non-root runtime and fixed config folder; a comment on every
//! setting. The Dockerfile is read as Docker reads it (stages of instructions), so that its
//! layout may change freely while what the image does may not.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{flexhook, run};

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap()
}

/// One Dockerfile instruction: its keyword (upper case) and its arguments, continuation
/// lines joined and comment lines dropped, as Docker reads it.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// One build stage: its `FROM` arguments and its instructions.
#[derive(Debug)]
struct Stage {
    from: String,
    instructions: Vec<Instruction>,
}

impl Stage {
    /// The `AS` name of the stage, if any.
    fn name(&self) -> Option<String> {
        let words: Vec<&str> = self.from.split_whitespace().collect();
        words
            .iter()
            .position(|w| w.eq_ignore_ascii_case("as"))
            .and_then(|i| words.get(i + 1))
            .map(|n| n.to_string())
    }

    /// The arguments of every `keyword` instruction, in order.
    fn all(&self, keyword: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|i| i.keyword == keyword)
            .map(|i| i.args.as_str())
            .collect()
    }

    /// The arguments of the last `keyword` instruction (the one that counts for `CMD`,
    /// `ENTRYPOINT`, `WORKDIR`).
    fn last(&self, keyword: &str) -> Option<&str> {
        self.all(keyword).pop()
    }

    /// Every `COPY` of the stage.
    fn copies(&self) -> Vec<Copy> {
        self.all("COPY").into_iter().map(Copy::parse).collect()
    }

    /// The destination of the `COPY` of `source` from the build context.
    fn copy_destination(&self, source: &str) -> Option<String> {
        self.copies()
            .into_iter()
            .find(|c| c.from.is_none() && c.sources.iter().any(|s| s == source))
            .map(|c| c.destination)
    }
}

/// A `COPY [--from=STAGE] [--chown=…] SOURCE… DESTINATION`.
#[derive(Debug)]
struct Copy {
    from: Option<String>,
    sources: Vec<String>,
    destination: String,
}

impl Copy {
    fn parse(args: &str) -> Self {
        let words = shell_words(args);
        let from = words
            .iter()
            .find_map(|w| w.strip_prefix("--from="))
            .map(str::to_owned);
        let mut paths: Vec<String> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
        let destination = paths.pop().expect("COPY has a destination");
        Self {
            from,
            sources: paths,
            destination: destination.trim_end_matches('/').to_owned(),
        }
    }
}

/// The Dockerfile, as Docker reads it: stages of instructions.
fn dockerfile() -> Vec<Stage> {
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for line in read("Dockerfile").lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                pending.push_str(part);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let (keyword, args) = pending
                    .split_once(char::is_whitespace)
                    .unwrap_or((&pending, ""));
                instructions.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_owned(),
                });
                pending.clear();
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in instructions {
        if instruction.keyword == "FROM" {
            stages.push(Stage {
                from: instruction.args,
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("the Dockerfile starts with FROM")
                .instructions
                .push(instruction);
        }
    }
    stages
}

/// The stage the image is: the last.
fn runtime_stage() -> Stage {
    dockerfile().pop().expect("a stage")
}

/// Words as a POSIX shell splits them (quotes removed), enough for Dockerfile arguments.
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// An exec-form (`["a", "b"]`) `CMD` or `ENTRYPOINT`; `None` for the shell form.
fn exec_form(args: &str) -> Option<Vec<String>> {
    serde_json::from_str(args).ok()
}

/// The runtime image's `ENV` variables, as every process in it gets them.
fn image_env() -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for args in runtime_stage().all("ENV") {
        let words = shell_words(args);
        if words.first().is_some_and(|w| w.contains('=')) {
            for pair in words {
                let (name, value) = pair.split_once('=').expect("ENV NAME=value");
                env.insert(name.to_owned(), value.to_owned());
            }
        } else if let [name, value @ ..] = words.as_slice() {
            // The legacy form: `ENV NAME value with spaces`.
            env.insert(name.clone(), value.join(" "));
        }
    }
    env
}

/// Where the runtime image holds `config/`.
fn image_config_dir() -> String {
    runtime_stage()
        .copy_destination("config")
        .expect("the image copies config/")
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
    let stages = dockerfile();
    assert_eq!(stages.len(), 2, "a build stage and the runtime image");
    let (build, runtime) = (&stages[0], &stages[1]);
    let cargo_build = build
        .all("RUN")
        .into_iter()
        .map(shell_words)
        .find(|w| w.windows(2).any(|p| p == ["cargo", "build"]))
        .expect("the build stage runs cargo build");
    for flag in ["--release", "--locked"] {
        assert!(cargo_build.iter().any(|w| w == flag), "cargo build {flag}");
    }
    // The image takes the release binary from the build stage.
    let build_name = build.name().expect("the build stage is named");
    assert!(
        runtime
            .copies()
            .iter()
            .any(|c| c.from.as_deref() == Some(build_name.as_str())
                && c.sources.iter().any(|s| s.ends_with("/release/flexhook"))),
        "the image copies the release binary from {build_name}"
    );
    for copy in stages
        .iter()
        .flat_map(Stage::copies)
        .filter(|c| c.from.is_none())
    {
        for source in &copy.sources {
            assert!(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(source).exists(),
                "the Dockerfile copies {source}, which does not exist"
            );
        }
    }
    // The container starts as root (a USER line would keep the entrypoint from handing the
    // volume over), and the entrypoint drops to the user the image creates.
    assert!(
        runtime.all("USER").is_empty(),
        "a USER line would stop the entrypoint from fixing the volume's owner"
    );
    let script = runtime
        .copy_destination("deploy/entrypoint.sh")
        .expect("the image holds deploy/entrypoint.sh");
    let entrypoint = runtime
        .last("ENTRYPOINT")
        .and_then(exec_form)
        .expect("an exec-form ENTRYPOINT, so that signals reach flexhook");
    let script_path = Path::new(&script);
    let on_path = ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .any(|dir| script_path.parent() == Some(Path::new(dir)));
    assert!(
        entrypoint[0] == script
            || (on_path && script_path.file_name() == Some(entrypoint[0].as_ref())),
        "the image starts through the entrypoint script ({script}): {entrypoint:?}"
    );
    assert_eq!(
        runtime.last("CMD").and_then(exec_form),
        Some(vec!["serve".to_owned()]),
        "by default the image serves"
    );
    let env = image_env();
    let run_as = env
        .get("FLEXHOOK_RUN_AS")
        .expect("the image names the service user");
    let useradd: Vec<String> = runtime
        .all("RUN")
        .into_iter()
        .flat_map(|run| {
            let words = shell_words(run);
            let start = words.iter().position(|w| w == "useradd")?;
            let end = words[start..]
                .iter()
                .position(|w| w == "&&" || w == ";")
                .map_or(words.len(), |e| start + e);
            Some(words[start + 1..end].to_vec())
        })
        .next()
        .unwrap_or_else(|| panic!("the image creates {run_as}"));
    let option = |name: &str| {
        useradd
            .iter()
            .position(|w| w == name)
            .and_then(|i| useradd.get(i + 1))
    };
    assert_eq!(useradd.last(), Some(run_as), "the image creates {run_as}");
    assert!(useradd.iter().any(|w| w == "--system"), "{useradd:?}");
    let uid: u32 = option("--uid")
        .expect("a fixed uid, so that the volume's owner survives a rebuild")
        .parse()
        .unwrap();
    assert_ne!(uid, 0, "the service user is not root");
    assert!(
        option("--shell").is_some_and(|s| s.ends_with("/nologin")),
        "{run_as} cannot log in: {useradd:?}"
    );
    assert_eq!(
        option("--home-dir").map(String::as_str),
        runtime.last("WORKDIR"),
        "{run_as}'s home is the image's working directory"
    );
    assert!(
        stages
            .iter()
            .flat_map(|s| &s.instructions)
            .all(|i| !i.args.contains("FLEXHOOK_STORE__URL")),
        "the image leaves the store to production.toml and DATABASE_URL"
    );
    let fly: toml::Value = toml::from_str(&read("fly.toml")).unwrap();
    let port = fly["http_service"]["internal_port"].as_integer().unwrap();
    assert!(
        runtime
            .all("EXPOSE")
            .iter()
            .flat_map(|e| e.split_whitespace())
            .any(|p| p.split('/').next() == Some(port.to_string().as_str())),
        "the image exposes fly.toml's internal_port {port}"
    );
    assert_eq!(
        fly["build"]["dockerfile"].as_str(),
        Some("Dockerfile"),
        "fly builds this Dockerfile"
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
    let mut command = flexhook(&["jobs", "list"]);
    command.envs(image_env).current_dir(&elsewhere);
    let out = run(command);
    let stderr = &out.stderr;

    assert!(out.status.success(), "{stderr}");
    assert!(store.is_file(), "production.toml's store was opened");
    assert!(
        std::fs::read_dir(&elsewhere).unwrap().next().is_none(),
        "nothing was created in the working directory"
    );
}
