//! Tier 3: lvsd's life as a service: a reload (`lvsadm reload`, SIGHUP)
//! while connections stream, and systemd's readiness protocol. Needs root;
//! `cargo xtask test` runs these (`--include-ignored`).

use std::{
    os::unix::net::UnixDatagram,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use lvs_lab::{bin, by_name, wait_for, Held, Lab};

const VIP: &str = "198.18.0.10:7000";
/// Long-lived connections streaming through the reloads.
const STREAMS: usize = 200;

/// wrr over the named servers (`(index, weight)`); each is checked on its
/// HTTP port every 0.3 s, and down after two failures.
fn config(lab: &Lab, servers: &[(usize, u32)]) -> String {
    let mut toml =
        format!("[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nscheduler = \"wrr\"\n");
    for (i, weight) in servers {
        let addr = &lab.reals[*i].addr;
        toml += &format!(
            "\n[[service.real]]\naddress = \"{addr}:7000\"\nmethod = \"nat\"\nweight = {weight}\n\n\
             [[service.real.check]]\ntype = \"http\"\nconnect = \"{addr}:8080\"\n\
             interval = 0.3\ntimeout = 0.2\nfall = 2\n"
        );
    }
    toml
}

/// rr over every server of the lab, unchecked, written to its lvs.toml.
fn rr_config(lab: &Lab) -> std::path::PathBuf {
    let mut toml =
        format!("[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nscheduler = \"rr\"\n");
    for rs in &lab.reals {
        toml += &format!(
            "\n[[service.real]]\naddress = \"{}:7000\"\nmethod = \"nat\"\n",
            rs.addr
        );
    }
    let path = lab.dir.join("lvs.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// `lvsadm reload`: (success, standard output, standard error).
fn reload(lab: &Lab) -> (bool, String, String) {
    let out = Command::new(bin("lvsadm"))
        .args(["--socket", &lab.socket.display().to_string(), "reload"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every held connection carries a line both ways; the ones that did not.
fn stream(held: &mut [Held], round: &str) -> Vec<String> {
    let mut broken = Vec::new();
    for (i, conn) in held.iter_mut().enumerate() {
        let line = format!("{round} {i}");
        match conn.echo(&line) {
            Ok(echo) if echo == line => {}
            Ok(other) => broken.push(format!("{i} ({}): echoed {other:?}", conn.server)),
            Err(e) => broken.push(format!("{i} ({}): {e:#}", conn.server)),
        }
    }
    broken
}

/// The notices lvsd sent to its `NOTIFY_SOCKET` so far.
fn notices(socket: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

fn wait_for_notice(socket: &UnixDatagram, seen: &mut Vec<String>, want: &str) {
    wait_for(&format!("lvsd's {want}"), Duration::from_secs(10), || {
        seen.extend(notices(socket));
        seen.iter().any(|n| n.lines().any(|l| l == want))
    })
    .unwrap_or_else(|e| panic!("{e:#}: {seen:?}"));
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_reload_changes_weights_removes_and_adds_servers_without_losing_a_connection() {
    let mut lab = Lab::new("lvs-reload", 4).expect("building the lab");
    lab.start_servers(8080, 5353)
        .expect("starting HTTP servers");
    lab.start_hold_servers(7000).expect("starting hold servers");
    let path = lab.dir.join("lvs.toml");
    std::fs::write(&path, config(&lab, &[(0, 1), (1, 1), (2, 1)])).unwrap();
    let notify_path = lab.dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_nonblocking(true).unwrap();
    let notify_arg = notify_path.display().to_string();
    lab.start_lvsd_env(Some(&path), &[], &[("NOTIFY_SOCKET", &notify_arg)])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut seen = Vec::new();
    wait_for_notice(&notify, &mut seen, "READY=1");
    let [rs1, rs2, rs3, rs4] = [0, 1, 2, 3].map(|i| format!("{}:7000", lab.reals[i].addr));
    for rs in [&rs1, &rs2, &rs3] {
        wait_for("the checks' first results", Duration::from_secs(5), || {
            lab.health_state(rs).as_deref() == Some("up")
        })
        .unwrap_or_else(|e| panic!("{e:#}{}", lab.context()));
    }

    let mut held = Vec::new();
    let spread = lab.hold_counted(VIP, &mut held, STREAMS - 2);
    assert_eq!(spread, by_name(&[("rs1", 66), ("rs2", 66), ("rs3", 66)]));
    assert!(stream(&mut held, "before").is_empty());

    // rs1's checker fails and takes it out before the reload, which leaves
    // rs1's settings as they are: its checker must stay down, not start
    // over (up, then two failures) as a restarted checker would.
    assert!(lab.reals[0].stop_http_server());
    wait_for("rs1 down", Duration::from_secs(5), || {
        lab.health_state(&rs1).as_deref() == Some("down")
    })
    .unwrap_or_else(|e| panic!("{e:#}{}", lab.context()));
    let more = lab.hold_counted(VIP, &mut held, 2);
    assert_eq!(more, by_name(&[("rs2", 1), ("rs3", 1)]));

    // The 200 connections stream, round after round, through the reload.
    let streaming = Arc::new(AtomicBool::new(true));
    let streamer = {
        let streaming = streaming.clone();
        let mut held = std::mem::take(&mut held);
        std::thread::spawn(move || {
            let (mut rounds, mut broken) = (0, Vec::new());
            while streaming.load(Ordering::Relaxed) || rounds < 2 {
                broken.extend(stream(&mut held, &format!("round {rounds}")));
                rounds += 1;
            }
            (held, rounds, broken)
        })
    };

    // rs2's weight 1 → 3, rs3 removed, rs4 added.
    std::fs::write(&path, config(&lab, &[(0, 1), (1, 3), (3, 1)])).unwrap();
    let (ok, out, err) = reload(&lab);
    assert!(ok, "{out}{err}{}", lab.context());
    let service = "TCP 198.18.0.10:7000";
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            format!("removed real server {rs3} from {service}; its connections drain"),
            format!("changed real server {rs2} of {service} (nat, weight 3)"),
            format!("added real server {rs4} to {service} (nat, weight 1)"),
            format!("changed the checks of real server {rs4} of {service}"),
        ],
        "{err}"
    );
    let reloaded = Instant::now();
    while reloaded.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            lab.health_state(&rs1).as_deref(),
            Some("down"),
            "rs1's unchanged checker started over{}",
            lab.context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for("rs4's check", Duration::from_secs(5), || {
        lab.health_state(&rs4).as_deref() == Some("up")
    })
    .unwrap_or_else(|e| panic!("{e:#}{}", lab.context()));
    assert_eq!(lab.health_state(&rs3), None, "{}", lab.context());

    // New connections follow the new weights: 3 to rs2 for each to rs4.
    let mut fresh = Vec::new();
    assert_eq!(
        lab.hold_counted(VIP, &mut fresh, 40),
        by_name(&[("rs2", 30), ("rs4", 10)])
    );
    // Every stream, rs3's included, carried on through the reload.
    streaming.store(false, Ordering::Relaxed);
    let (held, rounds, broken) = streamer.join().expect("the streaming thread");
    println!("{STREAMS} connections streamed {rounds} rounds through the reload");
    assert!(
        broken.is_empty(),
        "{} broken: {broken:#?}{}",
        broken.len(),
        lab.context()
    );
    // The removed server's connections finish as their clients close them.
    let (on_rs3, rest): (Vec<Held>, Vec<Held>) = held.into_iter().partition(|h| h.server == "rs3");
    assert_eq!(on_rs3.len(), 67);
    drop(on_rs3);
    let mut held = rest;

    // A file with an error changes nothing and says where.
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replace("weight = 3", "weight = -3")).unwrap();
    let before = lab.lvsadm(&["-S", "-n"]).unwrap();
    let (ok, out, err) = reload(&lab);
    assert!(!ok, "{out}");
    assert!(
        err.contains(&path.display().to_string()) && err.contains("nothing changed"),
        "{err}"
    );
    assert_eq!(lab.lvsadm(&["-S", "-n"]).unwrap(), before);

    // SIGHUP does the same as `lvsadm reload`, and tells systemd.
    std::fs::write(&path, good.replace("weight = 3", "weight = 2")).unwrap();
    let pid = lab.lvsd.as_ref().and_then(|p| p.pid()).expect("lvsd's pid");
    seen.clear();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for("rs2 at weight 2", Duration::from_secs(5), || {
        lab.lvsadm(&["-L", "-n"]).is_ok_and(|l| {
            l.lines().any(|l| {
                l.starts_with(&format!("  -> {rs2} ")) && l.split_whitespace().nth(3) == Some("2")
            })
        })
    })
    .unwrap_or_else(|e| panic!("{e:#}{}", lab.context()));
    wait_for_notice(&notify, &mut seen, "READY=1");
    assert!(
        seen.iter().any(|n| n.lines().any(|l| l == "RELOADING=1")),
        "{seen:?}"
    );
    let broken = stream(&mut held, "after SIGHUP");
    assert!(broken.is_empty(), "{broken:#?}");
}

/// `-L -n --stats --exact`'s service line: Conns, InPkts, OutPkts.
fn service_stats(lab: &Lab) -> [u64; 3] {
    let listing = lab.lvsadm(&["-L", "-n", "--stats", "--exact"]).unwrap();
    let line = listing
        .lines()
        .find(|l| l.starts_with("TCP  198.18.0.10:7000"))
        .unwrap_or_else(|| panic!("{listing}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .skip(2)
        .take(3)
        .map(|n| n.parse().unwrap())
        .collect();
    [numbers[0], numbers[1], numbers[2]]
}

/// `-L -n`'s ActiveConn, summed over the servers.
fn active(lab: &Lab) -> u64 {
    lab.lvsadm(&["-L", "-n"])
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("  -> ") && !l.contains("RemoteAddress"))
        .filter_map(|l| l.split_whitespace().nth(4)?.parse::<u64>().ok())
        .sum()
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_restart_takes_over_the_datapath_without_losing_a_connection() {
    let mut lab = Lab::new("lvs-restart", 3).expect("building the lab");
    lab.start_servers(8080, 5353)
        .expect("starting HTTP servers");
    lab.start_hold_servers(7000).expect("starting hold servers");
    let bpffs = lab.mount_bpffs().unwrap().display().to_string();
    let path = rr_config(&lab);
    let flags = ["--bpffs", bpffs.as_str()];
    lab.start_lvsd_with(Some(&path), &flags)
        .unwrap_or_else(|e| panic!("{e:#}"));

    let mut held = Vec::new();
    lab.hold_counted(VIP, &mut held, STREAMS);
    assert!(stream(&mut held, "first").is_empty());
    let streaming = Arc::new(AtomicBool::new(true));
    let streamer = {
        let streaming = streaming.clone();
        std::thread::spawn(move || {
            let (mut rounds, mut broken) = (0, Vec::new());
            while streaming.load(Ordering::Relaxed) || rounds < 2 {
                broken.extend(stream(&mut held, &format!("round {rounds}")));
                rounds += 1;
            }
            (held, rounds, broken)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let before = service_stats(&lab);
    assert_eq!(before[0], STREAMS as u64, "{}", lab.context());
    wait_for("ActiveConn counted", Duration::from_secs(5), || {
        active(&lab) == STREAMS as u64
    })
    .unwrap_or_else(|e| panic!("{e:#}{}", lab.context()));

    // Stopped: the datapath goes on forwarding the streams alone.
    let log_before = lab.lvsd_log();
    lab.lvsd.take().expect("lvsd runs").stop();
    std::thread::sleep(Duration::from_millis(800));
    // Started again: it takes the tables over, then the interfaces.
    lab.start_lvsd_with(Some(&path), &flags)
        .unwrap_or_else(|e| panic!("{e:#}\n{log_before}"));
    // One director per interface: the old one was removed once the new
    // one was in.
    for iface in &lab.ifaces {
        let out = lab
            .director
            .exec(&["tc", "filter", "show", "dev", iface, "ingress"])
            .unwrap();
        let filters = String::from_utf8_lossy(&out.stdout);
        let directors = filters
            .lines()
            .filter(|l| l.contains("lvs_director_tc"))
            .count();
        assert_eq!(directors, 1, "{iface}: {filters}");
    }
    let log = lab.lvsd_log();
    assert!(
        log.contains("took over the tables of the lvsd before this one")
            && log.contains("conns=200"),
        "{log}"
    );
    std::thread::sleep(Duration::from_millis(500));
    streaming.store(false, Ordering::Relaxed);
    let (mut held, rounds, broken) = streamer.join().expect("the streaming thread");
    println!("{STREAMS} connections streamed {rounds} rounds through the stop and the start");
    assert!(
        broken.is_empty(),
        "{} broken: {broken:#?}{}",
        broken.len(),
        lab.context()
    );

    // The counters go on from where they were; the counts are carried.
    let after = service_stats(&lab);
    println!("service counters before the stop {before:?}, after the start {after:?}");
    assert!(
        after[0] == before[0] && after[1] > before[1] && after[2] > before[2],
        "{before:?} {after:?}"
    );
    wait_for("ActiveConn recounted", Duration::from_secs(5), || {
        active(&lab) == STREAMS as u64
    })
    .unwrap_or_else(|e| panic!("{e:#}{}", lab.context()));
    let mut fresh = Vec::new();
    assert_eq!(
        lab.hold_counted(VIP, &mut fresh, 30).len(),
        3,
        "{}",
        lab.context()
    );
    assert!(stream(&mut held, "last").is_empty());
    drop(fresh);

    // Tables of another map layout are refused, and left forwarding.
    lab.lvsd.take().expect("lvsd runs").stop();
    let netns = lvs_lab::pair::netns_id(&lab.director.name).unwrap();
    let record = std::fs::read_dir("/run/lvs")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(&format!("handover-director-{netns}-")) && name.ends_with(".json")
        })
        .expect("the stopped lvsd's handover record");
    let text = std::fs::read_to_string(&record).unwrap();
    std::fs::write(&record, text.replacen("\"layout\":1", "\"layout\":0", 1)).unwrap();
    let refused = lab
        .start_lvsd_with(Some(&path), &flags)
        .expect_err("started over tables it cannot read");
    assert!(
        format!("{refused:#}").contains("has map layout 0; this lvsd reads layout 1"),
        "{refused:#}"
    );
    assert!(stream(&mut held, "after the refusal").is_empty());
    drop(held);

    // `lvsd --clean` removes what a stop leaves.
    let lvsd = bin("lvsd").display().to_string();
    let out = lab
        .director
        .exec(&[&lvsd, "--clean", "--bpffs", &bpffs])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("detached the director from"),
        "{text}"
    );
    for iface in &lab.ifaces {
        let filters = lab
            .director
            .exec(&["tc", "filter", "show", "dev", iface, "ingress"])
            .unwrap();
        assert!(
            filters.stdout.is_empty(),
            "{iface}: {}",
            String::from_utf8_lossy(&filters.stdout)
        );
    }
    let pins: Vec<_> = std::fs::read_dir(std::path::Path::new(&bpffs).join("lvs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(pins.is_empty(), "{pins:?}");
}

/// `--drain-limit`: a removed server's connections go on for the limit,
/// then are cut; the other server's are untouched.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_drain_limit_cuts_a_removed_servers_connections_when_it_runs_out() {
    let mut lab = Lab::new("lvs-drain", 2).expect("building the lab");
    lab.start_hold_servers(7000).expect("starting hold servers");
    let path = rr_config(&lab);
    lab.start_lvsd_with(Some(&path), &["--drain-limit", "2"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut held = Vec::new();
    assert_eq!(
        lab.hold_counted(VIP, &mut held, 4),
        by_name(&[("rs1", 2), ("rs2", 2)])
    );
    let rs2 = format!("{}:7000", lab.reals[1].addr);
    lab.lvsadm(&["-d", "-t", VIP, "-r", &rs2]).unwrap();
    let removed = Instant::now();
    // Within the limit, rs2's connections carry on.
    assert!(
        stream(&mut held, "within the limit").is_empty(),
        "{}",
        lab.context()
    );
    assert!(removed.elapsed() < Duration::from_secs(2));
    // After it (and a sweep), they are cut; rs1's are not.
    std::thread::sleep(Duration::from_secs(2).saturating_sub(removed.elapsed()));
    let rs2_addr = lab.reals[1].addr.to_string();
    wait_for("rs2's entries removed", Duration::from_secs(10), || {
        lab.lvsadm(&["-L", "-c", "-n"])
            .is_ok_and(|table| !table.contains(&rs2_addr))
    })
    .unwrap_or_else(|e| panic!("{e:#}{}", lab.context()));
    let cut = removed.elapsed();
    println!("rs2's connections removed {cut:?} after the server");
    assert!(cut >= Duration::from_secs(2), "{cut:?}");
    for h in held.iter_mut().filter(|h| h.server == "rs2") {
        assert!(
            h.echo("cut?").is_err(),
            "a connection of rs2 outlived the limit"
        );
    }
    for h in held.iter_mut().filter(|h| h.server == "rs1") {
        assert_eq!(h.echo("still").unwrap(), "still");
    }
}
