//! What the report says about the machine and the processes: from `/proc` and `git`.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::report::ProcessFigures;

/// Clock ticks per second of `/proc/<pid>/stat` times. `USER_HZ` is 100 on every Linux
/// architecture this runs on; reading it needs `sysconf`, which would need unsafe code.
pub const USER_HZ: f64 = 100.0;

/// The machine a run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// Host name.
    pub hostname: String,
    /// Total memory, in bytes.
    pub memory_bytes: u64,
    /// 1-, 5- and 15-minute load averages when the report was written: other work on the
    /// machine competes with the server and the load generator.
    pub load_average: [f64; 3],
}

/// The source tree a run was built from.
#[derive(Debug, Clone, Serialize)]
pub struct GitInfo {
    /// `git rev-parse HEAD`, or `unknown`.
    pub revision: String,
    /// Whether the work tree had uncommitted changes.
    pub dirty: bool,
}

/// CPU time and memory of one process at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// User plus system CPU time, in seconds.
    pub cpu_secs: f64,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
}

/// Describes this machine.
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_bytes = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        hostname: read_trimmed("/proc/sys/kernel/hostname"),
        memory_bytes,
        load_average: load_average(),
    }
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`), zeros if unreadable.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut out = [0.0; 3];
    for (slot, v) in out.iter_mut().zip(text.split_whitespace()) {
        *slot = v.parse().unwrap_or(0.0);
    }
    out
}

/// The git revision of the current directory's repository (read-only git commands).
pub fn git() -> GitInfo {
    let revision = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty());
    GitInfo { revision, dirty }
}

/// Samples a process's CPU time and RSS from `/proc/<pid>`; `None` if it is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    sample_path(&Path::new("/proc").join(pid.to_string()))
}

/// Samples this process.
pub fn sample_self() -> Option<ProcSample> {
    sample_path(Path::new("/proc/self"))
}

fn sample_path(dir: &Path) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // The command name (field 2) may hold spaces; fields are counted after its ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at indices 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Some(ProcSample {
        cpu_secs: (utime + stime) / USER_HZ,
        rss_bytes: rss_kb * 1024,
    })
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Today's UTC date (`YYYY-MM-DD`) and time (`HHMMSS`) from the system clock.
pub fn utc_stamp() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}{:02}{:02}", rem / 3600, (rem / 60) % 60, rem % 60),
    )
}

/// The current UTC time as a report's `started_utc` (`YYYY-MM-DDTHH:MM:SSZ`).
pub fn utc_started() -> String {
    let (date, time) = utc_stamp();
    format!("{date}T{}:{}:{}Z", &time[0..2], &time[2..4], &time[4..6])
}

/// CPU time of the server (when its pid is known) and of this process at the start of a
/// measured window.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    server_pid: Option<u32>,
    server: Option<ProcSample>,
    own: Option<ProcSample>,
}

/// CPU and memory of the server and of this process over a measured window.
#[derive(Debug, Clone, Default)]
pub struct WindowCpu {
    /// The server's (with its pid).
    pub server: Option<ProcessFigures>,
    /// This process's.
    pub loadgen: Option<ProcessFigures>,
}

impl CpuMark {
    /// Samples both processes now.
    pub fn take(server_pid: Option<u32>) -> CpuMark {
        CpuMark {
            server_pid,
            server: server_pid.and_then(sample),
            own: sample_self(),
        }
    }

    /// Samples both again and divides the CPU time used by `window_secs`.
    pub fn finish(self, window_secs: f64) -> WindowCpu {
        let server = match (self.server_pid, self.server) {
            (Some(pid), Some(begin)) => {
                sample(pid).map(|end| ProcessFigures::over(pid, begin, end, window_secs, 0))
            }
            _ => None,
        };
        let loadgen = self.own.zip(sample_self()).map(|(begin, end)| {
            ProcessFigures::over(std::process::id(), begin, end, window_secs, 0)
        });
        WindowCpu { server, loadgen }
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_781), (2026, 11, 24));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn samples_this_process() {
        let s = sample_self().unwrap();
        assert!(s.rss_bytes > 0);
        assert!(machine().cores >= 1);
    }
}
