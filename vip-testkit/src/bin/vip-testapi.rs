//! `vip-testapi`: the Kubernetes API-server stand-in of vip-lease as a
//! process (see `--help`).
// The doc comments below are clap's --help text, written for a terminal
// (<i>, [,x]), not rustdoc markup.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use vip_testkit::testapi::{Role, TestApi, TestApiConfig, TokenSpec};

/// A Kubernetes API-server stand-in for vip's tests and demos.
///
/// Serves HTTPS (its own CA, bearer tokens) with discovery, /healthz,
/// /livez, /readyz, /version, Leases (coordination.k8s.io/v1) and Nodes,
/// on every --listen address, all sharing one object store and one
/// resourceVersion counter. Enough of the real API for kubectl, client-go
/// and kube-rs: get/list/create/update/patch/delete/watch, Status bodies
/// like the real server's (404, 409 Conflict/AlreadyExists, 410 Expired,
/// 422).
///
/// Files written to --out-dir: ca.crt, kubeconfig-<listener>-<user> for
/// every listener and user, and ready.json (the same JSON line printed on
/// stdout once serving: {"admin": ADDR, "listeners": [ADDR...],
/// "kubeconfigs": {...}}).
///
/// Steering at run time goes through the admin endpoint (plain HTTP on
/// --admin, loopback by default):
///
///   GET    /state                     listeners, faults, users, counters
///
///   GET    /counters                  request counts by listener/user/verb/resource
///
///   PUT    /listeners/<i>/fault       body {"kind":"latency","ms":300} | {"kind":"error","code":500|429|503}
///                                     | {"kind":"stall"} | {"kind":"refuse"} | {"kind":"unready"}
///
///   DELETE /listeners/<i>/fault       lift it
///
///   PUT    /users/<name>/fault        the same faults for every request with that user's token
///
///   DELETE /users/<name>/fault
///
///   POST   /nodes                     {"name":"cp-1","controlPlane":true,"ready":true,"unschedulable":false}
///
///   POST   /compact                   forget the watch history (older watches get 410)
///
///   POST   /shutdown
///
/// Example: curl -X PUT -d '{"kind":"stall"}' http://127.0.0.1:7443/listeners/0/fault
#[derive(Debug, Parser)]
#[command(name = "vip-testapi", version, verbatim_doc_comment)]
struct Args {
    /// Address of one "local API server" listener; repeat for several
    /// (e.g. one per network namespace of a test lab).
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:6443")]
    listen: Vec<SocketAddr>,

    /// A user with full rights: NAME or NAME=TOKEN (token defaults to
    /// vip-testapi-NAME). Repeat for several; the first is the default.
    #[arg(long = "user", value_name = "NAME[=TOKEN]", default_value = "admin")]
    users: Vec<String>,

    /// A user that authenticates but gets 403 on every resource (like a
    /// kubeadm admin.conf before RBAC exists): NAME or NAME=TOKEN.
    #[arg(long = "forbidden-user", value_name = "NAME[=TOKEN]")]
    forbidden_users: Vec<String>,

    /// Where ca.crt, the kubeconfigs and ready.json are written.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,

    /// The admin endpoint's address (plain HTTP; keep it on loopback).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    admin: SocketAddr,

    /// How many events the watch history keeps (older resourceVersions
    /// get 410 Expired).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    history: usize,

    /// Extra certificate names (DNS names or IPs), e.g. the VIP.
    #[arg(long = "san", value_name = "NAME")]
    sans: Vec<String>,

    /// Seed a Node: NAME[,worker][,notready][,cordoned] (control-plane and
    /// Ready unless said otherwise).
    #[arg(long = "node", value_name = "SPEC")]
    nodes: Vec<String>,
}

fn token(spec: &str, role: Role) -> TokenSpec {
    let (name, token) = match spec.split_once('=') {
        Some((n, t)) => (n.to_owned(), t.to_owned()),
        None => (spec.to_owned(), format!("vip-testapi-{spec}")),
    };
    TokenSpec { name, token, role }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut tokens: Vec<TokenSpec> = args.users.iter().map(|u| token(u, Role::Admin)).collect();
    tokens.extend(
        args.forbidden_users
            .iter()
            .map(|u| token(u, Role::Forbidden)),
    );
    let config = TestApiConfig {
        listen: args.listen.clone(),
        tokens: tokens.clone(),
        history: args.history,
        out_dir: Some(args.out_dir.clone()),
        extra_sans: args.sans.clone(),
    };
    let mut api = TestApi::start(config).await?;
    for spec in &args.nodes {
        let mut parts = spec.split(',');
        let name = parts.next().unwrap_or_default();
        let flags: Vec<&str> = parts.collect();
        api.store()
            .put_node(
                name,
                !flags.contains(&"worker"),
                !flags.contains(&"notready"),
                flags.contains(&"cordoned"),
            )
            .map_err(|s| {
                format!(
                    "cannot seed node {name}: {}",
                    String::from_utf8_lossy(&s.to_json())
                )
            })?;
    }
    let admin = api.serve_admin(args.admin).await?;
    let mut kubeconfigs = serde_json::Map::new();
    for (i, _) in api.listeners().iter().enumerate() {
        for t in &tokens {
            let p = api.kubeconfig_for(i, &t.name)?;
            kubeconfigs.insert(format!("{i}/{}", t.name), p.display().to_string().into());
        }
    }
    let ready = serde_json::json!({
        "admin": admin.to_string(),
        "listeners": api.listeners().iter().map(|l| l.addr().to_string()).collect::<Vec<_>>(),
        "ca": api.ca_path().display().to_string(),
        "kubeconfigs": kubeconfigs,
    });
    let line = serde_json::to_string(&ready)?;
    std::fs::write(args.out_dir.join("ready.json"), &line)?;
    println!("{line}");
    tokio::select! {
        _ = api.shutdown_requested() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
