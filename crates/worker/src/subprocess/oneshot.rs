//! One-shot mode: one process per work item, the input on stdin, the result on stdout.

use std::{io, os::unix::process::ExitStatusExt, process::ExitStatus};

use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    process::ChildStdin,
};

use super::{
    Program, RunError,
    process::{PIPE_GRACE, Running, spawn},
};

/// The exit code asking for a retry (`EX_TEMPFAIL` in `sysexits.h`).
const EX_TEMPFAIL: i32 = 75;

/// Runs the program once: writes `input` to stdin and closes it, reads stdout (at most
/// `max_output_bytes`) and stderr, waits up to `timeout`. See the [module](super) for what
/// each outcome means. Dropping the future kills the program's process group.
pub async fn run_once(program: &Program, input: &[u8]) -> Result<Value, RunError> {
    let mut running = spawn(program)?;
    let limit = program.max_output_bytes;
    let mut stdout = Vec::new();
    let exchanged = tokio::time::timeout(
        program.timeout,
        exchange(&mut running, input, limit, &mut stdout),
    )
    .await;
    let status = match exchanged {
        Ok(Ok(status)) => status,
        Ok(Err(early)) => return Err(stop_early(&mut running, early, limit).await),
        Err(_elapsed) => {
            running.kill_and_reap().await;
            return Err(RunError::Timeout {
                after: program.timeout,
                stderr: running.final_stderr().await,
            });
        }
    };
    // Leftover background children must neither outlive the step nor keep the pipes open.
    running.group.kill();
    let rest = tokio::time::timeout(
        PIPE_GRACE,
        read_capped(&mut running.stdout, limit, &mut stdout),
    )
    .await;
    let stderr = running.final_stderr().await;
    if let Ok(Err(Capped::TooLarge)) = rest {
        return Err(RunError::OutputTooLarge { limit, stderr });
    }
    verdict(status, &stdout, stderr)
}

/// Why the exchange with the program ended before the main process exited.
enum Early {
    /// stdout passed the limit.
    TooLarge,
    /// A pipe or `wait` failed.
    Failed(&'static str, io::Error),
}

/// Feeds stdin, reads stdout and waits for the main process, all at once: a program may
/// write its output before reading its input, or never read it. Returns when the main
/// process exits (its children may still run).
async fn exchange(
    running: &mut Running,
    input: &[u8],
    limit: usize,
    stdout: &mut Vec<u8>,
) -> Result<ExitStatus, Early> {
    let feed = feed(running.stdin.take(), input);
    let read = read_capped(&mut running.stdout, limit, stdout);
    let wait = running.child.wait();
    tokio::pin!(feed, read, wait);
    let (mut fed, mut read_all) = (false, false);
    loop {
        tokio::select! {
            status = &mut wait => {
                return status.map_err(|error| Early::Failed("waiting for the program", error));
            }
            read = &mut read, if !read_all => match read {
                Ok(()) => read_all = true,
                Err(Capped::TooLarge) => return Err(Early::TooLarge),
                Err(Capped::Io(error)) => return Err(Early::Failed("reading stdout", error)),
            },
            () = &mut feed, if !fed => fed = true,
        }
    }
}

/// Kills the group after an exchange that ended before the program did, and builds the error.
async fn stop_early(running: &mut Running, early: Early, limit: usize) -> RunError {
    running.kill_and_reap().await;
    match early {
        Early::TooLarge => RunError::OutputTooLarge {
            limit,
            stderr: running.final_stderr().await,
        },
        Early::Failed(what, source) => RunError::Io { what, source },
    }
}

/// Writes the input and closes stdin. Write errors are ignored: EPIPE means the program did
/// not want (all of) its input, which is its right; its exit status and output decide.
async fn feed(stdin: Option<ChildStdin>, input: &[u8]) {
    if let Some(mut stdin) = stdin {
        let _ = stdin.write_all(input).await;
        let _ = stdin.shutdown().await;
    }
}

/// Why reading stdout stopped early.
enum Capped {
    TooLarge,
    Io(io::Error),
}

/// Appends `out` to `buf` until EOF, failing as soon as `buf` would pass `limit`. Safe to
/// cancel and call again: every chunk read is already in `buf`.
async fn read_capped(
    out: &mut (impl AsyncRead + Unpin),
    limit: usize,
    buf: &mut Vec<u8>,
) -> Result<(), Capped> {
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let n = out.read(&mut chunk).await.map_err(Capped::Io)?;
        if n == 0 {
            return Ok(());
        }
        if buf.len() + n > limit {
            return Err(Capped::TooLarge);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The step's outcome from the exit status and the complete stdout.
fn verdict(status: ExitStatus, stdout: &[u8], stderr: String) -> Result<Value, RunError> {
    match status.code() {
        Some(0) => serde_json::from_slice(stdout).map_err(|error| RunError::NotJson {
            reason: error.to_string(),
            stderr,
        }),
        Some(EX_TEMPFAIL) => Err(RunError::TempFail { stderr }),
        Some(code) => Err(RunError::Exit { code, stderr }),
        None => Err(RunError::Signal {
            signal: status.signal().unwrap_or_default(),
            stderr,
        }),
    }
}
