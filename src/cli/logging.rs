//! Where logs go and how they look, and the plain message of a multi-process job that lost a
//! process.

use anyhow::Context as _;

use super::Cli;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr, filtered by `--log-level` (or DENORM_LOG), else RUST_LOG, else `info`.
pub fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    let directives = match &cli.log_level {
        Some(flag) => flag.clone(),
        None => std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).with_context(|| {
        format!("bad log filter `{directives}` (try info, or info,denorm=debug)")
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_logs())
        .with_writer(denorm::runtime::progress::LogWriter);
    if cli.log_json || cli.log_format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

/// Whether log lines may carry colour codes: only when stderr is a terminal, and not when
/// `NO_COLOR` is set to anything but the empty string (no-color.org). Log files, pipes, service
/// managers and container logs get plain text.
fn colour_logs() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A process of a multi-process job that loses another one cannot go on (timely needs all of
/// them): say so plainly and exit, instead of a panic trace per thread.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or_default();
        if message.contains("timely communication error") || message.contains("MergeQueue poisoned")
        {
            eprintln!(
                "error: lost the connection to another process of the job ({message}). A timely job cannot go on \
                 without all of its processes: start them all again (each rebuilds its state from the topics and \
                 writes only what differs from the output topic)."
            );
            std::process::exit(3);
        }
        default(info);
    }));
}
