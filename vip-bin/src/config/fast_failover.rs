//! Fenced fast failover's settings, checked together against the renew
//! deadline.

use std::time::Duration;

use vip_core::{FastFailoverPolicy, Timings};

use super::{ConfigError, Sources, invalid};

/// `vip_heartbeat_ms`, `vip_heartbeat_misses` and `vip_probe_ms`, checked
/// together against the renew deadline (fast failover must beat the
/// lease).
pub(super) fn fast_failover(
    sources: &Sources,
    timings: &Timings,
) -> Result<FastFailoverPolicy, ConfigError> {
    let ms = |key: &'static str, default: u64, min: u64| -> Result<u64, ConfigError> {
        match sources.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (*n == 0 && min == 0) || (1..=1000).contains(n))
                .ok_or_else(|| {
                    invalid(
                        key,
                        v,
                        if min == 0 {
                            "milliseconds, 1 to 1000, or 0 to turn fast failover off"
                        } else {
                            "milliseconds, 1 to 1000"
                        },
                    )
                }),
        }
    };
    let heartbeat = ms("vip_heartbeat_ms", 10, 0)?;
    let probe = ms("vip_probe_ms", 10, 1)?;
    let misses = match sources.get("vip_heartbeat_misses") {
        None => 3,
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| invalid("vip_heartbeat_misses", v, "a whole number, 1 to 100"))?,
    };
    let policy = FastFailoverPolicy {
        heartbeat: Duration::from_millis(heartbeat),
        misses,
        probe_timeout: Duration::from_millis(probe),
        ..FastFailoverPolicy::default()
    };
    let detect = policy.heartbeat * misses + policy.probe_timeout + policy.stagger * 2;
    if policy.enabled() && detect >= timings.renew_deadline() {
        return Err(invalid(
            "vip_heartbeat_misses",
            &misses.to_string(),
            format!(
                "vip_heartbeat_ms x vip_heartbeat_misses + vip_probe_ms + 10 ms ({} ms) below the renew deadline ({} ms), or fast failover would be slower than the lease",
                detect.as_millis(),
                timings.renew_deadline().as_millis()
            ),
        ));
    }
    Ok(policy)
}
