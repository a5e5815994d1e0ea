//! `flexhook simulate`: a correctly signed onMessageAdded, sent to a running flexhook (by
//! default its own public URL), to check a tunnel or a deployment end to end.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::sign::sign_request;
use crate::config::Settings;
use crate::domain::ConversationSid;
use crate::domain::WebhookRoute;
use crate::signature::{SETTINGS_HEADER, SIGNATURE_HEADER};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Where to send it (default: server.public_base_url, else this machine's server.port,
    /// + /webhooks/conversations).
    #[arg(long)]
    pub url: Option<String>,
    /// The customer's address: +E.164 (sms), whatsapp:+…, messenger:…, an e-mail, or any identity (web).
    #[arg(long, default_value = "+15005550006")]
    pub author: String,
    /// The message text.
    #[arg(long, default_value = "Hello from flexhook simulate")]
    pub body: String,
    /// The conversation (CH…); default: a new random one, so a new job is made.
    #[arg(long, value_name = "CH…")]
    pub conversation: Option<String>,
    /// Send a JSON body (signed with bodySHA256) instead of a form.
    #[arg(long)]
    pub json: bool,
    /// Sign with this webhook SharedKey instead of the auth token.
    #[arg(long, value_name = "ID")]
    pub shared_key: Option<String>,
    /// HMAC_SHA256 or HMAC_SHA1, with --shared-key.
    #[arg(long, requires = "shared_key", default_value = "HMAC_SHA256")]
    pub algorithm: String,
}

fn random_sid(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

fn default_url(settings: &Settings) -> String {
    let base = match &settings.server.public_base_url {
        Some(base) => base.clone(),
        None => {
            let host = match settings.server.host.as_str() {
                "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
                h => h,
            };
            format!("http://{host}:{}", settings.server.port)
        }
    };
    WebhookRoute::Conversations.url(&base)
}

pub async fn run(settings: &Settings, args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let url = args.url.clone().unwrap_or_else(|| default_url(settings));
    url::Url::parse(&url).map_err(|e| anyhow::anyhow!("--url `{url}` is not a URL: {e}"))?;
    let conversation = match &args.conversation {
        Some(c) => ConversationSid::parse(c)
            .map_err(|e| anyhow::anyhow!("--conversation: {e}"))?
            .to_string(),
        None => random_sid("CH"),
    };
    let account = settings
        .raw_account()?
        .twilio
        .account_sid
        .unwrap_or_else(|| format!("AC{}", "0".repeat(32)));
    let source = match crate::domain::CustomerAddress::new(&args.author).channel_type() {
        crate::domain::ChannelType::Web => "SDK",
        crate::domain::ChannelType::Whatsapp => "WHATSAPP",
        crate::domain::ChannelType::Email => "EMAIL",
        _ => "SMS",
    };
    let params: Vec<(String, String)> = [
        ("EventType", "onMessageAdded".to_owned()),
        ("AccountSid", account),
        ("ConversationSid", conversation.clone()),
        ("ChatServiceSid", random_sid("IS")),
        ("MessageSid", random_sid("IM")),
        ("ParticipantSid", random_sid("MB")),
        ("Author", args.author.clone()),
        ("Body", args.body.clone()),
        ("Attributes", "{}".to_owned()),
        ("Index", "0".to_owned()),
        ("Source", source.to_owned()),
        ("RetryCount", "0".to_owned()),
        (
            "DateCreated",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    let json_body = args.json.then(|| {
        let map: serde_json::Map<String, serde_json::Value> = params
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::to_vec(&map).unwrap_or_default()
    });
    let signed = sign_request(
        settings,
        &url,
        &params,
        json_body.as_deref(),
        args.shared_key.as_deref(),
        &args.algorithm,
    )?;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut request = client
        .post(&signed.url)
        .header(SIGNATURE_HEADER, &signed.signature)
        .header("I-Twilio-Idempotency-Token", random_sid("id"));
    if let Some(h) = &signed.settings_header {
        request = request.header(SETTINGS_HEADER, h);
    }
    request = match json_body {
        Some(body) => request
            .header("Content-Type", "application/json")
            .body(body),
        None => request.form(&params),
    };
    println!("POST {url}");
    println!("  ConversationSid: {conversation}");
    let started = std::time::Instant::now();
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            println!("  no answer: {e}");
            println!("  is `flexhook serve` running, and does the URL reach it?");
            return Ok(ExitCode::FAILURE);
        }
    };
    let status = response.status();
    // The id the service logged this webhook under (its span's `request_id`).
    let request_id = response
        .headers()
        .get("X-Request-Id")
        .and_then(|v| v.to_str().ok())
        .map(|id| format!(", request id {id}"))
        .unwrap_or_default();
    let text = response.text().await.unwrap_or_default();
    println!(
        "  answer: {status} in {} ms{request_id}",
        started.elapsed().as_millis()
    );
    if !text.is_empty() {
        println!("  body: {text}");
    }
    if status.is_success() {
        Ok(ExitCode::SUCCESS)
    } else {
        if status.as_u16() == 403 {
            println!("  the service refused the signature: its log names the URLs it tried and the likely cause");
        }
        Ok(ExitCode::FAILURE)
    }
}
