//! What `/proc` says about a process: CPU time (`stat`: utime + stime), resident memory (`status`: VmRSS),
//! and CPU pinning of all its threads (`task/`, `sched_setaffinity`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustix::process::Pid;
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// utime + stime in clock ticks from the text of `/proc/PID/stat`. The command name (field 2) is in
/// parentheses and may hold spaces and parentheses itself, so fields are counted after the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0, so utime (field 14) is index 11 and stime index 12.
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line such as `VmRSS:` from the text of `/proc/PID/status`, in bytes.
pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(n * 1024),
            Some(_) => None,
        }
    })
}

/// Busy clock ticks per line of the text of `/proc/stat`: `("cpu", all)`, `("cpu0", …)`, … Busy is
/// user + nice + system + irq + softirq + steal (guest time is already inside user).
pub fn parse_proc_stat_busy(stat: &str) -> Vec<(String, u64)> {
    stat.lines()
        .filter(|l| l.starts_with("cpu"))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?.to_string();
            let v: Vec<u64> = fields.map_while(|f| f.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal …
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            (v.len() >= 4).then(|| (name, at(0) + at(1) + at(2) + at(5) + at(6) + at(7)))
        })
        .collect()
}

/// Busy CPU seconds of the whole machine (`cpu`) and of each CPU (`cpuN`) so far.
pub fn machine_busy_seconds() -> Vec<(String, f64)> {
    let hz = rustix::param::clock_ticks_per_second() as f64;
    std::fs::read_to_string("/proc/stat")
        .map(|text| {
            parse_proc_stat_busy(&text)
                .into_iter()
                .map(|(name, ticks)| (name, ticks as f64 / hz))
                .collect()
        })
        .unwrap_or_default()
}

/// Sets the nice value of the calling thread, which the threads and processes it starts afterwards
/// inherit (negative values need root), and of this process's scheduler autogroup where the kernel has
/// them (`/proc/self/autogroup`): with autogroups, nice only ranks threads within their own group, while
/// groups (sessions) share the CPUs evenly.
///
/// The autogroup is shared with the rest of the session (the shell that started this), so its previous
/// nice value is put back when the returned guard is dropped.
pub fn set_nice(nice: i32) -> std::io::Result<AutogroupGuard> {
    rustix::process::setpriority_process(None, nice)?;
    let path = std::path::Path::new("/proc/self/autogroup");
    let previous = match std::fs::read_to_string(path) {
        // "/autogroup-60 nice 0"
        Ok(text) => text
            .split_whitespace()
            .last()
            .and_then(|n| n.parse::<i32>().ok()),
        Err(_) => None,
    };
    if previous.is_some() {
        std::fs::write(path, nice.to_string())?;
    }
    Ok(AutogroupGuard { previous })
}

/// Puts the autogroup's nice value back on drop.
#[derive(Debug)]
pub struct AutogroupGuard {
    previous: Option<i32>,
}

impl Drop for AutogroupGuard {
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            let _ = std::fs::write("/proc/self/autogroup", previous.to_string());
        }
    }
}

/// CPU seconds (user + system) `pid` has used so far, all threads; `None` once it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_stat_cpu_ticks(&text)?;
    Some(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// CPU seconds used by this process so far (the load generator and the upstream).
pub fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds(std::process::id())
}

/// VmRSS of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kb(&text, "VmRSS")
}

/// The process name (`/proc/PID/comm`), to show which process was measured.
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The CPUs this thread may run on.
pub fn allowed_cpus() -> Vec<usize> {
    match sched_getaffinity(None) {
        Ok(set) => (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect(),
        Err(_) => Vec::new(),
    }
}

fn one_cpu(cpu: usize) -> CpuSet {
    let mut set = CpuSet::new();
    set.set(cpu);
    set
}

/// Pins the calling thread (and so every thread and child process it starts afterwards) to `cpu`.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    sched_setaffinity(None, &one_cpu(cpu)).map_err(Into::into)
}

/// Pins every thread `pid` has now to `cpu` (threads it starts later inherit from their creator); returns
/// how many were pinned. Threads that exit meanwhile are skipped.
pub fn pin_process(pid: u32, cpu: usize) -> usize {
    let set = one_cpu(cpu);
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(Pid::from_raw)
        .filter(|&tid| sched_setaffinity(Some(tid), &set).is_ok())
        .count()
}

/// Samples the summed VmRSS of some processes every 50 ms on a thread, keeping the largest.
#[derive(Debug)]
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    /// Starts sampling `pids` (their sum).
    pub fn start(pids: Vec<u32>) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            loop {
                let sum: u64 = pids.iter().filter_map(|&p| rss_bytes(p)).sum();
                peak = peak.max(sum);
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        RssSampler { stop, thread }
    }

    /// Stops and returns the peak in bytes.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_ticks() {
        // A real line (Envoy), and a name with spaces and parentheses.
        let stat = "4242 (envoy) S 4200 4242 4200 0 -1 4194560 9076 0 0 0 153 47 0 0 20 0 11 0 \
                    123456 2000000000 16000 18446744073709551615 1 1 0 0 0 0 0 4096 16898 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(200));
        let odd = "7 (my (odd) name) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_stat_cpu_ticks(odd), Some(11));
        assert_eq!(parse_stat_cpu_ticks("7 (short) R 1"), None);
        assert_eq!(parse_stat_cpu_ticks("no parens"), None);
    }

    #[test]
    fn proc_stat_busy() {
        let stat = "cpu  100 5 50 1000 7 1 2 3 0 0\ncpu0 60 0 30 500 3 1 1 2 0 0\ncpu1 40 5 20 500 4 0 1 1 0 0\nintr 1 2 3\nctxt 99\n";
        assert_eq!(
            parse_proc_stat_busy(stat),
            vec![
                ("cpu".to_string(), 161),
                ("cpu0".to_string(), 94),
                ("cpu1".to_string(), 67)
            ]
        );
    }

    #[test]
    fn status_kb() {
        let status = "Name:\tenvoy\nVmPeak:\t 2190000 kB\nVmHWM:\t   70000 kB\nVmRSS:\t   67584 kB\nThreads:\t11\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(67584 * 1024));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(70000 * 1024));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        // "VmRSSx" is not "VmRSS".
        assert_eq!(parse_status_kb("VmRSSx:\t1 kB\n", "VmRSS"), None);
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).is_some_and(|b| b > 0));
        assert!(cpu_seconds(pid).is_some());
        assert!(!allowed_cpus().is_empty());
    }
}
