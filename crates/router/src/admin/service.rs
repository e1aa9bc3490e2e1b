//! The gRPC face of the admin API: each RPC checks its input and calls the module that owns it.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use hookyard_proto::admin::v1::{
    GetDeadLetterRequest, GetDeadLetterResponse, GetEventRequest, GetEventResponse,
    ListAuditRequest, ListAuditResponse, ListDeadLettersRequest, ListDeadLettersResponse,
    ListEventsRequest, ListEventsResponse, ListHandlersRequest, ListHandlersResponse,
    ListReplaysRequest, ListReplaysResponse, PauseHandlerRequest, PauseHandlerResponse,
    PurgeDeadLettersRequest, PurgeDeadLettersResponse, ReplayProgress, ReplayRequest,
    ResumeHandlerRequest, ResumeHandlerResponse, TailRequest, TailResponse,
    admin_service_server::AdminService,
};
use tokio::sync::mpsc;
use tokio_stream::{StreamExt as _, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use super::{Context, Error, audit, dead, deliveries, events, handlers, replay};
use crate::route::{self, Decision};

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Serves `hookyard.admin.v1.AdminService`.
pub(crate) struct Api {
    ctx: Arc<Context>,
}

impl Api {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }
}

/// `GetEvent`: the event, redacted, and every handler's deliveries.
pub(crate) async fn get_event(ctx: &Context, id: &str) -> Result<GetEventResponse, Error> {
    let stored = events::find(ctx, id).await?;
    let integration = ctx.table.current();
    let (event_type, routed) = match route::decide(&integration, &stored.event) {
        Decision::Handlers {
            event_type,
            handlers,
        } => (event_type, handlers),
        Decision::Unrouted { event_type, .. } => (event_type, Vec::new()),
    };
    let handlers = deliveries::of_event(ctx, &stored.event.id, &routed).await?;
    let summary = events::summary(&stored, event_type);
    Ok(GetEventResponse {
        event: Some(events::redacted(&integration, &stored.event, summary)),
        handlers,
    })
}

/// `Tail` as a stream of summaries.
pub(crate) fn tail(
    ctx: Arc<Context>,
    request: TailRequest,
) -> mpsc::Receiver<Result<hookyard_proto::admin::v1::EventSummary, Error>> {
    let (out, receiver) = mpsc::channel(256);
    tokio::spawn(events::tail(ctx, request, out));
    receiver
}

fn pause_for(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

#[tonic::async_trait]
impl AdminService for Api {
    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        let r = request.into_inner();
        let filter = r.filter.unwrap_or_default();
        let (events, next_page_token, scanned) =
            events::list(&self.ctx, &filter, r.page_size, &r.page_token).await?;
        Ok(Response::new(ListEventsResponse {
            events,
            next_page_token,
            scanned,
        }))
    }

    async fn get_event(
        &self,
        request: Request<GetEventRequest>,
    ) -> Result<Response<GetEventResponse>, Status> {
        Ok(Response::new(
            get_event(&self.ctx, &request.into_inner().id).await?,
        ))
    }

    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let (dead_letters, next_page_token) = dead::list(&self.ctx, &request.into_inner()).await?;
        Ok(Response::new(ListDeadLettersResponse {
            dead_letters,
            next_page_token,
        }))
    }

    async fn get_dead_letter(
        &self,
        request: Request<GetDeadLetterRequest>,
    ) -> Result<Response<GetDeadLetterResponse>, Status> {
        let (dead_letter, event) = dead::get(&self.ctx, request.into_inner().sequence).await?;
        Ok(Response::new(GetDeadLetterResponse {
            dead_letter: Some(dead_letter),
            event: Some(event),
        }))
    }

    type ReplayStream = Streamed<ReplayProgress>;

    async fn replay(
        &self,
        request: Request<ReplayRequest>,
    ) -> Result<Response<Self::ReplayStream>, Status> {
        let progress = replay::start(self.ctx.clone(), request.into_inner())?;
        Ok(Response::new(Box::pin(
            ReceiverStream::new(progress).map(Ok),
        )))
    }

    async fn list_replays(
        &self,
        request: Request<ListReplaysRequest>,
    ) -> Result<Response<ListReplaysResponse>, Status> {
        let (replays, next_page_token) = replay::list(&self.ctx, &request.into_inner()).await?;
        Ok(Response::new(ListReplaysResponse {
            replays,
            next_page_token,
        }))
    }

    async fn purge_dead_letters(
        &self,
        request: Request<PurgeDeadLettersRequest>,
    ) -> Result<Response<PurgeDeadLettersResponse>, Status> {
        let r = request.into_inner();
        let selector = r.selector.unwrap_or_default();
        let purged = dead::purge(&self.ctx, &selector, r.dry_run).await?;
        Ok(Response::new(PurgeDeadLettersResponse { purged }))
    }

    type TailStream = Streamed<TailResponse>;

    async fn tail(
        &self,
        request: Request<TailRequest>,
    ) -> Result<Response<Self::TailStream>, Status> {
        let events = tail(self.ctx.clone(), request.into_inner());
        let stream = ReceiverStream::new(events).map(|event| {
            event
                .map(|event| TailResponse { event: Some(event) })
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_handlers(
        &self,
        _request: Request<ListHandlersRequest>,
    ) -> Result<Response<ListHandlersResponse>, Status> {
        let handlers = handlers::list(&self.ctx).await?;
        Ok(Response::new(ListHandlersResponse { handlers }))
    }

    async fn pause_handler(
        &self,
        request: Request<PauseHandlerRequest>,
    ) -> Result<Response<PauseHandlerResponse>, Status> {
        let r = request.into_inner();
        let handler = handlers::pause(&self.ctx, &r.name, pause_for(r.for_ms)).await?;
        Ok(Response::new(PauseHandlerResponse {
            handler: Some(handler),
        }))
    }

    async fn resume_handler(
        &self,
        request: Request<ResumeHandlerRequest>,
    ) -> Result<Response<ResumeHandlerResponse>, Status> {
        let handler = handlers::resume(&self.ctx, &request.into_inner().name).await?;
        Ok(Response::new(ResumeHandlerResponse {
            handler: Some(handler),
        }))
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        let (records, next_page_token) = audit::list(&self.ctx, &request.into_inner()).await?;
        Ok(Response::new(ListAuditResponse {
            records,
            next_page_token,
        }))
    }
}
