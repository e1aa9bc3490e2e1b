//! The program the subprocess measurement runs: a real Python 3 script, written at run time,
//! that enriches the event a little; the input documents it reads and the check of its answers.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use hookyard_worker::subprocess::{Program, resolve};
use serde_json::{Value, json};

use super::Way;

/// One script for both contracts, chosen by its argument, so that the two ways differ only in
/// how the worker runs it: `oneshot` reads the whole input document on stdin and prints one
/// JSON value; `persistent` answers one `{"id","input"}` line with one `{"id","result"}` line
/// until stdin closes. Only the standard library: what a team's script would start with.
const SCRIPT: &str = r#""""hookyard-bench's subprocess step: a small enrichment of the event."""
import json
import sys


def enrich(document):
    event = document["event"]
    body = event["body"]
    pad = body.get("pad", "")
    return {
        "event_id": event["id"],
        "order_id": body["id"],
        "pad_chars": len(pad),
        "tier": "large" if len(pad) > 512 else "small",
        "source": event.get("source"),
    }


def oneshot():
    json.dump(enrich(json.load(sys.stdin)), sys.stdout)


def persistent():
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            return
        request = json.loads(line)
        reply = {"id": request["id"], "result": enrich(request["input"])}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    {"oneshot": oneshot, "persistent": persistent}[sys.argv[1]]()
"#;

/// The script's file name in the run's directory.
const SCRIPT_NAME: &str = "enrich.py";

/// How long one event may take: far above what it needs, so that only a hang fails it.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The most output one event may produce (the answers are ~150 bytes).
const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// The interpreter the programs run with.
pub struct Python {
    /// Its real path (`sys.executable`).
    pub path: PathBuf,
    /// `sys.version`'s first word, e.g. `3.11.7`.
    pub version: String,
}

/// Finds the interpreter's real path by asking it for `sys.executable`: `python3` on PATH may
/// be a shim (pyenv's) that needs variables a program's cleared environment lacks. `given`
/// defaults to `python3` on the bench's own PATH.
pub fn python(given: Option<&Path>) -> anyhow::Result<Python> {
    let asked = given.map_or_else(|| PathBuf::from("python3"), Path::to_path_buf);
    let output = Command::new(&asked)
        .args([
            "-c",
            "import sys; print(sys.executable); print(sys.version.split()[0])",
        ])
        .output()
        .with_context(|| format!("cannot run {} (pass --python)", asked.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            asked.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8(output.stdout).context("sys.executable is not UTF-8")?;
    let mut lines = text.lines();
    let (Some(executable), Some(version)) = (lines.next(), lines.next()) else {
        bail!("{} did not print its path and version", asked.display());
    };
    if !version.starts_with("3.") {
        bail!("{} is Python {version}, not Python 3", asked.display());
    }
    let path = resolve(executable, None, None)
        .with_context(|| format!("{}'s sys.executable {executable:?}", asked.display()))?;
    Ok(Python {
        path,
        version: version.to_owned(),
    })
}

/// Writes the script into `dir`; returns its path.
pub fn install(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join(SCRIPT_NAME);
    std::fs::write(&path, SCRIPT).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(path)
}

/// The program a `subprocess` step would build for the script run `way` (with the
/// interpreter's `flags`): argv, the run's
/// directory as working directory, an empty environment, generous limits.
pub fn program(
    python: &Python,
    flags: &[String],
    script: &Path,
    way: Way,
) -> anyhow::Result<Program> {
    let utf8 = |path: &Path| {
        path.to_str()
            .map(str::to_owned)
            .with_context(|| format!("{} is not UTF-8", path.display()))
    };
    let mut command = vec![utf8(&python.path)?];
    command.extend(flags.iter().cloned());
    command.extend([utf8(script)?, way.name().to_owned()]);
    Ok(Program {
        command,
        cwd: script.parent().map(Path::to_path_buf),
        env: Vec::new(),
        timeout: TIMEOUT,
        max_output_bytes: MAX_OUTPUT_BYTES,
        secrets: Vec::new(),
    })
}

/// One event: its id, the input document the program reads, the answer it must give.
pub struct Event {
    pub id: String,
    pub document: Value,
    expected: Value,
}

impl Event {
    /// Event number `n` with a JSON body of `body_bytes` bytes (serialized), in the input
    /// document's version 1 (see `hookyard_worker::program`).
    pub fn new(n: u64, body_bytes: usize) -> Self {
        let id = format!("evt_bench_{n}");
        let order_id = format!("order-{n}");
        let (body, pad_chars) = body(&order_id, body_bytes);
        let document = json!({
            "version": 1,
            "event": {
                "id": id,
                "type": "order.created",
                "source": "bench",
                "handler": "enrich",
                "received_at_ms": now_ms(),
                "headers": { "content-type": "application/json" },
                "content_type": "application/json",
                "body": body,
            },
            "steps": {},
        });
        let expected = json!({ "event_id": id, "order_id": order_id, "pad_chars": pad_chars });
        Self {
            id,
            document,
            expected,
        }
    }

    /// Whether `answer` is the enrichment of this event (its ids and the body's size), so that
    /// a mixed-up answer (one event's result returned for another) is caught.
    pub fn answered_by(&self, answer: &Value) -> bool {
        self.expected
            .as_object()
            .is_some_and(|fields| fields.iter().all(|(k, v)| answer.get(k) == Some(v)))
    }
}

/// `{"id":"<order id>","pad":"xx…"}`, padded to `bytes` once serialized (or the smallest body
/// when `bytes` is less); returns the body and its padding length.
fn body(order_id: &str, bytes: usize) -> (Value, usize) {
    let empty = json!({ "id": order_id, "pad": "" }).to_string().len();
    let pad_chars = bytes.saturating_sub(empty);
    (
        json!({ "id": order_id, "pad": "x".repeat(pad_chars) }),
        pad_chars,
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_the_requested_size() {
        let (body, _) = body("order-7", 1024);
        assert_eq!(body.to_string().len(), 1024);
    }

    #[test]
    fn an_answer_must_name_its_own_event() {
        let event = Event::new(3, 1024);
        let mut answer = event.expected.clone();
        answer["tier"] = json!("large");
        assert!(event.answered_by(&answer));
        answer["event_id"] = json!("evt_bench_4");
        assert!(!event.answered_by(&answer));
    }
}
