//! The weighted multi-source sampler: global indices over the concatenation of several sources.
//!
//! Positions. One epoch is a global sequence of `num_samples` draws (identical on every rank),
//! padded or truncated and split across ranks like `DistributedSampler` ([`Shard`]). The draw at
//! global position `g` of epoch `e` is a pure function of `(seed, e, g)`, of the weights active at
//! that position and, without replacement, of how many draws each source had before `g`.
//!
//! Steps. A weight change is logged with the *step* from which it applies: the per-rank position
//! counted from the start of epoch 0, `step = e * local_len + local_position`. Global position `g`
//! belongs to row `g / world_size`, i.e. to step `e * local_len + g / world_size`, so every rank
//! switches at the same row and the shards stay a partition of the single-process sequence. Weights
//! stay in force across epochs until the next change.
//!
//! Draws. The source is chosen by an alias table on the counter-based hash of `g`
//! (`mode = random`) or read from CURE's repeating slot pattern, restarted where the weights took
//! effect (`mode = interleave`). The element inside the source is uniform (with replacement) or the
//! next element of a per-source random permutation (without replacement): each source is drawn
//! without replacement, and a source that runs out starts a fresh permutation (a new cycle), so
//! weights keep their meaning even when they ask for more draws than a source has.

use super::alias::AliasTable;
use super::interleave::interleave_pattern;
use super::quota;
use super::shard::Shard;
use super::weights::validate_weights;
use crate::error::{Error, Result};
use crate::rng::{at, bounded, derive_key, mix64, shuffle, GOLDEN};

const TAG_SOURCE: u64 = 0x5352_4345; // "SRCE"
const TAG_INDEX: u64 = 0x494E_4458; // "INDX"
const TAG_PERM: u64 = 0x5045_524D; // "PERM"

/// How weights become a sequence of sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Independent weighted draws.
    Random,
    /// CURE's deterministic slot pattern ([`interleave_pattern`]).
    Interleave,
    /// Exact per-epoch quotas (largest remainder of `weights x num_samples`), positions shuffled
    /// per epoch ([`super::quota`]).
    Quota,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode> {
        match s {
            "random" => Ok(Mode::Random),
            "interleave" => Ok(Mode::Interleave),
            "quota" => Ok(Mode::Quota),
            other => Err(Error::invalid(format!(
                "mode: expected \"random\", \"interleave\" or \"quota\", got {other:?}"
            ))),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Random => "random",
            Mode::Interleave => "interleave",
            Mode::Quota => "quota",
        }
    }
}

enum Draw {
    Alias(AliasTable),
    Pattern(Vec<u32>),
    /// Cumulative per-source quotas of an epoch's positions.
    Quota(Vec<u64>),
}

struct Entry {
    step: u64,
    weights: Vec<f64>,
    draw: Draw,
}

/// Per source, the permutation cycle and the offset inside it of the next draw, after the first
/// `g` global positions of `epoch` (kept as a pair so no division is needed per draw).
#[derive(Clone, Debug)]
struct Cursor {
    epoch: u64,
    g: u64,
    counts: Vec<(u64, u64)>,
}

impl Cursor {
    fn start(epoch: u64, sources: usize) -> Self {
        Cursor {
            epoch,
            g: 0,
            counts: vec![(0, 0); sources],
        }
    }
}

/// Takes the next (cycle, offset) of a source of `size` elements.
#[inline(always)]
fn bump(c: &mut (u64, u64), size: u64) -> (u64, u64) {
    let cur = *c;
    c.1 += 1;
    if c.1 == size {
        *c = (c.0 + 1, 0);
    }
    cur
}

struct PermCache {
    epoch: u64,
    cycle: u64,
    order: Vec<u32>,
}

/// Immutable configuration, split from the caches so the generators can borrow both.
struct Config {
    sizes: Vec<u64>,
    offsets: Vec<u64>,
    num_samples: u64,
    seed: u64,
    replacement: bool,
    mode: Mode,
    shard: Shard,
    local_len: u64,
}

pub struct MultiSource {
    cfg: Config,
    log: Vec<Entry>,
    cursor: Option<Cursor>,
    snapshot: Option<Cursor>,
    head: Option<(u64, Vec<i64>)>,
    perms: Vec<Option<PermCache>>,
}

impl MultiSource {
    /// `num_samples` defaults to the total size of the sources.
    pub fn new(
        sizes: Vec<u64>,
        weights: Vec<f64>,
        num_samples: Option<u64>,
        seed: u64,
        replacement: bool,
        mode: Mode,
        shard: Shard,
    ) -> Result<Self> {
        if sizes.is_empty() {
            return Err(Error::invalid("sizes: at least one source is required"));
        }
        let mut offsets = Vec::with_capacity(sizes.len() + 1);
        let mut total: u64 = 0;
        offsets.push(0);
        for &s in &sizes {
            total = total
                .checked_add(s)
                .filter(|&t| t < (1u64 << 62))
                .ok_or_else(|| Error::invalid("sizes: the total size overflows"))?;
            offsets.push(total);
        }
        if total == 0 {
            return Err(Error::invalid("sizes: all sources are empty"));
        }
        if !replacement {
            if let Some((i, s)) = sizes.iter().enumerate().find(|(_, &s)| s > u32::MAX as u64) {
                return Err(Error::invalid(format!(
                    "sizes: source {i} has {s} samples; without replacement a source may hold at \
                     most {} samples",
                    u32::MAX
                )));
            }
        }
        let num_samples = num_samples.unwrap_or(total);
        if num_samples == 0 {
            return Err(Error::invalid("num_samples: must be at least 1"));
        }
        if num_samples >= (1u64 << 62) {
            return Err(Error::invalid("num_samples: too large"));
        }
        let local_len = shard.local_len(num_samples);
        let n_sources = sizes.len();
        let cfg = Config {
            sizes,
            offsets,
            num_samples,
            seed,
            replacement,
            mode,
            shard,
            local_len,
        };
        let entry = make_entry(&cfg, 0, weights)?;
        Ok(MultiSource {
            cfg,
            log: vec![entry],
            cursor: None,
            snapshot: None,
            head: None,
            perms: (0..n_sources).map(|_| None).collect(),
        })
    }

    pub fn sizes(&self) -> &[u64] {
        &self.cfg.sizes
    }
    /// `offsets[i]` is the global index of source `i`'s first element; the last entry is the total.
    pub fn offsets(&self) -> &[u64] {
        &self.cfg.offsets
    }
    pub fn num_samples(&self) -> u64 {
        self.cfg.num_samples
    }
    pub fn seed(&self) -> u64 {
        self.cfg.seed
    }
    pub fn replacement(&self) -> bool {
        self.cfg.replacement
    }
    pub fn mode(&self) -> Mode {
        self.cfg.mode
    }
    pub fn shard(&self) -> Shard {
        self.cfg.shard
    }
    /// Indices per rank and epoch (DistributedSampler's `num_samples`).
    pub fn local_len(&self) -> u64 {
        self.cfg.local_len
    }

    /// The weight log: `(step, weights)` sorted by step, the first at step 0.
    pub fn log(&self) -> Vec<(u64, Vec<f64>)> {
        self.log
            .iter()
            .map(|e| (e.step, e.weights.clone()))
            .collect()
    }

    /// The weights in force at `step`.
    pub fn weights_at(&self, step: u64) -> &[f64] {
        &self.log[entry_index(&self.log, step)].weights
    }

    /// Records that `weights` apply from `step` on (until a later logged change). A change at a step
    /// that already has one replaces it. Caches that saw positions at or after `step` are dropped.
    pub fn set_weights(&mut self, step: u64, weights: Vec<f64>) -> Result<()> {
        let entry = make_entry(&self.cfg, step, weights)?;
        let i = self.log.partition_point(|e| e.step < step);
        if i < self.log.len() && self.log[i].step == step {
            self.log[i] = entry;
        } else {
            self.log.insert(i, entry);
        }
        let (l, w) = (self.cfg.local_len, self.cfg.shard.world_size);
        let covers = |c: &Cursor| c.g > 0 && c.epoch * l + (c.g - 1) / w >= step;
        if self.cursor.as_ref().is_some_and(covers) {
            self.cursor = None;
        }
        if self.snapshot.as_ref().is_some_and(covers) {
            self.snapshot = None;
        }
        if self.head.as_ref().is_some_and(|(e, _)| e * l >= step) {
            self.head = None;
        }
        Ok(())
    }

    /// This rank's indices at local positions `start .. start + count` of `epoch`.
    pub fn chunk(&mut self, epoch: u64, start: u64, count: u64) -> Result<Vec<i64>> {
        let l = self.cfg.local_len;
        if start > l || count > l - start {
            return Err(Error::invalid(format!(
                "chunk: positions {start}..{} are outside the epoch's {l} positions",
                start.saturating_add(count)
            )));
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        if epoch
            .checked_mul(l.max(1))
            .is_none_or(|s| s >= (1u64 << 62))
        {
            return Err(Error::invalid(format!("epoch: {epoch} is too large")));
        }
        if self.cfg.replacement {
            Ok(self.chunk_with_replacement(epoch, start, count))
        } else {
            Ok(self.chunk_without_replacement(epoch, start, count))
        }
    }

    /// The whole epoch of this rank.
    pub fn epoch_indices(&mut self, epoch: u64) -> Result<Vec<i64>> {
        let l = self.cfg.local_len;
        self.chunk(epoch, 0, l)
    }

    fn chunk_with_replacement(&self, epoch: u64, start: u64, count: u64) -> Vec<i64> {
        let cfg = &self.cfg;
        let (n, w, rank) = (cfg.num_samples, cfg.shard.world_size, cfg.shard.rank);
        let base_step = epoch * cfg.local_len;
        let ksrc = derive_key(cfg.seed, &[TAG_SOURCE, epoch]);
        let kidx = derive_key(cfg.seed, &[TAG_INDEX, epoch]);
        let mut out = Vec::with_capacity(count as usize);
        let end = start + count;
        // Local position p reads global position p * W + rank, in row p (so at step
        // base_step + p) until the padding, which repeats the epoch's first positions.
        let pad_from = if n > rank { (n - rank).div_ceil(w) } else { 0 };
        let mut p = start;
        while p < end.min(pad_from) {
            let seg = Segment::find(&self.log, base_step + p, base_step, w);
            let stop = end.min(pad_from).min(seg.hi.saturating_sub(base_step));
            // Both hashes of a position share the counter's Weyl step (one multiply).
            let draw_index = |x: u64, s: usize| {
                (cfg.offsets[s] + bounded(mix64(kidx.wrapping_add(x)), cfg.sizes[s])) as i64
            };
            match &self.log[seg.entry].draw {
                Draw::Alias(t) => out.extend((p..stop).map(|q| {
                    let x = (q * w + rank).wrapping_mul(GOLDEN);
                    draw_index(x, t.draw(mix64(ksrc.wrapping_add(x))))
                })),
                Draw::Pattern(pat) => {
                    let len = pat.len() as u64;
                    let mut slot = (p * w + rank - seg.g0) % len; // then stepped, not divided
                    out.extend((p..stop).map(|q| {
                        let s = pat[slot as usize] as usize;
                        slot += w;
                        if slot >= len {
                            slot = if slot - len < len {
                                slot - len
                            } else {
                                slot % len
                            };
                        }
                        draw_index((q * w + rank).wrapping_mul(GOLDEN), s)
                    }))
                }
                Draw::Quota(cum) => out.extend((p..stop).map(|q| {
                    let g = q * w + rank;
                    draw_index(
                        g.wrapping_mul(GOLDEN),
                        quota::source_at(cum, g - seg.g0, ksrc),
                    )
                })),
            }
            p = stop;
        }
        for q in p.max(pad_from)..end {
            let b = (q * w + rank) % n;
            let seg = Segment::find(&self.log, base_step + b / w, base_step, w);
            let s = source_at(&self.log, &seg, ksrc, b);
            out.push((cfg.offsets[s] + bounded(at(kidx, b), cfg.sizes[s])) as i64);
        }
        out
    }

    fn chunk_without_replacement(&mut self, epoch: u64, start: u64, count: u64) -> Vec<i64> {
        let (n, w, rank) = (
            self.cfg.num_samples,
            self.cfg.shard.world_size,
            self.cfg.shard.rank,
        );
        let end = start + count;
        let pad_from = if n > rank { (n - rank).div_ceil(w) } else { 0 };
        let head = if end > pad_from {
            Some(self.head(epoch))
        } else {
            None
        };
        let mut cursor = self.seek(epoch, start * w);
        self.snapshot = Some(cursor.clone());
        let mut out = Vec::with_capacity(count as usize);
        // Generate whole rows (every rank's draws move the per-source counts), keep this rank's.
        let until = (end * w).min(n);
        let mut next = start * w + rank;
        advance(
            &self.cfg,
            &self.log,
            &mut self.perms,
            &mut cursor,
            until,
            &mut next,
            w,
            |idx| out.push(idx),
        );
        if let Some(head) = head {
            for q in start.max(pad_from)..end {
                out.push(head[((q * w + rank) % n) as usize]);
            }
        }
        self.cursor = Some(cursor);
        out
    }

    /// The first `min(world_size, num_samples)` global draws of `epoch` (what padding repeats).
    fn head(&mut self, epoch: u64) -> Vec<i64> {
        if let Some((e, h)) = &self.head {
            if *e == epoch {
                return h.clone();
            }
        }
        let len = self.cfg.shard.world_size.min(self.cfg.num_samples);
        let mut c = Cursor::start(epoch, self.cfg.sizes.len());
        let mut h = Vec::with_capacity(len as usize);
        let mut next = 0;
        advance(
            &self.cfg,
            &self.log,
            &mut self.perms,
            &mut c,
            len,
            &mut next,
            1,
            |idx| h.push(idx),
        );
        self.head = Some((epoch, h.clone()));
        h
    }

    /// A cursor at global position `g` of `epoch`, from the cached cursor, the snapshot taken at
    /// the last chunk's start, or the epoch's start, whichever is closest and valid.
    fn seek(&mut self, epoch: u64, g: u64) -> Cursor {
        fn usable(c: &Option<Cursor>, epoch: u64, g: u64) -> Option<&Cursor> {
            c.as_ref().filter(|c| c.epoch == epoch && c.g <= g)
        }
        let mut c = match (
            usable(&self.cursor, epoch, g),
            usable(&self.snapshot, epoch, g),
        ) {
            (Some(a), Some(b)) => {
                if a.g >= b.g {
                    a.clone()
                } else {
                    b.clone()
                }
            }
            (Some(a), None) | (None, Some(a)) => a.clone(),
            (None, None) => Cursor::start(epoch, self.cfg.sizes.len()),
        };
        skip(&self.cfg, &self.log, &mut c, g);
        c
    }
}

/// A run of steps governed by one log entry, with the global position where its pattern starts.
struct Segment {
    entry: usize,
    lo: u64,
    hi: u64,
    g0: u64,
}

impl Segment {
    fn empty() -> Self {
        Segment {
            entry: 0,
            lo: 1,
            hi: 0,
            g0: 0,
        }
    }

    #[inline(always)]
    fn contains(&self, step: u64) -> bool {
        self.lo <= step && step < self.hi
    }

    fn find(log: &[Entry], step: u64, base_step: u64, world: u64) -> Self {
        let entry = entry_index(log, step);
        let lo = log[entry].step;
        let hi = log.get(entry + 1).map_or(u64::MAX, |e| e.step);
        // The interleave pattern restarts where the weights took effect, or at the epoch's start.
        let g0 = if lo <= base_step {
            0
        } else {
            (lo - base_step) * world
        };
        Segment { entry, lo, hi, g0 }
    }
}

fn entry_index(log: &[Entry], step: u64) -> usize {
    log.partition_point(|e| e.step <= step).saturating_sub(1)
}

fn make_entry(cfg: &Config, step: u64, weights: Vec<f64>) -> Result<Entry> {
    validate_weights(&weights, &cfg.sizes)?;
    let draw = match cfg.mode {
        Mode::Random => Draw::Alias(AliasTable::new(&weights)?),
        Mode::Interleave => Draw::Pattern(interleave_pattern(&weights)?),
        Mode::Quota => Draw::Quota(quota::cumulative(&quota::quotas(&weights, cfg.num_samples))),
    };
    Ok(Entry {
        step,
        weights,
        draw,
    })
}

/// The source drawn at global position `g` (the part of a draw that does not need counts).
#[inline(always)]
fn source_at(log: &[Entry], seg: &Segment, ksrc: u64, g: u64) -> usize {
    match &log[seg.entry].draw {
        Draw::Alias(t) => t.draw(at(ksrc, g)),
        Draw::Pattern(pat) => pat[((g - seg.g0) % pat.len() as u64) as usize] as usize,
        Draw::Quota(cum) => quota::source_at(cum, g - seg.g0, ksrc),
    }
}

/// Calls `f(g, seg)` for every global position `g` in `from..until` of `epoch`, with the log
/// segment in force there; walks row by row so no division is needed per position.
#[inline(always)]
fn for_positions(
    cfg: &Config,
    log: &[Entry],
    epoch: u64,
    from: u64,
    until: u64,
    mut f: impl FnMut(u64, &Segment),
) {
    let w = cfg.shard.world_size;
    let base_step = epoch * cfg.local_len;
    let mut g = from;
    let mut row = from / w;
    let mut seg = Segment::empty();
    while g < until {
        if !seg.contains(base_step + row) {
            seg = Segment::find(log, base_step + row, base_step, w);
        }
        let row_end = ((row + 1) * w).min(until);
        while g < row_end {
            f(g, &seg);
            g += 1;
        }
        row += 1;
    }
}

/// Moves `c` to position `until` counting draws per source, without materialising indices.
fn skip(cfg: &Config, log: &[Entry], c: &mut Cursor, until: u64) {
    let ksrc = derive_key(cfg.seed, &[TAG_SOURCE, c.epoch]);
    let counts = &mut c.counts;
    for_positions(cfg, log, c.epoch, c.g, until, |g, seg| {
        let s = source_at(log, seg, ksrc, g);
        bump(&mut counts[s], cfg.sizes[s]);
    });
    c.g = c.g.max(until);
}

/// Moves `c` to position `until`; the draws at positions `*next, *next + stride, ...` are
/// materialised and handed to `emit` (the others only move the per-source counts).
#[allow(clippy::too_many_arguments)]
fn advance(
    cfg: &Config,
    log: &[Entry],
    perms: &mut [Option<PermCache>],
    c: &mut Cursor,
    until: u64,
    next: &mut u64,
    stride: u64,
    mut emit: impl FnMut(i64),
) {
    let epoch = c.epoch;
    let ksrc = derive_key(cfg.seed, &[TAG_SOURCE, epoch]);
    let counts = &mut c.counts;
    for_positions(cfg, log, epoch, c.g, until, |g, seg| {
        let s = source_at(log, seg, ksrc, g);
        let (cycle, off) = bump(&mut counts[s], cfg.sizes[s]);
        if g == *next {
            *next += stride;
            let perm = permutation(cfg, perms, s, epoch, cycle);
            emit((cfg.offsets[s] + perm[off as usize] as u64) as i64);
        }
    });
    c.g = c.g.max(until);
}

/// Source `s`'s `cycle`-th random permutation in `epoch`, cached one per source.
fn permutation<'a>(
    cfg: &Config,
    perms: &'a mut [Option<PermCache>],
    s: usize,
    epoch: u64,
    cycle: u64,
) -> &'a [u32] {
    let hit = perms[s]
        .as_ref()
        .is_some_and(|p| p.epoch == epoch && p.cycle == cycle);
    if !hit {
        let mut order: Vec<u32> = match perms[s].take() {
            Some(mut old) => {
                old.order.clear();
                old.order.extend(0..cfg.sizes[s] as u32);
                old.order
            }
            None => (0..cfg.sizes[s] as u32).collect(),
        };
        shuffle(
            &mut order,
            derive_key(cfg.seed, &[TAG_PERM, epoch, s as u64, cycle]),
        );
        perms[s] = Some(PermCache {
            epoch,
            cycle,
            order,
        });
    }
    &perms[s].as_ref().expect("just filled").order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(
        sizes: &[u64],
        weights: &[f64],
        n: Option<u64>,
        replacement: bool,
        mode: Mode,
        shard: Shard,
    ) -> MultiSource {
        MultiSource::new(
            sizes.to_vec(),
            weights.to_vec(),
            n,
            42,
            replacement,
            mode,
            shard,
        )
        .unwrap()
    }

    fn source_of(offsets: &[u64], idx: i64) -> usize {
        offsets.partition_point(|&o| o <= idx as u64) - 1
    }

    #[test]
    fn deterministic_and_in_range() {
        for replacement in [true, false] {
            for mode in [Mode::Random, Mode::Interleave] {
                let mut a = sampler(
                    &[10, 0, 30],
                    &[1.0, 0.0, 3.0],
                    Some(500),
                    replacement,
                    mode,
                    Shard::single(),
                );
                let mut b = sampler(
                    &[10, 0, 30],
                    &[1.0, 0.0, 3.0],
                    Some(500),
                    replacement,
                    mode,
                    Shard::single(),
                );
                let x = a.epoch_indices(3).unwrap();
                assert_eq!(x, b.epoch_indices(3).unwrap());
                assert_ne!(x, a.epoch_indices(4).unwrap());
                assert_eq!(x.len(), 500);
                assert!(x.iter().all(|&i| (0..40).contains(&i)));
            }
        }
    }

    #[test]
    fn frequencies_follow_weights() {
        let sizes = [100, 1000, 10, 5000];
        let w = [0.4, 0.1, 0.3, 0.2];
        for replacement in [true, false] {
            let mut s = sampler(
                &sizes,
                &w,
                Some(200_000),
                replacement,
                Mode::Random,
                Shard::single(),
            );
            let off = s.offsets().to_vec();
            let mut c = [0f64; 4];
            for i in s.epoch_indices(0).unwrap() {
                c[source_of(&off, i)] += 1.0;
            }
            for k in 0..4 {
                assert!((c[k] / 200_000.0 - w[k]).abs() < 0.005, "{c:?}");
            }
        }
    }

    #[test]
    fn without_replacement_covers_each_source_before_repeating() {
        let mut s = sampler(
            &[50, 70],
            &[50.0, 70.0],
            Some(120),
            false,
            Mode::Random,
            Shard::single(),
        );
        let x = s.epoch_indices(0).unwrap();
        let off = s.offsets().to_vec();
        // inside each source, the first `size` draws are distinct
        for src in 0..2 {
            let mine: Vec<i64> = x
                .iter()
                .copied()
                .filter(|&i| source_of(&off, i) == src)
                .collect();
            let size = [50usize, 70][src];
            let first: std::collections::HashSet<i64> = mine.iter().take(size).copied().collect();
            assert_eq!(first.len(), mine.len().min(size));
        }
    }

    #[test]
    fn chunks_equal_whole_epoch_in_any_order() {
        for replacement in [true, false] {
            for mode in [Mode::Random, Mode::Interleave] {
                let mut s = sampler(
                    &[13, 7, 29],
                    &[0.2, 0.5, 0.3],
                    Some(301),
                    replacement,
                    mode,
                    Shard::single(),
                );
                let full = s.epoch_indices(2).unwrap();
                let mut t = sampler(
                    &[13, 7, 29],
                    &[0.2, 0.5, 0.3],
                    Some(301),
                    replacement,
                    mode,
                    Shard::single(),
                );
                let mut parts = Vec::new();
                for (a, b) in [(250, 301), (0, 17), (17, 250)] {
                    parts.push((a, t.chunk(2, a, b - a).unwrap()));
                }
                parts.sort_by_key(|p| p.0);
                let joined: Vec<i64> = parts.into_iter().flat_map(|p| p.1).collect();
                assert_eq!(joined, full);
            }
        }
    }

    #[test]
    fn shards_partition_the_single_process_sequence() {
        for replacement in [true, false] {
            for mode in [Mode::Random, Mode::Interleave] {
                for n in [1u64, 5, 97, 100] {
                    for world in [1u64, 2, 3, 8] {
                        for drop_last in [false, true] {
                            let mut single = sampler(
                                &[9, 4],
                                &[1.0, 2.0],
                                Some(n),
                                replacement,
                                mode,
                                Shard::single(),
                            );
                            let global = single.epoch_indices(1).unwrap();
                            let sh = Shard::new(0, world, drop_last).unwrap();
                            let expected_total = sh.total(n) as usize;
                            let mut padded: Vec<i64> = Vec::new();
                            for g in 0..expected_total {
                                padded.push(global[g % n as usize]);
                            }
                            for r in 0..world {
                                let shard = Shard::new(r, world, drop_last).unwrap();
                                let mut s = sampler(
                                    &[9, 4],
                                    &[1.0, 2.0],
                                    Some(n),
                                    replacement,
                                    mode,
                                    shard,
                                );
                                let mine = s.epoch_indices(1).unwrap();
                                let want: Vec<i64> = padded
                                    .iter()
                                    .copied()
                                    .skip(r as usize)
                                    .step_by(world as usize)
                                    .collect();
                                assert_eq!(mine, want, "n={n} world={world} r={r} drop_last={drop_last} repl={replacement} {mode:?}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn weight_change_applies_from_its_step_on() {
        for replacement in [true, false] {
            for mode in [Mode::Random, Mode::Interleave] {
                let mut a = sampler(
                    &[100, 100],
                    &[1.0, 0.0],
                    Some(1000),
                    replacement,
                    mode,
                    Shard::single(),
                );
                a.set_weights(1500, vec![0.0, 1.0]).unwrap();
                // epoch 0 (steps 0..1000) all source 0; epoch 1: positions < 500 source 0, then source 1
                let e0 = a.epoch_indices(0).unwrap();
                assert!(e0.iter().all(|&i| i < 100));
                let e1 = a.epoch_indices(1).unwrap();
                assert!(e1[..500].iter().all(|&i| i < 100));
                assert!(e1[500..].iter().all(|&i| i >= 100));
                // and persists into later epochs
                assert!(a.epoch_indices(2).unwrap().iter().all(|&i| i >= 100));
            }
        }
    }

    #[test]
    fn weight_change_after_generation_invalidates_caches() {
        let mut a = sampler(
            &[30, 30],
            &[1.0, 1.0],
            Some(200),
            false,
            Mode::Random,
            Shard::single(),
        );
        let _ = a.chunk(0, 0, 150).unwrap();
        a.set_weights(100, vec![0.0, 1.0]).unwrap();
        let tail = a.chunk(0, 100, 100).unwrap();
        let mut b = sampler(
            &[30, 30],
            &[1.0, 1.0],
            Some(200),
            false,
            Mode::Random,
            Shard::single(),
        );
        b.set_weights(100, vec![0.0, 1.0]).unwrap();
        let full = b.epoch_indices(0).unwrap();
        assert_eq!(tail, full[100..]);
        let head = a.chunk(0, 0, 100).unwrap();
        assert_eq!(head, full[..100]);
    }

    #[test]
    fn interleave_follows_the_pattern() {
        let mut s = sampler(
            &[1000, 1000],
            &[2.0, 1.0],
            Some(120),
            true,
            Mode::Interleave,
            Shard::single(),
        );
        let x = s.epoch_indices(0).unwrap();
        let pat = interleave_pattern(&[2.0, 1.0]).unwrap();
        for (g, &i) in x.iter().enumerate() {
            assert_eq!(source_of(s.offsets(), i) as u32, pat[g % pat.len()]);
        }
    }

    #[test]
    fn same_step_replaces_and_log_is_sorted() {
        let mut s = sampler(
            &[1, 1],
            &[1.0, 1.0],
            None,
            true,
            Mode::Random,
            Shard::single(),
        );
        s.set_weights(10, vec![1.0, 0.0]).unwrap();
        s.set_weights(5, vec![0.0, 1.0]).unwrap();
        s.set_weights(10, vec![2.0, 1.0]).unwrap();
        let steps: Vec<u64> = s.log().iter().map(|e| e.0).collect();
        assert_eq!(steps, vec![0, 5, 10]);
        assert_eq!(s.weights_at(7), &[0.0, 1.0]);
        assert_eq!(s.weights_at(10), &[2.0, 1.0]);
        assert!(s.set_weights(3, vec![1.0]).is_err());
    }

    #[test]
    fn errors() {
        assert!(
            MultiSource::new(vec![], vec![], None, 0, true, Mode::Random, Shard::single()).is_err()
        );
        assert!(MultiSource::new(
            vec![0, 0],
            vec![1.0, 1.0],
            None,
            0,
            true,
            Mode::Random,
            Shard::single()
        )
        .is_err());
        assert!(MultiSource::new(
            vec![1],
            vec![1.0],
            Some(0),
            0,
            true,
            Mode::Random,
            Shard::single()
        )
        .is_err());
        let mut s = sampler(&[3], &[1.0], Some(10), true, Mode::Random, Shard::single());
        assert!(s.chunk(0, 5, 6).is_err());
        assert!(Mode::parse("nope").is_err());
    }

    #[test]
    fn drop_last_with_fewer_samples_than_ranks_is_empty() {
        let shard = Shard::new(1, 4, true).unwrap();
        let mut s = sampler(&[3], &[1.0], Some(3), false, Mode::Random, shard);
        assert_eq!(s.local_len(), 0);
        assert!(s.epoch_indices(0).unwrap().is_empty());
    }
}
