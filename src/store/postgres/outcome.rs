//! Recording an attempt's outcome: one guarded UPDATE per kind of transition, with "now"
//! from the database's clock (moved by the store clock's offset).

use sqlx::postgres::PgConnection;

use super::now;
use crate::clock::millis;
use crate::store::{StoreError, Transition};

/// Records an attempt's outcome if `owner` still holds the job's lease; rows changed.
pub(super) async fn update_outcome(
    conn: &mut PgConnection,
    job: i64,
    owner: &str,
    transition: &Transition,
    offset: i64,
) -> Result<u64, StoreError> {
    let guard = "WHERE id = $1 AND lease_owner = $2 AND state = 'pending'";
    // "Now" is the statement's last parameter, `$n`.
    let released = |n| {
        format!(
            "lease_owner = NULL, lease_until = NULL, updated_at = {}",
            now(n)
        )
    };
    let query = match transition {
        Transition::Created {
            interaction_sid,
            interaction_channel_sid,
            task_sid,
        } => {
            sqlx::query(&format!(
            "UPDATE jobs SET state = 'created', attempts = attempts + 1, interaction_sid = $3, \
             interaction_channel_sid = $4, task_sid = $5, needs_lookup = FALSE, {} \
             {guard}",
            released(6)
        ))
            .bind(job)
            .bind(owner)
            .bind(interaction_sid.as_ref().map(|s| s.as_str().to_owned()))
            .bind(
                interaction_channel_sid
                    .as_ref()
                    .map(|s| s.as_str().to_owned()),
            )
            .bind(task_sid.as_ref().map(|s| s.as_str().to_owned()))
            .bind(offset)
            .execute(&mut *conn)
            .await?
        }
        Transition::Retry {
            retry_in,
            error,
            create_may_have_gone_out,
            accepted,
        } => {
            sqlx::query(&format!(
                "UPDATE jobs SET attempts = attempts + 1, next_attempt_at = {} + $3, \
             needs_lookup = $4, last_error_code = $5, last_error_status = $6, \
             last_error_message = $7, create_accepted = create_accepted OR $8, \
             {} {guard}",
                now(9),
                released(9)
            ))
            .bind(job)
            .bind(owner)
            .bind(millis(*retry_in))
            .bind(create_may_have_gone_out)
            .bind(error.code)
            .bind(error.status.map(i64::from))
            .bind(&error.message)
            .bind(accepted)
            .bind(offset)
            .execute(&mut *conn)
            .await?
        }
        Transition::Finished { state, outcome } => {
            // A task that ended while this attempt ran (`recheck`) may have been the one it
            // saw live: look again rather than settle for `kept_open`.
            sqlx::query(&format!(
                "UPDATE jobs SET \
             state = CASE WHEN $3 = 'kept_open' AND recheck THEN 'pending' ELSE $3 END, \
             next_attempt_at = CASE WHEN $3 = 'kept_open' AND recheck THEN {} \
                 ELSE next_attempt_at END, \
             outcome = $4, attempts = attempts + 1, needs_lookup = FALSE, {} {guard}",
                now(5),
                released(5)
            ))
            .bind(job)
            .bind(owner)
            .bind(state.as_str())
            .bind(outcome)
            .bind(offset)
            .execute(&mut *conn)
            .await?
        }
        Transition::Dead { error } => {
            sqlx::query(&format!(
                "UPDATE jobs SET state = 'dead', attempts = attempts + 1, last_error_code = $3, \
             last_error_status = $4, last_error_message = $5, {} {guard}",
                released(6)
            ))
            .bind(job)
            .bind(owner)
            .bind(error.code)
            .bind(error.status.map(i64::from))
            .bind(&error.message)
            .bind(offset)
            .execute(&mut *conn)
            .await?
        }
    };
    Ok(query.rows_affected())
}
