//! The caller's deadline, on the server side: how long the caller will wait for this call.
//!
//! A Kitex or Volo client sends its RPC timeout in the TTHeader (`RPCTimeout`, milliseconds),
//! which volo-thrift decodes into the call's config. [`DeadlineLayer`] turns it into a
//! deadline that handler code reads with [`remaining`], so that expensive work (a password
//! hash) is not started for a caller that has already given up.

use std::time::Duration;

use tokio::time::Instant;
use volo::{Layer, Service, context::Context};

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Time left before the caller of the current call gives up; `None` when it sent no timeout
/// or outside a call served behind [`DeadlineLayer`].
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// Runs `call` with a caller that waits `timeout` for it: what [`DeadlineLayer`] does for a
/// served call, and what tests of handler code use.
pub async fn within<F: std::future::Future>(timeout: Duration, call: F) -> F::Output {
    DEADLINE.scope(Instant::now() + timeout, call).await
}

/// Puts the caller's deadline in scope for the handler. Add it to a volo-thrift server with
/// `layer_front`, so that the clock starts as soon as the request is decoded.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

/// The service [`DeadlineLayer`] makes.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
}

impl<Cx, Req, S> Service<Cx, Req> for Deadline<S>
where
    Cx: Context<Config = volo_thrift::context::Config> + Send,
    Req: Send,
    S: Service<Cx, Req> + Sync,
{
    type Response = S::Response;
    type Error = S::Error;

    async fn call(&self, cx: &mut Cx, req: Req) -> Result<S::Response, S::Error> {
        match cx.rpc_info().config().rpc_timeout() {
            Some(timeout) if !timeout.is_zero() => within(timeout, self.inner.call(cx, req)).await,
            _ => self.inner.call(cx, req).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nothing_remains_to_be_known_outside_a_call() {
        assert_eq!(remaining(), None);
        let left = within(Duration::from_secs(5), async { remaining() })
            .await
            .expect("a deadline in scope");
        assert!(left <= Duration::from_secs(5) && left > Duration::from_secs(4));
    }
}
