//! The operator's allowlist (`outbound.allow_hosts`): host names, IP addresses and CIDRs that
//! tenant URLs may reach even though they are not public (a model server on the LAN, the fakes
//! of the test suite on 127.0.0.1).

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;

/// Why an allowlist entry was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    /// The entry is neither an IP address, a CIDR nor a host name.
    #[error("allowlist entry `{0}` is not a host name, an IP address or a CIDR (like 10.0.0.0/8)")]
    Invalid(String),
}

/// Host names (exact, case-insensitive, without a trailing dot), addresses and networks an
/// operator lets tenant URLs reach. Empty by default: only public addresses are reachable.
///
/// Parse it from a list of entries ([`AllowList::parse`]), or from one comma-separated string
/// (`"127.0.0.1, ::1, llm.lan, 10.1.0.0/16"`, [`FromStr`]) as the environment variable gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct AllowList {
    hosts: BTreeSet<String>,
    nets: Vec<IpNet>,
}

impl AllowList {
    /// Parses every entry; blank entries are skipped, surrounding spaces and IPv6 brackets
    /// (`[::1]`) are ignored. A plain address allows exactly that address.
    pub fn parse<I, S>(entries: I) -> Result<AllowList, AllowListError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = AllowList::default();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            let bare = entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .unwrap_or(entry);
            if let Ok(net) = bare.parse::<IpNet>() {
                list.nets.push(net.trunc());
            } else if let Ok(ip) = bare.parse::<IpAddr>() {
                list.nets.push(IpNet::from(ip.to_canonical()));
            } else if let Some(host) = host_name(entry) {
                list.hosts.insert(host);
            } else {
                return Err(AllowListError::Invalid(entry.to_owned()));
            }
        }
        Ok(list)
    }

    /// Whether nothing is allowlisted.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.nets.is_empty()
    }

    /// Whether the host name `host` (any case, trailing dot or not) is allowlisted.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    /// Whether `ip` lies in an allowlisted address or network. IPv4-mapped IPv6 addresses
    /// match their IPv4 entries (`::ffff:127.0.0.1` is allowed by `127.0.0.1`).
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }
}

/// A syntactically valid host name, lowercased, without a trailing dot.
fn host_name(entry: &str) -> Option<String> {
    let host = entry.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (!host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok)).then_some(host)
}

impl FromStr for AllowList {
    type Err = AllowListError;

    /// Parses a comma-separated list, the form of `SWITCHBOARD_OUTBOUND__ALLOW_HOSTS`.
    fn from_str(s: &str) -> Result<AllowList, AllowListError> {
        AllowList::parse(s.split(','))
    }
}

impl TryFrom<Vec<String>> for AllowList {
    type Error = AllowListError;

    fn try_from(entries: Vec<String>) -> Result<AllowList, AllowListError> {
        AllowList::parse(entries)
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let hosts = self.hosts.iter().map(|h| h as &dyn fmt::Display);
        let nets = self.nets.iter().map(|n| n as &dyn fmt::Display);
        for entry in hosts.chain(nets) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{entry}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address parses")
    }

    #[test]
    fn entries_of_every_kind_parse() {
        let list: AllowList = " 127.0.0.1, [::1],10.1.0.0/16, fd00::/8 , LLM.Lan., ,"
            .parse()
            .expect("parses");
        assert!(list.allows_ip(ip("127.0.0.1")));
        assert!(!list.allows_ip(ip("127.0.0.2")));
        assert!(list.allows_ip(ip("::1")));
        assert!(list.allows_ip(ip("10.1.200.3")));
        assert!(!list.allows_ip(ip("10.2.0.1")));
        assert!(list.allows_ip(ip("fd12::1")));
        assert!(list.allows_host("llm.lan"));
        assert!(list.allows_host("LLM.LAN."));
        assert!(!list.allows_host("other.lan"));
        assert!(!list.allows_host("sub.llm.lan"));
        assert_eq!(
            list.to_string(),
            "llm.lan,127.0.0.1/32,::1/128,10.1.0.0/16,fd00::/8"
        );
    }

    #[test]
    fn mapped_ipv6_matches_ipv4_entries_and_the_other_way() {
        let list = AllowList::parse(["127.0.0.1"]).expect("parses");
        assert!(list.allows_ip(ip("::ffff:127.0.0.1")));
        let list = AllowList::parse(["::ffff:10.0.0.5"]).expect("parses");
        assert!(list.allows_ip(ip("10.0.0.5")));
    }

    #[test]
    fn cidr_with_host_bits_allows_its_network() {
        let list = AllowList::parse(["192.168.1.77/24"]).expect("parses");
        assert!(list.allows_ip(ip("192.168.1.1")));
        assert!(!list.allows_ip(ip("192.168.2.1")));
    }

    #[test]
    fn junk_is_refused_with_the_entry_named() {
        for bad in [
            "http://x",
            "10.0.0.0/33",
            "*.example.com",
            "a b",
            "-x.com",
            "x..y",
        ] {
            let err = AllowList::parse([bad]).expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn empty_input_is_an_empty_list() {
        assert!(
            AllowList::parse(Vec::<String>::new())
                .expect("parses")
                .is_empty()
        );
        assert!("".parse::<AllowList>().expect("parses").is_empty());
        assert!(" , ".parse::<AllowList>().expect("parses").is_empty());
    }
}
