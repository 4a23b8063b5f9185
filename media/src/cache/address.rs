//! The outbound-address policy of the prompt cache (server-side request forgery defence): which
//! IP addresses an origin fetch may connect to. The decision is a pure function of the address
//! and the policy; the fetcher resolves names itself, vets every address, and then connects to
//! a vetted address only, so a second DNS answer cannot swap in another one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which address ranges an origin fetch may reach besides public unicast addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Allow RFC 1918 private IPv4 (10/8, 172.16/12, 192.168/16) and IPv6 unique local
    /// addresses (fc00::/7, RFC 4193).
    pub allow_private: bool,
    /// Allow loopback (127/8, ::1).
    pub allow_loopback: bool,
}

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A cloud instance-metadata address (169.254.169.254, fd00:ec2::254): always refused.
    Metadata,
    /// Link-local (169.254/16, fe80::/10): always refused.
    LinkLocal,
    /// A private or unique-local address while private addresses are not allowed.
    Private,
    /// Loopback while loopback is not allowed.
    Loopback,
    /// Unspecified, multicast or broadcast: never a web server.
    NotUnicast,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Refusal::Metadata => "a cloud metadata address",
            Refusal::LinkLocal => "a link-local address",
            Refusal::Private => "a private address",
            Refusal::Loopback => "a loopback address",
            Refusal::NotUnicast => "not a unicast address",
        })
    }
}

/// The AWS IPv6 instance-metadata address, fd00:ec2::254.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

impl AddressPolicy {
    /// Whether `address` may be connected to, and if not, why.
    pub fn check(&self, address: IpAddr) -> Result<(), Refusal> {
        match address {
            IpAddr::V4(v4) => self.check_v4(v4),
            IpAddr::V6(v6) => {
                // An IPv4-mapped address (::ffff:a.b.c.d, RFC 4291 §2.5.5.2) reaches the IPv4
                // host, so it gets the IPv4 verdict.
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return self.check_v4(v4);
                }
                self.check_v6(v6)
            }
        }
    }

    fn check_v4(&self, address: Ipv4Addr) -> Result<(), Refusal> {
        if address == Ipv4Addr::new(169, 254, 169, 254) {
            return Err(Refusal::Metadata);
        }
        if address.is_link_local() {
            return Err(Refusal::LinkLocal);
        }
        if address.is_unspecified() || address.is_multicast() || address.is_broadcast() {
            return Err(Refusal::NotUnicast);
        }
        if address.is_loopback() && !self.allow_loopback {
            return Err(Refusal::Loopback);
        }
        if address.is_private() && !self.allow_private {
            return Err(Refusal::Private);
        }
        Ok(())
    }

    fn check_v6(&self, address: Ipv6Addr) -> Result<(), Refusal> {
        let first = address.segments()[0];
        if address == METADATA_V6 {
            return Err(Refusal::Metadata);
        }
        // fe80::/10 (RFC 4291 §2.5.6).
        if first & 0xffc0 == 0xfe80 {
            return Err(Refusal::LinkLocal);
        }
        if address.is_unspecified() || address.is_multicast() {
            return Err(Refusal::NotUnicast);
        }
        if address.is_loopback() && !self.allow_loopback {
            return Err(Refusal::Loopback);
        }
        // fc00::/7 (RFC 4193 §3.1).
        if first & 0xfe00 == 0xfc00 && !self.allow_private {
            return Err(Refusal::Private);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: AddressPolicy = AddressPolicy {
        allow_private: false,
        allow_loopback: false,
    };
    const LENIENT: AddressPolicy = AddressPolicy {
        allow_private: true,
        allow_loopback: true,
    };

    fn check(policy: AddressPolicy, text: &str) -> Result<(), Refusal> {
        let address: IpAddr = text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        policy.check(address)
    }

    #[test]
    fn metadata_and_link_local_are_refused_by_every_policy() {
        for policy in [STRICT, LENIENT] {
            assert_eq!(check(policy, "169.254.169.254"), Err(Refusal::Metadata));
            assert_eq!(check(policy, "fd00:ec2::254"), Err(Refusal::Metadata));
            assert_eq!(
                check(policy, "::ffff:169.254.169.254"),
                Err(Refusal::Metadata)
            );
            assert_eq!(check(policy, "169.254.1.2"), Err(Refusal::LinkLocal));
            assert_eq!(check(policy, "fe80::1"), Err(Refusal::LinkLocal));
            assert_eq!(check(policy, "febf::1"), Err(Refusal::LinkLocal));
            assert_eq!(check(policy, "0.0.0.0"), Err(Refusal::NotUnicast));
            assert_eq!(check(policy, "ff02::1"), Err(Refusal::NotUnicast));
            assert_eq!(check(policy, "93.184.215.14"), Ok(()));
            assert_eq!(check(policy, "2606:2800:21f:cb07::1"), Ok(()));
        }
    }

    #[test]
    fn private_and_loopback_follow_the_policy() {
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "fc00::1",
            "fdff::1",
        ] {
            assert_eq!(check(STRICT, private), Err(Refusal::Private), "{private}");
            assert_eq!(check(LENIENT, private), Ok(()), "{private}");
        }
        assert_eq!(check(STRICT, "172.32.0.1"), Ok(()));
        for loopback in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(
                check(STRICT, loopback),
                Err(Refusal::Loopback),
                "{loopback}"
            );
            assert_eq!(check(LENIENT, loopback), Ok(()), "{loopback}");
        }
    }
}
