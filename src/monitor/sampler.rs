//! One sample of the host and of each instance's process tree, read with `sysinfo` (processes,
//! memory, CPU) and `statvfs` (the data dir's filesystem). Blocking; the monitor runs it on the
//! blocking pool.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// The host as a whole.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct HostUsage {
    /// Of all cores together, 0–100.
    pub cpu_percent: f32,
    pub cpus: usize,
    pub memory_total: u64,
    pub memory_used: u64,
    pub memory_available: u64,
    pub swap_total: u64,
    pub swap_used: u64,
    /// 1, 5 and 15 minute load averages.
    pub load: [f64; 3],
    /// The filesystem holding the data dir.
    pub disk_total: u64,
    pub disk_used: u64,
}

/// One instance's processes: the agent and everything it started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tree {
    pub memory_bytes: u64,
    /// Of one core (so up to 100 × cores).
    pub cpu_percent: f32,
    pub processes: usize,
}

pub struct Sampler {
    system: System,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    pub fn new() -> Self {
        Self {
            system: System::new(),
        }
    }

    /// The host, and for each `(key, pids)` those processes and everything under them, each
    /// counted once.
    pub fn sample(
        &mut self,
        data_dir: &Path,
        roots: &[(String, Vec<u32>)],
    ) -> (HostUsage, HashMap<String, Tree>) {
        self.system.refresh_memory();
        self.system.refresh_cpu_usage();
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing().with_memory().with_cpu(),
        );
        let mut children: HashMap<Pid, Vec<Pid>> = HashMap::new();
        for (pid, process) in self.system.processes() {
            // Threads are listed beside processes on Linux; their memory is the process's.
            if process.thread_kind().is_some() {
                continue;
            }
            if let Some(parent) = process.parent() {
                children.entry(parent).or_default().push(*pid);
            }
        }
        let trees = roots
            .iter()
            .map(|(key, pids)| {
                let pids = pids.iter().map(|&pid| Pid::from_u32(pid)).collect();
                (key.clone(), self.tree(pids, &children))
            })
            .collect();
        let load = System::load_average();
        let (disk_total, disk_used) = disk_usage(data_dir);
        let host = HostUsage {
            cpu_percent: self.system.global_cpu_usage(),
            cpus: self.system.cpus().len(),
            memory_total: self.system.total_memory(),
            memory_used: self.system.used_memory(),
            memory_available: self.system.available_memory(),
            swap_total: self.system.total_swap(),
            swap_used: self.system.used_swap(),
            load: [load.one, load.five, load.fifteen],
            disk_total,
            disk_used,
        };
        (host, trees)
    }

    fn tree(&self, roots: Vec<Pid>, children: &HashMap<Pid, Vec<Pid>>) -> Tree {
        let mut tree = Tree::default();
        let mut seen = std::collections::HashSet::new();
        let mut stack = roots;
        while let Some(pid) = stack.pop() {
            if !seen.insert(pid) {
                continue;
            }
            let Some(process) = self.system.process(pid) else {
                continue;
            };
            tree.memory_bytes += process.memory();
            tree.cpu_percent += process.cpu_usage();
            tree.processes += 1;
            if let Some(kids) = children.get(&pid) {
                stack.extend(kids);
            }
        }
        tree
    }
}

/// Total and used bytes of the filesystem holding `path`.
fn disk_usage(path: &Path) -> (u64, u64) {
    match rustix::fs::statvfs(path) {
        Ok(stat) => {
            let total = stat.f_blocks * stat.f_frsize;
            let free = stat.f_bfree * stat.f_frsize;
            (total, total.saturating_sub(free))
        }
        Err(_) => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_tree_counts_its_children() {
        let mut sampler = Sampler::new();
        let me = std::process::id();
        // Named twice (as a cgroup's members can be parent and child): counted once.
        let (host, trees) = sampler.sample(Path::new("."), &[("me".into(), vec![me, me])]);
        assert!(host.memory_total > 0 && host.cpus > 0 && host.disk_total > 0);
        let tree = trees["me"];
        assert!(tree.processes >= 1);
        assert!(tree.memory_bytes > 1024 * 1024, "{tree:?}");
        let (_, again) = sampler.sample(Path::new("."), &[("me".into(), vec![me])]);
        assert_eq!(again["me"].processes, tree.processes);
        let (_, missing) = sampler.sample(Path::new("."), &[("gone".into(), vec![u32::MAX - 1])]);
        assert_eq!(missing["gone"], Tree::default());
    }
}
