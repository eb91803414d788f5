//! The crate's one error type. Messages say what was wrong and where, e.g.
//! `cannot reach etcd at 127.0.0.1:2379: no answer within 5s`.

use std::{fmt, time::Duration};

/// Everything that can go wrong when registering or discovering.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service name is empty or contains `/` (it would collide with other services' keys).
    #[error("invalid service name {name:?}: {reason}")]
    InvalidServiceName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// `EtcdOptions` cannot be used as given (no endpoints, bad endpoint, scheme/TLS mismatch).
    #[error("invalid etcd options: {0}")]
    InvalidOptions(String),

    /// A TLS setting could not be applied (file unreadable, feature `tls` not compiled in),
    /// or the TLS handshake with etcd failed (etcd's certificate not signed by the configured
    /// CA, client certificate missing or refused, endpoint not serving TLS).
    #[error("cannot use TLS for etcd at {endpoints}: {reason}")]
    Tls {
        /// The configured endpoints.
        endpoints: String,
        /// What failed.
        reason: String,
    },

    /// etcd rejected the credentials.
    #[error("etcd at {endpoints} rejected user {username:?}: {source}")]
    Auth {
        /// The configured endpoints.
        endpoints: String,
        /// The user that was refused.
        username: String,
        /// etcd's answer.
        #[source]
        source: etcd_client::Error,
    },

    /// etcd did not answer, or answered with an error, while registering or deregistering.
    #[error("cannot reach etcd at {endpoints}: {source}")]
    Unreachable {
        /// The configured endpoints.
        endpoints: String,
        /// The failed call.
        #[source]
        source: CallError,
    },

    /// etcd answered, but refused the request (permissions, auth required, bad argument).
    #[error("etcd at {endpoints} refused the request: {source}")]
    Refused {
        /// The configured endpoints.
        endpoints: String,
        /// etcd's answer.
        #[source]
        source: CallError,
    },

    /// The first instance list of a service was not loaded within the dial timeout
    /// (etcd unreachable since the process started).
    #[error(
        "instances of service {service:?} not loaded from etcd at {endpoints} within {timeout:?}: {reason}"
    )]
    NotLoaded {
        /// The service being resolved.
        service: String,
        /// The configured endpoints.
        endpoints: String,
        /// How long discovery waited.
        timeout: Duration,
        /// The last failure seen meanwhile, or that none was seen yet.
        reason: String,
    },

    /// No address to register: the listener is on `0.0.0.0`/`::` and no routable address
    /// was configured or found.
    #[error("cannot choose an address to register: {0}")]
    NoRoutableAddress(String),

    /// The listener's own address could not be read.
    #[error("cannot read the listener's local address: {0}")]
    Listener(#[source] std::io::Error),
}

/// Why one etcd call failed.
#[derive(Debug)]
pub enum CallError {
    /// etcd (or the transport) answered with an error.
    Etcd(etcd_client::Error),
    /// No answer within the dial timeout.
    Timeout(Duration),
    /// A stream ended without an answer.
    Closed(&'static str),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Etcd(e) => write!(f, "{e}"),
            CallError::Timeout(d) => write!(f, "no answer within {d:?}"),
            CallError::Closed(what) => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Etcd(e) => Some(e),
            _ => None,
        }
    }
}

impl CallError {
    /// Whether etcd itself answered "no" (as opposed to not answering): permission denied,
    /// unauthenticated, invalid argument, failed precondition.
    pub fn is_refusal(&self) -> bool {
        match self {
            CallError::Etcd(etcd_client::Error::GRpcStatus(status)) => {
                // gRPC codes: 3 invalid argument, 7 permission denied, 9 failed precondition,
                // 16 unauthenticated.
                matches!(i32::from(status.code()), 3 | 7 | 9 | 16)
            }
            _ => false,
        }
    }
}

impl From<etcd_client::Error> for CallError {
    fn from(e: etcd_client::Error) -> Self {
        CallError::Etcd(e)
    }
}

impl From<Error> for volo::loadbalance::error::LoadBalanceError {
    fn from(e: Error) -> Self {
        volo::loadbalance::error::LoadBalanceError::Discover(Box::new(e))
    }
}

/// Rejects names that would break the key layout: empty, or containing `/`
/// (registry-etcd's rule, added after `demo-service` resolved `demo-service-B`).
pub fn validate_service_name(name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.contains('/') {
        "it contains '/'"
    } else {
        return Ok(());
    };
    Err(Error::InvalidServiceName {
        name: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert!(validate_service_name("user").is_ok());
        let e = validate_service_name("a/b").unwrap_err().to_string();
        assert_eq!(e, "invalid service name \"a/b\": it contains '/'");
        assert!(validate_service_name("").is_err());
    }

    #[test]
    fn unreachable_message() {
        let e = Error::Unreachable {
            endpoints: "127.0.0.1:2379".into(),
            source: CallError::Timeout(Duration::from_secs(5)),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach etcd at 127.0.0.1:2379: no answer within 5s"
        );
    }
}
