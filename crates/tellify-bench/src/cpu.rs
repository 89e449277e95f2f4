//! CPU accounting from `/proc`, so a report can say who used the machine's cores: per
//! server thread name, the bench, other processes, irq and iowait.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{json, Value};

/// Linux reports process CPU time in clock ticks of 1/100 s (`USER_HZ`) on every
/// architecture Rust supports; reading it through `sysconf` would need `libc` for one number.
pub(crate) const TICKS_PER_SECOND: f64 = 100.0;

pub(crate) struct CpuSample {
    pub(crate) taken: Instant,
    pub(crate) machine: MachineTicks,
    pub(crate) bench_ticks: u64,
    /// Server CPU ticks per thread name (`tokio-runtime-w`, `tellify-sqlite-`, ...).
    pub(crate) server_threads: Option<HashMap<String, u64>>,
    /// Every other process, children included (a compiler that exits inside the window
    /// is counted through its parent's `cutime`).
    pub(crate) other_processes: u64,
}

/// Machine-wide jiffies from the first line of `/proc/stat`.
#[derive(Clone, Copy, Default)]
pub(crate) struct MachineTicks {
    pub(crate) busy: u64,
    pub(crate) iowait: u64,
    /// `irq` + `softirq`: kernel work no process is charged for (loopback TCP, disk).
    pub(crate) interrupts: u64,
    pub(crate) total: u64,
}

/// CPU use over one load window, in percent of one core (a 2-core machine has 200%).
pub(crate) struct CpuReport {
    pub(crate) seconds: f64,
    /// Cores the machine has, from the ticks `/proc/stat` counted.
    pub(crate) cores: f64,
    pub(crate) machine_busy: f64,
    pub(crate) machine_iowait: f64,
    pub(crate) interrupts: f64,
    pub(crate) bench: f64,
    /// Per server thread name, busiest first.
    pub(crate) server_threads: Option<Vec<(String, f64)>>,
    pub(crate) other_processes: f64,
}

impl CpuSample {
    /// Samples the machine, this process, other processes and (if given) the server;
    /// `None` where `/proc` is missing.
    pub(crate) fn take(server_pid: Option<u32>) -> Option<CpuSample> {
        let machine = machine_ticks()?;
        let bench_ticks = process_ticks("/proc/self/stat")?.own;
        let server_threads = server_pid.and_then(thread_ticks);
        let other_processes = other_process_ticks(&[Some(std::process::id()), server_pid]);
        Some(CpuSample {
            taken: Instant::now(),
            machine,
            bench_ticks,
            server_threads,
            other_processes,
        })
    }
}

impl CpuReport {
    pub(crate) fn between(before: &CpuSample, after: &CpuSample) -> CpuReport {
        let seconds = after
            .taken
            .saturating_duration_since(before.taken)
            .as_secs_f64()
            .max(1e-9);
        let percent = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / seconds * 100.0;
        let server_threads = match (&before.server_threads, &after.server_threads) {
            (Some(first), Some(last)) => {
                let mut threads: Vec<(String, f64)> = last
                    .iter()
                    .map(|(name, ticks)| {
                        let earlier = first.get(name).copied().unwrap_or(0);
                        (name.clone(), percent(ticks.saturating_sub(earlier)))
                    })
                    .filter(|(_, used)| *used > 0.0)
                    .collect();
                threads.sort_by(|a, b| b.1.total_cmp(&a.1));
                Some(threads)
            }
            _ => None,
        };
        let (first, last) = (before.machine, after.machine);
        CpuReport {
            seconds,
            cores: percent(last.total.saturating_sub(first.total)) / 100.0,
            machine_busy: percent(last.busy.saturating_sub(first.busy)),
            machine_iowait: percent(last.iowait.saturating_sub(first.iowait)),
            interrupts: percent(last.interrupts.saturating_sub(first.interrupts)),
            bench: percent(after.bench_ticks.saturating_sub(before.bench_ticks)),
            server_threads,
            other_processes: percent(after.other_processes.saturating_sub(before.other_processes)),
        }
    }

    pub(crate) fn server(&self) -> Option<f64> {
        self.server_threads
            .as_ref()
            .map(|threads| threads.iter().map(|(_, used)| used).sum())
    }

    /// Busy time nobody above accounts for (kernel threads' rounding, short-lived
    /// processes whose parent has not reaped them yet).
    pub(crate) fn unaccounted(&self) -> f64 {
        let known =
            self.server().unwrap_or(0.0) + self.bench + self.other_processes + self.interrupts;
        (self.machine_busy - known).max(0.0)
    }

    pub(crate) fn summary(&self) -> String {
        let server = match (self.server(), &self.server_threads) {
            (Some(total), Some(threads)) => {
                let parts: Vec<String> = threads
                    .iter()
                    .take(3)
                    .map(|(name, used)| format!("{name} {used:.0}"))
                    .collect();
                format!("server {total:.0} ({}) + ", parts.join(", "))
            }
            _ => String::new(),
        };
        format!(
            "cpu % of one core ({:.0} cores): busy {:.0} = {server}bench {:.0} + other processes {:.0} + irq {:.0} + rest {:.0}; iowait {:.0}",
            self.cores,
            self.machine_busy,
            self.bench,
            self.other_processes,
            self.interrupts,
            self.unaccounted(),
            self.machine_iowait
        )
    }

    pub(crate) fn to_json(&self) -> Value {
        let threads = self.server_threads.as_ref().map(|threads| {
            threads
                .iter()
                .map(|(name, used)| (name.clone(), json!(used)))
                .collect::<serde_json::Map<String, Value>>()
        });
        json!({
            "unit": "percent of one core",
            "window_seconds": self.seconds,
            "cores": self.cores.round(),
            "machine_busy": self.machine_busy,
            "machine_iowait": self.machine_iowait,
            "irq_and_softirq": self.interrupts,
            "bench": self.bench,
            "server": self.server(),
            "server_threads": threads,
            "other_processes": self.other_processes,
            "unaccounted": self.unaccounted(),
        })
    }
}

pub(crate) fn machine_ticks() -> Option<MachineTicks> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|value| value.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let column = |index: usize| values.get(index).copied().unwrap_or(0);
    let total: u64 = (0..8).map(column).sum();
    let idle = column(3) + column(4);
    Some(MachineTicks {
        busy: total.saturating_sub(idle),
        iowait: column(4),
        interrupts: column(5) + column(6),
        total,
    })
}

/// CPU ticks from a `/proc/.../stat` file.
pub(crate) struct ProcessTicks {
    pub(crate) name: String,
    /// `utime + stime`.
    pub(crate) own: u64,
    /// `cutime + cstime`: reaped children.
    pub(crate) children: u64,
}

pub(crate) fn process_ticks(path: &str) -> Option<ProcessTicks> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the name comes field 3 (state); utime, stime, cutime, cstime are fields 14-17.
    let field = |index: usize| rest.get(index).and_then(|value| value.parse::<u64>().ok());
    Some(ProcessTicks {
        name,
        own: field(11)? + field(12)?,
        children: field(13)? + field(14)?,
    })
}

/// CPU ticks of every thread of `pid`, summed per thread name.
pub(crate) fn thread_ticks(pid: u32) -> Option<HashMap<String, u64>> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut by_name: HashMap<String, u64> = HashMap::new();
    for entry in entries.flatten() {
        let path = entry.path().join("stat");
        if let Some(ticks) = path.to_str().and_then(process_ticks) {
            *by_name.entry(ticks.name).or_default() += ticks.own;
        }
    }
    Some(by_name)
}

/// Ticks of every process except `excluded`, with their reaped children.
pub(crate) fn other_process_ticks(excluded: &[Option<u32>]) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if excluded.contains(&Some(pid)) {
            continue;
        }
        if let Some(ticks) = process_ticks(&format!("/proc/{pid}/stat")) {
            total += ticks.own + ticks.children;
        }
    }
    total
}
