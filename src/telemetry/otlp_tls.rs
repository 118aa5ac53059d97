//! TLS to `https://` OTLP collectors: one set of trust anchors (the system store, the bundled
//! web roots and `[otlp] ca_file`) and an optional client certificate, handed to tonic for
//! gRPC and to a connector of ours for HTTP/protobuf, whose exporter's own hyper client speaks
//! plain HTTP only.
//!
//! What it must not do: load certificates per export (they are read once, at start), or
//! connect anywhere but the endpoint it is given. A collector whose certificate fails
//! verification is an export error like any other: counted and logged by `otlp_export`.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use opentelemetry_otlp::tonic_types::transport::{ClientTlsConfig, Identity};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::OtlpConfig;

/// Largest PEM file read for a TLS setting: a CA bundle, a certificate chain or a key.
const MAX_PEM_BYTES: u64 = 4 * 1024 * 1024;

/// Why the TLS settings of OTLP export cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OtlpTlsError {
    #[error("cannot read the OTLP {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: crate::config::ReadError,
    },
    #[error("the OTLP {what} {path} is not usable PEM: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the OTLP {what} {path} holds no certificate")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("cannot set up TLS for OTLP export: {0}")]
    Setup(rustls::Error),
    #[error("the OTLP client certificate and key do not make a TLS identity: {0}")]
    Identity(rustls::Error),
    #[error("the OTLP client certificate needs its key (and the key its certificate)")]
    HalfIdentity,
}

/// The TLS material of OTLP export, read once at start.
#[derive(Clone)]
pub(super) struct OtlpTls {
    roots: Arc<rustls::RootCertStore>,
    /// Client certificate and key, as PEM text (tonic) and parsed (rustls).
    identity: Option<ClientIdentity>,
}

#[derive(Clone)]
struct ClientIdentity {
    cert_pem: String,
    key_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

fn read_pem(what: &'static str, path: &Path) -> Result<String, OtlpTlsError> {
    crate::config::read_bounded(path, MAX_PEM_BYTES).map_err(|source| OtlpTlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(
    what: &'static str,
    path: &Path,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, OtlpTlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| OtlpTlsError::Pem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(OtlpTlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

impl OtlpTls {
    /// Reads the table's files, or the standard `OTEL_EXPORTER_OTLP_CERTIFICATE`,
    /// `…_CLIENT_CERTIFICATE` and `…_CLIENT_KEY` when the table is silent.
    pub(super) fn load(
        cfg: &OtlpConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<OtlpTls, OtlpTlsError> {
        let path_of = |own: &Option<PathBuf>, var: &str| {
            own.clone()
                .or_else(|| env(var).filter(|v| !v.trim().is_empty()).map(PathBuf::from))
        };
        let ca_file = path_of(&cfg.ca_file, "OTEL_EXPORTER_OTLP_CERTIFICATE");
        let client_cert = path_of(&cfg.client_cert, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE");
        let client_key = path_of(&cfg.client_key, "OTEL_EXPORTER_OTLP_CLIENT_KEY");

        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        // The system store: where an organisation's own CA usually lives. Unreadable
        // entries are skipped, as curl and the Go runtime do; a host without one still has
        // the web roots and `ca_file`.
        let system = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(system.certs);
        if let Some(path) = &ca_file {
            let pem = read_pem("CA file", path)?;
            for c in certificates("CA file", path, &pem)? {
                roots.add(c).map_err(|e| OtlpTlsError::Pem {
                    what: "CA file",
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
        }

        let identity = match (client_cert, client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let cert_pem = read_pem("client certificate", &cert)?;
                let key_pem = read_pem("client key", &key)?;
                let chain = certificates("client certificate", &cert, &cert_pem)?;
                let parsed = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
                    OtlpTlsError::Pem {
                        what: "client key",
                        path: key.clone(),
                        reason: e.to_string(),
                    }
                })?;
                Some(ClientIdentity {
                    cert_pem,
                    key_pem,
                    chain,
                    key: Arc::new(parsed),
                })
            }
            _ => return Err(OtlpTlsError::HalfIdentity),
        };
        let tls = OtlpTls {
            roots: Arc::new(roots),
            identity,
        };
        // A key that does not match its certificate is found now, not at the first export.
        tls.rustls_config()?;
        Ok(tls)
    }

    /// The gRPC channel's TLS settings (used only when the endpoint is `https://`).
    pub(super) fn tonic_config(&self) -> ClientTlsConfig {
        let mut c = ClientTlsConfig::new().trust_anchors(self.roots.roots.iter().cloned());
        if let Some(id) = &self.identity {
            c = c.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
        }
        c
    }

    /// The HTTP/protobuf exporter's client: hyper's pooled client over our connector.
    pub(super) fn http_client(
        &self,
        timeout: Duration,
    ) -> Result<opentelemetry_http::hyper::HyperClient<OtlpConnector>, OtlpTlsError> {
        let connector = OtlpConnector {
            tls: tokio_rustls::TlsConnector::from(Arc::new(self.rustls_config()?)),
        };
        Ok(opentelemetry_http::hyper::HyperClient::new(
            connector, timeout, None,
        ))
    }

    fn rustls_config(&self) -> Result<rustls::ClientConfig, OtlpTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(OtlpTlsError::Setup)?
            .with_root_certificates(Arc::clone(&self.roots));
        let mut cfg = match &self.identity {
            None => builder.with_no_client_auth(),
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(OtlpTlsError::Identity)?,
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// Connects hyper's client to an OTLP/HTTP collector: plain TCP for `http://`, TLS for
/// `https://`.
#[derive(Clone)]
pub(super) struct OtlpConnector {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for OtlpConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtlpConnector")
    }
}

/// A byte stream to the collector, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

pub(super) struct OtlpStream(TokioIo<Box<dyn Io>>);

impl tower_service::Service<http::Uri> for OtlpConnector {
    type Response = OtlpStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<OtlpStream, io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_string());
            let https = match uri.scheme_str() {
                Some("https") => true,
                Some("http") => false,
                _ => return Err(bad("the OTLP endpoint is neither http:// nor https://")),
            };
            let host = uri
                .host()
                .ok_or_else(|| bad("the OTLP endpoint has no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            if !https {
                return Ok(OtlpStream(TokioIo::new(Box::new(tcp))));
            }
            let name = ServerName::try_from(host)
                .map_err(|_| bad("the OTLP endpoint's host is not a valid TLS server name"))?;
            let stream = tls.connect(name, tcp).await?;
            Ok(OtlpStream(TokioIo::new(Box::new(stream))))
        })
    }
}

impl Connection for OtlpStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for OtlpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for OtlpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
