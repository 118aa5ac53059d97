//! A compiled request step: everything needed to build its request quickly, per iteration.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::Full;

use super::http::{BaseUrl, Endpoint, ErrorKind, ReqBody, RequestError};
use super::sign::{twilio_signature, TWILIO_SIGNATURE_HEADER};
use super::template::{BodyTemplate, Generators, Signer, Template};
use crate::config::RequestConfig;
use crate::config::{HttpVersion, TargetConfig, TlsConfig};

const USER_AGENT_VALUE: &str = concat!("plimsoll/", env!("CARGO_PKG_VERSION"));

/// A request step ready for the hot path.
#[derive(Debug)]
pub struct PreparedStep {
    /// The `endpoint` label.
    pub name: String,
    pub method: Method,
    /// Index into the load's endpoints.
    pub endpoint: usize,
    target: StepTarget,
    /// Headers for HTTP/1.1 (with Host) and HTTP/2 (without; `:authority` carries it).
    headers_h1: HeaderMap,
    headers_h2: HeaderMap,
    dyn_headers: Vec<(HeaderName, Template)>,
    body: BodyTemplate,
    signer: Option<Signer>,
    accept: Option<Vec<u16>>,
    /// `scheme://authority`, for signing and HTTP/2 URIs.
    origin: String,
    /// The whole HTTP/1.1 request, serialized once, when nothing in it varies.
    h1_static: Option<Vec<u8>>,
    pub is_head: bool,
}

#[derive(Debug)]
enum StepTarget {
    /// Ready URIs: origin-form for HTTP/1.1, absolute for HTTP/2.
    Static { origin_form: Uri, absolute: Uri },
    /// Path and query rendered per iteration.
    Dynamic(Template),
}

/// Scratch buffers one virtual user reuses across iterations.
#[derive(Debug, Default)]
pub struct Scratch {
    pub form: Vec<(String, String)>,
}

impl PreparedStep {
    /// Compiles a validated step, adding its endpoint to `endpoints` if it is new.
    pub fn compile(
        cfg: &RequestConfig,
        target: Option<&TargetConfig>,
        endpoints: &mut Vec<Endpoint>,
        gens: &mut Generators,
    ) -> Result<Self, String> {
        let (base, path) = split_url(&cfg.url, target)?;
        // Requests to the target's own host use its TLS and version settings.
        let (http, tls) = match target {
            Some(t)
                if Endpoint::parse_base(&t.url)
                    .is_ok_and(|b| b.authority == base.authority && b.tls == base.tls) =>
            {
                (t.http, t.tls.clone())
            }
            _ => (HttpVersion::Auto, TlsConfig::default()),
        };
        let endpoint = match endpoints
            .iter()
            .position(|e| e.base.authority == base.authority && e.base.tls == base.tls)
        {
            Some(i) => i,
            None => {
                endpoints.push(Endpoint::new(base.clone(), http, &tls)?);
                endpoints.len() - 1
            }
        };
        let scheme = if base.tls { "https" } else { "http" };
        let origin = format!("{scheme}://{}", base.authority);
        let path_t = Template::compile(&path, gens);
        let target_kind = if path_t.is_static() {
            StepTarget::Static {
                origin_form: path
                    .parse()
                    .map_err(|e| format!("URL path {path:?}: {e}"))?,
                absolute: format!("{origin}{path}")
                    .parse()
                    .map_err(|e| format!("URL {origin}{path}: {e}"))?,
            }
        } else {
            StepTarget::Dynamic(path_t)
        };
        let name = cfg
            .name
            .clone()
            .unwrap_or_else(|| path.split('?').next().unwrap_or("/").to_string());
        let method = Method::from_bytes(cfg.method.as_bytes()).map_err(|e| e.to_string())?;
        let (body, content_type) = BodyTemplate::compile(cfg, gens);

        let mut headers = HeaderMap::new();
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if let Some(ct) = content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        let mut dyn_headers = Vec::new();
        let target_headers = target.map(|t| &t.headers).into_iter().flatten();
        for (k, v) in target_headers.chain(&cfg.headers) {
            let name =
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k}: {e}"))?;
            let t = Template::compile(v.expose(), gens);
            if t.is_static() {
                let value =
                    HeaderValue::from_str(v.expose()).map_err(|e| format!("header {k}: {e}"))?;
                headers.insert(name, value);
            } else {
                dyn_headers.push((name, t));
            }
        }
        // Credentials written into the URL travel as Basic authentication, never in Host.
        if let Some(ui) = &base.userinfo {
            if !headers.contains_key(AUTHORIZATION) {
                use base64::Engine as _;
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", ui.user, ui.password));
                let mut value = HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|e| format!("authorization: {e}"))?;
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
        }
        let headers_h2 = headers.clone();
        let mut headers_h1 = headers;
        headers_h1.insert(
            HOST,
            HeaderValue::from_str(&base.authority).map_err(|e| format!("host: {e}"))?,
        );
        let signer = cfg.sign.as_ref().map(|s| Signer {
            token: Arc::from(s.auth_token.expose().as_bytes()),
            url: s.url.as_ref().map(|u| Template::compile(u, gens)),
        });
        let mut step = PreparedStep {
            name,
            method,
            endpoint,
            target: target_kind,
            headers_h1,
            headers_h2,
            dyn_headers,
            body,
            signer,
            accept: cfg.expect_status.clone(),
            origin,
            h1_static: None,
            is_head: cfg.method.eq_ignore_ascii_case("HEAD"),
        };
        let fixed = matches!(step.target, StepTarget::Static { .. })
            && matches!(step.body, BodyTemplate::Empty | BodyTemplate::Static(_))
            && step.dyn_headers.is_empty()
            && step.signer.is_none();
        if fixed {
            let mut out = Vec::new();
            step.write_h1(&[], &mut Scratch::default(), &mut out)
                .map_err(|e| e.message)?;
            step.h1_static = Some(out);
        }
        Ok(step)
    }

    /// The serialized HTTP/1.1 request for one iteration's values: the ready bytes of a fixed
    /// step (no work at all per request), or `out` filled anew.
    pub fn h1_bytes<'a>(
        &'a self,
        values: &[String],
        scratch: &mut Scratch,
        out: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], RequestError> {
        if let Some(b) = &self.h1_static {
            return Ok(b);
        }
        self.write_h1(values, scratch, out)?;
        Ok(out)
    }

    /// Same as [`h1_bytes`](Self::h1_bytes) with a `traceparent` header added: only sampled
    /// requests come here, so the copy of a fixed step's bytes is paid by them alone.
    pub fn h1_bytes_traced<'a>(
        &'a self,
        values: &[String],
        scratch: &mut Scratch,
        out: &'a mut Vec<u8>,
        traceparent: &[u8],
    ) -> Result<&'a [u8], RequestError> {
        match &self.h1_static {
            Some(b) => {
                out.clear();
                out.extend_from_slice(b);
            }
            None => self.write_h1(values, scratch, out)?,
        }
        // Header values cannot hold CR LF, so the first blank line ends the head.
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let at = end + 2;
            out.splice(
                at..at,
                b"traceparent: "
                    .iter()
                    .chain(traceparent)
                    .chain(b"\r\n")
                    .copied(),
            );
        }
        Ok(out)
    }

    fn write_h1(
        &self,
        values: &[String],
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) -> Result<(), RequestError> {
        let (uri, headers, body) = self.parts(false, values, scratch)?;
        let pq = uri.path_and_query().map_or("/", |p| p.as_str());
        super::h1::serialize_request(out, &self.method, pq, &headers, &body);
        Ok(())
    }

    /// Whether a status counts as success.
    #[inline]
    pub fn accepts(&self, status: u16) -> bool {
        match &self.accept {
            None => status < 400,
            Some(codes) => codes.contains(&status),
        }
    }

    /// Builds this step's request for one iteration's values (HTTP/2, and the tests).
    pub fn build(
        &self,
        h2: bool,
        values: &[String],
        scratch: &mut Scratch,
    ) -> Result<Request<ReqBody>, RequestError> {
        let (uri, headers, body) = self.parts(h2, values, scratch)?;
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = self.method.clone();
        *req.headers_mut() = headers;
        *req.uri_mut() = uri;
        Ok(req)
    }

    /// The URI, headers and body of this step's request for one iteration's values.
    fn parts(
        &self,
        h2: bool,
        values: &[String],
        scratch: &mut Scratch,
    ) -> Result<(Uri, HeaderMap, Bytes), RequestError> {
        let uri = match &self.target {
            StepTarget::Static {
                origin_form,
                absolute,
            } => {
                if h2 {
                    absolute.clone()
                } else {
                    origin_form.clone()
                }
            }
            StepTarget::Dynamic(t) => {
                let mut s = String::new();
                if h2 {
                    s.push_str(&self.origin);
                }
                t.render_into(values, &mut s);
                s.parse().map_err(|e| {
                    RequestError::new(
                        ErrorKind::Protocol,
                        format!("rendered URL {s:?} is invalid: {e}"),
                    )
                })?
            }
        };
        let body: Bytes = self.body.render(values, &mut scratch.form);
        let mut headers = if h2 {
            self.headers_h2.clone()
        } else {
            self.headers_h1.clone()
        };
        for (name, t) in &self.dyn_headers {
            let v = t.render(values);
            let v = HeaderValue::try_from(v).map_err(|e| {
                RequestError::new(ErrorKind::Protocol, format!("rendered header {name}: {e}"))
            })?;
            headers.insert(name.clone(), v);
        }
        if let Some(signer) = &self.signer {
            let url = match &signer.url {
                Some(t) => t.render(values),
                None => {
                    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
                    format!("{}{pq}", self.origin)
                }
            };
            let sig = twilio_signature(&signer.token, &url, &scratch.form);
            // Base64 is always a valid header value.
            if let Ok(v) = HeaderValue::from_str(&sig) {
                headers.insert(TWILIO_SIGNATURE_HEADER, v);
            }
        }
        Ok((uri, headers, body))
    }
}

/// Splits a step URL into its endpoint and its path-and-query, joining relative URLs to the
/// target's base URL.
fn split_url(url: &str, target: Option<&TargetConfig>) -> Result<(BaseUrl, String), String> {
    if let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    {
        let cut = rest.find(['/', '?']).unwrap_or(rest.len());
        let scheme_len = url.len() - rest.len();
        let base = Endpoint::parse_base(&url[..scheme_len + cut])?;
        let mut path = rest[cut..].to_string();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        return Ok((base, path));
    }
    let t = target.ok_or_else(|| {
        format!("{url:?} is relative, and the probe names no `target` to join it to")
    })?;
    let base = Endpoint::parse_base(&t.url)?;
    let mut path = base.path.clone();
    // A URL that starts with a placeholder (a captured `Location`) brings its own slash.
    if !url.starts_with('/') && !url.starts_with("{{") {
        path.push('/');
    }
    path.push_str(url);
    Ok((base, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_urls_join_the_target_prefix() {
        let t: TargetConfig = serde_json::from_value(serde_json::json!({
            "name": "api", "url": "http://127.0.0.1:9000/v1/"
        }))
        .unwrap();
        let (b, p) = split_url("/items?x=1", Some(&t)).unwrap();
        assert_eq!(
            (b.authority.as_str(), p.as_str()),
            ("127.0.0.1:9000", "/v1/items?x=1")
        );
        let (b, p) = split_url("https://h.test:8443?q", None).unwrap();
        assert_eq!((b.port, p.as_str()), (8443, "/?q"));
        assert!(split_url("/x", None).unwrap_err().contains("relative"));
        let (_, p) = split_url("{{where}}", Some(&t)).unwrap();
        assert_eq!(p, "/v1{{where}}");
    }

    #[test]
    fn static_step_builds_h1_and_h2_requests() {
        let mut eps = Vec::new();
        let mut g = Generators::default();
        let cfg = RequestConfig::simple("POST", "http://127.0.0.1:1/a/b?c=d");
        let s = PreparedStep::compile(&cfg, None, &mut eps, &mut g).unwrap();
        assert_eq!(s.name, "/a/b");
        let mut scratch = Scratch::default();
        let r1 = s.build(false, &[], &mut scratch).unwrap();
        assert_eq!(r1.uri(), "/a/b?c=d");
        assert_eq!(r1.headers()[HOST], "127.0.0.1:1");
        let r2 = s.build(true, &[], &mut scratch).unwrap();
        assert_eq!(r2.uri(), "http://127.0.0.1:1/a/b?c=d");
        assert!(r2.headers().get(HOST).is_none());
    }

    #[test]
    fn traced_h1_request_carries_traceparent_in_its_head() {
        let mut eps = Vec::new();
        let mut g = Generators::default();
        let mut cfg = RequestConfig::simple("POST", "http://127.0.0.1:1/a");
        cfg.body = Some("x=1".into());
        let s = PreparedStep::compile(&cfg, None, &mut eps, &mut g).unwrap();
        let (mut scratch, mut out) = (Scratch::default(), Vec::new());
        let plain = s.h1_bytes(&[], &mut scratch, &mut out).unwrap().to_vec();
        let traced = s
            .h1_bytes_traced(&[], &mut scratch, &mut out, b"00-ab-cd-01")
            .unwrap();
        let text = std::str::from_utf8(traced).unwrap();
        assert!(
            text.contains("\r\ntraceparent: 00-ab-cd-01\r\n\r\nx=1"),
            "{text:?}"
        );
        assert_eq!(
            traced.len(),
            plain.len() + "traceparent: 00-ab-cd-01\r\n".len()
        );
        // The fixed step's ready bytes are untouched.
        assert_eq!(s.h1_bytes(&[], &mut scratch, &mut out).unwrap(), plain);
    }
}
