//! The error of serving a registered Volo server: the two ways `serve` ends badly.

/// Why a server that registers itself in etcd stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound (taken, not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why it could not be bound.
        source: std::io::Error,
    },
    /// Registration failed before serving began (etcd unreachable, bad options, no address).
    #[error("cannot register in etcd: {0}")]
    Register(#[from] crate::Error),
    /// The server itself failed while running.
    #[error("server failed: {0}")]
    Serve(Box<dyn std::error::Error + Send + Sync>),
}
