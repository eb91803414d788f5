//! CORS: which pages on other origins may call the API from a browser (the Fetch standard's
//! cross-origin protocol).
//!
//! A request whose `Origin` is another origin is served only when the origin is allowed
//! (`--cors-origins`), and its answer then says so (`Access-Control-Allow-Origin`); any other
//! origin gets 403 and no CORS header, so the request is not carried out for it and the browser
//! keeps the answer from the page. Requests without `Origin` (curl, services) and those of the
//! gateway's own pages (`/docs`) are not cross-origin. A preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is routed like any request: each path answers it with its
//! routes' methods and the headers they read (`routes::with_allow`), and this layer adds the
//! origin and `Access-Control-Max-Age`.

use std::{convert::Infallible, fmt, sync::Arc, time::Duration};

use volo::Service;
use volo_http::{
    context::ServerContext,
    http::{
        HeaderValue, Method,
        header::{
            ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN,
            ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD,
            HOST, ORIGIN, VARY,
        },
        uri::Authority,
    },
    request::Request,
    response::Response,
    server::IntoResponse as _,
};

use crate::rejection::Rejection;

/// The CORS flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CorsArgs {
    /// Origins whose pages may call the API from a browser: exact origins, comma-separated
    /// (`https://app.example.com,http://localhost:3000`), or `*` for any. Pages on other
    /// origins get 403. The gateway's own pages (/docs) need no entry.
    #[arg(long = "cors-origins", env = "CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub origins: Vec<AllowedOrigin>,
    /// Let those pages send the user's cookies and HTTP authentication
    /// (`Access-Control-Allow-Credentials`); refused with `*`. Bearer tokens do not need it.
    #[arg(long = "cors-allow-credentials", env = "CORS_ALLOW_CREDENTIALS")]
    pub allow_credentials: bool,
    /// How long a browser may keep a preflight's answer (browsers cap it: Chromium at 2h).
    #[arg(long = "cors-max-age", env = "CORS_MAX_AGE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub max_age: Duration,
}

/// One entry of `--cors-origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigin {
    /// `*`: any origin.
    Any,
    /// An origin as browsers send it: `https://app.example.com`, `http://localhost:3000`.
    Exact(String),
}

impl fmt::Display for AllowedOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowedOrigin::Any => f.write_str("*"),
            AllowedOrigin::Exact(origin) => f.write_str(origin),
        }
    }
}

/// `*`, or `scheme://host[:port]` written as a browser writes it in `Origin`: lowercase, no
/// default port, no path (`https://App.example.com:443` is taken as `https://app.example.com`;
/// `https://app.example.com/` is refused, as no browser sends that).
pub fn parse_origin(text: &str) -> Result<AllowedOrigin, String> {
    let text = text.trim();
    if text == "*" {
        return Ok(AllowedOrigin::Any);
    }
    if text.contains('*') {
        return Err(format!(
            "`{text}`: a wildcard inside an origin is not supported; list each origin, or give `*` alone"
        ));
    }
    let shape = || {
        format!(
            "`{text}` is not an origin: write scheme://host[:port], e.g. https://app.example.com"
        )
    };
    let (scheme, rest) = text.split_once("://").ok_or_else(shape)?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(shape()),
    };
    if rest.contains(['/', '?', '#']) {
        return Err(format!(
            "`{text}`: an origin has no path (browsers send `{scheme}://{}`)",
            rest.split(['/', '?', '#']).next().unwrap_or_default()
        ));
    }
    let authority: Authority = rest.parse().map_err(|_| shape())?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return Err(shape());
    }
    let host = authority.host().to_ascii_lowercase();
    Ok(AllowedOrigin::Exact(match authority.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    }))
}

/// A CORS configuration that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CorsError {
    #[error(
        "--cors-origins '*' with --cors-allow-credentials would let any web site act with your users' credentials; list the origins instead"
    )]
    AnyOriginWithCredentials,
    #[error("--cors-origins: `*` stands alone, not beside other origins")]
    AnyAmongOthers,
}

/// Which origins are allowed, checked once at start.
#[derive(Debug, Clone)]
enum Origins {
    /// None but the gateway's own.
    Own,
    Any,
    List(Vec<HeaderValue>),
}

/// The CORS policy the gateway serves, from [`CorsArgs::policy`].
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    origins: Origins,
    credentials: bool,
    max_age: HeaderValue,
}

impl CorsArgs {
    /// The policy these flags describe; refuses a wildcard with credentials.
    pub fn policy(&self) -> Result<CorsPolicy, CorsError> {
        let any = self.origins.contains(&AllowedOrigin::Any);
        let origins = match self.origins.as_slice() {
            [] => Origins::Own,
            [AllowedOrigin::Any] if self.allow_credentials => {
                return Err(CorsError::AnyOriginWithCredentials);
            }
            [AllowedOrigin::Any] => Origins::Any,
            _ if any => return Err(CorsError::AnyAmongOthers),
            list => Origins::List(
                list.iter()
                    .map(|origin| {
                        HeaderValue::try_from(origin.to_string())
                            .expect("a parsed origin is header text")
                    })
                    .collect(),
            ),
        };
        Ok(CorsPolicy {
            origins,
            credentials: self.allow_credentials,
            max_age: HeaderValue::from(self.max_age.as_secs()),
        })
    }
}

impl CorsPolicy {
    /// The `Access-Control-Allow-Origin` of an allowed origin; `None` for any other.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match &self.origins {
            Origins::Own => None,
            Origins::Any => Some(HeaderValue::from_static("*")),
            Origins::List(list) => list.contains(origin).then(|| origin.clone()),
        }
    }
}

/// Response headers a page may read beside the safelisted ones: the ids to quote in a bug
/// report, and when to retry after a 429 or 503.
const EXPOSED: HeaderValue = HeaderValue::from_static("x-request-id, x-trace-id, retry-after");

/// What varies with a preflight's request headers.
const PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);

/// The CORS layer (see the module's documentation).
#[derive(Clone)]
pub struct Cors<S> {
    pub(crate) inner: S,
    pub(crate) policy: Arc<CorsPolicy>,
}

impl<S> Service<ServerContext, Request> for Cors<S>
where
    S: Service<ServerContext, Request, Response = Response, Error = Infallible> + Send + Sync,
{
    type Response = Response;
    type Error = Infallible;

    async fn call(&self, cx: &mut ServerContext, req: Request) -> Result<Response, Infallible> {
        let cross_origin = req
            .headers()
            .get(ORIGIN)
            .filter(|origin| !is_same_origin(origin, &req))
            .cloned();
        let preflight = req.method() == Method::OPTIONS
            && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        let allowed = match &cross_origin {
            None => None,
            Some(origin) => match self.policy.allow_origin(origin) {
                Some(allowed) => Some(allowed),
                None => return Ok(self.vary(Rejection::OriginNotAllowed.into_response())),
            },
        };
        let mut response = self.inner.call(cx, req).await?;
        if let Some(allowed) = allowed {
            let headers = response.headers_mut();
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
            if self.policy.credentials {
                headers.insert(
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
            if preflight {
                headers.insert(ACCESS_CONTROL_MAX_AGE, self.policy.max_age.clone());
                headers.append(VARY, PREFLIGHT_VARY);
                return Ok(response);
            }
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
        }
        Ok(self.vary(response))
    }
}

impl<S> Cors<S> {
    /// Answers depend on `Origin` unless every origin is allowed: caches must know.
    fn vary(&self, mut response: Response) -> Response {
        if !matches!(self.policy.origins, Origins::Any) {
            response
                .headers_mut()
                .append(VARY, HeaderValue::from_static("origin"));
        }
        response
    }
}

/// Whether `origin` is the gateway's own (its `Host`): a page it served, such as /docs.
/// Behind a proxy that rewrites `Host`, list the public origin in `--cors-origins`.
fn is_same_origin(origin: &HeaderValue, req: &Request) -> bool {
    let Some(authority) = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .map(|(_, authority)| authority)
    else {
        return false;
    };
    let host = req
        .headers()
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .or_else(|| req.uri().authority().map(Authority::as_str));
    host.is_some_and(|host| host.eq_ignore_ascii_case(authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(text: &str) -> AllowedOrigin {
        AllowedOrigin::Exact(text.to_owned())
    }

    #[test]
    fn origins_are_read_as_browsers_send_them() {
        assert_eq!(parse_origin("*"), Ok(AllowedOrigin::Any));
        for (given, read) in [
            ("https://app.example.com", "https://app.example.com"),
            ("HTTPS://App.Example.com:443", "https://app.example.com"),
            ("http://localhost:3000", "http://localhost:3000"),
            ("http://127.0.0.1:80", "http://127.0.0.1"),
            ("http://[::1]:8080", "http://[::1]:8080"),
        ] {
            assert_eq!(parse_origin(given), Ok(exact(read)), "{given}");
        }
    }

    #[test]
    fn what_is_not_an_origin_is_refused_saying_why() {
        for (given, why) in [
            ("https://app.example.com/", "has no path"),
            ("https://app.example.com/api", "has no path"),
            ("https://*.example.com", "wildcard"),
            ("app.example.com", "scheme://host"),
            ("ftp://app.example.com", "scheme://host"),
            ("https://", "scheme://host"),
            ("https://user@app.example.com", "scheme://host"),
            ("null", "scheme://host"),
        ] {
            let error = parse_origin(given).expect_err(given);
            assert!(error.contains(why), "{given}: {error}");
        }
    }

    fn args(origins: &[AllowedOrigin], allow_credentials: bool) -> CorsArgs {
        CorsArgs {
            origins: origins.to_vec(),
            allow_credentials,
            max_age: Duration::from_secs(600),
        }
    }

    #[test]
    fn a_wildcard_with_credentials_is_refused() {
        assert!(matches!(
            args(&[AllowedOrigin::Any], true).policy(),
            Err(CorsError::AnyOriginWithCredentials)
        ));
        assert!(matches!(
            args(&[exact("https://a.example"), AllowedOrigin::Any], false).policy(),
            Err(CorsError::AnyAmongOthers)
        ));
        assert!(args(&[AllowedOrigin::Any], false).policy().is_ok());
        assert!(args(&[exact("https://a.example")], true).policy().is_ok());
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let policy = args(&[exact("https://a.example")], false).policy().unwrap();
        let allowed = HeaderValue::from_static("https://a.example");
        assert_eq!(policy.allow_origin(&allowed), Some(allowed));
        for other in ["https://b.example", "http://a.example", "null", ""] {
            let other = HeaderValue::from_static(other);
            assert_eq!(policy.allow_origin(&other), None, "{other:?}");
        }
        let none = args(&[], false).policy().unwrap();
        assert_eq!(
            none.allow_origin(&HeaderValue::from_static("https://a.example")),
            None
        );
    }
}
