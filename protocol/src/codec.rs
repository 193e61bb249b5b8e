//! The client side of a Kafka connection as bytes, with no I/O: encoding a
//! request frame (size prefix, `RequestHeader` at the header version its
//! API and version call for, body) and decoding a response frame
//! (`ResponseHeader` at the matching header version, correlation id, body)
//! for any `kafka_protocol` [`Request`] type. The Rust client (tokio) and
//! the broker's outbound peer connections (compio) both frame through this,
//! so there is one wire client, whatever runtime moves the bytes.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use crate::frame::SIZE_PREFIX_LEN;

/// A request that cannot be encoded or a response that cannot be decoded.
/// The messages name the API and version, as callers report them as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} header: {reason}")]
    RequestHeader { api: ApiKey, reason: String },
    #[error("{api:?} v{version}: {reason}")]
    Request {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("{api:?} response header: {reason}")]
    ResponseHeader { api: ApiKey, reason: String },
    #[error("{api:?} v{version} response: {reason}")]
    Response {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("{api:?} response for correlation id {got}, expected {expected}")]
    CorrelationMismatch {
        api: ApiKey,
        expected: i32,
        got: i32,
    },
}

/// The API key of request type `R`.
pub fn api_key_of<R: Request>() -> Result<ApiKey, CodecError> {
    ApiKey::try_from(R::KEY).map_err(|_| CodecError::UnknownApiKey(R::KEY))
}

/// Encodes `req` as one whole frame: the 4-byte size prefix, the request
/// header (api key, `version`, `correlation_id`, `client_id`) at the header
/// version `R` uses for `version`, then the body.
pub fn encode_request<R: Request>(
    req: &R,
    version: i16,
    correlation_id: i32,
    client_id: Option<StrBytes>,
) -> Result<Bytes, CodecError> {
    let api = api_key_of::<R>()?;
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = client_id;
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    header
        .encode(&mut buf, R::header_version(version))
        .map_err(|e| CodecError::RequestHeader {
            api,
            reason: e.to_string(),
        })?;
    req.encode(&mut buf, version)
        .map_err(|e| CodecError::Request {
            api,
            version,
            reason: e.to_string(),
        })?;
    let len = (buf.len() - SIZE_PREFIX_LEN) as i32;
    buf[..SIZE_PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// The correlation id a response frame body (after the size prefix) starts
/// with, read without consuming it, so a reader can route the frame to its
/// request before decoding it; `None` for a body shorter than that.
pub fn response_correlation_id(body: &[u8]) -> Option<i32> {
    body.first_chunk::<4>().map(|b| i32::from_be_bytes(*b))
}

/// Decodes a response frame body (after the size prefix) to `R`'s response
/// at `version`: the response header at the header version `R::Response`
/// uses, then the body. Returns the header's correlation id with it.
pub fn decode_response<R: Request>(
    mut body: Bytes,
    version: i16,
) -> Result<(i32, R::Response), CodecError> {
    let api = api_key_of::<R>()?;
    let header =
        ResponseHeader::decode(&mut body, R::Response::header_version(version)).map_err(|e| {
            CodecError::ResponseHeader {
                api,
                reason: e.to_string(),
            }
        })?;
    let resp = R::Response::decode(&mut body, version).map_err(|e| CodecError::Response {
        api,
        version,
        reason: e.to_string(),
    })?;
    Ok((header.correlation_id, resp))
}

/// [`decode_response`], also checking the correlation id is `expected`
/// (for connections with one request in flight).
pub fn decode_response_to<R: Request>(
    body: Bytes,
    version: i16,
    expected: i32,
) -> Result<R::Response, CodecError> {
    let (got, resp) = decode_response::<R>(body, version)?;
    if got != expected {
        return Err(CodecError::CorrelationMismatch {
            api: api_key_of::<R>()?,
            expected,
            got,
        });
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{
        ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest,
        TopicName,
    };
    use kafka_protocol::protocol::Message;

    /// What a server makes of a request frame: its header and body.
    fn server_decode<R: Request>(frame: &Bytes) -> (RequestHeader, R) {
        let len = i32::from_be_bytes(frame[..4].try_into().expect("prefix")) as usize;
        assert_eq!(len, frame.len() - 4, "size prefix counts the rest");
        let mut body = frame.slice(4..);
        let version = i16::from_be_bytes([body[2], body[3]]);
        let api = ApiKey::try_from(i16::from_be_bytes([body[0], body[1]])).expect("api");
        let header =
            RequestHeader::decode(&mut body, api.request_header_version(version)).expect("header");
        (header, R::decode(&mut body, version).expect("body"))
    }

    /// A response frame body as a server writes it.
    fn server_encode<R: Request>(resp: &R::Response, version: i16, correlation_id: i32) -> Bytes {
        let mut header = ResponseHeader::default();
        header.correlation_id = correlation_id;
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, R::Response::header_version(version))
            .expect("header");
        resp.encode(&mut buf, version).expect("body");
        buf.freeze()
    }

    #[test]
    fn requests_round_trip_at_every_version() {
        for version in FetchRequest::VERSIONS.min..=FetchRequest::VERSIONS.max {
            let mut req = FetchRequest::default();
            req.max_wait_ms = 500;
            req.min_bytes = 1;
            let mut p = FetchPartition::default();
            p.partition = 3;
            p.fetch_offset = 42;
            let mut t = FetchTopic::default();
            if version < 13 {
                t.topic = TopicName(StrBytes::from_static_str("t"));
            }
            t.partitions.push(p);
            req.topics.push(t);
            let frame = encode_request(&req, version, 99, Some(StrBytes::from_static_str("me")))
                .expect("encode");
            let (header, back) = server_decode::<FetchRequest>(&frame);
            assert_eq!(header.request_api_key, ApiKey::Fetch as i16);
            assert_eq!(header.request_api_version, version);
            assert_eq!(header.correlation_id, 99);
            assert_eq!(header.client_id.as_deref(), Some("me"));
            assert_eq!(back, req, "Fetch v{version}");
        }
        // Flexible and non-flexible header versions alike.
        for version in [0, 9, 12] {
            let req = MetadataRequest::default();
            let frame = encode_request(&req, version, 1, None).expect("encode");
            let (header, back) = server_decode::<MetadataRequest>(&frame);
            assert_eq!(header.client_id, None);
            assert_eq!(back, req);
        }
    }

    #[test]
    fn responses_decode_with_their_header_version() {
        for version in 0..=3 {
            let mut resp = ApiVersionsResponse::default();
            resp.throttle_time_ms = if version >= 1 { 5 } else { 0 };
            // ApiVersions answers always use header v0 (KIP-511).
            let body = server_encode::<ApiVersionsRequest>(&resp, version, 17);
            assert_eq!(response_correlation_id(&body), Some(17));
            let (cid, back) =
                decode_response::<ApiVersionsRequest>(body.clone(), version).expect("decode");
            assert_eq!((cid, back), (17, resp));
            assert!(decode_response_to::<ApiVersionsRequest>(body.clone(), version, 17).is_ok());
            assert_eq!(
                decode_response_to::<ApiVersionsRequest>(body, version, 18),
                Err(CodecError::CorrelationMismatch {
                    api: ApiKey::ApiVersions,
                    expected: 18,
                    got: 17
                })
            );
        }
        for version in [4, 12, 16] {
            let mut resp = FetchResponse::default();
            resp.session_id = 0;
            resp.throttle_time_ms = 3;
            let body = server_encode::<FetchRequest>(&resp, version, -5);
            let (cid, back) = decode_response::<FetchRequest>(body, version).expect("decode");
            assert_eq!((cid, back), (-5, resp));
        }
    }

    #[test]
    fn damaged_responses_are_errors_not_panics() {
        assert_eq!(response_correlation_id(&[0, 0, 1]), None);
        let resp = FetchResponse::default();
        let body = server_encode::<FetchRequest>(&resp, 12, 1);
        for cut in 0..body.len() {
            let err = decode_response::<FetchRequest>(body.slice(..cut), 12)
                .expect_err("truncated frame");
            let text = err.to_string();
            assert!(text.starts_with("Fetch"), "{text}");
        }
    }
}
