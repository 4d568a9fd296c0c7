//! The SSRF guard: which addresses outgoing requests may reach, checked on
//! literal hosts and on every address DNS resolves to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether an address may be the target of an outgoing request.
///
/// Never: link-local (cloud metadata services live there: 169.254.169.254,
/// fe80::/10) and the other clouds' metadata addresses (Alibaba's
/// 100.100.100.200 inside CGNAT 100.64.0.0/10, Azure's wireserver
/// 168.63.129.16, AWS's fd00:ec2::254 inside unique-local fc00::/7),
/// 0.0.0.0/8 and `::`, multicast, broadcast and reserved space,
/// documentation and benchmarking ranges, site-local fec0::/10. An IPv6
/// address carrying an IPv4 one — mapped `::ffff:a.b.c.d`, compatible
/// `::a.b.c.d`, NAT64 (64:ff9b::/96, local-use 64:ff9b:1::/48), 6to4
/// (2002::/16), Teredo (2001::/32) — is judged by the IPv4 address it
/// carries. Loopback (127.0.0.0/8, `::1`, and `::ffff:127.x.y.z`, which a
/// dual-stack socket connects to the local host) only with `allow_loopback`;
/// loopback carried through a translator or tunnel is never this host's
/// loopback and is always refused. Private ranges (10/8, 172.16/12,
/// 192.168/16) stay allowed: operators run their own endpoints there.
pub fn address_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => ipv4_allowed(v4, allow_loopback),
        IpAddr::V6(v6) => ipv6_allowed(v6, allow_loopback),
    }
}

fn ipv4_allowed(v4: Ipv4Addr, allow_loopback: bool) -> bool {
    if v4.is_loopback() {
        return allow_loopback;
    }
    !ipv4_refused(v4)
}

/// IPv4 space an outgoing request never targets (loopback is decided apart).
fn ipv4_refused(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    a == 0 // 0.0.0.0/8 "this network" (0.0.0.0 reaches the local host)
        || v4.is_link_local() // 169.254.0.0/16: AWS, GCP, Azure, Oracle… metadata
        || (a == 100 && (b & 0xc0) == 64) // 100.64.0.0/10 CGNAT, Alibaba's 100.100.100.200
        || v4 == Ipv4Addr::new(168, 63, 129, 16) // Azure wireserver
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24 IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // 192.0.2.0/24 TEST-NET-1
        || (a == 198 && b == 51 && c == 100) // 198.51.100.0/24 TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // 203.0.113.0/24 TEST-NET-3
        || (a == 198 && (b & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || v4.is_multicast() // 224.0.0.0/4
        || a >= 240 // 240.0.0.0/4 reserved, 255.255.255.255 broadcast
}

fn ipv6_allowed(v6: Ipv6Addr, allow_loopback: bool) -> bool {
    if v6.is_loopback() {
        return allow_loopback;
    }
    if v6.is_unspecified() {
        return false;
    }
    // On a dual-stack socket `::ffff:a.b.c.d` *is* the IPv4 address.
    if let Some(v4) = v6.to_ipv4_mapped() {
        return ipv4_allowed(v4, allow_loopback);
    }
    // The other embeddings reach the IPv4 address through a translator or a
    // tunnel: the IPv4 rules apply, and loopback there is not ours.
    if embedded_ipv4(v6)
        .iter()
        .any(|v4| v4.is_loopback() || ipv4_refused(*v4))
    {
        return false;
    }
    let s = v6.segments();
    let nat64 = s[0] == 0x0064 && s[1] == 0xff9b;
    let refused = (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local (AWS IMDS fd00:ec2::254)
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // ff00::/8 multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // 2001:db8::/32 documentation
        || (s[0] == 0x3fff && (s[1] & 0xf000) == 0) // 3fff::/20 documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // 100::/64 discard-only
        // 64:ff9b::/32 outside the two NAT64 prefixes decoded above: unassigned.
        || (nat64 && !is_nat64_wkp(&s) && s[2] != 1)
        // ::/8 is reserved (the compatible and SIIT forms, decoded above,
        // are deprecated or translator-only), NAT64 aside.
        || ((s[0] & 0xff00) == 0 && !nat64);
    !refused
}

/// 64:ff9b::/96, the NAT64 well-known prefix (RFC 6052).
fn is_nat64_wkp(s: &[u16; 8]) -> bool {
    s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0]
}

/// The IPv4 addresses an IPv6 address carries for a translator or a tunnel
/// (mapped addresses aside): every plausible reading, so that an address is
/// refused when any of them is.
fn embedded_ipv4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let v4 = |b: [u8; 4]| Ipv4Addr::from(b);
    let last = v4([o[12], o[13], o[14], o[15]]);
    let mut out = Vec::new();
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        // ::a.b.c.d, IPv4-compatible (deprecated).
        out.push(last);
    } else if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        // ::ffff:0:a.b.c.d, SIIT's IPv4-translated form.
        out.push(last);
    } else if is_nat64_wkp(&s) {
        out.push(last);
    } else if s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 1 {
        // 64:ff9b:1::/48, local-use NAT64 (RFC 8215): the translator's prefix
        // may be /48, /56, /64 or /96 within it (RFC 6052 §2.2). Each shorter
        // layout skips the "u" octet (bits 64..72) and leaves a zero suffix.
        let zero = |r: std::ops::Range<usize>| o[r].iter().all(|b| *b == 0);
        let mut shorter = false;
        if o[8] == 0 && zero(11..16) {
            out.push(v4([o[6], o[7], o[9], o[10]])); // /48
            shorter = true;
        }
        if o[8] == 0 && zero(12..16) {
            out.push(v4([o[7], o[9], o[10], o[11]])); // /56
            shorter = true;
        }
        if o[8] == 0 && zero(13..16) {
            out.push(v4([o[9], o[10], o[11], o[12]])); // /64
            shorter = true;
        }
        // /96: the last 32 bits, unless they are only a shorter layout's
        // zero suffix.
        if !(shorter && last.is_unspecified()) {
            out.push(last);
        }
    } else if s[0] == 0x2002 {
        // 6to4: 2002:aabb:ccdd::/48 carries a.b.c.d in bits 16..48.
        out.push(v4([o[2], o[3], o[4], o[5]]));
    } else if s[0] == 0x2001 && s[1] == 0 {
        // Teredo: the server in bits 32..64, the client's (NAT's) address
        // in the last 32 bits, inverted.
        out.push(v4([o[4], o[5], o[6], o[7]]));
        out.push(v4([!o[12], !o[13], !o[14], !o[15]]));
    }
    out
}

/// Loopback, or the mapped form of an IPv4 loopback address.
fn is_loopback_form(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

pub(super) fn check_literal_host(url: &reqwest::Url, allow_loopback: bool) -> Result<(), String> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            return if allow_loopback {
                Ok(())
            } else {
                Err("localhost is refused unless [delivery] allow_loopback = true".into())
            }
        }
        _ => return Ok(()),
    };
    if address_allowed(ip, allow_loopback) {
        Ok(())
    } else if is_loopback_form(ip) && !allow_loopback {
        Err(format!(
            "{ip} is loopback, refused unless [delivery] allow_loopback = true"
        ))
    } else {
        Err(format!(
            "{ip} is a link-local, metadata or otherwise internal address"
        ))
    }
}

/// A DNS resolver that drops addresses the guard refuses, so a public name
/// cannot be pointed at a metadata service (DNS rebinding included: the
/// check happens at connect time, on the addresses actually used).
pub(super) struct GuardedResolver {
    pub(super) allow_loopback: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let host = format!("{}:0", name.as_str());
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(host)
                .await?
                .filter(|a| address_allowed(a.ip(), allow_loopback))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{} resolves only to refused addresses (SSRF guard)",
                    name.as_str()
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

// ---- the worker ----

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssrf_guard_refuses_metadata_and_link_local() {
        for (ip, loopback_ok, allowed) in [
            ("169.254.169.254", true, false),
            ("fe80::1", true, false),
            ("fd00:ec2::254", true, false),
            ("0.0.0.0", true, false),
            ("127.0.0.1", false, false),
            ("127.0.0.1", true, true),
            ("::ffff:169.254.169.254", true, false),
            ("::ffff:127.0.0.1", false, false),
            ("10.0.0.5", false, true),
            ("93.184.216.34", false, true),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                address_allowed(ip, loopback_ok),
                allowed,
                "{ip} loopback_ok={loopback_ok}"
            );
        }
    }
    /// Every embedded form of a refused IPv4 address, the other clouds'
    /// metadata addresses and the special-purpose ranges (issue item 10).
    #[test]
    fn the_ssrf_guard_refuses_embedded_and_special_purpose_addresses() {
        let refused_always = [
            // IPv4: metadata, CGNAT, this-network, broadcast, multicast,
            // reserved, documentation, benchmarking, protocol assignments.
            "169.254.170.2",
            "100.100.100.200",
            "100.64.0.1",
            "100.127.255.254",
            "168.63.129.16",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "240.0.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "192.0.2.10",
            "198.51.100.10",
            "203.0.113.10",
            "198.18.0.1",
            "198.19.255.1",
            "192.0.0.170",
            // IPv4-mapped.
            "::ffff:169.254.169.254",
            "::ffff:100.100.100.200",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.1",
            // IPv4-compatible, SIIT-translated.
            "::169.254.169.254",
            "::a9fe:a9fe",
            "::ffff:0:169.254.169.254",
            // NAT64 well-known prefix and local-use /48 (the /96, /64, /56
            // and /48 layouts of RFC 6052).
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::169.254.169.254",
            "64:ff9b::100.100.100.200",
            "64:ff9b::a83f:8110",
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1:ffff:ffff:ffff:a9fe:a9fe",
            "64:ff9b:1:0:a9:fea9:fe00:0",
            "64:ff9b:1:a9:fe:a9fe::",
            "64:ff9b:1:a9fe:a9:fe00::",
            "64:ff9b:1::",
            "64:ff9b:0:1::808:808",
            // 6to4 (2002:aabb:ccdd::/48).
            "2002:a9fe:a9fe::1",
            "2002:6464:64c8::",
            "2002:7f00:1::1",
            // Teredo: client = NOT(last 32 bits); server in bits 32..64.
            "2001:0:4136:e378:8000:63bf:5601:5601",
            "2001:0:4136:e378::5601:5601",
            "2001:0:a9fe:a9fe::f7f7:f7f7",
            // IPv6: AWS IMDS, unique local, link-local, site-local,
            // multicast, documentation, discard, reserved, unspecified.
            "fd00:ec2::254",
            "fc00::1",
            "fdff:ffff::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "feff::1",
            "ff02::1",
            "ff05::1:3",
            "2001:db8::1",
            "3fff::1",
            "3fff:fff::1",
            "100::1",
            "::",
            "::2",
            "1::1",
        ];
        for ip in refused_always {
            let parsed: IpAddr = ip.parse().unwrap();
            for loopback_ok in [false, true] {
                assert!(
                    !address_allowed(parsed, loopback_ok),
                    "{ip} must be refused (allow_loopback = {loopback_ok})"
                );
            }
        }
        // Loopback carried through a translator or tunnel is not ours:
        // refused even with allow_loopback.
        for ip in [
            "::127.0.0.1",
            "::ffff:0:127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::7f00:1",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(!address_allowed(parsed, true), "{ip}");
            assert!(!address_allowed(parsed, false), "{ip}");
        }
        // Loopback itself, and its mapped form, only with allow_loopback.
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "127.255.255.254",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:127.9.9.9",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(address_allowed(parsed, true), "{ip} with allow_loopback");
            assert!(!address_allowed(parsed, false), "{ip} without");
        }
        // allow_loopback admits nothing else.
        for ip in ["169.254.169.254", "0.0.0.0", "::", "fe80::1", "128.0.0.1"] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(
                address_allowed(parsed, true),
                ip == "128.0.0.1",
                "{ip}: allow_loopback only ever admits loopback"
            );
        }
        // Public and private addresses, and embeddings of public ones, stay
        // allowed (NAT64 is how IPv6-only hosts reach IPv4 endpoints).
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "10.0.0.5",
            "172.16.0.1",
            "192.168.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "168.63.129.17",
            "198.20.0.1",
            "::ffff:93.184.216.34",
            "64:ff9b::808:808",
            "64:ff9b::93.184.216.34",
            "64:ff9b:1::808:808",
            "64:ff9b:1:808:8:800::",
            "2002:5db8:d822::1",
            // The IPv4 rules apply: private stays allowed, embedded too.
            "2002:0a00:0001::1:2",
            "2001:0:4136:e378:8000:63bf:a247:27dd",
            "2606:4700::1111",
            "2a00:1450:4001:80b::200e",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(address_allowed(parsed, false), "{ip} must be allowed");
        }
    }
    #[test]
    fn literal_hosts_are_checked_with_a_reason() {
        let check = |url: &str, loopback: bool| {
            check_literal_host(&reqwest::Url::parse(url).unwrap(), loopback)
        };
        for url in [
            "http://[::169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::]/",
            "http://100.100.100.200/",
            "http://0x7f.1/",
        ] {
            assert!(check(url, false).is_err(), "{url}");
        }
        let e = check("http://[::ffff:127.0.0.1]:9/", false).unwrap_err();
        assert!(e.contains("allow_loopback"), "{e}");
        assert!(check("http://[::ffff:127.0.0.1]:9/", true).is_ok());
        let e = check("http://[64:ff9b::7f00:1]/", true).unwrap_err();
        assert!(e.contains("internal"), "{e}");
        // Names are checked on their resolved addresses.
        assert!(check("https://hooks.example.com/", false).is_ok());
    }
    #[tokio::test]
    async fn the_resolver_drops_refused_addresses() {
        use reqwest::dns::Resolve;
        let name = |n: &str| n.parse::<reqwest::dns::Name>().unwrap();
        let refused = GuardedResolver {
            allow_loopback: false,
        };
        let err = match refused.resolve(name("localhost")).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("SSRF guard"), "{err}");
        let allowed = GuardedResolver {
            allow_loopback: true,
        };
        let addrs: Vec<SocketAddr> = allowed.resolve(name("localhost")).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
