//! Serves UserService on `--listen`, registered in etcd until SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::Parser as _;
use user_service::{Config, Store};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    rpc::runtime::logging::init(config.log_format);
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Each error's message already names its cause; no chain to repeat.
            eprintln!("user-service: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let store = Store::open(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    tracing::info!(listen = %config.listen, service = %config.service_name, "serving");
    let served =
        user_service::run(store, listener, &config, rpc::volo_etcd::Shutdown::never()).await;
    served.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}
