//! The runner of `type = "subprocess"` steps: the integration team's own program (any language)
//! run as a child of the worker, either once per work item ([`run_once`]) or as a pool of
//! long-lived copies ([`Pool`]). The step pipeline builds a [`Program`] from the handler's
//! configuration (with argv\[0\] found by [`resolve`] when the worker starts, so a typo fails the
//! start rather than every delivery) and maps [`RunError::retryable`] onto the delivery rules.
//!
//! # What every program gets
//!
//! - argv exactly as configured, no shell; the working directory if one is configured;
//! - an environment holding exactly [`Program::env`] (the worker's own variables, credentials
//!   included, are never inherited);
//! - its own process group: everything it starts is killed with it (SIGKILL to the group) when
//!   it times out, when its output is too large, after it exits (leftover background children
//!   must neither outlive the step nor hold the stdout pipe open) and when the step is dropped
//!   (the worker's shutdown aborting a step);
//! - stderr drained continuously, so a chatty program never blocks; the last 4 KiB are kept,
//!   with every [`Program::secrets`] value replaced by `[redacted]`, and attached to the error's
//!   text (`exit status 1; stderr: …`). Error texts stay bounded.
//!
//! # One-shot mode ([`run_once`])
//!
//! - The input document is written to stdin, then stdin is closed. A program that does not
//!   read it (or exits before reading all of it) is not an error.
//! - The program prints ONE JSON value on stdout (surrounding whitespace allowed): the result.
//!   Empty output, two values or anything not JSON is a permanent `not_json` error; more than
//!   [`Program::max_output_bytes`] is a permanent `output_too_large` error (the group is killed
//!   as soon as the limit is passed).
//! - Exit 0: the result. Exit 75 (`EX_TEMPFAIL`, "try again later"): retryable `temp_fail`.
//!   Any other exit code: permanent `exit`. Killed by a signal the worker did not send (the
//!   OOM killer, an operator's `kill`): retryable `signal`, because the same input usually
//!   succeeds on a healthier run.
//! - Past [`Program::timeout`]: the group is killed, retryable `timeout` ("timed out after 2s").
//! - Cannot be started (missing file, permission denied, no more processes): retryable
//!   `spawn`, naming the path; a redeploy may fix it, and the worker validates the command
//!   when it starts anyway.
//!
//! # Persistent mode ([`Pool`])
//!
//! `processes` copies of the program, started on demand (see [`Pool::new`]), each handling one
//! request at a time. The protocol is JSON lines:
//!
//! - request, one line on the copy's stdin: `{"id":"<request id>","input":<input document>}`;
//! - reply, one line on its stdout: `{"id":"<same id>","result":<value>}`, or
//!   `{"id":"<same id>","error":"<text>","retry":true|false}` (`retry` defaults to `false`).
//!
//! stdout carries nothing but replies; logs go to stderr. A copy should exit when its stdin
//! closes: that is how [`Pool::shutdown`] asks it to stop (it is killed 2 s later otherwise).
//!
//! - An `error` reply: `program_error`, retryable as its `retry` field says; the copy stays.
//! - No reply within [`Program::timeout`]: retryable `timeout`; the copy's group is killed.
//! - The copy exits (or closes stdout) during a request: retryable `died` (the event is
//!   redelivered).
//! - A reply line longer than [`Program::max_output_bytes`]: permanent `output_too_large`; a
//!   reply that is not JSON, lacks the request's `id` or has neither `result` nor `error`:
//!   permanent `protocol`. In both cases the copy's position in its stream is unknown, so it
//!   is killed.
//!
//! A killed copy is replaced by a new one when the next call needs it, never in the background,
//! so a program that dies at start costs one spawn per call instead of a hot loop; a spawn
//! failure is a retryable `spawn` error for that call.

mod oneshot;
mod persistent;
mod process;
#[cfg(test)]
mod tests;

use std::{
    ffi::OsStr,
    fmt, io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

pub use oneshot::run_once;
pub use persistent::Pool;

/// What to run: argv (no shell), the working directory, the only environment variables the
/// program sees, and its limits. Its `Debug` shows the variables' names only: their values
/// may be secrets.
#[derive(Clone)]
pub struct Program {
    /// argv; `command[0]` already resolved to a path by [`resolve`].
    pub command: Vec<String>,
    /// The working directory; the worker's own when `None`.
    pub cwd: Option<PathBuf>,
    /// The program's whole environment (the worker's is cleared first).
    pub env: Vec<(String, String)>,
    /// How long one run (one-shot) or one request (persistent) may take.
    pub timeout: Duration,
    /// The most stdout one run (one-shot) or one reply line (persistent) may hold.
    pub max_output_bytes: usize,
    /// Values replaced by `[redacted]` in stderr excerpts (empty values are ignored).
    pub secrets: Vec<String>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("command", &self.command)
            .field("cwd", &self.cwd)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("max_output_bytes", &self.max_output_bytes)
            .finish_non_exhaustive()
    }
}

/// Why a subprocess step failed. [`RunError::retryable`] says whether the delivery is retried,
/// [`RunError::label`] names the kind for metrics and logs.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program could not be started.
    #[error("cannot start {}: {source}", .path.display())]
    Spawn {
        /// The program's path (argv\[0\]).
        path: PathBuf,
        /// Why `exec` failed.
        #[source]
        source: io::Error,
    },
    /// Exit 75 (`EX_TEMPFAIL`): the program asks for a retry.
    #[error("exit status 75 (temporary failure){}", Stderr(.stderr))]
    TempFail {
        /// The stderr excerpt.
        stderr: String,
    },
    /// Any exit code other than 0 and 75.
    #[error("exit status {code}{}", Stderr(.stderr))]
    Exit {
        /// The exit code.
        code: i32,
        /// The stderr excerpt.
        stderr: String,
    },
    /// Killed by a signal the worker did not send.
    #[error("killed by signal {signal}{}", Stderr(.stderr))]
    Signal {
        /// The signal number.
        signal: i32,
        /// The stderr excerpt.
        stderr: String,
    },
    /// No result within the timeout; the process group was killed.
    #[error("timed out after {after:?}{}", Stderr(.stderr))]
    Timeout {
        /// The configured timeout.
        after: Duration,
        /// The stderr excerpt.
        stderr: String,
    },
    /// stdout (one-shot) or a reply line (persistent) over `max_output_bytes`.
    #[error("output exceeds {limit} bytes{}", Stderr(.stderr))]
    OutputTooLarge {
        /// The configured limit.
        limit: usize,
        /// The stderr excerpt.
        stderr: String,
    },
    /// One-shot stdout is not exactly one JSON value.
    #[error("output is not JSON: {reason}{}", Stderr(.stderr))]
    NotJson {
        /// The parser's complaint (never the output itself).
        reason: String,
        /// The stderr excerpt.
        stderr: String,
    },
    /// A persistent copy answered with an `error` reply.
    #[error("the program reported an error: {message}")]
    ProgramError {
        /// The reply's `error` text (redacted, bounded).
        message: String,
        /// The reply's `retry` field.
        retry: bool,
    },
    /// A persistent copy's reply breaks the protocol.
    #[error("protocol error: {reason}{}", Stderr(.stderr))]
    Protocol {
        /// What is wrong with the reply.
        reason: String,
        /// The stderr excerpt.
        stderr: String,
    },
    /// A persistent copy exited, or closed its stdout, during a request.
    #[error("the program stopped during the request ({status}){}", Stderr(.stderr))]
    Died {
        /// How it ended, e.g. `exit status 3`.
        status: String,
        /// The stderr excerpt.
        stderr: String,
    },
    /// Talking to the program failed for a reason other than the program's behaviour.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The pool was shut down (the worker is stopping).
    #[error("the subprocess pool is shut down")]
    ShutDown,
}

impl RunError {
    /// Whether another attempt may succeed: the delivery is retried with the handler's backoff
    /// instead of being dead-lettered.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Spawn { .. }
            | Self::TempFail { .. }
            | Self::Signal { .. }
            | Self::Timeout { .. }
            | Self::Died { .. }
            | Self::Io { .. }
            | Self::ShutDown => true,
            Self::ProgramError { retry, .. } => *retry,
            Self::Exit { .. }
            | Self::OutputTooLarge { .. }
            | Self::NotJson { .. }
            | Self::Protocol { .. } => false,
        }
    }

    /// Short stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Spawn { .. } => "spawn",
            Self::TempFail { .. } => "temp_fail",
            Self::Exit { .. } => "exit",
            Self::Signal { .. } => "signal",
            Self::Timeout { .. } => "timeout",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::NotJson { .. } => "not_json",
            Self::ProgramError { .. } => "program_error",
            Self::Protocol { .. } => "protocol",
            Self::Died { .. } => "died",
            Self::Io { .. } => "io",
            Self::ShutDown => "shutdown",
        }
    }
}

/// Formats a stderr excerpt as `; stderr: …`, or nothing when there is none.
struct Stderr<'a>(&'a str);

impl fmt::Display for Stderr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "; stderr: {}", self.0)
        }
    }
}

/// Why a program's argv\[0\] cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The command is empty.
    #[error("the command is empty")]
    Empty,
    /// A path (a name with a `/`) that does not exist.
    #[error("{}: no such file", .path.display())]
    NotFound {
        /// The path looked at.
        path: PathBuf,
    },
    /// A bare name found in no directory of PATH.
    #[error("{name}: not found on PATH")]
    NotOnPath {
        /// The name searched for.
        name: String,
    },
    /// The path exists but is not a regular file (a directory, a socket…).
    #[error("{}: not a regular file", .path.display())]
    NotAFile {
        /// The path looked at.
        path: PathBuf,
    },
    /// The file has no execute permission.
    #[error("{}: not executable", .path.display())]
    NotExecutable {
        /// The path looked at.
        path: PathBuf,
    },
    /// The path could not be examined (permission denied on a directory…).
    #[error("{}: {source}", .path.display())]
    Inaccessible {
        /// The path looked at.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Finds `name` (argv\[0\]) like a shell would: a name with a `/` is taken as a path (relative
/// to `cwd` when given), else searched on `path_var` (the worker's PATH; an empty entry means
/// the working directory), the first executable regular file winning. Errors if missing, not a
/// regular file, or not executable, with a message naming the file.
///
/// Relative results are joined to `cwd`, because where the child's exec resolves a relative
/// path when its working directory differs from the worker's is platform-dependent.
pub fn resolve(
    name: &str,
    cwd: Option<&Path>,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, ResolveError> {
    if name.is_empty() {
        return Err(ResolveError::Empty);
    }
    if name.contains('/') {
        let path = anchor(Path::new(name), cwd);
        check_executable(&path)?;
        return Ok(path);
    }
    search_path(name, cwd, path_var.unwrap_or_default())
}

/// Searches the directories of `path_var` for `name`. A candidate that exists but cannot be
/// run is reported (as a shell says "permission denied") when no later directory has one.
fn search_path(name: &str, cwd: Option<&Path>, path_var: &OsStr) -> Result<PathBuf, ResolveError> {
    let mut unusable = None;
    for dir in std::env::split_paths(path_var) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = anchor(&dir.join(name), cwd);
        match check_executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(ResolveError::NotFound { .. }) => {}
            Err(other) => {
                unusable.get_or_insert(other);
            }
        }
    }
    Err(unusable.unwrap_or_else(|| ResolveError::NotOnPath {
        name: name.to_owned(),
    }))
}

/// Joins a relative path to `cwd` when one is given.
fn anchor(path: &Path, cwd: Option<&Path>) -> PathBuf {
    match cwd {
        Some(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    }
}

/// Checks that `path` (following symlinks) is a regular file with an execute bit.
fn check_executable(path: &Path) -> Result<(), ResolveError> {
    let metadata = std::fs::metadata(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ResolveError::NotFound {
            path: path.to_path_buf(),
        },
        _ => ResolveError::Inaccessible {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if !metadata.is_file() {
        return Err(ResolveError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if metadata.permissions().mode() & 0o111 == 0 {
        return Err(ResolveError::NotExecutable {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}
