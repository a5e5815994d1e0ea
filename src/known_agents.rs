//! Known-agent routing's learning half: a TaskRouter `reservation.accepted` → the store
//! remembers, by the customer's key, the agent who took them and when. The routing half is
//! the interaction job's lookup (`jobs/interaction.rs`) and the rules (`routing`).

use std::time::Duration;

use crate::domain::CustomerAddress;
use crate::event::task::TaskEvent;
use crate::store::{Store, StoreError};

/// What became of an accepted reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learned {
    /// The agent is remembered for this customer.
    Remembered(CustomerAddress),
    /// `routing.known_agent_within` is empty: nothing is stored.
    Off,
    /// The event does not say who the agent or the customer is; why.
    Unusable(String),
}

#[derive(Debug)]
pub struct KnownAgents {
    store: Store,
    /// `routing.known_agent_within`; `None`: off.
    within: Option<Duration>,
}

impl KnownAgents {
    pub fn new(store: Store, within: Option<Duration>) -> Self {
        Self { store, within }
    }

    /// Remembers the agent of an accepted reservation for the task's customer.
    pub async fn accepted(&self, event: &TaskEvent) -> Result<Learned, StoreError> {
        if self.within.is_none() {
            return Ok(Learned::Off);
        }
        let Some(worker) = &event.worker_sid else {
            return Ok(Learned::Unusable("the event names no WorkerSid".into()));
        };
        let customer = match event.customer_address() {
            Ok(Some(customer)) => customer,
            Ok(None) => {
                return Ok(Learned::Unusable(
                    "the task's attributes carry no customerAddress".into(),
                ))
            }
            Err(e) => return Ok(Learned::Unusable(e.to_string())),
        };
        self.store
            .remember_agent(&event.account_sid, &customer, worker)
            .await?;
        Ok(Learned::Remembered(customer))
    }
}
