//! Plumbing shared by both modes: starting a program in its own process group, killing that
//! group, and keeping a redacted tail of its stderr.

use std::{
    collections::VecDeque,
    io,
    os::unix::process::ExitStatusExt,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::{
    io::AsyncReadExt,
    process::{Child, ChildStderr, ChildStdin, ChildStdout, Command},
};
use tokio_util::task::AbortOnDropHandle;

use super::{Program, RunError};

/// How much of a program's stderr is kept for error texts.
pub(super) const STDERR_TAIL: usize = 4096;

/// How long the pipes may stay open once the group has been killed. Only a process that left
/// the group (`setsid`) can keep them open longer; the worker must not hang on it.
pub(super) const PIPE_GRACE: Duration = Duration::from_millis(500);

/// The process group of a started program. Dropping it kills the group, so that a step whose
/// future is dropped (the worker's shutdown aborting it) leaves no process behind.
pub(super) struct Group {
    pgid: Option<Pid>,
}

impl Group {
    /// Sends SIGKILL to every process of the group, once.
    ///
    /// Called while the leader is unreaped (timeout, output limit: the group id cannot have
    /// been reused) or right after reaping it; in that window the id can only be reused after
    /// the kernel has cycled through every other pid, which is why the group is disarmed after
    /// the first kill instead of being killed again on drop, maybe much later.
    pub(super) fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH: the group is already gone, which is what we want.
            let _ = kill_process_group(pgid, Signal::KILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A started program: its group (declared first, so it is killed first on drop), the child
/// (`kill_on_drop`, reaped by tokio in the background if dropped), its pipes and its stderr.
pub(super) struct Running {
    pub(super) group: Group,
    pub(super) child: Child,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) stdout: ChildStdout,
    pub(super) stderr: StderrLog,
    pub(super) stderr_drain: AbortOnDropHandle<()>,
}

/// Starts `program` in a new process group with a cleared environment and piped stdio.
pub(super) fn spawn(program: &Program) -> Result<Running, RunError> {
    let Some((path, args)) = program.command.split_first() else {
        return Err(RunError::Spawn {
            path: PathBuf::new(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "the command is empty"),
        });
    };
    let spawn_error = |source| RunError::Spawn {
        path: PathBuf::from(path),
        source,
    };
    let mut child = command(program, path, args).spawn().map_err(spawn_error)?;
    let group = Group {
        pgid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw),
    };
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(spawn_error(io::Error::other("stdio pipes missing")));
    };
    let (stderr, stderr_drain) = StderrLog::drain(stderr, &program.secrets);
    Ok(Running {
        group,
        child,
        stdin: Some(stdin),
        stdout,
        stderr,
        stderr_drain,
    })
}

/// The command for `program`: argv, cwd, exactly its environment, piped stdio, own group.
fn command(program: &Program, path: &str, args: &[String]) -> Command {
    let mut command = Command::new(path);
    command
        .args(args)
        .env_clear()
        .envs(program.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(cwd) = &program.cwd {
        command.current_dir(cwd);
    }
    command
}

impl Running {
    /// Kills the group and reaps the leader (after it was killed: promptly). Returns how the
    /// leader ended: its own exit status if it had already exited, else the kill.
    pub(super) async fn kill_and_reap(&mut self) -> Option<ExitStatus> {
        self.group.kill();
        let _ = self.child.start_kill();
        self.child.wait().await.ok()
    }

    /// The stderr excerpt once the drain has reached EOF (all writers dead) or after
    /// [`PIPE_GRACE`]. Call after the group is killed.
    pub(super) async fn final_stderr(&mut self) -> String {
        let _ = tokio::time::timeout(PIPE_GRACE, &mut self.stderr_drain).await;
        self.stderr.excerpt()
    }
}

/// Describes how a process ended, for error texts.
pub(super) fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "unknown status".to_owned(),
    }
}

/// The last [`STDERR_TAIL`] bytes a program wrote to stderr, shared between the task that
/// drains the pipe and whoever builds an error.
#[derive(Clone)]
pub(super) struct StderrLog {
    tail: Arc<Mutex<Tail>>,
    secrets: Arc<[Vec<u8>]>,
}

/// The kept bytes, and whether older ones were dropped (the excerpt then starts mid-stream).
#[derive(Default)]
struct Tail {
    bytes: VecDeque<u8>,
    cut: bool,
}

impl StderrLog {
    /// Starts draining `stderr` into a new log until EOF; the task stops when the handle drops.
    fn drain(stderr: ChildStderr, secrets: &[String]) -> (Self, AbortOnDropHandle<()>) {
        let log = Self {
            tail: Arc::default(),
            secrets: redaction_list(secrets),
        };
        let task = tokio::spawn(log.clone().fill(stderr));
        (log, AbortOnDropHandle::new(task))
    }

    /// Reads `stderr` to EOF, keeping the tail. A read error ends the drain like EOF: the
    /// excerpt is best effort and must never fail the step.
    async fn fill(self, mut stderr: ChildStderr) {
        let mut chunk = vec![0; 16 * 1024];
        while let Ok(n @ 1..) = stderr.read(&mut chunk).await {
            self.push(&chunk[..n]);
        }
    }

    fn push(&self, chunk: &[u8]) {
        let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.bytes.extend(chunk);
        let excess = tail.bytes.len().saturating_sub(STDERR_TAIL);
        if excess > 0 {
            tail.bytes.drain(..excess);
            tail.cut = true;
        }
    }

    /// The redacted excerpt of what was written so far.
    pub(super) fn excerpt(&self) -> String {
        let (bytes, cut) = {
            let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
            (tail.bytes.make_contiguous().to_vec(), tail.cut)
        };
        excerpt(&bytes, cut, &self.secrets)
    }

    /// Redacts `text` with this program's secrets and bounds it like an excerpt.
    pub(super) fn redact(&self, text: &str) -> String {
        excerpt(text.as_bytes(), false, &self.secrets)
    }
}

/// The non-empty secrets as bytes, longest first so that a secret containing another is
/// replaced whole.
fn redaction_list(secrets: &[String]) -> Arc<[Vec<u8>]> {
    let mut list: Vec<Vec<u8>> = secrets
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.as_bytes().to_vec())
        .collect();
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    list.dedup();
    list.into()
}

const REDACTED: &[u8] = b"[redacted]";

/// Builds a printable excerpt from raw stderr bytes: secrets replaced, lossy UTF-8, at most
/// [`STDERR_TAIL`] bytes cut on a char boundary, trailing whitespace trimmed. When `cut` (older
/// bytes were dropped) a leading partial UTF-8 sequence is skipped, and a leading fragment
/// that is the end of a secret is redacted too (the secret straddled the cut).
pub(super) fn excerpt(raw: &[u8], cut: bool, secrets: &[Vec<u8>]) -> String {
    let mut raw = raw;
    if cut {
        let partial = raw
            .iter()
            .take(3)
            .take_while(|&&b| b & 0xC0 == 0x80)
            .count();
        raw = &raw[partial..];
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    if cut && let Some(skip) = secret_suffix_at_start(raw, secrets) {
        out.extend_from_slice(REDACTED);
        at = skip;
    }
    while at < raw.len() {
        match secrets.iter().find(|s| raw[at..].starts_with(s)) {
            Some(secret) => {
                out.extend_from_slice(REDACTED);
                at += secret.len();
            }
            None => {
                out.push(raw[at]);
                at += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&out);
    let text = text.trim_end();
    let kept = keep_last(text, STDERR_TAIL);
    if cut || kept.len() < text.len() {
        format!("…{kept}")
    } else {
        kept.to_owned()
    }
}

/// The length of the longest proper suffix of a secret that `raw` starts with.
fn secret_suffix_at_start(raw: &[u8], secrets: &[Vec<u8>]) -> Option<usize> {
    secrets
        .iter()
        .flat_map(|s| (1..s.len()).map(move |start| &s[start..]))
        .filter(|suffix| raw.starts_with(suffix))
        .map(<[u8]>::len)
        .max()
}

/// The last `max` bytes of `text` or fewer, starting on a char boundary.
pub(super) fn keep_last(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
