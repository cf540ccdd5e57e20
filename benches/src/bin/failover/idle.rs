//! The steady state: API requests, RSS and CPU of an idle leader and
//! follower.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vip_testkit::lab::{Lab, ProcStats};

use crate::trial::{HEARTBEAT_MS, Impl, settle};

pub struct Idle {
    pub seconds: f64,
    pub requests: u64,
    pub by_verb: BTreeMap<String, u64>,
    pub leader: (ProcStats, ProcStats),
    pub follower: (ProcStats, ProcStats),
}

pub async fn idle(lab: &Lab, window: Duration) -> Result<Idle, String> {
    let leader = settle(lab, Impl::Vip(HEARTBEAT_MS), Duration::from_secs(30)).await?;
    let follower = (0..lab.nodes.len())
        .find(|&i| i != leader)
        .ok_or("no follower")?;
    // Past any takeover burst and watch set-up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = |i: usize| lab.pid(i).ok_or("a manager is not running");
    let (lp, fp) = (pid(leader)?, pid(follower)?);
    let stats = |p: u32| ProcStats::read(p).ok_or("process gone");
    let before = lab.api().counters();
    let (l0, f0) = (stats(lp)?, stats(fp)?);
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let after = lab.api().counters();
    let (l1, f1) = (stats(lp)?, stats(fp)?);
    let seconds = t.elapsed().as_secs_f64();
    let mut by_verb = BTreeMap::new();
    let mut requests = 0;
    for (k, n) in &after.entries {
        let d = n - before.entries.get(k).copied().unwrap_or(0);
        requests += d;
        if d > 0 {
            *by_verb.entry(format!("{} {}", k.2, k.3)).or_default() += d;
        }
    }
    if settle(lab, Impl::Vip(HEARTBEAT_MS), Duration::from_secs(1)).await? != leader {
        return Err("the leader changed during the idle window".into());
    }
    Ok(Idle {
        seconds,
        requests,
        by_verb,
        leader: (l0, l1),
        follower: (f0, f1),
    })
}
