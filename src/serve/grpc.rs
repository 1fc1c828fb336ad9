//! OTLP/gRPC: the TraceService of opentelemetry-proto, served by tonic.

use std::sync::Arc;

use augur_ingest::live::Encoding;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::bytes::{Buf, Bytes};
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;
use tonic::codec::{CompressionEncoding, DecodeBuf, EncodeBuf};
use tonic::codegen::{http, Body, BoxFuture, Context, Poll, Service, StdError};
use tonic::{Code, Request, Response, Status};

use super::live::{Live, Refusal};

/// How long a refused client is asked to wait before retrying.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The OTLP `TraceService`, taking each request's protobuf bytes as they came (after
/// decompression): the receiver decodes them with its own wire decoder, exactly as it does
/// OTLP/HTTP bodies and the log on replay. tonic's generated server would decode them with
/// prost first (allocating every id, name and attribute), re-encode them for the log, and refuse
/// a message prost cannot decode with `INTERNAL` before augur saw it.
#[derive(Clone)]
pub struct OtlpServer {
    pub live: Arc<Live>,
    /// The largest message accepted (after decompression): larger ones get `OUT_OF_RANGE`.
    pub max_message_bytes: usize,
}

/// The Export method's path.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl tonic::server::NamedService for OtlpServer {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<B> Service<http::Request<B>> for OtlpServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != EXPORT_PATH {
            return Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(Status::GRPC_STATUS, (Code::Unimplemented as i32).into());
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            });
        }
        let export = Export(Arc::clone(&self.live));
        let max = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(max);
            Ok(grpc.unary(export, req).await)
        })
    }
}

/// One Export call.
struct Export(Arc<Live>);

impl tonic::server::UnaryService<Bytes> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<Response<ExportTraceServiceResponse>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let live = Arc::clone(&self.0);
        Box::pin(async move {
            let body = request.into_inner();
            let answer =
                tokio::task::spawn_blocking(move || live.accept(&body, Encoding::Protobuf))
                    .await
                    .map_err(|e| Status::internal(format!("the request handler failed: {e}")))?;
            match answer {
                Ok(a) => Ok(Response::new(ExportTraceServiceResponse {
                    partial_success: (a.rejected > 0).then(|| ExportTracePartialSuccess {
                        rejected_spans: a.rejected as i64,
                        error_message: a.first_problem.unwrap_or_default(),
                    }),
                })),
                Err(Refusal::Invalid(m)) => Err(Status::invalid_argument(m)),
                Err(Refusal::Busy { queued, limit }) => Err(unavailable_with_retry(format!(
                    "augur is busy: {queued} spans queued (limit {limit}, --queue-spans); retry later"
                ))),
                Err(Refusal::Failed(m)) => Err(Status::internal(m)),
            }
        })
    }
}

/// Requests as their bytes, responses as protobuf.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding the response: {e}")))
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // The message's bytes as tonic holds them (no copy when they arrived in one piece).
        let n = buf.remaining();
        Ok(Some(buf.copy_to_bytes(n)))
    }
}

/// UNAVAILABLE with a `google.rpc.RetryInfo` detail, which OTLP exporters honour as the delay
/// before retrying.
pub fn unavailable_with_retry(message: String) -> Status {
    // google.protobuf.Duration { seconds = 1 }
    let mut duration = Vec::new();
    encode_key(1, WireType::Varint, &mut duration);
    encode_varint(RETRY_AFTER_SECS, &mut duration);
    // google.rpc.RetryInfo { retry_delay = 1 }
    let mut retry_info = Vec::new();
    encode_key(1, WireType::LengthDelimited, &mut retry_info);
    encode_varint(duration.len() as u64, &mut retry_info);
    retry_info.extend_from_slice(&duration);
    // google.protobuf.Any { type_url = 1, value = 2 }
    let type_url = b"type.googleapis.com/google.rpc.RetryInfo";
    let mut any = Vec::new();
    encode_key(1, WireType::LengthDelimited, &mut any);
    encode_varint(type_url.len() as u64, &mut any);
    any.extend_from_slice(type_url);
    encode_key(2, WireType::LengthDelimited, &mut any);
    encode_varint(retry_info.len() as u64, &mut any);
    any.extend_from_slice(&retry_info);
    // google.rpc.Status { code = 1, message = 2, details = 3 }
    let mut status = Vec::new();
    encode_key(1, WireType::Varint, &mut status);
    encode_varint(Code::Unavailable as u64, &mut status);
    encode_key(2, WireType::LengthDelimited, &mut status);
    encode_varint(message.len() as u64, &mut status);
    status.extend_from_slice(message.as_bytes());
    encode_key(3, WireType::LengthDelimited, &mut status);
    encode_varint(any.len() as u64, &mut status);
    status.extend_from_slice(&any);
    Status::with_details(Code::Unavailable, message, status.into())
}

/// Checks `authorization: Bearer TOKEN` when a token is set.
#[derive(Clone)]
pub struct Auth {
    pub token: Option<Arc<String>>,
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if super::bearer_matches(given, token) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "a bearer token is required (authorization: Bearer <token>)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a varint-prefixed field list just far enough to read the status details back.
    fn fields(mut b: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = prost::encoding::decode_varint(&mut b).unwrap();
            let value = match key & 7 {
                0 => prost::encoding::decode_varint(&mut b)
                    .unwrap()
                    .to_le_bytes()
                    .to_vec(),
                2 => {
                    let n = prost::encoding::decode_varint(&mut b).unwrap() as usize;
                    let (v, rest) = b.split_at(n);
                    b = rest;
                    v.to_vec()
                }
                other => panic!("wire type {other}"),
            };
            out.push((key >> 3, value));
        }
        out
    }

    #[test]
    fn refusals_carry_a_retry_delay_clients_can_read() {
        let s = unavailable_with_retry("busy".into());
        assert_eq!(s.code(), Code::Unavailable);
        // google.rpc.Status { code, message, details: [Any { type_url, value: RetryInfo }] }
        let status = fields(s.details());
        assert_eq!(status[0].0, 1);
        assert_eq!(status[0].1[0], Code::Unavailable as u8);
        assert_eq!((status[1].0, status[1].1.as_slice()), (2, &b"busy"[..]));
        let any = fields(&status[2].1);
        assert_eq!(any[0].1, b"type.googleapis.com/google.rpc.RetryInfo");
        let retry_info = fields(&any[1].1);
        let duration = fields(&retry_info[0].1);
        assert_eq!(
            (duration[0].0, duration[0].1[0]),
            (1, RETRY_AFTER_SECS as u8)
        );
    }
}
