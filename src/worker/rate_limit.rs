//! The outbound pace of `POST /v1/Interactions`: a token bucket per account
//! (`flex.max_creates_per_second`), with a burst of one so that no one-second window
//! ever holds more than rate + 1 requests (Twilio allows 20).

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::AccountSid;

#[derive(Debug)]
pub struct CreateRateLimit {
    limiter: DefaultKeyedRateLimiter<AccountSid>,
}

impl CreateRateLimit {
    pub fn per_second(rate: u32) -> Self {
        let rate = NonZeroU32::new(rate.max(1)).expect("at least 1");
        let quota = Quota::per_second(rate).allow_burst(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(quota),
        }
    }

    /// Waits until this account may create one more interaction.
    pub async fn until_ready(&self, account: &AccountSid) {
        self.limiter.until_key_ready(account).await;
    }
}
