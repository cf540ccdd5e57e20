//! One way to follow objects: kube-rs's [`watcher`] (list, then watch from
//! the list's resourceVersion, resuming where a watch ended, re-listing
//! after `410 Gone`), with a bounded back-off and a guard against a silent
//! (black-holed) connection. The Lease watch and the cordon watch both run
//! on it; each turns the watcher's events into what it publishes.

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use vip_core::WatchBackoff;

/// kube's watcher [`Backoff`] over [`WatchBackoff`]: 100 ms doubling to
/// 2 s, reset by the next event.
struct Bounded(WatchBackoff);

impl Iterator for Bounded {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.0.next_wait())
    }
}

impl Backoff for Bounded {
    fn reset(&mut self) {
        self.0.reset();
    }
}

/// Runs kube's watcher over what `config` selects and hands each event or
/// error to `on`, until `tx` has no receiver left. A watch silent for
/// longer than `idle` (the server's timeout plus a margin: a black-holed
/// connection) starts over with a new list; errors back off (bounded) and
/// are retried by the watcher.
pub(crate) async fn follow<K, T>(
    api: Api<K>,
    config: watcher::Config,
    idle: Duration,
    tx: &watch::Sender<T>,
    mut on: impl FnMut(Result<Event<K>, watcher::Error>),
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    loop {
        let mut events = watcher(api.clone(), config.clone())
            .backoff(Bounded(WatchBackoff::default()))
            .boxed();
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                n = tokio::time::timeout(idle, events.next()) => n,
            };
            match next {
                Ok(Some(r)) => on(r),
                Err(_) | Ok(None) => break,
            }
        }
    }
}

/// The one-line refusal (HTTP 401 or 403) behind a watcher error, if it is
/// one: a refusal (RBAC) does not heal by itself and deserves a warning.
pub(crate) fn refusal(e: &watcher::Error) -> Option<String> {
    let inner = match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => e,
        _ => return None,
    };
    match inner {
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => {
            Some(crate::access::error_line(inner))
        }
        _ => None,
    }
}

/// Warns once per distinct refusal: `Some(line)` to log when `error` is a
/// refusal not warned of since the last success (`refused` keeps the last
/// one; an event clears it).
pub(crate) fn new_refusal(refused: &mut Option<String>, error: &watcher::Error) -> Option<String> {
    let line = refusal(error)?;
    if refused.as_deref() == Some(line.as_str()) {
        return None;
    }
    *refused = Some(line.clone());
    Some(line)
}
