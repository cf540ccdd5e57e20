//! Fast failover's key: obtained through the backend's key source (or the
//! pre-shared key file) before this node sends or trusts any heartbeat.
//!
//! A task asks the [`HeartbeatKeySource`] for the key and the cluster
//! identity, again with a bounded back-off while the answer is transient
//! (the Lease does not exist yet, the API server is away). Its answer
//! reaches the loop once: with it, the election scope is derived
//! ([`election_scope`]: cluster, lock, VIPs), the channel subscribed with
//! the key, the sender started, and fast failover switched on. A permanent
//! refusal (a missing permission, a malformed key) is one log line, and
//! fast failover stays off: the lease's expiry still fails over.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::sleep;

use super::heartbeat::AbortOnDrop;
use super::run::Run;
use super::{ControllerEvent, Failure, Role};
use crate::heartbeat_auth::{HeartbeatAuth, HeartbeatKeyError, HeartbeatKeySource};
use crate::heartbeat_scope::election_scope;
use crate::model::VipAddress;

/// The longest wait between two asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// The next wait after `wait`: doubled, at most [`MAX_WAIT`].
pub(super) fn next_wait(wait: Duration) -> Duration {
    (wait * 2).min(MAX_WAIT)
}

/// Ask `keys` until it answers for good (each ask bounded by `timeout`,
/// the first wait `retry`); the answer goes to the returned receiver.
pub(super) fn spawn_key_fetch(
    keys: Arc<dyn HeartbeatKeySource>,
    retry: Duration,
    timeout: Duration,
) -> (
    oneshot::Receiver<Result<HeartbeatAuth, HeartbeatKeyError>>,
    AbortOnDrop,
) {
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut wait = retry;
        let mut told = false;
        loop {
            let answer = match tokio::time::timeout(timeout, keys.heartbeat_auth()).await {
                Ok(a) => a,
                Err(_) => Err(HeartbeatKeyError::Unavailable {
                    what: "the heartbeat key".into(),
                    detail: format!("no answer within {timeout:?}"),
                }),
            };
            match answer {
                Err(e) if e.is_transient() => {
                    if !told {
                        tracing::info!(error = %e, "fast failover waits for the heartbeat key");
                        told = true;
                    }
                    sleep(wait).await;
                    wait = next_wait(wait);
                }
                answer => {
                    let _ = tx.send(answer);
                    return;
                }
            }
        }
    });
    (rx, AbortOnDrop(task))
}

impl Run {
    /// The key source answered: switch fast failover on, or say in one
    /// line why it stays off.
    pub(super) async fn on_auth(&mut self, answer: Result<HeartbeatAuth, HeartbeatKeyError>) {
        let auth = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("{e}");
                return;
            }
        };
        let vips: Vec<IpAddr> = self.vips.list.iter().map(VipAddress::addr).collect();
        let election = match election_scope(&auth.cluster, &self.config.lock, &vips) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("fast failover off: {e}; failover by lease expiry still works");
                return;
            }
        };
        let (Some(iface), Some(channel)) =
            (self.vips.interface.clone(), self.inputs.heartbeats.clone())
        else {
            return;
        };
        match channel
            .subscribe(&iface, &auth.key, election, self.inputs.drops.clone())
            .await
        {
            Ok(rx) => self.inputs.beats = Some(rx),
            Err(e) => {
                self.emit(ControllerEvent::Error {
                    error: Failure::new("fast failover off: listening for heartbeats", e),
                });
                return;
            }
        }
        tracing::info!(
            election = %election,
            key_id = format_args!("{:08x}", auth.key.id()),
            "fast failover on: authenticated heartbeats"
        );
        self.beacon
            .start(channel, iface, auth.key, self.report.observer.clone());
        self.fast.authenticated(election);
        if self.lease.role == Role::Leader {
            self.start_heartbeats();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat_auth_mem::MemoryKeys;

    #[test]
    fn waits_double_up_to_the_bound() {
        let mut w = Duration::from_millis(500);
        let mut seen = vec![];
        for _ in 0..8 {
            seen.push(w);
            w = next_wait(w);
        }
        assert_eq!(seen[1], Duration::from_secs(1));
        assert_eq!(*seen.last().unwrap(), MAX_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn the_key_is_asked_for_until_it_can_be_had() {
        let keys = MemoryKeys::new("");
        let (rx, _task) = spawn_key_fetch(
            Arc::new(keys.clone()),
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        keys.set_cluster("uid-1");
        let auth = rx.await.unwrap().unwrap();
        assert_eq!(auth.cluster, "uid-1");
        assert_eq!(keys.created(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_final() {
        let keys = MemoryKeys::new("uid");
        keys.forbid_key(true);
        let (rx, _task) = spawn_key_fetch(
            Arc::new(keys),
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let e = rx.await.unwrap().unwrap_err();
        assert!(!e.is_transient());
    }
}
