//! A team of threads that runs a whole decoding step in lockstep: every member runs the same
//! phases, each on its share of the rows, panels or sequences, and a spinning barrier separates
//! the phases. One wake-up per step instead of one per parallel loop (about 60 per token), which
//! on few cores costs more than the small products between them. The team has its own pool, so
//! its barriers never wait on a thread busy with another caller's work.
use std::marker::PhantomData;
use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Threads that run [`Team::run`]'s closure together.
pub struct Team {
    pool: Option<rayon::ThreadPool>,
    threads: usize,
}

impl Team {
    /// A team of `threads` (at least one; a team of one runs on the caller's thread).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let pool = (threads > 1)
            .then(|| rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("team-{i}")).build())
            .and_then(Result::ok);
        let threads = if pool.is_some() { threads } else { 1 };
        Self { pool, threads }
    }

    /// As many members as the global pool has threads (`RAYON_NUM_THREADS`).
    pub fn global() -> Self {
        Self::new(rayon::current_num_threads())
    }

    /// Runs `f` on every member at once and returns when all have finished. A member's panic
    /// reaches the others at their next sync, and the first panic (its own message) the caller:
    /// never a team left waiting.
    pub fn run(&self, f: impl Fn(&Member) + Sync) {
        let barrier = Barrier {
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            n: self.threads,
            poisoned: AtomicBool::new(false),
        };
        let first_panic = Mutex::new(None);
        let member = |index| {
            let m = Member { index, count: self.threads, barrier: &barrier };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(&m))) {
                // The payload first, then the poison: those the poison stops find it taken.
                first_panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(payload);
                barrier.poisoned.store(true, Ordering::Release);
            }
        };
        match &self.pool {
            None => member(0),
            Some(pool) => {
                pool.broadcast(|ctx| member(ctx.index()));
            }
        }
        if let Some(payload) = first_panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
            resume_unwind(payload);
        }
    }
}

/// One thread of a running team.
pub struct Member<'a> {
    index: usize,
    count: usize,
    barrier: &'a Barrier,
}

impl Member<'_> {
    /// This member's part of 0..len: contiguous, the parts' sizes differ by at most one.
    pub fn share(&self, len: usize) -> Range<usize> {
        len * self.index / self.count..len * (self.index + 1) / self.count
    }

    /// Waits until every member got here: what one wrote before is visible to all after.
    pub fn sync(&self) {
        self.barrier.wait();
    }
}

/// A sense-counting barrier that spins briefly, then yields (a busy machine still progresses).
struct Barrier {
    arrived: AtomicUsize,
    generation: AtomicUsize,
    n: usize,
    /// A member panicked: the others stop waiting for it.
    poisoned: AtomicBool,
}

impl Barrier {
    fn wait(&self) {
        if self.n == 1 {
            return;
        }
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            assert!(!self.poisoned.load(Ordering::Acquire), "another member of the team panicked");
            if spins < 1 << 10 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// A buffer the members of a team write in disjoint parts between two syncs and read after.
#[derive(Clone, Copy)]
pub struct Shared<'a> {
    ptr: *mut f32,
    len: usize,
    _buf: PhantomData<&'a mut [f32]>,
}

// SAFETY: members only write disjoint parts between syncs (the callers' contract below).
unsafe impl Send for Shared<'_> {}
unsafe impl Sync for Shared<'_> {}

impl<'a> Shared<'a> {
    pub fn new(buf: &'a mut [f32]) -> Self {
        Self { ptr: buf.as_mut_ptr(), len: buf.len(), _buf: PhantomData }
    }

    /// The whole buffer to read.
    ///
    /// # Safety
    /// No member writes it until the next sync.
    pub unsafe fn read(&self) -> &'a [f32] {
        std::slice::from_raw_parts(self.ptr, self.len)
    }

    /// Elements `r` to write.
    ///
    /// # Safety
    /// No other member reads or writes them until the next sync.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn part(&self, r: Range<usize>) -> &'a mut [f32] {
        assert!(r.start <= r.end && r.end <= self.len, "part {r:?} of a buffer of {}", self.len);
        std::slice::from_raw_parts_mut(self.ptr.add(r.start), r.len())
    }

    /// The raw start, for writers of strided parts (the panels of a product).
    pub fn ptr(&self) -> *mut f32 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
