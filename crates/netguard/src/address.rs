//! Which IP addresses a tenant URL may never reach (unless allowlisted), and why.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused: it is not a public unicast address on the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// `0.0.0.0/8` ("this network") and `::`: connecting there reaches this machine.
    Unspecified,
    /// `127.0.0.0/8` and `::1`: this machine.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`) and local-use NAT64 (`64:ff9b:1::/48`).
    Private,
    /// `100.64.0.0/10`, carrier-grade NAT (RFC 6598), often used inside clouds.
    SharedAddressSpace,
    /// `169.254.0.0/16` (including the cloud metadata service `169.254.169.254`) and
    /// `fe80::/10`.
    LinkLocal,
    /// `fc00::/7` (unique local, e.g. AWS's metadata service `fd00:ec2::254`).
    UniqueLocal,
    /// `fec0::/10` (deprecated site-local).
    SiteLocal,
    /// `224.0.0.0/4` and `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15` and `2001:2::/48` (benchmarking networks).
    Benchmarking,
    /// `192.0.0.0/24` and `2001::/23` (IETF protocol assignments, including Teredo).
    ProtocolAssignment,
    /// `::/96` with an IPv4 address in its low bits (deprecated IPv4-compatible form).
    Ipv4Compatible,
    /// `100::/64` (discard-only).
    Discard,
    /// Anything else outside the public unicast space: `240.0.0.0/4`, `192.88.99.0/24`,
    /// IPv6 outside `2000::/3`.
    Reserved,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Unspecified => "unspecified address",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private network",
            AddressClass::SharedAddressSpace => "shared address space",
            AddressClass::LinkLocal => "link-local (includes cloud metadata)",
            AddressClass::UniqueLocal => "unique local",
            AddressClass::SiteLocal => "site-local",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "documentation range",
            AddressClass::Benchmarking => "benchmarking range",
            AddressClass::ProtocolAssignment => "IETF protocol assignment",
            AddressClass::Ipv4Compatible => "IPv4-compatible IPv6",
            AddressClass::Discard => "discard-only",
            AddressClass::Reserved => "reserved",
        })
    }
}

/// IPv4 networks refused, as (network, prefix length, class), checked in order.
const V4_RULES: &[([u8; 4], u32, AddressClass)] = &[
    ([0, 0, 0, 0], 8, AddressClass::Unspecified),
    ([10, 0, 0, 0], 8, AddressClass::Private),
    ([100, 64, 0, 0], 10, AddressClass::SharedAddressSpace),
    ([127, 0, 0, 0], 8, AddressClass::Loopback),
    ([169, 254, 0, 0], 16, AddressClass::LinkLocal),
    ([172, 16, 0, 0], 12, AddressClass::Private),
    ([192, 0, 0, 0], 24, AddressClass::ProtocolAssignment),
    ([192, 0, 2, 0], 24, AddressClass::Documentation),
    ([192, 88, 99, 0], 24, AddressClass::Reserved),
    ([192, 168, 0, 0], 16, AddressClass::Private),
    ([198, 18, 0, 0], 15, AddressClass::Benchmarking),
    ([198, 51, 100, 0], 24, AddressClass::Documentation),
    ([203, 0, 113, 0], 24, AddressClass::Documentation),
    ([224, 0, 0, 0], 4, AddressClass::Multicast),
    ([255, 255, 255, 255], 32, AddressClass::Broadcast),
    ([240, 0, 0, 0], 4, AddressClass::Reserved),
];

/// IPv6 networks refused, as (network, prefix length, class), checked in order after the
/// forms that embed an IPv4 address.
const V6_RULES: &[(u128, u32, AddressClass)] = &[
    (0, 128, AddressClass::Unspecified),
    (1, 128, AddressClass::Loopback),
    (0, 96, AddressClass::Ipv4Compatible),
    (0x0064_ff9b_0001 << 80, 48, AddressClass::Private),
    (0x0100 << 112, 64, AddressClass::Discard),
    (0x2001_0db8 << 96, 32, AddressClass::Documentation),
    (0x2001_0002 << 96, 48, AddressClass::Benchmarking),
    (0x2001 << 112, 23, AddressClass::ProtocolAssignment),
    (0x3fff << 112, 20, AddressClass::Documentation),
    (0xfc00 << 112, 7, AddressClass::UniqueLocal),
    (0xfe80 << 112, 10, AddressClass::LinkLocal),
    (0xfec0 << 112, 10, AddressClass::SiteLocal),
    (0xff00 << 112, 8, AddressClass::Multicast),
];

/// `64:ff9b::/96`, the well-known NAT64 prefix: the low 32 bits are the IPv4 destination.
const NAT64: u128 = 0x0064_ff9b << 96;
/// `2002::/16`, 6to4: bits 16..48 are the IPv4 address of the relay.
const SIX_TO_FOUR: u128 = 0x2002 << 112;
/// `2000::/3`, the global unicast space; everything else in IPv6 is refused.
const GLOBAL_UNICAST: u128 = 0x2000 << 112;

fn in_net(addr: u128, bits: u32, net: u128, prefix: u32) -> bool {
    let shift = bits - prefix;
    prefix == 0 || (addr >> shift) == (net >> shift)
}

fn v4_class(ip: Ipv4Addr) -> Option<AddressClass> {
    let addr = u128::from(u32::from(ip));
    V4_RULES.iter().find_map(|(net, prefix, class)| {
        let net = u128::from(u32::from(Ipv4Addr::from(*net)));
        in_net(addr, 32, net, *prefix).then_some(*class)
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<AddressClass> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_class(v4);
    }
    let addr = u128::from(ip);
    if in_net(addr, 128, NAT64, 96) {
        // Truncation keeps exactly the low 32 bits, the embedded IPv4 address.
        return v4_class(Ipv4Addr::from(addr as u32));
    }
    if in_net(addr, 128, SIX_TO_FOUR, 16) {
        return v4_class(Ipv4Addr::from((addr >> 80) as u32));
    }
    if let Some(class) = V6_RULES
        .iter()
        .find_map(|(net, prefix, class)| in_net(addr, 128, *net, *prefix).then_some(*class))
    {
        return Some(class);
    }
    (!in_net(addr, 128, GLOBAL_UNICAST, 3)).then_some(AddressClass::Reserved)
}

/// Why `ip` must not be reached from a tenant URL, or `None` for a public unicast address.
/// IPv4-mapped (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:AABB:CCDD::`)
/// addresses are judged by the IPv4 address inside them.
pub fn forbidden_class(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<AddressClass> {
        forbidden_class(s.parse().expect("test address parses"))
    }

    #[test]
    fn ipv4_classes() {
        use AddressClass::*;
        let cases = [
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("10.0.0.1", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.1.1", Some(Private)),
            ("100.64.0.1", Some(SharedAddressSpace)),
            ("100.127.255.255", Some(SharedAddressSpace)),
            ("169.254.169.254", Some(LinkLocal)),
            ("192.0.0.170", Some(ProtocolAssignment)),
            ("192.0.2.10", Some(Documentation)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.9", Some(Documentation)),
            ("198.18.0.1", Some(Benchmarking)),
            ("198.19.255.255", Some(Benchmarking)),
            ("192.88.99.1", Some(Reserved)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("240.0.0.1", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
        ];
        for (ip, want) in cases {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    #[test]
    fn public_ipv4_passes_including_neighbours_of_refused_ranges() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "198.17.255.255",
            "198.20.0.0",
            "11.0.0.1",
            "223.255.255.255",
        ] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv6_classes() {
        use AddressClass::*;
        let cases = [
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("fe80::1", Some(LinkLocal)),
            ("fc00::1", Some(UniqueLocal)),
            ("fd00:ec2::254", Some(UniqueLocal)),
            ("fec0::1", Some(SiteLocal)),
            ("ff02::1", Some(Multicast)),
            ("2001:db8::1", Some(Documentation)),
            ("3fff::1", Some(Documentation)),
            ("2001:2::1", Some(Benchmarking)),
            ("2001::1", Some(ProtocolAssignment)),
            ("100::1", Some(Discard)),
            ("64:ff9b:1::1", Some(Private)),
            ("::127.0.0.1", Some(Ipv4Compatible)),
            ("::8.8.8.8", Some(Ipv4Compatible)),
            ("4000::1", Some(Reserved)),
            ("1::1", Some(Reserved)),
        ];
        for (ip, want) in cases {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_carrying_ipv4_are_judged_by_the_ipv4_inside() {
        use AddressClass::*;
        let cases = [
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:7f00:1", Some(Loopback)),
            ("::ffff:169.254.169.254", Some(LinkLocal)),
            ("::ffff:10.0.0.1", Some(Private)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::127.0.0.1", Some(Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(LinkLocal)),
            ("64:ff9b::8.8.8.8", None),
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:c0a8:101::1", Some(Private)),
            ("2002:808:808::1", None),
        ];
        for (ip, want) in cases {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    #[test]
    fn public_ipv6_passes() {
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:82a::200e",
            "2001:4860::1",
        ] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }
}
