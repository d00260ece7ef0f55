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
