//! Logs on stderr and, when an OTLP endpoint is given, exported traces.

mod trace_ids;

use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use sluice_node::trace;

use crate::cli::{Cli, Command, LogFormat};

/// Installs the process's subscriber. The guard flushes the last spans when
/// dropped; it is `None` when traces are not exported.
pub fn init(cli: &Cli) -> Result<Option<trace::Exporting>, String> {
    let logs = log_layer(cli);
    let Some(settings) = trace_settings(cli) else {
        tracing_subscriber::registry().with(logs).init();
        return Ok(None);
    };
    let (spans, exporting) = trace::layer(&settings)?;
    tracing_subscriber::registry().with(logs).with(spans).init();
    tracing::info!(
        endpoint = %settings.endpoint, sample = settings.sample,
        "exporting traces over OTLP"
    );
    Ok(Some(exporting))
}

/// The service name a role's spans carry; `None` for commands that are
/// not services (they export nothing).
fn service(command: &Command) -> Option<&'static str> {
    Some(match command {
        Command::Ingest(_) => "sluice-ingest",
        Command::Sender(_) => "sluice-sender",
        Command::Recorder(_) => "sluice-recorder",
        Command::Control(_) => "sluice-control",
        Command::Inbound(_) => "sluice-inbound",
        Command::Webhooks(_) => "sluice-webhooks",
        Command::Dev(_) => "sluice-dev",
        _ => return None,
    })
}

fn trace_settings(cli: &Cli) -> Option<trace::Settings> {
    let endpoint = cli.otlp_endpoint.clone().filter(|e| !e.is_empty())?;
    Some(trace::Settings {
        endpoint,
        sample: cli.trace_sample,
        service: service(&cli.command)?.to_owned(),
    })
}

fn log_layer<S>(cli: &Cli) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // The demo draws progress bars: service logs would land between them.
    let quiet = matches!(cli.command, Command::Demo(_));
    let default = match cli.verbose {
        0 if quiet => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let mut filter =
        tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| {
            // The storage engines' own info lines say nothing an operator acts on.
            tracing_subscriber::EnvFilter::new(format!("{default},fjall=warn,lsm_tree=warn"))
        });
    // Spans made for export only never reach the logs.
    if let Ok(directive) = trace::log_directive().parse() {
        filter = filter.add_directive(directive);
    }
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        LogFormat::Json => {
            let format = tracing_subscriber::fmt::format()
                .json()
                .with_current_span(true);
            logs.json()
                .event_format(trace_ids::WithTraceIds(format))
                .with_filter(filter)
                .boxed()
        }
    }
}
