//! The command line of the failover benchmark.

use std::path::PathBuf;
use std::time::Duration;

use crate::trial::Kind;

#[derive(Debug, Clone)]
pub struct Args {
    pub trials: usize,
    pub svg_dir: Option<PathBuf>,
    pub report: Option<PathBuf>,
    pub idle: Duration,
    pub columns: Vec<Column>,
    pub kinds: Vec<Kind>,
    /// `--env KEY=VALUE`: extra settings for every manager of the vip
    /// columns (for another kube-vip-compatible binary named by `VIP_BIN`).
    pub env: Vec<(String, String)>,
}

/// The implementations to measure (`--impls`), in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// vip at its defaults, with the Lease (and the idle figures).
    Vip,
    /// vip at 5 ms heartbeats (graceful, crash, kill).
    VipHb5,
    /// keepalived at three settings (graceful, crash, kill), when installed.
    Keepalived,
    /// vip at its defaults, electing through etcd (graceful, crash, kill),
    /// when etcd is installed.
    VipEtcd,
    /// vip at its defaults on real kube-apiservers with an etcd member per
    /// node (graceful, crash, kill, local API death), with the client's
    /// `/readyz` through the VIP, when kube-apiserver and etcd are here.
    VipRealApi,
}

impl Column {
    pub const ALL: [Column; 5] = [
        Column::Vip,
        Column::VipHb5,
        Column::Keepalived,
        Column::VipEtcd,
        Column::VipRealApi,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Column::Vip => "vip",
            Column::VipHb5 => "vip-hb5",
            Column::Keepalived => "keepalived",
            Column::VipEtcd => "vip-etcd",
            Column::VipRealApi => "vip-real-api",
        }
    }
}

impl Args {
    pub fn runs(&self, c: Column) -> bool {
        self.columns.contains(&c)
    }
}

pub fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        trials: 10,
        svg_dir: None,
        report: None,
        idle: Duration::from_secs(30),
        columns: Column::ALL.to_vec(),
        kinds: Kind::ALL.to_vec(),
        env: Vec::new(),
    };
    let mut no_keepalived = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--trials" => {
                a.trials = value("--trials")?
                    .parse()
                    .map_err(|_| "--trials: a number")?
            }
            "--svg-dir" => a.svg_dir = Some(PathBuf::from(value("--svg-dir")?)),
            "--report" => a.report = Some(PathBuf::from(value("--report")?)),
            "--idle" => {
                a.idle = Duration::from_secs(
                    value("--idle")?
                        .parse()
                        .map_err(|_| "--idle: whole seconds")?,
                )
            }
            "--no-keepalived" => no_keepalived = true,
            "--env" => {
                let v = value("--env")?;
                let (k, val) = v
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or(format!("--env: expected KEY=VALUE, got {v:?}"))?;
                a.env.push((k.to_owned(), val.to_owned()));
            }
            "--impls" => {
                let v = value("--impls")?;
                let wanted = v
                    .split(',')
                    .map(|c| {
                        Column::ALL
                            .into_iter()
                            .find(|x| x.slug() == c)
                            .ok_or(format!("--impls: unknown implementation {c}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                a.columns = Column::ALL
                    .into_iter()
                    .filter(|c| wanted.contains(c))
                    .collect();
            }
            "--kinds" => {
                let v = value("--kinds")?;
                a.kinds = v
                    .split(',')
                    .filter(|k| *k != "none")
                    .map(|k| {
                        Kind::ALL
                            .into_iter()
                            .find(|x| x.slug() == k)
                            .ok_or(format!("--kinds: unknown kind {k}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => {
                return Err(
                    "usage: failover [--trials N] [--kinds graceful,crash,kill,partition,local-api|none] [--svg-dir DIR] [--report FILE] [--impls vip,vip-hb5,keepalived,vip-etcd,vip-real-api] [--idle SECONDS] [--no-keepalived] [--env KEY=VALUE]..."
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if no_keepalived {
        a.columns.retain(|&c| c != Column::Keepalived);
    }
    if a.trials == 0 {
        return Err("--trials must be at least 1".into());
    }
    Ok(a)
}
