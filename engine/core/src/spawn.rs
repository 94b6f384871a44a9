//! Starting a task's command straight into its cgroup: `clone3` with
//! `CLONE_INTO_CGROUP`, done the way glibc's `posix_spawn` does its own
//! work (a `CLONE_VM | CLONE_VFORK` child on a small stack of its own,
//! which only sets up its descriptors, process group and folder, then
//! execs), so the engine is not copied.
//!
//! Why: a task's shell used to move itself into its cgroup (`echo 0 >
//! cgroup.procs`) as its first act. A move between cgroups takes the
//! kernel's cgroup lock for writing, and so waits for every fork in flight
//! on the machine and holds up the next ones; with two tasks starting at
//! once on two cores, that wait showed as a tenth to a fifth of the wall
//! time of 501 trivial tasks (the same runs without cgroups, alternating).
//! A process cloned into its cgroup never moves. The standard library
//! cannot do this: its `posix_spawn` has no cgroup attribute (glibc added
//! one in 2.41), and a pre-exec hook would fork the whole engine.
//!
//! The child also gets its signal handlers reset by the kernel
//! (`CLONE_CLEAR_SIGHAND`, one flag where `posix_spawn` makes a system call
//! per signal), SIGPIPE back to its default (the Rust runtime ignores it),
//! and an empty signal mask, as the standard library's children do.
//!
//! x86_64 Linux only (the child's first instructions are a few lines of
//! assembly); elsewhere, or where the kernel refuses `clone3` (before 5.7,
//! or under a seccomp filter), [`spawn`] says [`SpawnError::Unsupported`]
//! and the caller starts the command the standard library's way.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use tokio::io::unix::AsyncFd;

/// Why a command was not started.
#[derive(Debug)]
pub enum SpawnError {
    /// This machine cannot start processes this way (no `clone3`, no
    /// `CLONE_INTO_CGROUP`, not x86_64): start it the standard way.
    Unsupported(io::Error),
    /// The command could not be started (its program is missing, its
    /// folder is gone, no descriptors left).
    Failed(io::Error),
}

/// Set once the kernel refused `clone3`: later spawns go the standard
/// way at once.
static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// Children dropped before they were waited for: killed, and reaped at the
/// next spawn so none stays a zombie.
static ORPHANS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// What to start: `program` with `args` (after `argv[0]`, which is
/// `program`), exactly the environment `env`, in folder `cwd`, in its own
/// process group, with stdin from `/dev/null` and stdout and stderr piped.
pub struct Launch<'a> {
    pub program: &'a Path,
    pub args: &'a [&'a OsStr],
    pub env: &'a BTreeMap<OsString, OsString>,
    pub cwd: &'a Path,
}

/// A started command: its pid (which is also its process group), and the
/// read ends of its stdout and stderr.
pub struct Child {
    pid: i32,
    pidfd: AsyncFd<OwnedFd>,
    status: Option<ExitStatus>,
    pub stdout: Option<tokio::net::unix::pipe::Receiver>,
    pub stderr: Option<tokio::net::unix::pipe::Receiver>,
}

impl Child {
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Waits for the command to end (its pidfd turns readable), then reaps
    /// it.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        loop {
            let mut ready = self.pidfd.readable().await?;
            match reap(self.pid, libc::WNOHANG)? {
                Some(s) => {
                    self.status = Some(s);
                    return Ok(s);
                }
                None => ready.clear_ready(),
            }
        }
    }
}

impl Drop for Child {
    /// A child dropped before it ended (a timeout, Ctrl-C) is killed, as
    /// `kill_on_drop` does for the standard way, and reaped now or at the
    /// next spawn.
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        // SAFETY: the pid is this process's unreaped child, so it cannot
        // have been reused.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
        }
        if !matches!(reap(self.pid, libc::WNOHANG), Ok(Some(_))) {
            ORPHANS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(self.pid);
        }
    }
}

/// Reaps `pid` if it has ended (`flags` `WNOHANG`) or once it ends (0).
fn reap(pid: i32, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
    let mut st = 0;
    loop {
        // SAFETY: waitpid writes only into `st`.
        let r = unsafe { libc::waitpid(pid, &mut st, flags) };
        if r == pid {
            return Ok(Some(ExitStatus::from_raw(st)));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn reap_orphans() {
    let mut orphans = ORPHANS.lock().unwrap_or_else(|p| p.into_inner());
    orphans.retain(|&pid| matches!(reap(pid, libc::WNOHANG), Ok(None)));
}

fn cstring(s: &OsStr, what: &str) -> Result<CString, SpawnError> {
    CString::new(s.as_bytes()).map_err(|_| {
        SpawnError::Failed(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        ))
    })
}

/// `fd` moved above the standard descriptors (0-2), so the child's `dup2`
/// onto them never clobbers another source (an engine started with its
/// stdout closed gets 1 from `pipe2`).
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor, owned below.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `n` was just made and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// A pipe, close-on-exec: (read end, made non-blocking for tokio; write
/// end, left blocking for the command).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`, owned below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just made and nothing else owns them.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let (r, w) = (above_stdio(r)?, above_stdio(w)?);
    // SAFETY: fcntl on a descriptor this function owns.
    unsafe {
        let flags = libc::fcntl(r.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(r.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((r, w))
}

/// `/dev/null` for every child's stdin, opened once.
fn dev_null() -> io::Result<RawFd> {
    static NULL: std::sync::OnceLock<Result<OwnedFd, i32>> = std::sync::OnceLock::new();
    let fd = NULL.get_or_init(|| {
        let f = std::fs::File::open("/dev/null").map_err(|e| e.raw_os_error().unwrap_or(0))?;
        above_stdio(f.into()).map_err(|e| e.raw_os_error().unwrap_or(0))
    });
    match fd {
        Ok(fd) => Ok(fd.as_raw_fd()),
        Err(code) => Err(io::Error::from_raw_os_error(*code)),
    }
}

/// Starts `launch`, in the cgroup whose folder `cgroup` holds open (or
/// where this process is, with `None`).
pub fn spawn(launch: &Launch, cgroup: Option<RawFd>) -> Result<Child, SpawnError> {
    if UNSUPPORTED.load(Ordering::Relaxed) {
        return Err(SpawnError::Unsupported(io::Error::from_raw_os_error(
            libc::ENOSYS,
        )));
    }
    imp::spawn(launch, cgroup)
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
mod imp {
    use super::*;

    pub fn spawn(_: &Launch, _: Option<RawFd>) -> Result<Child, SpawnError> {
        Err(SpawnError::Unsupported(io::Error::new(
            io::ErrorKind::Unsupported,
            "starting a process straight into a cgroup is built for x86_64 Linux only",
        )))
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod imp {
    use super::*;
    use std::cell::Cell;
    use std::ffi::c_char;

    /// The kernel's `struct clone_args` (version 2, with `cgroup`).
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }

    const CLONE_VM: u64 = 0x100;
    const CLONE_PIDFD: u64 = 0x1000;
    const CLONE_VFORK: u64 = 0x4000;
    const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

    /// Everything the child uses, made before the clone: the child shares
    /// the engine's memory and must not allocate, lock or unwind.
    struct Plan {
        path: *const c_char,
        argv: *const *const c_char,
        envp: *const *const c_char,
        cwd: *const c_char,
        fds: [RawFd; 3],
        /// The `errno` of the step that failed, written by the child.
        err: AtomicI32,
    }

    /// The child's stack: 64 KiB, one per thread, reused (the parent
    /// thread is suspended until the child has exec'd or exited, so two
    /// children never share one). glibc's `posix_spawn` uses 36 KiB.
    const STACK: usize = 64 << 10;

    struct Stack(*mut libc::c_void);

    impl Drop for Stack {
        fn drop(&mut self) {
            // SAFETY: mapped by `stack()` with this size; no child runs on
            // it (spawns on this thread are over).
            unsafe {
                libc::munmap(self.0, STACK);
            }
        }
    }

    thread_local! {
        static THREAD_STACK: Cell<Option<Stack>> = const { Cell::new(None) };
    }

    fn with_stack<T>(f: impl FnOnce(*mut libc::c_void) -> T) -> io::Result<T> {
        THREAD_STACK.with(|cell| {
            let stack = match cell.take() {
                Some(s) => s,
                None => {
                    // SAFETY: an anonymous private mapping; checked below.
                    let p = unsafe {
                        libc::mmap(
                            std::ptr::null_mut(),
                            STACK,
                            libc::PROT_READ | libc::PROT_WRITE,
                            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                            -1,
                            0,
                        )
                    };
                    if p == libc::MAP_FAILED {
                        return Err(io::Error::last_os_error());
                    }
                    Stack(p)
                }
            };
            let out = f(stack.0);
            cell.set(Some(stack));
            Ok(out)
        })
    }

    /// The child: runs on its own stack in the engine's memory until
    /// `execve` replaces it. Only system calls; a failure's `errno` goes to
    /// `plan.err` and the child exits with 127.
    extern "C" fn child_main(plan: *const Plan) -> ! {
        // SAFETY: `plan` outlives the child's use of it: the parent waits
        // (CLONE_VFORK) until the child has exec'd or exited.
        let p = unsafe { &*plan };
        let fail = || -> ! {
            // SAFETY: errno is this thread's; _exit ends only the child.
            unsafe {
                p.err.store(*libc::__errno_location(), Ordering::Relaxed);
                libc::_exit(127)
            }
        };
        // SAFETY: plain system calls on descriptors and strings the parent
        // keeps alive; none allocates or takes a lock.
        unsafe {
            if libc::setpgid(0, 0) != 0 {
                fail();
            }
            for (i, &fd) in p.fds.iter().enumerate() {
                if libc::dup2(fd, i as libc::c_int) < 0 {
                    fail();
                }
            }
            if libc::chdir(p.cwd) != 0 {
                fail();
            }
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            libc::execve(p.path, p.argv, p.envp);
        }
        fail()
    }

    /// `clone3` whose child starts `child_main(plan)` on the new stack;
    /// returns the child's pid (or `-errno`) in the parent only.
    ///
    /// # Safety
    /// `args` must describe a stack the child may use and `plan` must stay
    /// valid until the call returns (CLONE_VFORK makes that the child's
    /// exec or exit).
    unsafe fn clone3(args: &CloneArgs, plan: *const Plan) -> i64 {
        let ret: i64;
        // The child returns from the system call on the new stack, where
        // no Rust frame exists: it must call straight into `child_main`,
        // which never returns. r12 and r13 survive the system call in both
        // processes. The stack's top is 16-byte aligned, so the call leaves
        // the alignment the ABI expects.
        // SAFETY: see the function's contract.
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "xor ebp, ebp",
                "mov rdi, r12",
                "call r13",
                "ud2",
                "2:",
                inlateout("rax") libc::SYS_clone3 => ret,
                in("rdi") args as *const CloneArgs,
                in("rsi") std::mem::size_of::<CloneArgs>(),
                in("r12") plan,
                in("r13") child_main as extern "C" fn(*const Plan) -> ! as usize,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    pub fn spawn(launch: &Launch, cgroup: Option<RawFd>) -> Result<Child, SpawnError> {
        reap_orphans();
        let path = cstring(launch.program.as_os_str(), "the program's path")?;
        let mut argv_owned = vec![path.clone()];
        for a in launch.args {
            argv_owned.push(cstring(a, "an argument")?);
        }
        let mut envp_owned = Vec::with_capacity(launch.env.len());
        for (k, v) in launch.env {
            let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
            kv.extend_from_slice(k.as_bytes());
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp_owned.push(CString::new(kv).map_err(|_| {
                SpawnError::Failed(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "environment variable `{}` contains a NUL byte",
                        k.to_string_lossy()
                    ),
                ))
            })?);
        }
        let cwd = cstring(launch.cwd.as_os_str(), "the working folder")?;
        let ptrs = |v: &[CString]| {
            let mut p: Vec<*const c_char> = v.iter().map(|s| s.as_ptr()).collect();
            p.push(std::ptr::null());
            p
        };
        let (argv, envp) = (ptrs(&argv_owned), ptrs(&envp_owned));
        let null = dev_null().map_err(SpawnError::Failed)?;
        let (out_r, out_w) = pipe().map_err(SpawnError::Failed)?;
        let (err_r, err_w) = pipe().map_err(SpawnError::Failed)?;
        let plan = Plan {
            path: path.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            cwd: cwd.as_ptr(),
            fds: [null, out_w.as_raw_fd(), err_w.as_raw_fd()],
            err: AtomicI32::new(0),
        };
        let mut pidfd: RawFd = -1;
        let ret = with_stack(|stack| {
            let mut args = CloneArgs {
                flags: CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_CLEAR_SIGHAND,
                pidfd: &mut pidfd as *mut RawFd as u64,
                exit_signal: libc::SIGCHLD as u64,
                stack: stack as u64,
                stack_size: STACK as u64,
                ..CloneArgs::default()
            };
            if let Some(cg) = cgroup {
                args.flags |= CLONE_INTO_CGROUP;
                args.cgroup = cg as u64;
            }
            // SAFETY: the stack is this thread's and unused; `plan` and
            // everything it points to live until after the call.
            unsafe { clone3(&args, &plan) }
        })
        .map_err(SpawnError::Failed)?;
        drop((out_w, err_w));
        if ret < 0 {
            let e = io::Error::from_raw_os_error(-ret as i32);
            return Err(match -ret as i32 {
                // Out of processes or memory: the standard way would fail
                // the same.
                libc::EAGAIN | libc::ENOMEM | libc::ENOSPC => SpawnError::Failed(e),
                // No clone3, or flags it does not know: this machine
                // cannot do it at all.
                libc::ENOSYS | libc::EINVAL | libc::E2BIG => {
                    UNSUPPORTED.store(true, Ordering::Relaxed);
                    SpawnError::Unsupported(e)
                }
                // The cgroup cannot take this process (not writable here,
                // not a leaf, removed, a seccomp filter): this task goes
                // the standard way.
                _ => SpawnError::Unsupported(e),
            });
        }
        let pid = ret as i32;
        // SAFETY: CLONE_PIDFD wrote a new descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        let err = plan.err.load(Ordering::Relaxed);
        if err != 0 {
            // The child has exited already (the parent resumed at its
            // `_exit`): reap it.
            let _ = reap(pid, 0);
            return Err(SpawnError::Failed(io::Error::from_raw_os_error(err)));
        }
        let started = (|| {
            Ok::<_, io::Error>(Child {
                pid,
                // SAFETY: the `AsyncFd` owns the pidfd until it is dropped.
                pidfd: unsafe {
                    AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
                }
                .map_err(|e| e.into_parts().1)?,
                status: None,
                stdout: Some(tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(
                    out_r,
                )?),
                stderr: Some(tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(
                    err_r,
                )?),
            })
        })();
        started.map_err(|e| {
            // SAFETY: the pid is this process's unreaped child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            let _ = reap(pid, 0);
            SpawnError::Failed(e)
        })
    }
}

#[cfg(test)]
mod tests;
