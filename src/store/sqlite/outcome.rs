//! Recording an attempt's outcome: one guarded UPDATE per kind of transition, at the
//! store clock's `now`.

use sqlx::SqliteConnection;

use crate::clock::millis;
use crate::store::{StoreError, Transition};

/// Records an attempt's outcome if `owner` still holds the job's lease; rows changed.
pub(super) async fn update_outcome(
    conn: &mut SqliteConnection,
    job: i64,
    owner: &str,
    transition: &Transition,
    now: i64,
) -> Result<u64, StoreError> {
    let sid = |s: Option<&str>| s.map(str::to_owned);
    let result = match transition {
        Transition::Created {
            interaction_sid,
            interaction_channel_sid,
            task_sid,
        } => {
            sqlx::query(
                "UPDATE jobs SET state = 'created', attempts = attempts + 1, \
                     interaction_sid = ?1, interaction_channel_sid = ?2, task_sid = ?3, \
                     needs_lookup = 0, lease_owner = NULL, lease_until = NULL, updated_at = ?4 \
                     WHERE id = ?5 AND lease_owner = ?6 AND state = 'pending'",
            )
            .bind(sid(interaction_sid.as_ref().map(|s| s.as_str())))
            .bind(sid(interaction_channel_sid.as_ref().map(|s| s.as_str())))
            .bind(sid(task_sid.as_ref().map(|s| s.as_str())))
            .bind(now)
            .bind(job)
            .bind(owner)
            .execute(&mut *conn)
            .await?
        }
        Transition::Retry {
            retry_in,
            error,
            create_may_have_gone_out,
            accepted,
        } => {
            sqlx::query(
                "UPDATE jobs SET attempts = attempts + 1, next_attempt_at = ?1, \
                     needs_lookup = ?2, last_error_code = ?3, last_error_status = ?4, \
                     last_error_message = ?5, lease_owner = NULL, lease_until = NULL, \
                     updated_at = ?6, create_accepted = MAX(create_accepted, ?9) \
                     WHERE id = ?7 AND lease_owner = ?8 AND state = 'pending'",
            )
            .bind(now.saturating_add(millis(*retry_in)))
            .bind(create_may_have_gone_out)
            .bind(error.code)
            .bind(error.status.map(i64::from))
            .bind(&error.message)
            .bind(now)
            .bind(job)
            .bind(owner)
            .bind(accepted)
            .execute(&mut *conn)
            .await?
        }
        Transition::Finished { state, outcome } => {
            // A task that ended while this attempt ran (`recheck`) may have been the one it
            // saw live: look again rather than settle for `kept_open`.
            sqlx::query(
                "UPDATE jobs SET \
                     state = CASE WHEN ?1 = 'kept_open' AND recheck = 1 THEN 'pending' ELSE ?1 END, \
                     next_attempt_at = CASE WHEN ?1 = 'kept_open' AND recheck = 1 THEN ?3 \
                         ELSE next_attempt_at END, \
                     outcome = ?2, attempts = attempts + 1, \
                     needs_lookup = 0, lease_owner = NULL, lease_until = NULL, updated_at = ?3 \
                     WHERE id = ?4 AND lease_owner = ?5 AND state = 'pending'",
            )
            .bind(state.as_str())
            .bind(outcome)
            .bind(now)
            .bind(job)
            .bind(owner)
            .execute(&mut *conn)
            .await?
        }
        Transition::Dead { error } => {
            sqlx::query(
                "UPDATE jobs SET state = 'dead', attempts = attempts + 1, \
                     last_error_code = ?1, last_error_status = ?2, last_error_message = ?3, \
                     lease_owner = NULL, lease_until = NULL, updated_at = ?4 \
                     WHERE id = ?5 AND lease_owner = ?6 AND state = 'pending'",
            )
            .bind(error.code)
            .bind(error.status.map(i64::from))
            .bind(&error.message)
            .bind(now)
            .bind(job)
            .bind(owner)
            .execute(&mut *conn)
            .await?
        }
    };
    Ok(result.rows_affected())
}
