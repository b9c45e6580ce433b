//! What a process costs, read from /proc: CPU time (user + system, every thread) and resident
//! memory. CPU time is the figure that holds on a busy machine, where wall-clock speed depends on
//! what else runs; it is counted in clock ticks (usually 10 ms), so each measurement runs long
//! enough to cover many ticks.

use std::io;

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU seconds (user + system, all threads) the process `pid` has used so far.
pub fn cpu_secs(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces; the fields after it are fixed.
    let after = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat"))?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // After ')': field 3 (state) is f[0]; utime is field 14, stime field 15.
    let parse = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat field"));
    Ok((parse(11)? + parse(12)?) as f64 / ticks_per_sec())
}

/// [`cpu_secs`] of `pid` and of its direct children (dante serves from worker processes).
pub fn tree_cpu_secs(pid: u32) -> io::Result<f64> {
    let mut total = cpu_secs(pid)?;
    for e in std::fs::read_dir("/proc")?.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)).and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(pid) {
            total += cpu_secs(child).unwrap_or(0.0);
        }
    }
    Ok(total)
}

/// Resident set size of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad VmRSS"))?;
            return Ok(kb * 1024);
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "no VmRSS"))
}

/// CPU seconds the calling thread has used (for the single-core cipher speed row).
pub fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
