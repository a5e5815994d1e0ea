//! `server.public_base_url = "ngrok"`: the public URL asked of the local ngrok agent
//! (`GET {server.ngrok_api_url}/api/tunnels`), so that a tunnel is one step, not a copy and
//! paste of a URL that changes on each run.

use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

#[derive(Deserialize)]
struct Tunnels {
    #[serde(default)]
    tunnels: Vec<Tunnel>,
}

#[derive(Deserialize)]
struct Tunnel {
    public_url: String,
    #[serde(default)]
    proto: String,
    config: Option<TunnelConfig>,
}

#[derive(Deserialize)]
struct TunnelConfig {
    addr: String,
}

/// The port a tunnel forwards to: `addr` may be `8080`, `localhost:8080`,
/// `127.0.0.1:8080` or `http://localhost:8080`.
fn forwarded_port(addr: &str) -> Option<u16> {
    let addr = addr.trim().trim_end_matches('/');
    let rest = addr.split_once("://").map_or(addr, |(_, rest)| rest);
    rest.rsplit(':').next()?.parse().ok()
}

/// The https tunnel that forwards to `port`, found by the agent at `api_url`.
pub async fn public_url(api_url: &str, port: u16) -> anyhow::Result<String> {
    let start = format!("start it with `ngrok http {port}`");
    let url = format!("{}/api/tunnels", api_url.trim_end_matches('/'));
    let answer = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| {
            format!(
                "server.public_base_url is \"ngrok\", but no ngrok agent answers at {url}: {start} \
                 (or set server.ngrok_api_url)"
            )
        })?;
    let tunnels: Tunnels = answer
        .json()
        .await
        .with_context(|| format!("{url} did not answer ngrok's tunnel list"))?;
    let found = tunnels.tunnels.iter().find(|t| {
        (t.proto == "https" || t.public_url.starts_with("https://"))
            && t.config.as_ref().and_then(|c| forwarded_port(&c.addr)) == Some(port)
    });
    match found {
        Some(t) => Ok(t.public_url.trim_end_matches('/').to_owned()),
        None => {
            let seen: Vec<String> = tunnels
                .tunnels
                .iter()
                .map(|t| {
                    let addr = t.config.as_ref().map_or("?", |c| c.addr.as_str());
                    format!("{} -> {addr}", t.public_url)
                })
                .collect();
            anyhow::bail!(
                "server.public_base_url is \"ngrok\", but the ngrok agent at {api_url} has no \
                 https tunnel to port {port} (it has: {}): {start}",
                if seen.is_empty() {
                    "none".to_owned()
                } else {
                    seen.join(", ")
                }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_port_is_read_from_each_form_of_addr() {
        for addr in [
            "8080",
            "localhost:8080",
            "127.0.0.1:8080",
            "http://localhost:8080",
            "https://localhost:8080/",
        ] {
            assert_eq!(forwarded_port(addr), Some(8080), "{addr}");
        }
        assert_eq!(forwarded_port("localhost"), None);
    }
}
