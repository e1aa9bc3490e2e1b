//! Operating hookyard through the router's admin API and the `hookyard` command line on it:
//! dead letters and their replay, replays over a range, an event's deliveries, pausing a
//! handler, the tail, and the API's refusals. The command line runs as a real process.

mod auth;
mod dlq;
mod pause;
mod replay;
mod show;
mod tail;

use std::process::Stdio;

use anyhow::Context as _;
use hookyard_proto::admin::v1::admin_service_client::AdminServiceClient;
use tonic::{Request, Status, service::interceptor::InterceptedService, transport::Channel};

use crate::harness::{ADMIN_TOKEN, PATIENCE, Stack};

type Bearer = fn(Request<()>) -> Result<Request<()>, Status>;
pub type AdminClient = AdminServiceClient<InterceptedService<Channel, Bearer>>;

fn bearer(mut request: Request<()>) -> Result<Request<()>, Status> {
    let value = format!("Bearer {ADMIN_TOKEN}")
        .parse()
        .map_err(|_| Status::internal("token"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// A gRPC client of the stack's admin API with the right token.
pub async fn admin(stack: &Stack) -> anyhow::Result<AdminClient> {
    let channel = tonic::transport::Endpoint::from_shared(stack.admin.clone())?
        .connect()
        .await?;
    Ok(AdminServiceClient::with_interceptor(
        channel,
        bearer as Bearer,
    ))
}

/// Makes `partner` answer every request with `status`, as after a reset.
pub async fn answer_all(partner: &wiremock::MockServer, status: u16) {
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(wiremock::ResponseTemplate::new(status))
        .mount(partner)
        .await;
}

/// A partner answering 200 to everything and a stack on `extra` calling it.
pub async fn stack_with_working_partner(
    extra: &str,
) -> anyhow::Result<(Stack, wiremock::MockServer, wiremock::MockServer)> {
    let auth = crate::harness::auth_server("tok", 3600).await;
    let partner = wiremock::MockServer::start().await;
    answer_all(&partner, 200).await;
    let config = crate::harness::shop_config(&partner.uri(), &auth.uri(), extra);
    Ok((Stack::start(&config).await?, partner, auth))
}

/// A partner down for orders and up for audit, and a stack on [`fanout`]`(2)` calling it
/// without a circuit breaker: each attempt reaches the partner, so its 503 is the recorded
/// status (the breaker opening during an outage is egress's business, tested there).
pub async fn stack_with_orders_down()
-> anyhow::Result<(Stack, wiremock::MockServer, wiremock::MockServer)> {
    use wiremock::{Mock, ResponseTemplate, matchers};
    let auth = crate::harness::auth_server("tok", 3600).await;
    let partner = wiremock::MockServer::start().await;
    Mock::given(matchers::path("/v1/orders"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&partner)
        .await;
    Mock::given(matchers::path("/v1/audit"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&partner)
        .await;
    let config = crate::harness::shop_config(&partner.uri(), &auth.uri(), &fanout(2)).replace(
        "timeout = \"5s\"",
        "timeout = \"5s\"\nbreaker = { failures = 0 }",
    );
    Ok((Stack::start(&config).await?, partner, auth))
}

/// A proto3 JSON integer: 64-bit ones are strings in that mapping, smaller ones numbers.
pub fn num(value: &serde_json::Value) -> u64 {
    match value {
        serde_json::Value::String(s) => s.parse().unwrap_or(u64::MAX),
        other => other.as_u64().unwrap_or(u64::MAX),
    }
}

/// What a run of the command line printed, and how it exited.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as one JSON value per line (`--json`).
    pub fn lines(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
            .collect()
    }
}

/// The command line with the stack's admin URL and token in its environment (nothing else).
pub fn command(stack: &Stack) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookyard-e2e-cli"));
    cmd.env_clear()
        .env("HOOKYARD_ADMIN_URL", &stack.admin)
        .env("HOOKYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::null());
    cmd
}

/// Runs `hookyard <args>` against the stack and waits for it (within the patience bound).
pub async fn hookyard(stack: &Stack, args: &[&str]) -> anyhow::Result<Run> {
    let output = tokio::time::timeout(PATIENCE * 4, command(stack).args(args).output())
        .await
        .with_context(|| format!("hookyard {args:?} did not finish"))??;
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    println!(
        "$ hookyard {}\n{}{}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    Ok(run)
}

/// An integration with `orders` and `audit` handlers both taking `order.*` on the partner's
/// `/v1/orders` and `/v1/audit`, each dead-lettering after `max_deliver` attempts.
pub fn fanout(max_deliver: u32) -> String {
    format!(
        r#"
[[routes]]
event = "order.*"
handlers = ["orders", "audit"]

[handlers.orders]
max_deliver = {max_deliver}
backoff = ["100ms"]
concurrency = 16

[[handlers.orders.steps]]
type = "http"
connection = "erp"
path = "/v1/orders"

[handlers.audit]
max_deliver = {max_deliver}
backoff = ["100ms"]
concurrency = 16

[[handlers.audit.steps]]
type = "http"
connection = "erp"
path = "/v1/audit"
"#
    )
}
