//! The gateway's answers: JSON bodies only, never an internal detail.

use serde::Serialize;
use volo_http::{
    body::Body,
    http::{
        HeaderValue, StatusCode,
        header::{ALLOW, CONTENT_TYPE, RETRY_AFTER},
    },
    response::Response,
};

use rpc::music::base::ErrCode;

use crate::limits::Limited;

/// An error code as the envelope carries it. Codes come from the IDL (`ErrCode`), nowhere else.
pub fn code(code: ErrCode) -> i64 {
    i64::from(code.inner())
}

/// A response with a JSON body already encoded.
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// `{"error": message}` with `status`: the request itself was wrong.
pub fn error(status: StatusCode, message: &str) -> Response {
    #[derive(Serialize)]
    struct Error<'a> {
        error: &'a str,
    }
    json_bytes(status, encode(&Error { error: message }))
}

/// `{"code", "message", "data"}` with HTTP 200 (or `status`).
pub fn envelope<D: Serialize>(status: StatusCode, code: i64, message: &str, data: D) -> Response {
    #[derive(Serialize)]
    struct Envelope<'a, D> {
        code: i64,
        message: &'a str,
        data: D,
    }
    json_bytes(
        status,
        encode(&Envelope {
            code,
            message,
            data,
        }),
    )
}

/// 10001 with a generic message: the detail is in the log, under the request id.
pub fn service_unavailable() -> Response {
    envelope(
        StatusCode::OK,
        code(ErrCode::SERVICE_ERR),
        "service unavailable",
        (),
    )
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own structs of strings and numbers: encoding cannot fail, but never panic on it.
    serde_json::to_vec(value).unwrap_or_else(|_| br#"{"error":"internal error"}"#.to_vec())
}

pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route")
}

/// 405 with the route's methods in `Allow` (RFC 9110 requires it).
pub fn method_not_allowed(allow: HeaderValue) -> Response {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    );
    resp.headers_mut().insert(ALLOW, allow);
    resp
}

/// 429 with `Retry-After` in whole seconds.
pub fn too_many_requests(limited: &Limited) -> Response {
    let mut resp = error(StatusCode::TOO_MANY_REQUESTS, limited.what);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(limited.retry_after_secs()));
    resp
}

/// 503 with `Retry-After`: refused by load shedding, before any work was done.
pub fn overloaded() -> Response {
    let mut resp = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the gateway is overloaded; try again shortly",
    );
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}
