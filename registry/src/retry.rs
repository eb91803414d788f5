//! [`RetryLayer`]: a per-attempt timeout, retried on another instance under a
//! [`RetryBudget`], inside the caller's whole deadline (`rpc_timeout`).
//!
//! One retry path per kind of error: a timed-out attempt is retried here; transport errors
//! (refused, reset, ...) are retried by Volo's load-balance layer inside the attempt
//! (`retry_count`), and pass through here untouched, as does every other error.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use volo::{Layer, Service, context::Context, net::Address};
use volo_thrift::{
    ApplicationException, ApplicationExceptionKind, ClientError, context::ClientContext,
};

use crate::{balance::InstanceList, options::RetryBudgetOptions, window::SlidingWindow};

/// Counter indices in the budget's window.
const CALLS: usize = 0;
const RETRIES: usize = 1;

/// Retries allowed over a sliding window: a share of the calls plus a floor per second.
/// Shared by every call of a client.
#[derive(Debug)]
pub struct RetryBudget {
    options: RetryBudgetOptions,
    window: Mutex<SlidingWindow>,
}

impl RetryBudget {
    pub fn new(options: RetryBudgetOptions) -> Self {
        Self {
            window: Mutex::new(SlidingWindow::new(options.window, Instant::now())),
            options,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlidingWindow> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A call began: it adds `percent`/100 of a retry to the budget.
    pub(crate) fn record_call(&self, now: Instant) {
        self.lock().add(CALLS, now);
    }

    /// Takes one retry from the budget, if there is one left.
    pub(crate) fn try_retry(&self, now: Instant) -> bool {
        let mut window = self.lock();
        let [calls, retries] = window.totals(now);
        // In hundredths of a retry: percent per call, plus the floor over the window.
        let floor =
            u128::from(self.options.floor_per_second) * self.options.window.as_millis() / 10;
        let allowed = u128::from(calls) * u128::from(self.options.percent) + floor;
        if u128::from(retries + 1) * 100 <= allowed {
            window.add(RETRIES, now);
            true
        } else {
            false
        }
    }
}

/// What one call's attempts share with the balancer: the instances they tried (so that a
/// retry goes elsewhere) and the list they were picked from. Put into the callee endpoint's
/// tags, where `LoadBalance::get_picker` sees it.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallState(Arc<Mutex<CallInner>>);

#[derive(Debug, Default)]
struct CallInner {
    tried: Vec<Address>,
    list: Option<Arc<InstanceList>>,
    /// Timed-out attempts retried on another instance.
    retries: u32,
}

impl CallState {
    fn lock(&self) -> std::sync::MutexGuard<'_, CallInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn tried(&self) -> Vec<Address> {
        self.lock().tried.clone()
    }

    pub(crate) fn add_tried(&self, address: Address) {
        let mut inner = self.lock();
        if !inner.tried.contains(&address) {
            inner.tried.push(address);
        }
    }

    pub(crate) fn set_list(&self, list: Arc<InstanceList>) {
        self.lock().list = Some(list);
    }

    fn note_retry(&self) {
        self.lock().retries += 1;
    }

    /// How many timed-out attempts the call retried (the `retry` label of its metrics).
    pub(crate) fn retries(&self) -> u32 {
        self.lock().retries
    }

    /// Whether an untried instance would take a call; true when unknown (another balancer).
    fn has_untried(&self) -> bool {
        let inner = self.lock();
        inner
            .list
            .as_ref()
            .is_none_or(|list| list.has_untried(&inner.tried))
    }
}

/// The outer layer (`ClientBuilder::layer_outer`) that bounds each attempt by
/// `attempt_timeout` and retries a timed-out one on another instance, while the whole
/// deadline (the call's `rpc_timeout`) and the budget allow. Without a retry to make
/// (budget spent, no other instance, deadline closer than an attempt) the attempt is not
/// abandoned: it goes on until the deadline, as it would without this layer.
///
/// Off for a call with a fixed address, and when `attempt_timeout` is zero or not below
/// `rpc_timeout`. Each attempt carries the time left before the deadline as its
/// `rpc_timeout`: the callee reads it from the TTHeader (`RPCTimeout`) and need not start work
/// the caller will not wait for, and Volo's timeout layer (inside this one) ends with the
/// deadline, never before it.
#[derive(Clone, Debug)]
pub struct RetryLayer {
    attempt_timeout: Duration,
    budget: Arc<RetryBudget>,
}

impl RetryLayer {
    pub fn new(attempt_timeout: Duration, budget: Arc<RetryBudget>) -> Self {
        Self {
            attempt_timeout,
            budget,
        }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = RetryService<S>;

    fn layer(self, inner: S) -> Self::Service {
        RetryService {
            inner,
            attempt_timeout: self.attempt_timeout,
            budget: self.budget,
        }
    }
}

/// See [`RetryLayer`].
#[derive(Clone, Debug)]
pub struct RetryService<S> {
    inner: S,
    attempt_timeout: Duration,
    budget: Arc<RetryBudget>,
}

/// How an attempt ended.
enum Step<T> {
    Done(Result<T, ClientError>),
    Retry,
    TimedOut,
}

impl<Req, S> Service<ClientContext, Req> for RetryService<S>
where
    Req: Clone + Send + Sync + 'static,
    S: Service<ClientContext, Req, Error = ClientError> + Send + Sync,
    S::Response: Send,
{
    type Response = S::Response;
    type Error = ClientError;

    async fn call(&self, cx: &mut ClientContext, req: Req) -> Result<S::Response, ClientError> {
        let started = tokio::time::Instant::now();
        self.budget.record_call(Instant::now());
        let rpc_timeout = cx.rpc_info().config().rpc_timeout();
        let per_attempt = self.attempt_timeout;
        let fixed = cx.rpc_info().callee().address.is_some();
        if fixed || per_attempt.is_zero() || rpc_timeout.is_some_and(|t| per_attempt >= t) {
            return self.inner.call(cx, req).await;
        }
        let deadline = rpc_timeout.map(|t| started + t);
        let call = CallState::default();
        cx.rpc_info_mut().callee_mut().insert(call.clone());
        let result = self.attempts(cx, req, &call, deadline).await;
        cx.rpc_info_mut().config_mut().set_rpc_timeout(rpc_timeout);
        result.map_err(|attempts| {
            let msg = format!(
                "[volo-etcd] thrift rpc call timeout after {:?} (rpc_timeout {:?}, {attempts} \
                 attempt(s), last on {:?}), rpcinfo: {:?}",
                started.elapsed(),
                rpc_timeout.unwrap_or_default(),
                cx.rpc_info().callee().address(),
                cx.rpc_info(),
            );
            tracing::warn!("{msg}");
            ClientError::Application(ApplicationException::new(
                ApplicationExceptionKind::INTERNAL_ERROR,
                msg,
            ))
        })?
    }
}

impl<S> RetryService<S> {
    /// The attempts of one call: its result, or how many attempts the deadline cut short.
    async fn attempts<Req>(
        &self,
        cx: &mut ClientContext,
        req: Req,
        call: &CallState,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Result<S::Response, ClientError>, u32>
    where
        Req: Clone + Send + Sync + 'static,
        S: Service<ClientContext, Req, Error = ClientError> + Send + Sync,
    {
        let per_attempt = self.attempt_timeout;
        let mut attempts = 1u32;
        loop {
            if let Some(d) = deadline {
                // Volo's timeout layer would otherwise start the whole `rpc_timeout` afresh.
                let left = d.saturating_duration_since(tokio::time::Instant::now());
                let left = left.max(Duration::from_millis(1));
                cx.rpc_info_mut().config_mut().set_rpc_timeout(Some(left));
            }
            let attempt_end = match deadline {
                Some(d) => d.min(tokio::time::Instant::now() + per_attempt),
                None => tokio::time::Instant::now() + per_attempt,
            };
            let step = {
                let attempt = self.inner.call(cx, req.clone());
                tokio::pin!(attempt);
                tokio::select! {
                    biased;
                    result = &mut attempt => Step::Done(result),
                    _ = tokio::time::sleep_until(attempt_end) => {
                        if deadline.is_some_and(|d| attempt_end >= d) {
                            Step::TimedOut
                        } else if call.has_untried() && self.budget.try_retry(Instant::now()) {
                            Step::Retry
                        } else {
                            // Nothing better to do: let this attempt have the rest.
                            match deadline {
                                None => Step::Done(attempt.await),
                                Some(d) => tokio::select! {
                                    biased;
                                    result = &mut attempt => Step::Done(result),
                                    _ = tokio::time::sleep_until(d) => Step::TimedOut,
                                },
                            }
                        }
                    }
                }
            };
            match step {
                Step::Done(result) => return Ok(result),
                Step::TimedOut => return Err(attempts),
                Step::Retry => {
                    // An event of the call's client span, when spans are exported.
                    tracing_opentelemetry::OpenTelemetrySpanExt::add_event(
                        &tracing::Span::current(),
                        "retry",
                        vec![opentelemetry::KeyValue::new("attempt", i64::from(attempts))],
                    );
                    tracing::debug!(
                        attempt = attempts,
                        callee = ?cx.rpc_info().callee().address(),
                        "attempt timed out; retrying on another instance"
                    );
                    attempts += 1;
                    call.note_retry();
                    // Let the balancer pick again.
                    cx.rpc_info_mut().callee_mut().address = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn budget_is_a_share_of_calls_plus_a_floor() {
        let t0 = Instant::now();
        let budget = RetryBudget::new(RetryBudgetOptions::default());
        // No calls: the floor, 1/s over 10 s.
        for i in 0..10 {
            assert!(budget.try_retry(t0), "floor retry {i}");
        }
        assert!(!budget.try_retry(t0), "floor spent");
        // 100 calls add 20 retries.
        for _ in 0..100 {
            budget.record_call(t0);
        }
        for i in 0..20 {
            assert!(budget.try_retry(t0), "share retry {i}");
        }
        assert!(!budget.try_retry(t0), "share spent");
        // 5 more calls add one.
        for _ in 0..5 {
            budget.record_call(t0);
        }
        assert!(budget.try_retry(t0));
        assert!(!budget.try_retry(t0));
        // Everything slides out after the window: the floor is back, the share is gone.
        let later = t0 + secs(11);
        for _ in 0..10 {
            assert!(budget.try_retry(later));
        }
        assert!(!budget.try_retry(later));
    }

    #[test]
    fn zero_budget_never_retries() {
        let t0 = Instant::now();
        let budget = RetryBudget::new(RetryBudgetOptions {
            percent: 0,
            floor_per_second: 0,
            window: secs(10),
        });
        for _ in 0..1000 {
            budget.record_call(t0);
        }
        assert!(!budget.try_retry(t0));
    }

    #[test]
    fn call_state_dedups_tried() {
        let call = CallState::default();
        let a = Address::Ip("10.0.0.1:80".parse().unwrap());
        call.add_tried(a.clone());
        call.add_tried(a.clone());
        assert_eq!(call.tried(), [a]);
        assert!(call.has_untried(), "unknown list: assume another instance");
    }
}
