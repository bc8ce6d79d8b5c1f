//! Address ranges (`10.0.0.0/8`, `2001:db8::/32`): the trusted proxies of the transport and the
//! `allowFrom` lists of endpoints. IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`, how a
//! dual-stack socket shows an IPv4 client) match IPv4 ranges.

use std::net::IpAddr;

/// One range: an address and how many leading bits of it must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    bits: u8,
}

impl Cidr {
    /// `a.b.c.d/n`, `x::y/n`, or a bare address (one host).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (address, bits) = match text.split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| {
            format!("{text:?} is not an address range such as 10.0.0.0/8 or 2001:db8::/32")
        })?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(bits) => bits
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { network, bits })
    }

    /// Whether `address` is in the range.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, canonical(address)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => prefix_eq(&net.octets(), &a.octets(), self.bits),
            (IpAddr::V6(net), IpAddr::V6(a)) => prefix_eq(&net.octets(), &a.octets(), self.bits),
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.bits)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether any range of `list` holds `address`.
pub fn any_contains(list: &[Cidr], address: IpAddr) -> bool {
    list.iter().any(|c| c.contains(address))
}

/// Parses a comma-separated list of ranges.
pub fn parse_list(text: &str) -> Result<Vec<Cidr>, String> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(Cidr::parse)
        .collect()
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_by_prefix_and_mapped_addresses_as_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let github = Cidr::parse("140.82.112.0/20").unwrap();
        assert!(github.contains(ip("140.82.127.255")));
        assert!(github.contains(ip("::ffff:140.82.112.1")));
        assert!(!github.contains(ip("140.82.128.0")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("140.82.112.1")));
        assert!(Cidr::parse("10.1.2.3").unwrap().contains(ip("10.1.2.3")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "10.0.0/8", "x", "::/129", "10.0.0.0/-1"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_list("10.0.0.0/8, 192.168.0.0/16,").unwrap().len(), 2);
    }
}
