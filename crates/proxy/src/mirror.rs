//! Request bodies for mirrors (Envoy's shadowing): each mirror gets a copy of the downstream body as
//! it streams to the primary, so a mirror holds no request back and needs no buffering of whole
//! bodies. A mirror never slows the primary: one that falls more than a buffer limit behind is cut
//! off (its request is reset, as Envoy resets a shadow stream that overflows), and one that ends or
//! fails early only stops getting copies.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as _, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::upstream::{Body, BoxError};

/// What the tee and one mirror's body share.
#[derive(Debug, Default)]
struct Copy {
    /// Bytes sent to the mirror's body and not yet read by it.
    queued: AtomicUsize,
    /// The whole body was copied: a closed channel is the end, not a cut.
    complete: AtomicBool,
}

/// The primary's view of the downstream body: passes every frame on, and a copy of it to each
/// mirror still keeping up.
#[derive(Debug)]
pub struct Tee {
    source: Body,
    mirrors: Vec<(mpsc::UnboundedSender<Frame<Bytes>>, Arc<Copy>)>,
    /// How far (in bytes) a mirror may fall behind before it is cut off.
    limit: usize,
}

/// One mirror's copy of the request body.
#[derive(Debug)]
pub struct MirrorBody {
    frames: mpsc::UnboundedReceiver<Frame<Bytes>>,
    copy: Arc<Copy>,
    hint: SizeHint,
}

/// Splits `source` into the primary's body and `mirrors` copies, each allowed to fall `limit`
/// bytes behind.
pub fn tee(source: Body, mirrors: usize, limit: usize) -> (Tee, Vec<MirrorBody>) {
    let hint = source.size_hint();
    let (senders, bodies) = (0..mirrors)
        .map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            let copy = Arc::new(Copy::default());
            let body = MirrorBody {
                frames: rx,
                copy: copy.clone(),
                hint,
            };
            ((tx, copy), body)
        })
        .unzip();
    (
        Tee {
            source,
            mirrors: senders,
            limit,
        },
        bodies,
    )
}

impl Tee {
    fn copy(&mut self, frame: &Frame<Bytes>) {
        let len = frame.data_ref().map_or(0, Bytes::len);
        let limit = self.limit;
        self.mirrors.retain(|(tx, copy)| {
            // Dropping the sender without `complete` cuts the mirror's body short.
            copy.queued.fetch_add(len, Ordering::Relaxed) + len <= limit
                && tx.send(clone_frame(frame)).is_ok()
        });
    }

    fn finish(&mut self) {
        for (_, copy) in self.mirrors.drain(..) {
            copy.complete.store(true, Ordering::Release);
        }
    }
}

fn clone_frame(frame: &Frame<Bytes>) -> Frame<Bytes> {
    match (frame.data_ref(), frame.trailers_ref()) {
        (Some(data), _) => Frame::data(data.clone()),
        (None, Some(trailers)) => Frame::trailers(trailers.clone()),
        (None, None) => Frame::data(Bytes::new()),
    }
}

impl hyper::body::Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.source).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.copy(frame);
                if this.source.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None) => this.finish(),
            // The downstream body failed: the mirrors' copies are cut (their senders drop with
            // the tee, not complete).
            Poll::Ready(Some(Err(_))) => this.mirrors.clear(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.source.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.source.size_hint()
    }
}

impl hyper::body::Body for MirrorBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.frames.poll_recv(cx) {
            Poll::Ready(Some(frame)) => {
                let len = frame.data_ref().map_or(0, Bytes::len);
                self.copy.queued.fetch_sub(len, Ordering::Relaxed);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) if self.copy.complete.load(Ordering::Acquire) => Poll::Ready(None),
            Poll::Ready(None) => Poll::Ready(Some(Err(
                "the mirror fell behind or the request body was cut short".into(),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::VecDeque;

    use super::*;
    use http_body_util::BodyExt;

    /// A downstream body of the given chunks (or errors), all ready at once.
    struct Chunks(VecDeque<Result<&'static [u8], BoxError>>);

    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(
                self.0
                    .pop_front()
                    .map(|c| c.map(|b| Frame::data(Bytes::from_static(b)))),
            )
        }
    }

    fn source(chunks: Vec<Result<&'static [u8], BoxError>>) -> Body {
        Chunks(chunks.into()).boxed()
    }

    async fn collect(
        body: impl hyper::body::Body<Data = Bytes, Error = BoxError>,
    ) -> Result<Vec<u8>, String> {
        body.collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn every_mirror_gets_the_whole_body() {
        let (primary, mirrors) = tee(source(vec![Ok(b"ab"), Ok(b"cd")]), 2, 1024);
        assert_eq!(collect(primary).await.unwrap(), b"abcd");
        for m in mirrors {
            assert_eq!(collect(m).await.unwrap(), b"abcd");
        }
    }

    #[tokio::test]
    async fn a_mirror_too_far_behind_is_cut_and_the_primary_goes_on() {
        let (primary, mut mirrors) = tee(source(vec![Ok(b"aaaa"), Ok(b"bbbb"), Ok(b"cc")]), 1, 6);
        // Nothing reads the mirror while the primary reads all: after 8 bytes it is 2 over.
        assert_eq!(collect(primary).await.unwrap(), b"aaaabbbbcc");
        let cut = collect(mirrors.remove(0)).await;
        assert!(cut.is_err(), "{cut:?}");
    }

    #[tokio::test]
    async fn a_failed_downstream_body_fails_the_mirrors() {
        let (primary, mut mirrors) = tee(source(vec![Ok(b"aa"), Err("reset".into())]), 1, 1024);
        assert!(collect(primary).await.is_err());
        assert!(collect(mirrors.remove(0)).await.is_err());
    }

    #[tokio::test]
    async fn a_primary_that_stops_reading_cuts_the_mirror() {
        let (primary, mut mirrors) = tee(source(vec![Ok(b"aa"), Ok(b"bb")]), 1, 1024);
        drop(primary);
        assert!(collect(mirrors.remove(0)).await.is_err());
    }
}
