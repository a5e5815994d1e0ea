//! A stored row → a [`Job`], the same for every backend: each backend only says how to read
//! a text, an integer and a flag column.

use std::str::FromStr;

use super::{Job, JobError, JobKind, JobState, StoreError};
use crate::domain as d;

/// How a backend reads one row's columns.
pub(super) trait Columns {
    fn text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn flag(&self, column: &str) -> Result<bool, StoreError>;
}

pub(super) fn job(row: &impl Columns) -> Result<Job, StoreError> {
    let corrupt = |column: &str, why: String| StoreError::Corrupt(format!("{column}: {why}"));
    let text = |column: &str| -> Result<String, StoreError> {
        row.text(column)?
            .ok_or_else(|| corrupt(column, "is empty".into()))
    };
    let int = |column: &str| -> Result<i64, StoreError> {
        row.int(column)?
            .ok_or_else(|| corrupt(column, "is empty".into()))
    };
    fn sid<T>(
        row: &impl Columns,
        column: &str,
        parse: fn(&str) -> Result<T, d::SidError>,
    ) -> Result<Option<T>, StoreError> {
        match row.text(column)? {
            None => Ok(None),
            Some(s) => parse(&s)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("{column}: {e}"))),
        }
    }
    fn required<T>(v: Option<T>) -> Result<T, StoreError> {
        v.ok_or_else(|| StoreError::Corrupt("a required SID is empty".into()))
    }
    let kind = JobKind::from_str(&text("kind")?).map_err(StoreError::Corrupt)?;
    let last_error = row.text("last_error_message")?.map(|message| {
        Ok::<_, StoreError>(JobError::stored(
            row.int("last_error_code")?,
            row.int("last_error_status")?
                .and_then(|s| u16::try_from(s).ok()),
            message,
        ))
    });
    Ok(Job {
        id: int("id")?,
        kind,
        key: text("job_key")?,
        conversation_sid: required(sid(row, "conversation_sid", d::ConversationSid::parse)?)?,
        account_sid: required(sid(row, "account_sid", d::AccountSid::parse)?)?,
        chat_service_sid: sid(row, "chat_service_sid", d::ChatServiceSid::parse)?,
        webhook_sid: sid(row, "webhook_sid", d::WebhookSid::parse)?,
        first_message_sid: sid(row, "first_message_sid", d::MessageSid::parse)?,
        input: text("input")?,
        state: JobState::from_str(&text("state")?).map_err(StoreError::Corrupt)?,
        attempts: u32::try_from(int("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: int("next_attempt_at")?,
        create_may_have_gone_out: row.flag("needs_lookup")?,
        create_accepted: row.flag("create_accepted")?,
        message_sent: row.flag("message_sent")?,
        lease_owner: row.text("lease_owner")?,
        interaction_sid: sid(row, "interaction_sid", d::InteractionSid::parse)?,
        interaction_channel_sid: sid(
            row,
            "interaction_channel_sid",
            d::InteractionChannelSid::parse,
        )?,
        task_sid: sid(row, "task_sid", d::TaskSid::parse)?,
        last_error: last_error.transpose()?,
        outcome: row.text("outcome")?,
        webhook_removed: row.flag("webhook_removed")?,
        age_from: int("age_from")?,
        created_at: int("created_at")?,
        updated_at: int("updated_at")?,
    })
}
