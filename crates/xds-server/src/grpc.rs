//! The two ADS methods served over gRPC without tonic's generated server.
//!
//! tonic's server encodes a stream's responses into one buffer that keeps the capacity of the largest
//! response it ever encoded for as long as the stream lives: with a full CDS or EDS of thousands of
//! resources that is megabytes per connected proxy, for nothing. Here each response is encoded into
//! a buffer of exactly its size (gRPC's 5-byte frame header, then the message), handed to the
//! connection and freed once sent. Requests likewise ([`Requests`]): tonic's decoder kept a buffer
//! the size of the largest request (a subscription to thousands of names) per stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body as _, Frame};
use prost::Message;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;
use tonic::transport::server::TcpConnectInfo;

use crate::delta::DeltaStream;
use crate::protocol::AdsStream;
use crate::response::CarriesResources;
use crate::response::Prepared;
use crate::server::AdsServer;
use crate::sotw::SotwStream;

/// The gRPC service name of ADS.
pub const SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// ADS (state of the world and delta) as a tower service, for a tonic server's router.
#[derive(Debug, Clone)]
pub struct AdsService {
    server: AdsServer,
}

impl AdsService {
    pub(crate) fn new(server: AdsServer) -> AdsService {
        AdsService { server }
    }

    fn stream<P, M>(&self, request: http::Request<Body>) -> http::Response<Body>
    where
        P: AdsStream<Response = M>,
        M: CarriesResources + Send + 'static,
    {
        let remote = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr);
        let max = self.server.max_message_size();
        let incoming = Requests::new(request.into_body(), max);
        let responses = self.server.open::<P>(incoming, remote);
        grpc_response(Body::new(ResponseBody::<M> {
            responses,
            chunks: VecDeque::new(),
            max,
            done: false,
        }))
    }
}

impl NamedService for AdsService {
    const NAME: &'static str = SERVICE;
}

impl Service<http::Request<Body>> for AdsService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let response = match request.uri().path() {
            SOTW_PATH => self.stream::<SotwStream, _>(request),
            DELTA_PATH => self.stream::<DeltaStream, _>(request),
            other => Status::unimplemented(format!("no such method: {other}")).into_http(),
        };
        ready(Ok(response))
    }
}

fn grpc_response(body: Body) -> http::Response<Body> {
    let mut response = http::Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// A stream's requests, decoded from their gRPC frames one at a time. The buffer holds what has
/// arrived of the next message and is let go once that is decoded, so an idle stream holds none.
pub(crate) struct Requests<T> {
    body: Body,
    buf: BytesMut,
    max: usize,
    ended: bool,
    message: PhantomData<fn() -> T>,
}

impl<T: Message + Default> Requests<T> {
    pub(crate) fn new(body: Body, max: usize) -> Requests<T> {
        Requests {
            body,
            buf: BytesMut::new(),
            max,
            ended: false,
            message: PhantomData,
        }
    }

    /// The next request; `None` when the client ended the stream. Cancel-safe: what arrived is in
    /// `self`, not in the future.
    pub(crate) async fn message(&mut self) -> Result<Option<T>, Status> {
        loop {
            if let Some(request) = self.decode_next()? {
                return Ok(Some(request));
            }
            if self.ended {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Status::invalid_argument(
                        "the ADS request stream ended inside a message",
                    ))
                };
            }
            let frame = std::future::poll_fn(|cx| Pin::new(&mut self.body).poll_frame(cx)).await;
            match frame {
                None => self.ended = true,
                // Trailers end a request stream with nothing to read in them.
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data[..]);
                    }
                }
                Some(Err(status)) => return Err(status),
            }
        }
    }

    fn decode_next(&mut self) -> Result<Option<T>, Status> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err(Status::unimplemented(
                "compressed ADS requests are not supported; send them uncompressed",
            ));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.max {
            return Err(Status::resource_exhausted(format!(
                "an ADS request of {len} bytes is over the {}-byte message limit",
                self.max
            )));
        }
        if self.buf.len() - 5 < len {
            self.buf.reserve(5 + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(5);
        let message = self.buf.split_to(len);
        if self.buf.is_empty() {
            // Nothing of the next message yet: drop the buffer with this message.
            self.buf = BytesMut::new();
        }
        T::decode(message)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("undecodable ADS request: {e}")))
    }
}

/// A stream's responses as gRPC frames, then the trailers: `grpc-status: 0` when the stream's task
/// ended it, or the status it ended with. A response's frame goes out in the chunks
/// [`Prepared::frames`] makes, large resources shared with the snapshot.
struct ResponseBody<M> {
    responses: mpsc::Receiver<Result<Prepared<M>, Status>>,
    /// What is left of the frame being sent.
    chunks: VecDeque<Bytes>,
    max: usize,
    done: bool,
}

fn trailers(status: &Status) -> Frame<Bytes> {
    let mut headers = http::HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        // A message that cannot be a header value: the stream still ends with its code.
        headers = http::HeaderMap::new();
        let _ = Status::new(status.code(), "").add_header(&mut headers);
    }
    Frame::trailers(headers)
}

impl<M: Message + Send + 'static> http_body::Body for ResponseBody<M> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let next = match self.responses.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(next) => next,
        };
        let max = self.max;
        let frame = match next.map(|r| r.and_then(|m| m.frames(max))) {
            Some(Ok(chunks)) => {
                self.chunks.extend(chunks);
                match self.chunks.pop_front() {
                    Some(first) => Frame::data(first),
                    None => Frame::data(Bytes::new()),
                }
            }
            Some(Err(status)) => {
                self.done = true;
                trailers(&status)
            }
            None => {
                self.done = true;
                trailers(&Status::ok(""))
            }
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.chunks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use xds_api::pb::envoy::service::discovery::v3::DiscoveryRequest;

    /// One gRPC message frame, as a client sends it: uncompressed flag, big-endian length, the
    /// message.
    fn frame<M: Message>(message: &M) -> Bytes {
        let mut buf = Vec::with_capacity(5 + message.encoded_len());
        buf.put_u8(0);
        buf.put_u32(u32::try_from(message.encoded_len()).expect("small"));
        message.encode(&mut buf).expect("a Vec grows");
        Bytes::from(buf)
    }

    fn requests_from(chunks: Vec<Bytes>, max: usize) -> Requests<DiscoveryRequest> {
        let frames = chunks.into_iter().map(|c| Ok::<_, Status>(Frame::data(c)));
        let body = http_body_util::StreamBody::new(tokio_stream::iter(frames));
        Requests::new(Body::new(body), max)
    }

    fn request(n: usize) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: "t".into(),
            resource_names: (0..n).map(|i| format!("name-{i}")).collect(),
            ..Default::default()
        }
    }

    /// Messages split across frames and frames holding several messages decode the same, and
    /// the buffer is let go between messages.
    #[tokio::test]
    async fn requests_are_decoded_across_and_within_frames() {
        let (a, b) = (request(1000), request(2));
        let mut wire = Vec::new();
        for m in [&a, &b] {
            wire.extend_from_slice(&frame(m));
        }
        let wire = Bytes::from(wire);
        for cut in [1, 4, 5, 100, wire.len() - 1] {
            let mut requests = requests_from(vec![wire.slice(..cut), wire.slice(cut..)], 1 << 20);
            assert_eq!(requests.message().await.expect("decodes"), Some(a.clone()));
            assert_eq!(requests.message().await.expect("decodes"), Some(b.clone()));
            assert_eq!(requests.buf.capacity(), 0, "cut at {cut}");
            assert_eq!(requests.message().await.expect("ends"), None);
        }
    }

    #[tokio::test]
    async fn oversized_truncated_and_compressed_requests_are_refused() {
        let whole = frame(&request(10));
        let len = whole.len() - 5;
        let e = requests_from(vec![whole.clone()], 10)
            .message()
            .await
            .expect_err("over the limit");
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            e.message(),
            format!("an ADS request of {len} bytes is over the 10-byte message limit")
        );
        let e = requests_from(vec![whole.slice(..whole.len() - 1)], 1 << 20)
            .message()
            .await
            .expect_err("truncated");
        assert_eq!(e.message(), "the ADS request stream ended inside a message");
        let mut compressed = whole.to_vec();
        compressed[0] = 1;
        let e = requests_from(vec![Bytes::from(compressed)], 1 << 20)
            .message()
            .await
            .expect_err("compressed");
        assert_eq!(e.code(), tonic::Code::Unimplemented);
    }
}
