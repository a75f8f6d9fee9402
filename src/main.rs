//! The `wordcount` binary: parse the command line, then either serve until
//! SIGTERM/SIGINT or run the container health check.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::error::ErrorKind;
use wordcount::config::{Cli, Command, Config, Invalid, SourceKind};
use wordcount::{App, Error, server, telemetry};

/// sysexits.h EX_USAGE: the configuration cannot work.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    // The workers keep their log lines until they sleep or stop
    // (telemetry/lines.rs); dropping the runtime waits for them to stop.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(|| telemetry::stdout().park())
        .on_thread_stop(telemetry::Lines::stop)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(err) => {
            eprintln!("wordcount: cannot start the runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli = match Cli::from_process() {
        Ok(cli) => cli,
        Err(Invalid::Setting(err)) => return config_error(&err),
        Err(Invalid::Usage(err)) if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            err.exit()
        }
        Err(Invalid::Usage(err)) => return usage_error(&err),
    };
    match cli.command {
        Some(Command::Healthcheck { ready, admin_port }) => healthcheck(ready, admin_port).await,
        Some(Command::Serve(args)) => serve(*args).await,
        None => serve(cli.serve).await,
    }
}

async fn serve(args: Config) -> ExitCode {
    let config = match args.check() {
        Ok(config) => config,
        Err(err) => return config_error(&err),
    };
    let gcp_project = (config.source.kind == SourceKind::BigQuery).then(|| config.bigquery.project.clone()).flatten();
    let _telemetry = telemetry::init(config.server.log_format, config.server.log_filter.clone(), gcp_project);

    let app = match wordcount::build(&config).await {
        Ok(app) => app,
        Err(err @ Error::Config { .. }) => return config_error(&err),
        Err(err) => {
            tracing::error!(error = %err, reason = err.reason(), "start-up failed");
            return ExitCode::FAILURE;
        }
    };
    match listen_and_run(app, &config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "server failed");
            ExitCode::FAILURE
        }
    }
}

async fn listen_and_run(app: App, config: &Config) -> anyhow::Result<()> {
    let (public, admin) = App::bind(&config.server)
        .await
        .with_context(|| format!("cannot bind ports {} and {}", config.server.port, config.server.admin_port))?;
    tracing::info!(
        version = wordcount::VERSION,
        commit = wordcount::COMMIT,
        word = config.source.word,
        source = config.source.kind.name(),
        public = %public.local_addr()?,
        admin = %admin.local_addr()?,
        "listening"
    );
    app.run(public, admin, server::shutdown_signal()).await;
    Ok(())
}

fn config_error(err: &Error) -> ExitCode {
    eprintln!("wordcount: invalid configuration: {err}");
    ExitCode::from(EXIT_CONFIG)
}

/// Like a configuration error: exit 64 with one line, clap's first (its
/// usage and tips follow in `--help`).
fn usage_error(err: &clap::Error) -> ExitCode {
    let rendered = err.render().to_string();
    let problem = rendered.lines().next().unwrap_or_default().trim_start_matches("error: ");
    eprintln!("wordcount: invalid arguments: {problem} (see --help)");
    ExitCode::from(EXIT_CONFIG)
}

async fn healthcheck(ready: bool, port: u16) -> ExitCode {
    let path = if ready { "/readyz" } else { "/healthz" };
    match server::healthcheck(port, path, Duration::from_secs(2)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("wordcount healthcheck: {problem}");
            ExitCode::FAILURE
        }
    }
}
