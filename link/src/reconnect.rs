//! Keeping one bind alive: [`run_with_reconnect`] binds, hands each session to its owner,
//! and binds again after a failure, with a back-off that only resets once a link has
//! proved stable.
//!
//! # The back-off rule
//! * Every failed connect or bind, and every session that ends sooner than
//!   [`Backoff::stable_after`] after its bind (a *flap*), counts one attempt.
//! * Before the next bind the loop waits `initial × 2^(attempts − 1)`, capped at `max`,
//!   with *equal jitter*: a uniformly random pause between half that and all of it, so
//!   many binds that dropped together do not come back in step.
//! * A session that stays up for `stable_after` resets the count (while it is still up),
//!   so the next drop waits only `initial` again.
//!
//! An SMSC that accepts each bind and drops the link 100 ms later therefore sees binds
//! about 0.5, 1, 2, 4, 8, 16, 30, 30… s apart with the defaults, not one every 0.6 s.
//!
//! The state of the loop is published in a [`LinkStatus`] (through a
//! [`tokio::sync::watch`] channel) and logged at every change, so an operator can see
//! which binds are up, how many attempts a flapping link has made and when it tries next.

use std::future::Future;
use std::ops::ControlFlow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::time::sleep;
use tracing::{info, warn};

use crate::dice::Dice;
use crate::session::{Connect, Inbound};

/// Reconnect back-off for [`run_with_reconnect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First pause.
    pub initial: Duration,
    /// Largest pause.
    pub max: Duration,
    /// How long a session must stay up before the attempt count resets.
    pub stable_after: Duration,
}

impl Default for Backoff {
    /// 500 ms doubling to 30 s; a link is stable after 10 s up.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The pause before bind attempt number `attempts + 1` (`attempts` ≥ 1), before
    /// jitter: `initial × 2^(attempts − 1)`, at most `max`.
    pub fn ceiling(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The jittered pause: uniformly in `[ceiling / 2, ceiling]`.
    fn pause(&self, attempts: u32, dice: &mut Dice) -> Duration {
        let ceiling = self.ceiling(attempts);
        ceiling / 2 + ceiling.mul_f64(dice.next() / 2.0)
    }
}

/// Where a bind's reconnect loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Connecting and binding.
    Connecting,
    /// Bound: the session is running.
    Bound,
    /// Waiting before the next attempt.
    BackingOff,
    /// The owner ended the loop.
    Stopped,
}

impl LinkState {
    /// `connecting`, `bound`, `backing-off`, `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Bound => "bound",
            Self::BackingOff => "backing-off",
            Self::Stopped => "stopped",
        }
    }
}

/// The published state of one reconnect loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    /// Where the loop is.
    pub state: LinkState,
    /// Failed binds and flaps since the link was last stable (0 once it is).
    pub attempts: u32,
    /// Successful binds since the loop started.
    pub binds: u64,
    /// When the current session was bound (Unix ms), while bound.
    pub bound_since_ms: Option<i64>,
    /// When the next attempt is due (Unix ms), while backing off.
    pub next_attempt_ms: Option<i64>,
    /// Why the last attempt or session ended.
    pub last_error: Option<String>,
}

impl Default for LinkStatus {
    fn default() -> Self {
        Self {
            state: LinkState::Connecting,
            attempts: 0,
            binds: 0,
            bound_since_ms: None,
            next_attempt_ms: None,
            last_error: None,
        }
    }
}

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Keeps one bind alive, for any protocol's [`Connect`]: connects, hands each bound
/// session to `session` and awaits it;
/// when it returns `Continue` (typically after [`Inbound::Closed`]), or when connecting
/// fails, waits by the back-off rule of this module and binds again. Returns when
/// `session` returns `Break`, or when `stop` resolves while no session runs (a running
/// session is the owner's to end). `status` receives every change of state.
pub async fn run_with_reconnect<C, F, Fut>(
    config: C,
    backoff: Backoff,
    status: watch::Sender<LinkStatus>,
    stop: impl Future<Output = ()>,
    mut session: F,
) where
    C: Connect,
    F: FnMut(C::Session, mpsc::Receiver<Inbound>) -> Fut,
    Fut: Future<Output = ControlFlow<()>>,
{
    tokio::pin!(stop);
    let stopped = |status: &watch::Sender<LinkStatus>| {
        status.send_modify(|s| {
            s.state = LinkState::Stopped;
            s.bound_since_ms = None;
            s.next_attempt_ms = None;
        });
    };
    let seed = unix_ms(SystemTime::now()).unsigned_abs()
        ^ config
            .address()
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
    let mut dice = Dice::new(seed);
    let mut attempts = 0u32;
    let address = config.address().to_string();
    let protocol = config.protocol();
    loop {
        status.send_modify(|s| {
            s.state = LinkState::Connecting;
            s.next_attempt_ms = None;
        });
        let connected = tokio::select! {
            connected = config.connect() => connected,
            () = &mut stop => {
                stopped(&status);
                return;
            }
        };
        match connected {
            Ok((client, inbound)) => {
                status.send_modify(|s| {
                    s.state = LinkState::Bound;
                    s.binds += 1;
                    s.bound_since_ms = Some(unix_ms(SystemTime::now()));
                });
                info!(%address, protocol, attempts, "bound");
                let run = session(client, inbound);
                tokio::pin!(run);
                let stable = sleep(backoff.stable_after);
                tokio::pin!(stable);
                let mut proved_stable = false;
                let flow = loop {
                    tokio::select! {
                        flow = &mut run => break flow,
                        () = &mut stable, if !proved_stable => {
                            proved_stable = true;
                            attempts = 0;
                            status.send_modify(|s| s.attempts = 0);
                            info!(%address, protocol, stable_after = ?backoff.stable_after, "link stable; reconnect back-off reset");
                        }
                    }
                };
                if flow.is_break() {
                    stopped(&status);
                    return;
                }
                status.send_modify(|s| {
                    s.bound_since_ms = None;
                    s.last_error = Some("link closed".into());
                });
                if !proved_stable {
                    attempts = attempts.saturating_add(1);
                    warn!(%address, protocol, attempts, "link dropped before it was stable (flapping)");
                }
            }
            Err(e) => {
                attempts = attempts.saturating_add(1);
                warn!(%address, protocol, attempts, error = %e, "bind failed");
                status.send_modify(|s| s.last_error = Some(e.to_string()));
            }
        }
        let pause = if attempts == 0 {
            backoff.pause(1, &mut dice)
        } else {
            backoff.pause(attempts, &mut dice)
        };
        let next = unix_ms(SystemTime::now() + pause);
        status.send_modify(|s| {
            s.state = LinkState::BackingOff;
            s.attempts = attempts;
            s.next_attempt_ms = Some(next);
        });
        info!(%address, protocol, attempts, pause_ms = pause.as_millis() as u64, "reconnecting after a pause");
        tokio::select! {
            () = sleep(pause) => {}
            () = &mut stop => {
                stopped(&status);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_to_the_cap_with_equal_jitter() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(1), Duration::from_millis(500));
        assert_eq!(b.ceiling(2), Duration::from_secs(1));
        assert_eq!(b.ceiling(7), Duration::from_secs(30));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(30));
        let mut dice = Dice::new(7);
        for attempts in 1..12 {
            let p = b.pause(attempts, &mut dice);
            let c = b.ceiling(attempts);
            assert!(p >= c / 2 && p <= c, "{attempts}: {p:?} of {c:?}");
        }
    }
}
