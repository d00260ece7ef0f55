//! The fleet: three directors behind a router's ECMP, each announcing the
//! VIP with BIRD (`lvs_lab::fleet`), 1,000 long-lived connections held
//! through them, and directors leaving.
//!
//! Run by `cargo xtask test` (root, bird2).

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use anyhow::Result;
use lvs_lab::{
    fleet::{echo_all, Fleet, Multipath},
    Held,
};

const CONNECTIONS: usize = 1000;
/// Long enough for TCP to retransmit a segment that met no route while
/// the router converged.
const ECHO_TIMEOUT: Duration = Duration::from_secs(10);

fn running(tag: &str, multipath: Multipath) -> Result<Fleet> {
    let mut fleet = Fleet::new(tag, 3, 3, multipath)?;
    fleet.start_servers()?;
    fleet.start_lvsds()?;
    fleet.start_birds()?;
    fleet.wait_for_next_hops(&[0, 1, 2], Duration::from_secs(30))?;
    Ok(fleet)
}

/// The router spreads 1,000 connections over three directors (each 20% to
/// 46%); a director's lvsd killed, its route is withdrawn at once and the
/// router moves its connections to the two left (hash-threshold also moves
/// some between those two), which carry every one of them on to the same
/// real server; the director back, it takes flows again, none broken.
#[test]
#[ignore = "needs root and bird2; run by `cargo xtask test`"]
fn connections_spread_and_survive_a_killed_director_hash_threshold() -> Result<()> {
    killed_and_back("flk", Multipath::HashThreshold)
}

/// As above, with a resilient nexthop group: only the killed director's
/// connections move, and none moves back to it.
#[test]
#[ignore = "needs root and bird2; run by `cargo xtask test`"]
fn connections_spread_and_survive_a_killed_director_resilient() -> Result<()> {
    killed_and_back("flr", Multipath::Resilient)
}

fn killed_and_back(tag: &str, multipath: Multipath) -> Result<()> {
    let mut fleet = running(tag, multipath)?;
    let started = Instant::now();
    let mut held = fleet.open(CONNECTIONS, ECHO_TIMEOUT)?;
    let opened = started.elapsed();
    let failed = echo_all(&mut held, 1);
    assert!(failed.is_empty(), "{failed:?}");
    let before = fleet.spread(&held, &[0, 1, 2])?;
    let counts: Vec<usize> = before.iter().map(HashSet::len).collect();
    let mut servers = std::collections::BTreeMap::<&str, usize>::new();
    for h in &held {
        *servers.entry(h.server.as_str()).or_default() += 1;
    }
    eprintln!(
        "{CONNECTIONS} connections opened in {opened:?}, per director {counts:?}, per real \
         server {servers:?}"
    );
    // mh-port spreads them over every server: each one a test that the
    // directors' tables agree.
    assert_eq!(servers.len(), 3, "{servers:?}");
    assert_eq!(counts.iter().sum::<usize>(), CONNECTIONS, "{counts:?}");
    for &n in &counts {
        assert!(
            (CONNECTIONS * 20 / 100..=CONNECTIONS * 46 / 100).contains(&n),
            "{counts:?}"
        );
    }

    fleet.kill9(0)?;
    let withdrawn = fleet.wait_for_next_hops(&[1, 2], Duration::from_secs(10))?;
    let failed = echo_all(&mut held, 2);
    let after = fleet.spread(&held, &[1, 2])?;
    let covered: HashSet<u16> = after[0].union(&after[1]).copied().collect();
    // Survivors' connections that moved to the other survivor.
    let between =
        after[1].intersection(&before[1]).count() + after[0].intersection(&before[2]).count();
    eprintln!(
        "{multipath:?}: d1's lvsd killed: withdrawn after {withdrawn:?}; d2 and d3 now hold {} \
         and {} ({} of the connections; {between} of the {} on d2 and d3 moved between them), \
         {} broken",
        after[0].len(),
        after[1].len(),
        covered.len(),
        before[1].len() + before[2].len(),
        failed.len()
    );
    match multipath {
        Multipath::Resilient => assert_eq!(between, 0),
        Multipath::HashThreshold => assert!(between > 0),
    }
    assert!(failed.is_empty(), "{failed:?}\n{}", fleet.status());
    // d1's connections moved: the two left carry them all.
    assert_eq!(covered.len(), CONNECTIONS);

    // d1 back (its datapath, left attached by the killed lvsd, taken over).
    fleet.start_lvsd(0)?;
    let back = fleet.wait_for_next_hops(&[0, 1, 2], Duration::from_secs(30))?;
    let failed = echo_all(&mut held, 3);
    let on_d1 = fleet.spread(&held, &[0])?[0].len();
    eprintln!(
        "d1 back: announced after {back:?}, carries {on_d1} connections again, {} broken",
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}\n{}", fleet.status());
    // Hash-threshold gives d1 its range back, and its flows with it; a
    // resilient group gives a returning next hop only buckets that went
    // idle, so the held connections stay where they are.
    if multipath == Multipath::HashThreshold {
        assert!(on_d1 > 0);
    }
    Ok(())
}

/// A director's lvsd stopped cleanly (it withdraws, then forwards while the
/// router converges), then another director frozen whole (BFD notices it),
/// then both back: not one of 1,000 connections breaks, and the returning
/// directors take flows again.
#[test]
#[ignore = "needs root and bird2; run by `cargo xtask test`"]
fn stopped_frozen_and_returning_directors_break_no_connection_hash_threshold() -> Result<()> {
    stopped_frozen_and_back("fls", Multipath::HashThreshold)
}

/// As above, with a resilient nexthop group.
#[test]
#[ignore = "needs root and bird2; run by `cargo xtask test`"]
fn stopped_frozen_and_returning_directors_break_no_connection_resilient() -> Result<()> {
    stopped_frozen_and_back("flt", Multipath::Resilient)
}

fn stopped_frozen_and_back(tag: &str, multipath: Multipath) -> Result<()> {
    let mut fleet = running(tag, multipath)?;
    let mut held = fleet.open(CONNECTIONS, ECHO_TIMEOUT)?;
    let mut round = 0;
    let mut check = |fleet: &Fleet, held: &mut [Held], what: &str| {
        round += 1;
        let failed = echo_all(held, round);
        assert!(failed.is_empty(), "{what}: {failed:?}\n{}", fleet.status());
    };
    check(&fleet, &mut held, "before");

    let (withdrawn, stopped) = fleet.stop_lvsd(0)?;
    fleet.wait_for_next_hops(&[1, 2], Duration::from_secs(10))?;
    check(&fleet, &mut held, "d1 stopped");

    fleet.freeze(1, true)?;
    let frozen = fleet.wait_for_next_hops(&[2], Duration::from_secs(10))?;
    check(&fleet, &mut held, "d2 frozen");
    let on_d3 = fleet.spread(&held, &[2])?[0].len();
    assert_eq!(on_d3, CONNECTIONS);

    fleet.freeze(1, false)?;
    fleet.start_lvsd(0)?;
    let back = fleet.wait_for_next_hops(&[0, 1, 2], Duration::from_secs(30))?;
    let packets =
        |fleet: &Fleet| -> Result<Vec<u64>> { (0..2).map(|d| fleet.in_packets(d)).collect() };
    let before = packets(&fleet)?;
    check(&fleet, &mut held, "d1 and d2 back");
    let forwarded: Vec<u64> = packets(&fleet)?
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    let after = fleet.spread(&held, &[0, 1, 2])?;
    eprintln!(
        "{multipath:?}: d1's lvsd stopped: its route withdrawn {withdrawn:?} after SIGTERM, lvsd gone after \
         {stopped:?} (drain included); d2 frozen: withdrawn after {frozen:?} (BFD); both back \
         after {back:?}, d1 and d2 hold {} and {} connections and forwarded {forwarded:?} packets \
         of one echo round; none broken",
        after[0].len(),
        after[1].len()
    );
    // Hash-threshold gives both their ranges back; a resilient group gives
    // a returning next hop only buckets that went idle.
    if multipath == Multipath::HashThreshold {
        assert!(forwarded.iter().all(|&n| n > 0), "{forwarded:?}");
    }
    Ok(())
}

/// The control: the same fleet without `--sloppy-tcp`, as a director
/// runs by default. When a director is killed, every connection the
/// router moves to another director breaks there (the kernel, which holds
/// the VIP, resets it); only those that stay on their director live.
#[test]
#[ignore = "needs root and bird2; run by `cargo xtask test`"]
fn without_sloppy_tcp_every_moved_connection_breaks() -> Result<()> {
    let mut fleet = Fleet::new("flc", 3, 3, Multipath::HashThreshold)?;
    fleet.sloppy = false;
    fleet.start_servers()?;
    fleet.start_lvsds()?;
    fleet.start_birds()?;
    fleet.wait_for_next_hops(&[0, 1, 2], Duration::from_secs(30))?;
    let mut held = fleet.open(CONNECTIONS, ECHO_TIMEOUT)?;
    assert!(echo_all(&mut held, 1).is_empty());
    let before = fleet.spread(&held, &[0, 1, 2])?;
    fleet.kill9(0)?;
    fleet.wait_for_next_hops(&[1, 2], Duration::from_secs(10))?;
    let failed: HashSet<u16> = echo_all(&mut held, 2)
        .into_iter()
        .map(|(i, _)| held[i].local_port())
        .collect::<Result<_>>()?;
    // Every connection of d1 moved, and broke; so did those moved between
    // d2 and d3 (about a quarter of theirs, by hash-threshold).
    assert!(before[0].is_subset(&failed), "a connection of d1 lived on");
    let between = failed.len() - before[0].len();
    eprintln!(
        "without sloppy TCP: d1 killed, {} of {CONNECTIONS} connections broke: d1's {} and {between} \
         moved between d2 and d3",
        failed.len(),
        before[0].len()
    );
    assert!(between > 0);
    Ok(())
}

/// keepalived's quorum over three servers of weight 2 (quorum 4,
/// hysteresis 1): one server down leaves it; two down withdraw the VIP
/// from every director within a check interval (and BGP's update); one
/// back does not announce it again (below quorum + hysteresis), both do.
#[test]
#[ignore = "needs root and bird2; run by `cargo xtask test`"]
fn losing_the_quorum_withdraws_the_vip_and_the_hysteresis_holds_it() -> Result<()> {
    let mut fleet = Fleet::new("flq", 3, 3, Multipath::HashThreshold)?;
    fleet.configure(
        "quorum = 4\nhysteresis = 1\n",
        // fall = 1: down at the first failure (keepalived's retry 0).
        "weight = 2\n[[service.real.check]]\ntype = \"tcp\"\ninterval = 0.5\ntimeout = 0.3\nfall = 1\n",
    )?;
    fleet.start_servers()?;
    fleet.start_lvsds()?;
    fleet.start_birds()?;
    let all = [0, 1, 2];
    fleet.wait_for_next_hops(&all, Duration::from_secs(30))?;
    let steady = |fleet: &Fleet, want: &[usize], what: &str| -> Result<()> {
        // Six check intervals: long enough for a wrong move to show.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut want: Vec<_> = want.iter().map(|&d| fleet.directors[d].addr).collect();
        want.sort();
        while Instant::now() < deadline {
            let hops = fleet.next_hops()?;
            assert_eq!(hops, want, "{what}\n{}", fleet.status());
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    };

    fleet.serve(0, false)?;
    steady(&fleet, &all, "one server down (live 4 of quorum 4)")?;
    let t = Instant::now();
    fleet.serve(1, false)?;
    fleet.wait_for_next_hops(&[], Duration::from_secs(5))?;
    let lost = t.elapsed();
    fleet.serve(1, true)?;
    steady(&fleet, &[], "one server back (live 4, below 4 + 1)")?;
    let t = Instant::now();
    fleet.serve(0, true)?;
    fleet.wait_for_next_hops(&all, Duration::from_secs(5))?;
    let regained = t.elapsed();
    eprintln!(
        "quorum lost: the VIP withdrawn from every director {lost:?} after the second server \
         stopped (check interval 500 ms); held withdrawn with one server back; announced \
         {regained:?} after the second returned"
    );
    // One interval, and a margin for BIRD and the router.
    assert!(lost < Duration::from_millis(500 + 300), "{lost:?}");
    Ok(())
}
