//! Resource classes on one machine: a task is admitted only when its class
//! has a free slot and the machine's cpus, memory and gpus allow it.

use crate::compile::ResourceClass;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What the machine offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    pub cpus: u32,
    pub memory: u64,
    pub gpus: u32,
}

impl Machine {
    /// The machine's cores, memory (from /proc/meminfo) and GPUs (from
    /// `ENGINE_GPUS`, else `CUDA_VISIBLE_DEVICES`, else 0).
    pub fn detect() -> Machine {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| {
                        l.split_whitespace()
                            .nth(1)
                            .and_then(|k| k.parse::<u64>().ok())
                    })
            })
            .map(|kib| kib * 1024)
            .unwrap_or(u64::MAX);
        let gpus = std::env::var("ENGINE_GPUS")
            .ok()
            .and_then(|v| v.parse().ok())
            .or_else(|| {
                std::env::var("CUDA_VISIBLE_DEVICES").ok().map(|v| {
                    v.split(',')
                        .filter(|s| !s.trim().is_empty() && s.trim() != "-1")
                        .count() as u32
                })
            })
            .unwrap_or(0);
        Machine { cpus, memory, gpus }
    }
}

#[derive(Debug)]
struct State {
    cpus: u32,
    memory: u64,
    gpus: u32,
    slots_used: Vec<u32>,
}

/// Admission control for every class, shared by all tasks of a run.
#[derive(Debug)]
pub struct Pool {
    classes: Vec<ResourceClass>,
    state: Mutex<State>,
    notify: Notify,
    /// Classes shrunk to fit this machine, for the run's warnings.
    pub clamped: Vec<String>,
}

/// Resources held by one running unit; released on drop.
pub struct Grant {
    pool: Arc<Pool>,
    class: usize,
}

impl Grant {
    /// Threads the holder may use.
    pub fn threads(&self) -> usize {
        self.pool.classes[self.class].cpus as usize
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        let c = &self.pool.classes[self.class];
        let mut s = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
        s.cpus += c.cpus;
        s.memory += c.memory;
        s.gpus += c.gpus;
        s.slots_used[self.class] -= 1;
        drop(s);
        self.pool.notify.notify_waiters();
    }
}

impl Pool {
    /// A pool for these classes; a class larger than the machine is shrunk
    /// to the machine (it then runs alone) and named in `clamped`.
    pub fn new(classes: &[ResourceClass], machine: Machine) -> Arc<Pool> {
        let mut clamped = vec![];
        let classes: Vec<ResourceClass> = classes
            .iter()
            .map(|c| {
                let mut c = c.clone();
                let mut why = vec![];
                if c.cpus > machine.cpus {
                    why.push(format!("cpus {} -> {}", c.cpus, machine.cpus));
                    c.cpus = machine.cpus.max(1);
                }
                if c.memory > machine.memory {
                    why.push(format!("memory {} -> {} bytes", c.memory, machine.memory));
                    c.memory = machine.memory;
                }
                if c.gpus > machine.gpus {
                    why.push(format!("gpus {} -> {}", c.gpus, machine.gpus));
                    c.gpus = machine.gpus;
                }
                if !why.is_empty() {
                    clamped.push(format!(
                        "resource class `{}` asks for more than this machine has ({}); its tasks run alone",
                        c.name,
                        why.join(", ")
                    ));
                }
                c
            })
            .collect();
        let n = classes.len();
        Arc::new(Pool {
            classes,
            state: Mutex::new(State {
                cpus: machine.cpus.max(1),
                memory: machine.memory,
                gpus: machine.gpus,
                slots_used: vec![0; n],
            }),
            notify: Notify::new(),
            clamped,
        })
    }

    fn try_take(&self, class: usize) -> bool {
        let c = &self.classes[class];
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let slot_ok = c.slots.is_none_or(|max| s.slots_used[class] < max);
        if slot_ok && s.cpus >= c.cpus && s.memory >= c.memory && s.gpus >= c.gpus {
            s.cpus -= c.cpus;
            s.memory -= c.memory;
            s.gpus -= c.gpus;
            s.slots_used[class] += 1;
            true
        } else {
            false
        }
    }

    /// Waits until the class fits, then holds its resources.
    pub async fn acquire(self: &Arc<Self>, class: usize) -> Grant {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.try_take(class) {
                return Grant {
                    pool: self.clone(),
                    class,
                };
            }
            notified.await;
        }
    }

    pub fn class(&self, i: usize) -> &ResourceClass {
        &self.classes[i]
    }
}

/// Hands freed heap memory back to the OS. Long frame loops (decode,
/// tensors per batch) call it every few batches: glibc raises its mmap
/// threshold after large frees, so frame-sized buffers then come from the
/// heap and stay in the RSS once freed; extraction's peak RSS grew from
/// 152 MiB (1-minute video) to 291 MiB (30-minute video) that way. A fixed
/// low mmap threshold also cured it but cost 24% of a ResNet-18 forward
/// pass (every activation mapped and unmapped); a periodic trim costs
/// nothing measurable.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
