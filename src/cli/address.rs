//! `flexhook address list|get|create|update|delete|connect|disconnect`: the Conversations
//! address configurations, and pointing one's auto-creation at flexhook. Needs Twilio
//! credentials and, to connect, `server.public_base_url`; no workflow.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use crate::config::Settings;
use crate::domain::WebhookRoute;

mod connect;

use super::{client, print_table};

use crate::twilio::{AddressChanges, AddressConfiguration, TwilioClient, TwilioError};
use connect::disconnect;
pub(crate) use connect::plan_connect;

/// The route conversations' events go to.
const ROUTE: WebhookRoute = WebhookRoute::Conversations;
/// The one event flexhook acts on.
const FILTER: &str = "onMessageAdded";
/// As the spec's enum spells it (answers say `POST`).
const METHOD: &str = "post";

#[derive(Debug, Args)]
pub struct AddressArgs {
    #[command(subcommand)]
    pub command: AddressCommand,
}

/// An address type, as the spec's `configuration_address_enum_type` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AddressType {
    Sms,
    Whatsapp,
    Messenger,
    Gbm,
    Email,
    Rcs,
    Apple,
    Chat,
}

impl AddressType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Whatsapp => "whatsapp",
            Self::Messenger => "messenger",
            Self::Gbm => "gbm",
            Self::Email => "email",
            Self::Rcs => "rcs",
            Self::Apple => "apple",
            Self::Chat => "chat",
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AutoCreationType {
    Webhook,
    Studio,
    Default,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum WebhookMethod {
    Post,
    Get,
}

/// The auto-creation options shared by create and update.
#[derive(Debug, Args)]
pub struct AddressOptions {
    /// A name for the configuration (up to 256 characters).
    #[arg(long)]
    friendly_name: Option<String>,
    /// What creates the conversation: a webhook, a Studio flow, or Twilio's default.
    #[arg(long, value_enum)]
    auto_creation_type: Option<AutoCreationType>,
    /// For `webhook`: the URL Twilio calls.
    #[arg(long)]
    webhook_url: Option<String>,
    /// For `webhook`: the HTTP method.
    #[arg(long, value_enum, ignore_case = true)]
    webhook_method: Option<WebhookMethod>,
    /// For `webhook`: an event to send (onMessageAdded, …); repeat for more.
    #[arg(long = "webhook-filter", value_name = "EVENT")]
    webhook_filters: Vec<String>,
    /// For `studio`: the Studio flow (FW…).
    #[arg(long, value_parser = sid_of("FW"))]
    studio_flow_sid: Option<String>,
    /// For `studio`: how often to retry the webhook.
    #[arg(long)]
    studio_retry_count: Option<u32>,
    /// The Conversations service (IS…) of the conversations it creates.
    #[arg(long, value_parser = sid_of("IS"))]
    conversation_service_sid: Option<String>,
    /// Turn auto-creation off.
    #[arg(long)]
    disabled: bool,
}

impl AddressOptions {
    /// The changes these options ask for; auto-creation options turn it on unless
    /// `--disabled`.
    fn changes(&self, enable_by_default: bool) -> AddressChanges {
        let mut changes = AddressChanges {
            friendly_name: self.friendly_name.clone(),
            enabled: None,
            auto_creation_type: self
                .auto_creation_type
                .map(|t| t.to_possible_value().unwrap().get_name().to_owned()),
            conversation_service_sid: self.conversation_service_sid.clone(),
            webhook_url: self.webhook_url.clone(),
            webhook_method: self
                .webhook_method
                .map(|m| m.to_possible_value().unwrap().get_name().to_owned()),
            webhook_filters: self.webhook_filters.clone(),
            studio_flow_sid: self.studio_flow_sid.clone(),
            studio_retry_count: self.studio_retry_count,
        };
        let touches_auto_creation = AddressChanges {
            friendly_name: None,
            ..changes.clone()
        } != AddressChanges::default();
        changes.enabled = if self.disabled {
            Some(false)
        } else if enable_by_default || touches_auto_creation {
            Some(true)
        } else {
            None
        };
        changes
    }
}

/// A clap parser for a SID with this prefix.
fn sid_of(prefix: &'static str) -> impl Fn(&str) -> Result<String, String> + Clone {
    move |value: &str| {
        let ok = value.len() == 34
            && value.starts_with(prefix)
            && value[2..].chars().all(|c| c.is_ascii_hexdigit());
        if ok {
            Ok(value.to_owned())
        } else {
            Err(format!("expected {prefix} and 32 hex digits"))
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AddressCommand {
    /// List the address configurations, following every page.
    List {
        /// Only addresses of this type.
        #[arg(long = "type", value_enum)]
        kind: Option<AddressType>,
        /// As one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Show one address configuration, by its IG SID or by the address itself.
    Get {
        /// The IG… SID, or the address (+1555…, whatsapp:+1555…).
        id: String,
        /// As one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Create an address configuration.
    Create {
        /// The address's type.
        #[arg(long = "type", value_enum)]
        kind: AddressType,
        /// The address: a phone number, whatsapp:+1555…, …
        #[arg(long)]
        address: String,
        /// The ISO 3166-1 alpha-2 country of a short code.
        #[arg(long)]
        address_country: Option<String>,
        #[command(flatten)]
        options: AddressOptions,
    },
    /// Change an address configuration, by its IG SID or by the address itself.
    Update {
        /// The IG… SID, or the address.
        id: String,
        #[command(flatten)]
        options: AddressOptions,
    },
    /// Delete an address configuration; asks first on a terminal.
    Delete {
        /// The IG… SID, or the address.
        id: String,
        /// Delete without asking (needed without a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Make the address's auto-creation call flexhook's webhook (create or update its
    /// configuration); running it again changes nothing.
    Connect {
        /// The address: a phone number, whatsapp:+1555…, …
        address: String,
        /// The address's type, for a configuration that does not exist yet.
        #[arg(long = "type", value_enum)]
        kind: AddressType,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Turn the address's auto-creation off, if it calls flexhook; nothing else changes.
    Disconnect {
        /// The address.
        address: String,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// server.public_base_url + /webhooks/conversations?address=…, when the base is set.
fn flexhook_url(settings: &Settings, address: &str) -> Option<String> {
    let base = settings.server.public_base_url.as_deref()?;
    Some(format!(
        "{}?address={}",
        ROUTE.url(base),
        form_urlencoded::byte_serialize(address.as_bytes()).collect::<String>()
    ))
}

/// [`flexhook_url`], or exit code 2 with the setting to fix.
pub(crate) fn webhook_url(settings: &Settings, address: &str) -> Result<String, ExitCode> {
    flexhook_url(settings, address).ok_or_else(|| {
        eprintln!(
            "flexhook cannot connect {address}: server.public_base_url is not set ({}); \
             it is the URL Twilio would call",
            crate::config::env_vars_for("server.public_base_url")
        );
        ExitCode::from(2)
    })
}

/// Twilio's code and message, and what the code means here.
pub(crate) fn explain(error: &TwilioError, subject: &str) -> String {
    match (error.code(), error) {
        (Some(20404), _)
        | (None, TwilioError::Api(crate::twilio::ApiError { status: 404, .. })) => {
            format!("20404: no address configuration for {subject}")
        }
        (Some(50416), TwilioError::Api(a)) => format!(
            "50416: {}: Twilio refuses because {subject} is already in use by another \
             integration (an existing address configuration, or a Flex Flow: \
             `flexhook flexflow list` shows them; `flexhook migrate` moves it)",
            a.message
        ),
        (Some(code), TwilioError::Api(a)) => format!("{code}: {}", a.message),
        _ => error.to_string(),
    }
}

fn is_not_found(error: &TwilioError) -> bool {
    error.code() == Some(20404) || error.status() == Some(404)
}

pub async fn run(settings: &Settings, args: &AddressArgs) -> anyhow::Result<ExitCode> {
    let client = match client(settings) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let subject = match &args.command {
        AddressCommand::List { .. } => "the address configurations".to_owned(),
        AddressCommand::Get { id, .. }
        | AddressCommand::Update { id, .. }
        | AddressCommand::Delete { id, .. } => id.clone(),
        AddressCommand::Create { address, .. }
        | AddressCommand::Connect { address, .. }
        | AddressCommand::Disconnect { address, .. } => address.clone(),
    };
    let result = match &args.command {
        AddressCommand::List { kind, json } => list(&client, *kind, *json).await,
        AddressCommand::Get { id, json } => get(&client, id, *json).await,
        AddressCommand::Create {
            kind,
            address,
            address_country,
            options,
        } => client
            .create_address(
                kind.as_str(),
                address,
                address_country.as_deref(),
                &options.changes(true),
            )
            .await
            .map(|created| {
                println!("created");
                print_one(&created);
                ExitCode::SUCCESS
            }),
        AddressCommand::Update { id, options } => {
            let changes = options.changes(false);
            if changes.is_empty() {
                eprintln!("nothing to update: give at least one option (see --help)");
                return Ok(ExitCode::FAILURE);
            }
            client.update_address(id, &changes).await.map(|updated| {
                println!("updated");
                print_one(&updated);
                ExitCode::SUCCESS
            })
        }
        AddressCommand::Delete { id, yes } => {
            if !*yes && !confirm(&format!("Delete the address configuration {id}?"))? {
                return Ok(ExitCode::FAILURE);
            }
            client.delete_address(id).await.map(|()| {
                println!("deleted {id}");
                ExitCode::SUCCESS
            })
        }
        AddressCommand::Connect {
            address,
            kind,
            dry_run,
        } => {
            let target = match webhook_url(settings, address) {
                Ok(t) => t,
                Err(code) => return Ok(code),
            };
            match plan_connect(&client, address, *kind, &target).await {
                Ok(Ok(plan)) => {
                    plan.print();
                    if plan.is_nothing() {
                        return Ok(ExitCode::SUCCESS);
                    }
                    if *dry_run || client.is_dry_run() {
                        println!("dry run: nothing was changed");
                        return Ok(ExitCode::SUCCESS);
                    }
                    plan.apply(&client).await.map(|()| {
                        println!("connected: messages to {address} now reach {target}");
                        ExitCode::SUCCESS
                    })
                }
                Ok(Err(refusal)) => {
                    eprintln!("{refusal}");
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => Err(e),
            }
        }
        AddressCommand::Disconnect { address, dry_run } => {
            disconnect(settings, &client, address, *dry_run).await
        }
    };
    match result {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {}", explain(&e, &subject));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Asks on the terminal; without one, refuses and says to pass --yes.
fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        eprintln!("refusing to delete without a terminal to confirm on: pass --yes");
        return Ok(false);
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    let yes = matches!(answer.trim(), "y" | "Y" | "yes" | "Yes");
    if !yes {
        eprintln!("not deleted");
    }
    Ok(yes)
}

fn shown(value: Option<&str>) -> &str {
    value.filter(|v| !v.is_empty()).unwrap_or("-")
}

/// `webhook POST https://…`, `studio FW…`, `default`, or `off`.
fn auto_creation_summary(config: &AddressConfiguration) -> String {
    let Some(auto) = &config.auto_creation else {
        return "off".to_owned();
    };
    if auto.enabled != Some(true) {
        return "off".to_owned();
    }
    match auto.kind.as_deref() {
        Some("webhook") => format!(
            "webhook {} {}",
            shown(auto.webhook_method.as_deref()).to_uppercase(),
            shown(auto.webhook_url.as_deref())
        ),
        Some("studio") => format!("studio {}", shown(auto.studio_flow_sid.as_deref())),
        other => shown(other).to_owned(),
    }
}

async fn list(
    client: &TwilioClient,
    kind: Option<AddressType>,
    json: bool,
) -> Result<ExitCode, TwilioError> {
    let addresses = client.list_addresses(kind.map(AddressType::as_str)).await?;
    if json {
        let doc = serde_json::json!({ "address_configurations": addresses });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 5]> = addresses
        .iter()
        .map(|a| {
            [
                shown(a.sid.as_deref()).to_owned(),
                shown(a.kind.as_deref()).to_owned(),
                shown(a.address.as_deref()).to_owned(),
                shown(a.friendly_name.as_deref()).to_owned(),
                auto_creation_summary(a),
            ]
        })
        .collect();
    print_table(
        ["SID", "TYPE", "ADDRESS", "FRIENDLY NAME", "AUTO-CREATION"],
        &rows,
    );
    println!("{} address configuration(s)", rows.len());
    Ok(ExitCode::SUCCESS)
}

async fn get(client: &TwilioClient, id: &str, json: bool) -> Result<ExitCode, TwilioError> {
    let config = client.fetch_address(id).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&config).unwrap_or_default()
        );
    } else {
        print_one(&config);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_one(config: &AddressConfiguration) {
    let auto = config.auto_creation.clone().unwrap_or_default();
    let rows = [
        ("sid", config.sid.clone()),
        ("type", config.kind.clone()),
        ("address", config.address.clone()),
        ("friendly name", config.friendly_name.clone()),
        ("address country", config.address_country.clone()),
        ("auto-creation", Some(auto_creation_summary(config))),
        ("  type", auto.kind.clone()),
        ("  webhook url", auto.webhook_url.clone()),
        ("  webhook method", auto.webhook_method.clone()),
        (
            "  webhook filters",
            auto.webhook_filters.map(|f| f.join(",")),
        ),
        ("  studio flow", auto.studio_flow_sid.clone()),
        (
            "  studio retries",
            auto.studio_retry_count.map(|n| n.to_string()),
        ),
        ("  service", auto.conversation_service_sid.clone()),
    ];
    for (name, value) in rows {
        println!("{name:<18} {}", shown(value.as_deref()));
    }
}
