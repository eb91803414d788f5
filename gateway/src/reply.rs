//! The JSON bodies of the gateway's answers; [`crate::rejection`] says which refusal gets which.

use serde::Serialize;
use volo_http::{
    body::Body,
    http::{HeaderValue, StatusCode, header::CONTENT_TYPE},
    response::Response,
};

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

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own structs of strings and numbers: encoding cannot fail, but never panic on it.
    serde_json::to_vec(value).unwrap_or_else(|_| br#"{"error":"internal error"}"#.to_vec())
}
