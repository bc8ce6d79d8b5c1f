//! Fair use of the connection slots: who holds them, and who may take one.
//!
//! - At `--max-connections`, a new connection takes the slot of the connection idle the longest
//!   between requests (closed at once, as nginx does), so kept-alive connections that idle can
//!   never keep a new one out; only connections busy with a request can (then 503).
//! - One client address holds at most `--max-connections-per-client` connections (an IPv6
//!   client is counted per /64, since one host holds a whole /64). Behind trusted proxies
//!   (`--trusted-proxies`), whose connections carry many clients, the share counts the requests
//!   in progress of each forwarded client instead.
//! - The client of a request is its peer, or, when the peer is a trusted proxy, the nearest
//!   address in `X-Forwarded-For` that is not itself a trusted proxy: a client cannot name
//!   itself past a proxy that appends what it saw.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::{Head, Options, Refusal};
use crate::cidr::{any_contains, canonical};

/// A client as the shares count it: an IPv4 address, or the /64 of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct ClientKey([u8; 16]);

impl ClientKey {
    fn of(address: IpAddr) -> ClientKey {
        match canonical(address) {
            IpAddr::V4(v4) => ClientKey(v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                ClientKey(octets)
            }
        }
    }
}

/// A connection's clock between requests: 0 while a request is read or answered, else when it
/// went idle (nanoseconds after the registry started, plus one); [`EVICTED`] once closed for a
/// newcomer.
const EVICTED: u64 = u64::MAX;

struct Tracked {
    /// `None` for a trusted proxy's connection (its clients are counted per request).
    client: Option<ClientKey>,
    idle: Arc<AtomicU64>,
    stream: Arc<TcpStream>,
}

#[derive(Default)]
struct Table {
    conns: HashMap<u64, Tracked>,
    next: u64,
    per_client: HashMap<ClientKey, usize>,
    /// Requests in progress per forwarded client.
    forwarded: HashMap<ClientKey, usize>,
}

pub(super) struct Clients {
    table: Mutex<Table>,
    /// Connections open (a mirror of the table's size, for status without the lock).
    pub(super) open: AtomicUsize,
    started: Instant,
}

/// A connection's slot; given back when dropped.
pub(super) struct Ticket {
    clients: Arc<Clients>,
    id: u64,
    idle: Arc<AtomicU64>,
    /// The peer, and whether it is a trusted proxy.
    pub(super) peer: SocketAddr,
    pub(super) proxy: bool,
}

/// A forwarded client's request in progress; given back when dropped.
pub(super) struct Forwarded<'a> {
    clients: &'a Clients,
    key: ClientKey,
}

impl Clients {
    pub(super) fn new() -> Clients {
        Clients {
            table: Mutex::new(Table::default()),
            open: AtomicUsize::new(0),
            started: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection from `peer`, or why not.
    pub(super) fn admit(
        self: &Arc<Self>,
        stream: &Arc<TcpStream>,
        peer: SocketAddr,
        opts: &Options,
    ) -> Result<Ticket, Refusal> {
        let proxy = any_contains(&opts.trusted_proxies, peer.ip());
        let client = (!proxy).then(|| ClientKey::of(peer.ip()));
        let mut table = self.lock();
        if let Some(key) = client {
            let held = table.per_client.get(&key).copied().unwrap_or(0);
            if held >= opts.max_connections_per_client && !Self::evict_idlest(&mut table, Some(key))
            {
                return Err(Refusal::TooManyFromClient);
            }
        }
        if table.conns.len() >= opts.max_connections && !Self::evict_idlest(&mut table, None) {
            return Err(Refusal::TooManyConnections);
        }
        let id = table.next;
        table.next += 1;
        let idle = Arc::new(AtomicU64::new(0));
        table.conns.insert(
            id,
            Tracked {
                client,
                idle: Arc::clone(&idle),
                stream: Arc::clone(stream),
            },
        );
        if let Some(key) = client {
            *table.per_client.entry(key).or_default() += 1;
        }
        self.open.store(table.conns.len(), Ordering::SeqCst);
        Ok(Ticket {
            clients: Arc::clone(self),
            id,
            idle,
            peer,
            proxy,
        })
    }

    /// Closes the connection idle the longest (of `client`, when given), if one is, and takes
    /// it out of the table at once: its slot is the newcomer's while its thread winds down.
    fn evict_idlest(table: &mut Table, client: Option<ClientKey>) -> bool {
        let idlest = table
            .conns
            .iter()
            .filter(|(_, t)| client.is_none() || t.client == client)
            .filter_map(|(id, t)| {
                let since = t.idle.load(Ordering::SeqCst);
                (since != 0 && since != EVICTED).then_some((since, *id))
            })
            .min_by_key(|(since, _)| *since);
        let Some(tracked) = idlest.and_then(|(_, id)| table.conns.remove(&id)) else {
            return false;
        };
        tracked.idle.store(EVICTED, Ordering::SeqCst);
        let _ = tracked.stream.shutdown(Shutdown::Both);
        if let Some(key) = tracked.client {
            table.release(key);
        }
        true
    }

    /// The client of a request on a connection from `peer`: the peer, or through a trusted
    /// proxy the nearest untrusted address it forwarded.
    pub(super) fn client_of(ticket: &Ticket, head: &Head, opts: &Options) -> IpAddr {
        let peer = canonical(ticket.peer.ip());
        if !ticket.proxy {
            return peer;
        }
        let mut hops: Vec<&str> = head
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("X-Forwarded-For"))
            .flat_map(|(_, v)| v.split(','))
            .collect();
        let mut client = peer;
        while let Some(hop) = hops.pop() {
            let Ok(address) = hop.trim().parse::<IpAddr>() else {
                // A hop it cannot read: trust nothing past it.
                break;
            };
            client = canonical(address);
            if !any_contains(&opts.trusted_proxies, client) {
                break;
            }
        }
        client
    }

    /// A request in progress for a client forwarded by a trusted proxy, within its share.
    pub(super) fn enter_forwarded(
        &self,
        client: IpAddr,
        opts: &Options,
    ) -> Result<Forwarded<'_>, Refusal> {
        let key = ClientKey::of(client);
        let mut table = self.lock();
        let count = table.forwarded.entry(key).or_default();
        if *count >= opts.max_connections_per_client {
            return Err(Refusal::TooManyFromClient);
        }
        *count += 1;
        Ok(Forwarded { clients: self, key })
    }
}

impl Ticket {
    /// Between requests: this connection may be closed for a newcomer.
    pub(super) fn between_requests(&self) {
        let since = self.clients.started.elapsed().as_nanos() as u64 + 1;
        let _ = self
            .idle
            .compare_exchange(0, since, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// A request has started: not to be closed. False when it was closed for a newcomer.
    pub(super) fn in_request(&self) -> bool {
        self.idle.swap(0, Ordering::SeqCst) != EVICTED
    }
}

impl Table {
    /// One connection of `key` is gone.
    fn release(&mut self, key: ClientKey) {
        if let Some(n) = self.per_client.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&key);
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut table = self.clients.lock();
        // An evicted connection left the table already.
        if let Some(key) = table.conns.remove(&self.id).and_then(|t| t.client) {
            table.release(key);
        }
        self.clients.open.store(table.conns.len(), Ordering::SeqCst);
    }
}

impl Drop for Forwarded<'_> {
    fn drop(&mut self) {
        let mut table = self.clients.lock();
        if let Some(n) = table.forwarded.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                table.forwarded.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_counted_per_64_and_a_mapped_ipv4_as_itself() {
        let key = |s: &str| ClientKey::of(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
        assert_ne!(key("10.0.0.1"), key("10.0.0.2"));
    }
}
