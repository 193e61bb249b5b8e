//! ApiVersions (v0-v4): answers with the registry's ranges, so what is
//! advertised is exactly what is served. An unknown (newer) ApiVersions
//! version gets a v0 body with UNSUPPORTED_VERSION, as Kafka does, letting
//! the client fall back.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use sluice_protocol::ErrorCode;

use super::{advertised_apis, encode_frame, RequestContext, Response};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 4;

fn body(error: ErrorCode) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error.code();
    r.api_keys = advertised_apis()
        .map(|(k, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = *k as i16;
            v.min_version = *min;
            v.max_version = *max;
            v
        })
        .collect();
    r.finalized_features_epoch = -1;
    r
}

pub async fn handle(ctx: &RequestContext, _req: ApiVersionsRequest) -> Response {
    ctx.respond(&body(ErrorCode::None))
}

/// The v0 answer to an ApiVersions version we do not know.
pub fn unsupported_version_response(correlation_id: i32) -> Response {
    encode_frame(correlation_id, 0, &body(ErrorCode::UnsupportedVersion), 0)
}
