//! Persistent mode: long-lived copies of the program speaking JSON lines.

use std::{
    collections::VecDeque,
    io,
    process::ExitStatus,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use serde_json::{Map, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    process::ChildStdout,
    sync::Semaphore,
};
use tokio_util::sync::CancellationToken;

use super::{
    Program, RunError,
    process::{PIPE_GRACE, Running, describe, spawn},
};

/// How long a copy has to exit by itself once [`Pool::shutdown`] has closed its stdin.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// `processes` long-lived copies of the program, each handling one request at a time; see the
/// [module](super) for the protocol.
///
/// Copies start lazily: a slot's copy is started by the first call that needs it, and a copy
/// that was killed (timeout, protocol error) or exited is replaced by the next call using its
/// slot, so a program that dies at start never makes the pool spin. Dropping the pool kills
/// every idle copy's group; [`Pool::shutdown`] asks them to stop first.
pub struct Pool {
    program: Program,
    processes: usize,
    /// One permit per slot: a call holds one while it uses a copy.
    permits: Semaphore,
    /// The slots not in use, in the order they were returned: calls take the oldest, so every
    /// copy serves in turn and one that died is noticed and replaced within `processes` calls.
    /// `None` is a slot whose copy is not (or no longer) running.
    idle: Mutex<VecDeque<Option<Copy>>>,
    /// Cancelled by [`Pool::shutdown`]: calls in flight stop, new ones are refused.
    stopping: CancellationToken,
}

impl Pool {
    /// A pool of `processes` copies (at least one) of `program`, none started yet.
    pub fn new(program: Program, processes: usize) -> Self {
        let processes = processes.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            program,
            processes,
            permits: Semaphore::new(processes),
            idle: Mutex::new((0..processes).map(|_| None).collect()),
            stopping: CancellationToken::new(),
        }
    }

    /// Sends one request to a free copy (waiting for one if all are busy) and returns its
    /// result. Dropping the future kills the copy it was using: its stream position is unknown.
    pub async fn call(&self, request_id: &str, input: &Value) -> Result<Value, RunError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_closed| RunError::ShutDown)?;
        if self.stopping.is_cancelled() {
            return Err(RunError::ShutDown);
        }
        let mut lease = Lease::take(&self.idle);
        let copy = lease.ready(&self.program)?;
        let (outcome, keep) = tokio::select! {
            () = self.stopping.cancelled() => return Err(RunError::ShutDown),
            served = self.serve(copy, request_id, input) => served,
        };
        lease.keep = keep;
        outcome
    }

    /// Runs one request on `copy`; also says whether the copy may serve the next one.
    async fn serve(
        &self,
        copy: &mut Copy,
        request_id: &str,
        input: &Value,
    ) -> (Result<Value, RunError>, bool) {
        let request = request_line(request_id, input);
        let limit = self.program.max_output_bytes;
        let exchanged = tokio::time::timeout(self.program.timeout, copy.exchange(&request, limit));
        let line = match exchanged.await {
            Ok(Ok(line)) => line,
            Ok(Err(fault)) => return (Err(copy.failure(fault, limit).await), false),
            Err(_elapsed) => {
                let (_, stderr) = copy.retire().await;
                let after = self.program.timeout;
                return (Err(RunError::Timeout { after, stderr }), false);
            }
        };
        let keep = !copy.exited;
        match parse_reply(&line, request_id) {
            Reply::Result(value) => (Ok(value), keep),
            Reply::Error { message, retry } => {
                let message = copy.running.stderr.redact(&message);
                (Err(RunError::ProgramError { message, retry }), keep)
            }
            Reply::Invalid(reason) => {
                let (_, stderr) = copy.retire().await;
                (Err(RunError::Protocol { reason, stderr }), false)
            }
        }
    }

    /// Closes every copy's stdin, gives it 2 s to exit, then kills its group.
    /// Calls in flight end with [`RunError::ShutDown`] (retryable) and later calls are refused.
    pub async fn shutdown(&self) {
        self.stopping.cancel();
        let all = u32::try_from(self.processes).unwrap_or(u32::MAX);
        // Every call in flight returns its slot promptly once `stopping` is cancelled.
        let permits = self.permits.acquire_many(all).await;
        self.permits.close();
        drop(permits);
        let copies: Vec<Copy> = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        futures::future::join_all(copies.into_iter().map(Copy::stop)).await;
    }
}

/// A slot taken from the idle list for one call; dropping it puts the slot back, with its copy
/// only if `keep` was set (else the copy is dropped, which kills its group).
struct Lease<'a> {
    idle: &'a Mutex<VecDeque<Option<Copy>>>,
    copy: Option<Copy>,
    keep: bool,
}

impl<'a> Lease<'a> {
    /// Takes a slot. The caller holds a permit, so one is idle; an empty list (which would be a
    /// bug) yields an empty slot rather than a panic.
    fn take(idle: &'a Mutex<VecDeque<Option<Copy>>>) -> Self {
        let copy = idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .flatten();
        Self {
            idle,
            copy,
            keep: false,
        }
    }

    /// The slot's copy, started first if the slot is empty or its copy has exited meanwhile.
    fn ready(&mut self, program: &Program) -> Result<&mut Copy, RunError> {
        let mut live = self.copy.take();
        if live.as_mut().is_some_and(Copy::has_exited) {
            live = None;
        }
        let copy = match live {
            Some(copy) => copy,
            None => Copy::start(program)?,
        };
        Ok(self.copy.insert(copy))
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let copy = if self.keep { self.copy.take() } else { None };
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(copy);
    }
}

/// One running copy of the program, with the stdout bytes read past the last reply.
struct Copy {
    running: Running,
    pending: Vec<u8>,
    /// The main process has exited (it may still have left a reply to read).
    exited: bool,
}

/// Why an exchange with a copy failed; the copy is unusable in every case.
enum Fault {
    /// stdin or stdout closed, or the main process exited, before a reply.
    Died,
    /// The reply line is longer than `max_output_bytes`.
    TooLarge,
    /// A pipe failed otherwise.
    Io(&'static str, io::Error),
}

impl Copy {
    fn start(program: &Program) -> Result<Self, RunError> {
        Ok(Self {
            running: spawn(program)?,
            pending: Vec::new(),
            exited: false,
        })
    }

    /// Whether the main process has exited since the last request.
    fn has_exited(&mut self) -> bool {
        self.exited || !matches!(self.running.child.try_wait(), Ok(None))
    }

    /// Writes the request line and reads the reply line. When the main process exits first,
    /// a reply it wrote before exiting is still read (within [`PIPE_GRACE`]).
    async fn exchange(&mut self, request: &[u8], limit: usize) -> Result<Vec<u8>, Fault> {
        let Some(stdin) = self.running.stdin.as_mut() else {
            return Err(Fault::Died);
        };
        if stdin.write_all(request).await.is_err() || stdin.flush().await.is_err() {
            return Err(Fault::Died);
        }
        let stdout = &mut self.running.stdout;
        tokio::select! {
            biased;
            line = read_line(stdout, &mut self.pending, limit) => line,
            _status = self.running.child.wait() => {
                self.exited = true;
                self.running.group.kill();
                let late = read_line(stdout, &mut self.pending, limit);
                tokio::time::timeout(PIPE_GRACE, late).await.unwrap_or(Err(Fault::Died))
            }
        }
    }

    /// Kills the copy and builds the error for `fault`.
    async fn failure(&mut self, fault: Fault, limit: usize) -> RunError {
        let (status, stderr) = self.retire().await;
        match fault {
            Fault::Died => RunError::Died {
                status: status.map_or_else(|| "status unknown".to_owned(), describe),
                stderr,
            },
            Fault::TooLarge => RunError::OutputTooLarge { limit, stderr },
            Fault::Io(what, source) => RunError::Io { what, source },
        }
    }

    /// Kills the copy's group; returns how its main process ended and the stderr excerpt.
    async fn retire(&mut self) -> (Option<ExitStatus>, String) {
        self.exited = true;
        let status = self.running.kill_and_reap().await;
        (status, self.running.final_stderr().await)
    }

    /// Closes stdin, waits up to [`SHUTDOWN_GRACE`] for the copy to exit, then kills its group.
    async fn stop(mut self) {
        drop(self.running.stdin.take());
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.running.child.wait()).await;
        self.running.kill_and_reap().await;
    }
}

/// Reads one line from `stdout` (returned without its `\n`), keeping the bytes after it in
/// `pending` for the next call. Safe to cancel and call again: bytes read are in `pending`.
async fn read_line(
    stdout: &mut ChildStdout,
    pending: &mut Vec<u8>,
    limit: usize,
) -> Result<Vec<u8>, Fault> {
    let mut scanned = 0;
    loop {
        if let Some(at) = pending[scanned..].iter().position(|&b| b == b'\n') {
            let end = scanned + at;
            if end > limit {
                return Err(Fault::TooLarge);
            }
            let mut line: Vec<u8> = pending.drain(..=end).collect();
            line.pop();
            return Ok(line);
        }
        if pending.len() > limit {
            return Err(Fault::TooLarge);
        }
        scanned = pending.len();
        pending.reserve(64 * 1024);
        match stdout.read_buf(pending).await {
            Ok(0) => return Err(Fault::Died),
            Ok(_) => {}
            Err(error) => return Err(Fault::Io("reading the reply", error)),
        }
    }
}

/// `{"id":"<request id>","input":<input>}` and a newline (compact JSON has no raw newline).
fn request_line(request_id: &str, input: &Value) -> Vec<u8> {
    let request = serde_json::json!({ "id": request_id, "input": input });
    let mut line = request.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// A reply line, checked against the protocol.
enum Reply {
    Result(Value),
    Error { message: String, retry: bool },
    Invalid(String),
}

/// Checks that `line` is a reply to `request_id` and extracts its result or error.
fn parse_reply(line: &[u8], request_id: &str) -> Reply {
    let mut reply = match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(reply)) => reply,
        Ok(_) => return Reply::Invalid("the reply is not a JSON object".to_owned()),
        Err(error) => return Reply::Invalid(format!("the reply is not JSON: {error}")),
    };
    match reply.get("id") {
        Some(Value::String(id)) if id == request_id => {}
        Some(_) => {
            return Reply::Invalid(format!(
                "the reply's id is not the request's ({request_id})"
            ));
        }
        None => return Reply::Invalid("the reply has no id".to_owned()),
    }
    match (reply.remove("result"), reply.remove("error")) {
        (Some(result), None) => Reply::Result(result),
        (None, Some(Value::String(message))) => match retry_field(&reply) {
            Some(retry) => Reply::Error { message, retry },
            None => Reply::Invalid("the reply's retry is not true or false".to_owned()),
        },
        (None, Some(_)) => Reply::Invalid("the reply's error is not a string".to_owned()),
        (Some(_), Some(_)) => Reply::Invalid("the reply has both result and error".to_owned()),
        (None, None) => Reply::Invalid("the reply has neither result nor error".to_owned()),
    }
}

/// The `retry` field of an error reply: absent means `false`; `None` if it is not a boolean.
fn retry_field(reply: &Map<String, Value>) -> Option<bool> {
    match reply.get("retry") {
        None => Some(false),
        Some(value) => value.as_bool(),
    }
}
