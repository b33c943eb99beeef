//! A request body that streams upstream as it arrives and keeps a copy, up to a limit, so a retry
//! can send it again: what Envoy's router does with its retry buffer. Each attempt replays what
//! was kept, then goes on reading the downstream body; past the limit the copy is dropped and the
//! request can no longer be retried (it still streams). A retry policy never holds a request back
//! until its body ends, so gRPC streams and long uploads flow through routes that have one.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body as _, Frame, SizeHint};

use crate::upstream::{Body, BoxError};

/// The downstream body and what was read of it, shared by the attempts.
#[derive(Debug)]
struct Shared {
    source: Body,
    /// The data frames read so far (none once over the limit).
    kept: Vec<Bytes>,
    kept_len: usize,
    limit: usize,
    /// More was read than `limit`: the body cannot be replayed.
    overflowed: bool,
    trailers: Option<HeaderMap>,
    /// The source ended (after `kept` and `trailers`).
    ended: bool,
    /// The newest attempt: only its body may read; an older one (a failed attempt still being
    /// sent) gets an error, which cancels it.
    generation: u64,
}

/// The recorded body; [`Replay::attempt`] makes the body of one attempt.
#[derive(Debug, Clone)]
pub struct Replay(Arc<Mutex<Shared>>);

impl Replay {
    /// Keeps at most `limit` bytes of `source`.
    pub fn new(source: Body, limit: usize) -> Replay {
        let ended = source.is_end_stream();
        Replay(Arc::new(Mutex::new(Shared {
            source,
            kept: Vec::new(),
            kept_len: 0,
            limit,
            overflowed: false,
            trailers: None,
            ended,
            generation: 0,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether another attempt can send the whole body again (nothing was dropped).
    pub fn replayable(&self) -> bool {
        !self.lock().overflowed
    }

    /// The body of the next attempt: what was kept, then the rest as it arrives. One attempt at a
    /// time reads the downstream body (a failed attempt's body is dropped before the next starts).
    pub fn attempt(&self) -> AttemptBody {
        let mut shared = self.lock();
        shared.generation += 1;
        AttemptBody {
            replay: self.clone(),
            generation: shared.generation,
            next: 0,
            trailers_sent: false,
        }
    }
}

/// One attempt's request body.
#[derive(Debug)]
pub struct AttemptBody {
    replay: Replay,
    generation: u64,
    /// The index in `kept` of the next frame to send.
    next: usize,
    trailers_sent: bool,
}

impl hyper::body::Body for AttemptBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut shared = this.replay.lock();
        if shared.generation != this.generation {
            return Poll::Ready(Some(Err("the request was retried".into())));
        }
        if let Some(data) = shared.kept.get(this.next) {
            this.next += 1;
            return Poll::Ready(Some(Ok(Frame::data(data.clone()))));
        }
        if shared.ended {
            if !this.trailers_sent
                && let Some(t) = &shared.trailers
            {
                this.trailers_sent = true;
                return Poll::Ready(Some(Ok(Frame::trailers(t.clone()))));
            }
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut shared.source).poll_frame(cx);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                shared.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    if !shared.overflowed {
                        shared.kept_len += data.len();
                        if shared.kept_len > shared.limit {
                            shared.overflowed = true;
                            shared.kept = Vec::new();
                            this.next = 0;
                        } else {
                            shared.kept.push(data.clone());
                            this.next += 1;
                        }
                    }
                    if shared.source.is_end_stream() {
                        shared.ended = true;
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => {
                        shared.trailers = Some(trailers.clone());
                        shared.ended = true;
                        this.trailers_sent = true;
                        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                    }
                    // Neither data nor trailers: nothing to forward.
                    Err(_) => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                },
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        let shared = self.replay.lock();
        shared.ended
            && self.next >= shared.kept.len()
            && (self.trailers_sent || shared.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        let shared = self.replay.lock();
        let sent: usize = shared.kept[..self.next.min(shared.kept.len())]
            .iter()
            .map(Bytes::len)
            .sum();
        let source = shared.source.size_hint();
        if shared.overflowed {
            // Only the source's rest is known.
            return source;
        }
        let rest = (shared.kept_len - sent) as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(source.lower() + rest);
        if let Some(upper) = source.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}
