//! `plimsoll-sample-backend`: the HTTP service Plimsoll's demo and integration tests probe.
//!
//! It stands in for the backends the seed documents load-tested: a signed WhatsApp webhook
//! with idempotent retries, a few cheap reads, and knobs that make latency and failure
//! predictable (`/delay`, `/stall`, `/bytes`, `/status/{code}`), and, with
//! `--queue-redis-url`, seed 001's webhook job queue in Redis with a circuit breaker and a
//! fallback queue (`/queue/jobs`, `/queue/direct`, `/queue/stats`, `/metrics`; see `queue`)
//! for the fault probes. It shares only the Twilio signer with the monitor and is kept out of
//! the monitor's modules on purpose.
//!
//! Contract with callers: once the socket is bound, stdout gets exactly one line,
//! `listening on http://IP:PORT`, and nothing else ever; errors go to stderr. SIGINT or SIGTERM
//! stops accepting, lets open connections finish for a moment, and exits 0.

mod calls;
mod capacity;
mod catalog;
mod db;
mod events;
mod orders;
mod process;
mod queue;
mod reply;
mod reports;
mod routes;
mod timing;
mod webhook;

use std::convert::Infallible;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::routes::App;

/// Environment variable consulted when `--database-url` is not given.
const DATABASE_ENV: &str = "PLIMSOLL_SAMPLE_DATABASE_URL";
/// Environment variable consulted when `--redis-url` is not given.
const REDIS_ENV: &str = "PLIMSOLL_SAMPLE_REDIS_URL";
/// Environment variable consulted when `--queue-redis-url` is not given.
const QUEUE_REDIS_ENV: &str = "PLIMSOLL_SAMPLE_QUEUE_REDIS_URL";
/// Environment variable consulted when `--twilio-auth-token` is not given.
const TOKEN_ENV: &str = "PLIMSOLL_SAMPLE_TWILIO_TOKEN";
/// Token used when neither the flag nor the environment gives one; the demo signs with it.
const DEFAULT_TOKEN: &str = "plimsoll-demo-token";
/// How long open connections may keep going after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Runtime workers. Two keep the backend from competing with the load generator for every
/// core when both run on one machine, and are plenty for the demo's rates.
const WORKER_THREADS: usize = 2;

/// The HTTP service that Plimsoll's demo and integration tests probe.
#[derive(Debug, Parser)]
#[command(name = "plimsoll-sample-backend", version)]
struct Cli {
    /// Address to listen on; port 0 picks a free port (the real one is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,

    /// Twilio auth token the webhook's signatures are checked against
    /// [default: $PLIMSOLL_SAMPLE_TWILIO_TOKEN, else "plimsoll-demo-token"].
    #[arg(long, value_name = "TOKEN")]
    twilio_auth_token: Option<String>,

    /// PostgreSQL URL of the order API (`/orders`); its tables are created on start. Without
    /// it the orders live in memory [default: $PLIMSOLL_SAMPLE_DATABASE_URL].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,

    /// Redis URL whose pub/sub channel `--events-channel` feeds the WebSocket `/ws/events`
    /// (and which `POST /events` publishes to). Without it the events stay in this process
    /// [default: $PLIMSOLL_SAMPLE_REDIS_URL].
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,

    /// Redis channel of the events.
    #[arg(long, value_name = "NAME", default_value = "events")]
    events_channel: String,

    /// Redis URL of the webhook job queue (`/queue/jobs`), usually through a fault proxy's
    /// listener; it need not be up at start. Its fallback queue is PostgreSQL with
    /// `--database-url`, else memory. Without it `/queue/…` answers 503
    /// [default: $PLIMSOLL_SAMPLE_QUEUE_REDIS_URL].
    #[arg(long, value_name = "URL")]
    queue_redis_url: Option<String>,

    /// Redis list the queue's jobs go to.
    #[arg(long, value_name = "KEY", default_value = "webhook-jobs")]
    queue_key: String,

    /// Longest Redis exchange of the queue (connecting included), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    queue_redis_timeout_ms: u64,

    /// How long the queue's circuit breaker stays open before it probes Redis again, in
    /// milliseconds (seed 001 uses 30000; short by default so short outages show recovery).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    breaker_open_ms: u64,

    /// Jobs per second the queue's workers take off the Redis list.
    #[arg(long, value_name = "N", default_value_t = 500)]
    queue_work_rate: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let token = cli
        .twilio_auth_token
        .or_else(|| std::env::var(TOKEN_ENV).ok())
        .unwrap_or_else(|| DEFAULT_TOKEN.to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let database_url = cli
        .database_url
        .or_else(|| std::env::var(DATABASE_ENV).ok())
        .filter(|u| !u.is_empty());
    let redis_url = cli
        .redis_url
        .or_else(|| std::env::var(REDIS_ENV).ok())
        .filter(|u| !u.is_empty());
    let queue = cli
        .queue_redis_url
        .or_else(|| std::env::var(QUEUE_REDIS_ENV).ok())
        .filter(|u| !u.is_empty())
        .map(|redis_url| queue::QueueSettings {
            redis_url,
            key: cli.queue_key,
            redis_timeout: Duration::from_millis(cli.queue_redis_timeout_ms.max(1)),
            breaker_open: Duration::from_millis(cli.breaker_open_ms),
            work_rate: cli.queue_work_rate,
        });
    let stores = Stores {
        database_url,
        redis_url,
        events_channel: cli.events_channel,
        queue,
    };
    runtime.block_on(serve(&cli.listen, token, stores))
}

/// The data stores the backend was pointed at.
struct Stores {
    database_url: Option<String>,
    redis_url: Option<String>,
    events_channel: String,
    queue: Option<queue::QueueSettings>,
}

/// Binds, announces the address, and serves until a shutdown signal.
async fn serve(listen: &str, token: String, stores: Stores) -> anyhow::Result<()> {
    // The stores come first: a backend that cannot reach them exits before announcing an
    // address, instead of serving 503s nobody asked for.
    let events = match &stores.redis_url {
        Some(url) => events::Events::with_redis(url, &stores.events_channel)
            .await
            .context("subscribing to the Redis events channel")?,
        None => events::Events::in_process(),
    };
    let queue = match stores.queue {
        Some(settings) => Some(
            queue::Queue::start(settings, stores.database_url.as_deref())
                .await
                .context("starting the job queue")?,
        ),
        None => None,
    };
    let orders = match stores.database_url {
        Some(url) => orders::Orders::connect(&url)
            .await
            .context("connecting to the order database")?,
        None => orders::Orders::in_memory(),
    };
    let app =
        Arc::new(App::new(token, orders, events, queue).context("starting the timer thread")?);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    // Listen for signals before announcing, so a caller that signals right after reading the
    // line is heard.
    let stop = shutdown_signal()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{local}").context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
    }

    // Shutdown follows mini-redis: one watch broadcast tells connections to wind down, and
    // each holds a clone of `alive`; when every clone is dropped, `drained` resolves.
    let (shutdown_tx, shutdown_rx) = watch::channel(());
    let (alive, mut drained) = mpsc::channel::<()>(1);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            signal = &mut stop => {
                signal.context("waiting for a shutdown signal")?;
                break;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    tokio::spawn(serve_connection(
                        stream,
                        Arc::clone(&app),
                        shutdown_rx.clone(),
                        alive.clone(),
                    ));
                }
                Err(e) => {
                    // Usually out of file descriptors under a heavy run: back off briefly
                    // instead of spinning on the error.
                    eprintln!("plimsoll-sample-backend: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }

    drop(listener);
    // `send` only fails when no connection is listening, which needs no telling.
    let _ = shutdown_tx.send(());
    drop(alive);
    if tokio::time::timeout(SHUTDOWN_GRACE, drained.recv())
        .await
        .is_err()
    {
        eprintln!("plimsoll-sample-backend: closing connections still open after the grace period");
    }
    Ok(())
}

/// Serves one connection, HTTP/1.1 or HTTP/2 (prior knowledge), until it closes or shutdown.
async fn serve_connection(
    stream: TcpStream,
    app: Arc<App>,
    mut shutdown: watch::Receiver<()>,
    _alive: mpsc::Sender<()>,
) {
    // Small request/response exchanges: Nagle's algorithm would only add latency.
    let _ = stream.set_nodelay(true);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Timers let hyper enforce its header-read timeout and HTTP/2 keep-alive.
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let service = service_fn(move |request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Infallible>(routes::respond(&app, request).await) }
    });
    // With upgrades: `/ws/events` turns its connection into a WebSocket.
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // Connection errors (resets, half-written requests) are the client's business and would
    // flood stderr during a load run, so they are dropped.
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Resolves on SIGINT or SIGTERM. Registered eagerly so no signal is missed after it returns.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            Ok(())
        })
    }
    #[cfg(not(unix))]
    {
        Ok(tokio::signal::ctrl_c())
    }
}
