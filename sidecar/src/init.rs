//! `airlock-sidecar init`: installs the transparent inbound redirect in the pod's network namespace, and
//! recovers a redirected connection's original destination.
//!
//! The redirect is plain netfilter NAT, written with `iptables-restore --noflush` so that each family's
//! change is one atomic transaction that leaves other rules in the pod alone:
//!
//! - `AIRLOCK_INBOUND`, jumped to from `PREROUTING`: connections arriving from outside the pod on a model
//!   port are redirected to the sidecar's inbound port.
//! - `AIRLOCK_INBOUND_LOCAL`, jumped to from `OUTPUT` for traffic to the pod's own addresses (`-o lo`):
//!   another container of the pod that calls the pod IP on a model port is redirected as well, except the
//!   sidecar's own connections (matched by uid) and anything addressed to loopback, which is how the sidecar
//!   reaches the model server (`127.0.0.1:<port>`), so it never loops back to itself.
//!
//! Re-running `init` (a restarted init container) declares both chains again, which flushes them, and
//! replaces any existing jumps with exactly one, so the result does not depend on how often it ran.
//! `docs/inbound-redirect.md` describes the rules for operators.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::sys::socket::{SockaddrIn, SockaddrIn6, getsockopt, sockopt};

use crate::{Error, Result};

/// The model server's ports to redirect, comma-separated (`8000,8080`).
pub const ENV_INBOUND_PORTS: &str = "AIRLOCK_INBOUND_PORTS";
/// The sidecar's inbound port.
pub const ENV_INBOUND_TARGET_PORT: &str = "AIRLOCK_INBOUND_TARGET_PORT";
/// The sidecar's user id.
pub const ENV_SIDECAR_UID: &str = "AIRLOCK_SIDECAR_UID";

/// The sidecar's inbound port when `AIRLOCK_INBOUND_TARGET_PORT` is unset.
pub const DEFAULT_TARGET_PORT: u16 = 15006;
/// The sidecar's user id when `AIRLOCK_SIDECAR_UID` is unset (the image's `nonroot` user).
pub const DEFAULT_SIDECAR_UID: u32 = 65532;
/// Ports the sidecar itself listens on; redirecting them would hijack the sidecar.
pub const RESERVED_PORTS: [u16; 3] = [15001, 15006, 15020];

/// The chain for connections that arrive from outside the pod.
pub const CHAIN_INBOUND: &str = "AIRLOCK_INBOUND";
/// The chain for connections from inside the pod to its own non-loopback addresses.
pub const CHAIN_INBOUND_LOCAL: &str = "AIRLOCK_INBOUND_LOCAL";

/// What `init` installs, read from the environment the webhook sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitSettings {
    /// `AIRLOCK_INBOUND_PORTS`: the model server's ports to redirect.
    pub ports: Vec<u16>,
    /// `AIRLOCK_INBOUND_TARGET_PORT`: the sidecar's inbound port (15006).
    pub target_port: u16,
    /// `AIRLOCK_SIDECAR_UID`: the sidecar's user id, whose own traffic is never redirected.
    pub sidecar_uid: u32,
}

impl InitSettings {
    /// Reads and validates the settings from the process environment.
    pub fn from_env() -> Result<InitSettings> {
        InitSettings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads and validates the settings from any variable lookup; [`InitSettings::from_env`] passes the
    /// process environment. Unset target port and uid take their defaults; an unset port list is an error.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<InitSettings> {
        let target_port = match lookup(ENV_INBOUND_TARGET_PORT) {
            None => DEFAULT_TARGET_PORT,
            Some(raw) => parse_port(ENV_INBOUND_TARGET_PORT, raw.trim())?,
        };
        for reserved in [15001, 15020] {
            if target_port == reserved {
                return Err(invalid(
                    ENV_INBOUND_TARGET_PORT,
                    &target_port.to_string(),
                    "is one of the sidecar's other ports (15001 outbound, 15020 admin)",
                ));
            }
        }
        let sidecar_uid = match lookup(ENV_SIDECAR_UID) {
            None => DEFAULT_SIDECAR_UID,
            Some(raw) => raw
                .trim()
                .parse::<u32>()
                .map_err(|_| invalid(ENV_SIDECAR_UID, &raw, "is not a numeric user id"))?,
        };
        let raw_ports = lookup(ENV_INBOUND_PORTS).unwrap_or_default();
        let ports = parse_ports(&raw_ports, target_port)?;
        Ok(InitSettings {
            ports,
            target_port,
            sidecar_uid,
        })
    }
}

fn invalid(name: &str, value: &str, why: &str) -> Error {
    Error::Init(format!("{name}={value:?}: {why}"))
}

fn parse_port(name: &str, raw: &str) -> Result<u16> {
    match raw.parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid(name, raw, "is not a TCP port (1..=65535)")),
        Ok(port) => Ok(port),
    }
}

fn parse_ports(raw: &str, target_port: u16) -> Result<Vec<u16>> {
    if raw.trim().is_empty() {
        return Err(Error::Init(format!(
            "{ENV_INBOUND_PORTS} is empty: there is nothing to redirect (expected the model server's ports, \
             e.g. `8000,8080`)"
        )));
    }
    let mut ports = Vec::new();
    for item in raw.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(invalid(ENV_INBOUND_PORTS, raw, "has an empty entry"));
        }
        let port = parse_port(ENV_INBOUND_PORTS, item)?;
        if RESERVED_PORTS.contains(&port) || port == target_port {
            return Err(invalid(
                ENV_INBOUND_PORTS,
                item,
                "is a port of the sidecar itself (15001, 15006, 15020 and the target port are never redirected)",
            ));
        }
        if ports.contains(&port) {
            return Err(invalid(ENV_INBOUND_PORTS, item, "is listed twice"));
        }
        ports.push(port);
    }
    Ok(ports)
}

/// An IP family with its own netfilter tables and tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The tool that prints the current rules.
    pub fn save_command(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }

    /// The tool that applies a rule set.
    pub fn restore_command(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1/128",
        }
    }
}

/// The `iptables-restore --noflush` input that installs the redirect for one family.
///
/// `current_nat` is the family's `iptables-save -t nat` output: every jump to an Airlock chain found there
/// is deleted before the one jump per chain is added again, so the result holds exactly one of each, no
/// matter how many earlier runs (or half-finished manual edits) left behind.
pub fn restore_input(settings: &InitSettings, family: Family, current_nat: &str) -> String {
    let mut out = String::from("*nat\n");
    // Declaring a chain creates it, or flushes it when it exists, even with --noflush.
    out.push_str(&format!(
        ":{CHAIN_INBOUND} - [0:0]\n:{CHAIN_INBOUND_LOCAL} - [0:0]\n"
    ));
    for line in existing_jumps(current_nat) {
        if let Some(spec) = line.strip_prefix("-A ") {
            out.push_str(&format!("-D {spec}\n"));
        }
    }
    out.push_str(&format!("-A PREROUTING -p tcp -j {CHAIN_INBOUND}\n"));
    out.push_str(&format!("-A OUTPUT -o lo -p tcp -j {CHAIN_INBOUND_LOCAL}\n"));

    // Locally generated loopback packets never consult nat PREROUTING; this RETURN only makes that explicit.
    out.push_str(&format!("-A {CHAIN_INBOUND} -i lo -j RETURN\n"));
    for port in &settings.ports {
        out.push_str(&format!(
            "-A {CHAIN_INBOUND} -p tcp --dport {port} -j REDIRECT --to-ports {}\n",
            settings.target_port
        ));
    }

    out.push_str(&format!(
        "-A {CHAIN_INBOUND_LOCAL} -m owner --uid-owner {} -j RETURN\n",
        settings.sidecar_uid
    ));
    out.push_str(&format!(
        "-A {CHAIN_INBOUND_LOCAL} -d {} -j RETURN\n",
        family.loopback()
    ));
    for port in &settings.ports {
        out.push_str(&format!(
            "-A {CHAIN_INBOUND_LOCAL} -p tcp --dport {port} -j REDIRECT --to-ports {}\n",
            settings.target_port
        ));
    }
    out.push_str("COMMIT\n");
    out
}

/// The rules in built-in chains of an `iptables-save -t nat` output that jump to an Airlock chain.
fn existing_jumps(current_nat: &str) -> Vec<&str> {
    let mut in_nat = false;
    let mut jumps = Vec::new();
    for line in current_nat.lines() {
        let line = line.trim_end();
        if let Some(table) = line.strip_prefix('*') {
            in_nat = table == "nat";
            continue;
        }
        if !in_nat || !(line.starts_with("-A PREROUTING ") || line.starts_with("-A OUTPUT ")) {
            continue;
        }
        let target = line.split_whitespace().skip_while(|w| *w != "-j").nth(1);
        if matches!(target, Some(t) if t == CHAIN_INBOUND || t == CHAIN_INBOUND_LOCAL) {
            jumps.push(line);
        }
    }
    jumps
}

/// Installs the redirect: IPv4 is required; IPv6 is installed when `ip6tables` works in this pod and
/// otherwise skipped with a warning (the pod then has no IPv6 redirect, see `docs/inbound-redirect.md`).
pub fn run(settings: &InitSettings) -> Result<()> {
    apply(settings, Family::V4)?;
    let ipv6 = match apply(settings, Family::V6) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(
                %error,
                "IPv6 inbound redirect not installed, continuing with IPv4 only; IPv6 connections to the \
                 model ports would bypass the sidecar if the pod has an IPv6 address"
            );
            false
        }
    };
    tracing::info!(
        ports = ?settings.ports,
        target_port = settings.target_port,
        sidecar_uid = settings.sidecar_uid,
        ipv6,
        chains = ?[CHAIN_INBOUND, CHAIN_INBOUND_LOCAL],
        "installed the inbound redirect"
    );
    Ok(())
}

fn apply(settings: &InitSettings, family: Family) -> Result<()> {
    let current = run_tool(family.save_command(), &["-t", "nat"], None)?;
    let input = restore_input(settings, family, &current);
    tracing::debug!(?family, rules = %input, "applying the inbound redirect");
    run_tool(family.restore_command(), &["--noflush"], Some(&input))?;
    Ok(())
}

const HINT: &str = "the init container needs the NET_ADMIN and NET_RAW capabilities and an image with \
                    iptables installed";

/// Runs an iptables tool, optionally feeding it `stdin`, and returns its standard output.
fn run_tool(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let shown = format!("`{program} {}`", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            let what = if e.kind() == std::io::ErrorKind::NotFound {
                format!("{program} is not installed (not found on PATH)")
            } else {
                format!("cannot start {shown}: {e}")
            };
            Error::Init(format!("{what}; {HINT}"))
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A tool that exits early closes the pipe; its exit status and stderr below say why.
        let _ = pipe.write_all(input.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| Error::Init(format!("{shown} did not finish: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Error::Init(format!(
            "{shown} failed ({}): {}; {HINT}",
            output.status,
            stderr.trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The destination a redirected connection was addressed to before the redirect.
///
/// Asks conntrack (`SO_ORIGINAL_DST` for IPv4, `IP6T_SO_ORIGINAL_DST` for IPv6). A connection that was
/// not redirected reports its own local address: conntrack returns the unchanged destination, or has no
/// entry at all (no NAT rules loaded), which is also answered with the local address. So a client that
/// connects to the sidecar's port directly (`explicit` inbound mode) gets the sidecar's own address back;
/// callers must not forward to it.
///
/// The answer has the same form as `local_addr()`, so comparing the two tells whether the connection was
/// redirected. On a dual-stack `[::]` socket an IPv4 connection has an IPv4-mapped local address; its
/// conntrack entry is IPv4, so the IPv4 lookup is used and its answer is returned IPv4-mapped as well.
pub fn original_destination(stream: &tokio::net::TcpStream) -> std::io::Result<SocketAddr> {
    let local = stream.local_addr()?;
    let (found, ipv4_mapped) = match local {
        SocketAddr::V4(_) => (
            getsockopt(stream, sockopt::OriginalDst).map(from_sockaddr_in),
            false,
        ),
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => (
            getsockopt(stream, sockopt::OriginalDst).map(|sa| to_ipv4_mapped(from_sockaddr_in(sa))),
            true,
        ),
        SocketAddr::V6(_) => (
            getsockopt(stream, sockopt::Ip6tOriginalDst).map(from_sockaddr_in6),
            false,
        ),
    };
    match found {
        Ok(addr) => Ok(addr),
        // No conntrack entry for the connection: it was not NATed.
        Err(Errno::ENOENT) => Ok(local),
        // Conntrack for this family is not loaded, so nothing can have been redirected. On an
        // IPv4-mapped socket it means the kernel cannot answer at all, which must not pass for "not
        // redirected".
        Err(Errno::ENOPROTOOPT) if !ipv4_mapped => Ok(local),
        Err(errno) => Err(std::io::Error::new(
            std::io::Error::from(errno).kind(),
            format!("cannot read the original destination of the connection to {local}: {errno}"),
        )),
    }
}

fn from_sockaddr_in(sa: nix::libc::sockaddr_in) -> SocketAddr {
    SocketAddr::from(SockaddrIn::from(sa))
}

fn to_ipv4_mapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    }
}

fn from_sockaddr_in6(sa: nix::libc::sockaddr_in6) -> SocketAddr {
    SocketAddr::from(SockaddrIn6::from(sa))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_from(vars: &[(&str, &str)]) -> Result<InitSettings> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        InitSettings::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    fn error_of(vars: &[(&str, &str)]) -> String {
        match settings_from(vars) {
            Ok(s) => panic!("expected an error, got {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn webhook_settings() -> InitSettings {
        InitSettings {
            ports: vec![8000, 8080],
            target_port: 15006,
            sidecar_uid: 65532,
        }
    }

    #[test]
    fn settings_are_read_as_the_webhook_writes_them() {
        let s = settings_from(&[
            (ENV_INBOUND_PORTS, "8000,8080"),
            (ENV_INBOUND_TARGET_PORT, "15006"),
            (ENV_SIDECAR_UID, "65532"),
        ]);
        assert_eq!(s.ok(), Some(webhook_settings()));
    }

    #[test]
    fn target_port_and_uid_default_when_unset_and_spaces_are_tolerated() {
        let s = settings_from(&[(ENV_INBOUND_PORTS, " 8000 , 8080 ")]);
        assert_eq!(s.ok(), Some(webhook_settings()));
    }

    #[test]
    fn an_unset_or_blank_port_list_says_there_is_nothing_to_redirect() {
        for vars in [&[][..], &[(ENV_INBOUND_PORTS, "  ")][..]] {
            let e = error_of(vars);
            assert!(
                e.contains(ENV_INBOUND_PORTS) && e.contains("nothing to redirect"),
                "{e}"
            );
        }
    }

    #[test]
    fn bad_ports_are_named_with_the_variable() {
        for (raw, bad, why) in [
            ("8000,abc", "abc", "not a TCP port"),
            ("0", "0", "not a TCP port"),
            ("65536", "65536", "not a TCP port"),
            ("-1", "-1", "not a TCP port"),
            ("8000,8000", "8000", "listed twice"),
            ("8000,,8080", "8000,,8080", "empty entry"),
            ("8000,15001", "15001", "port of the sidecar"),
            ("15006", "15006", "port of the sidecar"),
            ("15020", "15020", "port of the sidecar"),
        ] {
            let e = error_of(&[(ENV_INBOUND_PORTS, raw)]);
            assert!(
                e.contains(&format!("{ENV_INBOUND_PORTS}=\"{bad}\"")) && e.contains(why),
                "{raw}: {e}"
            );
        }
    }

    #[test]
    fn the_target_port_is_never_redirected_even_when_it_is_not_15006() {
        let e = error_of(&[
            (ENV_INBOUND_PORTS, "8000,9006"),
            (ENV_INBOUND_TARGET_PORT, "9006"),
        ]);
        assert!(e.contains("\"9006\""), "{e}");
    }

    #[test]
    fn bad_target_port_and_uid_are_named_with_the_variable() {
        for (vars, needle) in [
            (
                [(ENV_INBOUND_PORTS, "8000"), (ENV_INBOUND_TARGET_PORT, "x")],
                "AIRLOCK_INBOUND_TARGET_PORT=\"x\": is not a TCP port",
            ),
            (
                [(ENV_INBOUND_PORTS, "8000"), (ENV_INBOUND_TARGET_PORT, "0")],
                "AIRLOCK_INBOUND_TARGET_PORT=\"0\"",
            ),
            (
                [(ENV_INBOUND_PORTS, "8000"), (ENV_INBOUND_TARGET_PORT, "15020")],
                "AIRLOCK_INBOUND_TARGET_PORT=\"15020\": is one of the sidecar's other ports",
            ),
            (
                [(ENV_INBOUND_PORTS, "8000"), (ENV_SIDECAR_UID, "nonroot")],
                "AIRLOCK_SIDECAR_UID=\"nonroot\": is not a numeric user id",
            ),
            (
                [(ENV_INBOUND_PORTS, "8000"), (ENV_SIDECAR_UID, "-5")],
                "AIRLOCK_SIDECAR_UID=\"-5\"",
            ),
        ] {
            let e = error_of(&vars);
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn errors_say_that_the_redirect_was_not_installed() {
        let e = error_of(&[(ENV_INBOUND_PORTS, "")]);
        assert!(e.starts_with("cannot install the inbound redirect: "), "{e}");
    }

    #[test]
    fn a_fresh_pod_gets_both_chains_and_one_jump_each() {
        let input = restore_input(&webhook_settings(), Family::V4, "");
        assert_eq!(
            input,
            "*nat\n\
             :AIRLOCK_INBOUND - [0:0]\n\
             :AIRLOCK_INBOUND_LOCAL - [0:0]\n\
             -A PREROUTING -p tcp -j AIRLOCK_INBOUND\n\
             -A OUTPUT -o lo -p tcp -j AIRLOCK_INBOUND_LOCAL\n\
             -A AIRLOCK_INBOUND -i lo -j RETURN\n\
             -A AIRLOCK_INBOUND -p tcp --dport 8000 -j REDIRECT --to-ports 15006\n\
             -A AIRLOCK_INBOUND -p tcp --dport 8080 -j REDIRECT --to-ports 15006\n\
             -A AIRLOCK_INBOUND_LOCAL -m owner --uid-owner 65532 -j RETURN\n\
             -A AIRLOCK_INBOUND_LOCAL -d 127.0.0.0/8 -j RETURN\n\
             -A AIRLOCK_INBOUND_LOCAL -p tcp --dport 8000 -j REDIRECT --to-ports 15006\n\
             -A AIRLOCK_INBOUND_LOCAL -p tcp --dport 8080 -j REDIRECT --to-ports 15006\n\
             COMMIT\n"
        );
    }

    #[test]
    fn ipv6_exempts_the_ipv6_loopback() {
        let input = restore_input(&webhook_settings(), Family::V6, "");
        assert!(
            input.contains("-A AIRLOCK_INBOUND_LOCAL -d ::1/128 -j RETURN\n"),
            "{input}"
        );
        assert!(!input.contains("127.0.0.0/8"), "{input}");
    }

    #[test]
    fn sidecar_uid_and_loopback_returns_come_before_any_redirect() {
        let input = restore_input(&webhook_settings(), Family::V4, "");
        let local: Vec<&str> = input
            .lines()
            .filter(|l| l.starts_with("-A AIRLOCK_INBOUND_LOCAL "))
            .collect();
        assert!(local[0].contains("--uid-owner 65532 -j RETURN"), "{local:?}");
        assert!(local[1].contains("-d 127.0.0.0/8 -j RETURN"), "{local:?}");
        assert!(local[2..].iter().all(|l| l.contains("REDIRECT")), "{local:?}");
    }

    #[test]
    fn rerunning_replaces_every_existing_jump_and_leaves_other_rules_alone() {
        let current = "# Generated by iptables-save v1.8.9 (nf_tables)\n\
                       *nat\n\
                       :PREROUTING ACCEPT [0:0]\n\
                       :OUTPUT ACCEPT [0:0]\n\
                       :AIRLOCK_INBOUND - [0:0]\n\
                       :AIRLOCK_INBOUND_LOCAL - [0:0]\n\
                       -A PREROUTING -p tcp -j AIRLOCK_INBOUND\n\
                       -A PREROUTING -p tcp -j AIRLOCK_INBOUND\n\
                       -A PREROUTING -p tcp -m tcp --dport 9999 -j DNAT --to-destination 10.0.0.1\n\
                       -A OUTPUT -o lo -p tcp -j AIRLOCK_INBOUND_LOCAL\n\
                       -A AIRLOCK_INBOUND -p tcp -m tcp --dport 8000 -j REDIRECT --to-ports 15006\n\
                       COMMIT\n";
        let input = restore_input(&webhook_settings(), Family::V4, current);
        let deletions: Vec<&str> = input.lines().filter(|l| l.starts_with("-D ")).collect();
        assert_eq!(
            deletions,
            [
                "-D PREROUTING -p tcp -j AIRLOCK_INBOUND",
                "-D PREROUTING -p tcp -j AIRLOCK_INBOUND",
                "-D OUTPUT -o lo -p tcp -j AIRLOCK_INBOUND_LOCAL",
            ]
        );
        let jumps = input
            .lines()
            .filter(|l| l.starts_with("-A PREROUTING ") || l.starts_with("-A OUTPUT "));
        assert_eq!(jumps.count(), 2, "{input}");
        assert!(
            !input.contains("9999"),
            "other rules are neither deleted nor re-added: {input}"
        );
    }

    #[test]
    fn jumps_in_other_tables_are_not_touched() {
        let current = "*filter\n-A OUTPUT -j AIRLOCK_INBOUND_LOCAL\nCOMMIT\n*nat\nCOMMIT\n";
        assert!(existing_jumps(current).is_empty());
    }
}
