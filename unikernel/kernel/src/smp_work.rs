//! Running one job on several CPUs at once (cf. `on_each_cpu_mask()` with
//! `wait`): slot 0 on the calling (boot) CPU, the others queued on the
//! application processors' work queues ([`ipi::queue_work_on`]). Everyone
//! starts together once all are queued, and the call returns only after
//! every slot has finished — the job and its state live on the caller's
//! stack.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::arch::x86_64::percpu::{self, MAX_CPUS};
use crate::arch::x86_64::{ipi, smp};

/// One slot's share: which slot, and the run it belongs to.
struct Task {
    slot: usize,
    run: *const Run<'static>,
}

/// A run in progress, on the caller's stack.
struct Run<'a> {
    job: &'a (dyn Fn(usize, usize) + Sync),
    go: AtomicBool,
    remaining: AtomicUsize,
}

/// Runs `job(slot, cpu)` on the first `n` online CPUs; see the module docs.
/// `job` must not use the kernel heap (the slab allocator takes a global
/// lock that panics when contended) and must finish on its own.
pub fn run_on_cpus(n: usize, job: &(dyn Fn(usize, usize) + Sync)) -> Result<(), &'static str> {
    let mut cpus = [0usize; MAX_CPUS];
    let mut online = 0;
    for (cpu, _) in smp::online_cpus().take(n.min(MAX_CPUS)) {
        cpus[online] = cpu;
        online += 1;
    }
    if n == 0 || online < n {
        return Err("fewer CPUs online than asked for");
    }
    if percpu::this_cpu_id() != cpus[0] {
        return Err("runs from the boot CPU only");
    }
    let run = Run {
        job,
        go: AtomicBool::new(false),
        remaining: AtomicUsize::new(n - 1),
    };
    // The tasks point at `run`; both outlive every use (we wait below).
    let run_ptr = (&raw const run).cast::<Run<'static>>();
    let tasks: [Task; MAX_CPUS] = core::array::from_fn(|slot| Task { slot, run: run_ptr });
    let mut failed = false;
    for slot in 1..n {
        let work = ipi::Work {
            func: run_task,
            arg: (&raw const tasks[slot]) as usize,
        };
        if let Err(e) = ipi::queue_work_on(cpus[slot], work) {
            log::warn!("smp: cannot queue work on CPU {}: {e:?}", cpus[slot]);
            run.remaining.fetch_sub(1, Ordering::AcqRel);
            failed = true;
        }
    }
    // Interrupts on meanwhile: the other CPUs' jobs may unmap kernel
    // memory, and their TLB shootdowns wait for this CPU's acknowledgement
    // (cf. the WARN in smp_call_function_many() with interrupts off).
    let were_enabled = x86_64::instructions::interrupts::are_enabled();
    x86_64::instructions::interrupts::enable();
    run.go.store(true, Ordering::Release);
    job(0, cpus[0]);
    // Unconditionally: the tasks borrow this frame.
    while run.remaining.load(Ordering::Acquire) != 0 {
        core::hint::spin_loop();
    }
    if !were_enabled {
        x86_64::instructions::interrupts::disable();
    }
    if failed {
        return Err("a CPU's work queue refused the job");
    }
    Ok(())
}

/// A queued slot: wait for the start, run, report.
fn run_task(arg: usize) {
    // SAFETY: `arg` is the address of a `Task` in `run_on_cpus`'s frame,
    // which waits for `remaining` to reach 0 before returning, and this
    // task decrements it only as its last access to the task and the run.
    let task = unsafe { &*(arg as *const Task) };
    // SAFETY: as above, the `Run` outlives this call.
    let run = unsafe { &*task.run };
    while !run.go.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    (run.job)(task.slot, percpu::this_cpu_id());
    run.remaining.fetch_sub(1, Ordering::AcqRel);
}
