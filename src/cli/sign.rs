//! `flexhook sign`: the signature (and settings header) Twilio would send, for curl.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::Settings;
use crate::signature::{body_sha256, compute_signature, Algorithm};

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The full URL Twilio calls, e.g. https://my-app.fly.dev/webhooks/conversations
    #[arg(long)]
    pub url: String,
    /// A form parameter, NAME=VALUE; repeat for more (a repeated NAME is kept as Twilio does).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Sign a JSON body from FILE instead of form parameters (adds bodySHA256 to the URL).
    #[arg(long, value_name = "FILE", conflicts_with = "params")]
    pub json_body: Option<PathBuf>,
    /// Sign with this webhook SharedKey (from twilio.webhook_shared_keys) instead of the auth token.
    #[arg(long, value_name = "ID")]
    pub shared_key: Option<String>,
    /// HMAC_SHA256 or HMAC_SHA1; only with --shared-key (the auth token always uses HMAC_SHA1).
    #[arg(long, requires = "shared_key", default_value = "HMAC_SHA256")]
    pub algorithm: String,
}

/// A signed request: what the CLI prints and `simulate` sends.
pub(crate) struct Signed {
    pub url: String,
    pub signature: String,
    pub settings_header: Option<String>,
}

pub(crate) fn sign_request(
    settings: &Settings,
    url: &str,
    params: &[(String, String)],
    json_body: Option<&[u8]>,
    shared_key: Option<&str>,
    algorithm: &str,
) -> anyhow::Result<Signed> {
    let url = match json_body {
        Some(body) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}bodySHA256={}", body_sha256(body))
        }
        None => url.to_owned(),
    };
    let params: &[(String, String)] = if json_body.is_some() { &[] } else { params };
    let (key, algorithm, settings_header) = match shared_key {
        Some(id) => {
            let alg = Algorithm::parse(algorithm).ok_or_else(|| {
                anyhow::anyhow!("--algorithm `{algorithm}` is not HMAC_SHA256 or HMAC_SHA1")
            })?;
            (
                super::shared_key(settings, id)?,
                alg,
                Some(format!("key={id},algorithm={}", alg.name())),
            )
        }
        None => (super::auth_token(settings)?, Algorithm::HmacSha1, None),
    };
    Ok(Signed {
        signature: compute_signature(key.as_bytes(), algorithm, &url, params),
        url,
        settings_header,
    })
}

pub(crate) fn parse_params(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    raw.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| anyhow::anyhow!("--param `{p}` is not NAME=VALUE"))
        })
        .collect()
}

pub fn run(settings: &Settings, args: &SignArgs) -> anyhow::Result<ExitCode> {
    url::Url::parse(&args.url)
        .map_err(|e| anyhow::anyhow!("--url `{}` is not a URL: {e}", args.url))?;
    let params = parse_params(&args.params)?;
    let body = match &args.json_body {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("--json-body {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let signed = sign_request(
        settings,
        &args.url,
        &params,
        body.as_deref(),
        args.shared_key.as_deref(),
        &args.algorithm,
    )?;
    if body.is_some() {
        println!("URL: {}", signed.url);
    }
    println!("X-Twilio-Signature: {}", signed.signature);
    if let Some(h) = &signed.settings_header {
        println!("X-Twilio-Webhooks-Signature-Settings: {h}");
    }
    Ok(ExitCode::SUCCESS)
}
