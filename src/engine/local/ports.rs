//! Loopback ports for replicas: each handed to one replica of this engine at a time, and the
//! sockets the engine binds for replicas that take theirs on fd 3.

use std::net::TcpListener;

/// Free loopback ports, each handed to one replica at a time.
#[derive(Debug, Clone, Default)]
pub(super) struct PortPool {
    taken: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<u16>>>,
}

/// A port reserved for one run of a replica; released on drop.
pub(super) struct PortLease {
    pub(super) port: u16,
    pool: PortPool,
}

impl PortPool {
    /// A port the OS says is free and no other replica of this engine holds.
    pub(super) fn lease(&self) -> std::io::Result<PortLease> {
        self.first_unclaimed(|| free_port().map(|port| (port, ())))
            .map(|(lease, ())| lease)
    }

    /// A socket bound to a free loopback port that no other replica of this engine holds (a
    /// command replica's leased port is free in the OS's eyes until the replica binds it).
    pub(super) fn bound(&self) -> std::io::Result<(PortLease, socket2::Socket)> {
        self.first_unclaimed(|| {
            let socket = bound_socket()?;
            let port = socket
                .local_addr()?
                .as_socket()
                .map(|a| a.port())
                .ok_or_else(|| std::io::Error::other("the bound socket has no port"))?;
            Ok((port, socket))
        })
    }

    /// Claims the first port `next` offers that is not taken yet.
    fn first_unclaimed<T>(
        &self,
        mut next: impl FnMut() -> std::io::Result<(u16, T)>,
    ) -> std::io::Result<(PortLease, T)> {
        for _ in 0..64 {
            let (port, value) = next()?;
            let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
            if taken.insert(port) {
                let lease = PortLease {
                    port,
                    pool: self.clone(),
                };
                return Ok((lease, value));
            }
        }
        Err(std::io::Error::other(
            "every free port offered is already taken by a replica",
        ))
    }
}

/// The port a replica run serves on, held for the run; for a replica that takes its socket,
/// also the socket the engine bound (given up once the replica has its own copy).
pub(super) struct PortHold {
    pub(super) lease: PortLease,
    pub(super) socket: Option<socket2::Socket>,
}

impl PortHold {
    pub(super) fn socket_fd(&self) -> Option<i32> {
        use std::os::fd::AsRawFd;
        self.socket.as_ref().map(|s| s.as_raw_fd())
    }
}

/// A TCP socket bound to a free loopback port, not listening yet (the replica listens once it
/// is ready), close-on-exec (only the duplicate made for the child is inherited).
fn bound_socket() -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    Ok(socket)
}

/// The descriptor number a handed socket has in the replica (`CORTEX_LISTEN_FD`).
pub(super) const LISTEN_FD: i32 = 3;

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool
            .taken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.port);
    }
}

/// An ephemeral loopback port that is free right now.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}
