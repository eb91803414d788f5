//! What every request passes before routing: size bounds on its URI and headers, and the
//! gateway's and the client's rate limits. Refusals are cheap and answered in JSON. (Load
//! shedding comes after routing: its bounds are per route.)

use std::{convert::Infallible, net::IpAddr, sync::Arc};

use volo::{Service, context::Context as _, net::Address};
use volo_http::{
    context::ServerContext, http::HeaderMap, request::Request, response::Response,
    server::IntoResponse as _,
};

use crate::{limits::Limits, rejection::Rejection};

/// Bounds on a request head, checked before anything else reads it.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Longest URI (path and query), in bytes: 414 above it.
    pub max_uri_bytes: usize,
    /// Largest sum of header names and values, in bytes: 431 above it.
    pub max_header_bytes: usize,
}

#[derive(Clone)]
pub struct Admission<S> {
    pub(crate) inner: S,
    pub(crate) head: HeadLimits,
    pub(crate) limits: Arc<Limits>,
}

impl<S> Service<ServerContext, Request> for Admission<S>
where
    S: Service<ServerContext, Request, Response = Response, Error = Infallible> + Send + Sync,
{
    type Response = Response;
    type Error = Infallible;

    async fn call(&self, cx: &mut ServerContext, req: Request) -> Result<Response, Infallible> {
        match self.admit(cx, &req) {
            Ok(()) => self.inner.call(cx, req).await,
            Err(rejection) => Ok(rejection.into_response()),
        }
    }
}

impl<S> Admission<S> {
    /// The checks in order of cost.
    fn admit(&self, cx: &ServerContext, req: &Request) -> Result<(), Rejection> {
        let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
        if uri_len > self.head.max_uri_bytes {
            return Err(Rejection::UriTooLong {
                limit: self.head.max_uri_bytes,
            });
        }
        if header_bytes(req.headers()) > self.head.max_header_bytes {
            return Err(Rejection::HeadersTooLarge {
                limit: self.head.max_header_bytes,
            });
        }
        Ok(self.limits.check_request(client_ip(cx))?)
    }
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum()
}

/// The address the connection comes from. Behind a proxy that is the proxy's: limits per
/// client then need the proxy to limit, or a gateway per client network.
pub(crate) fn client_ip(cx: &ServerContext) -> IpAddr {
    match cx.rpc_info().caller().address() {
        Some(Address::Ip(addr)) => addr.ip(),
        // A Unix socket peer: one local client.
        _ => IpAddr::from([127, 0, 0, 1]),
    }
}
