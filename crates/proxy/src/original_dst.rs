//! Transparent capture (Istio's 15001/15006): the destination a connection had before iptables
//! REDIRECTed it to the proxy, and which listener then owns the connection.
//!
//! Under REDIRECT the kernel rewrites the destination to the proxy's port; conntrack keeps the
//! original, which `SO_ORIGINAL_DST` (`IP6T_SO_ORIGINAL_DST` for IPv6) reads back. Under TPROXY the
//! socket is `IP_TRANSPARENT` and its local address already is the original destination. Envoy's
//! `original_dst` listener filter "restores" the local address in both cases and leaves it alone
//! otherwise; so does Bosun.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use proxy_model::listener::Listener;
use tokio::net::TcpStream;

/// Where an accepted connection was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    /// The original destination when restored, else the socket's local address.
    pub address: SocketAddr,
    /// Whether the original_dst listener filter restored it (only then do `use_original_dst` and
    /// ORIGINAL_DST clusters act on it, as in Envoy).
    pub restored: bool,
}

impl Destination {
    /// The destination of `stream`: restored when `original_dst` (the listener has the filter) and
    /// the kernel knows an original destination, else the local address.
    pub fn of(stream: &TcpStream, original_dst: bool) -> std::io::Result<Destination> {
        let local = stream.local_addr()?;
        let restored = if original_dst {
            original_destination(stream, local)
        } else {
            None
        };
        Ok(Destination {
            address: restored.unwrap_or(local),
            restored: restored.is_some(),
        })
    }

    /// The restored original destination, for ORIGINAL_DST clusters.
    pub fn original(&self) -> Option<SocketAddr> {
        self.restored.then_some(self.address)
    }
}

/// `SO_ORIGINAL_DST` (or the local address of an `IP_TRANSPARENT` socket); `None` when the kernel has
/// none, i.e. the connection was not redirected and conntrack does not track it.
fn original_destination(stream: &TcpStream, local: SocketAddr) -> Option<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    let v4 = match local.ip() {
        IpAddr::V4(_) => true,
        IpAddr::V6(ip) => ip.to_ipv4_mapped().is_some(),
    };
    let found = if v4 {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    };
    if let Ok(address) = found
        && let Some(address) = address.as_socket()
    {
        return Some(canonical(address));
    }
    let transparent = if local.is_ipv4() {
        sock.ip_transparent_v4()
    } else {
        sock.ip_transparent_v6()
    };
    transparent.unwrap_or(false).then_some(canonical(local))
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (a dual-stack socket reports those).
fn canonical(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), address.port()),
            None => address,
        },
        IpAddr::V4(_) => address,
    }
}

/// The listeners by address, for `use_original_dst`: built with each runtime.
#[derive(Debug, Default)]
pub struct ListenerIndex {
    by_address: HashMap<SocketAddr, Arc<Listener>>,
}

impl ListenerIndex {
    /// Indexes every listener whose host is an IP address, bound or not (`bind_to_port: false`
    /// listeners exist to be handed connections). The first listener of an address wins.
    pub fn new(listeners: &[Arc<Listener>]) -> ListenerIndex {
        let mut by_address = HashMap::new();
        for l in listeners {
            if let Ok(ip) = l.host.parse::<IpAddr>() {
                by_address
                    .entry(SocketAddr::new(ip, l.port))
                    .or_insert_with(|| l.clone());
            }
        }
        ListenerIndex { by_address }
    }

    /// The listener a connection to `destination` belongs to, as Envoy's hand-off looks it up: the
    /// listener on exactly that address, else the one on the wildcard address of its family and
    /// port; `None` when neither exists (the accepting listener keeps it).
    pub fn owner(&self, destination: SocketAddr) -> Option<&Arc<Listener>> {
        let any = match destination.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        self.by_address.get(&destination).or_else(|| {
            self.by_address
                .get(&SocketAddr::new(any, destination.port()))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_that_was_not_redirected_keeps_its_local_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let without = Destination::of(&stream, false).unwrap();
        assert_eq!(without.address, addr);
        assert!(!without.restored);
        assert_eq!(without.original(), None);
        // With the filter: either conntrack does not track loopback here (not restored), or it does
        // and the original destination is the address itself.
        let with = Destination::of(&stream, true).unwrap();
        assert_eq!(with.address, addr);
    }

    fn listener(name: &str, host: &str, port: u16) -> Arc<Listener> {
        Arc::new(Listener {
            name: name.to_owned(),
            host: host.to_owned(),
            port,
            use_original_dst: false,
            original_dst: false,
            bind_to_port: false,
            transparent: false,
            filter_chains: Vec::new(),
            default_filter_chain: None,
            tls_inspector: false,
            http_inspector: false,
            listener_filters_timeout: None,
            continue_on_listener_filters_timeout: false,
            inbound: false,
        })
    }

    #[test]
    fn the_exact_address_wins_then_the_wildcard_of_the_port() {
        let index = ListenerIndex::new(&[
            listener("virtualOutbound", "0.0.0.0", 15001),
            listener("0.0.0.0_8080", "0.0.0.0", 8080),
            listener("10.0.0.5_8080", "10.0.0.5", 8080),
            listener("[::]_8080", "::", 8080),
            listener("by-name", "localhost", 9000),
        ]);
        let owner = |a: &str| index.owner(a.parse().unwrap()).map(|l| l.name.clone());
        assert_eq!(owner("10.0.0.5:8080").as_deref(), Some("10.0.0.5_8080"));
        assert_eq!(owner("10.0.0.6:8080").as_deref(), Some("0.0.0.0_8080"));
        assert_eq!(owner("[2001:db8::1]:8080").as_deref(), Some("[::]_8080"));
        assert_eq!(owner("10.0.0.6:9090"), None);
        assert_eq!(owner("127.0.0.1:9000"), None);
        assert_eq!(owner("10.0.0.6:15001").as_deref(), Some("virtualOutbound"));
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:80".parse().unwrap();
        assert_eq!(canonical(mapped), "10.1.2.3:80".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
