//! The web console on the admin listener: an operator's work in a real headless Chromium
//! (through chromedriver and WebDriver), and the refusals checked with plain HTTP requests.
//!
//! The browser test needs `chromium` and `chromedriver` (Debian: `chromium`, `chromium-driver`;
//! `.ci/run` installs them); it fails rather than skips without them, so a missing browser is
//! never a silent pass. `HOOKYARD_CHROMEDRIVER` overrides `/usr/bin/chromedriver`. Screenshots
//! of each page are written under `<target dir>/console-screenshots/`.

mod browser;
mod refusals;

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::Context as _;
use fantoccini::{Client, ClientBuilder, Locator};
use tokio::process::{Child, Command};

use crate::harness::{ADMIN_TOKEN, PATIENCE, Stack};

/// A headless Chromium driven through its own chromedriver, stopped when dropped.
pub struct Browser {
    pub client: Client,
    shots: PathBuf,
    driver: Child,
}

impl Drop for Browser {
    /// Kills chromedriver's process group, Chromium in it: a failed assertion skips
    /// [`Browser::close`], and chromedriver killed alone would leave the browser running.
    fn drop(&mut self) {
        let group = self
            .driver
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(group) = group {
            // ESRCH: already gone, which is what we want.
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `<target dir>/console-screenshots/`: the test binary lives in `<target dir>/debug/deps`.
fn screenshot_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .ancestors()
        .nth(3)
        .context("the test binary is in <target>/<profile>/deps")?;
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

impl Browser {
    pub async fn start() -> anyhow::Result<Self> {
        let path = std::env::var("HOOKYARD_CHROMEDRIVER")
            .unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned());
        let port = free_port()?;
        let driver = Command::new(&path)
            .arg(format!("--port={port}"))
            // Its own group, so that dropping the browser can end every process of it.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("failed to start {path} (install Debian's chromium and chromium-driver)")
            })?;
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        hookyard_testkit::wait_for(PATIENCE, "chromedriver to answer", || {
            let status = status.clone();
            async move { matches!(reqwest::get(&status).await, Ok(r) if r.status() == 200) }
        })
        .await?;
        let mut options = serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--disable-crash-reporter",
                     "--window-size=1280,1600"],
        });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = "/usr/bin/chromium".into();
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".to_owned(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&url)
            .await
            .context("failed to open a chromium session")?;
        let shots = screenshot_dir()?;
        println!("console screenshots: {}", shots.display());
        Ok(Self {
            client,
            shots,
            driver,
        })
    }

    /// Saves a screenshot of the current page as `<name>.png`.
    pub async fn shot(&self, name: &str) -> anyhow::Result<()> {
        let png = self.client.screenshot().await?;
        std::fs::write(self.shots.join(format!("{name}.png")), png)?;
        Ok(())
    }

    /// Waits for an element of the page.
    pub async fn wait_for(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("no {css} on the page"))
    }

    /// The text of an element of the page, waited for.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self.wait_for(css).await?.text().await?)
    }

    /// Clicks an element and waits until the page that follows holds `then`.
    pub async fn click(&self, css: &str, then: &str) -> anyhow::Result<()> {
        self.wait_for(css).await?.click().await?;
        self.wait_for(then).await.map(|_| ())
    }

    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
    }
}

/// A handler's status from the JSON admin API (with the bearer token).
pub async fn handler_status(stack: &Stack, name: &str) -> anyhow::Result<serde_json::Value> {
    let all: serde_json::Value = stack
        .http()
        .get(format!("{}/v1/handlers", stack.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .json()
        .await?;
    all["handlers"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["name"] == name))
        .cloned()
        .with_context(|| format!("no handler {name}"))
}
