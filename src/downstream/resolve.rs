//! Addresses for the downstream calls without a thread per call.
//!
//! ureq resolves a call's host before it looks for a pooled connection, and with a timeout set
//! its default resolver runs each lookup on a new thread (so that a hung DNS server cannot
//! outlast the deadline). Every notify call has a timeout, so every call cost a thread spawn
//! (~2 syscalls, two stack mappings and a wake-up) even on a kept-alive connection to
//! `127.0.0.1`. An IP literal needs no lookup: it is answered here, at once. A name still goes
//! to ureq's resolver and its timeout.

use std::net::{IpAddr, SocketAddr};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

#[derive(Debug, Default)]
pub(super) struct LiteralFirst(DefaultResolver);

impl Resolver for LiteralFirst {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        match literal(uri) {
            Some(addr) => {
                let mut addrs = self.empty();
                addrs.push(addr);
                Ok(addrs)
            }
            None => self.0.resolve(uri, config, timeout),
        }
    }
}

/// The socket address of a URI whose host is an IP literal (`127.0.0.1`, `[::1]`).
fn literal(uri: &Uri) -> Option<SocketAddr> {
    let host = uri.host()?;
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let port = uri.port_u16().or(match uri.scheme_str()? {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_are_answered_and_names_are_not() {
        let addr = |url: &str| literal(&url.parse().unwrap());
        assert_eq!(
            addr("http://127.0.0.1:3030/api/flux"),
            Some("127.0.0.1:3030".parse().unwrap())
        );
        assert_eq!(
            addr("http://[::1]:3030/api/flux"),
            Some("[::1]:3030".parse().unwrap())
        );
        assert_eq!(
            addr("http://10.0.0.7/api/flux"),
            Some("10.0.0.7:80".parse().unwrap())
        );
        assert_eq!(
            addr("https://10.0.0.7/hook/x"),
            Some("10.0.0.7:443".parse().unwrap())
        );
        assert_eq!(addr("http://localhost:3030/api/flux"), None);
        assert_eq!(addr("http://flux.flux-system.svc:3030/"), None);
    }
}
