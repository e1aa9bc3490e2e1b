//! What every service binary's `main` does around its library's `run`: the `healthcheck`
//! subcommand, loading the integration file (exit 64 on a problem), draining within a grace
//! period after SIGTERM/SIGINT, and turning the outcome into an exit code.
//!
//! Flags, environment variables and messages of each binary stay in its `main.rs`.

use std::{future::Future, path::Path, process::ExitCode, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    config::{Integration, SecretScope},
    settings::EXIT_CONFIG,
};

/// How long `healthcheck` waits for an answer unless a binary says otherwise.
pub const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The `healthcheck` subcommand: probes the gRPC health of the service at `endpoint`; exit 0
/// when it is serving, else 1 with the reason on stderr.
pub async fn healthcheck(endpoint: &str, timeout: Duration) -> ExitCode {
    match crate::health::probe(endpoint, timeout).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("unhealthy: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the integration file with the secrets of `scope`. On failure prints the error with its
/// causes (every problem of an invalid file, or why it cannot be read) to stderr and returns
/// the exit code for configuration errors (64), for `main` to return.
pub fn load_integration(path: &Path, scope: SecretScope) -> Result<Arc<Integration>, ExitCode> {
    match Integration::load_scoped(path, scope) {
        Ok(integration) => Ok(Arc::new(integration)),
        Err(error) => {
            // `{:#}` adds the causes, e.g. why the file cannot be read.
            eprintln!("{:#}", anyhow::Error::new(error));
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

/// Declares a service's `Command` enum: its `healthcheck` subcommand, probing the gRPC health at
/// the endpoint from `--endpoint` or the environment variable `$env` (default `$default`), and
/// `Command::answer`, which runs it. Every service's `main` starts with
/// `if let Some(command) = &cli.command { return command.answer().await; }`.
#[macro_export]
macro_rules! service_command {
    ($env:literal, $default:literal, $about:literal) => {
        #[derive(Debug, clap::Subcommand)]
        enum Command {
            #[doc = $about]
            Healthcheck {
                /// gRPC endpoint of the service to probe.
                #[arg(long, env = $env, default_value = $default)]
                endpoint: String,
            },
        }

        impl Command {
            /// Runs the subcommand; its exit code.
            async fn answer(&self) -> std::process::ExitCode {
                match self {
                    Self::Healthcheck { endpoint } => {
                        $crate::service::healthcheck(endpoint, $crate::service::HEALTHCHECK_TIMEOUT)
                            .await
                    }
                }
            }
        }
    };
}

/// The directory of the integration file at `path`, against which the file's relative paths
/// (a subprocess step's program and `cwd`) are resolved.
pub fn config_dir(path: &Path) -> std::path::PathBuf {
    let dir = path.parent().unwrap_or(Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Runs a service until it returns, or until `grace` has passed since `shutdown` was
/// cancelled: draining (open connections, in-flight work) is given that long, then the
/// service is abandoned with a warning and `Ok(())`.
pub async fn run_with_grace<F, E>(
    run: F,
    shutdown: &CancellationToken,
    grace: Duration,
) -> Result<(), E>
where
    F: Future<Output = Result<(), E>>,
{
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        ran = run => ran,
        () = deadline => {
            tracing::warn!(?grace, "draining took longer than the shutdown grace, exiting");
            Ok(())
        }
    }
}

/// The exit code of a service run: 0, or 1 after logging `"{service} failed"` with the error
/// and its causes.
pub fn exit_code(service: &str, result: anyhow::Result<()>) -> ExitCode {
    exit_code_with(service, result, |_| ExitCode::FAILURE)
}

/// [`exit_code`], with the code of a failure chosen by `code` (e.g. 64 for a configuration
/// error found only once running).
pub fn exit_code_with(
    service: &str,
    result: anyhow::Result<()>,
    code: impl FnOnce(&anyhow::Error) -> ExitCode,
) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{service} failed");
            code(&error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn run_with_grace_gives_up_a_stuck_drain_after_the_grace() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let started = tokio::time::Instant::now();
        let ran = run_with_grace(
            std::future::pending::<Result<(), ()>>(),
            &shutdown,
            Duration::from_secs(7),
        )
        .await;
        assert_eq!(ran, Ok(()));
        assert_eq!(started.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn run_with_grace_never_gives_up_before_shutdown() {
        let shutdown = CancellationToken::new();
        let run = run_with_grace(
            std::future::pending::<Result<(), ()>>(),
            &shutdown,
            Duration::from_secs(1),
        );
        let waited = tokio::time::timeout(Duration::from_secs(3600), run).await;
        assert!(waited.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn run_with_grace_returns_what_the_service_returns() {
        let shutdown = CancellationToken::new();
        let ran = run_with_grace(async { Err::<(), _>("boom") }, &shutdown, Duration::ZERO).await;
        assert_eq!(ran, Err("boom"));

        // A drain that ends within the grace keeps its own result.
        shutdown.cancel();
        let drained = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Err::<(), _>("drain failed")
        };
        let ran = run_with_grace(drained, &shutdown, Duration::from_secs(5)).await;
        assert_eq!(ran, Err("drain failed"));
    }

    #[tokio::test]
    async fn healthcheck_of_a_closed_port_fails() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let code = healthcheck(&format!("http://127.0.0.1:{port}"), HEALTHCHECK_TIMEOUT).await;
        assert_eq!(code, ExitCode::FAILURE);
    }

    #[tokio::test]
    async fn healthcheck_of_an_invalid_endpoint_fails() {
        let code = healthcheck("not a uri", HEALTHCHECK_TIMEOUT).await;
        assert_eq!(code, ExitCode::FAILURE);
    }

    #[test]
    fn load_integration_of_a_missing_file_is_a_config_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let loaded = load_integration(&dir.path().join("missing.toml"), SecretScope::None);
        assert_eq!(loaded.err(), Some(ExitCode::from(EXIT_CONFIG)));
    }

    #[test]
    fn load_integration_of_an_invalid_file_is_a_config_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("integration.toml");
        std::fs::write(&path, "[handlers.orders]\nsteps = 3\n").expect("write");
        let loaded = load_integration(&path, SecretScope::None);
        assert_eq!(loaded.err(), Some(ExitCode::from(EXIT_CONFIG)));
    }

    #[test]
    fn exit_code_maps_success_and_failure() {
        assert_eq!(exit_code("test", Ok(())), ExitCode::SUCCESS);
        assert_eq!(
            exit_code("test", Err(anyhow::anyhow!("boom"))),
            ExitCode::FAILURE
        );
        let config = exit_code_with("test", Err(anyhow::anyhow!("boom")), |_| {
            ExitCode::from(EXIT_CONFIG)
        });
        assert_eq!(config, ExitCode::from(EXIT_CONFIG));
    }
}
