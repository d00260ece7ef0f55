//! Runs the configured checkers and agents as tokio tasks, one per checker,
//! and reports their transitions to the controller. `reconcile` starts the
//! tasks a new configuration asks for and stops those it no longer has.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    time::Duration,
};

use tokio::{task::JoinHandle, time::MissedTickBehavior};

use super::{
    agent,
    probe::{probe, Target},
    tally::Tally,
};
use lvs_state::{
    health::{AgentCheck, Check, CheckKind},
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
    // A slow probe delays the next one; it never triggers a burst.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

fn kind_name(kind: &CheckKind) -> &'static str {
    match kind {
        CheckKind::Tcp => "tcp",
        CheckKind::SendExpect { .. } => "send_expect",
        CheckKind::Http(_) => "http",
        CheckKind::Exec { .. } => "exec",
    }
}

/// Hand a transition to the controller; its owner applies it in turn.
async fn report(controller: &Handle, change: Message) {
    if !controller.send(change).await {
        tracing::debug!("health change after the controller stopped");
    }
}

async fn run_check(controller: Handle, target: Target, index: usize, check: Check) {
    let interval = Duration::from_millis(check.interval_ms);
    tokio::time::sleep(spread(&target, index, interval)).await;
    let mut tally = Tally::new(check.start);
    let mut tick = ticker(interval);
    loop {
        tick.tick().await;
        let result = probe(&check, &target).await;
        let Some(up) = tally.record(result.is_ok(), check.rise, check.fall) else {
            continue;
        };
        let failure = result.err().map(|e| e.to_string());
        let (service, server) = (target.service, target.real);
        let kind = kind_name(&check.kind);
        match &failure {
            None => {
                tracing::info!(%service, %server, check = index + 1, kind, rise = check.rise, "check up: back in scheduling once every check is up")
            }
            Some(why) => {
                tracing::warn!(%service, %server, check = index + 1, kind, fall = check.fall, "check down, out of scheduling: {why}")
            }
        }
        debug_assert_eq!(up, failure.is_none());
        report(
            &controller,
            Message::Check {
                service,
                server,
                index,
                failure,
            },
        )
        .await;
    }
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
