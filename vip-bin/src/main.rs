//! `vip`: keeps the virtual IP of a Kubernetes API endpoint on exactly one
//! healthy control-plane node (kube-vip's control-plane ARP mode, drop-in).

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};

mod config;
mod manifest;

use config::{KEYS, Settings, Sources};

/// The settings flags, one per key, each with kube-vip's alias.
fn settings_args() -> Vec<Arg> {
    KEYS.iter()
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
            if let Some(alias) = k.kube_vip_flag
                && alias != k.flag
            {
                a = a.alias(alias);
            }
            a
        })
        .collect()
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
        .subcommand(manifest::command())
        .subcommand(
            Command::new("check-config")
                .about("Validate the configuration, print it, and exit (0 when valid, 2 when not)")
                .args(settings_args()),
        )
}

/// The settings flags given on the command line, by environment name.
fn flag_values(m: &ArgMatches) -> BTreeMap<&'static str, String> {
    KEYS.iter()
        .filter_map(|k| m.get_one::<String>(k.env).map(|v| (k.env, v.clone())))
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Load and validate the settings, or print the one-line error and exit 2.
fn settings(m: &ArgMatches) -> Result<Settings, ExitCode> {
    Settings::from_sources(&Sources::from_process(flag_values(m)), &hostname()).map_err(|e| {
        eprintln!("vip: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let matches = cli().get_matches();
    let _ = ArgAction::Set;
    match matches.subcommand() {
        Some(("check-config", m)) => match settings(m) {
            Ok(s) => {
                for (k, v) in s.describe() {
                    println!("{k}={v}");
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Some(("manifest", m)) => match settings(m) {
            Ok(s) => manifest::run(m, s),
            Err(code) => code,
        },
        Some(("manager", m)) => match settings(m) {
            Ok(_s) => ExitCode::SUCCESS,
            Err(code) => code,
        },
        _ => ExitCode::from(2),
    }
}
