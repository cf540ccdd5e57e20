//! The Markdown tables of the failover benchmark.

use std::fmt::Write as _;
use std::time::Duration;

use vip_testkit::lab::ProcStats;

use crate::args::Args;
use crate::idle::Idle;
use crate::trial::{Impl, Kind, Renewals, Results};
use crate::{API_PROBE, PING, PROBE};

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quantiles(mut v: Vec<Duration>) -> Option<[Duration; 4]> {
    if v.is_empty() {
        return None;
    }
    v.sort();
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    Some([v[0], q(0.5), q(0.95), v[v.len() - 1]])
}

fn fmt_q(q: Option<[Duration; 4]>) -> String {
    match q {
        None => "–".into(),
        Some(q) => format!(
            "{:.0} / {:.0} / {:.0} / {:.0}",
            ms(q[0]),
            ms(q[1]),
            ms(q[2]),
            ms(q[3])
        ),
    }
}

pub fn report(
    args: &Args,
    results: &Results,
    idle: Option<&Idle>,
    renewals: &[(String, Renewals)],
    size: Option<u64>,
    ka: Option<&str>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} trials per kind; client pings every {} ms, observer ARP requests every {} ms; vip defaults (lease 5 s, renew deadline 3 s, retry 1 s).\n",
        args.trials,
        PING.as_millis(),
        PROBE.as_millis()
    );
    let _ = writeln!(
        s,
        "| implementation | fault | client-visible outage ms (min / median / p95 / max) | observer: no owner ms (min / median / p95 / max) | overlap ms (total, max) | old node still had the VIP after the takeover |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for ((imp, kind), trials) in results {
        let overlap_total: Duration = trials.iter().map(|t| t.overlap).sum();
        let overlap_max = trials.iter().map(|t| t.overlap).max().unwrap_or_default();
        let stale = if matches!(kind, Kind::Crash | Kind::Kill) {
            format!(
                "{} of {}",
                trials.iter().filter(|t| t.stale_after_crash).count(),
                trials.len()
            )
        } else {
            "–".into()
        };
        let _ = writeln!(
            s,
            "| {imp} | {} | {} | {} | {:.0}, {:.0} | {stale} |",
            kind.name(),
            fmt_q(quantiles(trials.iter().map(|t| t.lost).collect())),
            fmt_q(quantiles(trials.iter().map(|t| t.silence).collect())),
            ms(overlap_total),
            ms(overlap_max),
        );
    }
    // Ratios of the medians.
    let median = |imp: &str, kind: Kind| {
        results
            .get(&(imp.to_string(), kind))
            .and_then(|t| quantiles(t.iter().map(|t| t.lost).collect()))
            .map(|q| q[1])
    };
    if let Some(ka) = ka {
        let _ = writeln!(
            s,
            "\nkeepalived: {ka}. Ratio of median client-visible outages, vip / keepalived:\n"
        );
        let _ = writeln!(
            s,
            "| fault | vs VRRPv2 advert_int 1 | vs VRRPv3 advert_int 0.1 |"
        );
        let _ = writeln!(s, "|---|---|---|");
        for kind in [Kind::Graceful, Kind::Crash, Kind::Kill] {
            let v = median("vip", kind);
            let cell = |other: &str| match (v, median(other, kind)) {
                (Some(a), Some(b)) if !b.is_zero() => {
                    format!("{:.2}", a.as_secs_f64() / b.as_secs_f64())
                }
                (Some(_), Some(_)) => {
                    "n/a: keepalived lost 0 ms (the old node kept answering)".into()
                }
                _ => "–".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                kind.name(),
                cell("keepalived VRRPv2 advert_int 1"),
                cell("keepalived VRRPv3 advert_int 0.1")
            );
        }
    }
    let etcd = Impl::VipEtcd.name();
    if results.keys().any(|(imp, _)| *imp == etcd) {
        let _ = writeln!(
            s,
            "\nMedian client-visible outages, vip electing through the Lease and through etcd:\n"
        );
        let _ = writeln!(s, "| fault | Lease ms | etcd ms | etcd / Lease |");
        let _ = writeln!(s, "|---|---|---|---|");
        for kind in [Kind::Graceful, Kind::Crash, Kind::Kill] {
            let (e, l) = (median(&etcd, kind), median("vip", kind));
            let cell =
                |d: Option<Duration>| d.map(|d| format!("{:.0}", ms(d))).unwrap_or("–".into());
            let ratio = match (e, l) {
                (Some(a), Some(b)) if !b.is_zero() => {
                    format!("{:.2}", a.as_secs_f64() / b.as_secs_f64())
                }
                _ => "–".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {ratio} |",
                kind.name(),
                cell(l),
                cell(e)
            );
        }
    }
    let real = Impl::VipRealApi.name();
    if results.keys().any(|(imp, _)| *imp == real) {
        let _ = writeln!(
            s,
            "\nThe API through the VIP, on real kube-apiservers (each over its node's etcd member): a client in its own namespace sends `GET https://VIP:6443/readyz` every {} ms on a new TCP connection and TLS session, certificate unverified (`curl -k`); the outage is the longest time in which no `200` arrived (dated by the answer: a connection attempt made during the outage that succeeds after a retransmitted SYN does not hide it).\n",
            API_PROBE.as_millis()
        );
        let _ = writeln!(
            s,
            "| fault | API outage through the VIP ms (min / median / p95 / max) | client ping outage ms (min / median / p95 / max) | observer: no owner ms (min / median / p95 / max) |"
        );
        let _ = writeln!(s, "|---|---|---|---|");
        for ((_, kind), trials) in results.iter().filter(|((imp, _), _)| *imp == real) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                kind.name(),
                fmt_q(quantiles(
                    trials.iter().filter_map(|t| t.api_outage).collect()
                )),
                fmt_q(quantiles(trials.iter().map(|t| t.lost).collect())),
                fmt_q(quantiles(trials.iter().map(|t| t.silence).collect())),
            );
        }
    }
    let acq: Vec<Duration> = results
        .iter()
        .filter(|((imp, _), _)| imp == "vip")
        .flat_map(|(_, t)| t.iter().filter_map(|t| t.acquire_to_arp))
        .collect();
    if !acq.is_empty() {
        let _ = writeln!(
            s,
            "\nLease acquisition (the stand-in applies the new holder's write) → first announcement on the wire (the observer reads it), over {} vip takeovers: {} ms (min / median / p95 / max; sub-millisecond values round to 0: {}).",
            acq.len(),
            fmt_q(quantiles(acq.clone())),
            quantiles(acq)
                .map(|q| format!(
                    "{:.2} / {:.2} / {:.2} / {:.2}",
                    ms(q[0]),
                    ms(q[1]),
                    ms(q[2]),
                    ms(q[3])
                ))
                .unwrap_or_default()
        );
    }
    for (imp, r) in renewals.iter().filter(|(_, r)| r.count > 0.0) {
        let _ = writeln!(
            s,
            "\n{imp}: mean renewal round trip {:.1} ms over {:.0} renewals (`vip_renewal_duration_seconds` of the managers running at the end of its trials).",
            r.seconds / r.count * 1000.0,
            r.count
        );
    }
    if let Some(idle) = idle {
        let _ = writeln!(
            s,
            "\nSteady state, 3 nodes, {:.0} s: {} API requests = {:.2} requests/s ({}).",
            idle.seconds,
            idle.requests,
            idle.requests as f64 / idle.seconds,
            idle.by_verb
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let cpu = |p: &(ProcStats, ProcStats)| ProcStats::cpu_percent(&p.0, &p.1, idle.seconds);
        let _ = writeln!(
            s,
            "\n| idle process | RSS (VmRSS) | of which anonymous / file-backed | CPU over the window |\n|---|---|---|---|\n| leader | {:.1} MiB | {:.1} / {:.1} MiB | {:.2} % |\n| follower | {:.1} MiB | {:.1} / {:.1} MiB | {:.2} % |",
            idle.leader.1.rss_kib as f64 / 1024.0,
            idle.leader.1.rss_anon_kib as f64 / 1024.0,
            idle.leader.1.rss_file_kib as f64 / 1024.0,
            cpu(&idle.leader),
            idle.follower.1.rss_kib as f64 / 1024.0,
            idle.follower.1.rss_anon_kib as f64 / 1024.0,
            idle.follower.1.rss_file_kib as f64 / 1024.0,
            cpu(&idle.follower)
        );
    }
    if let Some(size) = size {
        let _ = writeln!(
            s,
            "\nThe `vip` binary measured: {size} bytes ({:.2} MiB).",
            size as f64 / 1024.0 / 1024.0
        );
    }
    s
}
