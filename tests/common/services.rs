//! What some tests need from the machine (a PostgreSQL cluster, root): [`available`] is the
//! one place that decides what a test without its service does. It never shows green
//! unnoticed: under `CI=true` it fails; elsewhere it prints `SKIPPED …` past the test
//! harness's capture, so the line shows in `cargo test`'s output next to the `ok`.

use std::io::Write;

/// The variable `.ci/run` sets to its throw-away PostgreSQL cluster.
pub const POSTGRES_URL_VAR: &str = "FLEXHOOK_TEST_POSTGRES_URL";

/// `Some(service)`, or `None` once the missing service was reported as above; `test` names
/// the test in the report.
#[track_caller]
pub fn available<T>(test: &str, service: Result<T, String>) -> Option<T> {
    match service {
        Ok(service) => Some(service),
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true, but {test} cannot run: {why}"
            );
            // Written to the process's stderr, not through `eprintln!`, which the test
            // harness captures and shows only for failures.
            let _ = writeln!(std::io::stderr(), "SKIPPED (did not run): {test}: {why}");
            None
        }
    }
}

/// The name of the running test, for [`available`]'s report.
pub fn this_test() -> String {
    std::thread::current().name().unwrap_or("a test").to_owned()
}

/// The test cluster's URL, or why there is none.
pub fn postgres_url() -> Result<String, String> {
    std::env::var(POSTGRES_URL_VAR).map_err(|_| {
        format!("{POSTGRES_URL_VAR} is not set (.ci/run sets it), so it needs PostgreSQL")
    })
}

/// A new, empty database on the test cluster; `None` (reported by [`available`]) when
/// there is no cluster.
pub async fn fresh_postgres_database() -> Option<String> {
    use sqlx::Connection;
    let base = available(&this_test(), postgres_url())?;
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} does not connect: {e}"));
    let name = format!("flexhook_{:016x}", rand::random::<u64>());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(&name);
    Some(url.to_string())
}

/// Root and these programs and users, or what is missing.
pub fn root_with(programs: &[&str], users: &[&str]) -> Result<(), String> {
    let mut missing = Vec::new();
    if !nix::unistd::Uid::effective().is_root() {
        missing.push("root".to_owned());
    }
    missing.extend(
        programs
            .iter()
            .filter(|p| !std::path::Path::new(p).exists())
            .map(|p| p.to_string()),
    );
    missing.extend(
        users
            .iter()
            .filter(|u| nix::unistd::User::from_name(u).ok().flatten().is_none())
            .map(|u| format!("a `{u}` user")),
    );
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("it needs {}", missing.join(", ")))
    }
}
