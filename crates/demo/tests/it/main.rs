//! Integration tests: the real demo server on 127.0.0.1:0, driven over HTTP with reqwest, and
//! the built binary's `healthcheck` subcommand.

mod calls;
mod grant;
mod healthcheck;
mod partner;

use std::time::Duration;

use anyhow::Context;
use hookyard_demo::Settings;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const CLIENT_ID: &str = "hookyard";
pub const CLIENT_SECRET: &str = "client-s3cret-value";
pub const BASIC_USER: &str = "acme-shop";
pub const BASIC_PASSWORD: &str = "basic-pa55word-value";

/// A demo server running in this process; stopped when dropped.
pub struct TestDemo {
    pub base: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for TestDemo {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn settings() -> Settings {
    Settings::new(CLIENT_SECRET, BASIC_PASSWORD)
}

pub async fn spawn(settings: Settings) -> anyhow::Result<TestDemo> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    tokio::spawn(hookyard_demo::run(settings, listener, shutdown.clone()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    Ok(TestDemo {
        base,
        http,
        shutdown,
    })
}

impl TestDemo {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Obtains a token with `client_secret_basic`.
    pub async fn token(&self) -> anyhow::Result<String> {
        let response = self
            .http
            .post(self.url("/oauth2/token"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "token endpoint answered {}",
            response.status()
        );
        let body: Value = response.json().await?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("no access_token")
    }

    /// The raw text of `GET /_demo/calls`.
    pub async fn calls_text(&self, query: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .get(self.url(&format!("/_demo/calls{query}")))
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "/_demo/calls answered {}",
            response.status()
        );
        Ok(response.text().await?)
    }

    /// `GET /_demo/calls` parsed.
    pub async fn calls(&self, query: &str) -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&self.calls_text(query).await?)?)
    }

    /// The recorded calls, oldest first.
    pub async fn recorded(&self) -> anyhow::Result<Vec<Value>> {
        let calls = self.calls("").await?;
        calls["calls"]
            .as_array()
            .cloned()
            .context("calls is not an array")
    }
}
