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

use crate::sources::{Cause, TokenCheck};
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
    ) -> Result<(), Cause> {
        check(url, token, audience, email)
    }
}

/// Why tokeninfo's answer was not a yes, with the underlying error when there is one.
#[derive(Debug)]
struct Refused {
    why: &'static str,
    cause: Option<Cause>,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{}: {cause}", self.why),
            None => f.write_str(self.why),
        }
    }
}

impl std::error::Error for Refused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

fn refused(why: &'static str) -> Cause {
    Box::new(Refused { why, cause: None })
}

fn failed(why: &'static str) -> impl FnOnce(ureq::Error) -> Cause {
    move |e| {
        Box::new(Refused {
            why,
            cause: Some(Box::new(e)),
        })
    }
}

/// Checks `token` at `url`; the error says why, without the token.
fn check(url: &str, token: &str, audience: &str, email: Option<&str>) -> Result<(), Cause> {
    let mut response = agent()
        .get(url)
        .query("id_token", token)
        .call()
        .map_err(failed("tokeninfo request failed"))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!("tokeninfo refused the token with status {status}").into());
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_REPLY_BYTES)
        .read_to_vec()
        .map_err(failed("tokeninfo reply unreadable"))?;
    let info: TokenInfo = serde_json::from_slice(&body).map_err(|e| {
        Box::new(Refused {
            why: "tokeninfo reply is not the expected JSON",
            cause: Some(Box::new(e)),
        }) as Cause
    })?;
    if info.aud.as_deref() != Some(audience) {
        return Err(refused("token audience does not match gcr.audience"));
    }
    if let Some(expected) = email {
        if info.email.as_deref() != Some(expected) {
            return Err(refused("token email does not match gcr.email"));
        }
        let verified = match &info.email_verified {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        };
        if !verified {
            return Err(refused("token email is not verified"));
        }
    }
    Ok(())
}
