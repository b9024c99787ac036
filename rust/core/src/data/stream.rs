//! The threaded pipeline: `threads` workers take batch jobs from a queue and build whole batches
//! (GIL-free, no Python involved); the consumer takes results in submission order or as they
//! finish. Jobs are submitted by the consumer a few batches ahead (the prefetch window); when a
//! per-batch decision that depends on training changes (MedCLM stages, curriculum weights) the
//! consumer withdraws the jobs it affects ([`BatchStream::cancel`]) and submits them again, so
//! what is delivered does not depend on the window. Dropping the stream stops and joins every
//! worker.
//!
//! With `threads == 0` nothing runs in the background: `next` builds the job inline, as
//! `torch.utils.data.DataLoader(num_workers=0)` does in the main process.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::batch::{build_batch_prefetched, Batch};
use super::sample::DatasetSpec;
use crate::error::{Error, Result};
use crate::storage::Pending;

/// One batch to build.
#[derive(Clone, Debug)]
pub struct BatchJob {
    pub id: u64,
    pub indices: Vec<usize>,
    /// MedCLM stage codes per sample, or empty.
    pub stages: Vec<i8>,
}

/// What [`BatchStream::next_within`] found.
pub enum Next {
    Ready(u64, Box<Result<Batch>>),
    /// No such job is pending.
    Empty,
    TimedOut,
}

#[derive(Default)]
struct State {
    /// Jobs not yet taken, each with the reads of its remote images, started at submission.
    queue: VecDeque<(BatchJob, Vec<Option<Pending>>)>,
    done: HashMap<u64, Result<Batch>>,
    running: usize,
    /// The jobs workers are building.
    building: HashSet<u64>,
    /// Cancelled jobs a worker is building: their results are dropped when they finish.
    discard: HashSet<u64>,
    stop: bool,
    /// Workers that have not returned yet.
    alive: usize,
}

struct Shared {
    state: Mutex<State>,
    job_ready: Condvar,
    result_ready: Condvar,
    exited: Condvar,
}

/// How long dropping a stream waits for a worker still inside a job (a read that never returns,
/// e.g. on a hung network mount) before leaving it behind: closing never blocks forever.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // a worker panic is caught before it can poison the lock; recover the data regardless
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct BatchStream {
    spec: Arc<DatasetSpec>,
    epoch: u64,
    seed: u64,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

fn run_job(
    spec: &DatasetSpec,
    job: &BatchJob,
    prefetched: Vec<Option<Pending>>,
    epoch: u64,
    seed: u64,
) -> Result<Batch> {
    crate::image::decode::without_panics(|| {
        build_batch_prefetched(spec, &job.indices, &job.stages, epoch, seed, prefetched)
    })
    .unwrap_or_else(|what| {
        Err(Error::invalid(format!(
            "internal error while building batch {}: {what}",
            job.id
        )))
    })
}

impl BatchStream {
    pub fn new(spec: Arc<DatasetSpec>, epoch: u64, seed: u64, threads: usize) -> BatchStream {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            job_ready: Condvar::new(),
            result_ready: Condvar::new(),
            exited: Condvar::new(),
        });
        shared.lock().alive = threads;
        let workers = (0..threads)
            .map(|_| {
                let (spec, shared) = (spec.clone(), shared.clone());
                std::thread::spawn(move || loop {
                    let job = {
                        let mut st = shared.lock();
                        loop {
                            if st.stop {
                                st.alive -= 1;
                                shared.exited.notify_all();
                                return;
                            }
                            if let Some(job) = st.queue.pop_front() {
                                st.running += 1;
                                st.building.insert(job.0.id);
                                break job;
                            }
                            st = shared.job_ready.wait(st).unwrap_or_else(|p| p.into_inner());
                        }
                    };
                    let (job, prefetched) = job;
                    let result = run_job(&spec, &job, prefetched, epoch, seed);
                    let mut st = shared.lock();
                    st.running -= 1;
                    st.building.remove(&job.id);
                    if !st.discard.remove(&job.id) {
                        st.done.insert(job.id, result);
                    }
                    shared.result_ready.notify_all();
                })
            })
            .collect();
        BatchStream {
            spec,
            epoch,
            seed,
            shared,
            workers,
        }
    }

    /// Queue `job`; the reads of its images in object stores start now, so they overlap the
    /// batches built before it.
    pub fn submit(&self, job: BatchJob) {
        let prefetched = self.spec.prefetch(&job.indices, &job.stages);
        let mut st = self.shared.lock();
        st.queue.push_back((job, prefetched));
        self.shared.job_ready.notify_one();
    }

    /// Jobs submitted and not yet taken by `next` (cancelled ones not counted).
    pub fn pending(&self) -> usize {
        let st = self.shared.lock();
        st.queue.len() + st.running + st.done.len() - st.discard.len()
    }

    /// Withdraw jobs `ids` (a curriculum changed what they should hold): a queued job is dropped,
    /// a finished result discarded, and the result of a job a worker is building is dropped when
    /// it finishes. `next` never returns a cancelled job. Returns how many of `ids` were pending.
    /// Ids should not be reused after a cancel (a worker may still be building the old job).
    pub fn cancel(&self, ids: &[u64]) -> usize {
        let wanted: HashSet<u64> = ids.iter().copied().collect();
        let mut st = self.shared.lock();
        let before = st.queue.len();
        st.queue.retain(|(job, _)| !wanted.contains(&job.id));
        let mut found = before - st.queue.len();
        for id in &wanted {
            let finished = st.done.remove(id).is_some();
            if finished || (st.building.contains(id) && st.discard.insert(*id)) {
                found += 1;
            }
        }
        found
    }

    /// The result of job `id` (or, with `None`, of whichever job finishes first). Blocks until it
    /// is ready; `None` when no such job is pending.
    pub fn next(&self, id: Option<u64>) -> Option<(u64, Result<Batch>)> {
        match self.next_within(id, None) {
            Next::Ready(id, r) => Some((id, *r)),
            Next::Empty | Next::TimedOut => None,
        }
    }

    /// [`BatchStream::next`], giving up after `timeout` (torch's `DataLoader(timeout=...)`).
    pub fn next_within(&self, id: Option<u64>, timeout: Option<Duration>) -> Next {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.shared.lock();
        loop {
            let ready = match id {
                Some(id) => st.done.remove(&id).map(|r| (id, r)),
                None => st
                    .done
                    .keys()
                    .next()
                    .copied()
                    .and_then(|k| st.done.remove(&k).map(|r| (k, r))),
            };
            if let Some((id, r)) = ready {
                return Next::Ready(id, Box::new(r));
            }
            let waiting_for_known = match id {
                Some(id) => st.queue.iter().any(|(j, _)| j.id == id) || st.running > 0,
                None => !st.queue.is_empty() || st.running > 0,
            };
            if !waiting_for_known {
                return Next::Empty;
            }
            if self.workers.is_empty() {
                // inline mode: build queued jobs in order until the wanted one is done
                let Some((job, prefetched)) = st.queue.pop_front() else {
                    return Next::Empty;
                };
                drop(st);
                let result = run_job(&self.spec, &job, prefetched, self.epoch, self.seed);
                st = self.shared.lock();
                st.done.insert(job.id, result);
                continue;
            }
            st = match deadline {
                None => self
                    .shared
                    .result_ready
                    .wait(st)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Next::TimedOut;
                    }
                    self.shared
                        .result_ready
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    pub fn threads(&self) -> usize {
        self.workers.len()
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.stop = true;
            st.queue.clear();
        }
        self.shared.job_ready.notify_all();
        let deadline = Instant::now() + CLOSE_GRACE;
        let mut st = self.shared.lock();
        while st.alive > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .exited
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let stuck = st.alive > 0;
        drop(st);
        for w in self.workers.drain(..) {
            // every worker has left its loop: join them all (each is returning); otherwise the
            // ones stuck in a job past the grace period are left behind (each exits when its job
            // returns, and holds only its own references)
            if !stuck || w.is_finished() {
                let _ = w.join();
            }
        }
    }
}
