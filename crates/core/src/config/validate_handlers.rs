//! Checks of `[handlers]`: the handler's limits, each step's own values, step names, and that
//! every `$steps.<name>` a step reads is a step before it.

use super::{
    Handler, Integration, Problem, Step, SubprocessMode,
    steps::{HttpStep, PublishStep, SubprocessStep},
    validate::{METHODS, push, valid_name},
};
use crate::expr::Expr;

/// Largest `max_output_bytes` of a subprocess step: its output is held in memory and may be
/// stored with the work item's progress.
const MAX_OUTPUT_LIMIT: u64 = 16 * 1024 * 1024;
/// Most long-lived copies of one persistent program a worker keeps.
const MAX_PROCESSES: usize = 256;

pub(super) fn check(i: &Integration, problems: &mut Vec<Problem>) {
    for (name, handler) in &i.handlers {
        let key = format!("handlers.{name}");
        if !valid_name(name) || name == crate::streams::UNROUTED {
            push(
                problems,
                key.clone(),
                "handler names may use letters, digits, '-' and '_' (at most 64), and not be \"unrouted\"",
            );
        }
        check_limits(problems, &key, handler);
        check_steps(i, problems, &key, &handler.steps);
    }
}

fn check_limits(problems: &mut Vec<Problem>, key: &str, handler: &Handler) {
    if handler.steps.is_empty() {
        push(
            problems,
            format!("{key}.steps"),
            "must have at least one step",
        );
    }
    if handler.max_deliver == 0 {
        push(problems, format!("{key}.max_deliver"), "must be at least 1");
    }
    if handler.backoff.is_empty() {
        push(
            problems,
            format!("{key}.backoff"),
            "must have at least one delay",
        );
    }
    if handler.concurrency == 0 {
        push(problems, format!("{key}.concurrency"), "must be at least 1");
    }
    if handler.ack_wait.as_millis() < 1000 {
        push(problems, format!("{key}.ack_wait"), "must be at least 1s");
    }
}

fn check_steps(i: &Integration, problems: &mut Vec<Problem>, key: &str, steps: &[Step]) {
    let mut earlier: Vec<String> = Vec::new();
    for (s, step) in steps.iter().enumerate() {
        let skey = format!("{key}.steps[{s}]");
        check_name(problems, &skey, step, &earlier);
        if let Some(when) = step.when() {
            check_condition(problems, format!("{skey}.when"), when);
        }
        check_references(problems, &skey, step, &earlier);
        match step {
            Step::Http(http) => check_http(i, problems, &skey, http),
            Step::Reply(reply) => super::reply::check_reply_step(problems, &skey, reply),
            Step::Subprocess(sub) => check_subprocess(problems, &skey, sub),
            Step::Transform(_) => {}
            Step::Publish(publish) => check_publish(problems, &skey, publish),
        }
        earlier.push(step.result_key(s));
    }
}

/// A step name is read as `$steps.<name>` in jq, so it must be a jq identifier; a name
/// starting with a digit could collide with an unnamed step's index.
fn check_name(problems: &mut Vec<Problem>, skey: &str, step: &Step, earlier: &[String]) {
    let Some(name) = step.given_name() else {
        return;
    };
    if name.len() > 64 || !identifier(name) {
        push(
            problems,
            format!("{skey}.name"),
            "step names start with a letter or '_' and use letters, digits and '_' (at most 64)",
        );
    } else if earlier.iter().any(|e| e == name) {
        push(
            problems,
            format!("{skey}.name"),
            format!("another step of this handler is named {name:?}"),
        );
    }
}

/// Letters, digits and `_`, not starting with a digit: a jq field name and a shell-safe
/// environment variable name alike.
fn identifier(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A `when` is a condition over the event, written in jq.
pub(super) fn check_condition(problems: &mut Vec<Problem>, key: String, when: &Expr) {
    if !when.is_jq() {
        push(
            problems,
            key,
            "must be a jq filter, e.g. { jq = \".order.total > 1000\" }",
        );
    }
}

fn check_references(problems: &mut Vec<Problem>, skey: &str, step: &Step, earlier: &[String]) {
    for (field, expr) in step.expressions() {
        let Some(jq) = expr.as_jq() else {
            continue;
        };
        for name in jq.step_references() {
            if !earlier.contains(&name) {
                let known = if earlier.is_empty() {
                    "there is no step before this one".to_owned()
                } else {
                    format!("the steps before this one are {}", earlier.join(", "))
                };
                push(
                    problems,
                    format!("{skey}.{field}"),
                    format!("reads $steps.{name}, which is not an earlier step ({known})"),
                );
            }
        }
    }
}

fn check_http(i: &Integration, problems: &mut Vec<Problem>, skey: &str, http: &HttpStep) {
    if !i.connections.contains_key(&http.connection) {
        push(
            problems,
            format!("{skey}.connection"),
            format!("no connection named {:?}", http.connection),
        );
    }
    if !METHODS.contains(&http.method.as_str()) {
        push(
            problems,
            format!("{skey}.method"),
            format!("unknown HTTP method {:?}", http.method),
        );
    }
    if let Some(p) = http.path.literal()
        && !p.starts_with('/')
    {
        push(problems, format!("{skey}.path"), "must start with '/'");
    }
    if http.path.is_header() && !http.path_raw {
        push(
            problems,
            format!("{skey}.path"),
            "a header's value is sender data: interpolate it in a jq string \
             ('\"/v1/\\($event.headers[\"x-id\"])\"') or set path_raw = true",
        );
    }
    if http.body_format.is_some() && http.body.is_none() {
        push(
            problems,
            format!("{skey}.body_format"),
            "needs a `body`: without one the event body is sent as received",
        );
    }
}

fn check_subprocess(problems: &mut Vec<Problem>, skey: &str, sub: &SubprocessStep) {
    if sub.command.first().is_none_or(String::is_empty) {
        push(
            problems,
            format!("{skey}.command"),
            "must name a program, e.g. [\"python3\", \"handlers/enrich.py\"]",
        );
    }
    if sub.command.iter().any(|arg| arg.contains('\0')) {
        push(
            problems,
            format!("{skey}.command"),
            "arguments must not contain NUL",
        );
    }
    if sub.timeout.is_zero() {
        push(
            problems,
            format!("{skey}.timeout"),
            "must be greater than 0",
        );
    }
    if sub.max_output_bytes == 0 || sub.max_output_bytes > MAX_OUTPUT_LIMIT {
        push(
            problems,
            format!("{skey}.max_output_bytes"),
            format!("must be from 1 to {MAX_OUTPUT_LIMIT}"),
        );
    }
    if sub.processes == 0 || sub.processes > MAX_PROCESSES {
        push(
            problems,
            format!("{skey}.processes"),
            format!("must be from 1 to {MAX_PROCESSES}"),
        );
    } else if sub.processes > 1 && sub.mode == SubprocessMode::Oneshot {
        push(
            problems,
            format!("{skey}.processes"),
            "only applies to mode = \"persistent\" (a oneshot step starts a process per event)",
        );
    }
    for name in sub.env.keys() {
        if !identifier(name) {
            push(
                problems,
                format!("{skey}.env.{name}"),
                "environment variable names use letters, digits and '_' and do not start with a digit",
            );
        }
    }
}

fn check_publish(problems: &mut Vec<Problem>, skey: &str, publish: &PublishStep) {
    if let Expr::Literal(t) = &publish.event_type
        && t.is_empty()
    {
        push(problems, format!("{skey}.event_type"), "must not be empty");
    }
}
