//! Wiring a volo-thrift client: etcd discovery, the p2c balancer, the health layer and the
//! retry layer, from [`ClientOptions`].
//!
//! Layer order (Volo's: outer → Timeout → LoadBalance → inner → transport):
//!
//! ```text
//! ClientTraceLayer ─► ClientMetricsLayer ─► RetryLayer ─► volo Timeout (rpc_timeout) ─► LoadBalance (P2cBalance, retry_count) ─► HealthLayer ─► transport
//!  traceparent out,    kitex_client_*,       per-attempt timeout,                        picks the instance; retries transport     records in-flight,
//!  client span         once per call         retry on another instance,                  errors on the next one                   latency, breaker
//!                                            whole deadline, budget
//! ```

use std::sync::Arc;

use volo::{FastStr, layer::Stack, loadbalance::LbConfig};
use volo_thrift::client::ClientBuilder;

use crate::{
    EtcdDiscover,
    balance::P2cBalance,
    health::{Health, HealthLayer},
    metrics::ClientMetricsLayer,
    options::ClientOptions,
    retry::{RetryBudget, RetryLayer},
    telemetry::ClientTraceLayer,
};

/// The shared parts of one client: its [`Health`] (read by the balancer, written by the
/// health layer) and its [`RetryBudget`]. Use [`configure_client`] unless you wire a client
/// by hand (another `Discover`, extra layers); then keep one `Resilience` per client.
#[derive(Clone, Debug)]
pub struct Resilience {
    health: Health,
    budget: Arc<RetryBudget>,
    attempt_timeout: std::time::Duration,
}

impl Resilience {
    pub fn new(options: &ClientOptions) -> Self {
        Self {
            health: Health::new(options.breaker.clone()),
            budget: Arc::new(RetryBudget::new(options.retry_budget.clone())),
            attempt_timeout: options.attempt_timeout,
        }
    }

    /// The instances' health, as the balancer sees it.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The balancer, for `ClientBuilder::load_balance`.
    pub fn balancer<K>(&self) -> P2cBalance<K> {
        P2cBalance::new(self.health.clone())
    }

    /// The inner layer, for `ClientBuilder::layer_inner`.
    pub fn health_layer(&self) -> HealthLayer {
        HealthLayer::new(self.health.clone())
    }

    /// The outer layer, for `ClientBuilder::layer_outer`.
    pub fn retry_layer(&self) -> RetryLayer {
        RetryLayer::new(self.attempt_timeout, self.budget.clone())
    }

    /// [`configure_client`] with these parts.
    pub fn configure<IL, OL, C, Req, Resp, MkT, MkC, LB, DISC>(
        &self,
        builder: ClientBuilder<IL, OL, C, Req, Resp, MkT, MkC, LbConfig<LB, DISC>>,
        options: &ClientOptions,
    ) -> Configured<IL, OL, C, Req, Resp, MkT, MkC> {
        let builder = match &options.caller_name {
            Some(name) => builder.caller_name(name),
            None => builder,
        };
        builder
            .discover(EtcdDiscover::shared(&options.etcd))
            .load_balance(self.balancer())
            .layer_inner(self.health_layer())
            .layer_outer(ClientTraceLayer)
            .layer_outer(ClientMetricsLayer)
            .layer_outer(self.retry_layer())
            .rpc_timeout(Some(options.rpc_timeout))
            .connect_timeout(Some(options.connect_timeout))
            .retry_count(options.retry_count)
    }
}

/// A client builder as [`configure_client`] leaves it: etcd discovery, [`P2cBalance`], the
/// health layer inside, and the trace, metrics and retry layers outside the layers it had.
pub type Configured<IL, OL, C, Req, Resp, MkT, MkC> = ClientBuilder<
    Stack<HealthLayer, IL>,
    Stack<RetryLayer, Stack<ClientMetricsLayer, Stack<ClientTraceLayer, OL>>>,
    C,
    Req,
    Resp,
    MkT,
    MkC,
    LbConfig<P2cBalance<FastStr>, EtcdDiscover>,
>;

/// Sets up a volo-thrift client builder (generated `XxxClientBuilder::new(name)` or
/// `volo_thrift::client::ClientBuilder::new`) to find instances through etcd and call them
/// as [`ClientOptions`] says: the whole call bounded by `rpc_timeout`, each attempt by
/// `attempt_timeout` and retried on another instance within the retry budget, transport
/// errors retried by Volo (`retry_count`), instances chosen by [`P2cBalance`] and kept away
/// while their breaker is open. Layers added to the builder before this run outside the
/// retry layer (once per call); `layer_outer` after it, once per attempt.
///
/// Call `build()` inside a Tokio runtime.
pub fn configure_client<IL, OL, C, Req, Resp, MkT, MkC, LB, DISC>(
    builder: ClientBuilder<IL, OL, C, Req, Resp, MkT, MkC, LbConfig<LB, DISC>>,
    options: &ClientOptions,
) -> Configured<IL, OL, C, Req, Resp, MkT, MkC> {
    Resilience::new(options).configure(builder, options)
}
