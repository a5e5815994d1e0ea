//! Start-up check that the SQLite store's directory and files are writable by this
//! process, so that a root-owned volume stops start-up with the fix, instead of the first
//! webhook failing with "attempt to write a readonly database".

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::Path;

/// `Err` names the path, the user flexhook runs as, and the fix.
pub(super) fn check(file: &Path) -> Result<(), String> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Creating and removing a file is the only portable test: permission bits say nothing
    // about read-only mounts, ACLs or capabilities.
    let probe = dir.join(format!(".flexhook-write-check-{}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => return Err(not_writable(dir, &e)),
    }
    let wal = |suffix: &str| {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    for path in [file.to_path_buf(), wal("-wal"), wal("-shm")] {
        match OpenOptions::new().write(true).open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(not_writable(&path, &e)),
        }
    }
    Ok(())
}

fn not_writable(path: &Path, e: &std::io::Error) -> String {
    let user = current_user();
    format!(
        "{} is not writable by the user flexhook runs as ({user}): {e}. Make it that user's, \
         e.g. `chown {} {}`. The Docker image's entrypoint does this itself when the container \
         starts as root (it does not when started with --user)",
        path.display(),
        user.uid,
        path.display()
    )
}

/// The effective user, by name when it has one.
struct User {
    name: Option<String>,
    uid: u32,
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name}, uid {}", self.uid),
            None => write!(f, "uid {}", self.uid),
        }
    }
}

fn current_user() -> User {
    let uid = nix::unistd::Uid::effective();
    User {
        name: nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name),
        uid: uid.as_raw(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_directory_passes_and_leaves_no_probe_behind() {
        let dir = tempfile::tempdir().unwrap();
        check(&dir.path().join("flexhook.db")).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_directory_is_reported_with_its_path_and_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("absent").join("flexhook.db");
        let err = check(&file).unwrap_err();
        assert!(
            err.contains(&dir.path().join("absent").display().to_string()),
            "{err}"
        );
        assert!(
            err.contains(&format!("uid {}", nix::unistd::Uid::effective())),
            "{err}"
        );
        assert!(err.contains("chown"), "{err}");
    }
}
