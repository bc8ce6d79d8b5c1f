//! What a config turns into for serving: the route table (digest → endpoint, looked up in
//! constant time over all entries) and the downstreams each endpoint feeds. Swapped whole on
//! reload; requests in progress keep the table they started with.

use std::sync::Arc;

use crate::config::{Config, Endpoint};
use crate::downstream::redelivery::{Lane, Redelivery};
use crate::downstream::Downstream;
use crate::sources::{Settings, TokenCheck};

/// One endpoint, ready: what its provider needs, and whom it tells.
pub(super) struct Route {
    pub(super) endpoint: Endpoint,
    pub(super) settings: Settings,
    /// Indices into [`Table::targets`].
    pub(super) targets: Vec<usize>,
    /// How log lines name it: the first 8 hex digits of its route digest, made once.
    pub(super) hook: Arc<str>,
}

/// A downstream as the request path uses it: its definition in this table, and its lane (kept
/// across reloads by name), which decides whether it is called at once.
pub(super) struct Target {
    pub(super) downstream: Arc<Downstream>,
    pub(super) lane: Arc<Lane>,
}

pub(super) struct Table {
    pub(super) routes: Vec<Route>,
    pub(super) targets: Vec<Target>,
}

impl Table {
    /// The table of `config`, with the lanes of its downstreams; `threads` (the handler pool's
    /// size) sets each downstream's share of calls.
    pub(super) fn new(
        config: &Config,
        threads: usize,
        tokens: &Arc<dyn TokenCheck>,
        redelivery: &Redelivery,
    ) -> Table {
        let n = config.downstreams.len().max(1);
        // One downstream may use the whole pool; several split it, each at least one call.
        let share = (threads / n).max(1);
        let downstreams: Vec<Arc<Downstream>> = config
            .downstreams
            .iter()
            .map(|d| Arc::new(Downstream::new(&d.name, d.kind.clone(), d.filter.clone())))
            .collect();
        let lanes = redelivery.lanes(&downstreams, share);
        let targets = downstreams
            .into_iter()
            .zip(lanes)
            .map(|(downstream, lane)| Target { downstream, lane })
            .collect();
        let routes = config
            .endpoints
            .iter()
            .map(|endpoint| {
                let mut settings = Settings::new(endpoint.key.clone());
                settings.registry_host = endpoint.registry_host.clone();
                settings.gcr = endpoint.gcr.clone();
                settings.require_signature = endpoint.require_signature;
                if endpoint.gcr.as_ref().is_some_and(|g| g.audience.is_some()) {
                    settings.token_check = Some(Arc::clone(tokens));
                }
                Route {
                    targets: config.downstreams_of(endpoint),
                    hook: endpoint.digest_prefix().into(),
                    endpoint: endpoint.clone(),
                    settings,
                }
            })
            .collect();
        Table { routes, targets }
    }

    /// The route for a request path `/hook/<64 lowercase hex>`, or `None`.
    ///
    /// Every entry is compared, with no early exit, so the time taken says nothing about which
    /// digest (if any) matched or how much of one did.
    pub(super) fn lookup(&self, path: &str) -> Option<usize> {
        let hex_digest = path.strip_prefix("/hook/")?;
        if hex_digest.len() != 64
            || !hex_digest
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let mut wanted = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut wanted).ok()?;
        let mut found = None;
        for (i, route) in self.routes.iter().enumerate() {
            if route.endpoint.has_digest(&wanted) {
                found = Some(i);
            }
        }
        found
    }

    /// The downstreams' names.
    pub(super) fn names(&self) -> Vec<&str> {
        self.targets
            .iter()
            .map(|t| t.downstream.name.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::Key;
    use crate::sources::Source;

    struct NoTokens;

    impl TokenCheck for NoTokens {
        fn check(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: Option<&str>,
        ) -> Result<(), crate::sources::Cause> {
            Err("no".into())
        }
    }

    #[test]
    fn lookup_finds_only_exact_lowercase_routes() {
        let endpoint = Endpoint::new(
            0,
            Source::GitLab,
            Key::new(b"key-one-1234567890".to_vec()),
            "k".into(),
            None,
        );
        let route = endpoint.route();
        let config = Config {
            api: crate::config::DEFAULT_API.into(),
            endpoints: vec![endpoint],
            downstreams: Vec::new(),
        };
        let tokens: Arc<dyn TokenCheck> = Arc::new(NoTokens);
        let redelivery = crate::downstream::redelivery::Redelivery::new(
            crate::downstream::redelivery::Limits {
                horizon: std::time::Duration::ZERO,
                max_entries: 1,
                max_bytes: 1,
                timeout: std::time::Duration::from_secs(1),
                rate: 0.0,
            },
            Arc::new(crate::delivery::observer::Recorder::default()),
            crate::downstream::calls::Calls::start(1),
            None,
        );
        let table = Table::new(&config, 4, &tokens, &redelivery);
        assert_eq!(table.lookup(&route), Some(0));
        assert!(table
            .lookup(&route.to_uppercase().replace("/HOOK/", "/hook/"))
            .is_none());
        assert!(table.lookup(&route[..route.len() - 1]).is_none());
        assert!(table.lookup(&format!("{route}0")).is_none());
        assert!(table.lookup(&format!("/hook/{}", "0".repeat(64))).is_none());
        assert!(table.lookup("/hook/").is_none());
    }
}
