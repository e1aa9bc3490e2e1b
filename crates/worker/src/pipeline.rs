//! One attempt at a work item's pipeline: each step in order, from the first step an earlier
//! delivery did not complete, its `when` checked, its result kept under `$steps.<name>` for
//! the steps after it (and, after a side effect with steps still to run, in
//! [`crate::resume`], so a retry does not repeat it).

use std::time::Duration;

use async_nats::jetstream;
use hookyard_core::config::{HttpStep, PublishStep, ReplyStep, Step, TransformStep};
use hookyard_proto::event::v1::WorkItem;
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::{
    call::{self, Scope},
    dispatch::HandlerContext,
    outcome::{Attempt, Failure, classify_rpc, classify_status, partner_refusal},
    report,
    resume::{self, Progress},
};

/// A call may take this many times its connection's timeout before the worker gives up on
/// egress: a backstop (egress applies the timeout and its own retries), so a hung call cannot
/// hold a slot forever while progress acks keep the message from being redelivered.
const CALL_DEADLINE_FACTOR: u32 = 10;
/// Call deadline when the connection is unknown (egress then answers NOT_FOUND anyway).
const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(300);

/// Runs the steps of `item` from `progress.next` on.
pub(crate) async fn run(
    ctx: &HandlerContext,
    msg: &jetstream::Message,
    item: &WorkItem,
    mut progress: Progress,
) -> Attempt {
    let Some(event) = item.event.as_ref() else {
        return failed(
            Failure::BadEvent,
            0,
            "the work item has no event".to_owned(),
        );
    };
    let steps = &ctx.handler.steps;
    for (index, step) in steps.iter().enumerate().skip(progress.next) {
        let key = step.result_key(index);
        let results = Value::Object(progress.steps.clone());
        let scope = Scope {
            event,
            item,
            response: progress.response.as_ref(),
            steps: &results,
        };
        let span = tracing::info_span!(
            "step",
            index,
            r#type = step.kind(),
            name = step.given_name().unwrap_or_default(),
            outcome = tracing::field::Empty,
        );
        let ran = run_step(ctx, index, step, &key, scope)
            .instrument(span.clone())
            .await;
        span.record(
            "outcome",
            match &ran {
                Ok(Some(_)) => "done",
                Ok(None) => "skipped",
                Err(_) => "failed",
            },
        );
        let result = match ran {
            Ok(result) => result,
            Err(attempt) => return attempt,
        };
        match result {
            Some(result) => {
                if matches!(step, Step::Http(_)) {
                    progress.response = Some(result.clone());
                }
                progress.steps.insert(key, result);
            }
            None => {
                progress.steps.insert(key, json!({ "skipped": true }));
            }
        }
        progress.next = index + 1;
        if step.has_side_effect() && progress.next < steps.len() {
            resume::save(ctx, msg, &progress).await;
        }
    }
    Attempt::Succeeded
}

/// Runs one step: its result, `None` when its `when` is false, or the failed attempt.
async fn run_step(
    ctx: &HandlerContext,
    index: usize,
    step: &Step,
    key: &str,
    scope: Scope<'_>,
) -> Result<Option<Value>, Attempt> {
    if let Some(when) = step.when() {
        match when.eval_bool(&scope.input()) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => {
                return Err(failed(
                    Failure::Permanent,
                    0,
                    format!("step {index}: `when` failed: {e}"),
                ));
            }
        }
    }
    let result = match step {
        Step::Http(s) => http(ctx, s, index, scope).await?,
        Step::Reply(s) => reply(ctx, s, index, scope).await?,
        Step::Transform(s) => transform(s, index, scope)?,
        Step::Publish(s) => publish(ctx, s, index, key, scope).await?,
        Step::Subprocess(_) => subprocess(ctx, index, scope).await?,
    };
    Ok(Some(result))
}

fn failed(kind: Failure, status: u32, error: String) -> Attempt {
    Attempt::Failed {
        kind,
        status,
        error,
    }
}

fn permanent(index: usize, error: &dyn std::error::Error) -> Attempt {
    failed(
        Failure::Permanent,
        0,
        format!("step {index}: {}", report(error)),
    )
}

async fn http(
    ctx: &HandlerContext,
    step: &HttpStep,
    index: usize,
    scope: Scope<'_>,
) -> Result<Value, Attempt> {
    let request = call::build(step, index, scope).map_err(|e| permanent(index, &e))?;
    let deadline = ctx
        .integration
        .connections
        .get(&step.connection)
        .map_or(DEFAULT_CALL_DEADLINE, |c| c.timeout * CALL_DEADLINE_FACTOR);
    let mut request = tonic::Request::new(request);
    request.set_timeout(deadline);
    // Egress continues the trace from this step's span.
    hookyard_core::trace::to_grpc(&tracing::Span::current(), &mut request);
    match ctx.egress.clone().call(request).await {
        Ok(response) => {
            let response = response.into_inner();
            if let Some(kind) = classify_status(response.status) {
                let why = partner_refusal(index, response.status, &response.body);
                return Err(failed(kind, response.status, why));
            }
            Ok(call::response_meta(&response))
        }
        Err(status) => Err(failed(
            classify_rpc(&status),
            0,
            format!(
                "step {index}: egress call failed ({:?}): {}",
                status.code(),
                status.message()
            ),
        )),
    }
}

async fn reply(
    ctx: &HandlerContext,
    step: &ReplyStep,
    index: usize,
    scope: Scope<'_>,
) -> Result<Value, Attempt> {
    let reply = crate::reply::build(step, scope).map_err(|e| permanent(index, &e))?;
    let status = reply.status;
    crate::reply::send(&ctx.nats, &ctx.topology, reply).await;
    Ok(json!({ "status": status }))
}

fn transform(step: &TransformStep, index: usize, scope: Scope<'_>) -> Result<Value, Attempt> {
    let value = step
        .jq
        .eval_json(&scope.input())
        .map_err(|e| permanent(index, &e))?;
    Ok(json!({ "result": value }))
}

async fn publish(
    ctx: &HandlerContext,
    step: &PublishStep,
    index: usize,
    key: &str,
    scope: Scope<'_>,
) -> Result<Value, Attempt> {
    let event = crate::publish::build(step, key, scope).map_err(|e| permanent(index, &e))?;
    crate::publish::store(&ctx.js, &ctx.topology, &event)
        .await
        .map_err(|e| {
            failed(
                Failure::Retryable,
                0,
                format!("step {index}: {}", report(&e)),
            )
        })?;
    Ok(json!({ "event_id": event.id }))
}

async fn subprocess(
    ctx: &HandlerContext,
    index: usize,
    scope: Scope<'_>,
) -> Result<Value, Attempt> {
    let Some(runner) = ctx.programs.runner(index) else {
        return Err(failed(
            Failure::Permanent,
            0,
            format!("step {index}: the program was not prepared at start"),
        ));
    };
    let input = crate::program::input_document(scope, &ctx.integration);
    let request_id = format!(
        "{}:{index}",
        call::item_idempotency_key(scope.event, scope.item, 0)
    );
    match runner.run(&request_id, &input).await {
        Ok(result) => Ok(json!({ "result": result })),
        Err(e) => {
            let kind = if e.retryable() {
                Failure::Retryable
            } else {
                Failure::Permanent
            };
            ctx.metrics.program_failure(&ctx.name, e.label());
            Err(failed(kind, 0, format!("step {index}: program {e}")))
        }
    }
}
