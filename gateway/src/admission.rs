//! What every request passes before routing: size bounds on its URI and headers, the gateway's
//! and the client's rate limits, and load shedding. Refusals are cheap and answered in JSON.

use std::{convert::Infallible, net::IpAddr, sync::Arc};

use volo::{Service, context::Context as _, net::Address};
use volo_http::{
    context::ServerContext, http::HeaderMap, request::Request, response::Response,
    server::IntoResponse as _,
};

use crate::{
    RoutePath,
    limits::Limits,
    rejection::Rejection,
    shedding::{Shedder, Ticket},
};

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
    pub(crate) shedder: Arc<Shedder>,
}

impl<S> Service<ServerContext, Request> for Admission<S>
where
    S: Service<ServerContext, Request, Response = Response, Error = Infallible> + Send + Sync,
{
    type Response = Response;
    type Error = Infallible;

    async fn call(&self, cx: &mut ServerContext, req: Request) -> Result<Response, Infallible> {
        match self.admit(cx, &req) {
            Ok(mut ticket) => {
                let resp = self.inner.call(cx, req).await?;
                if let Some(RoutePath(path)) = resp.extensions().get::<RoutePath>() {
                    ticket.answered_by(path);
                }
                Ok(resp)
            }
            Err(rejection) => Ok(rejection.into_response()),
        }
    }
}

impl<S> Admission<S> {
    /// The checks in order of cost; the ticket holds the request's place in the shedder.
    fn admit(&self, cx: &ServerContext, req: &Request) -> Result<Ticket<'_>, Rejection> {
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
        self.limits.check_request(client_ip(cx))?;
        self.shedder.admit().ok_or(Rejection::Overloaded)
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
