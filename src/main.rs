//! The `autoredeploy` binary: reads the environment, listens, serves until SIGTERM or ctrl-c.

use std::process::ExitCode;

use autoredeploy::config::Settings;
use autoredeploy::startup::Application;
use autoredeploy::{allocator, healthcheck, jobs_command, telemetry};

const USAGE: &str = "usage: autoredeploy [healthcheck | jobs [ID] [--limit N] [--json] | --version]\n\
                     Without arguments it serves the webhook; settings come from environment \
                     variables (see README).";

fn main() -> ExitCode {
    allocator::use_one_arena();
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run()),
        Err(err) => {
            eprintln!("autoredeploy: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match arguments.first().map(String::as_str) {
        None => serve().await,
        Some("healthcheck") => healthcheck::run().await,
        Some("jobs") => jobs_command::run(&arguments[1..]),
        Some("--version" | "-V") => {
            println!("autoredeploy {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("unknown argument `{other}`\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

async fn serve() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("autoredeploy: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    let address = settings.listen_address();
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!("cannot listen on {address} (BIND_ADDRESS/BIND_PORT): {err}");
            return ExitCode::FAILURE;
        }
    };
    let application = match Application::new(listener, settings).await {
        Ok(application) => application,
        Err(err) => {
            tracing::error!("cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    if application.run(shutdown_signal()).await {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Completes on ctrl-c or SIGTERM (what `docker stop` and Rancher send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for ctrl-c: {err}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!("cannot listen for SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
