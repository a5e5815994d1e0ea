//! Decides, when the tests are built, which tests need a service this machine lacks, so
//! that `cargo test` lists them as ignored with their reason instead of passing unrun:
//! - `flexhook_postgres`: `FLEXHOOK_TEST_POSTGRES_URL` is set (`.ci/run` starts a cluster);
//! - `flexhook_root`: the build runs as root (the entrypoint's privilege drop).
//!
//! Under `CI=true` both are on whatever the machine has: a test whose service is missing
//! then runs, and fails, rather than be skipped.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=FLEXHOOK_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rustc-check-cfg=cfg(flexhook_postgres)");
    println!("cargo::rustc-check-cfg=cfg(flexhook_root)");
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let postgres = std::env::var_os("FLEXHOOK_TEST_POSTGRES_URL").is_some_and(|v| !v.is_empty());
    if ci || postgres {
        println!("cargo::rustc-cfg=flexhook_postgres");
    }
    if ci || is_root() {
        println!("cargo::rustc-cfg=flexhook_root");
    }
}

/// Whether this process's effective user is root, from `/proc/self/status`.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}
