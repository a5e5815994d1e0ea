//! `/healthz`: the process answers. `/readyz`: 200 when the store answers and the worker
//! runs, 503 otherwise.

mod common;

use common::*;
use sqlx::Connection;

/// `GET path` on the app: its status and body.
async fn get(app: &TestApp, path: &str) -> (u16, String) {
    let response = app
        .client
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    assert_eq!(get(&app, "/healthz").await, (200, "ok".to_owned()));
    assert_eq!(get(&app, "/readyz").await, (200, "ready".to_owned()));
    app.stop().await;
}

#[tokio::test]
async fn readiness_answers_503_while_the_store_cannot_serve_jobs_and_health_still_200() {
    let env = Env::new().await;
    let app = TestApp::start(&env, &[]).await;
    assert_eq!(get(&app, "/readyz").await, (200, "ready".to_owned()));
    assert_eq!(get(&app, "/healthz").await, (200, "ok".to_owned()));

    // Another process takes the jobs table away from the running app.
    let mut other = sqlx::SqliteConnection::connect(&env.db_url())
        .await
        .unwrap();
    sqlx::query("ALTER TABLE jobs RENAME TO jobs_gone")
        .execute(&mut other)
        .await
        .unwrap();
    assert_eq!(
        get(&app, "/readyz").await,
        (503, "store unavailable".to_owned())
    );
    assert_eq!(
        get(&app, "/healthz").await,
        (200, "ok".to_owned()),
        "the process still answers"
    );

    // Given back, the same running app is ready again.
    sqlx::query("ALTER TABLE jobs_gone RENAME TO jobs")
        .execute(&mut other)
        .await
        .unwrap();
    other.close().await.unwrap();
    assert_eq!(get(&app, "/readyz").await, (200, "ready".to_owned()));
    app.stop().await;
}
