//! Tier 3: end to end in network namespaces, real sockets through the real
//! director. Needs root; `cargo xtask test` runs these (`--include-ignored`).

use std::{collections::BTreeMap, time::Duration};

use lvs_lab::{wait_for, Held, Lab, Method, VIP, VIP6};

fn counts(names: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n.clone()).or_default() += 1;
    }
    m
}

fn expect(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Apply `rules` as one `lvsadm -R` transaction.
fn restore(lab: &Lab, rules: &str) {
    let rules_file = lab.dir.join("rules");
    std::fs::write(&rules_file, rules).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --socket {} -R < {}",
            lvs_lab::bin("lvsadm").display(),
            lab.socket.display(),
            rules_file.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lvsadm -R: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A lab with lvsd running and a NAT service VIP:80 → :8080 (rr) and a UDP
/// service VIP:53 → :5353 (rr) over three real servers.
fn nat_lab(tag: &str) -> Lab {
    let mut lab = Lab::new(tag, 3).expect("building the lab");
    lab.start_servers(8080, 5353)
        .expect("starting real servers");
    lab.start_lvsd(None).expect("starting lvsd");
    let mut rules = String::from("-A -t 198.18.0.10:80 -s rr\n-A -u 198.18.0.10:53 -s rr\n");
    for rs in &lab.reals {
        rules += &format!("-a -t 198.18.0.10:80 -r {}:8080 -m -w 1\n", rs.addr);
        rules += &format!("-a -u 198.18.0.10:53 -r {}:5353 -m -w 1\n", rs.addr);
    }
    restore(&lab, &rules);
    lab
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn rr_spreads_thirty_connections_ten_each_and_stats_show_them() {
    let lab = nat_lab("lvs-e2e-rr");
    let names = lab
        .http_gets("198.18.0.10:80", 30)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.lvsd_log()));
    assert_eq!(
        counts(&names),
        expect(&[("rs1", 10), ("rs2", 10), ("rs3", 10)]),
        "{names:?}"
    );
    // IPVS order is newest first: rs3 was added last, so it is picked first.
    assert_eq!(&names[..3], ["rs3", "rs2", "rs1"]);

    let stats = lab.lvsadm(&["-L", "-n", "--stats"]).unwrap();
    let svc = stats_line(&stats, "TCP  198.18.0.10:80");
    assert_eq!(svc[0], 30, "{stats}");
    assert!(
        svc[1] >= 30 * 3 && svc[2] >= 30 * 2,
        "in/out packets: {stats}"
    );
    for rs in &lab.reals {
        let r = stats_line(&stats, &format!("  -> {}:8080", rs.addr));
        assert_eq!(r[0], 10, "{stats}");
        assert!(r[2] > 0, "replies counted: {stats}");
    }
    // The XDP program forwarded them itself, not the kernel.
    let redirects = verdict(&lab, "redirect");
    assert!(
        redirects >= 30 * 4,
        "only {redirects} frames redirected by XDP"
    );

    // One service listed alone, and -Z zeroes what --stats shows.
    let one = lab.lvsadm(&["-L", "-n", "-t", "198.18.0.10:80"]).unwrap();
    assert!(
        one.contains("TCP  198.18.0.10:80 rr") && !one.contains("UDP"),
        "{one}"
    );
    lab.lvsadm(&["-Z"]).unwrap();
    let zeroed = lab.lvsadm(&["-L", "-n", "--stats"]).unwrap();
    let svc = zeroed
        .lines()
        .find(|l| l.starts_with("TCP  198.18.0.10:80"))
        .unwrap();
    assert!(svc.split_whitespace().skip(2).all(|n| n == "0"), "{zeroed}");
    let real = zeroed
        .lines()
        .find(|l| l.starts_with("  -> 198.18.11.2:8080"))
        .unwrap();
    assert!(
        real.split_whitespace().skip(2).all(|n| n == "0"),
        "{zeroed}"
    );
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn rate_thresholds_and_persistent_conn_list_live_values() {
    let lab = nat_lab("lvs-e2e-rate");
    lab.lvsadm(&[
        "-e",
        "-t",
        "198.18.0.10:80",
        "-r",
        "198.18.11.2:8080",
        "-m",
        "-x",
        "100",
        "-y",
        "50",
    ])
    .unwrap();
    // Steady traffic: 30 requests over some 6 s, so the estimator (every
    // 2 s) samples it at least twice.
    for _ in 0..6 {
        let names = lab
            .http_gets("198.18.0.10:80", 5)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.lvsd_log()));
        assert_eq!(names.len(), 5, "{names:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
    // Rates are estimates: only that they show is certain.
    let rate = || {
        lab.lvsadm(&["-L", "-n", "--rate", "-t", "198.18.0.10:80"])
            .unwrap()
    };
    wait_for("a CPS above 0", Duration::from_secs(5), || {
        stats_line(&rate(), "TCP  198.18.0.10:80 ")[0] > 0
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rate()));
    let listed = rate();
    assert!(
        listed.contains("Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n  -> RemoteAddress:Port\n"),
        "{listed}"
    );
    let svc = stats_line(&listed, "TCP  198.18.0.10:80 ");
    assert!(svc.iter().all(|&n| n > 0), "{listed}");
    for rs in &lab.reals {
        // CPS, InPPS, OutPPS, InBPS, OutBPS: NAT replies pass the director.
        let r = stats_line(&listed, &format!("  -> {}:8080 ", rs.addr));
        assert!(r[1..].iter().all(|&n| n > 0), "{listed}");
    }
    // -Z zeroes the rates with the counters.
    lab.lvsadm(&["-Z"]).unwrap();
    let zeroed = rate();
    assert!(
        stats_line(&zeroed, "TCP  198.18.0.10:80 ")
            .iter()
            .all(|&n| n == 0),
        "{zeroed}"
    );

    let thresholds = lab
        .lvsadm(&["-L", "-n", "--thresholds", "-t", "198.18.0.10:80"])
        .unwrap();
    assert!(
        thresholds.contains("Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n  -> RemoteAddress:Port\nTCP  198.18.0.10:80 rr\n"),
        "{thresholds}"
    );
    assert!(
        thresholds.contains("\n  -> 198.18.11.2:8080             100        50         "),
        "{thresholds}"
    );
    assert!(
        thresholds.contains("\n  -> 198.18.12.2:8080             0          0          "),
        "{thresholds}"
    );

    // One client of a persistent service: one template, on the server it got.
    restore(
        &lab,
        &lab.reals.iter().fold(
            String::from("-A -t 198.18.0.10:8080 -s rr -p 60\n"),
            |rules, rs| rules + &format!("-a -t 198.18.0.10:8080 -r {}:8080 -m\n", rs.addr),
        ),
    );
    let names = lab.http_gets("198.18.0.10:8080", 3).unwrap();
    assert!(names.iter().all(|n| *n == names[0]), "{names:?}");
    let listed = lab
        .lvsadm(&["-L", "-n", "--persistent-conn", "-t", "198.18.0.10:8080"])
        .unwrap();
    assert!(
        listed.contains("Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n  -> RemoteAddress:Port\nTCP  198.18.0.10:8080 rr persistent 60\n"),
        "{listed}"
    );
    for rs in &lab.reals {
        let templates = if rs.name == names[0] { 1 } else { 0 };
        let row = format!(
            "  -> {:<28} {:<9} {:<11} ",
            format!("{}:8080", rs.addr),
            1,
            templates
        );
        assert!(listed.contains(&row), "{} {row:?}\n{listed}", rs.name);
    }
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn wrr_three_two_one_splits_sixty_connections_thirty_twenty_ten() {
    let lab = nat_lab("lvs-e2e-wrr");
    lab.lvsadm(&["-E", "-t", "198.18.0.10:80", "-s", "wrr"])
        .unwrap();
    for (rs, w) in lab.reals.iter().zip(["1", "2", "3"]) {
        let server = format!("{}:8080", rs.addr);
        lab.lvsadm(&["-e", "-t", "198.18.0.10:80", "-r", &server, "-m", "-w", w])
            .unwrap();
    }
    let names = lab
        .http_gets("198.18.0.10:80", 60)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.lvsd_log()));
    assert_eq!(
        counts(&names),
        expect(&[("rs1", 10), ("rs2", 20), ("rs3", 30)]),
        "{names:?}"
    );
    let listing = lab.lvsadm(&["-L", "-n"]).unwrap();
    assert!(listing.contains("TCP  198.18.0.10:80 wrr\n"), "{listing}");
    assert!(
        listing.contains("  -> 198.18.13.2:8080             Masq    3      "),
        "{listing}"
    );
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn udp_request_and_response_go_through_the_vip() {
    let lab = nat_lab("lvs-e2e-udp");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (name, from) = lab
            .udp_query("198.18.0.10:53")
            .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.lvsd_log()));
        assert_eq!(from, "198.18.0.10:53", "the reply must come from the VIP");
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["rs1", "rs2", "rs3"]);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn ping_to_a_real_server_is_routed_through_the_director() {
    let lab = nat_lab("lvs-e2e-ping");
    let out = lab
        .client
        .exec(&["ping", "-c", "2", "-W", "2", "198.18.11.2"])
        .expect("ping through the director");
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 received"));
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn bad_requests_change_nothing() {
    let lab = nat_lab("lvs-e2e-bad");
    let before = lab.lvsadm(&["-S", "-n"]).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["-A", "-t", "198.18.0.10:80", "-s", "rr"],
            "already exists",
        ),
        (
            &["-A", "-t", "198.18.0.11:80", "-s", "fastest"],
            "unknown scheduler",
        ),
        (
            &["-A", "-t", "198.18.0.11:0", "-s", "lblc"],
            "zero port specified for non-persistent service",
        ),
        (
            &["-A", "-t", "198.18.0:80", "-s", "rr"],
            "malformed address",
        ),
        (
            &["-a", "-t", "198.18.0.99:80", "-r", "198.18.11.2:8080", "-m"],
            "no such service",
        ),
        (
            &["-a", "-t", "198.18.0.10:80", "-r", "198.18.11.2:8080", "-g"],
            "uses -g (Route), which cannot map ports",
        ),
        (
            &[
                "-a",
                "-t",
                "198.18.0.10:80",
                "-r",
                "[2001:db8::2]:8080",
                "-m",
            ],
            "only a tunnel (-i) may cross families",
        ),
    ];
    for (args, message) in cases {
        let err = lab.lvsadm(args).unwrap_err().to_string();
        assert!(err.contains(message), "{args:?}: {err}");
    }
    assert_eq!(lab.lvsadm(&["-S", "-n"]).unwrap(), before);
    // A restore with one bad line applies none of it.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf -- '-A -t 198.18.0.20:80 -s rr\\n-a -t 198.18.0.21:80 -r 198.18.11.2 -m\\n' | {} --socket {} -R",
            lvs_lab::bin("lvsadm").display(),
            lab.socket.display()
        ))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(lab.lvsadm(&["-S", "-n"]).unwrap(), before);
}

/// Run lvsd in the director expecting a refusal; bounded, in case it starts.
fn lvsd_refusal(lab: &Lab, args: &[&str]) -> String {
    let lvsd = lvs_lab::bin("lvsd").display().to_string();
    let mut argv = vec!["timeout", "20", lvsd.as_str()];
    argv.extend_from_slice(args);
    match lab.director.exec(&argv) {
        Ok(_) => panic!("lvsd {args:?} started instead of refusing"),
        Err(e) => e.to_string(),
    }
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn lvsd_refuses_bad_interfaces_and_configs_and_leaves_nothing_behind() {
    let mut lab = Lab::new("lvs-e2e-refuse", 1).unwrap();
    lab.start_lvsd(None).unwrap();
    let sock = lab.dir.join("second.sock").display().to_string();

    let err = lvsd_refusal(&lab, &["-i", "nosuch0", "--socket", &sock]);
    assert!(err.contains("interface `nosuch0` not found"), "{err}");

    let config = lab.dir.join("bad.toml");
    std::fs::write(
        &config,
        "[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.10:80\"\ncolour = \"blue\"\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let err = lvsd_refusal(
        &lab,
        &["-i", "cli0", "--socket", &sock, "--config", &config],
    );
    assert!(err.contains("line 4") && err.contains("colour"), "{err}");

    // A refusal after a successful attach: spare0 attaches, then cli0 is
    // busy (the first lvsd holds it). The second lvsd must detach spare0.
    lab.director
        .exec(&[
            "ip", "link", "add", "spare0", "type", "veth", "peer", "name", "spare1",
        ])
        .unwrap();
    lab.director
        .exec(&["ip", "link", "set", "spare0", "up"])
        .unwrap();
    let err = lvsd_refusal(&lab, &["-i", "spare0", "-i", "cli0", "--socket", &sock]);
    assert!(
        err.contains("attaching the director to `cli0` failed"),
        "{err}"
    );
    assert!(
        !director_attached(&lab, "spare0"),
        "director left attached to spare0"
    );
    assert!(!std::path::Path::new(&sock).exists(), "socket left behind");
    // The first lvsd is untouched.
    assert!(director_attached(&lab, "cli0"));
    assert!(lab.lvsadm(&["-L", "-n"]).is_ok());

    // And lvsadm without a daemon says so in one line.
    let err = std::process::Command::new(lvs_lab::bin("lvsadm"))
        .args(["--socket", &sock, "-L", "-n"])
        .output()
        .unwrap();
    assert!(!err.status.success());
    let msg = String::from_utf8_lossy(&err.stderr);
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(msg.contains("cannot reach lvsd"), "{msg}");
}

/// An lvs director runs on `iface`: XDP, or tc ingress (on the lab's veths).
fn director_attached(lab: &Lab, iface: &str) -> bool {
    let lab_bin = lvs_lab::bin("lvs-lab").display().to_string();
    let out = lab
        .director
        .exec(&[&lab_bin, "director-on", iface])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn sigterm_detaches_every_interface_and_removes_the_socket() {
    let mut lab = nat_lab("lvs-e2e-term");
    let ifaces = ["cli0", "srv1", "srv2", "srv3"];
    assert!(ifaces.iter().all(|i| director_attached(&lab, i)));
    let status = lab.lvsd.as_mut().unwrap().stop().expect("lvsd was running");
    assert!(
        status.success(),
        "lvsd exited with {status}:\n{}",
        lab.lvsd_log()
    );
    for iface in ifaces {
        assert!(
            !director_attached(&lab, iface),
            "XDP still attached to {iface}"
        );
    }
    assert!(!lab.socket.exists(), "control socket left behind");
    // With the director gone, the kernel routes the real servers again.
    lab.client
        .exec(&["ping", "-c", "1", "-W", "2", "198.18.11.2"])
        .expect("plain routing after detach");
}

/// The router lab with lvsd running, a TCP service VIP:80 and a UDP service
/// VIP:53 (rr), each real server on its own method.
fn forwarding_lab(tag: &str, methods: &[Method]) -> Lab {
    let mut lab = Lab::forwarding(tag, methods).expect("building the lab");
    lab.start_servers(80, 53).expect("starting real servers");
    lab.start_lvsd(None).expect("starting lvsd");
    let mut rules = String::from("-A -t 198.18.0.10:80 -s rr\n-A -u 198.18.0.10:53 -s rr\n");
    for rs in &lab.reals {
        let flag = rs.method.flag();
        rules += &format!("-a -t 198.18.0.10:80 -r {}:80 {flag}\n", rs.addr);
        rules += &format!("-a -u 198.18.0.10:53 -r {}:53 {flag}\n", rs.addr);
    }
    restore(&lab, &rules);
    lab
}

fn verdict(lab: &Lab, name: &str) -> u64 {
    let json = lab.lvsadm(&["-L", "-n", "--json"]).unwrap();
    let snapshot: serde_json::Value = serde_json::from_str(&json).expect("lvsadm --json output");
    snapshot["verdicts"]
        .as_array()
        .and_then(|v| v.iter().find(|pair| pair[0] == name))
        .and_then(|pair| pair[1].as_u64())
        .unwrap_or_else(|| panic!("no {name} counter in {json}"))
}

/// The `--stats` columns of a line starting with `prefix`.
fn stats_line(stats: &str, prefix: &str) -> Vec<u64> {
    let l = stats
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` in\n{stats}"));
    l[prefix.len()..]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// rr over three servers, whatever their methods: TCP and UDP balanced as
/// the scheduler says, every reply from the VIP, and the director seeing
/// replies only from NAT servers.
fn balances_and_replies_come_from_the_vip(lab: &Lab) {
    balances_and_replies_come_from(lab, "198.18.0.10");
}

/// `balances_and_replies_come_from_the_vip` for the VIP `vip` (IPv6 in
/// brackets); `-L -c` lists the connections.
fn balances_and_replies_come_from(lab: &Lab, vip: &str) {
    let names = lab.http_gets(&format!("{vip}:80"), 30).unwrap_or_else(|e| {
        panic!(
            "{e:#}\n{}\n{}",
            lab.lvsd_log(),
            lab.lvsadm(&["-L", "-n", "--stats", "--json"])
                .unwrap_or_default()
        )
    });
    assert_eq!(
        counts(&names),
        expect(&[("rs1", 10), ("rs2", 10), ("rs3", 10)]),
        "{names:?}"
    );
    assert_eq!(&names[..3], ["rs3", "rs2", "rs1"]);
    // http-get connects to the VIP: the handshake only completes if the
    // SYN-ACK came from 198.18.0.10:80 itself.

    let mut udp = Vec::new();
    for _ in 0..3 {
        let (name, from) = lab.udp_query(&format!("{vip}:53")).unwrap();
        assert_eq!(from, format!("{vip}:53"), "{name} answered from {from}");
        udp.push(name);
    }
    assert_eq!(udp, ["rs3", "rs2", "rs1"]);

    let stats = lab.lvsadm(&["-L", "-n", "--stats"]).unwrap();
    for rs in &lab.reals {
        let tcp = stats_line(&stats, &format!("  -> {}", rs.at(80)));
        assert_eq!(tcp[0], 10, "{stats}");
        assert!(tcp[1] >= 10 * 3, "client packets counted: {stats}");
        match rs.method {
            Method::Nat => assert!(tcp[2] > 0, "NAT replies pass the director: {stats}"),
            Method::Route | Method::Tunnel => {
                assert_eq!(
                    tcp[2], 0,
                    "{} replies bypass the director: {stats}",
                    rs.name
                );
                assert_eq!(tcp[4], 0, "{stats}");
            }
        }
    }
    // `-L -c` lists the connections, as ipvsadm does.
    let listed = lab.lvsadm(&["-L", "-n", "-c"]).unwrap();
    assert!(
        listed.contains(&format!("{vip}:80")),
        "no connection listed:\n{listed}"
    );
}

/// With the director's neighbour table emptied, the next connections still
/// succeed, and their first packets are not lost: they go through lvs_neigh
/// (tc), which has the kernel resolve the next hop's MAC and queue them, so
/// the client never retransmits a SYN (its own TCPSynRetrans stays put).
fn survives_an_empty_neighbour_table(lab: &Lab) {
    // The datapath keeps the way to each real server (its MAC included)
    // until lvsd renews it, each second: flush, let a renewal pass with no
    // traffic to refill it, then flush again, so that the next packets
    // look their way up and find no neighbour.
    let flush = || {
        lab.director
            .exec(&["ip", "neigh", "flush", "dev", "lan0"])
            .unwrap()
    };
    flush();
    std::thread::sleep(Duration::from_millis(1500));
    flush();
    let before = verdict(lab, "pass_resolve_neighbour");
    let retransmitted_before = syn_retransmissions(lab);
    let names = lab.http_gets("198.18.0.10:80", 3).unwrap();
    assert_eq!(names.len(), 3);
    assert_eq!(
        syn_retransmissions(lab),
        retransmitted_before,
        "a SYN was lost"
    );
    assert!(
        verdict(lab, "pass_resolve_neighbour") > before,
        "{}",
        lab.lvsd_log()
    );
}

/// The client namespace's `TcpExt: TCPSynRetrans` counter.
fn syn_retransmissions(lab: &Lab) -> u64 {
    let out = lab.client.exec(&["cat", "/proc/net/netstat"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "TCPSynRetrans")
        .map(|(_, v)| v.parse().unwrap())
        .expect("TCPSynRetrans in /proc/net/netstat")
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn direct_routing_balances_and_replies_bypass_the_director() {
    let mut lab = forwarding_lab("lvs-e2e-dr", &[Method::Route; 3]);
    balances_and_replies_come_from_the_vip(&lab);
    // One-armed director: every DR frame left by XDP_TX on lan0.
    assert!(verdict(&lab, "transmit") >= 30 * 3, "{}", lab.lvsd_log());
    assert_eq!(verdict(&lab, "redirect"), 0);
    let listed = lab.lvsadm(&["-L", "-n"]).unwrap();
    assert!(
        listed.contains("  -> 198.18.2.11:80               Route   1      0          0"),
        "{listed}"
    );

    survives_an_empty_neighbour_table(&lab);

    // The real-server side undoes exactly what it did.
    let rs1 = &mut lab.reals[0];
    let status = rs1.realserver(&["status"]).unwrap();
    assert!(status.contains("address 198.18.0.10/32 on lo"), "{status}");
    let undone = rs1.realserver(&["teardown"]).unwrap();
    assert!(undone.contains("arp_ignore"), "{undone}");
    rs1.prepared = false;
    let lo = rs1
        .ns
        .exec(&["ip", "-4", "addr", "show", "dev", "lo"])
        .unwrap();
    assert!(!String::from_utf8_lossy(&lo.stdout).contains("198.18.0.10"));
    let ignore = rs1
        .ns
        .exec(&["sysctl", "-n", "net.ipv4.conf.all.arp_ignore"])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ignore.stdout).trim(), "0");
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn ip_in_ip_balances_and_replies_bypass_the_director() {
    let lab = forwarding_lab("lvs-e2e-tun", &[Method::Tunnel; 3]);
    balances_and_replies_come_from_the_vip(&lab);
    survives_an_empty_neighbour_table(&lab);
    assert!(verdict(&lab, "transmit") >= 30 * 3, "{}", lab.lvsd_log());
    // The real servers' eth0 runs lvs_decap.
    for rs in &lab.reals {
        let link = rs.ns.exec(&["ip", "link", "show", "dev", "eth0"]).unwrap();
        assert!(String::from_utf8_lossy(&link.stdout).contains("name lvs_decap"));
    }
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn one_service_mixes_nat_dr_and_tun_servers() {
    let lab = forwarding_lab("lvs-e2e-mix", &[Method::Nat, Method::Route, Method::Tunnel]);
    balances_and_replies_come_from_the_vip(&lab);
    let listed = lab.lvsadm(&["-L", "-n"]).unwrap();
    for forward in ["Masq", "Route", "Tunnel"] {
        assert!(listed.contains(forward), "{listed}");
    }
    // NAT frames go out another interface, DR and TUN back out of lan0.
    assert!(verdict(&lab, "redirect") > 0 && verdict(&lab, "transmit") > 0);
}

/// The NAT lab's real servers rs1, rs2 and rs3.
const RS1: &str = "198.18.11.2";
const RS2: &str = "198.18.12.2";
const RS3: &str = "198.18.13.2";

/// A lab with lvsd, hold servers on :7000 and a NAT service VIP:7000 (wlc)
/// with one real server per weight, added rs1 first: IPVS puts the newest
/// at the front, so the list order is rsN, ..., rs1.
fn wlc_lab(tag: &str, weights: &[u32]) -> Lab {
    hold_lab(tag, weights, &[7000], "-t 198.18.0.10:7000 -s wlc", 7000)
}

/// A lab with lvsd, hold servers on each of `ports`, and one NAT service
/// (`service` as `-A` takes it) with one real server per weight on
/// `real_port`, added rs1 first.
fn hold_lab(tag: &str, weights: &[u32], ports: &[u16], service: &str, real_port: u16) -> Lab {
    let mut lab = Lab::new(tag, weights.len()).expect("building the lab");
    for port in ports {
        lab.start_hold_servers(*port)
            .expect("starting real servers");
    }
    lab.start_lvsd(None).expect("starting lvsd");
    let mut rules = format!("-A {service}\n");
    let vip = service.split_whitespace().nth(1).unwrap();
    for (rs, w) in lab.reals.iter().zip(weights) {
        rules += &format!("-a -t {vip} -r {}:{real_port} -m -w {w}\n", rs.addr);
    }
    restore(&lab, &rules);
    lab
}

/// Open `count` more connections to the VIP, one at a time, all kept open.
fn hold_more(lab: &Lab, held: &mut Vec<Held>, count: usize) {
    for _ in 0..count {
        let n = held.len() + 1;
        let conn = lab
            .hold("198.18.0.10:7000")
            .unwrap_or_else(|e| panic!("connection {n}: {e:#}\n{}", lab.lvsd_log()));
        held.push(conn);
    }
}

/// The servers that accepted `held`, in order.
fn servers(held: &[Held]) -> String {
    held.iter()
        .map(|h| h.server.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Wait (bounded) until `lvsadm -L -n` shows `active` as the ActiveConn of
/// each listed real server. The daemon recounts, and refills count-driven
/// rings whose counts moved, once a second, under one lock with listing:
/// once the listing shows a count, the ring is built from it.
fn wait_for_active(lab: &Lab, active: &[(&str, u64)]) {
    let matches = || {
        let listing = lab.lvsadm(&["-L", "-n"]).unwrap();
        active.iter().all(|(server, n)| {
            let prefix = format!("  -> {server}:7000 ");
            listing
                .lines()
                .find(|l| l.starts_with(&prefix))
                // ->  ADDR:PORT  Forward  Weight  ActiveConn  InActConn
                .and_then(|l| l.split_whitespace().nth(4))
                .is_some_and(|count| count == n.to_string())
        })
    };
    wait_for("the director's ActiveConn", Duration::from_secs(5), matches).unwrap_or_else(|e| {
        panic!(
            "{e}: wanted {active:?}\n{}",
            lab.lvsadm(&["-L", "-n"]).unwrap()
        )
    });
}

/// `conn` still carries data both ways.
fn assert_echoes(conn: &mut Held, line: &str) {
    let echo = conn
        .echo(line)
        .unwrap_or_else(|e| panic!("the connection held on {}: {e:#}", conn.server));
    assert_eq!(echo, line);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn wlc_one_two_three_with_long_lived_connections_follows_the_reference() {
    let lab = wlc_lab("lvs-e2e-wlc", &[1, 2, 3]);
    let mut held = Vec::new();
    hold_more(&lab, &mut held, 6);
    // Half way, let the daemon count the open connections and refill the
    // ring from them: the rest of the sequence must not notice.
    wait_for_active(&lab, &[(RS3, 3), (RS2, 2), (RS1, 1)]);
    hold_more(&lab, &mut held, 6);
    // §2.4 over the list rs3 (w3), rs2 (w2), rs1 (w1), each connection
    // adding 256 to its server's overhead: least overhead/weight, ties to
    // the first in list order.
    assert_eq!(
        servers(&held),
        "rs3 rs2 rs1 rs3 rs2 rs3 rs3 rs2 rs1 rs3 rs2 rs3"
    );
    wait_for_active(&lab, &[(RS3, 6), (RS2, 4), (RS1, 2)]);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn closing_connections_steers_new_ones_to_that_server() {
    let lab = wlc_lab("lvs-e2e-close", &[1, 1, 1]);
    let mut held = Vec::new();
    hold_more(&lab, &mut held, 6);
    assert_eq!(servers(&held), "rs3 rs2 rs1 rs3 rs2 rs1");
    // Counted first, so that the 0 awaited below is the closing, not a
    // count that has not caught up yet.
    wait_for_active(&lab, &[(RS3, 2), (RS2, 2), (RS1, 2)]);

    held.retain(|h| h.server != "rs1");
    wait_for_active(&lab, &[(RS3, 2), (RS2, 2), (RS1, 0)]);
    hold_more(&lab, &mut held, 3);
    // rs1's overhead is its closed (inactive) connections, at most 2,
    // against 512 on the others: it wins until it holds 2 active again,
    // and then the tie goes to the first in the list.
    assert_eq!(servers(&held[4..]), "rs1 rs1 rs3");
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn weight_zero_keeps_open_connections_and_avoids_the_server() {
    let lab = wlc_lab("lvs-e2e-quiesce", &[1, 1, 1]);
    let mut held = Vec::new();
    hold_more(&lab, &mut held, 1);
    assert_eq!(held[0].server, "rs3");
    let quiesced = format!("{RS3}:7000");
    lab.lvsadm(&[
        "-e",
        "-t",
        "198.18.0.10:7000",
        "-r",
        &quiesced,
        "-m",
        "-w",
        "0",
    ])
    .unwrap();
    assert_echoes(&mut held[0], "after the edit");

    hold_more(&lab, &mut held, 6);
    // Weight 0 never wins (§4.3); the other two take turns.
    assert_eq!(servers(&held[1..]), "rs2 rs1 rs2 rs1 rs2 rs1");
    // rs3 keeps its connection, and the director still counts it.
    assert_echoes(&mut held[0], "after new connections");
    wait_for_active(&lab, &[(RS3, 1), (RS2, 3), (RS1, 3)]);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn sh_sends_one_client_to_one_server_across_fifty_connections() {
    let lab = hold_lab(
        "lvs-e2e-sh",
        &[1, 1, 1],
        &[7000],
        "-t 198.18.0.10:7000 -s sh",
        7000,
    );
    let reached: Vec<String> = (0..50)
        .map(|n| {
            lab.hold("198.18.0.10:7000")
                .unwrap_or_else(|e| panic!("connection {n}: {e:#}"))
                .server
        })
        .collect();
    // The client's address hashes to one bucket, whatever its source port.
    assert!(reached.iter().all(|s| *s == reached[0]), "{reached:?}");
    // With sh-port the port joins the hash: the same client spreads out,
    // which shows the datapath really hashes per connection.
    lab.lvsadm(&["-E", "-t", "198.18.0.10:7000", "-s", "sh", "-b", "sh-port"])
        .unwrap();
    let spread: std::collections::BTreeSet<String> = (0..30)
        .map(|n| {
            lab.hold("198.18.0.10:7000")
                .unwrap_or_else(|e| panic!("sh-port connection {n}: {e:#}"))
                .server
        })
        .collect();
    assert!(spread.len() > 1, "{spread:?}");
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn persistence_keeps_a_client_on_one_server_across_ports() {
    // A port-0 service takes every port of the VIP; real servers on port 0
    // keep the port the client asked for.
    let lab = hold_lab(
        "lvs-e2e-persist",
        &[1, 1, 1],
        &[7000, 7001],
        "-t 198.18.0.10:0 -s rr -p 60",
        0,
    );
    let reached: Vec<String> = (0..12)
        .map(|n| {
            let port = [7000, 7001][n % 2];
            lab.hold(&format!("198.18.0.10:{port}"))
                .unwrap_or_else(|e| panic!("connection {n} to :{port}: {e:#}\n{}", lab.lvsd_log()))
                .server
        })
        .collect();
    // rr alone would rotate rs3, rs2, rs1; the template keeps the first.
    assert_eq!(reached[0], "rs3");
    assert!(reached.iter().all(|s| *s == reached[0]), "{reached:?}");
    let listing = lab.lvsadm(&["-L", "-n"]).unwrap();
    assert!(listing.contains("rr persistent 60"), "{listing}");
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn lvsd_answers_low_water_while_a_burst_runs() {
    // 540 held connections on wlc 1:2:3. They stay active, exactly as the
    // 512-pick forecast assumes, so the once-a-second count never refills
    // the ring and only the datapath's half-way signal can, however fast
    // the connections come.
    let lab = wlc_lab("lvs-e2e-lowwater", &[1, 2, 3]);
    let mut held = Vec::new();
    hold_more(&lab, &mut held, 540);
    let c = counts(&held.iter().map(|h| h.server.clone()).collect::<Vec<_>>());
    // Refills carry the forecast on exactly: 3:2:1 at every sixth pick.
    assert_eq!(c, expect(&[("rs1", 90), ("rs2", 180), ("rs3", 270)]));
    let json = lab.lvsadm(&["-L", "-n", "--json"]).unwrap();
    let snapshot: serde_json::Value = serde_json::from_str(&json).expect("lvsadm --json output");
    let refills = &snapshot["refills"];
    let count = refills["count"].as_u64().unwrap();
    assert!(count >= 1, "no low-water refill: {refills}");
    eprintln!(
        "lvsd low-water refills: {count}, mean {} us, max {} us; split {c:?}",
        refills["total_ns"].as_u64().unwrap() / count / 1000,
        refills["max_ns"].as_u64().unwrap() / 1000
    );
}

/// `lvsadm datapath`'s count of ICMP errors for `case`.
fn icmp_errors(lab: &Lab, case: &str) -> u64 {
    let listing = lab.lvsadm(&["datapath"]).unwrap();
    listing
        .lines()
        .find_map(|l| l.strip_prefix(case).filter(|rest| rest.starts_with(' ')))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ICMP error count {case} in\n{listing}"))
}

/// One download from `url` with curl, bounded by `seconds`: the bytes that
/// arrived, and whether the download completed.
fn download(lab: &Lab, url: &str, seconds: u32) -> (u64, bool) {
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.client.name,
            "curl",
            "-sS",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{size_download}", "--max-time", &seconds.to_string()])
        .arg(url)
        .output()
        .expect("spawning curl");
    let size = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (size, out.status.success())
}

/// The path-MTU black hole (issue 17): a narrow link (1400 bytes for IPv4,
/// IPv6's minimum 1280) between the client and the router before the
/// director, while the client's own link, like the real servers', has
/// 1500. The client's MSS lets the real servers send 1500-byte segments
/// (DF set, or IPv6, which routers never fragment); the router in front of
/// the narrow link tells the VIP (their source) that they are too big. The
/// director must take that ICMP error to the real server that owns the
/// connection, translated for NAT, as it is for DR and tunnelled for TUN,
/// or the real server never learns and the download stalls. A control run
/// with lvsd leaving ICMP errors to the kernel (`--icmp-errors kernel`)
/// shows the stall; it runs first, because a real server that once learnt
/// the path's MTU keeps it.
fn path_mtu_discovery_reaches_the_real_servers(tag: &str, v6: bool) {
    const BODY: usize = 200_000;
    let methods = [Method::Nat, Method::Route, Method::Tunnel];
    let mtu = if v6 { 1280 } else { 1400 };
    let mut lab = Lab::forwarding_narrow(tag, &methods, mtu, v6).expect("building the lab");
    for rs in &mut lab.reals {
        rs.start_large_http_server(80, BODY)
            .expect("starting a server");
    }
    let vip = if v6 {
        format!("[{VIP6}]")
    } else {
        VIP.to_string()
    };
    let url = format!("http://{vip}/");
    let mut rules = format!("-A -t {vip}:80 -s rr\n");
    for rs in &lab.reals {
        let flag = rs.method.flag();
        rules += &format!("-a -t {vip}:80 -r {} {flag}\n", rs.at(80));
    }
    // rr takes the newest server first.
    let order = ["TUN", "DR", "NAT"];

    lab.start_lvsd_with(None, &["--icmp-errors", "kernel"])
        .expect("starting lvsd");
    restore(&lab, &rules);
    for method in order {
        let (got, completed) = download(&lab, &url, 4);
        assert!(
            !completed && got < BODY as u64,
            "{method}: the download completed without the director's ICMP handling ({got} bytes): the control shows nothing"
        );
    }
    assert!(
        icmp_errors(&lab, "ignored") > 0,
        "no ICMP error reached the director"
    );
    lab.lvsd.take().expect("running").stop();

    lab.start_lvsd(None).expect("starting lvsd");
    restore(&lab, &rules);
    for method in order {
        let (got, completed) = download(&lab, &url, 20);
        assert!(
            completed && got > BODY as u64,
            "{method}: {got} bytes, completed {completed}\n{}",
            lab.lvsadm(&["datapath"]).unwrap_or_default()
        );
    }
    // DR and TUN both count here; each download needed its error.
    assert!(icmp_errors(&lab, "to_real_server") >= 2);
    assert!(icmp_errors(&lab, "nat_to_real_server") > 0);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn path_mtu_discovery_reaches_nat_dr_and_tun_real_servers_through_the_director() {
    path_mtu_discovery_reaches_the_real_servers("pmtu", false);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn ipv6_path_mtu_discovery_reaches_nat_dr_and_tun_real_servers_through_the_director() {
    path_mtu_discovery_reaches_the_real_servers("pmtu6", true);
}

/// The director's own link towards the clients is the narrow one (1400
/// bytes; a tunnel or PPPoE uplink), its real servers' LAN 1500. A real
/// server's TCP sends its replies over the veth as large GSO packets,
/// whose segments (1500 bytes, DF) are too big for the director's
/// egress. The director checks each GSO packet by its segments' size, as
/// the kernel's forwarding does, and hands one too big to its kernel as
/// the real server sent it (IPVS checks the MTU before it translates); the
/// kernel tells the real server, which sends smaller segments. (On veth a
/// GSO packet passed on unchecked would be segmented only past the narrow
/// link, so the download also completes without the check, but on a NIC,
/// or with XDP, it would not: `pass_too_big` shows the check ran.)
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn nat_replies_are_checked_by_segment_against_the_directors_egress() {
    const BODY: usize = 200_000;
    let mut lab = Lab::forwarding("pmtu2", &[Method::Nat]).expect("building the lab");
    lab.director
        .exec(&["ip", "link", "set", "lan0", "mtu", "1400"])
        .unwrap();
    lab.router
        .as_ref()
        .expect("the router lab")
        .exec(&["ip", "link", "set", "pdir", "mtu", "1400"])
        .unwrap();
    lab.reals[0]
        .start_large_http_server(80, BODY)
        .expect("starting the server");
    lab.start_lvsd(None).expect("starting lvsd");
    restore(
        &lab,
        &format!(
            "-A -t 198.18.0.10:80 -s rr\n-a -t 198.18.0.10:80 -r {}:80 -m\n",
            lab.reals[0].addr
        ),
    );
    for _ in 0..2 {
        let (got, completed) = download(&lab, "http://198.18.0.10/", 20);
        assert!(
            completed && got > BODY as u64,
            "{got} bytes, completed {completed}\n{}",
            lab.lvsadm(&["datapath"]).unwrap_or_default()
        );
    }
    assert!(verdict(&lab, "pass_too_big") > 0);
}

/// The router lab in IPv6 with lvsd running, TCP [VIP6]:80 and UDP
/// [VIP6]:53 (rr), each real server on its own method.
fn forwarding_lab6(tag: &str, methods: &[Method]) -> Lab {
    let mut lab = Lab::forwarding6(tag, methods).expect("building the lab");
    lab.start_servers(80, 53).expect("starting real servers");
    lab.start_lvsd(None).expect("starting lvsd");
    let mut rules = format!("-A -t [{VIP6}]:80 -s rr\n-A -u [{VIP6}]:53 -s rr\n");
    for rs in &lab.reals {
        let flag = rs.method.flag();
        rules += &format!("-a -t [{VIP6}]:80 -r {} {flag}\n", rs.at(80));
        rules += &format!("-a -u [{VIP6}]:53 -r {} {flag}\n", rs.at(53));
    }
    restore(&lab, &rules);
    lab
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn ipv6_nat_balances_30_connections_10_10_10() {
    let lab = forwarding_lab6("e2e6nat", &[Method::Nat, Method::Nat, Method::Nat]);
    balances_and_replies_come_from(&lab, &format!("[{VIP6}]"));
    // NAT66 needs IPv6 forwarding where its packets arrive: with it off on
    // lan0, lvsd says so, naming the sysctl (and IPv4's is not named: no
    // IPv4 NAT service).
    lab.director
        .exec(&["sysctl", "-qw", "net.ipv6.conf.lan0.forwarding=0"])
        .unwrap();
    let listing = lab.lvsadm(&["datapath"]).unwrap();
    assert!(
        listing
            .contains("warning: net.ipv6.conf.lan0.forwarding is 0: NAT packets arriving on lan0")
            && !listing.contains("net.ipv4.conf"),
        "{listing}"
    );
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn ipv6_dr_on_one_lan_balances_30_connections_10_10_10() {
    let lab = forwarding_lab6("e2e6dr", &[Method::Route, Method::Route, Method::Route]);
    balances_and_replies_come_from(&lab, &format!("[{VIP6}]"));
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn ipv6_tun_with_our_decapsulation_balances_30_connections_10_10_10() {
    let lab = forwarding_lab6("e2e6tun", &[Method::Tunnel, Method::Tunnel, Method::Tunnel]);
    balances_and_replies_come_from(&lab, &format!("[{VIP6}]"));
}

/// ipvsadm's `-S` of a configuration mixing IPv4 and IPv6 services, fed
/// back with `-R` after `-C`, saves the same again.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_mixed_ipv4_and_ipv6_save_restores_to_the_same_save() {
    let lab = nat_lab("lvs-e2e-mixed");
    restore(
        &lab,
        "-A -t [2001:db8::10]:80 -s wlc\n\
         -a -t [2001:db8::10]:80 -r [2001:db8:11::2]:8080 -m -w 3\n\
         -a -t [2001:db8::10]:80 -r [2001:db8:12::2]:80 -g\n\
         -A -u [2001:db8::10]:53 -s sh -b sh-port\n\
         -a -u [2001:db8::10]:53 -r [2001:db8:11::2]:5353 -m\n",
    );
    let saved = lab.lvsadm(&["-S", "-n"]).unwrap();
    assert!(saved.contains("-A -t 198.18.0.10:80"), "{saved}");
    assert!(
        saved.contains("-a -t [2001:db8::10]:80 -r [2001:db8:11::2]:8080 -m -w 3"),
        "{saved}"
    );
    lab.lvsadm(&["-C"]).unwrap();
    assert!(!lab.lvsadm(&["-S", "-n"]).unwrap().contains("-A"));
    restore(&lab, &saved);
    assert_eq!(lab.lvsadm(&["-S", "-n"]).unwrap(), saved);
}

/// As for IPv4, DR and TUN need no forwarding on the director: with
/// `net.ipv6.conf.all.forwarding` at its default (0) the FIB helper refuses
/// every lookup, and the datapath takes the next hops lvsd resolved.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn ipv6_dr_and_tun_need_no_forwarding_on_the_director() {
    let lab = forwarding_lab6("e2e6fwd", &[Method::Route, Method::Tunnel, Method::Route]);
    // lvsd resolves the servers' next hops on its next maintenance tick.
    wait_for(
        "lvsd to resolve three next hops",
        Duration::from_secs(5),
        || lab.lvsd_log().matches("keeping next hop resolved").count() >= 3,
    )
    .unwrap();
    lab.director
        .exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=0"])
        .unwrap();
    balances_and_replies_come_from(&lab, &format!("[{VIP6}]"));
    assert_eq!(verdict(&lab, "drop_no_route"), 0, "{}", lab.lvsd_log());
}

/// An IPv4 service with an IPv6 tunnel endpoint, as IPVS allows: in the
/// router lab, rs1 is reached by IPv4-in-IPv4, rs2 by IPv4-in-IPv6 (its link
/// to the router, and the director's, given IPv6 too; the director's IPv6
/// forwarding left off). `lvs_decap` on each real server takes the client's
/// IPv4 packet out; both answer from the VIP straight to the client, rr
/// alternating between them.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn an_ipv4_service_balances_over_ipv4_and_ipv6_tunnels() {
    let mut lab =
        Lab::forwarding("e2e-4in6", &[Method::Tunnel, Method::Tunnel]).expect("building the lab");
    let router = lab.router.as_ref().expect("the router lab");
    for ns in [router, &lab.director, &lab.reals[1].ns] {
        ns.enable_ipv6().unwrap();
    }
    let ip = |ns: &lvs_lab::Netns, args: &[&str]| {
        ns.exec(args)
            .unwrap_or_else(|e| panic!("{}: {e:#}", ns.name));
    };
    // `dev` gets `addr` (a /64, without duplicate address detection); a
    // host routes through `gateway`.
    let host = |ns: &lvs_lab::Netns, dev: &str, addr: &str, gateway: Option<&str>| {
        ip(
            ns,
            &[
                "ip",
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                dev,
                "nodad",
            ],
        );
        if let Some(gw) = gateway {
            ip(ns, &["ip", "-6", "route", "add", "default", "via", gw]);
        }
    };
    ip(router, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    host(router, "br0", "2001:db8:2::1", None);
    host(router, "tun2", "2001:db8:32::1", None);
    host(
        &lab.director,
        "lan0",
        "2001:db8:2::2",
        Some("2001:db8:2::1"),
    );
    host(
        &lab.reals[1].ns,
        "eth0",
        "2001:db8:32::2",
        Some("2001:db8:32::1"),
    );
    lab.start_servers(80, 53).expect("starting real servers");
    lab.start_lvsd(None).expect("starting lvsd");
    restore(
        &lab,
        &format!(
            "-A -t 198.18.0.10:80 -s rr\n\
             -a -t 198.18.0.10:80 -r {}:80 -i\n\
             -a -t 198.18.0.10:80 -r [2001:db8:32::2]:80 -i\n",
            lab.reals[0].addr
        ),
    );
    let names = lab.http_gets("198.18.0.10:80", 20).unwrap_or_else(|e| {
        panic!(
            "{e:#}\n{}\n{}",
            lab.lvsd_log(),
            lab.lvsadm(&["datapath"]).unwrap_or_default()
        )
    });
    assert_eq!(
        counts(&names),
        expect(&[("rs1", 10), ("rs2", 10)]),
        "{names:?}"
    );
    // The IPv6 server is listed as such, with its connections.
    let listed = lab.lvsadm(&["-L", "-n", "-c"]).unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.contains("198.18.0.10:80") && l.contains("[2001:db8:32::2]:80")),
        "{listed}"
    );
}
