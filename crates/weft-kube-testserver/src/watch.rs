//! `GET /api/v1/nodes?watch=true`: a chunked stream of
//! `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":…}` lines.
//!
//! Follows "API Concepts → Efficient detection of changes" and "Watch
//! bookmarks" (<https://kubernetes.io/docs/reference/using-api/api-concepts/>):
//! - `resourceVersion=N` sends every change after N; unset or `0` first
//!   sends an ADDED for every existing node.
//! - A version older than the kept history: a 200 whose only event is an
//!   ERROR carrying a 410 `Expired` Status (the watch cache's answer), or
//!   an HTTP 410 Status (`ServerOptions::gone_as_http_status`).
//! - `allowWatchBookmarks=true`: BOOKMARK events (only
//!   `metadata.resourceVersion` set) while idle and before closing.
//! - `timeoutSeconds`: the server ends the stream after that long.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use crate::api::{error_response, param};
use crate::server::Shared;
use crate::state::{Line, WatchStart, event_line};

struct Stream {
    shared: Arc<Shared>,
    start: WatchStart,
    deadline: Instant,
    bookmarks: Option<tokio::time::Interval>,
    closed: bool,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.shared.lock().end_watch(self.start.id);
    }
}

pub(crate) fn serve(shared: Arc<Shared>, q: &[(String, String)]) -> Response {
    let (start, interval, cap, http_gone) = {
        let mut state = shared.lock();
        let started = state.start_watch(param(q, "resourceVersion"));
        (
            started,
            state.opts.bookmark_interval,
            state.opts.max_watch_timeout,
            state.opts.gone_as_http_status,
        )
    };
    let start = match start {
        Ok(s) => s,
        Err(e) if e.code == 410 && !http_gone => {
            let line = event_line("ERROR", &e.to_status());
            return chunked(Body::from(line));
        }
        Err(e) => return error_response(&e),
    };
    let timeout = param(q, "timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(cap, |t| Duration::from_secs(t).min(cap));
    let bookmarks = matches!(param(q, "allowWatchBookmarks"), Some("true" | "1")).then(|| {
        let mut i = tokio::time::interval_at(Instant::now() + interval, interval);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let mut stream = Stream {
        shared,
        start,
        deadline: Instant::now() + timeout,
        bookmarks,
        closed: false,
    };
    let backlog = std::mem::take(&mut stream.start.backlog);
    let head = futures::stream::iter(
        backlog
            .into_iter()
            .map(|l| Ok::<Bytes, std::convert::Infallible>(Bytes::from(l))),
    );
    let tail = futures::stream::unfold(stream, |mut s| async move {
        let line = s.next_line().await?;
        Some((Ok(Bytes::from(line)), s))
    });
    use futures::StreamExt as _;
    chunked(Body::from_stream(head.chain(tail)))
}

fn chunked(body: Body) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

impl Stream {
    /// The next line to send; `None` ends the response.
    async fn next_line(&mut self) -> Option<Line> {
        if self.closed {
            return None;
        }
        loop {
            let tick = async {
                match &mut self.bookmarks {
                    Some(i) => {
                        i.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                line = self.start.rx.recv() => return line,
                () = tokio::time::sleep_until(self.deadline) => {
                    self.closed = true;
                    // A last bookmark lets the client resume exactly here.
                    if self.bookmarks.is_some() {
                        let mut state = self.shared.lock();
                        state.bookmark(self.start.id);
                    }
                    // Flush what is queued (the bookmark last), then end.
                    let mut rest = Vec::new();
                    while let Ok(line) = self.start.rx.try_recv() {
                        rest.extend_from_slice(&line);
                    }
                    return (!rest.is_empty()).then_some(rest);
                }
                () = tick => {
                    self.shared.lock().bookmark(self.start.id);
                }
            }
        }
    }
}
