//! What the kinds that speak to Redis share — the workload probe (`redis.rs`) and the pub/sub
//! probe's Redis publisher and subscriber (`pubsub/`): building a client from a URL and its TLS
//! settings, and naming a Redis error's kind. Neither kind imports the other.

use ::redis::{Client, RedisError};

use crate::config::RedisTlsConfig;

/// Largest PEM file read for a Redis TLS setting: a CA bundle, a certificate chain or a key.
const MAX_PEM_BYTES: u64 = 4 * 1024 * 1024;

/// A Redis client for `url`, with the TLS settings of a `rediss://` URL (validation has
/// refused them on any other). Shared by the workload probe and the pub/sub probe's Redis
/// publisher. Nothing connects here: a bad CA file or key is reported now, a server that
/// fails verification at the first connection (a `connect` error).
///
/// The URL may hold a password: the client's error messages never quote it, and neither do
/// these.
pub fn client(url: &str, tls: Option<&RedisTlsConfig>) -> Result<Client, String> {
    use ::redis::{ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, TlsCertificates};
    let info = url
        .into_connection_info()
        .map_err(|e| format!("the Redis URL is not usable ({:?})", e.kind()))?;
    let Some(tls) = tls else {
        return Client::open(info)
            .map_err(|e| format!("the Redis URL is not usable ({:?})", e.kind()));
    };
    // `insecure_skip_verify` is the URL's `#insecure`, set on the parsed address.
    let info = match info.addr().clone() {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            tls_params,
        } => info.set_addr(ConnectionAddr::TcpTls {
            host,
            port,
            insecure: insecure || tls.insecure_skip_verify,
            tls_params,
        }),
        _ => info,
    };
    let pem = |path: &std::path::Path, what: &str| {
        crate::config::read_bounded(path, MAX_PEM_BYTES)
            .map(String::into_bytes)
            .map_err(|e| format!("cannot read the Redis TLS {what} {}: {e}", path.display()))
    };
    let root_cert = tls
        .ca_file
        .as_deref()
        .map(|p| pem(p, "CA file"))
        .transpose()?;
    let client_tls = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: pem(cert, "client certificate")?,
            client_key: pem(key, "client key")?,
        }),
        _ => None,
    };
    if root_cert.is_none() && client_tls.is_none() {
        return Client::open(info)
            .map_err(|e| format!("the Redis URL is not usable ({:?})", e.kind()));
    }
    // Parses the PEM files now: a CA file without a certificate is a configuration mistake
    // to report before any connection.
    Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| format!("the Redis TLS settings are not usable: {e}"))
}

/// The `errors_by_kind` name of a Redis error: `connect`, `timeout`, `io` (a connection that
/// broke), `protocol` (an answer that could not be parsed), `auth`, `server` (an error reply:
/// OOM, READONLY, WRONGTYPE, …) or `client`.
pub fn error_kind(e: &RedisError) -> &'static str {
    use ::redis::ErrorKind as K;
    if e.is_connection_refusal() {
        "connect"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_connection_dropped() || e.is_io_error() {
        "io"
    } else {
        match e.kind() {
            K::Parse | K::UnexpectedReturnType => "protocol",
            K::AuthenticationFailed => "auth",
            K::Server(_) | K::Extension => "server",
            _ => "client",
        }
    }
}
