//! The failover benchmark (issue 6): real `vip manager` processes in the
//! namespace lab of `vip_testkit::lab`, faulted over and over, measured by an
//! ARP observer (who answers for the VIP, every 10 ms) and a client
//! pinging the VIP every 5 ms; then the same trials with keepalived on the
//! same lab, when it is installed. See `docs/benchmarks.md`.
//!
//! ```text
//! cargo build --release -p vip-bin -p vip-benches --bin vip --bin failover
//! sudo target/release/failover --trials 10 --svg-dir docs --report target/failover.md
//! ```
//!
//! Options: `--trials N` (per kind, default 10), `--kinds LIST` (of
//! `graceful,crash,kill,partition,local-api`, default all; `none`: only the
//! idle figures), `--svg-dir DIR` (timeline
//! pictures of the first trial of each kind; none when absent),
//! `--report FILE` (the Markdown tables, also printed), `--idle SECONDS`
//! (the steady-state window, default 30), `--impls LIST` (of
//! `vip,vip-hb5,keepalived,vip-etcd,vip-real-api`, default all: vip with
//! the Lease and the idle figures, vip at 5 ms heartbeats, keepalived when
//! installed, vip electing through a 3-member etcd when `etcd` is
//! installed, vip on the brief's topology with real kube-apiservers (an
//! etcd member and a server per node namespace) when the kube-apiserver
//! fixture and etcd are available, measured also by a client polling
//! `GET https://VIP:6443/readyz` every 20 ms), `--no-keepalived`, `--env
//! KEY=VALUE` (an extra setting for every manager, repeatable).
//! `VIP_BIN` names the `vip` binary (default: `vip` next to this program),
//! `VIP_ETCD_BIN` the `etcd` one, `VIP_KUBE_APISERVER_BIN` the
//! `kube-apiserver`.

mod args;
mod idle;
mod report;
mod svg;
mod trial;

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use vip_etcd::TlsFiles;
use vip_testkit::etcd::{EtcdCluster, etcd_binary};
use vip_testkit::lab::{KeepalivedConfig, Lab, LabConfig, VIP};

use crate::args::{Args, Column, parse_args};
use crate::idle::idle;
use crate::report::report;
use crate::trial::{HEARTBEAT_MS, Impl, Kind, Results, renewals, run_trials};

const PROBE: Duration = Duration::from_millis(10);
const PING: Duration = Duration::from_millis(5);
/// The client's `/readyz` probes through the VIP (real API servers).
const API_PROBE: Duration = Duration::from_millis(20);
const V4: IpAddr = IpAddr::V4(VIP);

fn keepalived_version() -> Option<String> {
    let out = std::process::Command::new("keepalived")
        .arg("--version")
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().next().map(|l| l.trim().to_string())
}

async fn run(args: Args) -> Result<String, String> {
    let exe = vip_benches::vip_exe(None)?;
    let size = std::fs::metadata(&exe).ok().map(|m| m.len());
    let ka = if args.runs(Column::Keepalived) {
        keepalived_version()
    } else {
        None
    };
    if args.runs(Column::Keepalived) && ka.is_none() {
        eprintln!(
            "keepalived is not installed (apt-get install keepalived): no keepalived columns"
        );
    }
    let etcd = args.runs(Column::VipEtcd) && etcd_binary().is_some();
    if args.runs(Column::VipEtcd) && !etcd {
        eprintln!(
            "etcd is not installed (apt-get install etcd-server, or set VIP_ETCD_BIN): no etcd column"
        );
    }
    let real_api = args.runs(Column::VipRealApi)
        && match (
            vip_testkit::apiserver::binary::kube_apiserver(),
            etcd_binary(),
        ) {
            (Ok(_), Some(_)) => true,
            (Err(e), _) => {
                eprintln!("no real-API column: {e}");
                false
            }
            (Ok(_), None) => {
                eprintln!("no real-API column: etcd is not installed");
                false
            }
        };
    if let Some(dir) = &args.svg_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    eprintln!(
        "building the lab: 3 nodes, a client, an observer; vip = {}",
        exe.display()
    );
    let mut lab = Lab::new(3, exe.clone()).await.map_err(|e| e.to_string())?;
    lab.env.extend(args.env.iter().cloned());
    // Declared after the lab, dropped after it: the members outlive the
    // managers.
    let mut cluster: Option<EtcdCluster> = None;
    let result = async {
        let mut results = Results::new();
        let mut idle_figures = None;
        let mut renewal_figures = Vec::new();
        if args.runs(Column::Vip) {
            for i in 0..3 {
                lab.start(i).map_err(|e| e.to_string())?;
            }
            eprintln!("idle leader and followers for {:?}", args.idle);
            idle_figures = Some(idle(&lab, args.idle).await?);
            run_trials(
                &mut lab,
                Impl::Vip(HEARTBEAT_MS),
                &args.kinds,
                &args,
                &mut results,
            )
            .await?;
            renewal_figures.push((Impl::Vip(HEARTBEAT_MS).name(), renewals(&lab)));
            lab.stop_all(Duration::from_secs(5)).await;
        }
        // The faults every implementation has (no stand-in API to fault).
        let fast_kinds: Vec<Kind> = args
            .kinds
            .iter()
            .copied()
            .filter(|k| matches!(k, Kind::Graceful | Kind::Crash | Kind::Kill))
            .collect();
        // Fast failover at 5 ms heartbeats, against keepalived's fastest.
        if args.runs(Column::VipHb5) && !fast_kinds.is_empty() {
            eprintln!("vip with vip_heartbeat_ms=5");
            lab.env.insert("vip_heartbeat_ms".into(), "5".into());
            for i in 0..3 {
                lab.start(i).map_err(|e| e.to_string())?;
            }
            run_trials(&mut lab, Impl::Vip(5), &fast_kinds, &args, &mut results).await?;
            renewal_figures.push((Impl::Vip(5).name(), renewals(&lab)));
            lab.stop_all(Duration::from_secs(5)).await;
            lab.env.remove("vip_heartbeat_ms");
        }
        if ka.is_some() {
            for config in [
                KeepalivedConfig {
                    version: 2,
                    advert_int: 1.0,
                },
                KeepalivedConfig {
                    version: 3,
                    advert_int: 0.1,
                },
                KeepalivedConfig {
                    version: 3,
                    advert_int: 0.01,
                },
            ] {
                eprintln!(
                    "keepalived VRRPv{} advert_int {}",
                    config.version, config.advert_int
                );
                for i in 0..3 {
                    lab.start_keepalived(i, &config)
                        .map_err(|e| e.to_string())?;
                }
                run_trials(
                    &mut lab,
                    Impl::Keepalived(config),
                    &fast_kinds,
                    &args,
                    &mut results,
                )
                .await?;
                for i in 0..3 {
                    let _ = lab.signal_keepalived(i, libc::SIGTERM);
                }
                for i in 0..3 {
                    let _ = lab.wait_keepalived(i, Duration::from_secs(5)).await;
                    if lab.has_address(i, V4) {
                        let _ = lab.del_address(i, V4);
                    }
                }
            }
        }
        // Last: from here on the managers elect through etcd.
        if etcd && !fast_kinds.is_empty() {
            eprintln!("vip electing through a 3-member etcd");
            let members = EtcdCluster::start(3)
                .await
                .map_err(|e| format!("the etcd cluster: {e}"))?;
            let tls = members.client_tls().clone();
            lab.elect_through_etcd(
                &members.endpoints(),
                TlsFiles {
                    ca: tls.ca,
                    cert: tls.cert,
                    key: tls.key,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            cluster = Some(members);
            for i in 0..3 {
                lab.start(i).map_err(|e| e.to_string())?;
            }
            run_trials(&mut lab, Impl::VipEtcd, &fast_kinds, &args, &mut results).await?;
            renewal_figures.push((Impl::VipEtcd.name(), renewals(&lab)));
            lab.stop_all(Duration::from_secs(5)).await;
        }
        // The brief's topology: its own lab, with real API servers.
        let real_kinds: Vec<Kind> = args
            .kinds
            .iter()
            .copied()
            .filter(|&k| k != Kind::Partition)
            .collect();
        if real_api && !real_kinds.is_empty() {
            let r = real_api_trials(exe.clone(), &real_kinds, &args, &mut results).await?;
            renewal_figures.push((Impl::VipRealApi.name(), r));
        }
        Ok::<_, String>(report(
            &args,
            &results,
            idle_figures.as_ref(),
            &renewal_figures,
            size,
            ka.as_deref(),
        ))
    }
    .await;
    if result.is_err() {
        eprintln!("{}", lab.log_tails(30));
    }
    lab.stop_all(Duration::from_secs(5)).await;
    for i in 0..3 {
        let _ = lab.signal_keepalived(i, libc::SIGKILL);
        let _ = lab.wait_keepalived(i, Duration::from_secs(2)).await;
    }
    drop(lab);
    drop(cluster);
    result
}

/// The real-API column on a lab of its own: three kube-apiservers, each
/// over its node's etcd member.
async fn real_api_trials(
    exe: std::path::PathBuf,
    kinds: &[Kind],
    args: &Args,
    results: &mut Results,
) -> Result<trial::Renewals, String> {
    eprintln!("vip on real kube-apiservers (an etcd member and a server per node)");
    let started = std::time::Instant::now();
    let mut lab = Lab::build(LabConfig::new(3).real_api(true), exe)
        .await
        .map_err(|e| e.to_string())?;
    lab.env.extend(args.env.iter().cloned());
    eprintln!(
        "  lab with 3 kube-apiservers built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let result = async {
        for i in 0..3 {
            lab.start(i).map_err(|e| e.to_string())?;
        }
        run_trials(&mut lab, Impl::VipRealApi, kinds, args, results).await?;
        Ok::<_, String>(renewals(&lab))
    }
    .await;
    if result.is_err() {
        eprintln!("{}", lab.log_tails(30));
    }
    lab.stop_all(Duration::from_secs(5)).await;
    result
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !vip_testkit::netns::require_root("the failover benchmark") {
        return ExitCode::from(2);
    }
    let report_path = args.report.clone();
    vip_benches::finish(
        "failover benchmark",
        vip_benches::runtime().block_on(run(args)),
        report_path.as_deref(),
    )
}
