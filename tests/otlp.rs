//! OTLP export over real sockets: `plimsoll run` against a target that records the
//! `traceparent` headers it receives, exporting to a real OTLP receiver started here (the
//! collector's gRPC services from `opentelemetry-proto`, and an HTTP/protobuf receiver), and
//! to a collector that never answers, which must not disturb the schedule. Both transports
//! also over TLS with certificates made here (a CA file, a client certificate the receiver
//! requires, headers from the table and from `OTEL_EXPORTER_OTLP_HEADERS`), and to a
//! collector whose certificate the daemon must refuse.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon::Daemon;
use common::raw_server;
use common::tls::TestPki;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// What a receiver got.
#[derive(Clone, Default)]
struct Store {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    /// `x-…` headers (gRPC metadata) of every export, lower-case name and value.
    headers: Arc<Mutex<HashSet<(String, String)>>>,
}

impl Store {
    fn note_header(&self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        if name.starts_with("x-") {
            self.headers
                .lock()
                .unwrap()
                .insert((name, value.trim().to_string()));
        }
    }

    fn note_metadata(&self, m: &tonic::metadata::MetadataMap) {
        for (k, v) in m.clone().into_headers().iter() {
            self.note_header(k.as_str(), v.to_str().unwrap_or(""));
        }
    }
}

#[tonic::async_trait]
impl TraceService for Store {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.note_metadata(req.metadata());
        self.traces.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Store {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.note_metadata(req.metadata());
        self.metrics.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A gRPC OTLP receiver on 127.0.0.1; lives as long as the test process.
fn grpc_receiver(store: Store) -> u16 {
    grpc_receiver_with(store, None)
}

/// Same over TLS, with the PKI's server certificate, requiring a client certificate
/// signed by its CA.
fn grpc_tls_receiver(store: Store, pki: &TestPki) -> u16 {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            &pki.server_cert_pem,
            &pki.server_key_pem,
        ))
        .client_ca_root(Certificate::from_pem(&pki.ca_pem));
    grpc_receiver_with(store, Some(tls))
}

fn grpc_receiver_with(store: Store, tls: Option<tonic::transport::ServerTlsConfig>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            let mut server = tonic::transport::Server::builder();
            if let Some(tls) = tls {
                server = server.tls_config(tls).unwrap();
            }
            server
                .add_service(TraceServiceServer::new(store.clone()))
                .add_service(MetricsServiceServer::new(store))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(l))
                .await
                .unwrap();
        });
    });
    port
}

/// An HTTP/protobuf OTLP receiver (`POST /v1/traces`, `POST /v1/metrics`).
fn http_receiver(store: Store) -> u16 {
    raw_server(move |s| serve_http_exports(s, &store))
}

/// Same over TLS (rustls, ring), requiring a client certificate signed by the PKI's CA.
fn http_tls_receiver(store: Store, pki: &TestPki) -> u16 {
    use rustls_pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![
                rustls_pki_types::CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes())
                    .unwrap(),
            ],
            rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let config = Arc::new(config);
    raw_server(move |s| {
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let conn = rustls::ServerConnection::new(config.clone()).unwrap();
        serve_http_exports(rustls::StreamOwned::new(conn, s), &store);
    })
}

/// Serves OTLP/HTTP exports on one connection until the client closes it.
fn serve_http_exports<S: Read + Write>(s: S, store: &Store) {
    let mut r = BufReader::new(s);
    {
        loop {
            let (mut path, mut len) = (String::new(), 0usize);
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some(rest) = l.strip_prefix("POST ") {
                    path = rest.split(' ').next().unwrap_or("").to_string();
                }
                if let Some((k, v)) = l.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap();
                    }
                    store.note_header(k, v);
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                return;
            }
            match path.as_str() {
                "/v1/traces" => store
                    .traces
                    .lock()
                    .unwrap()
                    .push(ExportTraceServiceRequest::decode(&body[..]).unwrap()),
                "/v1/metrics" => store
                    .metrics
                    .lock()
                    .unwrap()
                    .push(ExportMetricsServiceRequest::decode(&body[..]).unwrap()),
                other => panic!("unexpected OTLP path {other:?}"),
            }
            let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
            let w = r.get_mut();
            if w.write_all(ok.as_bytes()).is_err() || w.flush().is_err() {
                return;
            }
        }
    }
}

/// What the target received: every `traceparent` value, and the number of requests.
type Received = (Arc<Mutex<Vec<String>>>, Arc<Mutex<u64>>);

/// A target that answers 200 and keeps every `traceparent` it receives, and counts requests.
fn traceparent_target() -> (u16, Received) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(Mutex::new(0u64));
    let (s2, c2) = (seen.clone(), count.clone());
    let port = raw_server(move |s| {
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if let Some(v) = line.strip_prefix("traceparent: ") {
                s2.lock().unwrap().push(v.trim().to_string());
            }
            if line == "\r\n" {
                *c2.lock().unwrap() += 1;
                if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    (port, (seen, count))
}

fn config(dir: &tempfile::TempDir, target: u16, otlp: &str) -> std::path::PathBuf {
    let p = dir.path().join("plimsoll.toml");
    std::fs::write(
        &p,
        format!(
            r#"
[report]
dir = ""
[otlp]
{otlp}
[[probe]]
name = "traced"
kind = "load"
schedule = {{ every = "1s" }}
[probe.load]
workers = 1
request = {{ url = "http://127.0.0.1:{target}/hello" }}
[[probe.load.phases]]
name = "warm"
duration = "300ms"
rate = 40
[[probe.load.phases]]
name = "steady"
duration = "400ms"
rate = 60
"#
        ),
    )
    .unwrap();
    p
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn str_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key) {
        Some(any_value::Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

/// The HTTP client conventions' attributes of a successful GET to the target.
fn assert_ok_get_attributes(attrs: &[KeyValue], port: u16) {
    assert_eq!(str_attr(attrs, "plimsoll.probe").as_deref(), Some("traced"));
    assert_eq!(
        str_attr(attrs, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        str_attr(attrs, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(int_attr(attrs, "server.port"), Some(i64::from(port)));
    assert_eq!(int_attr(attrs, "http.response.status_code"), Some(200));
    assert!(attr(attrs, "error.type").is_none());
}

fn spans(store: &Store) -> Vec<Span> {
    store
        .traces
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

/// Runs the daemon until its first run has ended, stops it (which flushes OTLP), and checks
/// what the receiver got against what the target saw.
fn check_export(protocol: &str, endpoint: &str, store: &Store) {
    check_export_with(protocol, endpoint, "", &[], store);
}

/// Same, with more `[otlp]` settings and environment variables for the daemon.
fn check_export_with(
    protocol: &str,
    endpoint: &str,
    otlp: &str,
    env: &[(&str, &str)],
    store: &Store,
) {
    let (port, (traceparents, requests)) = traceparent_target();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &dir,
        port,
        &format!(
            "endpoint = \"{endpoint}\"\nprotocol = \"{protocol}\"\nsample_ratio = 0.5\n\
             metrics_interval = \"500ms\"\ntimeout = \"5s\"\n{otlp}"
        ),
    );
    let mut d = Daemon::start(&cfg, env);
    d.wait_for(Duration::from_secs(15), |p| {
        p[0]["runs"].as_u64() >= Some(1)
    });
    d.signal("-TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        d.log_text()
    );
    let log = d.log_text();

    let all = spans(store);
    let roots: Vec<&Span> = all.iter().filter(|s| s.name == "probe traced").collect();
    assert!(!roots.is_empty(), "no root span in {all:#?}\n{log}");
    for r in &roots {
        assert_eq!(
            str_attr(&r.attributes, "plimsoll.probe").as_deref(),
            Some("traced")
        );
        assert_eq!(
            str_attr(&r.attributes, "plimsoll.kind").as_deref(),
            Some("load")
        );
        assert!(str_attr(&r.attributes, "plimsoll.grade").is_some());
        assert!(int_attr(&r.attributes, "plimsoll.requests").unwrap() > 0);
        assert_eq!(int_attr(&r.attributes, "plimsoll.errors"), Some(0));
        assert!(r.parent_span_id.is_empty());
        assert!(r.end_time_unix_nano > r.start_time_unix_nano);
    }
    let root_ids: HashSet<(Vec<u8>, Vec<u8>)> = roots
        .iter()
        .map(|r| (r.trace_id.clone(), r.span_id.clone()))
        .collect();
    let child_of_root =
        |s: &Span| root_ids.contains(&(s.trace_id.clone(), s.parent_span_id.clone()));

    for phase in ["warm", "steady"] {
        let p: Vec<&Span> = all.iter().filter(|s| s.name == phase).collect();
        assert_eq!(p.len(), roots.len(), "one {phase} span per run");
        assert!(p.iter().all(|s| child_of_root(s)));
    }

    // Client spans: exactly the requests whose traceparent the target received.
    let clients: Vec<&Span> = all.iter().filter(|s| s.kind == 3).collect();
    let sent: HashSet<String> = traceparents.lock().unwrap().iter().cloned().collect();
    let exported: HashSet<String> = clients
        .iter()
        .map(|s| format!("00-{}-{}-01", hex(&s.trace_id), hex(&s.span_id)))
        .collect();
    assert!(!sent.is_empty(), "the target received no traceparent");
    assert_eq!(exported, sent);
    // Sampled at about half: not every request, not none.
    let total = *requests.lock().unwrap();
    assert!(
        (sent.len() as u64) < total,
        "{} of {total} traced",
        sent.len()
    );
    for c in &clients {
        assert!(child_of_root(c), "client span outside its run's trace");
        assert_eq!(c.name, "GET");
        assert_ok_get_attributes(&c.attributes, port);
        assert!(c.end_time_unix_nano >= c.start_time_unix_nano);
    }

    // The duration histogram: cumulative, so the last export counts every request.
    let metrics = store.metrics.lock().unwrap();
    let last = metrics
        .last()
        .unwrap_or_else(|| panic!("no metrics exported\n{log}"));
    let ms: Vec<_> = last
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .collect();
    let h = ms
        .iter()
        .find(|m| m.name == "http.client.request.duration")
        .expect("http.client.request.duration exported");
    assert_eq!(h.unit, "s");
    let Some(metric::Data::Histogram(hist)) = &h.data else {
        panic!("not a histogram: {h:?}")
    };
    let mut count = 0;
    for p in &hist.data_points {
        assert_ok_get_attributes(&p.attributes, port);
        assert_eq!(p.explicit_bounds.len(), 14);
        count += p.count;
    }
    assert_eq!(
        count, total,
        "histogram count = requests the target answered"
    );
    for name in [
        "plimsoll.probe.grade",
        "plimsoll.probe.success",
        "plimsoll.probe.duration",
    ] {
        assert!(ms.iter().any(|m| m.name == name), "{name} missing");
    }
}

#[test]
fn grpc_export_carries_runs_phases_and_the_client_spans_the_target_saw() {
    let store = Store::default();
    let port = grpc_receiver(store.clone());
    check_export("grpc", &format!("http://127.0.0.1:{port}"), &store);
}

#[test]
fn http_protobuf_export_carries_the_same() {
    let store = Store::default();
    let port = http_receiver(store.clone());
    check_export("http/protobuf", &format!("http://127.0.0.1:{port}"), &store);
}

/// A collector that accepts connections and never answers: exports hang until their timeout,
/// the span queue fills. Probes must keep their ticks, `/metrics` must answer and count the
/// drops, and SIGTERM must still end the daemon promptly.
#[test]
fn a_collector_that_never_answers_does_not_disturb_the_schedule() {
    let silent = raw_server(common::drain);
    let (port, _) = traceparent_target();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plimsoll.toml");
    std::fs::write(
        &p,
        format!(
            r#"
[report]
dir = ""
[otlp]
endpoint = "http://127.0.0.1:{silent}"
sample_ratio = 1.0
span_queue_size = 30
timeout = "3s"
flush_timeout = "1s"
metrics_interval = "200ms"
[[probe]]
name = "steady"
kind = "load"
schedule = {{ every = "500ms" }}
[probe.load]
workers = 1
request = {{ url = "http://127.0.0.1:{port}/" }}
[[probe.load.phases]]
duration = "100ms"
rate = 100
"#
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&p, &[]);
    let probes = d.wait_for(Duration::from_secs(20), |p| {
        p[0]["runs"].as_u64() >= Some(8)
    });
    let delay = probes[0]["last_start_delay_ms"].as_f64().unwrap();
    assert!(delay < 100.0, "a run started {delay} ms late");
    assert_eq!(probes[0]["skipped"].as_u64(), Some(0));
    let (status, text) = d.get("/metrics", &[]);
    assert_eq!(status, 200);
    let dropped: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("plimsoll_otlp_dropped_total{signal=\"traces\"} "))
        .unwrap_or_else(|| panic!("no trace drop counter in\n{text}"))
        .parse()
        .unwrap();
    // 8 runs of ~10 spans each went to a queue of 30 that never drains.
    assert!(dropped > 0.0, "{text}");
    d.signal("-TERM");
    let started = std::time::Instant::now();
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        d.log_text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        started.elapsed()
    );
}

/// Regression (issue 10.7): while a collector was down, the OpenTelemetry library logged the
/// same error at every export (every metric interval, every span batch). Each of its messages
/// now passes once a minute; our own report of the failures too.
#[test]
fn a_collector_that_is_down_does_not_flood_the_log() {
    for protocol in ["grpc", "http/protobuf"] {
        let down = common::closed_port();
        let (target, _) = traceparent_target();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plimsoll.toml");
        std::fs::write(
            &p,
            format!(
                r#"
[report]
dir = ""
[otlp]
endpoint = "http://127.0.0.1:{down}"
protocol = "{protocol}"
sample_ratio = 1.0
timeout = "1s"
flush_timeout = "1s"
metrics_interval = "100ms"
[[probe]]
name = "steady"
kind = "load"
schedule = {{ every = "300ms" }}
[probe.load]
workers = 1
request = {{ url = "http://127.0.0.1:{target}/" }}
[[probe.load.phases]]
duration = "50ms"
rate = 40
"#
            ),
        )
        .unwrap();
        let mut d = Daemon::start(&p, &[]);
        // Long enough for dozens of failed metric exports (every 100 ms) and span batches.
        d.wait_for(Duration::from_secs(20), |p| {
            p[0]["runs"].as_u64() >= Some(8)
        });
        std::thread::sleep(Duration::from_secs(2));
        let (_, text) = d.get("/metrics", &[]);
        let failed: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("plimsoll_otlp_dropped_total{signal=\"metrics\"} "))
            .map_or(0.0, |v| v.parse().unwrap());
        assert!(
            failed >= 10.0,
            "{protocol}: only {failed} failed metric exports\n{text}"
        );
        d.signal("-TERM");
        assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
        let log = d.log_text();
        // A library line: "<time> <LEVEL> opentelemetry…: <message>"; the same message twice
        // (time aside) is a repeat within the minute.
        let library: Vec<&str> = log
            .lines()
            .filter_map(|l| l.split_once(" opentelemetry").map(|(_, rest)| rest))
            .collect();
        let distinct: HashSet<&str> = library.iter().copied().collect();
        assert_eq!(
            library.len(),
            distinct.len(),
            "{protocol}: a library line repeats within the minute:\n{log}"
        );
        assert!(
            library.len() <= 12,
            "{protocol}: {} library lines:\n{log}",
            library.len()
        );
        let ours = log.matches("OTLP export failed").count();
        assert!(
            ours <= 2,
            "{protocol}: {ours} reports of our own (one per signal at most):\n{log}"
        );
    }
}

fn toml_path(p: &std::path::Path) -> String {
    p.display().to_string().replace('\\', "\\\\")
}

/// `[otlp]` TLS settings for the PKI: its CA, its client certificate, and one header.
fn tls_settings(pki: &TestPki) -> String {
    format!(
        "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n\
         headers = {{ x-from-config = \"table\" }}\n",
        toml_path(&pki.ca_file),
        toml_path(&pki.client_cert_file),
        toml_path(&pki.client_key_file)
    )
}

fn assert_headers(store: &Store) {
    let h = store.headers.lock().unwrap();
    for (k, v) in [("x-from-config", "table"), ("x-from-env", "variable")] {
        assert!(
            h.contains(&(k.to_string(), v.to_string())),
            "header {k}: {v} missing from {h:?}"
        );
    }
}

/// Regression (issue 10, "TLS to real infrastructure"): OTLP could not reach an `https://`
/// collector at all. gRPC over TLS, verified against a CA file, with a client certificate
/// the receiver requires, and headers from the table and from `OTEL_EXPORTER_OTLP_HEADERS`.
#[test]
fn grpc_export_reaches_an_https_collector_with_a_ca_file_and_client_certificate() {
    let pki = TestPki::new();
    let store = Store::default();
    let port = grpc_tls_receiver(store.clone(), &pki);
    check_export_with(
        "grpc",
        &format!("https://127.0.0.1:{port}"),
        &tls_settings(&pki),
        &[("OTEL_EXPORTER_OTLP_HEADERS", "x-from-env=variable")],
        &store,
    );
    assert_headers(&store);
}

/// The same over HTTP/protobuf, whose exporter's own client speaks plain HTTP only.
#[test]
fn http_protobuf_export_reaches_an_https_collector_with_a_ca_file_and_client_certificate() {
    let pki = TestPki::new();
    let store = Store::default();
    let port = http_tls_receiver(store.clone(), &pki);
    check_export_with(
        "http/protobuf",
        &format!("https://127.0.0.1:{port}"),
        &tls_settings(&pki),
        &[("OTEL_EXPORTER_OTLP_HEADERS", "x-from-env=variable")],
        &store,
    );
    assert_headers(&store);
}

/// A collector whose certificate the CA file does not vouch for: every export fails, is
/// counted and logged, and the probe keeps its schedule.
#[test]
fn a_collector_with_an_unknown_certificate_is_refused_and_counted() {
    let pki = TestPki::new();
    for protocol in ["grpc", "http/protobuf"] {
        let store = Store::default();
        let port = match protocol {
            "grpc" => grpc_tls_receiver(store.clone(), &pki),
            _ => http_tls_receiver(store.clone(), &pki),
        };
        let (target, _) = traceparent_target();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plimsoll.toml");
        std::fs::write(
            &p,
            format!(
                r#"
[report]
dir = ""
[otlp]
endpoint = "https://127.0.0.1:{port}"
protocol = "{protocol}"
ca_file = "{}"
sample_ratio = 1.0
timeout = "2s"
flush_timeout = "1s"
metrics_interval = "200ms"
[[probe]]
name = "steady"
kind = "load"
schedule = {{ every = "500ms" }}
[probe.load]
workers = 1
request = {{ url = "http://127.0.0.1:{target}/" }}
[[probe.load.phases]]
duration = "100ms"
rate = 50
"#,
                toml_path(&pki.other_ca_file)
            ),
        )
        .unwrap();
        let mut d = Daemon::start(&p, &[]);
        let probes = d.wait_for(Duration::from_secs(20), |p| {
            p[0]["runs"].as_u64() >= Some(4)
        });
        let delay = probes[0]["last_start_delay_ms"].as_f64().unwrap();
        assert!(delay < 100.0, "{protocol}: a run started {delay} ms late");
        assert_eq!(probes[0]["skipped"].as_u64(), Some(0));
        let dropped = |text: &str, signal: &str| -> f64 {
            let prefix = format!("plimsoll_otlp_dropped_total{{signal=\"{signal}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .map_or(0.0, |v| v.parse().unwrap())
        };
        // Spans go in batches every second: wait for the first one to fail.
        let t0 = std::time::Instant::now();
        loop {
            let (status, text) = d.get("/metrics", &[]);
            assert_eq!(status, 200);
            if dropped(&text, "traces") > 0.0 && dropped(&text, "metrics") > 0.0 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "{protocol}: no failed export counted\n{text}\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        d.signal("-TERM");
        assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
        let log = d.log_text();
        assert!(log.contains("OTLP export failed"), "{protocol}: {log}");
        assert!(
            store.traces.lock().unwrap().is_empty() && store.metrics.lock().unwrap().is_empty(),
            "{protocol}: a collector the daemon must not trust received data"
        );
    }
}

/// A fault probe's run is one trace like any other, with a span for its inject and one for
/// its clear under the run's span, carrying the fault, the action and its outcome, and
/// timed within the run (the inject before the clear).
#[test]
fn a_fault_run_exports_a_span_per_fault_action() {
    let store = Store::default();
    let receiver = grpc_receiver(store.clone());
    let (target, _) = traceparent_target();
    let proxy = common::closed_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("plimsoll.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[report]
dir = ""
[otlp]
endpoint = "http://127.0.0.1:{receiver}"
protocol = "grpc"
sample_ratio = 0.0
timeout = "5s"
[[probe]]
name = "faulty"
kind = "fault"
schedule = {{ every = "1h" }}
[probe.fault]
name = "target-down"
rate = 50
before = "600ms"
hold = "500ms"
after = "600ms"
window = "100ms"
recovery_stretch = "200ms"
[probe.fault.load]
request = {{ url = "http://127.0.0.1:{proxy}/hello" }}
timeout = "500ms"
[[probe.fault.proxy]]
name = "target"
listen = "127.0.0.1:{proxy}"
upstream = "127.0.0.1:{target}"
[probe.fault.inject]
listener = "target"
toxic = [{{ kind = "down" }}]
"#
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&cfg, &[]);
    // A probe's first run comes within 30 s of the start (an hourly one runs once here).
    d.wait_for(Duration::from_secs(45), |p| {
        p[0]["runs"].as_u64() >= Some(1)
    });
    d.signal("-TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        d.log_text()
    );
    let all = spans(&store);
    let root = all
        .iter()
        .find(|s| s.name == "probe faulty")
        .unwrap_or_else(|| panic!("no run span in {all:#?}\n{}", d.log_text()));
    assert_eq!(
        str_attr(&root.attributes, "plimsoll.kind").as_deref(),
        Some("fault")
    );
    let action = |step: &str| {
        let name = format!("fault {step} target-down");
        let s = all
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name} in {all:#?}"));
        assert_eq!(s.trace_id, root.trace_id, "{name} outside the run's trace");
        assert_eq!(s.parent_span_id, root.span_id, "{name} not under the run");
        assert_eq!(
            str_attr(&s.attributes, "plimsoll.fault").as_deref(),
            Some("target-down")
        );
        assert_eq!(
            str_attr(&s.attributes, "plimsoll.fault.step").as_deref(),
            Some(step)
        );
        assert!(
            matches!(
                attr(&s.attributes, "plimsoll.fault.ok"),
                Some(any_value::Value::BoolValue(true))
            ),
            "{s:?}"
        );
        assert!(
            s.start_time_unix_nano >= root.start_time_unix_nano,
            "{name} starts before the run"
        );
        assert!(
            s.end_time_unix_nano <= root.end_time_unix_nano,
            "{name} ends after the run"
        );
        s.clone()
    };
    let inject = action("inject");
    let clear = action("clear");
    assert_eq!(
        str_attr(&inject.attributes, "plimsoll.fault.action").as_deref(),
        Some("toxics target: down")
    );
    assert_eq!(
        str_attr(&clear.attributes, "plimsoll.fault.action").as_deref(),
        Some("toxics target: none")
    );
    assert_eq!(
        str_attr(&clear.attributes, "plimsoll.fault.clear_reason").as_deref(),
        Some("ended")
    );
    // The hold lies between them: 500 ms, give or take the polling.
    let held = (clear.start_time_unix_nano - inject.start_time_unix_nano) as f64 / 1e9;
    assert!((0.45..0.8).contains(&held), "inject to clear {held} s");
}
