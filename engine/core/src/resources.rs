//! Resource classes on one machine: a task is admitted only when its class
//! has a free slot and the machine's cpus, memory and gpus allow it.

use crate::compile::ResourceClass;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

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
    /// Who waits, per class, first come first served. A release hands its
    /// resources to the first waiters that now fit, and wakes only them:
    /// before, every release woke every waiter to try again, so a run of N
    /// queued tasks did O(N^2) wake-ups (10% of the engine's CPU at 501
    /// tasks, and the superlinear cold time at 5,001).
    waiters: Vec<VecDeque<oneshot::Sender<()>>>,
}

impl State {
    fn fits(&self, c: &ResourceClass, class: usize) -> bool {
        c.slots.is_none_or(|max| self.slots_used[class] < max)
            && self.cpus >= c.cpus
            && self.memory >= c.memory
            && self.gpus >= c.gpus
    }
    fn take(&mut self, c: &ResourceClass, class: usize) {
        self.cpus -= c.cpus;
        self.memory -= c.memory;
        self.gpus -= c.gpus;
        self.slots_used[class] += 1;
    }
    fn give_back(&mut self, c: &ResourceClass, class: usize) {
        self.cpus += c.cpus;
        self.memory += c.memory;
        self.gpus += c.gpus;
        self.slots_used[class] -= 1;
    }
}

/// Admission control for every class, shared by all tasks of a run.
#[derive(Debug)]
pub struct Pool {
    classes: Vec<ResourceClass>,
    state: Mutex<State>,
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
        self.pool.release(self.class);
    }
}

/// A place in a class's queue; if it is given up (the waiting task was
/// cancelled) after resources were handed to it, it hands them back.
struct Waiting {
    rx: Option<oneshot::Receiver<()>>,
    pool: Arc<Pool>,
    class: usize,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.pool.release(self.class);
            }
        }
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
                waiters: (0..n).map(|_| VecDeque::new()).collect(),
            }),
            clamped,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns a grant's resources and hands them on to the first waiters,
    /// class by class, that now fit.
    fn release(&self, class: usize) {
        let mut s = self.lock();
        s.give_back(&self.classes[class], class);
        for (i, c) in self.classes.iter().enumerate() {
            while let Some(front) = s.waiters[i].front() {
                if front.is_closed() {
                    s.waiters[i].pop_front();
                    continue;
                }
                if !s.fits(c, i) {
                    break;
                }
                s.take(c, i);
                let tx = s.waiters[i].pop_front().expect("a front waiter");
                if tx.send(()).is_err() {
                    // Gone between the check and the send.
                    s.give_back(c, i);
                }
            }
        }
    }

    /// Waits until the class fits, then holds its resources. Waiters of a
    /// class are served in the order they came.
    pub async fn acquire(self: &Arc<Self>, class: usize) -> Grant {
        let rx = {
            let mut s = self.lock();
            let c = &self.classes[class];
            if s.waiters[class].is_empty() && s.fits(c, class) {
                s.take(c, class);
                return Grant {
                    pool: self.clone(),
                    class,
                };
            }
            let (tx, rx) = oneshot::channel();
            s.waiters[class].push_back(tx);
            rx
        };
        let mut w = Waiting {
            rx: Some(rx),
            pool: self.clone(),
            class,
        };
        // The sender lives in the pool, which `w` keeps alive: it sends.
        let _ = w.rx.as_mut().expect("set above").await;
        w.rx = None;
        Grant {
            pool: self.clone(),
            class,
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
/// nothing measurable. The model worker (`engine-worker`), where the frame
/// loops run, uses glibc's allocator; the `engine` binary allocates through
/// mimalloc, which returns freed pages by itself, so there this reaches
/// only what C libraries allocated.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, cpus: u32, slots: Option<u32>) -> ResourceClass {
        ResourceClass {
            name: name.into(),
            cpus,
            memory: 0,
            gpus: 0,
            slots,
            partition: None,
        }
    }

    fn machine(cpus: u32) -> Machine {
        Machine {
            cpus,
            memory: u64::MAX,
            gpus: 0,
        }
    }

    #[tokio::test]
    async fn waiters_are_served_in_order_and_a_cancelled_one_gives_its_turn_back() {
        let pool = Pool::new(&[class("one", 1, None)], machine(1));
        let held = pool.acquire(0).await;
        let order = Arc::new(Mutex::new(vec![]));
        let mut tasks = vec![];
        for i in 0..5 {
            let (p, order) = (pool.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let g = p.acquire(0).await;
                order.lock().unwrap().push(i);
                tokio::task::yield_now().await;
                drop(g);
            }));
            // Queue them in a known order.
            while pool.lock().waiters[0].len() < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        // One waiter gives up before its turn.
        tasks.remove(2).abort();
        tokio::task::yield_now().await;
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 3, 4]);
        let s = pool.lock();
        assert_eq!((s.cpus, s.slots_used[0]), (1, 0), "resources leaked");
        assert!(s.waiters[0].is_empty());
    }

    #[tokio::test]
    async fn a_full_class_does_not_block_another_that_fits() {
        let pool = Pool::new(
            &[class("big", 2, Some(1)), class("small", 1, None)],
            machine(4),
        );
        let _big = pool.acquire(0).await;
        // A second `big` waits for its slot...
        let waiting = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.acquire(0).await })
        };
        while pool.lock().waiters[0].is_empty() {
            tokio::task::yield_now().await;
        }
        // ...while `small` tasks take the free cpus at once.
        let a = pool.acquire(1).await;
        let b = pool.acquire(1).await;
        assert_eq!(pool.lock().cpus, 0);
        drop((a, b));
        assert!(!waiting.is_finished());
        drop(_big);
        let g = waiting.await.unwrap();
        assert_eq!(g.threads(), 2);
    }

    #[tokio::test]
    async fn a_grant_handed_to_a_waiter_that_is_dropped_is_returned() {
        let pool = Pool::new(&[class("one", 1, None)], machine(1));
        let held = pool.acquire(0).await;
        let fut = pool.acquire(0);
        let mut fut = Box::pin(fut);
        // Register in the queue, then let the release hand the cpu over
        // before the waiter is polled again, then drop the waiter.
        assert!(futures::poll!(&mut fut).is_pending());
        drop(held);
        drop(fut);
        let s = pool.lock();
        assert_eq!((s.cpus, s.slots_used[0]), (1, 0), "resources leaked");
    }
}
