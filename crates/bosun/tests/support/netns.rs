//! What the tests that make network namespaces need, and how they skip without it: root, `ip`,
//! `iptables-restore` and `setpriv`. Without them a test says why and passes, unless
//! `BOSUN_REQUIRE_NETNS` is set (CI, where the machine can), when it fails.

use std::path::PathBuf;

/// Whether this process runs as root.
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(str::to_owned));
    uid.as_deref() == Some("0")
}

/// Why network namespaces with Istio's rules cannot be made here, if they cannot.
pub fn missing_prerequisite() -> Option<String> {
    if !is_root() {
        return Some("it needs root (network namespaces and iptables)".to_owned());
    }
    for tool in ["ip", "iptables-restore", "setpriv"] {
        if which(tool).is_none() {
            return Some(format!(
                "`{tool}` is not installed (apt-get install iproute2 iptables util-linux)"
            ));
        }
    }
    None
}

/// `tool` in PATH, /usr/sbin or /sbin.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Skips (returns false after saying why) or, under `BOSUN_REQUIRE_NETNS`, fails.
pub fn can_run(test: &str, why: Option<String>) -> bool {
    let Some(why) = why else { return true };
    assert!(
        std::env::var_os("BOSUN_REQUIRE_NETNS").is_none(),
        "{test}: {why} (BOSUN_REQUIRE_NETNS is set)"
    );
    eprintln!("skipping {test}: {why}");
    false
}
