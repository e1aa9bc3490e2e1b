//! The `subprocess` steps of a handler: their programs found and made ready at start (a
//! command that does not exist fails the worker at start, naming the key), the input document
//! each run reads on stdin, and the run itself (see [`crate::subprocess`] for the contract).
//!
//! # The input document (version 1)
//!
//! ```json
//! {
//!   "version": 1,
//!   "event": {
//!     "id": "evt_…", "type": "order.created", "source": "shop", "handler": "orders",
//!     "received_at_ms": 1764600000000,
//!     "headers": { "content-type": "application/json", "x-shop-topic": "orders/create" },
//!     "content_type": "application/json",
//!     "body": { "order": { "id": "o-7" } }
//!   },
//!   "steps": { "lookup": { "status": 200, "headers": {}, "body": {} } }
//! }
//! ```
//!
//! `body` is the event body when it is JSON; otherwise `body` is `null` and `body_base64`
//! holds the bytes. Headers that can carry a credential (by their name, or declared by the
//! source's auth or signature) are left out; names are lower case.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use base64::Engine as _;
use hookyard_core::{
    Integration,
    config::{Handler, Problem, Step, SubprocessMode, SubprocessStep},
    redact,
};
use serde_json::{Map, Value, json};

use crate::{
    call::Scope,
    subprocess::{self, Pool, Program, RunError},
};

/// How one step runs its program.
pub(crate) enum Runner {
    Oneshot(Program),
    Persistent(Pool),
}

impl Runner {
    /// Runs the program on `input`.
    pub(crate) async fn run(&self, request_id: &str, input: &Value) -> Result<Value, RunError> {
        match self {
            Self::Oneshot(program) => {
                subprocess::run_once(program, input.to_string().as_bytes()).await
            }
            Self::Persistent(pool) => pool.call(request_id, input).await,
        }
    }
}

/// The ready programs of one handler's subprocess steps, by step index.
#[derive(Default)]
pub(crate) struct Programs {
    by_step: HashMap<usize, Runner>,
}

impl Programs {
    /// Finds every subprocess step's program (secrets in `env` must be resolved already).
    /// `base_dir` is the integration file's directory. Every problem found is returned, each
    /// with its key.
    pub(crate) fn prepare(
        name: &str,
        handler: &Handler,
        base_dir: &Path,
    ) -> Result<Self, Vec<Problem>> {
        let mut programs = Self::default();
        let mut problems = Vec::new();
        for (index, step) in handler.steps.iter().enumerate() {
            let Step::Subprocess(sub) = step else {
                continue;
            };
            match program(sub, base_dir) {
                Ok(program) => {
                    let runner = match sub.mode {
                        SubprocessMode::Oneshot => Runner::Oneshot(program),
                        SubprocessMode::Persistent => {
                            Runner::Persistent(Pool::new(program, sub.processes))
                        }
                    };
                    programs.by_step.insert(index, runner);
                }
                Err(message) => problems.push(Problem {
                    key: format!("handlers.{name}.steps[{index}].command"),
                    message,
                    line: None,
                }),
            }
        }
        if problems.is_empty() {
            Ok(programs)
        } else {
            Err(problems)
        }
    }

    /// The program of step `index`; `None` when it is not a subprocess step.
    pub(crate) fn runner(&self, index: usize) -> Option<&Runner> {
        self.by_step.get(&index)
    }

    /// Stops the long-lived programs.
    pub(crate) async fn shutdown(&self) {
        for runner in self.by_step.values() {
            if let Runner::Persistent(pool) = runner {
                pool.shutdown().await;
            }
        }
    }
}

/// The problems of every subprocess step of the file (`hookyard validate`): programs that do
/// not exist or are not executable.
pub fn check(integration: &Integration, base_dir: &Path) -> Vec<Problem> {
    integration
        .handlers
        .iter()
        .filter_map(|(name, handler)| Programs::prepare(name, handler, base_dir).err())
        .flatten()
        .collect()
}

fn program(sub: &SubprocessStep, base_dir: &Path) -> Result<Program, String> {
    let cwd = match &sub.cwd {
        Some(dir) => base_dir.join(dir),
        None => base_dir.to_path_buf(),
    };
    let name = sub.command.first().map(String::as_str).unwrap_or_default();
    let path_var = std::env::var_os("PATH");
    let resolved: PathBuf =
        subprocess::resolve(name, Some(&cwd), path_var.as_deref()).map_err(|e| e.to_string())?;
    let mut command = sub.command.clone();
    command[0] = resolved.display().to_string();
    let secrets = sub
        .env
        .values()
        .filter_map(|v| match v {
            hookyard_core::config::EnvValue::Secret(s) => Some(s.expose().to_owned()),
            hookyard_core::config::EnvValue::Literal(_) => None,
        })
        .filter(|s| !s.is_empty())
        .collect();
    Ok(Program {
        command,
        cwd: Some(cwd),
        env: sub
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.value().to_owned()))
            .collect(),
        timeout: sub.timeout,
        max_output_bytes: usize::try_from(sub.max_output_bytes).unwrap_or(usize::MAX),
        secrets,
    })
}

/// The document a program reads on stdin (see the module docs).
pub(crate) fn input_document(scope: Scope<'_>, integration: &Integration) -> Value {
    let Scope {
        event, item, steps, ..
    } = scope;
    let declared = integration
        .sources
        .get(&event.source)
        .map(redact::Declared::of)
        .unwrap_or_default();
    let mut headers = Map::new();
    for h in &event.headers {
        let (value, secret) = redact::header(&h.name, &h.value, &declared);
        if !secret {
            headers.insert(h.name.to_ascii_lowercase(), Value::String(value));
        }
    }
    let content_type = headers.get("content-type").cloned().unwrap_or(Value::Null);
    let parsed = hookyard_core::json::check_depth(&event.body, hookyard_core::json::MAX_DEPTH)
        .ok()
        .and_then(|()| serde_json::from_slice::<Value>(&event.body).ok());
    let base64 = parsed.is_none() && !event.body.is_empty();
    let mut doc = json!({
        "id": event.id,
        "type": item.event_type,
        "source": event.source,
        "handler": item.handler,
        "received_at_ms": event.received_at_ms,
        "headers": headers,
        "content_type": content_type,
        "body": parsed,
    });
    if base64 && let Some(map) = doc.as_object_mut() {
        map.insert(
            "body_base64".to_owned(),
            base64::engine::general_purpose::STANDARD
                .encode(&event.body)
                .into(),
        );
    }
    json!({ "version": 1, "event": doc, "steps": steps })
}
