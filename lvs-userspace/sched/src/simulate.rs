//! `lvsadm --simulate FILE`: run any of the schedulers offline, with the
//! daemon's own scheduler code, over a script of events, and print the real
//! server picked for each new connection.
//!
//! One event per line, `#` starts a comment:
//!
//! ```text
//! scheduler NAME [FLAG]...                 first, once; flags as `-b`'s
//! add SERVER weight=W                      joins the front of the list, as in IPVS
//!                                          (mh hashes SERVER as IP[:PORT])
//! weight SERVER W | remove SERVER | overload SERVER on|off
//! open ID CLIENT_IP[:PORT] [DEST_IP]       prints `ID SERVER` or `ID none`
//! idle ID                                  the connection turns inactive (FIN_WAIT)
//! close ID                                 the connection is gone
//! advance SECONDS                          simulated time moves on
//! ```

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
};

use crate::{Dest, Request, Scheduler, SchedulerName};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct SimulateError {
    pub line: usize,
    pub message: String,
}

struct Connection {
    server: u32,
    active: bool,
}

struct Simulation {
    name: SchedulerName,
    sched: Box<dyn Scheduler>,
    /// IPVS list order, newest first: (label, state).
    servers: Vec<(String, Dest)>,
    next_id: u32,
    connections: HashMap<String, Connection>,
    now: u64,
}

impl Simulation {
    fn dests(&self) -> Vec<Dest> {
        self.servers.iter().map(|(_, d)| *d).collect()
    }

    fn position(&self, label: &str) -> Result<usize, String> {
        self.servers
            .iter()
            .position(|(l, _)| l == label)
            .ok_or_else(|| format!("no server `{label}`"))
    }

    /// Change the list, running the scheduler's hook as IPVS does.
    fn change(&mut self, edit: impl FnOnce(&mut Vec<(String, Dest)>)) {
        let old = self.dests();
        edit(&mut self.servers);
        let new = self.dests();
        self.sched.update(&old, &new);
    }

    fn counts(&mut self, server: u32) -> Option<&mut Dest> {
        self.servers
            .iter_mut()
            .map(|(_, d)| d)
            .find(|d| d.id == server)
    }

    fn event(&mut self, words: &[&str], out: &mut String) -> Result<(), String> {
        match words {
            ["add", label, weight] => {
                let weight = weight.strip_prefix("weight=").ok_or("expected weight=W")?;
                let weight = parse_weight(weight)?;
                if self.position(label).is_ok() {
                    return Err(format!("server `{label}` already exists"));
                }
                let id = self.next_id;
                self.next_id += 1;
                // The server's address matters to mh only.
                let (addr, port) = match lvs_common::addr::split_host_port(label) {
                    Some((addr, port)) => (addr, port.unwrap_or(0)),
                    None if self.name == SchedulerName::Mh => {
                        return Err(format!(
                            "mh hashes the server's address: name it IP[:PORT], not `{label}`"
                        ))
                    }
                    None => (Ipv4Addr::UNSPECIFIED.into(), 0),
                };
                let label = label.to_string();
                self.change(|list| {
                    list.insert(
                        0,
                        (
                            label,
                            Dest {
                                id,
                                addr,
                                port,
                                weight,
                                ..Dest::default()
                            },
                        ),
                    )
                });
            }
            ["weight", label, weight] => {
                let i = self.position(label)?;
                let weight = parse_weight(weight)?;
                self.change(|list| list[i].1.weight = weight);
            }
            ["remove", label] => {
                let i = self.position(label)?;
                self.change(|list| {
                    list.remove(i);
                });
            }
            ["overload", label, flag] => {
                let i = self.position(label)?;
                // OVERLOAD is a flag, not an edit: no hook runs.
                self.servers[i].1.overloaded = match *flag {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("expected on or off, not `{other}`")),
                };
            }
            ["open", id, client, rest @ ..] => {
                if self.connections.contains_key(*id) {
                    return Err(format!("connection `{id}` is already open"));
                }
                let (client, client_port) = parse_client(client)?;
                let destination = match rest {
                    [] => Ipv4Addr::UNSPECIFIED.into(),
                    [dest] => dest
                        .parse()
                        .map_err(|_| format!("malformed address `{dest}`"))?,
                    _ => return Err("expected: open ID CLIENT_IP[:PORT] [DEST_IP]".into()),
                };
                let request = Request {
                    client,
                    client_port,
                    destination,
                    now: self.now,
                };
                let dests = self.dests();
                match self.sched.pick(&dests, &request) {
                    Some(i) => {
                        let (label, dest) = &mut self.servers[i];
                        dest.active += 1;
                        out.push_str(&format!("{id} {label}\n"));
                        self.connections.insert(
                            id.to_string(),
                            Connection {
                                server: dest.id,
                                active: true,
                            },
                        );
                    }
                    None => out.push_str(&format!("{id} none\n")),
                }
            }
            ["idle", id] => {
                let conn = self
                    .connections
                    .get_mut(*id)
                    .ok_or_else(|| format!("no open connection `{id}`"))?;
                if conn.active {
                    conn.active = false;
                    let server = conn.server;
                    if let Some(d) = self.counts(server) {
                        d.active -= 1;
                        d.inactive += 1;
                    }
                }
            }
            ["close", id] => {
                let conn = self
                    .connections
                    .remove(*id)
                    .ok_or_else(|| format!("no open connection `{id}`"))?;
                if let Some(d) = self.counts(conn.server) {
                    if conn.active {
                        d.active -= 1;
                    } else {
                        d.inactive -= 1;
                    }
                }
            }
            ["advance", seconds] => {
                let seconds: u64 = seconds
                    .parse()
                    .map_err(|_| format!("malformed seconds `{seconds}`"))?;
                self.now += seconds;
            }
            ["scheduler", ..] => return Err("`scheduler` may appear only once, first".into()),
            _ => return Err(format!("unknown event `{}`", words.join(" "))),
        }
        Ok(())
    }
}

fn parse_weight(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|w| *w <= 65_535)
        .ok_or_else(|| format!("weight `{text}` is not in 0..65535"))
}

/// `IPv4[:PORT]`, `[IPv6][:PORT]` or a bare IPv6 address; no port is 0.
fn parse_client(text: &str) -> Result<(IpAddr, u16), String> {
    lvs_common::addr::split_host_port(text)
        .map(|(addr, port)| (addr, port.unwrap_or(0)))
        .ok_or_else(|| format!("malformed client `{text}` (expected IP[:PORT] or [IPv6][:PORT])"))
}

/// Run a script; the output holds one line per `open`.
pub fn run(script: &str) -> Result<String, SimulateError> {
    let mut sim: Option<Simulation> = None;
    let mut out = String::new();
    for (n, raw) in script.lines().enumerate() {
        let line = n + 1;
        let err = |message: String| SimulateError { line, message };
        let text = raw.split('#').next().unwrap_or("");
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        match &mut sim {
            None => {
                let ["scheduler", name, options @ ..] = words.as_slice() else {
                    return Err(err("the script must start with `scheduler NAME`".into()));
                };
                let name: SchedulerName = name.parse().map_err(|e| err(format!("{e}")))?;
                let flags = crate::sched_flags(name, options.iter().copied())
                    .map_err(|e| err(e.to_string()))?;
                sim = Some(Simulation {
                    name,
                    sched: name.instantiate(&[], flags),
                    servers: Vec::new(),
                    next_id: 0,
                    connections: HashMap::new(),
                    now: 0,
                });
            }
            Some(sim) => sim.event(&words, &mut out).map_err(err)?,
        }
    }
    if sim.is_none() {
        return Err(SimulateError {
            line: 0,
            message: "empty script: it must start with `scheduler NAME`".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(out: &str) -> String {
        out.lines()
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .map(|s| if s == "none" { "-" } else { s })
            .collect()
    }

    /// `add` C, B, A gives IPVS list order A, B, C.
    fn script(sched: &str, weights: &[(&str, u32)], opens: usize) -> String {
        let mut s = format!("scheduler {sched}\n");
        for (label, w) in weights.iter().rev() {
            s += &format!("add {label} weight={w}\n");
        }
        for i in 0..opens {
            s += &format!("open c{i} 10.0.0.{}\n", i % 250 + 1);
        }
        s
    }

    #[test]
    fn reference_sequences_for_the_count_driven_schedulers() {
        let abc = [("A", 1), ("B", 2), ("C", 3)];
        for (sched, expected) in [
            ("wlc", "ABCCBCABCCBC"),
            ("sed", "CBCABCCBCABC"),
            ("nq", "ABCCBCCBCABC"),
        ] {
            assert_eq!(
                picks(&run(&script(sched, &abc, 12)).unwrap()),
                expected,
                "{sched}"
            );
        }
        assert_eq!(
            picks(&run(&script("lc", &[("A", 1), ("B", 1)], 4)).unwrap()),
            "ABAB"
        );
    }

    #[test]
    fn rr_skips_quiescent_and_overloaded_servers() {
        let s = "scheduler rr\nadd D weight=1\nadd C weight=1\nadd B weight=0\nadd A weight=1\noverload D on\n\
                 open 1 10.0.0.1\nopen 2 10.0.0.2\nopen 3 10.0.0.3\nopen 4 10.0.0.4\n";
        assert_eq!(run(s).unwrap(), "1 A\n2 C\n3 A\n4 C\n");
    }

    #[test]
    fn closing_connections_steers_wlc() {
        let s = "scheduler wlc\nadd B weight=1\nadd A weight=1\n\
                 open 1 10.0.0.1\nopen 2 10.0.0.2\nopen 3 10.0.0.3\nopen 4 10.0.0.4\n\
                 close 1\nclose 3\nidle 2\nopen 5 10.0.0.5\nopen 6 10.0.0.6\n";
        // A: 1, 3 then both closed; B: 2 (idle), 4. A has 0 overhead, B 256+1.
        assert_eq!(run(s).unwrap(), "1 A\n2 B\n3 A\n4 B\n5 A\n6 A\n");
    }

    #[test]
    fn sh_keeps_a_client_and_fails_or_falls_back_on_weight_zero() {
        let base = "add C weight=1\nadd B weight=1\nadd A weight=1\n";
        let opens = "open 1 10.0.0.1\nopen 2 10.0.0.2\nopen 3 203.0.113.7\nopen 4 10.0.0.1\n";
        let out = run(&format!("scheduler sh\n{base}{opens}")).unwrap();
        assert_eq!(out, "1 A\n2 C\n3 B\n4 A\n");
        let quiesce = "weight B 0\nopen 5 203.0.113.7\n";
        let out = run(&format!("scheduler sh\n{base}{quiesce}")).unwrap();
        assert_eq!(out, "5 none\n");
        let out = run(&format!("scheduler sh sh-fallback\n{base}{quiesce}")).unwrap();
        assert_eq!(out, "5 C\n");
    }

    /// mh hashes each server's address: the order of `add`s makes no
    /// difference, unless mh-ipvs-order asks for the kernel's.
    #[test]
    fn mh_picks_by_address_whatever_the_order_of_adds() {
        let opens: String = (1..=400)
            .map(|i| format!("open {i} 10.{}.{}.1\n", i / 200, i % 200))
            .collect();
        let abc = "add 192.168.10.1:80 weight=1\nadd 192.168.10.2:80 weight=1\nadd 192.168.10.3:80 weight=1\n";
        let cba = "add 192.168.10.3:80 weight=1\nadd 192.168.10.2:80 weight=1\nadd 192.168.10.1:80 weight=1\n";
        let one = run(&format!("scheduler mh\n{abc}{opens}")).unwrap();
        assert_eq!(one, run(&format!("scheduler mh\n{cba}{opens}")).unwrap());
        for server in ["192.168.10.1:80", "192.168.10.2:80", "192.168.10.3:80"] {
            assert!(one.contains(server), "{one}");
        }
        let kernel =
            |adds: &str| run(&format!("scheduler mh mh-ipvs-order\n{adds}{opens}")).unwrap();
        assert_ne!(kernel(abc), kernel(cba));
        // Quiesced without mh-fallback, its clients fail; with it they move.
        let quiesce = "weight 192.168.10.2:80 0\n";
        let none = run(&format!("scheduler mh\n{abc}{quiesce}{opens}")).unwrap();
        let moved = run(&format!("scheduler mh mh-fallback\n{abc}{quiesce}{opens}")).unwrap();
        assert!(none.contains(" none") && !moved.contains(" none") && !moved.contains(".2:80"));
        let e = run("scheduler mh\nadd web1 weight=1\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("IP[:PORT]"), "{e}");
        assert!(run("scheduler rr mh-port\n")
            .unwrap_err()
            .message
            .contains("only the mh scheduler"));
    }

    #[test]
    fn lblc_follows_the_destination() {
        let s = "scheduler lblc\nadd B weight=1\nadd A weight=1\n\
                 open 1 10.0.0.1 192.0.2.1\nopen 2 10.0.0.2 192.0.2.2\nopen 3 10.0.0.3 192.0.2.1\n";
        assert_eq!(run(s).unwrap(), "1 A\n2 B\n3 A\n");
    }

    /// IPv6 clients and destinations, in either form: lblc keys each
    /// destination by its whole address, sh hashes the folded client.
    #[test]
    fn ipv6_clients_and_destinations() {
        let s = "scheduler lblc\nadd B weight=1\nadd A weight=1\n\
                 open 1 [2001:db8::1]:4000 2001:db8:f::1\nopen 2 2001:db8::2 2001:db8:f::2\n\
                 open 3 [2001:db8::3] 2001:db8:f::1\n";
        assert_eq!(run(s).unwrap(), "1 A\n2 B\n3 A\n");
        let sh = "scheduler sh\nadd A weight=1\nadd B weight=1\nadd C weight=1\n\
                  open 1 ::a00:1\nopen 2 10.0.0.1\n";
        let out = run(sh).unwrap();
        let picks: Vec<&str> = out.lines().map(|l| &l[2..]).collect();
        assert_eq!(picks[0], picks[1], "{out}");
        assert!(run("scheduler rr\nadd A weight=1\nopen 1 [2001:db8::1\n").is_err());
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            run("# comment\nadd A weight=1\n").unwrap_err(),
            SimulateError {
                line: 2,
                message: "the script must start with `scheduler NAME`".into()
            }
        );
        let e = run("scheduler wlc\nadd A weight=70000\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("not in 0..65535"));
        let e = run("scheduler wlc\nclose nope\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2: no open connection `nope`");
        let e = run("scheduler fastest\n").unwrap_err();
        assert!(e.message.contains("unknown scheduler"));
    }
}
