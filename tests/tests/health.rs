//! Tier 3: health checking end to end. lvsd runs its checkers from the
//! director's namespace against real servers in theirs; the tests stop and
//! start those servers and watch scheduling follow, through the VIP and in
//! `lvsadm -L`. Needs root; `cargo xtask test` runs these
//! (`--include-ignored`).

use std::{
    collections::BTreeMap,
    thread,
    time::{Duration, Instant},
};

use lvs_lab::{wait_for, Held, Lab, Method, RealServer, VIP6};
use serde_json::Value;

const RS1: &str = "198.18.11.2";
const RS2: &str = "198.18.12.2";
const RS3: &str = "198.18.13.2";

/// Write `toml` into the lab's directory and (re)start lvsd with it.
fn start_lvsd_with(lab: &mut Lab, toml: &str) {
    if let Some(mut old) = lab.lvsd.take() {
        old.stop();
    }
    let path = lab.dir.join("lvs.toml");
    std::fs::write(&path, toml).unwrap();
    lab.start_lvsd(Some(&path))
        .unwrap_or_else(|e| panic!("{e:#}\nconfig:\n{toml}"));
}

/// What a failing assertion should show: the listing and lvsd's log.
fn context(lab: &Lab) -> String {
    format!(
        "\n-L -n:\n{}\nlvsd log:\n{}",
        lab.lvsadm(&["-L", "-n"])
            .unwrap_or_else(|e| format!("{e:#}")),
        lab.lvsd_log()
    )
}

/// `lvsadm -L -n --json`.
fn snapshot(lab: &Lab) -> Value {
    let json = lab.lvsadm(&["-L", "-n", "--json"]).unwrap();
    serde_json::from_str(&json).expect("lvsadm --json output")
}

/// The `--json` row of real server `server` (`addr:port`) in any service.
fn row(lab: &Lab, server: &str) -> Option<Value> {
    let snapshot = snapshot(lab);
    snapshot["services"]
        .as_array()?
        .iter()
        .flat_map(|svc| svc["reals"].as_array().into_iter().flatten())
        .find(|r| {
            format!(
                "{}:{}",
                r["server"]["addr"].as_str().unwrap_or(""),
                r["server"]["port"]
            ) == server
        })
        .cloned()
}

/// The health state `-L --json` shows for `server`, if any.
fn state(lab: &Lab, server: &str) -> Option<String> {
    row(lab, server).and_then(|r| r["health"]["state"].as_str().map(str::to_string))
}

/// Poll (every 50 ms, at most `limit`) until `server` shows health state
/// `want`; the time from `since` until it did.
fn wait_for_state(
    lab: &Lab,
    server: &str,
    want: &str,
    since: Instant,
    limit: Duration,
) -> Duration {
    wait_for(&format!("{server} {want}"), limit, || {
        state(lab, server).as_deref() == Some(want)
    })
    .unwrap_or_else(|e| panic!("{e:#}{}", context(lab)));
    since.elapsed()
}

/// `lvsadm -L -n`'s line for `server`.
fn listing_line(lab: &Lab, server: &str) -> String {
    let listing = lab.lvsadm(&["-L", "-n"]).unwrap();
    let prefix = format!("  -> {server} ");
    listing
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line for {server} in\n{listing}"))
        .to_string()
}

/// Open `count` more connections to `target`, one at a time, kept open.
fn hold_more(lab: &Lab, target: &str, held: &mut Vec<Held>, count: usize) {
    for _ in 0..count {
        let n = held.len() + 1;
        let conn = lab
            .hold(target)
            .unwrap_or_else(|e| panic!("connection {n}: {e:#}{}", context(lab)));
        held.push(conn);
    }
}

/// How many of `names` are each name.
fn counts<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n.to_string()).or_default() += 1;
    }
    m
}

fn held_counts(held: &[Held]) -> BTreeMap<String, usize> {
    counts(held.iter().map(|h| h.server.as_str()))
}

/// `count` HTTP requests through the VIP; who answered, by name.
fn http_counts(lab: &Lab, count: usize) -> BTreeMap<String, usize> {
    let names = lab
        .http_gets("198.18.0.10:80", count)
        .unwrap_or_else(|e| panic!("{e:#}{}", context(lab)));
    assert_eq!(names.len(), count, "{names:?}");
    counts(names.iter().map(String::as_str))
}

fn expect(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// `conn` still carries data both ways.
fn assert_echoes(conn: &mut Held, line: &str) {
    let echo = conn
        .echo(line)
        .unwrap_or_else(|e| panic!("the connection held on {}: {e:#}", conn.server));
    assert_eq!(echo, line);
}

/// Wait (bounded) until `lvsadm -L -n` shows `active` as the ActiveConn of
/// each listed `addr:port`: the daemon recounts once a second.
fn wait_for_active(lab: &Lab, active: &[(&str, u64)]) {
    let matches = || {
        active.iter().all(|(server, n)| {
            // ->  ADDR:PORT  Forward  Weight  ActiveConn  InActConn ...
            listing_line(lab, server)
                .split_whitespace()
                .nth(4)
                .is_some_and(|count| count == n.to_string())
        })
    };
    wait_for("the director's ActiveConn", Duration::from_secs(5), matches)
        .unwrap_or_else(|e| panic!("{e}: wanted {active:?}{}", context(lab)));
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_stopped_http_server_leaves_scheduling_and_returns_after_rise_checks() {
    const INTERVAL: f64 = 1.0;
    const RISE: u32 = 2;
    const FALL: u32 = 2;
    let mut lab = Lab::new("lvs-hc-rr", 3).expect("building the lab");
    lab.start_servers(8080, 5353)
        .expect("starting HTTP servers");
    lab.start_hold_servers(7000).expect("starting hold servers");
    let mut toml = String::from(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.10:7000\"\nscheduler = \"rr\"\n",
    );
    for rs in &lab.reals {
        toml += &format!(
            "\n[[service.real]]\naddress = \"{addr}:7000\"\nmethod = \"nat\"\n\n\
             [[service.real.check]]\ntype = \"http\"\nconnect = \"{addr}:8080\"\npath = \"/\"\n\
             interval = {INTERVAL:.1}\ntimeout = 0.5\nrise = {RISE}\nfall = {FALL}\nstart = \"down\"\n\
             retry_interval = {INTERVAL:.1}\n",
            addr = rs.addr
        );
    }
    start_lvsd_with(&mut lab, &toml);
    let (rs2, vip) = (format!("{RS2}:7000"), "198.18.0.10:7000");
    // The checkers start down, so "up" means each has seen `rise`
    // successes. A checker that starts up and has never succeeded falls at
    // its first failure (keepalived's way), which would not test `fall`.
    for rs in [RS1, RS2, RS3] {
        wait_for_state(
            &lab,
            &format!("{rs}:7000"),
            "up",
            Instant::now(),
            Duration::from_secs(5),
        );
    }

    // One connection to each server before anything fails.
    let mut held = Vec::new();
    hold_more(&lab, vip, &mut held, 3);
    assert_eq!(
        held_counts(&held),
        expect(&[("rs1", 1), ("rs2", 1), ("rs3", 1)])
    );

    let stopped = Instant::now();
    assert!(
        lab.reals[1].stop_http_server(),
        "rs2's HTTP server was not running"
    );
    let left = wait_for_state(&lab, &rs2, "down", stopped, Duration::from_secs(10));
    // `fall` failures, the first up to one interval after the stop, the
    // others `retry_interval` (here the interval; http's default is
    // keepalived's 3 s) apart; and not at the first failure, which comes
    // at most one interval late.
    let (least, most) = (
        Duration::from_secs_f64(f64::from(FALL - 1) * INTERVAL - 0.5),
        Duration::from_secs_f64(f64::from(FALL) * INTERVAL + INTERVAL),
    );
    println!("rs2 left scheduling {left:?} after its HTTP server stopped ({FALL} checks needed)");
    assert!(
        left >= least && left <= most,
        "rs2 left after {left:?}, outside {least:?}..={most:?}{}",
        context(&lab)
    );

    let line = listing_line(&lab, &rs2);
    let columns: Vec<&str> = line.split_whitespace().collect();
    // ->  ADDR:PORT  Forward  Weight  ActiveConn  InActConn  state (reason)
    assert_eq!(columns.get(6), Some(&"down"), "{line}");
    assert_eq!(columns[3], "1", "the configured weight stays: {line}");
    let r = row(&lab, &rs2).unwrap();
    assert_eq!(r["weight"], 1, "{r}");
    assert!(r["health"]["scheduled_weight"].is_null(), "{r}");
    let reason = r["health"]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("check 1: "), "{r}");
    println!("rs2 while down: {line}");

    // Existing connections are left alone, the one to rs2 included.
    for (i, conn) in held.iter_mut().enumerate() {
        assert_echoes(conn, &format!("still here {i}"));
    }
    hold_more(&lab, vip, &mut held, 6);
    assert_eq!(
        held_counts(&held[3..]),
        expect(&[("rs1", 3), ("rs3", 3)]),
        "new connections while rs2 is down{}",
        context(&lab)
    );

    let started = Instant::now();
    lab.reals[1]
        .start_http_server(8080)
        .expect("restarting rs2's HTTP server");
    let back = wait_for_state(&lab, &rs2, "up", started, Duration::from_secs(10));
    let (least, most) = (
        Duration::from_secs_f64(f64::from(RISE - 1) * INTERVAL - 0.5),
        Duration::from_secs_f64(f64::from(RISE + 1) * INTERVAL + 1.0),
    );
    println!("rs2 returned {back:?} after its HTTP server restarted ({RISE} checks needed)");
    assert!(
        back >= least && back <= most,
        "rs2 returned after {back:?}, outside {least:?}..={most:?}{}",
        context(&lab)
    );
    let r = row(&lab, &rs2).unwrap();
    assert!(r["health"]["reason"].is_null() && r["weight"] == 1, "{r}");
    assert!(
        listing_line(&lab, &rs2).ends_with(" up"),
        "{}",
        listing_line(&lab, &rs2)
    );

    hold_more(&lab, vip, &mut held, 3);
    assert_eq!(
        held_counts(&held[9..]),
        expect(&[("rs1", 1), ("rs2", 1), ("rs3", 1)]),
        "new connections after rs2 returned{}",
        context(&lab)
    );
    for (i, conn) in held.iter_mut().enumerate() {
        assert_echoes(conn, &format!("at the end {i}"));
    }
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_failing_external_program_takes_a_server_out() {
    let mut lab = Lab::new("lvs-hc-ex", 3).expect("building the lab");
    lab.start_servers(8080, 5353)
        .expect("starting real servers");
    let dir = lab.dir.clone();
    let flag = |addr: &str| dir.join(format!("down-{addr}"));
    let script = format!("test ! -e {}/down-$LVS_REAL_ADDR", lab.dir.display());
    let mut toml = String::from(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.10:80\"\nscheduler = \"rr\"\n",
    );
    for rs in &lab.reals {
        toml += &format!(
            "\n[[service.real]]\naddress = \"{}:8080\"\nmethod = \"nat\"\n\n\
             [[service.real.check]]\ntype = \"exec\"\nprogram = \"/bin/sh\"\n\
             args = [\"-c\", \"{script}\"]\ninterval = 0.5\ntimeout = 0.4\n",
            rs.addr
        );
    }
    start_lvsd_with(&mut lab, &toml);
    let rs1 = format!("{RS1}:8080");
    for rs in [RS1, RS2, RS3] {
        wait_for_state(
            &lab,
            &format!("{rs}:8080"),
            "up",
            Instant::now(),
            Duration::from_secs(5),
        );
    }
    assert_eq!(
        http_counts(&lab, 12),
        expect(&[("rs1", 4), ("rs2", 4), ("rs3", 4)])
    );

    let failed = Instant::now();
    std::fs::write(flag(RS1), "").unwrap();
    let out = wait_for_state(&lab, &rs1, "down", failed, Duration::from_secs(5));
    println!("rs1 left scheduling {out:?} after its check began to fail");
    let r = row(&lab, &rs1).unwrap();
    let reason = r["health"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("/bin/sh exited with status 1"),
        "the reason names the exit status: {r}"
    );
    assert!(listing_line(&lab, &rs1).contains("exited with status 1"));
    assert_eq!(
        http_counts(&lab, 12),
        expect(&[("rs2", 6), ("rs3", 6)]),
        "{}",
        context(&lab)
    );

    let fixed = Instant::now();
    std::fs::remove_file(flag(RS1)).unwrap();
    let back = wait_for_state(&lab, &rs1, "up", fixed, Duration::from_secs(5));
    println!("rs1 returned {back:?} after its check passed again");
    assert_eq!(
        http_counts(&lab, 12),
        expect(&[("rs1", 4), ("rs2", 4), ("rs3", 4)]),
        "{}",
        context(&lab)
    );
}

/// The sorry server's row in `-L --json`, while it stands in.
fn sorry_row(lab: &Lab) -> Option<Value> {
    row(lab, &format!("{RS3}:8080")).filter(|r| r["health"]["state"] == "sorry")
}

/// `-S -n` never saves the sorry server: it is not a real server.
fn assert_sorry_not_saved(lab: &Lab) {
    let saved = lab.lvsadm(&["-S", "-n"]).unwrap();
    assert!(!saved.contains(RS3), "{saved}");
    assert!(saved.contains(RS1) && saved.contains(RS2), "{saved}");
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn the_sorry_server_answers_while_every_server_is_down() {
    let mut lab = Lab::new("lvs-hc-sry", 3).expect("building the lab");
    lab.start_servers(8080, 5353)
        .expect("starting real servers");
    let mut toml = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.10:80\"\nscheduler = \"rr\"\n\
         sorry_server = \"{RS3}:8080\"\nsorry_method = \"nat\"\n"
    );
    for addr in [RS1, RS2] {
        toml += &format!(
            "\n[[service.real]]\naddress = \"{addr}:8080\"\nmethod = \"nat\"\n\n\
             [[service.real.check]]\ntype = \"tcp\"\ninterval = 0.5\ntimeout = 0.4\nfall = 1\n"
        );
    }
    start_lvsd_with(&mut lab, &toml);
    let (rs1, rs2) = (format!("{RS1}:8080"), format!("{RS2}:8080"));
    for rs in [&rs1, &rs2] {
        wait_for_state(&lab, rs, "up", Instant::now(), Duration::from_secs(5));
    }
    assert!(sorry_row(&lab).is_none(), "{}", context(&lab));
    assert_eq!(http_counts(&lab, 6), expect(&[("rs1", 3), ("rs2", 3)]));
    assert_sorry_not_saved(&lab);

    lab.reals[0].stop_http_server();
    wait_for_state(&lab, &rs1, "down", Instant::now(), Duration::from_secs(5));
    assert!(
        sorry_row(&lab).is_none(),
        "one server is still up{}",
        context(&lab)
    );
    let last_down = Instant::now();
    lab.reals[1].stop_http_server();
    wait_for(
        "the sorry server to stand in",
        Duration::from_secs(5),
        || sorry_row(&lab).is_some(),
    )
    .unwrap_or_else(|e| panic!("{e:#}{}", context(&lab)));
    let takeover = last_down.elapsed();
    println!("the sorry server stood in {takeover:?} after the last server stopped");
    assert_eq!(state(&lab, &rs1).as_deref(), Some("down"));
    assert_eq!(state(&lab, &rs2).as_deref(), Some("down"));
    let line = listing_line(&lab, &format!("{RS3}:8080"));
    assert!(line.contains("Masq") && line.ends_with(" sorry"), "{line}");
    assert_eq!(
        http_counts(&lab, 6),
        expect(&[("rs3", 6)]),
        "{}",
        context(&lab)
    );
    assert_sorry_not_saved(&lab);

    let started = Instant::now();
    lab.reals[0]
        .start_http_server(8080)
        .expect("restarting rs1's HTTP server");
    let back = wait_for_state(&lab, &rs1, "up", started, Duration::from_secs(5));
    println!("rs1 took over from the sorry server {back:?} after its HTTP server restarted");
    assert!(sorry_row(&lab).is_none(), "{}", context(&lab));
    assert_eq!(state(&lab, &rs2).as_deref(), Some("down"));
    assert_eq!(
        http_counts(&lab, 6),
        expect(&[("rs1", 6)]),
        "{}",
        context(&lab)
    );
    assert_sorry_not_saved(&lab);
}

/// lvsd's configuration for the ramp test: wlc over rs1..rs3 on :7000,
/// each checked by TCP on its HTTP port.
fn wlc_config(lab: &Lab, slow_start: u32) -> String {
    let mut toml = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.10:7000\"\nscheduler = \"wlc\"\n\
         slow_start = {slow_start}\n"
    );
    for rs in &lab.reals {
        toml += &format!(
            "\n[[service.real]]\naddress = \"{addr}:7000\"\nmethod = \"nat\"\nweight = 1\n\n\
             [[service.real.check]]\ntype = \"tcp\"\nconnect = \"{addr}:8080\"\n\
             interval = 0.5\ntimeout = 0.4\nfall = 1\nrise = 1\n",
            addr = rs.addr
        );
    }
    toml
}

/// How many of `count` new connections (kept in `held`) reached rs3.
fn burst(lab: &Lab, held: &mut Vec<Held>, count: usize) -> usize {
    let from = held.len();
    hold_more(lab, "198.18.0.10:7000", held, count);
    held[from..].iter().filter(|h| h.server == "rs3").count()
}

/// rs3's slow-start percentage in `-L --json`, while it ramps.
fn ramp_percent(lab: &Lab) -> Option<u64> {
    row(lab, &format!("{RS3}:7000")).and_then(|r| r["health"]["slow_start_percent"].as_u64())
}

/// Ten connections on each server; rs3's closed, rs3 down and recounted at
/// 0, then its HTTP server back: returns once rs3 is up again, with when.
fn take_rs3_down_and_back(lab: &mut Lab, held: &mut Vec<Held>) -> Instant {
    let rs3 = format!("{RS3}:7000");
    for rs in [RS1, RS2, RS3] {
        wait_for_state(
            lab,
            &format!("{rs}:7000"),
            "up",
            Instant::now(),
            Duration::from_secs(5),
        );
    }
    hold_more(lab, "198.18.0.10:7000", held, 30);
    assert_eq!(
        held_counts(held),
        expect(&[("rs1", 10), ("rs2", 10), ("rs3", 10)])
    );
    let (rs1, rs2) = (format!("{RS1}:7000"), format!("{RS2}:7000"));
    wait_for_active(lab, &[(&rs1, 10), (&rs2, 10), (&rs3, 10)]);
    held.retain(|h| h.server != "rs3");
    lab.reals[2].stop_http_server();
    wait_for_state(lab, &rs3, "down", Instant::now(), Duration::from_secs(5));
    wait_for_active(lab, &[(&rs1, 10), (&rs2, 10), (&rs3, 0)]);
    lab.reals[2]
        .start_http_server(8080)
        .expect("restarting rs3's HTTP server");
    wait_for_state(lab, &rs3, "up", Instant::now(), Duration::from_secs(5));
    Instant::now()
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn wlc_ramps_a_recovered_server_instead_of_flooding_it() {
    const WINDOW_S: u64 = 8;
    let mut lab = Lab::new("lvs-hc-wlc", 3).expect("building the lab");
    lab.start_servers(8080, 5353)
        .expect("starting HTTP servers");
    lab.start_hold_servers(7000).expect("starting hold servers");
    let rs3 = format!("{RS3}:7000");

    // Control: without slow start, wlc sends everything to the server that
    // has no connections until it has as many as the others — the flood.
    let config = wlc_config(&lab, 0);
    start_lvsd_with(&mut lab, &config);
    let mut held = Vec::new();
    take_rs3_down_and_back(&mut lab, &mut held);
    let flood = burst(&lab, &mut held, 10);
    println!("slow_start = 0: rs3 took {flood} of the first 10 connections after it recovered");
    assert!(
        flood >= 9,
        "no flood without slow start: {flood} of 10{}",
        context(&lab)
    );
    assert!(ramp_percent(&lab).is_none(), "{}", context(&lab));

    held.clear();
    let config = wlc_config(&lab, WINDOW_S as u32);
    start_lvsd_with(&mut lab, &config);
    let up = take_rs3_down_and_back(&mut lab, &mut held);
    let first = burst(&lab, &mut held, 10);
    let percent = ramp_percent(&lab);
    let weight = row(&lab, &rs3).unwrap()["health"]["scheduled_weight"].clone();
    println!(
        "slow_start = {WINDOW_S}: rs3 took {first} of 10 at the start of its ramp \
         ({percent:?}%, scheduled weight {weight})"
    );
    assert!(
        percent.is_some_and(|p| p < 50),
        "rs3 ramps after it recovers: {percent:?}{}",
        context(&lab)
    );
    assert!(
        first <= 3,
        "a flood despite slow start: {first} of 10{}",
        context(&lab)
    );

    // Half way up the ramp, rs3 takes a bigger share.
    let half = up + Duration::from_secs(WINDOW_S / 2);
    thread::sleep(half.saturating_duration_since(Instant::now()));
    let percent = ramp_percent(&lab);
    let second = burst(&lab, &mut held, 10);
    println!("slow_start = {WINDOW_S}: rs3 took {second} of 10 half way ({percent:?}%)");
    assert!(
        percent.is_some_and(|p| (25..=75).contains(&p)),
        "{percent:?}{}",
        context(&lab)
    );
    assert!(
        second > first,
        "rs3's share grows with its ramp: {first}, then {second}{}",
        context(&lab)
    );

    // The ramp ends, and rs3 is weighed like the others again.
    wait_for(
        "the end of rs3's ramp",
        Duration::from_secs(WINDOW_S + 3),
        || ramp_percent(&lab).is_none(),
    )
    .unwrap_or_else(|e| panic!("{e:#}{}", context(&lab)));
    let ended = up.elapsed();
    let r = row(&lab, &rs3).unwrap();
    assert_eq!(r["health"]["state"], "up", "{r}");
    let (rs1, rs2) = (format!("{RS1}:7000"), format!("{RS2}:7000"));
    let before = held_counts(&held);
    let on = |name: &str| before.get(name).copied().unwrap_or(0) as u64;
    wait_for_active(
        &lab,
        &[(&rs1, on("rs1")), (&rs2, on("rs2")), (&rs3, on("rs3"))],
    );
    let third = burst(&lab, &mut held, 10);
    println!(
        "slow_start = {WINDOW_S}: the ramp ended {ended:?} after rs3 recovered; \
         rs3 then took {third} of 10; bursts {first}, {second}, {third}"
    );
    assert!(third > first, "{first}, {second}, {third}{}", context(&lab));
    let after = held_counts(&held);
    wait_for_active(
        &lab,
        &[
            (&rs1, after["rs1"] as u64),
            (&rs2, after["rs2"] as u64),
            (&rs3, after["rs3"] as u64),
        ],
    );
    assert_eq!(after["rs3"], first + second + third);
}

/// Health checks reach IPv6 real servers: a TCP check of each NAT66
/// server's `[addr]:80` takes a stopped one out of scheduling (new
/// requests through the IPv6 VIP reach only the others) and puts it back
/// once it answers again.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn an_ipv6_real_server_leaves_and_returns_with_its_checks() {
    let mut lab = Lab::forwarding6("lvs-hc6", &[Method::Nat, Method::Nat, Method::Nat])
        .expect("building the lab");
    lab.start_servers(80, 53).expect("starting the servers");
    let mut toml =
        format!("[[service]]\nprotocol = \"tcp\"\naddress = \"[{VIP6}]:80\"\nscheduler = \"rr\"\n");
    for rs in &lab.reals {
        toml += &format!(
            "\n[[service.real]]\naddress = \"{at}\"\nmethod = \"nat\"\n\n\
             [[service.real.check]]\ntype = \"tcp\"\nconnect = \"{at}\"\n\
             interval = 0.5\ntimeout = 0.5\nrise = 1\nfall = 1\n",
            at = rs.at(80)
        );
    }
    start_lvsd_with(&mut lab, &toml);
    // `--json` names a server by its address and port.
    let key = |rs: &RealServer| format!("{}:80", rs.addr);
    for rs in &lab.reals {
        wait_for_state(&lab, &key(rs), "up", Instant::now(), Duration::from_secs(5));
    }
    let vip = format!("[{VIP6}]:80");
    let gets = |lab: &Lab, count| {
        let names = lab
            .http_gets(&vip, count)
            .unwrap_or_else(|e| panic!("{e:#}{}", context(lab)));
        assert_eq!(names.len(), count, "{names:?}");
        counts(names.iter().map(String::as_str))
    };
    assert_eq!(gets(&lab, 3), expect(&[("rs1", 1), ("rs2", 1), ("rs3", 1)]));

    let rs2 = key(&lab.reals[1]);
    assert!(lab.reals[1].stop_http_server(), "rs2 was not serving");
    wait_for_state(&lab, &rs2, "down", Instant::now(), Duration::from_secs(5));
    assert_eq!(
        gets(&lab, 4),
        expect(&[("rs1", 2), ("rs3", 2)]),
        "while rs2 is down{}",
        context(&lab)
    );
    lab.reals[1].start_http_server(80).expect("restarting rs2");
    wait_for_state(&lab, &rs2, "up", Instant::now(), Duration::from_secs(5));
    assert_eq!(gets(&lab, 3), expect(&[("rs1", 1), ("rs2", 1), ("rs3", 1)]));
}
