//! Seed 000's WhatsApp webhook under load: Twilio-signed form posts with generated message
//! ids reach the sample backend, which verifies every signature and deduplicates by
//! `MessageSid`; HTTP/2 cleartext reaches the same backend.

mod common;

use std::io::{Read, Write};

use common::{run_toml, Backend};

fn stats_of(b: &Backend) -> serde_json::Value {
    let addr = b.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /api/stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str(body).unwrap()
}

fn webhook(url: &str, token: &str, sid: &str) -> String {
    format!(
        r#"
[[target]]
name = "sample"
url = "{url}"

[[probe]]
name = "webhook"
kind = "load"
target = "sample"
[probe.load]
phases = [{{ duration = "2s", rate = 100 }}]
[probe.load.vars]
from = {{ kind = "choice", values = ["whatsapp:+15550000001", "whatsapp:+15550000002"] }}
[probe.load.request]
method = "POST"
url = "/webhooks/whatsapp"
form = {{ MessageSid = "{sid}", From = "{{{{from}}}}", To = "whatsapp:+15559999999", Body = "n={{{{seq}}}}" }}
sign = {{ kind = "twilio", auth_token = "{token}" }}
expect_status = [200]
"#
    )
}

#[test]
fn signed_webhooks_are_accepted_once_each() {
    let b = Backend::start();
    let r = run_toml(&webhook(&b.url, "plimsoll-demo-token", "SM{{random_id}}"));
    let s = r.stats.as_ref().unwrap();
    assert_eq!((s.requests, s.errors), (200, 0), "{:?}", s.error_samples);
    let st = stats_of(&b);
    assert_eq!(st["webhooks_accepted"], 200, "{st}");
    assert_eq!(st["rejected_signature"], 0, "{st}");
    assert_eq!(st["duplicates"], 0, "{st}");
}

#[test]
fn a_wrong_token_is_rejected_and_a_fixed_sid_is_deduplicated() {
    let b = Backend::start();
    let r = run_toml(&webhook(&b.url, "wrong-token", "SM{{random_id}}"));
    let s = r.stats.as_ref().unwrap();
    assert_eq!(s.errors_by_kind.get("status"), Some(&200));
    assert!(s.error_samples["status"].contains("403"));
    assert_eq!(stats_of(&b)["rejected_signature"], 200);

    let r = run_toml(&webhook(&b.url, "plimsoll-demo-token", "SMfixed"));
    assert_eq!(r.stats.as_ref().unwrap().errors, 0);
    let st = stats_of(&b);
    assert_eq!(st["webhooks_accepted"], 1, "{st}");
    assert_eq!(st["duplicates"], 199, "{st}");
}

#[test]
fn http2_prior_knowledge_on_cleartext() {
    let b = Backend::start();
    let text = format!(
        r#"
[[target]]
name = "sample"
url = "{}"
http = "2"

[[probe]]
name = "h2c"
kind = "load"
target = "sample"
[probe.load]
concurrency = 8
iterations = 25
[probe.load.request]
url = "/api/items"
"#,
        b.url
    );
    let r = run_toml(&text);
    let s = r.stats.as_ref().unwrap();
    assert_eq!((s.requests, s.errors), (200, 0), "{:?}", s.error_samples);
    assert!(s.bytes_received > 200 * 100);
}
