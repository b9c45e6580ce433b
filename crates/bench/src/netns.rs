//! The benchmark's own network: a fresh network namespace with loopback at MTU 1500, so TCP
//! segments, windows and record splitting behave as on a real link (docs/testing.md, "Limits").
//! Children (fake DC, bare relay, proxy) inherit it; it disappears with the last process in it.

use std::io;
use std::process::Command;

/// Move this process into a new network namespace and set up loopback. Must run before any
/// thread is started (unshare(CLONE_NEWNET) applies to the calling thread only).
pub fn enter() -> io::Result<()> {
    // SAFETY: unshare has no memory effects; called while the process is single-threaded.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("cannot create a network namespace ({e}); run as root, or pass --no-netns to use the host's loopback")));
    }
    let st = Command::new("ip").args(["link", "set", "lo", "up", "mtu", "1500"]).status()?;
    if !st.success() {
        return Err(io::Error::other("`ip link set lo up mtu 1500` failed (is iproute2 installed?)"));
    }
    // Per-namespace TCP settings: many short connections from one address need a wide
    // ephemeral port range and reuse of TIME_WAIT ports.
    let _ = std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "1024 65000");
    let _ = std::fs::write("/proc/sys/net/ipv4/tcp_tw_reuse", "1");
    let _ = std::fs::write("/proc/sys/net/core/somaxconn", "8192");
    let _ = std::fs::write("/proc/sys/net/ipv4/tcp_max_syn_backlog", "8192");
    Ok(())
}

/// Raise the open-file soft limit to the hard limit (children inherit it). Returns the limit.
pub fn raise_nofile() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
    r.rlim_cur
}
