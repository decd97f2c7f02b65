//! Who listens on a loopback port: a replica is ready only when the `/healthz` answer came from
//! a process of *its own* process group.
//!
//! A port leased for a replica is free when the engine picks it, but between that moment and the
//! replica's `bind` another program (another cortex server, a test harness, anything binding
//! port 0) can take it. Its `/healthz` may answer 200 too, and predictions would then go to a
//! stranger. Linux tells us the truth: `/proc/net/tcp{,6}` maps a listening port to socket
//! inodes, and `/proc/<pid>/fd` maps processes to the sockets they hold.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

/// What the engine knows about the listener on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A process of the replica's group holds the listening socket.
    Replica,
    /// Some other process holds it.
    Stranger,
    /// `/proc` cannot say (not Linux, or hidden): trust the `/healthz` answer.
    Unknown,
}

/// Whether the socket listening on `127.0.0.1:port` (or a wildcard address) belongs to a
/// process in process group `pgid`. Blocking: reads `/proc`.
pub fn listener_owner(port: u16, pgid: u32) -> Owner {
    let proc_root = Path::new("/proc");
    let mut inodes = HashSet::new();
    let mut readable = false;
    for table in ["net/tcp", "net/tcp6"] {
        if let Ok(text) = fs::read_to_string(proc_root.join(table)) {
            readable = true;
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if !readable {
        return Owner::Unknown;
    }
    if inodes.is_empty() {
        // Answered, yet nobody listens in our namespace view: cannot tell.
        return Owner::Unknown;
    }
    // The group leader is the replica's own child: usually it holds the socket itself.
    if holds_any(&proc_root.join(pgid.to_string()), &inodes) {
        return Owner::Replica;
    }
    let Ok(entries) = fs::read_dir(proc_root) else {
        return Owner::Unknown;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        let in_group = fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|stat| process_group(&stat))
            == Some(pgid);
        if in_group && holds_any(&dir, &inodes) {
            return Owner::Replica;
        }
    }
    Owner::Stranger
}

/// Local addresses (as `/proc/net/tcp{,6}` spell them) that take connections to
/// `127.0.0.1`: loopback itself, the IPv4 wildcard, the IPv6 wildcard (dual-stack) and the
/// IPv4-mapped loopback. A listener on the same port but another address (`[::1]`, a LAN
/// address) is not the one that answered.
const REACHES_LOOPBACK: [&str; 4] = [
    "0100007F",
    "00000000",
    "00000000000000000000000000000000",
    "0000000000000000FFFF00000100007F",
];

/// The inodes of the sockets in `table` (the text of `/proc/net/tcp` or `tcp6`) that listen on
/// `port` where a connection to `127.0.0.1:port` lands.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?;
            let (address, hex_port) = local.rsplit_once(':')?;
            let listening_here = *state == LISTEN
                && REACHES_LOOPBACK.contains(&address)
                && u16::from_str_radix(hex_port, 16).ok()? == port;
            listening_here.then(|| inode.parse().ok()).flatten()
        })
        .filter(|inode| *inode != 0)
        .collect()
}

/// The process group in the text of `/proc/<pid>/stat` (the fifth field, after the command name,
/// which may itself hold spaces and parentheses).
fn process_group(stat: &str) -> Option<u32> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    // After the name: state, ppid, pgrp.
    after_comm.split_whitespace().nth(2)?.parse().ok()
}

/// Whether the process at `/proc/<pid>` holds one of the socket `inodes`.
fn holds_any(proc_dir: &Path, inodes: &HashSet<u64>) -> bool {
    let Ok(fds) = fs::read_dir(proc_dir.join("fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path()).ok().is_some_and(|target| {
            target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
                .is_some_and(|inode| inodes.contains(&inode))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 654321 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 777 1 0000000000000000 100 0 0 10 0
   3: 0A00020F:1F92 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 888 1 0000000000000000 100 0 0 10 0
";

    const TABLE6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 9001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 9002 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 9003 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn only_listening_sockets_on_the_port_count() {
        assert_eq!(listening_inodes(TABLE, 0x1F90), vec![123456]);
        assert_eq!(listening_inodes(TABLE, 0x1F91), vec![777]);
        assert!(listening_inodes(TABLE, 80).is_empty());
        // 10.2.0.15 does not take connections to 127.0.0.1.
        assert!(listening_inodes(TABLE, 0x1F92).is_empty());
        // [::1] does not either; [::] and [::ffff:127.0.0.1] do.
        assert!(listening_inodes(TABLE6, 0x1F90).is_empty());
        assert_eq!(listening_inodes(TABLE6, 0x1F91), vec![9002]);
        assert_eq!(listening_inodes(TABLE6, 0x1F92), vec![9003]);
        assert!(listening_inodes("garbage\nmore garbage here", 80).is_empty());
    }

    #[test]
    fn the_process_group_is_read_past_an_awkward_name() {
        assert_eq!(process_group("42 (a) b (c)) S 1 77 77 0 -1"), Some(77));
        assert_eq!(process_group("42 (python3) S 1 4242 4242 0"), Some(4242));
        assert_eq!(process_group("nonsense"), None);
    }

    #[test]
    fn a_listener_of_this_process_belongs_to_its_group_and_no_other() {
        if !Path::new("/proc/net/tcp").exists() {
            return; // not Linux: nothing to check
        }
        // The port is held (bound) from the start, so no other process can listen on it
        // while the test looks: first not listening, then listening.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        socket.bind(&any_port.into()).unwrap();
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        // SAFETY: getpgrp(2) only reads the calling process's group id.
        let own_group = unsafe { libc::getpgrp() } as u32;
        assert_eq!(listener_owner(port, own_group), Owner::Unknown);
        socket.listen(1).unwrap();
        assert_eq!(listener_owner(port, own_group), Owner::Replica);
        // No process has this group: the listener is a stranger's to it.
        assert_eq!(listener_owner(port, u32::MAX - 1), Owner::Stranger);
    }
}
