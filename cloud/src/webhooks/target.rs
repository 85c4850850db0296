//! Where a webhook may be sent (SSRF rules): which URLs an admin may register, and which
//! addresses a delivery may connect to.
//!
//! A URL is `https://`, or `http://` only to loopback in dev mode or when the operator
//! allows private targets (`webhook_allow_private_targets`). Registration refuses a literal
//! internal address; a host name is checked where it matters, at delivery: the
//! [`VettedResolver`] resolves it and hands the HTTP client only allowed addresses, so the
//! address connected to is the address checked (a name that resolves to a public address
//! at registration and to 169.254.169.254 later is still refused).

use crate::config::Config;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use url::{Host, Url};

/// What the operator allows.
#[derive(Clone, Copy, Debug)]
pub struct TargetPolicy {
    /// Any address and plain http (`webhook_allow_private_targets`).
    pub allow_private: bool,
    /// Dev mode: loopback, and plain http to it.
    pub dev: bool,
}

/// An address as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Loopback,
    /// Private (RFC 1918), link-local (incl. the cloud metadata address), CGNAT, ULA,
    /// unspecified, multicast, broadcast and reserved ranges.
    Internal,
}

/// Why a URL may not be registered (said in the 400's description).
pub type Refusal = String;

impl TargetPolicy {
    pub fn of(config: &Config) -> Self {
        TargetPolicy { allow_private: config.webhook_allow_private_targets, dev: config.dev }
    }

    pub fn allows(self, ip: IpAddr) -> bool {
        match classify(ip) {
            AddressClass::Public => true,
            AddressClass::Loopback => self.allow_private || self.dev,
            AddressClass::Internal => self.allow_private,
        }
    }

    /// The rules a URL must meet to be registered, and again before each delivery.
    pub fn check_url(self, raw: &str) -> Result<Url, Refusal> {
        if raw.len() > 2048 {
            return Err("url: at most 2048 characters".into());
        }
        let url = Url::parse(raw.trim()).map_err(|e| format!("url: not an absolute URL ({e})"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("url: credentials in the URL are not allowed; verify the signature instead".into());
        }
        let host = url.host().ok_or_else(|| Refusal::from("url: a host is required"))?;
        let literal = match host {
            Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            Host::Domain(_) => None,
        };
        let loopback_host = match (literal, &host) {
            (Some(ip), _) => classify(ip) == AddressClass::Loopback,
            (None, Host::Domain(name)) => *name == "localhost" || name.ends_with(".localhost"),
            _ => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if self.allow_private || (self.dev && loopback_host) => {}
            "http" => {
                return Err(
                    "url: must be https:// (http:// only to loopback in dev mode, or where the operator allows private targets)"
                        .into(),
                )
            }
            _ => return Err("url: must be https://".into()),
        }
        if let Some(ip) = literal {
            if !self.allows(ip) {
                return Err(format!(
                    "url: {ip} is a loopback, private, link-local or otherwise internal address; webhooks go to public addresses only"
                ));
            }
        }
        Ok(url)
    }
}

/// The class of `ip` (an IPv4-mapped or NAT64 IPv6 address is classed by its IPv4 part).
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify_v4(v4);
            }
            let s = v6.segments();
            // 64:ff9b::/96 (NAT64) reaches the IPv4 address in its last 32 bits.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return classify_v4(Ipv4Addr::new(a, b, c, d));
            }
            classify_v6(v6)
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, _, _] = ip.octets();
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    let internal = a == 0 // "this network", incl. 0.0.0.0
        || ip.is_private() // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local() // 169.254/16, incl. 169.254.169.254
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments 192.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || ip.is_multicast() // 224/4
        || a >= 240; // reserved 240/4 and broadcast
    if internal {
        AddressClass::Internal
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    let first = ip.segments()[0];
    let internal = ip.is_unspecified()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || ip.is_multicast();
    if internal {
        AddressClass::Internal
    } else {
        AddressClass::Public
    }
}

/// The resolver error for a name with no allowed address, found again by
/// [`is_forbidden_address`] in the HTTP client's error chain.
#[derive(Debug, thiserror::Error)]
#[error("the host resolves only to addresses webhooks may not be sent to")]
pub struct ForbiddenAddress;

/// Resolves names for the delivery client and keeps only addresses the policy allows.
#[derive(Clone, Debug)]
pub struct VettedResolver {
    pub policy: TargetPolicy,
}

impl Resolve for VettedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let found: Vec<SocketAddr> = match tokio::net::lookup_host((name.as_str(), 0)).await {
                Ok(found) => found.collect(),
                Err(e) => return Err(Box::new(e) as BoxError),
            };
            let allowed: Vec<SocketAddr> = found.into_iter().filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(ForbiddenAddress) as BoxError);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whether an HTTP client error came from [`VettedResolver`] refusing every address.
pub fn is_forbidden_address(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if e.is::<ForbiddenAddress>() || e.to_string() == ForbiddenAddress.to_string() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn class(s: &str) -> AddressClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn internal_ranges_are_recognised() {
        for ip in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(class(ip), AddressClass::Loopback, "{ip}");
        }
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert_eq!(class(ip), AddressClass::Internal, "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111"] {
            assert_eq!(class(ip), AddressClass::Public, "{ip}");
        }
    }

    #[test]
    fn registration_rules() {
        let strict = TargetPolicy { allow_private: false, dev: false };
        let dev = TargetPolicy { allow_private: false, dev: true };
        let open = TargetPolicy { allow_private: true, dev: false };
        assert!(strict.check_url("https://hooks.example.com/x").is_ok());
        assert!(strict.check_url("http://hooks.example.com/x").is_err());
        assert!(strict.check_url("ftp://hooks.example.com/x").is_err());
        assert!(strict.check_url("https://10.0.0.1/x").is_err());
        assert!(strict.check_url("https://[::1]/x").is_err());
        assert!(strict.check_url("https://169.254.169.254/latest").is_err());
        assert!(strict.check_url("https://user:pw@hooks.example.com/").is_err());
        assert!(strict.check_url("not a url").is_err());
        assert!(dev.check_url("http://127.0.0.1:9000/x").is_ok());
        assert!(dev.check_url("http://localhost:9000/x").is_ok());
        assert!(dev.check_url("http://hooks.example.com/x").is_err());
        assert!(dev.check_url("https://192.168.0.10/x").is_err());
        assert!(open.check_url("http://192.168.0.10/x").is_ok());
    }
}
