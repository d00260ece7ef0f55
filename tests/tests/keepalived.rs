//! Tier 3: lvsd run from a keepalived.conf, as a site moving from
//! keepalived points it at its file. Needs root; `cargo xtask test` runs
//! these (`--include-ignored`).

use std::{
    process::Command,
    time::{Duration, Instant},
};

use lvs_lab::{bin, by_name, wait_for, Lab};

const VIP: &str = "198.18.0.10:7000";

/// keepalived.conf for the lab's three NAT servers: an HTTP_GET, a
/// TCP_CHECK and a MISC_CHECK (a program with arguments, as keepalived
/// splits them), each against the server's HTTP port or a marker file.
fn keepalived_conf(lab: &Lab, marker: &str) -> String {
    let [rs1, rs2, rs3] = [0, 1, 2].map(|i| lab.reals[i].addr);
    format!(
        r#"! a keepalived.conf as sites write them
global_defs {{
    router_id LVS_LAB
    notification_email {{
        root@localhost
    }}
}}

virtual_server 198.18.0.10 7000 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP

    real_server {rs1} 7000 {{
        weight 1
        HTTP_GET {{
            url {{
              path /
              status_code 200
            }}
            connect_port 8080
            connect_timeout 0.5
            retry 1
            delay_before_retry 0.5
        }}
    }}
    real_server {rs2} 7000 {{
        weight 1
        TCP_CHECK {{
            connect_port 8080
            connect_timeout 0.5
            retry 1
            delay_before_retry 0.5
        }}
    }}
    real_server {rs3} 7000 {{
        weight 1
        MISC_CHECK {{
            misc_path "/usr/bin/test ! -e {marker}"
            misc_timeout 1
        }}
    }}
}}
"#
    )
}

fn wait_for_state(lab: &Lab, server: &str, want: &str) -> Duration {
    let since = Instant::now();
    wait_for(&format!("{server} {want}"), Duration::from_secs(10), || {
        lab.health_state(server).as_deref() == Some(want)
    })
    .unwrap_or_else(|e| panic!("{e:#}{}", lab.context()));
    since.elapsed()
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn lvsd_runs_from_a_keepalived_conf_and_its_checkers_take_servers_out_and_back() {
    let mut lab = Lab::new("lvs-kconf", 3).expect("building the lab");
    lab.start_servers(8080, 5353)
        .expect("starting HTTP servers");
    lab.start_hold_servers(7000).expect("starting hold servers");
    let marker = lab.dir.join("rs3-down");
    let conf = lab.dir.join("keepalived.conf");
    std::fs::write(&conf, keepalived_conf(&lab, &marker.display().to_string())).unwrap();

    // The import a site would run once: our TOML, the ignored statements
    // on standard error, exit 0.
    let import = Command::new(bin("lvsadm"))
        .arg("keepalived-import")
        .arg(&conf)
        .output()
        .unwrap();
    let (toml, warnings) = (
        String::from_utf8_lossy(&import.stdout),
        String::from_utf8_lossy(&import.stderr),
    );
    assert!(import.status.success(), "{toml}\n{warnings}");
    assert!(
        warnings.contains(":3: `router_id` tunes keepalived itself; ignored"),
        "{warnings}"
    );
    assert!(
        toml.contains("type = \"exec\"\nprogram = \"/usr/bin/test\"\nargs = [\"!\", \"-e\","),
        "{toml}"
    );

    let conf_arg = conf.display().to_string();
    lab.start_lvsd_with(None, &["--keepalived-conf", &conf_arg])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let listing = lab.lvsadm(&["-L", "-n"]).unwrap();
    assert!(
        listing.contains("\nTCP  198.18.0.10:7000 rr\n"),
        "{listing}"
    );
    for rs in &lab.reals {
        let line = format!("  -> {}:7000", rs.addr);
        let row = listing
            .lines()
            .find(|l| l.starts_with(&line))
            .unwrap_or_else(|| panic!("{listing}"));
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&columns[2..4], ["Masq", "1"], "{row}");
    }

    let mut held = Vec::new();
    assert_eq!(
        lab.hold_counted(VIP, &mut held, 3),
        by_name(&[("rs1", 1), ("rs2", 1), ("rs3", 1)]),
        "{}",
        lab.context()
    );

    // rs2's port closes (TCP_CHECK) and rs3's marker appears (MISC_CHECK).
    assert!(
        lab.reals[1].stop_http_server(),
        "rs2's HTTP server was not running"
    );
    std::fs::write(&marker, "").unwrap();
    let rs2 = format!("{}:7000", lab.reals[1].addr);
    let rs3 = format!("{}:7000", lab.reals[2].addr);
    println!("rs2 down after {:?}", wait_for_state(&lab, &rs2, "down"));
    println!("rs3 down after {:?}", wait_for_state(&lab, &rs3, "down"));
    assert_eq!(
        lab.hold_counted(VIP, &mut held, 4),
        by_name(&[("rs1", 4)]),
        "while rs2 and rs3 are down{}",
        lab.context()
    );

    lab.reals[1]
        .start_http_server(8080)
        .expect("restarting rs2's HTTP server");
    std::fs::remove_file(&marker).unwrap();
    wait_for_state(&lab, &rs2, "up");
    wait_for_state(&lab, &rs3, "up");
    let spread = lab.hold_counted(VIP, &mut held, 6);
    assert_eq!(
        spread.len(),
        3,
        "after both returned: {spread:?}{}",
        lab.context()
    );

    // Every connection, the ones to servers that left included, still
    // carries data: health changes scheduling, not open connections.
    for (i, conn) in held.iter_mut().enumerate() {
        let line = format!("still here {i}");
        assert_eq!(conn.echo(&line).unwrap_or_else(|e| panic!("{e:#}")), line);
    }
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn lvsd_refuses_a_keepalived_conf_it_cannot_honour_and_names_each_line() {
    let mut lab = Lab::new("lvs-kconf-bad", 1).expect("building the lab");
    let conf = lab.dir.join("keepalived.conf");
    let rs1 = lab.reals[0].addr;
    std::fs::write(
        &conf,
        format!(
            "virtual_server fwmark 1 {{\n    lb_algo rr\n    real_server {rs1} 80 {{\n    }}\n}}\n\
             virtual_server 198.18.0.10 80 {{\n    lb_algo fo\n    real_server {rs1} 80 {{\n        notify_up /bin/true\n    }}\n}}\n"
        ),
    )
    .unwrap();
    let conf_arg = conf.display().to_string();
    let err = lab
        .start_lvsd_with(None, &["--keepalived-conf", &conf_arg])
        .expect_err("lvsd started from a file it cannot honour");
    let log = lab.lvsd_log();
    for (line, what) in [
        (1, "firewall-mark"),
        (7, "scheduler `fo`"),
        (9, "`notify_up`"),
    ] {
        let at = format!("{conf_arg}:{line}: ");
        assert!(
            log.lines().any(|l| l.contains(&at) && l.contains(what)),
            "line {line} ({what}) not named: {err:#}\n{log}"
        );
    }
    // lvsd refused before binding its socket, so before attaching.
    assert!(!lab.socket.exists(), "{log}");
    for iface in &lab.ifaces {
        let filters = lab
            .director
            .exec(&["tc", "filter", "show", "dev", iface, "ingress"]);
        let filters = filters.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        assert!(
            filters.as_deref().unwrap_or("").is_empty(),
            "{iface}: {filters:?}"
        );
    }
}
