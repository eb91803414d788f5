//! A real volo-thrift server: announce, serve, stop through `Shutdown`, deregister in the
//! shutdown hook.

use std::time::Duration;

use test_support::Etcd;
use tokio::net::TcpListener;
use volo_etcd::Shutdown;
use volo_thrift::server::{Router, Server};

use crate::common::*;

#[tokio::test]
async fn shutdown_hook_deregisters_and_run_returns() {
    init_tracing();
    let etcd = Etcd::start().await;
    let options = serve_options(&etcd, "user");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = Shutdown::new();
    let announced = volo_etcd::announce(listener, &options, shutdown.clone())
        .await
        .unwrap();
    let address = announced.registered_address();
    let (incoming, registration) = announced.into_parts();
    let key = registration.key().to_owned();
    assert!(value_at(&etcd, &key).await.is_some());

    // Exactly what the generated code does.
    let server = Server::with_router(Router::new())
        .register_shutdown_hook(move || Box::pin(registration.deregister()));
    let running = tokio::spawn(server.run(incoming));

    // It serves: a TCP connection is accepted.
    tokio::net::TcpStream::connect(address).await.unwrap();

    shutdown.trigger();
    let result = tokio::time::timeout(Duration::from_secs(40), running)
        .await
        .expect("run returns after Shutdown fired")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(value_at(&etcd, &key).await, None, "hook did not deregister");
}
