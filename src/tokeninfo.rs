//! Google's tokeninfo check of a Pub/Sub push token, for the GCR source with `gcr.audience`: the
//! [`TokenCheck`] the delivery layer hands the source, which makes no call of its own.
//!
//! The token goes to the tokeninfo endpoint percent-encoded as `id_token`, with a 5 s budget and
//! a capped reply. Google answers 200 only for a valid, unexpired, Google-signed token; then `aud`
//! must equal the configured audience and, when `gcr.email` is set, `email` must equal it with
//! `email_verified` true (without the email check any Google-signed token with the right
//! audience would pass). The token is never logged or returned in an error.

use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

use crate::sources::TokenCheck;
/// Pub/Sub waits 10 s for an ack; the check must leave time for the notify call.
const TIMEOUT: Duration = Duration::from_secs(5);
/// A tokeninfo reply is well under 2 KiB.
const MAX_REPLY_BYTES: u64 = 64 * 1024;

/// One shared agent: building a TLS client config per request would be waste.
fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .user_agent(concat!("flux-recv/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    })
}

#[derive(Deserialize)]
struct TokenInfo {
    aud: Option<String>,
    email: Option<String>,
    /// Google sends the string "true"; accept a boolean too.
    email_verified: Option<serde_json::Value>,
}

/// Tokens checked at a tokeninfo endpoint over HTTP(S).
pub struct Tokeninfo;

impl TokenCheck for Tokeninfo {
    fn check(
        &self,
        url: &str,
        token: &str,
        audience: &str,
        email: Option<&str>,
    ) -> Result<(), String> {
        check(url, token, audience, email)
    }
}

/// Checks `token` at `url`; the error says why, without the token.
fn check(url: &str, token: &str, audience: &str, email: Option<&str>) -> Result<(), String> {
    let mut response = agent()
        .get(url)
        .query("id_token", token)
        .call()
        .map_err(|e| format!("tokeninfo request failed: {e}"))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!("tokeninfo refused the token with status {status}"));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_REPLY_BYTES)
        .read_to_vec()
        .map_err(|e| format!("tokeninfo reply unreadable: {e}"))?;
    let info: TokenInfo = serde_json::from_slice(&body)
        .map_err(|e| format!("tokeninfo reply is not the expected JSON: {e}"))?;
    if info.aud.as_deref() != Some(audience) {
        return Err("token audience does not match gcr.audience".into());
    }
    if let Some(expected) = email {
        if info.email.as_deref() != Some(expected) {
            return Err("token email does not match gcr.email".into());
        }
        let verified = match &info.email_verified {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        };
        if !verified {
            return Err("token email is not verified".into());
        }
    }
    Ok(())
}
