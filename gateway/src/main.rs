//! `gateway`: parse flags, build the app once, serve until SIGINT/SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use gateway::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if config.print_routes {
        print!("{}", gateway::describe_routes(rpc::ROUTES));
        return ExitCode::SUCCESS;
    }
    // Kept until the end: dropping it sends the spans still queued.
    let _telemetry =
        match rpc::volo_etcd::telemetry::init(&config.telemetry.options(gateway::CALLER_NAME)) {
            Ok(telemetry) => telemetry,
            Err(e) => {
                eprintln!("gateway: {e}");
                return ExitCode::FAILURE;
            }
        };
    if config.metrics {
        // Recording starts now; GET /metrics shows it.
        rpc::volo_etcd::metrics::install();
    }
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the context and its cause, no backtrace.
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let jwt = gateway::jwt_from_config(&config).context("cannot start")?;
    config
        .etcd
        .options()
        .validate()
        .context("cannot start: bad etcd options")?;
    let (app, routes) = gateway::app(&config, jwt).context("cannot start")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr().unwrap_or(config.listen);
    tracing::info!(
        routes = routes.len(),
        etcd = %config.etcd.endpoints.join(","),
        "gateway serving on http://{addr}/"
    );
    gateway::serve(app, listener, &config.connection_limits())
        .await
        .context("the server failed")?;
    tracing::info!("stopped");
    Ok(())
}
