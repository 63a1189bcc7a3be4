//! Request bodies that trickle in are cut off: a body must bring at least `MIN_BYTES` in every
//! `WINDOW` (about 100 bytes a second: any phone on a train does better), or the request fails
//! and its connection and task go. Without it, a client sending one byte every two seconds held
//! a connection and a task for as long as it liked.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

pub const WINDOW: Duration = Duration::from_secs(10);
pub const MIN_BYTES: usize = 1024;

/// A body that fails once a window passes with less than its minimum received.
pub struct MinRate {
    inner: Body,
    received: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl MinRate {
    pub fn new(inner: Body) -> Self {
        Self {
            inner,
            received: 0,
            deadline: Box::pin(tokio::time::sleep(WINDOW)),
        }
    }

    /// At a window's end: too little came, or a new window starts.
    fn window_passed(&mut self) -> Result<(), axum::Error> {
        if self.received < MIN_BYTES {
            return Err(axum::Error::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body arrives too slowly",
            )));
        }
        self.received = 0;
        self.deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + WINDOW);
        Ok(())
    }
}

impl http_body::Body for MinRate {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.deadline.is_elapsed()
            && let Err(err) = this.window_passed()
        {
            return Poll::Ready(Some(Err(err)));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                // Nothing yet: wake at the window's end to judge it.
                if this.deadline.as_mut().poll(cx).is_ready() {
                    if let Err(err) = this.window_passed() {
                        return Poll::Ready(Some(Err(err)));
                    }
                    let _ = this.deadline.as_mut().poll(cx);
                }
                Poll::Pending
            }
            done => done,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: every request body is held to the minimum rate.
pub async fn middleware(request: Request, next: Next) -> Response {
    next.run(request.map(|body| Body::new(MinRate::new(body))))
        .await
}
