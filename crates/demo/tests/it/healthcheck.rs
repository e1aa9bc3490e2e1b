use tokio::process::Command;

use crate::{settings, spawn};

const BINARY: &str = env!("CARGO_BIN_EXE_hookyard-demo");

/// The healthcheck must not need the server's secrets: compose runs it in the same container,
/// but an operator may not.
fn healthcheck(url: &str) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(["healthcheck", "--url", url])
        .env_remove("DEMO_CLIENT_SECRET")
        .env_remove("DEMO_BASIC_PASSWORD")
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn healthcheck_exits_zero_against_a_running_server() -> anyhow::Result<()> {
    let demo = spawn(settings()).await?;
    let status = healthcheck(&demo.url("/_demo/healthz")).status().await?;
    assert_eq!(status.code(), Some(0));
    Ok(())
}

#[tokio::test]
async fn healthcheck_exits_one_against_a_closed_port() -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    drop(listener);
    let output = healthcheck(&format!("http://{address}/_demo/healthz"))
        .output()
        .await?;
    assert_eq!(output.status.code(), Some(1));
    Ok(())
}

#[tokio::test]
async fn healthcheck_exits_one_when_the_answer_is_not_200() -> anyhow::Result<()> {
    let demo = spawn(settings()).await?;
    // A partner path without credentials answers 401.
    let output = healthcheck(&demo.url("/v1/orders")).output().await?;
    assert_eq!(output.status.code(), Some(1));
    Ok(())
}

#[tokio::test]
async fn serving_without_a_required_secret_is_a_usage_error() -> anyhow::Result<()> {
    let output = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--basic-password", "pw"])
        .env_remove("DEMO_CLIENT_SECRET")
        .kill_on_drop(true)
        .output()
        .await?;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--client-secret"), "{stderr}");
    Ok(())
}
