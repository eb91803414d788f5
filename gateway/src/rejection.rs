//! Every answer the gateway gives instead of the service's: one variant per reason, turned into
//! a response in one place, so that each status, code and message is written once. Messages
//! say what was wrong with the request and never carry an internal detail (that goes to the
//! log, under the request id).

use volo_http::{
    http::{
        HeaderValue, StatusCode,
        header::{ALLOW, RETRY_AFTER},
    },
    response::Response,
    server::IntoResponse,
};

use rpc::{music::base::ErrCode, runtime::Invalid};

use crate::{jwt::AuthError, limits::Limited, reply};

/// Why the gateway answered a request itself.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// 414: the URI (path and query) is longer than this many bytes.
    UriTooLong { limit: usize },
    /// 431: the header names and values add up to more than this many bytes.
    HeadersTooLarge { limit: usize },
    /// 429 with `Retry-After`: a rate limit.
    RateLimited(Limited),
    /// 503 with `Retry-After`: load shedding, before any work was done.
    Overloaded,
    /// 403: a browser request from another origin that `--cors-origins` does not allow.
    OriginNotAllowed,
    /// 404: no route has this path.
    NoRoute,
    /// 405: the path has routes, for these methods only (`Allow`, as RFC 9110 requires).
    MethodNotAllowed(HeaderValue),
    /// 401 with AuthorizationFailed (10004) in the envelope: the route needs a valid bearer
    /// token.
    Unauthorized(AuthError),
    /// 415: the route reads a JSON body and the request does not declare one.
    NotJson,
    /// 413: the body is larger than this many bytes (declared or as received).
    BodyTooLarge { limit: usize },
    /// 400: the connection failed while the body was read.
    BodyUnreadable,
    /// 400: a field is missing, of the wrong type or breaks a rule; the message names it.
    Invalid(String),
    /// 200 with 10001 in the envelope: the service could not be called, or its answer could
    /// not be turned into one (logged where it happened).
    ServiceUnavailable,
    /// 504: the request took longer than the gateway's request timeout.
    Timeout,
    /// 500: a handler panicked (logged where it was caught).
    Internal,
}

impl Rejection {
    /// A binding or validation failure, whose message names the field.
    pub(crate) fn invalid(e: impl std::fmt::Display) -> Self {
        Self::Invalid(e.to_string())
    }
}

impl From<Limited> for Rejection {
    fn from(limited: Limited) -> Self {
        Self::RateLimited(limited)
    }
}

impl From<AuthError> for Rejection {
    fn from(e: AuthError) -> Self {
        Self::Unauthorized(e)
    }
}

impl From<Invalid> for Rejection {
    fn from(e: Invalid) -> Self {
        Self::invalid(e)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Self::UriTooLong { limit } => reply::error(
                StatusCode::URI_TOO_LONG,
                &format!("the URI is longer than {limit} bytes"),
            ),
            Self::HeadersTooLarge { limit } => reply::error(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                &format!("the request headers are larger than {limit} bytes"),
            ),
            Self::RateLimited(limited) => with_header(
                reply::error(StatusCode::TOO_MANY_REQUESTS, limited.what),
                RETRY_AFTER,
                HeaderValue::from(limited.retry_after_secs()),
            ),
            Self::Overloaded => with_header(
                reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the gateway is overloaded; try again shortly",
                ),
                RETRY_AFTER,
                HeaderValue::from_static("1"),
            ),
            Self::OriginNotAllowed => reply::error(
                StatusCode::FORBIDDEN,
                "requests from this origin are not allowed (CORS)",
            ),
            Self::NoRoute => reply::error(StatusCode::NOT_FOUND, "no such route"),
            Self::MethodNotAllowed(allow) => with_header(
                reply::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed on this route",
                ),
                ALLOW,
                allow,
            ),
            Self::Unauthorized(e) => reply::envelope(
                StatusCode::UNAUTHORIZED,
                ErrCode::AUTHORIZATION_FAILED.into(),
                &e.to_string(),
                (),
            ),
            Self::NotJson => reply::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the request body must be JSON (Content-Type: application/json)",
            ),
            Self::BodyTooLarge { limit } => reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is larger than {limit} bytes"),
            ),
            Self::BodyUnreadable => reply::error(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            ),
            Self::Invalid(message) => reply::error(StatusCode::BAD_REQUEST, &message),
            Self::ServiceUnavailable => reply::envelope(
                StatusCode::OK,
                ErrCode::SERVICE_ERR.into(),
                "service unavailable",
                (),
            ),
            Self::Timeout => reply::error(StatusCode::GATEWAY_TIMEOUT, "the request timed out"),
            Self::Internal => reply::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        }
    }
}

fn with_header(
    mut resp: Response,
    name: volo_http::http::HeaderName,
    value: HeaderValue,
) -> Response {
    resp.headers_mut().insert(name, value);
    resp
}
