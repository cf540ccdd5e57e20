//! Shared by the command-line tests: the brief's env block and running the
//! built `vip` with exactly a given environment.
#![allow(dead_code)]

use std::process::{Command, Output};

/// The deployment brief's env block, unchanged (deployment-brief.md,
/// "Static Pod Manifest").
pub const BRIEF_ENV: &[(&str, &str)] = &[
    ("vip_arp", "true"),
    ("vip_interface", "end0"),
    ("vip_address", "192.168.20.140"),
    ("vip_leaderelection", "true"),
    ("cp_enable", "true"),
    ("cp_namespace", "kube-system"),
];

/// `vip <args>` with exactly this environment (plus `PATH`).
pub fn vip(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vip"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("vip runs")
}
