//! Google's tokeninfo check of a Pub/Sub push token, for the GCR source with `gcr.audience`: the
//! [`TokenCheck`] the delivery layer hands the source, which makes no call of its own.
//!
//! Every forged token used to cost an outbound call on the handler pool. Now:
//! - what can be refused without a call is: a token that is not three base64url parts of a JWT,
//!   or whose `aud`, `iss` (Google's) or `exp` (in the past) is wrong, read without trusting it;
//! - results are cached by a hash of the token: a yes until the token expires, a no for a
//!   minute ([`DENIAL_CACHED`]);
//! - at most [`MAX_CHECKS`] calls at once; past that the delivery is answered `503` with
//!   `Retry-After` (Pub/Sub retries), and the delivery layer makes the check on the connection's
//!   thread, before the body is read, not on the handler pool.
//!
//! The token goes to the tokeninfo endpoint percent-encoded as `id_token`, with a 5 s budget and
//! a capped reply. Google answers 200 only for a valid, unexpired, Google-signed token; then `aud`
//! must equal the configured audience, `iss` be Google's, and with `gcr.email` (required unless
//! the config opts out), `email` must equal it with `email_verified` true: without the email
//! check any Google-signed token with the right audience would pass (CVE-2026-40109). The token
//! is never logged or returned in an error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::sources::{Cause, TokenCheck};

/// Calls to tokeninfo at once, for all endpoints.
pub const MAX_CHECKS: usize = 2;
/// How long a denial is remembered.
const DENIAL_CACHED: Duration = Duration::from_secs(60);
/// Tokens remembered at once (a yes lives an hour at most, as Google's tokens do).
const MAX_CACHED: usize = 4096;
/// The issuers of Google-signed ID tokens.
const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
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
    iss: Option<String>,
    email: Option<String>,
    /// Google sends the string "true"; accept a boolean too.
    email_verified: Option<serde_json::Value>,
}

/// What a check of a token found.
#[derive(Debug)]
pub enum Verdict {
    Valid,
    Invalid(Cause),
    /// Every check slot is taken: try again later (503).
    Busy,
}

/// What was found of each token (by a hash of it, the URL, the audience and the email), and
/// until when it holds.
type Cache = HashMap<[u8; 32], (Result<(), String>, Instant)>;

/// Tokens checked at a tokeninfo endpoint over HTTP(S), with the cache and the slots above.
#[derive(Default)]
pub struct Tokeninfo {
    cache: Mutex<Cache>,
    checking: AtomicUsize,
}

impl TokenCheck for Tokeninfo {
    fn check(
        &self,
        url: &str,
        token: &str,
        audience: &str,
        email: Option<&str>,
    ) -> Result<(), Cause> {
        match self.verify(url, token, audience, email) {
            Verdict::Valid => Ok(()),
            Verdict::Invalid(cause) => Err(cause),
            Verdict::Busy => Err("every tokeninfo check slot is busy".into()),
        }
    }
}

/// The claims read from a JWT's payload without checking its signature.
#[derive(Deserialize)]
struct Claims {
    aud: Option<serde_json::Value>,
    iss: Option<String>,
    exp: Option<serde_json::Value>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a token claims, read without trusting it: refused when it cannot be a Google ID
/// token for `audience` that is still valid. Its expiry (Unix seconds) when it may be.
fn read_unverified(token: &str, audience: &str) -> Result<u64, &'static str> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("token is not a JWT (three base64url parts)");
    };
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "token payload is not base64url")?;
    let claims: Claims =
        serde_json::from_slice(&json).map_err(|_| "token payload is not JSON claims")?;
    let aud_ok = match &claims.aud {
        Some(serde_json::Value::String(aud)) => aud == audience,
        Some(serde_json::Value::Array(auds)) => auds.iter().any(|a| a == audience),
        _ => false,
    };
    if !aud_ok {
        return Err("token audience does not match gcr.audience");
    }
    if !claims
        .iss
        .as_deref()
        .is_some_and(|iss| GOOGLE_ISSUERS.contains(&iss))
    {
        return Err("token issuer is not Google");
    }
    let exp = match &claims.exp {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or("token has no expiry")?;
    if exp <= unix_now() {
        return Err("token has expired");
    }
    Ok(exp)
}

impl Tokeninfo {
    /// Checks `token` for `audience` (and `email`): locally when it can be refused so, from the
    /// cache when it was checked before, else at `url` when a check slot is free.
    pub fn verify(&self, url: &str, token: &str, audience: &str, email: Option<&str>) -> Verdict {
        let exp = match read_unverified(token, audience) {
            Ok(exp) => exp,
            Err(why) => return Verdict::Invalid(refused(why)),
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(url)
            .chain_update([0])
            .chain_update(audience)
            .chain_update([0])
            .chain_update(email.unwrap_or(""))
            .chain_update([0])
            .chain_update(token)
            .finalize()
            .into();
        let now = Instant::now();
        if let Some((known, until)) = self.cache().get(&key) {
            if *until > now {
                return match known {
                    Ok(()) => Verdict::Valid,
                    Err(why) => Verdict::Invalid(why.clone().into()),
                };
            }
        }
        let free = self
            .checking
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_CHECKS).then_some(n + 1)
            });
        if free.is_err() {
            return Verdict::Busy;
        }
        let checked = check(url, token, audience, email);
        self.checking.fetch_sub(1, Ordering::SeqCst);
        let remembered = match &checked {
            Ok(()) => Some((
                Ok(()),
                now + Duration::from_secs(exp.saturating_sub(unix_now()).min(3600)),
            )),
            Err(Checked::Denied(why)) => Some((Err(why.to_string()), now + DENIAL_CACHED)),
            // tokeninfo could not be asked: not the token's fault, nothing to remember.
            Err(Checked::Failed(_)) => None,
        };
        if let Some(entry) = remembered {
            let mut cache = self.cache();
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (_, until)| *until > now);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(key, entry);
        }
        match checked {
            Ok(()) => Verdict::Valid,
            Err(Checked::Denied(why)) => Verdict::Invalid(why),
            Err(Checked::Failed(cause)) => Verdict::Invalid(cause),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How a call to tokeninfo did not say yes.
enum Checked {
    /// It answered no (or something that is not a yes): remembered for a while.
    Denied(Cause),
    /// It could not be asked (unreachable, timed out): not remembered.
    Failed(Cause),
}

/// Why tokeninfo's answer was not a yes, with the underlying error when there is one.
#[derive(Debug)]
struct Denied {
    why: &'static str,
    cause: Option<Cause>,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{}: {cause}", self.why),
            None => f.write_str(self.why),
        }
    }
}

impl std::error::Error for Denied {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

fn refused(why: &'static str) -> Cause {
    Box::new(Denied { why, cause: None })
}

fn failed(why: &'static str) -> impl FnOnce(ureq::Error) -> Cause {
    move |e| {
        Box::new(Denied {
            why,
            cause: Some(Box::new(e)),
        })
    }
}

/// Checks `token` at `url`; the error says why, without the token.
fn check(url: &str, token: &str, audience: &str, email: Option<&str>) -> Result<(), Checked> {
    let mut response = agent()
        .get(url)
        .query("id_token", token)
        .call()
        .map_err(|e| Checked::Failed(failed("tokeninfo request failed")(e)))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(Checked::Denied(
            format!("tokeninfo refused the token with status {status}").into(),
        ));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_REPLY_BYTES)
        .read_to_vec()
        .map_err(|e| Checked::Failed(failed("tokeninfo reply unreadable")(e)))?;
    let info: TokenInfo = serde_json::from_slice(&body).map_err(|e| {
        Checked::Denied(Box::new(Denied {
            why: "tokeninfo reply is not the expected JSON",
            cause: Some(Box::new(e)),
        }))
    })?;
    let no = |why| Err(Checked::Denied(refused(why)));
    if info.aud.as_deref() != Some(audience) {
        return no("token audience does not match gcr.audience");
    }
    if !info
        .iss
        .as_deref()
        .is_some_and(|iss| GOOGLE_ISSUERS.contains(&iss))
    {
        return no("token issuer is not Google");
    }
    if let Some(expected) = email {
        if info.email.as_deref() != Some(expected) {
            return no("token email does not match gcr.email");
        }
        let verified = match &info.email_verified {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        };
        if !verified {
            return no("token email is not verified");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.{}",
            b64(r#"{"alg":"RS256"}"#),
            b64(claims),
            b64("sig")
        )
    }

    #[test]
    fn forged_tokens_are_refused_without_a_call() {
        let later = unix_now() + 600;
        let good = jwt(&format!(
            r#"{{"aud":"a","iss":"https://accounts.google.com","exp":{later}}}"#
        ));
        assert_eq!(read_unverified(&good, "a"), Ok(later));
        let cases = [
            ("junk".to_owned(), "not a JWT"),
            ("a.b".to_owned(), "not a JWT"),
            ("a.!!!.c".to_owned(), "base64url"),
            (jwt("[]"), "JSON claims"),
            (
                jwt(&format!(
                    r#"{{"aud":"b","iss":"accounts.google.com","exp":{later}}}"#
                )),
                "audience",
            ),
            (
                jwt(&format!(
                    r#"{{"aud":"a","iss":"https://evil.example","exp":{later}}}"#
                )),
                "issuer",
            ),
            (
                jwt(r#"{"aud":"a","iss":"accounts.google.com","exp":1}"#),
                "expired",
            ),
            (
                jwt(r#"{"aud":"a","iss":"accounts.google.com"}"#),
                "no expiry",
            ),
        ];
        for (token, why) in cases {
            let refused = read_unverified(&token, "a").unwrap_err();
            assert!(refused.contains(why), "{token}: {refused}");
        }
        // None of these reaches the network: port 9 would refuse, but nothing is asked.
        let tokeninfo = Tokeninfo::default();
        for token in ["junk", &jwt(r#"{"aud":"b"}"#)] {
            assert!(matches!(
                tokeninfo.verify("http://127.0.0.1:9/tokeninfo", token, "a", None),
                Verdict::Invalid(_)
            ));
        }
        assert!(tokeninfo.cache().is_empty());
    }
}
