//! The store at a glance, for the metrics' gauges: pending and dead jobs by account and
//! kind, and how old the oldest pending job is. One grouped query per scrape, on either
//! backend.

use std::time::Duration;

use super::JobKind;

/// One kind's jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: i64,
    pub dead: i64,
    /// Dead jobs whose last attempt was in the last hour.
    pub dead_last_hour: i64,
}

/// A row of [`query`]: account SID, kind, state, count, age of the oldest in ms, how many
/// were updated in the last hour.
pub(super) type Row = (String, String, String, i64, i64, i64);

/// Counts and the oldest pending job's age.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// An account and kind without a row has no pending or dead job.
    by_kind: Vec<(String, JobKind, Counts)>,
    /// `None` when nothing is pending.
    pub oldest_pending_age: Option<Duration>,
    /// Each account's (SID) oldest pending job's age; an account without one has none.
    oldest_by_account: Vec<(String, Duration)>,
}

impl StoreStats {
    /// Folds the rows of [`query`], as both backends return them. Rows of a kind this
    /// version does not know are skipped.
    pub(super) fn from_rows(rows: impl IntoIterator<Item = Row>) -> Self {
        let mut stats = Self::default();
        for (account, kind, state, count, oldest_ms, last_hour) in rows {
            let Ok(kind) = kind.parse::<JobKind>() else {
                continue;
            };
            let i = match stats
                .by_kind
                .iter()
                .position(|(a, k, ..)| *k == kind && *a == account)
            {
                Some(i) => i,
                None => {
                    stats
                        .by_kind
                        .push((account.clone(), kind, Counts::default()));
                    stats.by_kind.len() - 1
                }
            };
            let counts = &mut stats.by_kind[i].2;
            match state.as_str() {
                "pending" => {
                    counts.pending += count;
                    let age = Duration::from_millis(u64::try_from(oldest_ms).unwrap_or(0));
                    stats.oldest_pending_age = stats.oldest_pending_age.max(Some(age));
                    match stats
                        .oldest_by_account
                        .iter_mut()
                        .find(|(a, _)| *a == account)
                    {
                        Some((_, oldest)) => *oldest = (*oldest).max(age),
                        None => stats.oldest_by_account.push((account, age)),
                    }
                }
                "dead" => {
                    counts.dead += count;
                    counts.dead_last_hour += last_hour;
                }
                _ => {}
            }
        }
        stats
    }

    /// The jobs of `kind`, of every account.
    pub fn counts(&self, kind: JobKind) -> Counts {
        self.counts_where(kind, |_| true)
    }

    /// The jobs of `kind` of the accounts (SIDs) `of` picks.
    pub fn counts_where(&self, kind: JobKind, of: impl Fn(&str) -> bool) -> Counts {
        self.by_kind
            .iter()
            .filter(|(a, k, _)| *k == kind && of(a))
            .fold(Counts::default(), |sum, (_, _, c)| Counts {
                pending: sum.pending + c.pending,
                dead: sum.dead + c.dead,
                dead_last_hour: sum.dead_last_hour + c.dead_last_hour,
            })
    }

    /// The oldest pending job's age among the accounts (SIDs) `of` picks.
    pub fn oldest_pending_age_where(&self, of: impl Fn(&str) -> bool) -> Option<Duration> {
        self.oldest_by_account
            .iter()
            .filter(|(a, _)| of(a))
            .map(|(_, age)| *age)
            .max()
    }
}

/// The grouped query; `{now}` is the backend's clock in milliseconds.
pub(super) fn query(now: &str) -> String {
    format!(
        "SELECT account_sid, kind, state, COUNT(*), {now} - MIN(created_at), \
         SUM(CASE WHEN updated_at >= {now} - 3600000 THEN 1 ELSE 0 END) FROM jobs \
         WHERE state IN ('pending', 'dead') GROUP BY account_sid, kind, state"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_fold_into_counts_by_kind_and_the_oldest_pending_age() {
        let row = |k: &str, s: &str, n, age, hour| {
            ("AC1".to_owned(), k.to_owned(), s.to_owned(), n, age, hour)
        };
        let stats = StoreStats::from_rows([
            row("interaction", "pending", 3, 4_000, 3),
            row("interaction", "dead", 2, 90_000_000, 1),
            row("close", "pending", 1, 61_000, 0),
            row("someday", "pending", 9, 999_999_999, 0),
            (
                "AC2".to_owned(),
                "interaction".to_owned(),
                "pending".to_owned(),
                5,
                70_000,
                0,
            ),
        ]);
        let counts = |pending, dead, dead_last_hour| Counts {
            pending,
            dead,
            dead_last_hour,
        };
        let first = |a: &str| a == "AC1";
        assert_eq!(
            stats.counts_where(JobKind::Interaction, first),
            counts(3, 2, 1)
        );
        assert_eq!(stats.counts(JobKind::Interaction), counts(8, 2, 1));
        assert_eq!(stats.counts(JobKind::Close), counts(1, 0, 0));
        assert_eq!(stats.counts(JobKind::Reply), counts(0, 0, 0));
        // A dead job's age is not a pending job's; an unknown kind is skipped.
        assert_eq!(
            stats.oldest_pending_age_where(first),
            Some(Duration::from_secs(61))
        );
        assert_eq!(stats.oldest_pending_age, Some(Duration::from_secs(70)));
        assert_eq!(stats.oldest_pending_age_where(|a| a == "AC3"), None);
        assert_eq!(StoreStats::from_rows([]).oldest_pending_age, None);
    }
}
