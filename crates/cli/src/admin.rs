//! The commands on a running router's admin API (gRPC): events, tail, dead letters, replay,
//! handlers and the egress audit. Readable tables by default, `--json` (one JSON object per
//! line, the API's proto3 JSON) for scripts.
//!
//! Where: `--admin` / `HOOKYARD_ADMIN_URL` (default `http://127.0.0.1:50060`). The token:
//! `HOOKYARD_ADMIN_TOKEN`, or a file named by `--token-file` / `HOOKYARD_ADMIN_TOKEN_FILE` —
//! never a command-line value, which other users of the machine could read.
//!
//! Exit codes scripts can rely on: 0 done; 1 the API could not be reached or failed;
//! 2 a usage error; 3 not found; 4 refused (missing or wrong token); 5 a replay or purge that
//! did part of its work (some items failed or were skipped as unroutable).

mod commands;
mod show;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use hookyard_proto::admin::v1::admin_service_client::AdminServiceClient;
use secrecy::{ExposeSecret as _, SecretString};
use tonic::{
    Request,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

pub(crate) use commands::Command;

/// Exit code of a partial replay or purge.
pub(crate) const EXIT_PARTIAL: u8 = 5;

/// How to reach the admin API, shared by every command.
#[derive(clap::Args, Clone)]
pub(crate) struct Connect {
    /// Admin API of the router.
    #[arg(
        long,
        global = true,
        env = "HOOKYARD_ADMIN_URL",
        default_value = "http://127.0.0.1:50060"
    )]
    admin: String,
    /// File holding the admin token (else `HOOKYARD_ADMIN_TOKEN` holds it).
    #[arg(long, global = true, env = "HOOKYARD_ADMIN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Print JSON (one object per line) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Adds the bearer token to every call.
#[derive(Clone)]
pub(crate) struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub(crate) type Client = AdminServiceClient<InterceptedService<Channel, Bearer>>;

/// Why a command failed, with its exit code.
pub(crate) struct Failure {
    pub code: u8,
    pub message: String,
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        let code = match status.code() {
            tonic::Code::NotFound => 3,
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => 4,
            tonic::Code::InvalidArgument => 2,
            _ => 1,
        };
        Self {
            code,
            message: format!("{:?}: {}", status.code(), status.message()),
        }
    }
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

fn token(connect: &Connect) -> Result<SecretString, Failure> {
    let text = match &connect.token_file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            Failure::new(2, format!("cannot read {}: {}", path.display(), e.kind()))
        })?,
        None => std::env::var("HOOKYARD_ADMIN_TOKEN").unwrap_or_default(),
    };
    let text = text.trim_end_matches(['\n', '\r']).to_owned();
    if text.is_empty() {
        return Err(Failure::new(
            4,
            "no admin token: set HOOKYARD_ADMIN_TOKEN or --token-file",
        ));
    }
    Ok(SecretString::from(text))
}

async fn client(connect: &Connect) -> Result<Client, Failure> {
    let token = token(connect)?;
    let value = format!("Bearer {}", token.expose_secret())
        .parse()
        .map_err(|_| Failure::new(2, "the admin token is not a valid header value"))?;
    let channel = tonic::transport::Endpoint::from_shared(connect.admin.clone())
        .map_err(|e| Failure::new(2, format!("invalid --admin URL: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| Failure::new(1, format!("cannot reach {}: {e}", connect.admin)))?;
    Ok(AdminServiceClient::with_interceptor(channel, Bearer(value))
        .max_decoding_message_size(hookyard_core::grpc::MAX_MESSAGE_BYTES))
}

/// Runs an admin command and maps its outcome to the exit code.
pub(crate) fn run(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async {
        let connect = command.connect().clone();
        let client = client(&connect).await?;
        commands::run(command, client, &connect).await
    }) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
