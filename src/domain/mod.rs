//! Domain types: checked once at the edge, trusted everywhere after.

mod address;
mod database_url;
mod schedule;
mod sid;
mod webhook_route;

pub use address::{ChannelType, CustomerAddress};
pub use database_url::{Backend, DatabaseUrl};
pub use schedule::Schedule;
pub use sid::{
    AccountSid, ChatServiceSid, ConversationSid, InteractionChannelSid, InteractionSid, MessageSid,
    ParticipantSid, SidError, TaskSid, WebhookSid, WorkerSid, WorkflowSid, WorkspaceSid,
};
pub use webhook_route::{address_param, episode_param, WebhookRoute};
