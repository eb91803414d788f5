//! Serves UserService on `--listen`, registered in etcd until SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::Parser as _;
use user_service::{Config, Store};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    // Kept until the end: dropping it sends the spans still queued.
    let _telemetry =
        match rpc::volo_etcd::telemetry::init(&config.telemetry.options(&config.service_name)) {
            Ok(telemetry) => telemetry,
            Err(e) => {
                eprintln!("user-service: {e}");
                return ExitCode::FAILURE;
            }
        };
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{e}`, not the chain `{e:#}`: each error's message already names its cause.
            eprintln!("user-service: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    if let Some(addr) = config.metrics_listen {
        rpc::volo_etcd::metrics::spawn_listener(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    }
    let store = Store::open(&config.database_url).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    tracing::info!(listen = %config.listen, service = %config.service_name, "serving");
    user_service::run(store, listener, &config, rpc::volo_etcd::Shutdown::never()).await?;
    tracing::info!("stopped");
    Ok(())
}
