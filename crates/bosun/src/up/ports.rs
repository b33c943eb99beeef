//! The start-up port check: every address `bosun up` will bind is tried first, so a taken port is one
//! clear error before anything starts, naming the port and (from /proc) the process that holds it.

use std::net::{SocketAddr, TcpListener};

/// A port that cannot be bound.
#[derive(Debug)]
pub struct Taken {
    pub addr: SocketAddr,
    /// What `bosun up` wanted it for.
    pub purpose: String,
    pub error: std::io::Error,
    /// `pid N (name)`, when /proc tells.
    pub owner: Option<String>,
}

impl std::fmt::Display for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}) cannot be bound: {}",
            self.addr, self.purpose, self.error
        )?;
        match &self.owner {
            Some(o) => write!(f, "; it is used by {o}"),
            None => Ok(()),
        }
    }
}

/// Tries to bind each address (then lets go); returns every one that failed.
pub fn check(binds: &[(SocketAddr, String)]) -> Vec<Taken> {
    let mut taken = Vec::new();
    for (addr, purpose) in binds {
        // std sets SO_REUSEADDR, so sockets in TIME_WAIT from a previous run do not count as taken.
        if let Err(error) = TcpListener::bind(addr) {
            taken.push(Taken {
                addr: *addr,
                purpose: purpose.clone(),
                owner: owner(*addr),
                error,
            });
        }
    }
    taken
}

/// `pid N (name)` of a process listening on `addr` (or on the wildcard address with its port), from
/// /proc/net/tcp{,6} and the socket links in /proc/*/fd. Best effort: `None` when not found or not
/// allowed to look (another user's process).
pub fn owner(addr: SocketAddr) -> Option<String> {
    let inodes = listening_inodes(addr);
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let link = link.to_string_lossy();
            if let Some(inode) = link
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                && inodes.iter().any(|i| i == inode)
            {
                let comm = std::fs::read_to_string(entry.path().join("comm"))
                    .map(|c| c.trim().to_owned())
                    .unwrap_or_else(|_| "?".to_owned());
                return Some(format!("pid {pid} ({comm})"));
            }
        }
    }
    None
}

/// Inodes of listening sockets bound to `addr` or to the wildcard on its port.
fn listening_inodes(addr: SocketAddr) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        out.extend(
            text.lines()
                .skip(1)
                .filter_map(|line| matching_inode(line, addr)),
        );
    }
    out
}

/// TCP_LISTEN in /proc/net/tcp's `st` column.
const LISTEN: &str = "0A";

/// The inode of one /proc/net/tcp{,6} line if it is a listener on `addr`'s port, bound to `addr`'s IP
/// or to a wildcard.
fn matching_inode(line: &str, addr: SocketAddr) -> Option<String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
    if *state != LISTEN {
        return None;
    }
    let (ip_hex, port_hex) = local.split_once(':')?;
    if u16::from_str_radix(port_hex, 16).ok()? != addr.port() {
        return None;
    }
    let wildcard = ip_hex.bytes().all(|b| b == b'0');
    // IPv4 addresses are written as one little-endian u32 in hex.
    let same_ip = match addr {
        SocketAddr::V4(a) => {
            ip_hex.len() == 8
                && u32::from_str_radix(ip_hex, 16).ok()? == u32::from_le_bytes(a.ip().octets())
        }
        SocketAddr::V6(_) => false,
    };
    (wildcard || same_ip).then(|| (*inode).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_lines_are_matched_by_ip_and_port() {
        let addr: SocketAddr = "127.0.10.3:15000".parse().expect("addr");
        // 127.0.10.3 little-endian is 030A007F; 15000 is 3A98.
        let line = "   0: 030A007F:3A98 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 12345 1 0000000000000000 100 0 0 10 0";
        assert_eq!(matching_inode(line, addr).as_deref(), Some("12345"));
        let other_ip = line.replace("030A007F", "040A007F");
        assert_eq!(matching_inode(&other_ip, addr), None);
        let wildcard = line.replace("030A007F", "00000000");
        assert_eq!(matching_inode(&wildcard, addr).as_deref(), Some("12345"));
        let established = line.replace(" 0A ", " 01 ");
        assert_eq!(matching_inode(&established, addr), None);
        assert_eq!(matching_inode("garbage", addr), None);
    }

    #[test]
    fn a_taken_port_names_its_owner() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let taken = check(&[(addr, "test".to_owned())]);
        assert_eq!(taken.len(), 1);
        let text = taken[0].to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(listener);
        assert!(check(&[(addr, "test".to_owned())]).is_empty());
    }
}
