//! `vip`: keeps the virtual IP of a Kubernetes API endpoint on exactly one
//! healthy control-plane node (kube-vip's control-plane ARP mode, drop-in).

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};

mod config;
#[cfg(feature = "demo")]
mod demo;
mod manager;
mod manifest;
mod metrics;
mod preflight;
mod status;

use config::{BOOLEANS, KEYS, LISTS, LogFormat, NOTED, REFUSED_FLAGS, Settings, Sources};

/// The settings flags, one per key, each with kube-vip's alias; the
/// booleans as kube-vip's cobra bool flags (bare is true, else
/// `--flag=value`); kube-vip's flags of modes `vip` lacks, hidden, so they
/// are refused by name rather than as unknown; and a hidden catch of stray
/// arguments (`--arp false`), refused in one line.
fn settings_args() -> Vec<Arg> {
    let mut args: Vec<Arg> = KEYS
        .iter()
        .map(|k| {
            let mut help = k.help.to_string();
            help.push_str(&format!(" [env: {}]", k.env));
            if !k.default.is_empty() {
                help.push_str(&format!(" [default: {}]", k.default));
            }
            let mut a = Arg::new(k.env)
                .long(k.flag)
                .value_name("VALUE")
                .num_args(1)
                .allow_hyphen_values(true)
                .help(help);
            if BOOLEANS.contains(&k.env) {
                a = boolean(a);
            }
            if LISTS.contains(&k.env) {
                a = a.action(ArgAction::Append);
            }
            if k.env == "cp_namespace" {
                // kube-vip's `-n`.
                a = a.short('n');
            }
            if let Some(alias) = k.kube_vip_flag
                && alias != k.flag
            {
                a = a.alias(alias);
            }
            a
        })
        .collect();
    // kube-vip's flags of settings vip honours differently: accepted,
    // hidden, and noted like their environment variables.
    args.extend(NOTED.iter().filter_map(|n| {
        let a = Arg::new(n.env)
            .long(n.flag?)
            .value_name("VALUE")
            .num_args(1)
            .allow_hyphen_values(true)
            .hide(true);
        Some(if n.boolean { boolean(a) } else { a })
    }));
    args.extend(REFUSED_FLAGS.iter().map(|r| {
        let long = r.flag.trim_start_matches('-');
        let a = Arg::new(long)
            .long(long)
            .value_name("VALUE")
            .num_args(1)
            .allow_hyphen_values(true)
            .hide(true);
        if r.boolean { boolean(a) } else { a }
    }));
    args.push(
        Arg::new(STRAY)
            .num_args(1..)
            .allow_hyphen_values(true)
            .hide(true),
    );
    args
}

/// The id of the hidden positional (not global: `vip manifest` adds it to
/// each subcommand) catching stray arguments.
pub(crate) const STRAY: &str = "stray-arguments";

/// A cobra bool flag: `--flag` is true, `--flag=false` false.
pub(crate) fn boolean(a: Arg) -> Arg {
    a.value_name("BOOL")
        .num_args(0..=1)
        .require_equals(true)
        .default_missing_value("true")
}

/// Refuse stray arguments and kube-vip's flags of modes `vip` does not
/// implement, each in one line.
fn refused_flags(m: &ArgMatches) -> Result<(), config::ConfigError> {
    if let Ok(Some(mut stray)) = m.try_get_many::<String>(STRAY) {
        let first = stray.next().cloned().unwrap_or_default();
        return Err(config::ConfigError::Invalid {
            key: "argument",
            value: first,
            expected: "flags only; a boolean flag takes its value after '=' (--arp=false), as in kube-vip, and alone means true".into(),
        });
    }
    for r in REFUSED_FLAGS {
        let Some(v) = m.get_one::<String>(r.flag.trim_start_matches('-')) else {
            continue;
        };
        let on = if r.boolean {
            config::parse_bool(r.flag, v)?
        } else {
            !v.trim().is_empty()
        };
        if on {
            return Err(config::ConfigError::Unsupported {
                key: r.flag,
                value: v.clone(),
                what: r.what,
            });
        }
    }
    Ok(())
}

fn cli() -> Command {
    Command::new("vip")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Keeps a Kubernetes API VIP on exactly one healthy control-plane node (kube-vip control-plane ARP mode, drop-in)")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(
            Command::new("manager")
                .about("Run the static-pod daemon (configured by kube-vip's environment variables or these flags)")
                .args(settings_args()),
        )
        .subcommand(Command::new("demo").about(if cfg!(feature = "demo") {
            "Run vip for real in a throwaway lab of network namespaces (root): 3 nodes, a client, a crash failover and a graceful hand-over"
        } else {
            "Not in this build (a production build): the demo comes with the default features, `cargo build -p vip-bin`"
        }))
        .subcommand(manifest::command())
        .subcommand(
            Command::new("preflight")
                .about("Check this node before deploying: interface, connected prefix, VIP unused (ARP probe), capabilities, kubeconfig and API, certificate SAN; exit 1 on any FAIL")
                .args(settings_args()),
        )
        .subcommand(
            Command::new("status")
                .about("Show the lease holder and its age, whether this node holds the VIP, which MAC answers for it, and the local API server's health")
                .arg(
                    Arg::new("output")
                        .short('o')
                        .long("output")
                        .value_parser(["table", "json"])
                        .default_value("table")
                        .help("table for people, json for scripts"),
                )
                .args(settings_args()),
        )
        .subcommand(
            Command::new("check-config")
                .about("Validate the configuration, print it, and exit (0 when valid, 2 when not)")
                .args(settings_args()),
        )
}

/// The settings flags given on the command line, by environment name; a
/// repeated list flag ([`LISTS`]) joins its values with commas.
fn flag_values(m: &ArgMatches) -> BTreeMap<&'static str, String> {
    KEYS.iter()
        .map(|k| k.env)
        .chain(NOTED.iter().filter(|n| n.flag.is_some()).map(|n| n.env))
        .filter_map(|env| {
            let values: Vec<&str> = m.get_many::<String>(env)?.map(String::as_str).collect();
            Some((env, values.join(",")))
        })
        .collect()
}

/// This host's name, the default node name: the kernel's, else
/// `/etc/hostname`, else `$HOSTNAME`; empty when none is readable (the
/// settings then ask for `vip_nodename`).
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .find(|h| !h.is_empty())
        .unwrap_or_default()
}

/// Load and validate the settings, or print the one-line error and exit 2.
fn settings(m: &ArgMatches) -> Result<Settings, ExitCode> {
    refused_flags(m)
        .and_then(|()| Settings::from_sources(&Sources::from_process(flag_values(m)), &hostname()))
        .map_err(|e| {
            eprintln!("vip: {e}");
            ExitCode::from(2)
        })
}

/// [`settings`], and the host files they name must be readable (the
/// etcd TLS files): for the commands that run on this host.
fn host_settings(m: &ArgMatches) -> Result<Settings, ExitCode> {
    let s = settings(m)?;
    s.check_files().map_err(|e| {
        eprintln!("vip: {e}");
        ExitCode::from(2)
    })?;
    Ok(s)
}

/// Logs to standard error: text or JSON, at the configured level
/// (`RUST_LOG` overrides, when it parses: `level` and `target=level`
/// directives separated by commas, e.g. `vip_core=debug,info`).
fn init_logging(s: &Settings) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    // `Targets` rather than `EnvFilter`: the same directives bar span and
    // field filters, without a regex engine in the binary.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(s.log_level.level_filter()));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry();
    match s.log_format {
        LogFormat::Text => registry.with(layer.with_filter(filter)).init(),
        LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_filter(filter))
            .init(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn main() -> ExitCode {
    let matches = cli().get_matches();
    match matches.subcommand() {
        Some(("check-config", m)) => match host_settings(m) {
            Ok(s) => {
                for (k, v) in s.describe() {
                    println!("{k}={v}");
                }
                for n in &s.notes {
                    eprintln!("vip: note: {n}");
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        // The settings are global to `manifest`, so its subcommand's
        // matches carry them, and its stray arguments.
        Some(("manifest", m)) => match manifest::run_from(m) {
            // `pod --from FILE`: the settings come from the file.
            Some(code) => code,
            None => match settings(m.subcommand().map_or(m, |(_, sub)| sub)) {
                Ok(s) => manifest::run(m, s),
                Err(code) => code,
            },
        },
        Some(("manager", m)) => match host_settings(m) {
            Ok(s) => {
                init_logging(&s);
                runtime().block_on(manager::run(s))
            }
            Err(code) => code,
        },
        Some(("preflight", m)) => match settings(m) {
            Ok(s) => runtime().block_on(preflight::run(s)),
            Err(code) => code,
        },
        Some(("status", m)) => match settings(m) {
            Ok(s) => {
                let json = m.get_one::<String>("output").is_some_and(|o| o == "json");
                runtime().block_on(status::run(s, json))
            }
            Err(code) => code,
        },
        #[cfg(feature = "demo")]
        Some(("demo", _)) => {
            let exe = match std::env::current_exe() {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("vip demo: cannot find its own binary: {e}");
                    return ExitCode::from(1);
                }
            };
            runtime().block_on(demo::run(exe))
        }
        #[cfg(not(feature = "demo"))]
        Some(("demo", _)) => {
            eprintln!(
                "vip demo: not built into this binary (a production build, without the `demo` feature); build it with `cargo build -p vip-bin` and run `sudo target/debug/vip demo`"
            );
            ExitCode::from(2)
        }
        _ => ExitCode::from(2),
    }
}
