//! Runs the configured checkers and agents as tokio tasks, one per checker,
//! and reports their transitions to the controller. `reconcile` starts the
//! tasks a new configuration asks for and stops those it no longer has.
//!
//! A checker's attempts never overlap, and are paced as keepalived paces
//! them (check_*.c's epilogues): the next attempt comes `interval` after
//! the previous one ended, or `retry_interval` after a failure that did
//! not take the checker down yet. HTTP_GET waits the longer of the two
//! while down; SMTP_CHECK retries in every round, up or down; MISC_CHECK
//! counts from the start of the previous run. A file check has no
//! attempts: its file is read whenever it changes.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    path::Path,
    time::Duration,
};

use tokio::{
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};

use super::{
    agent,
    condition::Shift,
    file::{self, Watch},
    probe::{probe, Target},
    tally::Tally,
};
use lvs_state::{
    health::{AgentCheck, Check, CheckKind, FileCheck},
    model::{Endpoint, ServiceId, State},
};

use crate::eventloop::{Handle, Message};

/// What one task does: a checker (by its place in the server's list) or
/// the server's agent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Job {
    Check(usize, Check),
    Agent(AgentCheck),
}

/// A task is known by its server and its job: a checker that did not
/// change (the same check at the same place) keeps running, and the
/// controller keeps what it reported (`reset_condition`); a changed one is
/// a new task.
type Key = (ServiceId, Endpoint, Job);

pub struct Supervisor {
    controller: Handle,
    tasks: HashMap<Key, JoinHandle<()>>,
}

impl Supervisor {
    pub fn new(controller: Handle) -> Self {
        Self {
            controller,
            tasks: HashMap::new(),
        }
    }

    /// Start the tasks `state` configures and not running yet; stop the
    /// ones it no longer configures (a changed checker is a new one).
    pub fn reconcile(&mut self, state: &State) {
        let mut wanted = Vec::new();
        for svc in state.services() {
            for (server, health) in &svc.checks {
                for (index, check) in health.checks.iter().enumerate() {
                    wanted.push((svc.spec.id, *server, Job::Check(index, check.clone())));
                }
                if let Some(a) = &health.agent {
                    wanted.push((svc.spec.id, *server, Job::Agent(a.clone())));
                }
            }
        }
        self.tasks.retain(|key, task| {
            let keep = wanted.contains(key);
            if !keep {
                task.abort();
            }
            keep
        });
        for key in wanted {
            if self.tasks.contains_key(&key) {
                continue;
            }
            let (service, real, job) = key.clone();
            let target = Target { service, real };
            let controller = self.controller.clone();
            let task = match job {
                Job::Check(index, check) => {
                    tokio::spawn(run_check(controller, target, index, check))
                }
                Job::Agent(a) => tokio::spawn(run_agent(controller, target, a)),
            };
            self.tasks.insert(key, task);
        }
    }

    pub fn stop(&mut self) {
        for (_, task) in self.tasks.drain() {
            task.abort();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

/// A fixed offset within the interval for each task, so that a thousand
/// checkers configured at once do not probe in the same instant.
fn spread(target: &Target, salt: usize, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (target.service, target.real, salt).hash(&mut h);
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

fn ticker(interval: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(interval);
    // A slow agent delays the next query; it never triggers a burst.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

/// Hand a transition to the controller; its owner applies it in turn.
async fn report(controller: &Handle, change: Message) {
    if !controller.send(change).await {
        tracing::debug!("health change after the controller stopped");
    }
}

/// How long after an attempt the next one comes, given whether it
/// succeeded, whether the checker is up after it, and how many attempts
/// in a row have failed.
fn next_delay(check: &Check, success: bool, up: bool, failures: u32) -> Duration {
    let interval = check.interval_ms;
    let retry = check.retry_interval_ms();
    let ms = match &check.kind {
        _ if success => interval,
        // A round of 1 + retry attempts, whatever the state.
        CheckKind::Smtp { .. } if !failures.is_multiple_of(check.fall) => retry,
        CheckKind::Smtp { .. } => interval,
        CheckKind::Http(_) if !up => retry.max(interval),
        _ if up => retry,
        _ => interval,
    };
    Duration::from_millis(ms)
}

async fn run_check(controller: Handle, target: Target, index: usize, check: Check) {
    if let CheckKind::File(spec) = &check.kind {
        return watch_file(controller, target, index, &check, spec).await;
    }
    let interval = Duration::from_millis(check.interval_ms);
    tokio::time::sleep(spread(&target, index, interval)).await;
    let mut tally = match check.kind {
        CheckKind::Smtp { .. } => Tally::retrying_from_start(check.start),
        _ => Tally::new(check.start),
    };
    let (service, server) = (target.service, target.real);
    let kind = check.kind.name();
    // What the controller was last told this checker adds to the weight.
    let mut shift = None;
    let mut failures = 0;
    loop {
        let started = Instant::now();
        let result = probe(&check, &target).await;
        let changed = tally.record(result.is_ok(), check.rise, check.fall);
        failures = if result.is_ok() { 0 } else { failures + 1 };
        let delay = next_delay(&check, result.is_ok(), tally.is_up(), failures);
        // A program's round is counted from its start.
        let next = match check.kind {
            CheckKind::Exec { .. } => started + delay,
            _ => Instant::now() + delay,
        };
        // An up checker keeps what it adds while it retries.
        let new_shift = match (&result, tally.is_up()) {
            (Ok(moved), true) => *moved,
            (Err(_), true) => shift,
            (_, false) => None,
        };
        if changed.is_some() || new_shift != shift {
            // Only a failure takes a checker down.
            let failure = match result {
                Err(e) if !tally.is_up() => Some(e.to_string()),
                _ => None,
            };
            match (&failure, changed) {
                (Some(why), _) => {
                    tracing::warn!(%service, %server, check = index + 1, kind, fall = check.fall, "check down, out of scheduling: {why}")
                }
                (None, Some(_)) => {
                    tracing::info!(%service, %server, check = index + 1, kind, rise = check.rise, ?new_shift, "check up: back in scheduling once every check is up")
                }
                (None, None) => {
                    tracing::info!(%service, %server, check = index + 1, kind, ?new_shift, "check moves the weight")
                }
            }
            report(
                &controller,
                Message::Check {
                    service,
                    server,
                    index,
                    fingerprint: check.fingerprint(),
                    failure,
                    shift: new_shift,
                },
            )
            .await;
            shift = new_shift;
        }
        tokio::time::sleep_until(next).await;
    }
}

/// A file check: read the file now and whenever it changes, and report
/// each new verdict. While its directory cannot be watched, the check is
/// down and tries again every `interval`.
async fn watch_file(
    controller: Handle,
    target: Target,
    index: usize,
    check: &Check,
    spec: &FileCheck,
) {
    let (service, server) = (target.service, target.real);
    let path = Path::new(&spec.path);
    let mut last = None;
    // keepalived's last_status starts at 0.
    let mut value = 0;
    loop {
        let verdict = match Watch::new(path) {
            Ok(mut watch) => loop {
                match file::read_value(path) {
                    Some(read) => value = read,
                    None => {
                        tracing::warn!(%service, %server, check = index + 1, "{}: a number out of range -2147483648..=2147483648 is ignored", spec.path)
                    }
                }
                let verdict = file::verdict(value, spec);
                send_verdict(
                    &controller,
                    &target,
                    (index, check.fingerprint()),
                    &mut last,
                    verdict,
                )
                .await;
                if let Err(e) = watch.changed().await {
                    break Err(format!("watching {}: {e}", spec.path));
                }
            },
            Err(e) => Err(format!("watching {}: {e}", spec.path)),
        };
        send_verdict(
            &controller,
            &target,
            (index, check.fingerprint()),
            &mut last,
            verdict,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(check.interval_ms)).await;
    }
}

/// Report `verdict` if it differs from the `last` one reported.
async fn send_verdict(
    controller: &Handle,
    target: &Target,
    (index, fingerprint): (usize, u64),
    last: &mut Option<Result<Option<Shift>, String>>,
    verdict: Result<Option<Shift>, String>,
) {
    if last.as_ref() == Some(&verdict) {
        return;
    }
    *last = Some(verdict.clone());
    let (service, server) = (target.service, target.real);
    match &verdict {
        Ok(shift) => {
            tracing::info!(%service, %server, check = index + 1, kind = "file", ?shift, "check up")
        }
        Err(why) => {
            tracing::warn!(%service, %server, check = index + 1, kind = "file", "check down, out of scheduling: {why}")
        }
    }
    let (failure, shift) = match verdict {
        Ok(shift) => (None, shift),
        Err(why) => (Some(why), None),
    };
    report(
        controller,
        Message::Check {
            service,
            server,
            index,
            fingerprint,
            failure,
            shift,
        },
    )
    .await;
}

async fn run_agent(controller: Handle, target: Target, spec: AgentCheck) {
    let interval = Duration::from_millis(spec.interval_ms);
    tokio::time::sleep(spread(&target, usize::MAX, interval)).await;
    let mut tick = ticker(interval);
    let mut last = None;
    let mut failing = false;
    let (service, server) = (target.service, target.real);
    loop {
        tick.tick().await;
        match agent::query(&spec, server).await {
            Ok(reply) => {
                failing = false;
                let percent = reply
                    .percent
                    .map(|p| p.clamp(spec.min_percent, spec.max_percent));
                let seen = (percent, reply.state);
                if last == Some(seen) {
                    continue;
                }
                last = Some(seen);
                tracing::info!(%service, %server, ?percent, state = ?reply.state, "agent report");
                let state = reply.state;
                report(
                    &controller,
                    Message::Agent {
                        service,
                        server,
                        percent,
                        state,
                    },
                )
                .await;
            }
            // As in HAProxy, an agent that cannot be reached changes
            // nothing: reachability is the checkers' business.
            Err(e) => {
                if !failing {
                    tracing::warn!(%service, %server, "agent: {e}; keeping the last weight");
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::{
        net::TcpListener,
        sync::mpsc,
        time::{timeout, Instant},
    };

    use super::*;
    use crate::health::probe::tests::target;
    use lvs_state::health::{HttpCheck, StartState};

    fn timed(kind: CheckKind) -> Check {
        Check {
            interval_ms: 10_000,
            retry_interval_ms: Some(1_000),
            fall: 3,
            ..Check::new(kind)
        }
    }

    /// keepalived's epilogues: a failure of an up checker is retried after
    /// delay_before_retry; a down checker waits delay_loop (HTTP_GET the
    /// longer of the two); SMTP_CHECK retries in every round.
    #[test]
    fn the_next_attempt_comes_as_keepalived_schedules_it() {
        let s = Duration::from_secs;
        let tcp = timed(CheckKind::Tcp);
        assert_eq!(next_delay(&tcp, true, true, 0), s(10));
        assert_eq!(next_delay(&tcp, false, true, 1), s(1));
        assert_eq!(next_delay(&tcp, false, false, 3), s(10));
        let mut http = timed(CheckKind::Http(HttpCheck::new("/")));
        assert_eq!(next_delay(&http, false, true, 1), s(1));
        http.retry_interval_ms = Some(30_000);
        assert_eq!(next_delay(&http, false, false, 3), s(30));
        let smtp = timed(CheckKind::Smtp { helo: "lb".into() });
        let down: Vec<Duration> = (1..=6)
            .map(|n| next_delay(&smtp, false, false, n))
            .collect();
        assert_eq!(down, [s(1), s(1), s(10), s(1), s(1), s(10)]);
    }

    /// The Check messages a task sends: (failure, shift).
    async fn next_report(
        inbox: &mut mpsc::Receiver<Message>,
        within: Duration,
    ) -> (Option<String>, Option<Shift>) {
        match timeout(within, inbox.recv()).await {
            Ok(Some(Message::Check { failure, shift, .. })) => (failure, shift),
            Ok(_) => panic!("not a check report"),
            Err(_) => panic!("no report within {within:?}"),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failure_of_an_up_checker_is_retried_after_retry_interval() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let check = Check {
            interval_ms: 1_000,
            retry_interval_ms: Some(50),
            timeout_ms: 500,
            fall: 3,
            start: StartState::Down,
            ..Check::new(CheckKind::Tcp)
        };
        let (controller, mut inbox) = Handle::for_test();
        let task = tokio::spawn(run_check(controller, target(port), 0, check));
        assert_eq!(
            next_report(&mut inbox, Duration::from_secs(3)).await,
            (None, None)
        );
        drop(listener);
        let closed = Instant::now();
        let (failure, shift) = next_report(&mut inbox, Duration::from_secs(3)).await;
        assert!(failure
            .unwrap()
            .starts_with(&format!("connect to 127.0.0.1:{port}: ")));
        assert_eq!(shift, None);
        // At most an interval to the first failure, then two retries 50 ms
        // apart; three intervals without retry_interval.
        let took = closed.elapsed();
        assert!(took < Duration::from_millis(1_800), "{took:?}");
        task.abort();
    }

    /// A reload that adds a checker to a server keeps its unchanged
    /// checker's task (and so what it knows), and another server's.
    #[tokio::test(flavor = "current_thread")]
    async fn an_unchanged_checker_keeps_its_task() {
        let state = |first: &str, extra: &str| {
            let text = format!(
                "[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.10:80\"\n\
                 [[service.real]]\naddress = \"198.18.11.2\"\n\
                 [[service.real.check]]\ntype = \"tcp\"\n{first}\n{extra}\n\
                 [[service.real]]\naddress = \"198.18.11.3\"\n\
                 [[service.real.check]]\ntype = \"tcp\"\n"
            );
            let mut state = State::default();
            state
                .apply_all(&lvs_state::config::parse(&text, "lvs.toml").unwrap())
                .unwrap();
            state
        };
        let (controller, _inbox) = Handle::for_test();
        let mut supervisor = Supervisor::new(controller);
        let first_check = |s: &Supervisor, last: u8| {
            let tasks = s.tasks.iter().filter(|((_, server, job), _)| {
                server.addr == Ipv4Addr::new(198, 18, 11, last) && matches!(job, Job::Check(0, _))
            });
            let ids: Vec<tokio::task::Id> = tasks.map(|(_, task)| task.id()).collect();
            assert_eq!(ids.len(), 1);
            ids[0]
        };
        supervisor.reconcile(&state("", ""));
        let (same, other) = (first_check(&supervisor, 2), first_check(&supervisor, 3));
        supervisor.reconcile(&state("", "[[service.real.check]]\ntype = \"ping\""));
        assert_eq!(supervisor.tasks.len(), 3);
        assert_eq!(first_check(&supervisor, 2), same);
        assert_eq!(first_check(&supervisor, 3), other);
        // A changed checker is a new task.
        supervisor.reconcile(&state("interval = 2", ""));
        assert_eq!(supervisor.tasks.len(), 2);
        assert_ne!(first_check(&supervisor, 2), same);
        assert_eq!(first_check(&supervisor, 3), other);
        supervisor.stop();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_file_check_reports_each_new_verdict() {
        let dir = std::env::temp_dir().join(format!("lvs-supervised-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("weight");
        std::fs::write(&path, "2\n").unwrap();
        let check = Check::new(CheckKind::File(FileCheck {
            path: path.display().to_string(),
            weight: 10,
            reverse: false,
        }));
        let (controller, mut inbox) = Handle::for_test();
        let task = tokio::spawn(run_check(controller, target(80), 1, check));
        let soon = Duration::from_secs(5);
        assert_eq!(
            next_report(&mut inbox, soon).await,
            (None, Some(Shift::Add(20)))
        );
        std::fs::write(&path, "-1\n").unwrap();
        assert_eq!(
            next_report(&mut inbox, soon).await,
            (None, Some(Shift::Add(-10)))
        );
        // Past the lowest int: keepalived's FAULT, down.
        std::fs::write(&path, "-300000000\n").unwrap();
        let (failure, shift) = next_report(&mut inbox, soon).await;
        assert!(failure.unwrap().contains("keepalived's FAULT"));
        assert_eq!(shift, None);
        // A file that is gone reads as 0.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            next_report(&mut inbox, soon).await,
            (None, Some(Shift::Add(0)))
        );
        task.abort();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
