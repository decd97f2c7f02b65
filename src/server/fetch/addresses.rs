//! Which addresses are special: not the public internet a job's `delimited_files` should come
//! from, but the server itself, its neighbours, or nowhere. Pure.
//!
//! An address is special when it falls in a range IANA reserves for a local or non-unicast
//! use: loopback, private networks (RFC 1918, unique local fc00::/7), link-local, unspecified,
//! shared address space (carrier-grade NAT, 100.64.0.0/10), multicast and broadcast, and the
//! other non-global blocks of the IPv4 and IPv6 special-purpose registries. An IPv6 address
//! that carries an IPv4 one (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`,
//! NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is judged by the IPv4 address it reaches.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not fetched from: the rule a refusal names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Loopback,
    Private,
    UniqueLocal,
    LinkLocal,
    Unspecified,
    SharedAddressSpace,
    Multicast,
    Broadcast,
    /// Documentation, benchmarking, protocol assignments, discard, future use.
    Reserved,
    /// Teredo and local-use NAT64: the address they reach cannot be told.
    Tunnel,
}

impl Special {
    /// The rule, as refusals name it.
    pub fn rule(self) -> &'static str {
        match self {
            Special::Loopback => "a loopback address",
            Special::Private => "a private address (RFC 1918)",
            Special::UniqueLocal => "a private address (unique local, fc00::/7)",
            Special::LinkLocal => "a link-local address",
            Special::Unspecified => "an unspecified address",
            Special::SharedAddressSpace => "a shared address (carrier-grade NAT, 100.64.0.0/10)",
            Special::Multicast => "a multicast address",
            Special::Broadcast => "the broadcast address",
            Special::Reserved => "a reserved address",
            Special::Tunnel => "a tunnel address (Teredo or local-use NAT64)",
        }
    }
}

/// The rule `ip` falls under, or `None` for an ordinary public address.
pub fn special(ip: IpAddr) -> Option<Special> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<Special> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_broadcast() => Special::Broadcast,
        (0, ..) => Special::Unspecified,
        (127, ..) => Special::Loopback,
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => Special::Private,
        (169, 254, _) => Special::LinkLocal,
        (100, 64..=127, _) => Special::SharedAddressSpace,
        (224..=239, ..) => Special::Multicast,
        // Protocol assignments, documentation (TEST-NET-1..3), benchmarking, future use.
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) | (198, 18..=19, _) => {
            Special::Reserved
        }
        (240..=255, ..) => Special::Reserved,
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<Special> {
    if ip.is_unspecified() {
        return Some(Special::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Special::Loopback);
    }
    if let Some(v4) = embedded_v4(ip) {
        return special_v4(v4);
    }
    let s = ip.segments();
    Some(match s[0] {
        0xfc00..=0xfdff => Special::UniqueLocal,
        0xfe80..=0xfebf => Special::LinkLocal,
        // Site-local (deprecated, RFC 3879): private in all but name.
        0xfec0..=0xfeff => Special::UniqueLocal,
        0xff00..=0xffff => Special::Multicast,
        // Teredo (2001::/32) and local-use NAT64 (64:ff9b:1::/48).
        0x2001 if s[1] == 0 => Special::Tunnel,
        0x0064 if s[1] == 0xff9b && s[2] == 1 => Special::Tunnel,
        // Documentation (2001:db8::/32, 3fff::/20), discard-only (100::/64), the rest of ::/8.
        0x2001 if s[1] == 0x0db8 => Special::Reserved,
        0x3fff if s[1] < 0x1000 => Special::Reserved,
        0x0100 if s[1..4] == [0, 0, 0] => Special::Reserved,
        0x0000..=0x00ff => Special::Reserved,
        _ => return None,
    })
}

/// The IPv4 address an IPv6 one reaches by carrying it: IPv4-mapped, IPv4-compatible, NAT64
/// (64:ff9b::/96) and 6to4 (2002::/16).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(tail),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// `ip` as the address it reaches: an IPv4-mapped IPv6 address as its IPv4 one, so an
/// allow-list entry for `10.0.0.0/8` covers `::ffff:10.1.2.3` too.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(s: &str) -> Option<Special> {
        special(s.parse().unwrap())
    }

    #[test]
    fn each_special_range_is_named_and_public_addresses_pass() {
        use Special::*;
        let table = [
            ("127.0.0.1", Some(Loopback)),
            ("127.255.0.2", Some(Loopback)),
            ("::1", Some(Loopback)),
            ("10.1.2.3", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.1.1", Some(Private)),
            ("fd12:3456::1", Some(UniqueLocal)),
            ("fc00::1", Some(UniqueLocal)),
            ("169.254.169.254", Some(LinkLocal)),
            ("fe80::1", Some(LinkLocal)),
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("::", Some(Unspecified)),
            ("100.64.0.1", Some(SharedAddressSpace)),
            ("100.127.255.255", Some(SharedAddressSpace)),
            ("224.0.0.1", Some(Multicast)),
            ("ff02::1", Some(Multicast)),
            ("255.255.255.255", Some(Broadcast)),
            ("240.0.0.1", Some(Reserved)),
            ("192.0.2.10", Some(Reserved)),
            ("198.18.0.1", Some(Reserved)),
            ("2001:db8::1", Some(Reserved)),
            ("2001:0:4136:e378::1", Some(Tunnel)),
            // IPv6 forms of IPv4 special addresses.
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:10.0.0.1", Some(Private)),
            ("::ffff:169.254.169.254", Some(LinkLocal)),
            ("::127.0.0.1", Some(Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(LinkLocal)),
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:c0a8:101::1", Some(Private)),
            // Public.
            ("8.8.8.8", None),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("192.169.0.1", None),
            ("2606:4700::1111", None),
            ("::ffff:1.1.1.1", None),
            ("64:ff9b::808:808", None),
        ];
        for (addr, want) in table {
            assert_eq!(of(addr), want, "{addr}");
        }
    }

    #[test]
    fn mapped_addresses_are_compared_as_ipv4() {
        assert_eq!(
            canonical("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            canonical("fd00::1".parse().unwrap()),
            "fd00::1".parse::<IpAddr>().unwrap()
        );
    }
}
