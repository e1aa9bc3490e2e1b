//! A service binary started as a child process, as an operator or an orchestrator starts it,
//! for tests about start-up and about the binary's own wiring (`main.rs`), which the
//! in-process `run` skips.

use std::{ffi::OsStr, process::Stdio, time::Duration};

use anyhow::Context as _;
use hookyard_core::health::ProbeError;

/// How long one health probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A running service binary; killed when dropped.
pub struct Process {
    child: tokio::process::Child,
    health: String,
}

impl Process {
    /// Starts `program` with `args` and `envs` (on top of this process's environment, with
    /// every `HOOKYARD_*` variable removed so the test alone decides the settings). `health`
    /// is its gRPC endpoint, e.g. `http://127.0.0.1:50052`.
    pub fn spawn<I, K, V>(
        program: &str,
        args: &[&str],
        envs: I,
        health: String,
    ) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut command = tokio::process::Command::new(program);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("HOOKYARD_") {
                command.env_remove(name);
            }
        }
        let child = command
            .args(args)
            .envs(envs)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to start {program}"))?;
        Ok(Self { child, health })
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The service's `grpc.health.v1` answer for the whole server: `Ok` when SERVING.
    pub async fn health(&self) -> Result<(), ProbeError> {
        hookyard_core::health::probe(&self.health, PROBE_TIMEOUT).await
    }

    /// True when the service answers its health check with NOT_SERVING (it is up and says it
    /// is not ready, as opposed to not answering at all).
    pub async fn not_serving(&self) -> bool {
        matches!(self.health().await, Err(ProbeError::NotServing(_)))
    }
}
