//! TLS with rustls and HTTP/2 against a real TLS server on 127.0.0.1 with a throw-away
//! certificate: verification against a configured CA, refusal without it, ALPN choosing the
//! protocol version.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

use common::run_toml;

struct TlsServer {
    port: u16,
    ca_pem: std::path::PathBuf,
    h1: Arc<AtomicU64>,
    h2: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

fn start_tls_server() -> TlsServer {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, ck.cert.pem()).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (h1, h2) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (c1, c2) = (h1.clone(), h2.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, c1, c2) = (acceptor.clone(), c1.clone(), c2.clone());
                tokio::spawn(async move {
                    // A failed handshake (the client refusing our certificate) just ends here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let counter = if req.version() == hyper::Version::HTTP_2 {
                            &c2
                        } else {
                            &c1
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        async {
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"ok"),
                            )))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
    });
    TlsServer {
        port,
        ca_pem,
        h1,
        h2,
        _dir: dir,
    }
}

fn config(s: &TlsServer, http: &str, tls: &str) -> String {
    format!(
        r#"
[[target]]
name = "tls"
url = "https://127.0.0.1:{port}"
http = "{http}"
tls = {{ {tls} }}

[[probe]]
name = "tls"
kind = "load"
target = "tls"
[probe.load]
phases = [{{ duration = "500ms", rate = 40 }}]
timeout = "2s"
[probe.load.request]
url = "/"
"#,
        port = s.port
    )
}

#[test]
fn verified_tls_with_alpn_h2() {
    let s = start_tls_server();
    let ca = format!("ca_file = {:?}", s.ca_pem.to_str().unwrap());
    let r = run_toml(&config(&s, "auto", &ca));
    let st = r.stats.as_ref().unwrap();
    assert_eq!((st.requests, st.errors), (20, 0), "{:?}", st.error_samples);
    assert_eq!(s.h2.load(Ordering::Relaxed), 20, "ALPN should pick HTTP/2");

    let r = run_toml(&config(&s, "1.1", &ca));
    assert_eq!(r.stats.as_ref().unwrap().errors, 0);
    assert_eq!(
        s.h1.load(Ordering::Relaxed),
        20,
        "http = \"1.1\" must stay on HTTP/1.1"
    );
}

#[test]
fn unknown_issuer_is_refused_unless_told_otherwise() {
    let s = start_tls_server();
    let r = run_toml(&config(&s, "auto", ""));
    let st = r.stats.as_ref().unwrap();
    assert_eq!(
        st.errors_by_kind.get("tls"),
        Some(&20),
        "{:?}",
        st.errors_by_kind
    );
    assert!(
        st.error_samples["tls"]
            .to_lowercase()
            .contains("certificate"),
        "{:?}",
        st.error_samples
    );

    let r = run_toml(&config(&s, "auto", "insecure_skip_verify = true"));
    assert_eq!(r.stats.as_ref().unwrap().errors, 0);
}
