//! The endpoint state machine: pure, so every transition is unit-tested without sockets.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tandem_config::monitor::HealthPolicy;

/// An endpoint's health, as Traffic Manager names the states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// No probe has finished yet. Counts as healthy so that a restart does not empty answers.
    Checking,
    /// Probes succeed.
    Online,
    /// Probes (or passive reports) fail beyond what the policy tolerates.
    Degraded,
    /// Taken out by an operator; not probed.
    Disabled,
}

impl State {
    /// Whether traffic may go to an endpoint in this state.
    pub fn is_healthy(self) -> bool {
        matches!(self, State::Checking | State::Online)
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Checking => "checking",
            State::Online => "online",
            State::Degraded => "degraded",
            State::Disabled => "disabled",
        }
    }
}

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// When the probe finished (milliseconds since the Unix epoch).
    #[serde(serialize_with = "ser_time")]
    pub at: SystemTime,
    /// Whether it counted as a success.
    pub ok: bool,
    /// Time to the answer (HTTP status line or TCP connect).
    #[serde(serialize_with = "ser_ms")]
    pub latency: Duration,
    /// What happened: `HTTP 200`, `connect: connection refused`, `timeout after 200ms`.
    pub detail: String,
}

/// A snapshot of one target's health, published after every probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// Current state.
    pub state: State,
    /// When the state last changed.
    #[serde(serialize_with = "ser_time")]
    pub since: SystemTime,
    /// The last probe.
    pub last: Option<Outcome>,
    /// Mean latency of the recent successful probes.
    #[serde(serialize_with = "ser_opt_ms")]
    pub latency: Option<Duration>,
    /// Probes in a row that failed.
    pub consecutive_failures: u32,
    /// Probes in a row that succeeded.
    pub consecutive_successes: u32,
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    s.serialize_u64(ms)
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

fn ser_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0)),
        None => s.serialize_none(),
    }
}

const LATENCY_SAMPLES: usize = 8;

/// Applies probe results to a health policy.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    policy: HealthPolicy,
    state: State,
    since: SystemTime,
    window: VecDeque<bool>,
    latencies: VecDeque<Duration>,
    fails: u32,
    oks: u32,
    last: Option<Outcome>,
}

impl Machine {
    pub(crate) fn new(policy: HealthPolicy, now: SystemTime) -> Self {
        Machine {
            policy,
            state: State::Checking,
            since: now,
            window: VecDeque::new(),
            latencies: VecDeque::new(),
            fails: 0,
            oks: 0,
            last: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> State {
        self.state
    }

    fn set(&mut self, s: State, now: SystemTime) -> bool {
        if self.state == s {
            return false;
        }
        self.state = s;
        self.since = now;
        true
    }

    /// Apply one probe result; returns whether the state changed.
    pub(crate) fn observe(&mut self, outcome: Outcome) -> bool {
        let now = outcome.at;
        if outcome.ok {
            self.oks += 1;
            self.fails = 0;
            self.latencies.push_back(outcome.latency);
            if self.latencies.len() > LATENCY_SAMPLES {
                self.latencies.pop_front();
            }
        } else {
            self.fails += 1;
            self.oks = 0;
        }
        let ok = outcome.ok;
        self.last = Some(outcome);
        if self.state == State::Disabled {
            return false;
        }
        let next = match self.policy {
            HealthPolicy::Consecutive {
                tolerated_failures,
                recover_after,
            } => match self.state {
                State::Checking if ok => State::Online,
                State::Checking | State::Online if self.fails > tolerated_failures => {
                    State::Degraded
                }
                State::Degraded if self.oks >= recover_after => State::Online,
                s => s,
            },
            HealthPolicy::Window {
                sample_size,
                successes_required,
            } => {
                self.window.push_back(ok);
                if self.window.len() > sample_size as usize {
                    self.window.pop_front();
                }
                let good = self.window.iter().filter(|b| **b).count() as u32;
                let bad = self.window.len() as u32 - good;
                // Healthy while success is still reachable within the window: a fresh window
                // with one failure is not yet a verdict.
                if bad > sample_size - successes_required {
                    State::Degraded
                } else if good >= successes_required || self.state == State::Online {
                    State::Online
                } else if self.state == State::Degraded {
                    State::Degraded
                } else {
                    State::Checking
                }
            }
        };
        self.set(next, now)
    }

    /// A passive failure report (a failed request) reached the threshold.
    pub(crate) fn passive_down(&mut self, now: SystemTime) -> bool {
        if self.state == State::Disabled {
            return false;
        }
        self.oks = 0;
        self.window.clear();
        self.set(State::Degraded, now)
    }

    pub(crate) fn set_disabled(&mut self, disabled: bool, now: SystemTime) -> bool {
        match (disabled, self.state) {
            (true, _) => self.set(State::Disabled, now),
            (false, State::Disabled) => {
                self.fails = 0;
                self.oks = 0;
                self.window.clear();
                self.set(State::Checking, now)
            }
            _ => false,
        }
    }

    pub(crate) fn snapshot(&self) -> Health {
        let latency = if self.latencies.is_empty() {
            None
        } else {
            Some(self.latencies.iter().sum::<Duration>() / self.latencies.len() as u32)
        };
        Health {
            state: self.state,
            since: self.since,
            last: self.last.clone(),
            latency,
            consecutive_failures: self.fails,
            consecutive_successes: self.oks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(ok: bool) -> Outcome {
        Outcome {
            at: SystemTime::now(),
            ok,
            latency: Duration::from_millis(5),
            detail: String::new(),
        }
    }

    fn run(m: &mut Machine, results: &[bool]) -> Vec<State> {
        results
            .iter()
            .map(|r| {
                m.observe(o(*r));
                m.state()
            })
            .collect()
    }

    #[test]
    fn consecutive_policy_tolerates_then_degrades_then_recovers() {
        let mut m = Machine::new(
            HealthPolicy::Consecutive {
                tolerated_failures: 2,
                recover_after: 2,
            },
            SystemTime::now(),
        );
        use State::*;
        assert_eq!(
            run(&mut m, &[true, false, false, false, true, true, false]),
            [Online, Online, Online, Degraded, Degraded, Online, Online]
        );
    }

    #[test]
    fn checking_counts_as_healthy_until_failures_exceed_tolerance() {
        let mut m = Machine::new(
            HealthPolicy::Consecutive {
                tolerated_failures: 1,
                recover_after: 1,
            },
            SystemTime::now(),
        );
        assert!(m.state().is_healthy());
        assert_eq!(
            run(&mut m, &[false, false]),
            [State::Checking, State::Degraded]
        );
    }

    #[test]
    fn window_policy_like_front_door() {
        let mut m = Machine::new(
            HealthPolicy::Window {
                sample_size: 4,
                successes_required: 2,
            },
            SystemTime::now(),
        );
        use State::*;
        // Two good probes make it healthy; it stays healthy while at most 2 of the last 4 fail.
        assert_eq!(
            run(&mut m, &[true, true, false, false, false, true, true]),
            [Checking, Online, Online, Online, Degraded, Degraded, Online]
        );
    }

    #[test]
    fn disabled_ignores_probes_and_passive_reports() {
        let mut m = Machine::new(
            HealthPolicy::Consecutive {
                tolerated_failures: 0,
                recover_after: 1,
            },
            SystemTime::now(),
        );
        assert!(m.set_disabled(true, SystemTime::now()));
        run(&mut m, &[false, false, true]);
        assert!(!m.passive_down(SystemTime::now()));
        assert_eq!(m.state(), State::Disabled);
        assert!(m.set_disabled(false, SystemTime::now()));
        assert_eq!(m.state(), State::Checking);
    }

    #[test]
    fn latency_is_the_mean_of_recent_successes() {
        let mut m = Machine::new(
            HealthPolicy::Consecutive {
                tolerated_failures: 3,
                recover_after: 1,
            },
            SystemTime::now(),
        );
        for ms in [10, 20, 30] {
            m.observe(Outcome {
                at: SystemTime::now(),
                ok: true,
                latency: Duration::from_millis(ms),
                detail: String::new(),
            });
        }
        m.observe(o(false));
        assert_eq!(m.snapshot().latency, Some(Duration::from_millis(20)));
    }
}
