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
    pub keepalived: bool,
    pub kinds: Vec<Kind>,
}

pub fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        trials: 10,
        svg_dir: None,
        report: None,
        idle: Duration::from_secs(30),
        keepalived: true,
        kinds: Kind::ALL.to_vec(),
    };
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
            "--no-keepalived" => a.keepalived = false,
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
                    "usage: failover [--trials N] [--kinds graceful,crash,kill,partition,local-api|none] [--svg-dir DIR] [--report FILE] [--idle SECONDS] [--no-keepalived]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.trials == 0 {
        return Err("--trials must be at least 1".into());
    }
    Ok(a)
}
