//! Nodes in Linux network namespaces: one namespace per node, a veth pair
//! from each into a bridge in the root namespace, addresses in a private
//! /24 (`10.147.X.0/24`, X picked per run), the bridge holding `.254` so
//! clients in the root namespace reach every node. Partitions are iptables
//! DROP rules inside the namespaces, so a partitioned node still answers
//! clients (as in Jepsen) but cannot talk to its peers.
//!
//! Names carry the creating process id (`cfj{pid}`), which lets a later run
//! remove whatever a killed run left behind.

use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context};

/// Prefix of every namespace, link and rule this module creates.
const PREFIX: &str = "cfj";
/// First two octets of the node subnets.
const NET: &str = "10.147";

/// Namespaces alive in this process, torn down by [`teardown_all`].
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A set of node namespaces joined by a bridge; removed on drop.
#[derive(Debug)]
pub struct Netns {
    tag: String,
    subnet: u8,
    nodes: usize,
    /// Client namespaces made by [`Netns::add_client`].
    clients: Mutex<Vec<String>>,
}

/// Runs a command, failing with its stderr.
fn run(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command and ignores failure (teardown of things that may be gone).
fn run_quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

/// Fails with a clear message unless we are root with `ip` and `iptables`.
pub fn check_available() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("network-namespace clusters need root (ip netns, iptables); run as root or use --loopback");
    }
    for tool in ["ip", "iptables"] {
        if Command::new(tool).arg("-V").output().is_err() {
            bail!("`{tool}` is not installed (apt-get install iproute2 iptables)");
        }
    }
    Ok(())
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid encoded in a name like `cfj1234-n1` or `cfj1234br`.
fn owner_pid(name: &str) -> Option<u32> {
    let digits: String = name
        .strip_prefix(PREFIX)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Removes namespaces, bridges and forward rules of runs that are gone.
pub fn cleanup_stale() {
    let mine = std::process::id();
    let stale = |name: &str| owner_pid(name).is_some_and(|p| p != mine && !pid_alive(p));
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if stale(ns) {
                run_quiet(&["ip", "netns", "del", ns]);
            }
        }
    }
    if let Ok(links) = run(&["ip", "-o", "link", "show", "type", "bridge"]) {
        for link in links.lines().filter_map(|l| l.split(':').nth(1)) {
            let link = link.trim();
            if stale(link) {
                remove_bridge(link);
            }
        }
    }
}

fn remove_bridge(bridge: &str) {
    run_quiet(&["ip", "link", "del", bridge]);
    // The rule may have been added more than once by a crashed run.
    for _ in 0..4 {
        run_quiet(&[
            "iptables", "-D", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT",
        ]);
    }
}

/// A /24 third octet no interface in the root namespace uses yet.
fn free_subnet() -> anyhow::Result<u8> {
    let addrs = run(&["ip", "-o", "-4", "addr", "show"])?;
    let start = (std::process::id() % 250) as u8;
    (0..250u8)
        .map(|k| (start.wrapping_add(k) % 250) + 1)
        .find(|x| !addrs.contains(&format!("{NET}.{x}.")))
        .context("no free 10.147.X.0/24 subnet")
}

impl Netns {
    /// Creates `nodes` namespaces on a fresh bridge.
    pub fn create(nodes: usize) -> anyhow::Result<Self> {
        check_available()?;
        cleanup_stale();
        let net = Self {
            tag: format!("{PREFIX}{}", std::process::id()),
            subnet: free_subnet()?,
            nodes,
            clients: Mutex::new(Vec::new()),
        };
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(net.tag.clone());
        // Dropping on error tears down whatever was built so far.
        net.build()?;
        Ok(net)
    }

    fn build(&self) -> anyhow::Result<()> {
        let br = self.bridge();
        run(&["ip", "link", "add", &br, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", self.host_ip()),
            "dev",
            &br,
        ])?;
        run(&["ip", "link", "set", &br, "up"])?;
        // Hosts with br_netfilter and a DROP forward policy (Docker) would
        // otherwise drop node-to-node traffic crossing the bridge.
        run(&[
            "iptables", "-I", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT",
        ])?;
        for i in 0..self.nodes {
            self.build_node(i)?;
        }
        Ok(())
    }

    fn build_node(&self, i: usize) -> anyhow::Result<()> {
        self.build_ns(
            &self.ns(i),
            &format!("{}v{}", self.tag, i + 1),
            &format!("{}p{}", self.tag, i + 1),
            &self.ip(i),
        )
    }

    /// A client host of its own on the bridge: namespace `{tag}-c{k}` with
    /// address `…{100 + k}` (k in 1..=99). Returns the namespace name;
    /// run commands in it with `ip netns exec`. Removed with the others.
    pub fn add_client(&self, k: u8) -> anyhow::Result<String> {
        if !(1..=99).contains(&k) {
            bail!("client index {k} is outside 1..=99");
        }
        let ns = format!("{}-c{k}", self.tag);
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ns.clone());
        self.build_ns(
            &ns,
            &format!("{}cv{k}", self.tag),
            &format!("{}cp{k}", self.tag),
            &self.client_ip(k),
        )?;
        Ok(ns)
    }

    /// Address of client `k` (see [`Netns::add_client`]).
    pub fn client_ip(&self, k: u8) -> String {
        format!("{NET}.{}.{}", self.subnet, 100 + u16::from(k))
    }

    fn build_ns(&self, ns: &str, outer: &str, inner: &str, ip: &str) -> anyhow::Result<()> {
        let (ns, outer, inner) = (ns.to_owned(), outer.to_owned(), inner.to_owned());
        run(&["ip", "netns", "add", &ns])?;
        run(&[
            "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ])?;
        run(&["ip", "link", "set", &outer, "master", &self.bridge()])?;
        run(&["ip", "link", "set", &outer, "up"])?;
        run(&["ip", "link", "set", &inner, "netns", &ns])?;
        let exec = |args: &[&str]| {
            let mut full = vec!["ip", "netns", "exec", &ns];
            full.extend_from_slice(args);
            run(&full)
        };
        exec(&["ip", "link", "set", "lo", "up"])?;
        exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", &inner])?;
        exec(&["ip", "link", "set", &inner, "up"])?;
        Ok(())
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    /// Namespace name of node index `i`.
    pub fn ns(&self, i: usize) -> String {
        format!("{}-n{}", self.tag, i + 1)
    }

    /// Address of node index `i`.
    pub fn ip(&self, i: usize) -> String {
        format!("{NET}.{}.{}", self.subnet, i + 1)
    }

    /// Address of the bridge (the clients' side).
    pub fn host_ip(&self) -> String {
        format!("{NET}.{}.254", self.subnet)
    }

    /// Number of node namespaces.
    pub fn len(&self) -> usize {
        self.nodes
    }

    /// Whether there are no node namespaces.
    pub fn is_empty(&self) -> bool {
        self.nodes == 0
    }

    /// Runs `iptables args…` inside node `i`'s namespace.
    fn iptables(&self, i: usize, args: &[&str]) -> anyhow::Result<()> {
        let ns = self.ns(i);
        let mut full = vec!["ip", "netns", "exec", &ns, "iptables", "-w"];
        full.extend_from_slice(args);
        run(&full).map(|_| ())
    }

    /// Drops all traffic between nodes `a` and `b` (both directions, both sides).
    pub fn cut(&self, a: usize, b: usize) -> anyhow::Result<()> {
        for (x, y) in [(a, b), (b, a)] {
            let peer = self.ip(y);
            self.iptables(x, &["-A", "INPUT", "-s", &peer, "-j", "DROP"])?;
            self.iptables(x, &["-A", "OUTPUT", "-d", &peer, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Lets every node talk to every other again.
    pub fn heal(&self) -> anyhow::Result<()> {
        for i in 0..self.nodes {
            self.iptables(i, &["-F"])?;
        }
        Ok(())
    }

    fn teardown(&self) {
        for i in 0..self.nodes {
            run_quiet(&["ip", "netns", "del", &self.ns(i)]);
        }
        for ns in self
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            run_quiet(&["ip", "netns", "del", ns]);
        }
        remove_bridge(&self.bridge());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.teardown();
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|t| t != &self.tag);
    }
}

/// Removes every namespace this process created (for a Ctrl-C handler
/// that exits without running destructors).
pub fn teardown_all() {
    let mine = format!("{PREFIX}{}", std::process::id());
    if LIVE.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
        return;
    }
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if ns.starts_with(&format!("{mine}-")) {
                run_quiet(&["ip", "netns", "del", ns]);
            }
        }
    }
    remove_bridge(&format!("{mine}br"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_our_names_only() {
        assert_eq!(owner_pid("cfj1234-n1"), Some(1234));
        assert_eq!(owner_pid("cfj77br"), Some(77));
        assert_eq!(owner_pid("docker0"), None);
        assert_eq!(owner_pid("cfjx"), None);
    }
}
