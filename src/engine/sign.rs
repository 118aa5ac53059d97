//! Request signers: compute an authentication header from the finished request.
//!
//! Only the Twilio webhook scheme exists today (seed 000's WhatsApp webhook). A signer never
//! reaches the network; it is a pure function of the URL, the form parameters and a secret.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Name of the header Twilio puts its signature in.
pub const TWILIO_SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// Computes Twilio's `X-Twilio-Signature` value: base64 of HMAC-SHA1, keyed with the account's
/// auth token, over the full URL followed by every POST parameter's name and value, the
/// parameters sorted by name (then by value, so repeated names stay deterministic).
pub fn twilio_signature<K, V>(auth_token: &[u8], url: &str, params: &[(K, V)]) -> String
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mac = twilio_mac(auth_token, url, params);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a received signature in constant time.
pub fn verify_twilio_signature<K, V>(
    auth_token: &[u8],
    url: &str,
    params: &[(K, V)],
    signature: &str,
) -> bool
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    twilio_mac(auth_token, url, params)
        .verify_slice(&given)
        .is_ok()
}

fn twilio_mac<K, V>(auth_token: &[u8], url: &str, params: &[(K, V)]) -> Hmac<Sha1>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    sorted.sort_unstable();
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature must match an independent implementation (Python's hmac module), so a
    /// mistake shared by signer and verifier cannot pass unnoticed.
    #[test]
    fn matches_python_hmac() {
        let url = "https://example.test/webhooks/whatsapp?x=1";
        let params = [
            ("To", "whatsapp:+15550001"),
            ("Body", "hi there"),
            ("From", "whatsapp:+15550002"),
        ];
        let ours = twilio_signature(b"secret-token", url, &params);
        let script = "import hmac,hashlib,base64,sys\n\
data = sys.argv[2] + ''.join(k + v for k, v in sorted(zip(sys.argv[3::2], sys.argv[4::2])))\n\
print(base64.b64encode(hmac.new(sys.argv[1].encode(), data.encode(), hashlib.sha1).digest()).decode())";
        let mut cmd = std::process::Command::new("python3");
        cmd.arg("-c").arg(script).arg("secret-token").arg(url);
        for (k, v) in params {
            cmd.arg(k).arg(v);
        }
        let out = cmd.output().expect("python3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), ours);
        assert!(verify_twilio_signature(
            b"secret-token",
            url,
            &params,
            &ours
        ));
        assert!(!verify_twilio_signature(
            b"other-token",
            url,
            &params,
            &ours
        ));
    }
}
