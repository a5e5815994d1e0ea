//! The container entrypoint (`deploy/entrypoint.sh`), run for real as root against a
//! root-owned directory standing in for a freshly mounted Fly volume. There is no container
//! engine here, so the script runs on the host with `nobody` as the service user, and the
//! real flexhook binary, copied where `nobody` can run it.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{services, Served};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/entrypoint.sh");
const SERVICE_USER: &str = "nobody";

/// Root, `setpriv` and a `nobody` user are what these tests need: without them a test is
/// reported skipped (and fails under `CI=true`).
fn can_run() -> bool {
    services::available(
        &services::this_test(),
        services::root_with(&["/usr/bin/setpriv"], &[SERVICE_USER]),
    )
    .is_some()
}

fn nobody() -> (u32, u32) {
    let user = nix::unistd::User::from_name(SERVICE_USER).unwrap().unwrap();
    (user.uid.as_raw(), user.gid.as_raw())
}

/// A world-readable scratch root with the binary in `bin/` and a root-owned 0755 `volume/`.
struct Image {
    root: tempfile::TempDir,
}

impl Image {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        chmod(root.path(), 0o755);
        std::fs::create_dir(root.path().join("bin")).unwrap();
        chmod(&root.path().join("bin"), 0o755);
        std::fs::copy(
            env!("CARGO_BIN_EXE_flexhook"),
            root.path().join("bin/flexhook"),
        )
        .unwrap();
        chmod(&root.path().join("bin/flexhook"), 0o755);
        let volume = root.path().join("volume");
        std::fs::create_dir(&volume).unwrap();
        chmod(&volume, 0o755);
        assert_eq!(std::fs::metadata(&volume).unwrap().uid(), 0);
        Self { root }
    }

    fn volume(&self) -> PathBuf {
        self.root.path().join("volume")
    }

    fn db(&self) -> PathBuf {
        self.volume().join("flexhook.db")
    }

    /// `sh deploy/entrypoint.sh ARGS`, with the image's environment and nothing else.
    fn entrypoint(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg(SCRIPT)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("FLEXHOOK_RUN_AS", SERVICE_USER)
            .env("FLEXHOOK_BIN", self.root.path().join("bin/flexhook"))
            .env("FLEXHOOK_CONFIG_DIR", self.root.path())
            .env(
                "FLEXHOOK_STORE__URL",
                format!("sqlite://{}", self.db().display()),
            )
            .env("FLEXHOOK_TWILIO__AUTH_TOKEN", "entrypoint-test-token")
            .env(
                "FLEXHOOK_FLEX__WORKSPACE_SID",
                "WS00000000000000000000000000000000",
            )
            .env(
                "FLEXHOOK_FLEX__WORKFLOW_SID",
                "WW00000000000000000000000000000000",
            )
            .env("FLEXHOOK_SERVER__HOST", "127.0.0.1")
            .env("FLEXHOOK_SERVER__PORT", "0")
            .env("NO_COLOR", "1")
            .current_dir(self.root.path())
            .stdin(Stdio::null());
        cmd
    }

    /// `entrypoint serve`, once flexhook listens.
    fn serve(&self) -> Served {
        Served::start(self.entrypoint(&["serve"]))
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A field of a running process's `/proc/<pid>/status`, e.g. `Uid:` or `CapBnd:`.
fn status_field(pid: u32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

/// The real, effective, saved and fs uid and gid of a running process.
fn ids_of(pid: u32) -> (Vec<u32>, Vec<u32>) {
    let ids = |name: &str| -> Vec<u32> {
        status_field(pid, name)
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    (ids("Uid:"), ids("Gid:"))
}

#[cfg_attr(
    not(flexhook_root),
    ignore = "needs root, setpriv and a nobody user (.ci/run runs as root)"
)]
#[test]
fn started_as_root_it_hands_the_volume_to_the_service_user_and_serves_as_that_user() {
    if !can_run() {
        return;
    }
    let image = Image::new();
    // A store file left behind by a command once run as root (`fly ssh console` is root).
    std::fs::write(image.db(), b"").unwrap();
    std::fs::write(image.volume().join("flexhook.db-wal"), b"").unwrap();
    let unrelated = image.volume().join("lost+found");
    std::fs::create_dir(&unrelated).unwrap();

    let served = image.serve();

    // The entrypoint exec'd flexhook in the same process, as the service user.
    let (uid, gid) = nobody();
    let (uids, gids) = ids_of(served.pid());
    let exe = std::fs::read_link(format!("/proc/{}/exe", served.pid())).unwrap();
    served.sigkill();
    assert_eq!(exe, image.root.path().join("bin/flexhook"));
    assert_eq!(uids, [uid; 4], "real, effective, saved and fs uid");
    assert_eq!(gids, [gid; 4], "real, effective, saved and fs gid");

    let owner = |p: &Path| std::fs::metadata(p).unwrap().uid();
    assert_eq!(
        owner(&image.volume()),
        uid,
        "the volume is the service user's"
    );
    assert_eq!(owner(&image.db()), uid);
    assert_eq!(owner(&image.volume().join("flexhook.db-wal")), uid);
    assert_eq!(
        owner(&unrelated),
        0,
        "nothing else on the volume is touched"
    );
    // flexhook migrated the store, so it really wrote to it.
    assert!(std::fs::metadata(image.db()).unwrap().len() > 0);
}

#[cfg_attr(
    not(flexhook_root),
    ignore = "needs root, setpriv and a nobody user (.ci/run runs as root)"
)]
#[test]
fn the_service_can_never_regain_a_privilege_it_dropped() {
    if !can_run() {
        return;
    }
    let image = Image::new();
    let served = image.serve();
    let field = |name: &str| status_field(served.pid(), name);
    let (no_new_privs, bounding) = (field("NoNewPrivs:"), field("CapBnd:"));
    let held: Vec<String> = ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"]
        .into_iter()
        .map(field)
        .collect();
    served.sigkill();
    assert_eq!(
        no_new_privs, "1",
        "no setuid binary or file capability can raise it again"
    );
    assert_eq!(
        bounding, "0000000000000000",
        "no capability can ever be gained back"
    );
    assert_eq!(held, ["0000000000000000"; 4], "it holds no capability");
}

/// README: `fly ssh console -C "flexhook-entrypoint jobs list"`, which starts as root in `/`.
#[cfg_attr(
    not(flexhook_root),
    ignore = "needs root, setpriv and a nobody user (.ci/run runs as root)"
)]
#[test]
fn a_command_run_through_it_as_root_runs_as_the_service_user() {
    if !can_run() {
        return;
    }
    let image = Image::new();
    let out = image
        .entrypoint(&["jobs", "list"])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (uid, _) = nobody();
    let created = std::fs::metadata(image.db()).unwrap();
    assert_eq!(
        created.uid(),
        uid,
        "the store was created by the service user"
    );
}

#[cfg_attr(
    not(flexhook_root),
    ignore = "needs root, setpriv and a nobody user (.ci/run runs as root)"
)]
#[test]
fn started_as_another_user_it_changes_nothing_and_flexhook_names_the_unwritable_path() {
    if !can_run() {
        return;
    }
    let image = Image::new();
    let (uid, gid) = nobody();
    let cmd = image.entrypoint(&["serve"]);
    // `docker run --user nobody`: the script itself starts unprivileged.
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let mut unprivileged = Command::new("setpriv");
    unprivileged
        .args([
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".to_owned(),
            "--".to_owned(),
        ])
        .arg(program)
        .args(args)
        .env_clear()
        .envs(
            cmd.get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .current_dir(image.root.path())
        .stdin(Stdio::null());
    let out = unprivileged.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);

    assert!(!out.status.success(), "{stderr}");
    assert_eq!(std::fs::metadata(image.volume()).unwrap().uid(), 0);
    assert!(!image.db().exists(), "nothing was created");
    assert!(stderr.contains("store.url"), "{stderr}");
    assert!(
        stderr.contains(&image.volume().display().to_string()),
        "names the path: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{SERVICE_USER}, uid {uid}")),
        "names the user: {stderr}"
    );
    assert!(stderr.contains("chown"), "says how to fix it: {stderr}");
    assert!(!stderr.contains("readonly database"), "{stderr}");
}
