//! The HTTP hot path: endpoints, connections (HTTP/1.1 keep-alive, HTTP/2, TLS with rustls)
//! and one request-response exchange, with every failure sorted into a named error kind.
//!
//! No pooled client sits on the hot path: each virtual user owns its HTTP/1.1 connection,
//! driven inline by [`super::h1`] (no dispatcher task, no channel, no per-request allocation),
//! or shares its worker's HTTP/2 connection through hyper's connection API.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::h1::{H1Conn, Response1};
use super::rxstamp::StampedTcp;

pub use crate::config::BaseUrl;
use crate::config::{HttpVersion, TlsConfig};

/// The body type of every request the engine sends.
pub type ReqBody = Full<Bytes>;

/// Why a request failed. The names are the `kind` label of
/// `plimsoll_http_request_errors_total` and the keys of `errors_by_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// Name resolution, refused or unreachable connection.
    Connect,
    /// TLS handshake or certificate failure.
    Tls,
    /// No complete response within the request timeout.
    Timeout,
    /// A response whose status is not accepted.
    Status,
    /// A response body that broke off or exceeded the size limit.
    Body,
    /// Malformed HTTP, or a connection closed before the response.
    Protocol,
    /// A response that failed an expectation of the step.
    Expect,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Status,
        ErrorKind::Body,
        ErrorKind::Protocol,
        ErrorKind::Expect,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Status => "status",
            ErrorKind::Body => "body",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Expect => "expect",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed request: its kind and a message for the summary.
#[derive(Debug, Clone)]
pub struct RequestError {
    pub kind: ErrorKind,
    pub message: String,
}

impl RequestError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RequestError {
            kind,
            message: message.into(),
        }
    }
}

/// A place requests go to: one scheme, host and port, with its TLS settings.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub base: BaseUrl,
    pub http: HttpVersion,
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: Option<ServerName<'static>>,
}

impl Endpoint {
    /// Parses and checks a base URL (`http://host:port/prefix`); see [`crate::config::parse_base_url`].
    pub fn parse_base(url: &str) -> Result<BaseUrl, String> {
        crate::config::parse_base_url(url).map_err(|e| e.to_string())
    }

    /// Builds an endpoint, with its TLS configuration when the scheme is https.
    pub fn new(base: BaseUrl, http: HttpVersion, tls: &TlsConfig) -> Result<Self, String> {
        let (cfg, server_name) = if base.tls {
            let name = tls.server_name.clone().unwrap_or_else(|| base.host.clone());
            let server_name = ServerName::try_from(name.clone())
                .map_err(|_| format!("{name:?} is not a valid TLS server name"))?;
            (
                Some(Arc::new(client_tls_config(tls, http)?)),
                Some(server_name),
            )
        } else {
            (None, None)
        };
        Ok(Endpoint {
            base,
            http,
            tls: cfg,
            server_name,
        })
    }

    /// Resolves the host once; callers cache the answer for the run.
    pub async fn resolve(&self) -> Result<Vec<SocketAddr>, RequestError> {
        let addrs: Vec<SocketAddr> =
            tokio::net::lookup_host((self.base.host.as_str(), self.base.port))
                .await
                .map_err(|e| {
                    RequestError::new(
                        ErrorKind::Connect,
                        format!("cannot resolve {}: {e}", self.base.host),
                    )
                })?
                .collect();
        if addrs.is_empty() {
            return Err(RequestError::new(
                ErrorKind::Connect,
                format!("{} resolves to no address", self.base.host),
            ));
        }
        Ok(addrs)
    }

    /// Whether its connections stamp responses with their arrival ([`Conn::received_at`]):
    /// plain HTTP/1.1, not TLS or HTTP/2.
    pub fn stamps_responses(&self) -> bool {
        self.tls.is_none() && self.http != HttpVersion::Http2
    }

    /// Opens a connection and completes the TLS and HTTP handshakes.
    pub async fn connect(&self, addrs: &[SocketAddr]) -> Result<Conn, RequestError> {
        self.connect_with(addrs, false).await
    }

    /// [`connect`](Self::connect), with the kernel's receive stamps on a plain HTTP/1.1
    /// connection ([`Conn::received_at`]), for a reader that may read a response late.
    pub async fn connect_stamped(&self, addrs: &[SocketAddr]) -> Result<Conn, RequestError> {
        self.connect_with(addrs, true).await
    }

    async fn connect_with(&self, addrs: &[SocketAddr], stamp: bool) -> Result<Conn, RequestError> {
        let mut last = None;
        let mut tcp = None;
        for a in addrs {
            match tokio::net::TcpStream::connect(a).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(format!("connect to {a}: {e}")),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            RequestError::new(
                ErrorKind::Connect,
                last.unwrap_or_else(|| "no address".into()),
            )
        })?;
        // Requests are small and latency is the measurement: never let Nagle hold one back.
        let _ = tcp.set_nodelay(true);
        match (&self.tls, &self.server_name) {
            (Some(cfg), Some(name)) => {
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| {
                        RequestError::new(
                            ErrorKind::Tls,
                            format!("TLS handshake with {}: {e}", self.base.authority),
                        )
                    })?;
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    h2_handshake(TokioIo::new(tls)).await
                } else {
                    Ok(Conn::H1Tls(Box::new(H1Conn::new(tls))))
                }
            }
            _ if self.http == HttpVersion::Http2 => h2_handshake(TokioIo::new(tcp)).await,
            _ => Ok(Conn::H1(H1Conn::new(StampedTcp::new(tcp, stamp)))),
        }
    }
}

async fn h2_handshake<IO>(io: IO) -> Result<Conn, RequestError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .map_err(|e| RequestError::new(ErrorKind::Protocol, format!("HTTP/2 handshake: {e}")))?;
    // The connection task ends when every sender is dropped or the peer closes.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn::H2(send))
}

/// An open connection.
pub enum Conn {
    H1(H1Conn<StampedTcp>),
    H1Tls(Box<H1Conn<TlsStream<TcpStream>>>),
    H2(hyper::client::conn::http2::SendRequest<ReqBody>),
}

impl Conn {
    pub fn is_h2(&self) -> bool {
        matches!(self, Conn::H2(_))
    }

    /// Whether the connection can still carry a request (an idle HTTP/1.1 connection the
    /// server has closed is found out here, before a request is lost on it).
    pub fn is_usable(&mut self) -> bool {
        match self {
            Conn::H1(c) => c.is_usable(),
            Conn::H1Tls(c) => c.is_usable(),
            Conn::H2(s) => !s.is_closed(),
        }
    }

    /// When the last exchange's response finished arriving, by the kernel's receive stamp,
    /// never before `floor` nor after now; `None` where there is no stamp (TLS, HTTP/2, no kernel support).
    pub fn received_at(&self, floor: Instant) -> Option<Instant> {
        match self {
            Conn::H1(c) => c.stream().received_at(floor),
            _ => None,
        }
    }

    /// A handle to the same connection (HTTP/2 multiplexes; HTTP/1.1 cannot be shared).
    pub fn share(&self) -> Option<Conn> {
        match self {
            Conn::H2(s) => Some(Conn::H2(s.clone())),
            _ => None,
        }
    }

    /// One HTTP/1.1 exchange of a serialized request; see [`H1Conn::exchange`]. With `keep`,
    /// the response body is kept there (cleared first), and with `head` the response head,
    /// for a caller that reads the answer; the load hot path passes `None` and nothing is
    /// copied.
    pub async fn exchange_h1(
        &mut self,
        request: &[u8],
        head_request: bool,
        max_body: u64,
        keep: Option<&mut Vec<u8>>,
        head: Option<&mut Vec<u8>>,
    ) -> Result<Response1, RequestError> {
        match self {
            Conn::H1(c) => {
                c.stream_mut().clear_stamp();
                c.exchange_into(request, head_request, max_body, keep, head)
                    .await
            }
            Conn::H1Tls(c) => {
                c.exchange_into(request, head_request, max_body, keep, head)
                    .await
            }
            Conn::H2(_) => Err(RequestError::new(
                ErrorKind::Protocol,
                "an HTTP/1.1 request was sent on an HTTP/2 connection",
            )),
        }
    }

    /// Sends an HTTP/2 request and reads the whole response body; returns the status and the
    /// body's size. Without `keep` the body is drained frame by frame and never kept, so a
    /// 100 MB answer costs no memory, only the `max_body` check; with it, the body is kept
    /// there (cleared first). With `head`, the response head is written there in HTTP/1.1
    /// text form (`HTTP/2 200`, then `name: value` lines), so flows read the headers of both
    /// versions the same way.
    pub async fn exchange_h2(
        &mut self,
        req: Request<ReqBody>,
        max_body: u64,
        mut keep: Option<&mut Vec<u8>>,
        head: Option<&mut Vec<u8>>,
    ) -> Result<Response1, RequestError> {
        if let Some(k) = keep.as_deref_mut() {
            k.clear();
        }
        let Conn::H2(s) = self else {
            return Err(RequestError::new(
                ErrorKind::Protocol,
                "an HTTP/2 request was sent on an HTTP/1.1 connection",
            ));
        };
        s.ready().await.map_err(hyper_error)?;
        let resp = s.send_request(req).await.map_err(hyper_error)?;
        let status = resp.status().as_u16();
        if let Some(h) = head {
            h.clear();
            h.extend_from_slice(format!("HTTP/2 {status}\r\n").as_bytes());
            for (name, value) in resp.headers() {
                h.extend_from_slice(name.as_str().as_bytes());
                h.extend_from_slice(b": ");
                h.extend_from_slice(value.as_bytes());
                h.extend_from_slice(b"\r\n");
            }
            h.extend_from_slice(b"\r\n");
        }
        let mut body = resp.into_body();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| RequestError::new(ErrorKind::Body, format!("reading body: {e}")))?;
            if let Some(d) = frame.data_ref() {
                n += d.len() as u64;
                if n > max_body {
                    return Err(super::h1::too_large(max_body));
                }
                if let Some(k) = keep.as_deref_mut() {
                    k.extend_from_slice(d);
                }
            }
        }
        Ok(Response1 {
            status,
            body_bytes: n,
            reusable: true,
        })
    }
}

fn hyper_error(e: hyper::Error) -> RequestError {
    // Timeouts are the engine's own (a deadline around the exchange), so whatever hyper
    // reports is the peer breaking the protocol: garbage, or a close before the response.
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Protocol
    };
    // hyper's Display is terse; its source chain has the detail (the parse error, the I/O error).
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    RequestError::new(kind, msg)
}

pub(crate) fn client_tls_config(
    tls: &TlsConfig,
    http: HttpVersion,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let mut cfg = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &tls.ca_file {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
            let mut added = 0;
            for c in certs {
                let c = c.map_err(|e| format!("CA file {}: {e}", path.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("CA file {}: {e}", path.display()))?;
                added += 1;
            }
            if added == 0 {
                return Err(format!("CA file {} holds no certificate", path.display()));
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    cfg.alpn_protocols = match http {
        HttpVersion::Http1 => vec![b"http/1.1".to_vec()],
        HttpVersion::Http2 => vec![b"h2".to_vec()],
        HttpVersion::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(cfg)
}

/// Certificate verifier for `insecure_skip_verify`: accepts any certificate, but still checks
/// the handshake signatures so the session keys are sound.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
