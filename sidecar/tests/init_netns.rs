//! `airlock-sidecar init` against the real kernel: each test builds a throwaway network namespace joined
//! to the host by a veth pair (a stand-in for a pod), runs the built binary's `init` inside it, and checks
//! where connections land.
//!
//! Needs root, iproute2 (`ip`) and iptables (`iptables-save`, `iptables-restore`); without them the tests
//! fail and say what is missing. IPv6 is checked too unless the host has IPv6 disabled.
//!
//! Inside the namespace an "agent" listens and answers: it is this test binary run again through
//! `ip netns exec` (the ignored test [`netns_agent`]), so the listeners live in the pod's namespace
//! without extra tools. It listens on the model port ("model"), the sidecar's port ("sidecar") and an
//! unlisted port ("plain"); each accepted connection gets one line back: the role and the
//! `original_destination` of the accepted socket. On stdin it takes `connect <addr>` to make a connection
//! from inside the namespace and print that reply.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_airlock-sidecar");
const AGENT_ENV: &str = "AIRLOCK_TEST_NETNS_AGENT";

const MODEL_PORT: u16 = 8000;
const SECOND_MODEL_PORT: u16 = 8080;
const UNLISTED_PORT: u16 = 9000;
const TARGET_PORT: u16 = 15006;
const SIDECAR_UID: u32 = 65532;
const TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------------
// The tests.

#[test]
fn connections_from_outside_to_model_ports_reach_the_sidecar_with_their_original_destination() {
    let pod = Pod::new();
    pod.init(&[MODEL_PORT, SECOND_MODEL_PORT], SIDECAR_UID);
    let agent = Agent::start(&pod);

    for ip in pod.peer_ips() {
        for port in [MODEL_PORT, SECOND_MODEL_PORT] {
            let dest = SocketAddr::new(ip, port);
            assert_eq!(
                connect_from_host(dest),
                format!("sidecar {dest}"),
                "host -> {dest}"
            );
        }
        let unlisted = SocketAddr::new(ip, UNLISTED_PORT);
        // Not redirected; `original_destination` reports the local address.
        assert_eq!(
            connect_from_host(unlisted),
            format!("plain {unlisted}"),
            "host -> {unlisted}"
        );
    }
    drop(agent);
}

#[test]
fn a_dual_stack_listener_recovers_ipv4_destinations_too() {
    let pod = Pod::new();
    pod.init(&[MODEL_PORT], SIDECAR_UID);
    let _agent = Agent::start_with(&pod, "dual-stack");

    // IPv4 clients are accepted IPv4-mapped, and their original destination keeps that form, so that
    // it compares equal to the local address when the connection was not redirected.
    for ip in pod.peer_ips() {
        let as_accepted = |port| match ip {
            IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), port),
            IpAddr::V6(_) => SocketAddr::new(ip, port),
        };
        let dest = SocketAddr::new(ip, MODEL_PORT);
        let expected = format!("sidecar {}", as_accepted(MODEL_PORT));
        assert_eq!(connect_from_host(dest), expected, "host -> {dest}");
        let unlisted = SocketAddr::new(ip, UNLISTED_PORT);
        let expected = format!("plain {}", as_accepted(UNLISTED_PORT));
        assert_eq!(connect_from_host(unlisted), expected, "host -> {unlisted}");
    }
}

#[test]
fn the_sidecar_reaching_the_model_server_over_loopback_is_not_redirected() {
    let pod = Pod::new();
    pod.init(&[MODEL_PORT], SIDECAR_UID);
    let mut agent = Agent::start(&pod);

    let mut loopbacks = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    if pod.v6.is_some() {
        loopbacks.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
    for ip in loopbacks {
        let dest = SocketAddr::new(ip, MODEL_PORT);
        assert_eq!(agent.connect(dest), format!("model {dest}"), "in pod -> {dest}");
    }
    // Another container of the pod (here uid 0) calling the pod's own address is intercepted.
    for ip in pod.peer_ips() {
        let dest = SocketAddr::new(ip, MODEL_PORT);
        assert_eq!(
            agent.connect(dest),
            format!("sidecar {dest}"),
            "in pod (uid 0) -> {dest}"
        );
    }
}

#[test]
fn connections_made_by_the_sidecar_uid_are_never_redirected() {
    let pod = Pod::new();
    // The agent runs as root, so declaring uid 0 the sidecar's makes its connections the sidecar's.
    pod.init(&[MODEL_PORT], 0);
    let mut agent = Agent::start(&pod);

    for ip in pod.peer_ips() {
        let dest = SocketAddr::new(ip, MODEL_PORT);
        assert_eq!(
            agent.connect(dest),
            format!("model {dest}"),
            "in pod as the sidecar uid -> {dest}"
        );
        assert_eq!(
            connect_from_host(dest),
            format!("sidecar {dest}"),
            "host -> {dest}"
        );
    }
}

#[test]
fn rerunning_init_leaves_one_jump_and_one_rule_per_port() {
    let pod = Pod::new();
    pod.init(&[MODEL_PORT, SECOND_MODEL_PORT], SIDECAR_UID);
    pod.init(&[MODEL_PORT, SECOND_MODEL_PORT], SIDECAR_UID);
    for family in pod.families() {
        let rules = pod.nat_rules(family);
        assert_eq!(
            count(&rules, "-A PREROUTING -p tcp -j AIRLOCK_INBOUND"),
            1,
            "{family}:\n{rules}"
        );
        assert_eq!(
            count(&rules, "-A OUTPUT -o lo -p tcp -j AIRLOCK_INBOUND_LOCAL"),
            1,
            "{family}:\n{rules}"
        );
        for port in [MODEL_PORT, SECOND_MODEL_PORT] {
            let redirect = format!("--dport {port} -j REDIRECT --to-ports {TARGET_PORT}");
            assert_eq!(
                count(&rules, &format!("-A AIRLOCK_INBOUND -p tcp -m tcp {redirect}")),
                1,
                "{family}:\n{rules}"
            );
            assert_eq!(
                count(
                    &rules,
                    &format!("-A AIRLOCK_INBOUND_LOCAL -p tcp -m tcp {redirect}")
                ),
                1,
                "{family}:\n{rules}"
            );
        }
        assert_eq!(count(&rules, "-A AIRLOCK_INBOUND "), 3, "{family}:\n{rules}");
        assert_eq!(
            count(&rules, "-A AIRLOCK_INBOUND_LOCAL "),
            4,
            "{family}:\n{rules}"
        );
    }

    // A restart with a changed port list replaces the rules rather than adding to them.
    pod.init(&[SECOND_MODEL_PORT], SIDECAR_UID);
    for family in pod.families() {
        let rules = pod.nat_rules(family);
        assert_eq!(count(&rules, "-j AIRLOCK_INBOUND\n"), 1, "{family}:\n{rules}");
        assert_eq!(
            count(&rules, "-j AIRLOCK_INBOUND_LOCAL\n"),
            1,
            "{family}:\n{rules}"
        );
        assert_eq!(
            count(&rules, &format!("--dport {MODEL_PORT} ")),
            0,
            "{family}:\n{rules}"
        );
        assert_eq!(
            count(&rules, &format!("--dport {SECOND_MODEL_PORT} ")),
            2,
            "{family}:\n{rules}"
        );
    }
}

#[test]
fn init_without_ports_fails_and_says_there_is_nothing_to_redirect() {
    let out = Command::new(BIN)
        .arg("init")
        .env("AIRLOCK_INBOUND_PORTS", "")
        .output()
        .expect("the airlock-sidecar binary runs");
    assert!(
        !out.status.success(),
        "init succeeded without ports: {}",
        both(&out)
    );
    assert!(both(&out).contains("nothing to redirect"), "{}", both(&out));
}

#[test]
fn init_without_iptables_fails_with_a_hint() {
    // With no PATH the first tool cannot be found, so nothing on the host is touched.
    let out = Command::new(BIN)
        .arg("init")
        .env("AIRLOCK_INBOUND_PORTS", MODEL_PORT.to_string())
        .env("PATH", "/nonexistent")
        .output()
        .expect("the airlock-sidecar binary runs");
    assert!(
        !out.status.success(),
        "init succeeded without iptables: {}",
        both(&out)
    );
    let text = both(&out);
    assert!(text.contains("iptables-save is not installed"), "{text}");
    assert!(text.contains("NET_ADMIN"), "{text}");
}

/// Not a test: the listener side inside a namespace, started by [`Agent::start`].
#[test]
#[ignore = "helper run inside a network namespace by the other tests"]
fn netns_agent() {
    if std::env::var_os(AGENT_ENV).is_some() {
        agent::main();
    }
}

// ---------------------------------------------------------------------------------------------------
// A pod: a network namespace with a veth to the host, removed on drop.

static NEXT: AtomicU32 = AtomicU32::new(0);

struct Pod {
    ns: String,
    host_if: String,
    peer_v4: Ipv4Addr,
    /// The peer's IPv6 address, unless the host has IPv6 disabled.
    v6: Option<Ipv6Addr>,
}

impl Pod {
    fn new() -> Pod {
        require_prerequisites();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // One /30 (and one IPv6 /64) per test, out of 10.234.0.0/16.
        let idx = (pid.wrapping_mul(8).wrapping_add(n)) % 16384;
        let base = u32::from(Ipv4Addr::new(10, 234, 0, 0)) + idx * 4;
        let (host_v4, peer_v4) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let ns = format!("airlock-init-{pid}-{n}");
        let host_if = format!("alk{pid}-{n}h");
        let peer_if = format!("alk{pid}-{n}p");

        run(&["ip", "netns", "add", &ns]);
        // From here on, drop cleans up whatever got created.
        let mut pod = Pod {
            ns: ns.clone(),
            host_if: host_if.clone(),
            peer_v4,
            v6: None,
        };
        run(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
        ]);
        run(&["ip", "link", "set", &peer_if, "netns", &ns]);
        run(&["ip", "addr", "add", &format!("{host_v4}/30"), "dev", &host_if]);
        run(&["ip", "link", "set", &host_if, "up"]);
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{peer_v4}/30"),
            "dev",
            &peer_if,
        ]);
        run(&["ip", "-n", &ns, "link", "set", &peer_if, "up"]);
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);

        let host_v6 = Ipv6Addr::new(0xfdac, 0x10c, idx as u16, 0, 0, 0, 0, 1);
        let peer_v6 = Ipv6Addr::new(0xfdac, 0x10c, idx as u16, 0, 0, 0, 0, 2);
        // `nodad`: usable at once instead of after duplicate address detection.
        let v6_host = try_run(&[
            "ip",
            "addr",
            "add",
            &format!("{host_v6}/64"),
            "dev",
            &host_if,
            "nodad",
        ]);
        let v6_peer = try_run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{peer_v6}/64"),
            "dev",
            &peer_if,
            "nodad",
        ]);
        match (v6_host, v6_peer) {
            (Ok(_), Ok(_)) => pod.v6 = Some(peer_v6),
            (h, p) => println!("IPv6 unavailable on this host, checking IPv4 only: {h:?} {p:?}"),
        }
        pod
    }

    fn peer_ips(&self) -> Vec<IpAddr> {
        let mut ips = vec![IpAddr::V4(self.peer_v4)];
        ips.extend(self.v6.map(IpAddr::V6));
        ips
    }

    fn families(&self) -> Vec<&'static str> {
        if self.v6.is_some() {
            vec!["iptables", "ip6tables"]
        } else {
            vec!["iptables"]
        }
    }

    /// Runs `airlock-sidecar init` in the namespace, as the init container would.
    fn init(&self, ports: &[u16], sidecar_uid: u32) {
        let ports = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, BIN, "init"])
            .env("AIRLOCK_INBOUND_PORTS", &ports)
            .env("AIRLOCK_INBOUND_TARGET_PORT", TARGET_PORT.to_string())
            .env("AIRLOCK_SIDECAR_UID", sidecar_uid.to_string())
            .output()
            .expect("ip netns exec runs");
        let text = both(&out);
        assert!(
            out.status.success(),
            "airlock-sidecar init failed in {}: {text}",
            self.ns
        );
        assert!(text.contains("installed the inbound redirect"), "{text}");
        if self.v6.is_some() {
            assert!(
                text.contains("\"ipv6\":true"),
                "the IPv6 redirect was not installed: {text}"
            );
        }
    }

    /// `iptables-save -t nat` (or `ip6tables-save`) inside the namespace.
    fn nat_rules(&self, family: &str) -> String {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.ns,
            &format!("{family}-save"),
            "-t",
            "nat",
        ])
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // Deleting the namespace deletes the peer and with it the host end; deleting the host end first
        // also covers a veth that was never moved into the namespace.
        let _ = try_run(&["ip", "link", "del", &self.host_if]);
        if let Err(e) = try_run(&["ip", "netns", "del", &self.ns]) {
            println!("cleanup: {e}");
        }
    }
}

fn require_prerequisites() {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (network namespaces and iptables need it)".to_owned());
    }
    for (tool, arg, package) in [
        ("ip", "-V", "iproute2"),
        ("iptables-save", "--version", "iptables"),
        ("iptables-restore", "--version", "iptables"),
    ] {
        if Command::new(tool).arg(arg).output().is_err() {
            missing.push(format!("`{tool}` (package {package})"));
        }
    }
    assert!(
        missing.is_empty(),
        "init_netns needs {}. Install with `apt-get install -y iproute2 iptables` and run the tests as root.",
        missing.join(", ")
    );
}

// ---------------------------------------------------------------------------------------------------
// The agent inside the namespace, seen from the test.

struct Agent {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Agent {
    /// An agent with separate IPv4 and IPv6 listeners.
    fn start(pod: &Pod) -> Agent {
        Agent::start_with(pod, "split")
    }

    /// `listeners`: `split` (IPv4 and `IPV6_V6ONLY` IPv6 sockets) or `dual-stack` (one `[::]` socket).
    fn start_with(pod: &Pod, listeners: &str) -> Agent {
        let exe = std::env::current_exe().expect("the test binary's path");
        let exe = exe.to_str().expect("a UTF-8 path to the test binary");
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &pod.ns,
                exe,
                "--exact",
                "netns_agent",
                "--ignored",
                "--nocapture",
            ])
            .args(["--test-threads", "1"])
            .env(
                AGENT_ENV,
                format!(
                    "{MODEL_PORT},{TARGET_PORT},{UNLISTED_PORT},{},{listeners}",
                    pod.v6.is_some()
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("ip netns exec runs");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            // Only the agent's own lines: the test harness prints to the same stdout, and its
            // "test netns_agent ... " may precede the first one on the same line.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, line)) = line.split_once("AGENT ")
                    && tx.send(line.to_owned()).is_err()
                {
                    break;
                }
            }
        });
        let mut agent = Agent { child, stdin, lines };
        let first = agent.next_line();
        assert_eq!(first, "ready", "the agent in {} did not start", pod.ns);
        agent
    }

    fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(e) => panic!(
                "no answer from the agent ({e}); its exit status: {:?}",
                self.child.try_wait()
            ),
        }
    }

    /// Connects from inside the namespace and returns the reply.
    fn connect(&mut self, addr: SocketAddr) -> String {
        writeln!(self.stdin, "connect {addr}").expect("the agent reads commands");
        self.stdin.flush().expect("the agent reads commands");
        self.next_line()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects from the host's namespace and returns the reply.
fn connect_from_host(addr: SocketAddr) -> String {
    agent::request(addr).unwrap_or_else(|e| format!("error: {e}"))
}

mod agent {
    use super::*;
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn6, bind, listen, setsockopt, socket, sockopt,
    };
    use std::os::fd::AsRawFd;
    use tokio::io::AsyncWriteExt;

    pub fn main() {
        let config = std::env::var(AGENT_ENV).unwrap_or_default();
        let parts: Vec<&str> = config.split(',').collect();
        let port = |i: usize| -> u16 { parts[i].parse().expect("agent ports") };
        let (model, target, unlisted) = (port(0), port(1), port(2));
        let (v6, dual_stack) = (parts[3] == "true", parts[4] == "dual-stack");

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let _entered = rt.enter();
        for (role, port) in [("model", model), ("sidecar", target), ("plain", unlisted)] {
            let listeners = if dual_stack {
                vec![std::net::TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).expect("bind dual-stack")]
            } else if v6 {
                let v4 = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind v4");
                vec![v4, bind_v6_only(port).expect("bind v6")]
            } else {
                vec![std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind v4")]
            };
            for listener in listeners {
                listener.set_nonblocking(true).expect("non-blocking listener");
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                rt.spawn(serve(role, listener));
            }
        }
        println!("AGENT ready");

        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            let reply = match line.strip_prefix("connect ").map(str::parse::<SocketAddr>) {
                Some(Ok(addr)) => request(addr).unwrap_or_else(|e| format!("error: {e}")),
                _ => format!("error: unknown command {line:?}"),
            };
            println!("AGENT {reply}");
        }
    }

    /// Answers every connection with the listener's role and the connection's original destination.
    async fn serve(role: &'static str, listener: tokio::net::TcpListener) {
        while let Ok((mut stream, _)) = listener.accept().await {
            let reply = match airlock_sidecar::init::original_destination(&stream) {
                Ok(addr) => format!("{role} {addr}\n"),
                Err(e) => format!("{role} error: {e}\n"),
            };
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    }

    /// A `[::]` listener that leaves IPv4 to the `0.0.0.0` one, as the sidecar does.
    fn bind_v6_only(port: u16) -> nix::Result<std::net::TcpListener> {
        let fd = socket(
            AddressFamily::Inet6,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
        let addr = SockaddrIn6::from(std::net::SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0));
        bind(fd.as_raw_fd(), &addr)?;
        listen(&fd, Backlog::new(16)?)?;
        Ok(std::net::TcpListener::from(fd))
    }

    /// Connects and reads the one-line reply.
    pub fn request(addr: SocketAddr) -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply.trim().to_owned())
    }
}

// ---------------------------------------------------------------------------------------------------
// Small helpers.

fn try_run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("`{}` cannot run: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            both(&out)
        ))
    }
}

fn run(args: &[&str]) -> String {
    try_run(args).unwrap_or_else(|e| panic!("{e}"))
}

fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}
