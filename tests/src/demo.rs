//! `cargo xtask demo [--method nat|dr|tun|mixed]`: build the lab, balance
//! real HTTP requests over three real servers, show the director's view, and
//! remove everything again — also on Ctrl-C or failure.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::{bail, Result};

use crate::{Lab, Method};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

pub fn run(requests: usize, method: &str) -> Result<()> {
    let methods = match method {
        "nat" => None,
        "dr" => Some([Method::Route; 3]),
        "tun" => Some([Method::Tunnel; 3]),
        "mixed" => Some([Method::Nat, Method::Route, Method::Tunnel]),
        other => bail!("unknown method `{other}` (nat, dr, tun or mixed)"),
    };
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let result = demo(requests, methods);
    println!("\n== cleaning up: every namespace and process of the lab is removed");
    result
}

fn step(title: &str) -> Result<()> {
    check_interrupt()?;
    println!("\n== {title}");
    Ok(())
}

fn demo(requests: usize, methods: Option<[Method; 3]>) -> Result<()> {
    let (mut lab, port) = match methods {
        None => {
            step("building the NAT lab: client, director, three real servers (network namespaces lvsdemo-*)")?;
            let lab = Lab::new("lvsdemo", 3)?;
            println!(
                "   client 198.18.1.2 ── director ── rs1 198.18.11.2, rs2 198.18.12.2, rs3 198.18.13.2"
            );
            (lab, 8080)
        }
        Some(methods) => {
            step("building the lab: client ── router ── LAN with the director; real servers by method (network namespaces lvsdemo-*)")?;
            let lab = Lab::forwarding("lvsdemo", &methods)?;
            for rs in &lab.reals {
                println!("   {} {} ({})", rs.name, rs.addr, rs.method.flag());
            }
            if let Some(rs) = lab.reals.iter().find(|rs| rs.prepared) {
                step(&format!(
                    "each DR/TUN real server was prepared with `lvsadm realserver setup`; {} says:",
                    rs.name
                ))?;
                print!("{}", indent(&rs.realserver(&["status"])?));
            }
            (lab, 80)
        }
    };
    step(&format!(
        "starting an HTTP server on :{port} in every real server"
    ))?;
    lab.start_servers(port, 5353)?;
    step("starting lvsd on the director")?;
    lab.start_lvsd(None)?;
    for line in lab.lvsd_log().lines().filter(|l| l.contains("attached")) {
        println!("   {}", line.trim());
    }
    step("configuring the virtual service, as an LVS administrator would")?;
    let mut commands = vec![vec![
        "-A".to_string(),
        "-t".into(),
        "198.18.0.10:80".into(),
        "-s".into(),
        "rr".into(),
    ]];
    for rs in &lab.reals {
        commands.push(
            [
                "-a",
                "-t",
                "198.18.0.10:80",
                "-r",
                &format!("{}:{port}", rs.addr),
                rs.method.flag(),
                "-w",
                "1",
            ]
            .map(String::from)
            .to_vec(),
        );
    }
    for c in &commands {
        println!("   lvsadm {}", c.join(" "));
        let args: Vec<&str> = c.iter().map(String::as_str).collect();
        lab.lvsadm(&args)?;
    }
    step(&format!(
        "{requests} HTTP requests from the client to the VIP 198.18.0.10:80"
    ))?;
    for i in 1..=requests {
        check_interrupt()?;
        let name = lab
            .http_gets("198.18.0.10:80", 1)?
            .pop()
            .unwrap_or_default();
        let (addr, method) = lab
            .reals
            .iter()
            .find(|r| r.name == name)
            .map(|r| (r.addr.to_string(), r.method.flag()))
            .unwrap_or_default();
        println!("   request {i:>2} answered by {name} ({addr}, {method})");
        std::thread::sleep(Duration::from_millis(100));
    }
    step("the director's view: lvsadm -L -n")?;
    print!("{}", indent(&lab.lvsadm(&["-L", "-n"])?));
    step("and its counters: lvsadm -L -n --stats (DR and TUN replies bypass the director: OutPkts 0)")?;
    print!("{}", indent(&lab.lvsadm(&["-L", "-n", "--stats"])?));
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("   {l}\n")).collect()
}

/// `cargo xtask demo --fleet`: three directors behind a BIRD router's
/// ECMP, connections spread over them, one director leaving and coming
/// back with no connection broken.
pub fn run_fleet(connections: usize) -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let result = fleet_demo(connections);
    println!("\n== cleaning up: every namespace and process of the lab is removed");
    result
}

fn fleet_demo(connections: usize) -> Result<()> {
    use crate::fleet::{echo_all, Fleet, Multipath};
    step("building the fleet lab: client ── router (BIRD) ── LAN with three directors (lvsd and BIRD each) and three real servers (two DR, one TUN) (network namespaces lvsfleet-*)")?;
    let mut fleet = Fleet::new("lvsfleet", 3, 3, Multipath::HashThreshold)?;
    for d in &fleet.directors {
        println!("   {} {}", d.name, d.addr);
    }
    step("starting the real servers, lvsd (--sloppy-tcp --announce lvs-vips, mh) and BIRD on every director, and the router's BIRD")?;
    fleet.start_servers()?;
    fleet.start_lvsds()?;
    fleet.start_birds()?;
    fleet.wait_for_next_hops(&[0, 1, 2], Duration::from_secs(30))?;
    step("the router learned the VIP from each director over BGP: one multipath route")?;
    print!("{}", indent(&route(&fleet)?));
    step(&format!(
        "{connections} long-lived connections from the client to 198.18.0.10:7000"
    ))?;
    let timeout = Duration::from_secs(10);
    let mut held = fleet.open(connections, timeout)?;
    let show = |fleet: &Fleet, held: &[crate::Held], live: &[usize]| -> Result<()> {
        let spread = fleet.spread(held, live)?;
        for (d, ports) in live.iter().zip(&spread) {
            println!(
                "   {} holds {} connections",
                fleet.directors[*d].name,
                ports.len()
            );
        }
        Ok(())
    };
    show(&fleet, &held, &[0, 1, 2])?;
    let mut by_server = std::collections::BTreeMap::<&str, usize>::new();
    for h in &held {
        *by_server.entry(h.server.as_str()).or_default() += 1;
    }
    println!("   real servers (mh): {by_server:?}");
    step("d2's lvsd killed (SIGKILL): its announcement device, and so its route, go with it")?;
    fleet.kill9(1)?;
    let withdrawn = fleet.wait_for_next_hops(&[0, 2], Duration::from_secs(10))?;
    println!("   route withdrawn after {withdrawn:?}");
    print!("{}", indent(&route(&fleet)?));
    check_interrupt()?;
    let failed = echo_all(&mut held, 1);
    println!(
        "   every connection echoes a line: {} of {connections} broken (the moved ones are scheduled by sloppy TCP to the same mh server)",
        failed.len()
    );
    show(&fleet, &held, &[0, 2])?;
    step("d2's lvsd started again: it announces the VIP, the router takes it back")?;
    fleet.start_lvsd(1)?;
    fleet.wait_for_next_hops(&[0, 1, 2], Duration::from_secs(30))?;
    print!("{}", indent(&route(&fleet)?));
    let failed = echo_all(&mut held, 2);
    println!("   {} of {connections} broken", failed.len());
    show(&fleet, &held, &[0, 1, 2])?;
    Ok(())
}

fn route(fleet: &crate::fleet::Fleet) -> Result<String> {
    let out = fleet
        .router
        .exec(&["ip", "route", "show", "198.18.0.10/32"])?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
