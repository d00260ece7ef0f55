//! Issue 14: the director works where LVS administrators deploy it. Every
//! lab here leaves its veths as `ip link add` makes them (GRO off, TX
//! checksum offload on, as in containers and the kernel's selftests) and
//! sets no sysctl the scenario does not name. Needs root; `cargo xtask
//! test` runs these (`--include-ignored`).
//!
//! Each test prints the datapath's non-zero verdict counters (`figures:`)
//! so that a run with `--nocapture` shows what the datapath did.

use lvs_lab::{
    bin,
    deploy::{self, nonzero_verdicts, report, stats_line, verdict},
    Lab, Method, VIP,
};

/// The kernel's IPVS selftest for one method: its topology, its rules
/// (lvsadm for ipvsadm), its 32 bytes through socat.
fn ipvs_selftest(tag: &str, method: Method) {
    deploy::ensure_socat().expect("socat");
    let mut lab = deploy::selftest_lab(tag, method).expect("building the selftest topology");
    lab.start_lvsd(None).expect("starting lvsd");
    deploy::restore(&lab, &deploy::selftest_rules(method)).expect("the selftest's rules");
    let result = deploy::selftest_transfer(&lab, 1);
    eprintln!("figures {tag}: {}", nonzero_verdicts(&lab));
    if let Err(e) = result {
        panic!("{e:#}\n{}", report(&lab));
    }
    let stats = lab.lvsadm(&["-L", "-n", "--stats"]).unwrap();
    let svc = stats_line(&stats, &format!("TCP  {VIP}:8080")).expect("the service's stats");
    assert_eq!(svc[0], 1, "one connection scheduled:\n{stats}");
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn kernel_ipvs_selftest_dr() {
    ipvs_selftest("lvs-dep-stdr", Method::Route);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn kernel_ipvs_selftest_nat() {
    ipvs_selftest("lvs-dep-stnat", Method::Nat);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn kernel_ipvs_selftest_tun() {
    ipvs_selftest("lvs-dep-sttun", Method::Tunnel);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn one_lan_direct_routing_with_forwarding_off() {
    let mut lab = deploy::one_lan_dr("lvs-dep-lan", 3).expect("building the LAN");
    for rs in &mut lab.reals {
        rs.start_http_server(80).expect("starting a real server");
    }
    lab.start_lvsd(None).expect("starting lvsd");
    let mut rules = format!("-A -t {VIP}:80 -s rr\n");
    for rs in &lab.reals {
        rules += &format!("-a -t {VIP}:80 -r {}:80 -g\n", rs.addr);
    }
    deploy::restore(&lab, &rules).unwrap();

    let names = lab.http_gets(&format!("{VIP}:80"), 30);
    eprintln!("figures one-lan-dr: {}", nonzero_verdicts(&lab));
    let names = names.unwrap_or_else(|e| panic!("{e:#}\n{}", report(&lab)));
    let mut split = std::collections::BTreeMap::<String, usize>::new();
    for n in &names {
        *split.entry(n.clone()).or_default() += 1;
    }
    assert_eq!(
        split.into_iter().collect::<Vec<_>>(),
        [("rs1".into(), 10), ("rs2".into(), 10), ("rs3".into(), 10)],
        "{names:?}\n{}",
        report(&lab)
    );
    let stats = lab.lvsadm(&["-L", "-n", "--stats"]).unwrap();
    let svc = stats_line(&stats, &format!("TCP  {VIP}:80")).expect("the service's stats");
    assert_eq!(svc[0], 30, "{stats}");
    // Conns InPkts OutPkts: the replies went straight to the client.
    assert_eq!(svc[2], 0, "DR replies must bypass the director:\n{stats}");
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn local_real_servers_answer_through_the_vip() {
    let mut lab = Lab::new("lvs-dep-local", 0).expect("building the lab");
    // As with IPVS, the director holds the VIP.
    lab.director
        .exec(&["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"])
        .unwrap();
    // (port, real server, method, the server's name)
    let cases = [
        (80, "198.18.1.1", "-m", "own-masq"),
        (81, "127.0.0.1", "-m", "loopback-masq"),
        (82, "198.18.1.1", "-g", "own-route"),
        (83, "127.0.0.1", "-g", "loopback-route"),
    ];
    let lab_bin = bin("lvs-lab").display().to_string();
    let mut servers = Vec::new();
    for (port, _, _, name) in cases {
        let listen = format!("0.0.0.0:{port}");
        servers.push(
            lab.director
                .spawn(&[&lab_bin, "http-server", &listen, name], None)
                .unwrap(),
        );
        deploy::wait_for_listener(&lab.director, port).unwrap();
    }
    lab.start_lvsd(None).expect("starting lvsd");
    let mut rules = String::new();
    for (port, real, method, _) in cases {
        rules +=
            &format!("-A -t {VIP}:{port} -s rr\n-a -t {VIP}:{port} -r {real}:{port} {method}\n");
    }
    deploy::restore(&lab, &rules).unwrap();
    // ipvsadm on a current kernel lists the method given (the kernel
    // decides locality per packet and never reports LOCALNODE).
    let listing = lab.lvsadm(&["-L", "-n"]).unwrap();
    eprintln!("lvsadm -L -n with local real servers:\n{listing}");
    for (port, real, method, _) in cases {
        let fwd = if method == "-m" { "Masq" } else { "Route" };
        let row = format!("  -> {real}:{port}");
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(&row) && l.contains(fwd)),
            "{row} {fwd}:\n{listing}"
        );
    }

    let mut failures = Vec::new();
    for (port, real, method, name) in cases {
        match lab.http_gets(&format!("{VIP}:{port}"), 3) {
            Ok(names) if names.iter().all(|n| n == name) && names.len() == 3 => {}
            Ok(names) => failures.push(format!("{real} {method}: answered by {names:?}")),
            Err(e) => failures.push(format!("{real} {method}: {e:#}")),
        }
    }
    let stats = lab.lvsadm(&["-L", "-n", "--stats"]).unwrap();
    for (port, real, method, _) in cases {
        let conns = stats_line(&stats, &format!("TCP  {VIP}:{port} ")).map(|s| s[0]);
        if conns != Some(3) {
            failures.push(format!(
                "{real} {method}: the director scheduled {conns:?} connections, not 3"
            ));
        }
    }
    eprintln!("figures local: {}", nonzero_verdicts(&lab));
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        report(&lab)
    );
    drop(servers);
}

/// What ipvsadm 1.31's `ipvsadm -S -n` writes for NAT, DR and TUN servers:
/// services and servers sorted, `-w` always, `--tun-type ipip` after `-i`.
const IPVSADM_131_SAVE: &str = "\
-A -t 198.18.0.10:80 -s rr
-a -t 198.18.0.10:80 -r 198.18.11.2:8080 -m -w 1
-a -t 198.18.0.10:80 -r 198.18.12.2:8080 -m -w 2
-A -t 198.18.0.11:80 -s wlc -p 360 -M 255.255.255.0
-a -t 198.18.0.11:80 -r 198.18.2.11:80 -g -w 1
-a -t 198.18.0.11:80 -r 198.18.2.12:80 -g -w 0
-A -u 198.18.0.12:53 -s sh -b sh-fallback,sh-port
-a -u 198.18.0.12:53 -r 198.18.31.2:53 -i -w 1 --tun-type ipip
-a -u 198.18.0.12:53 -r 198.18.32.2:53 -i -w 3 --tun-type ipip
";

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn an_ipvsadm_save_file_restores_and_saves_back_identically() {
    let mut lab = Lab::new("lvs-dep-save", 0).expect("building the lab");
    lab.start_lvsd(None).expect("starting lvsd");
    deploy::restore(&lab, IPVSADM_131_SAVE).unwrap_or_else(|e| panic!("{e:#}\n{IPVSADM_131_SAVE}"));
    let saved = lab.lvsadm(&["-S", "-n"]).unwrap();
    assert_eq!(saved, IPVSADM_131_SAVE);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn nat_bulk_both_ways_on_two_cpus_keeps_every_connection() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus >= 2,
        "this test pins the client and the servers to two CPUs"
    );
    let mut lab = Lab::new("lvs-dep-race", 2).expect("building the lab");
    let lab_bin = bin("lvs-lab").display().to_string();
    for rs in &mut lab.reals {
        // The servers (and so their side's softirq work) on CPU 1.
        let p = rs
            .ns
            .spawn(
                &[
                    "taskset",
                    "-c",
                    "1",
                    &lab_bin,
                    "bulk-server",
                    "0.0.0.0:9000",
                ],
                None,
            )
            .unwrap();
        rs.procs.push(p);
    }
    for rs in &lab.reals {
        deploy::wait_for_listener(&rs.ns, 9000).unwrap();
    }
    lab.start_lvsd(None).expect("starting lvsd");
    let mut rules = format!("-A -t {VIP}:9000 -s rr\n");
    for rs in &lab.reals {
        rules += &format!("-a -t {VIP}:9000 -r {}:9000 -m\n", rs.addr);
    }
    deploy::restore(&lab, &rules).unwrap();

    // The client (and its side) on CPU 0: four connections, each sending
    // and receiving its echo at once for 8 s.
    let target = format!("{VIP}:9000");
    let started = std::time::Instant::now();
    let out = lab.client.exec(&[
        "timeout",
        "60",
        "taskset",
        "-c",
        "0",
        &lab_bin,
        "bulk-client",
        &target,
        "--connections",
        "4",
        "--seconds",
        "8",
    ]);
    let not_syn = verdict(&lab, "pass_not_syn");
    eprintln!(
        "figures race ({:.1} s): {}",
        started.elapsed().as_secs_f64(),
        nonzero_verdicts(&lab)
    );
    let out = out.unwrap_or_else(|e| panic!("{e:#}\n{}", report(&lab)));
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
    assert_eq!(
        not_syn,
        0,
        "established packets taken for strays:\n{}",
        report(&lab)
    );
    let stats = lab.lvsadm(&["-L", "-n", "--stats"]).unwrap();
    // Only Conns: the byte columns carry ipvsadm's K/M/G suffixes by now.
    let conns = stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("TCP  {VIP}:9000")))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok());
    assert_eq!(conns, Some(4), "{stats}");
}

/// Issue 17: what keeps an IPv6 real server from answering neighbour
/// solicitations for a VIP on `lo`, proved on a plain veth. Linux answers a
/// solicitation only for an address of the interface it arrived on, and
/// solicits from an address of the outgoing interface, so `lvsadm
/// realserver setup --vip V6` needs no sysctl (it puts the VIP on `lo`).
/// A neighbour on the LAN that asks for the VIP gets no answer (with the
/// VIP on `eth0` instead, the control, it does), and the real server's
/// own traffic from the VIP never teaches the LAN where the VIP is.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn an_ipv6_vip_on_lo_is_never_answered_for_nor_announced() {
    use lvs_lab::{exec_in, Netns};
    let (vip, rs_addr, lan_addr) = ("2001:db8::10", "2001:db8:1::2", "2001:db8:1::1");
    let _ = rs_addr;
    let lan = Netns::new("lvs-dep-nd-lan".into()).unwrap();
    let rs = Netns::new("lvs-dep-nd-rs".into()).unwrap();
    for ns in [&lan, &rs] {
        // The labs turn IPv6 off; a user's host has it on.
        ns.enable_ipv6().unwrap();
    }
    lvs_lab::run(
        "ip",
        &[
            "link", "add", "eth0", "netns", &lan.name, "type", "veth", "peer", "name", "eth0",
            "netns", &rs.name,
        ],
    )
    .unwrap();
    for (ns, addr) in [(&lan, lan_addr), (&rs, rs_addr)] {
        let cidr = format!("{addr}/64");
        ns.exec(&["ip", "addr", "add", &cidr, "dev", "eth0", "nodad"])
            .unwrap();
        ns.exec(&["ip", "link", "set", "eth0", "up"]).unwrap();
    }
    // Until their link-local addresses pass duplicate address detection,
    // hosts send no solicitation at all.
    for ns in [&lan, &rs] {
        lvs_lab::wait_for("link-local DAD", std::time::Duration::from_secs(10), || {
            ns.exec(&["ip", "-6", "addr", "show", "dev", "eth0", "tentative"])
                .is_ok_and(|o| o.stdout.is_empty())
        })
        .unwrap();
    }
    // The LAN side holds the VIP on-link, so it asks for it directly.
    lan.exec(&[
        "ip",
        "-6",
        "route",
        "add",
        &format!("{vip}/128"),
        "dev",
        "eth0",
    ])
    .unwrap();
    let lvsadm = bin("lvsadm").display().to_string();
    // Its undo record lives outside the namespace: undone even on failure.
    struct Prepared<'a>(&'a Netns, &'a str);
    impl Drop for Prepared<'_> {
        fn drop(&mut self) {
            let _ = self.0.exec(&[self.1, "realserver", "teardown"]);
        }
    }
    let setup = rs
        .exec(&[&lvsadm, "realserver", "setup", "--vip", vip])
        .unwrap();
    let _prepared = Prepared(&rs, &lvsadm);
    let setup = String::from_utf8_lossy(&setup.stdout).into_owned();
    assert!(
        setup.contains(&format!("address {vip}/128 on lo")),
        "{setup}"
    );
    assert!(!setup.contains("arp_"), "no ARP sysctl for IPv6: {setup}");
    let answered = |lan: &Netns| {
        let _ = lan.exec(&["ip", "-6", "neigh", "flush", "dev", "eth0"]);
        let ping = lan.exec(&["ping", "-6", "-c", "1", "-W", "1", vip]).is_ok();
        let neigh = lan
            .exec(&["ip", "-6", "neigh", "show", vip, "dev", "eth0"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        (ping, neigh.contains("lladdr"))
    };
    assert_eq!(
        answered(&lan),
        (false, false),
        "the VIP on lo was answered for"
    );
    // The real server's own traffic from the VIP: its solicitation for the
    // LAN neighbour comes from its link-local address (`ndisc_solicit`'s
    // choice when the packet's source is no address of the outgoing
    // interface), so the LAN learns no entry for the VIP.
    let _ = rs.exec(&["ping", "-6", "-c", "1", "-W", "1", "-I", vip, lan_addr]);
    let learnt = |to: &str| {
        lan.exec(&["ip", "-6", "neigh", "show", "to", to, "dev", "eth0"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap()
    };
    assert!(
        !learnt(vip).contains("lladdr"),
        "the VIP was announced: {}",
        learnt(vip)
    );
    // What the LAN did learn from that solicitation: the link-local one.
    let all = learnt("all");
    assert!(
        all.lines()
            .any(|l| l.starts_with("fe80:") && l.contains("lladdr")),
        "no solicitation seen: {all}"
    );
    // The control: the same address on eth0 is answered for.
    let cidr = format!("{vip}/128");
    exec_in(
        &rs.name,
        &["ip", "addr", "add", &cidr, "dev", "eth0", "nodad"],
    )
    .unwrap();
    assert_eq!(answered(&lan), (true, true), "the control got no answer");
    exec_in(&rs.name, &["ip", "addr", "del", &cidr, "dev", "eth0"]).unwrap();
    let teardown = rs.exec(&[&lvsadm, "realserver", "teardown"]).unwrap();
    let teardown = String::from_utf8_lossy(&teardown.stdout).into_owned();
    assert!(
        teardown.contains(&format!("address {vip}/128 on lo")),
        "{teardown}"
    );
}
