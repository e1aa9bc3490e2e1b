//! `hookyard connection test NAME [METHOD PATH]`: one request through a connection of a
//! running egress (`TestConnection`), with its status, headers and a body excerpt printed.
//!
//! The integration file is loaded (without resolving secrets) to check that the connection
//! exists before asking egress. Nothing secret is printed: egress never returns the request's
//! credentials, and the values of response headers that can carry them (`Set-Cookie`, and
//! any whose name mentions a token, key, secret or auth) are replaced by `REDACTED`.
//!
//! Exit code: 0 when the partner answered below 400; 1 for a 4xx or 5xx answer, no answer, or
//! an egress that cannot be reached; 64 when the integration file is invalid or has no such
//! connection.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use hookyard_core::{Integration, config::SecretScope};
use hookyard_proto::egress::v1::{
    TestConnectionRequest, TestConnectionResponse, egress_service_client::EgressServiceClient,
};

/// How long the whole test may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// `hookyard connection …`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Send one request through a connection of a running egress and print the answer.
    Test(Test),
}

#[derive(clap::Args)]
pub struct Test {
    /// Connection name (a key under [connections]).
    name: String,
    /// HTTP method (default GET).
    method: Option<String>,
    /// Path and query appended to the connection's base_url (default "/").
    path: Option<String>,
    /// The integration file.
    #[arg(
        long,
        env = "HOOKYARD_CONFIG",
        default_value = "/etc/hookyard/integration.toml"
    )]
    config: PathBuf,
    /// gRPC endpoint of the running egress.
    #[arg(
        long,
        env = "HOOKYARD_EGRESS_ENDPOINT",
        default_value = "http://127.0.0.1:50052"
    )]
    egress: String,
}

pub fn run(command: Command) -> ExitCode {
    let Command::Test(test) = command;
    let integration = match Integration::load_scoped(&test.config, SecretScope::None) {
        Ok(integration) => integration,
        Err(error) => {
            eprintln!("{:#}", anyhow::Error::new(error));
            return ExitCode::from(hookyard_core::settings::EXIT_CONFIG);
        }
    };
    if !integration.connections.contains_key(&test.name) {
        eprintln!(
            "error: {} has no connection named {:?}",
            test.config.display(),
            test.name
        );
        return ExitCode::from(hookyard_core::settings::EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ask(&test)) {
        Ok(response) => print(&test.name, &response),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn ask(test: &Test) -> anyhow::Result<TestConnectionResponse> {
    use anyhow::Context as _;
    let mut client = EgressServiceClient::connect(test.egress.clone())
        .await
        .with_context(|| format!("cannot reach egress at {}", test.egress))?;
    let mut request = tonic::Request::new(TestConnectionRequest {
        connection: test.name.clone(),
        method: test.method.clone().unwrap_or_default(),
        path: test.path.clone().unwrap_or_default(),
        ..TestConnectionRequest::default()
    });
    request.set_timeout(TIMEOUT);
    let response = client
        .test_connection(request)
        .await
        .map_err(|status| anyhow::anyhow!("egress: {:?}: {}", status.code(), status.message()))?;
    Ok(response.into_inner())
}

fn print(name: &str, response: &TestConnectionResponse) -> ExitCode {
    if !response.error_code.is_empty() {
        println!(
            "connection {name}: no answer after {} ms ({}): {}",
            response.elapsed_ms, response.error_code, response.error
        );
        return ExitCode::FAILURE;
    }
    println!(
        "connection {name}: HTTP {} in {} ms",
        response.status, response.elapsed_ms
    );
    for header in &response.headers {
        let value = if hookyard_core::redact::is_secret_response_header(&header.name) {
            hookyard_core::redact::REDACTED
        } else {
            header.value.as_str()
        };
        println!("{}: {value}", header.name);
    }
    println!();
    println!("{}", String::from_utf8_lossy(&response.body_excerpt));
    if response.truncated {
        println!("… (body truncated)");
    }
    if response.status < 400 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
