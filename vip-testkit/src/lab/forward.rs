//! Reaching the host from inside a namespace: a TCP proxy bound in the
//! node's namespace, held by this process.

use std::net::SocketAddr;
use std::time::Duration;

use super::{LabSetupError, io};
use crate::netns::Host;

/// Listen on `127.0.0.1:<port>` inside `host`'s namespace and proxy every
/// connection to `upstream` on the host.
pub(super) fn forward_into(
    host: &Host,
    port: u16,
    upstream: SocketAddr,
) -> Result<tokio::task::JoinHandle<()>, LabSetupError> {
    let listener = host
        .ns
        .run(Duration::from_secs(5), move || async move {
            std::net::TcpListener::bind(("127.0.0.1", port))
        })?
        .map_err(io(format!(
            "binding 127.0.0.1:{port} in {}",
            host.ns.name()
        )))?;
    listener
        .set_nonblocking(true)
        .map_err(io("proxy listener"))?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(io("proxy listener"))?;
    Ok(tokio::spawn(proxy(listener, upstream)))
}

async fn proxy(listener: tokio::net::TcpListener, upstream: SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                // Forward each chunk at once, as the endpoints' own sockets
                // do: with Nagle, a small write behind an unacknowledged
                // one waits for the peer's delayed ACK (about 40 ms), which
                // an HTTP/2 client (gRPC: etcd) pays on most requests.
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}
