//! Memory limits. Before a run allocates anything, the sizes of its intermediates are inferred
//! from the fed shapes, their lifetimes are walked in run order, and a run whose intermediates
//! would at some point exceed the limit is refused, naming the node whose output crosses it.
//! The check is cached per set of input shapes. Kernel scratch space (im2col buffers, packed
//! panels) and values whose size depends on data (NonZero) are not counted.
use std::collections::HashMap;
use std::sync::Mutex;

use std::path::Path;

use kiln_ir::{Dim, Model, NodeId, ValueId};

/// Bytes of memory the system could give this process now (`MemAvailable`), if known.
pub fn available_memory() -> Option<u64> {
    EnvLimits::at(Path::new("/")).meminfo()
}

/// A memory limit and where it came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemLimit {
    pub bytes: u64,
    /// What set it: `--memory-limit`, the memory available, the address-space limit, ...
    pub source: String,
}

impl std::fmt::Display for MemLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", human(self.bytes), self.source)
    }
}

/// The limit the environment sets now: the smallest of the memory available, the headroom
/// under the address-space and data limits (`RLIMIT_AS`, `RLIMIT_DATA`: containers and
/// `ulimit -v`), and the headroom in the process's memory cgroup and each cgroup above it
/// (v2 `memory.max`, v1 `memory.limit_in_bytes`: a Kubernetes pod's limit), where usage counts
/// without the page cache the kernel can drop. `None` when nothing could be read.
pub fn environment_limit() -> Option<MemLimit> {
    EnvLimits::at(Path::new("/")).limit()
}

/// A mountinfo field with its octal escapes (`\040` for a space) decoded.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                let v = (d[0] - b'0') as u32 * 64 + (d[1] - b'0') as u32 * 8 + (d[2] - b'0') as u32;
                out.push(v as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// [`environment_limit`] less a margin for what a run maps beyond its live tensors: allocator
/// arenas per thread, freed blocks kept in the heap for the next run, kernels' scratch.
/// Measured under RLIMIT_AS (YOLOv8n at 4480², 1 GiB): about 15% past the estimate; an eighth
/// of the headroom and 64 MiB are kept back, at most a quarter of it (a small headroom is not 0).
pub fn usable_limit() -> Option<MemLimit> {
    environment_limit().map(|l| {
        let margin = (l.bytes / 8 + (64 << 20)).min(l.bytes / 4);
        MemLimit {
            bytes: l.bytes - margin,
            source: format!("{}, less a margin for the allocator", l.source),
        }
    })
}

/// The files the environment's limits are read from, under `root` (`/`, or a copy in tests).
pub(crate) struct EnvLimits<'a> {
    root: &'a Path,
}

/// `N kB` of a `/proc/*/status` or `meminfo` line, in bytes.
fn kb_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    kb.checked_mul(1024)
}

impl<'a> EnvLimits<'a> {
    pub(crate) fn at(root: &'a Path) -> EnvLimits<'a> {
        EnvLimits { root }
    }

    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(path.trim_start_matches('/'))).ok()
    }

    fn meminfo(&self) -> Option<u64> {
        kb_field(&self.read("/proc/meminfo")?, "MemAvailable:")
    }

    /// Soft limit `name` of `/proc/self/limits` minus the status field `used` (`VmSize`).
    fn rlimit_headroom(&self, name: &str, used: &str) -> Option<u64> {
        let limits = self.read("/proc/self/limits")?;
        let line = limits.lines().find(|l| l.starts_with(name))?;
        let soft = line[name.len()..].split_whitespace().next()?;
        let soft: u64 = soft.parse().ok()?; // "unlimited" sets no limit
        let status = self.read("/proc/self/status")?;
        Some(soft.saturating_sub(kb_field(&status, used).unwrap_or(0)))
    }

    /// The memory cgroup folders that bound this process, v2 and v1, from its own group up to
    /// the hierarchy's root (a limit may sit on any of them: a pod's on the pod, not on the
    /// container's leaf), each with whether it is v2.
    fn cgroup_dirs(&self) -> Vec<(String, bool)> {
        let Some(mounts) = self.read("/proc/self/mountinfo") else {
            return Vec::new();
        };
        let groups = self.read("/proc/self/cgroup").unwrap_or_default();
        let mut dirs = Vec::new();
        for m in mounts.lines() {
            // id parent dev root mountpoint opts... - fstype source superopts
            let Some((pre, post)) = m.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split_whitespace().collect();
            let post: Vec<&str> = post.split_whitespace().collect();
            let (Some(&mroot), Some(&mpoint), Some(&fstype)) =
                (pre.get(3), pre.get(4), post.first())
            else {
                continue;
            };
            let v2 = fstype == "cgroup2";
            let v1 = fstype == "cgroup"
                && post
                    .get(2)
                    .is_some_and(|o| o.split(',').any(|o| o == "memory"));
            if !(v1 || v2) {
                continue;
            }
            let (mroot, mpoint) = (unescape(mroot), unescape(mpoint));
            // The process's path in this hierarchy: "0::/a/b" (v2) or "4:memory:/a/b" (v1).
            let path = groups.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctl, p) = (f.next()?, f.next()?, f.next()?);
                let ours = if v2 {
                    ctl.is_empty()
                } else {
                    ctl.split(',').any(|c| c == "memory")
                };
                ours.then(|| p.to_string())
            });
            let Some(path) = path else { continue };
            // The path below the mount's root, matched by whole components.
            let rel = Path::new(&path)
                .strip_prefix(&mroot)
                .map(|r| r.to_string_lossy().trim_matches('/').to_string())
                .unwrap_or_else(|_| path.trim_matches('/').to_string());
            // Inside a container the path may name the host's view, absent here: then the
            // mount itself is the group.
            let here = self.root.join(mpoint.trim_start_matches('/')).join(&rel);
            let mut dir = if here.is_dir() { rel } else { String::new() };
            loop {
                dirs.push((format!("{mpoint}/{dir}"), v2));
                if dir.is_empty() {
                    break;
                }
                dir = dir
                    .rsplit_once('/')
                    .map_or(String::new(), |(p, _)| p.to_string());
            }
        }
        dirs
    }

    /// The smallest headroom among `dirs` (limit less usage without inactive page cache).
    fn cgroup_headroom(&self, dirs: &[(String, bool)]) -> Option<(u64, String)> {
        let mut best: Option<(u64, String)> = None;
        for (dir, v2) in dirs {
            let (max, cur, inactive) = if *v2 {
                ("memory.max", "memory.current", "inactive_file ")
            } else {
                (
                    "memory.limit_in_bytes",
                    "memory.usage_in_bytes",
                    "total_inactive_file ",
                )
            };
            let num = |f: &str| {
                self.read(&format!("{dir}/{f}"))
                    .and_then(|t| t.trim().parse::<u64>().ok())
            };
            // "max" (v2) does not parse; v1 writes "no limit" as a huge page-aligned number.
            let Some(limit) = num(max).filter(|&l| l < 1 << 60) else {
                continue;
            };
            let used = num(cur).unwrap_or(0);
            let cache = self
                .read(&format!("{dir}/memory.stat"))
                .and_then(|t| {
                    let line = t.lines().find(|l| l.starts_with(inactive))?;
                    line[inactive.len()..].trim().parse::<u64>().ok()
                })
                .unwrap_or(0);
            let room = limit.saturating_sub(used.saturating_sub(cache));
            if best.as_ref().is_none_or(|(b, _)| room < *b) {
                best = Some((
                    room,
                    format!("cgroup {max} of {} less its usage", human(limit)),
                ));
            }
        }
        best
    }

    pub(crate) fn limit(&self) -> Option<MemLimit> {
        let mut all: Vec<(u64, String)> = Vec::new();
        if let Some(b) = self.meminfo() {
            all.push((b, "the memory available".into()));
        }
        if let Some(b) = self.rlimit_headroom("Max address space", "VmSize:") {
            all.push((
                b,
                "the address-space limit RLIMIT_AS less what the process maps".into(),
            ));
        }
        if let Some(b) = self.rlimit_headroom("Max data size", "VmData:") {
            all.push((
                b,
                "the data limit RLIMIT_DATA less the process's data".into(),
            ));
        }
        // Which folders bound the process does not change while it runs: found once.
        static ROOT_DIRS: std::sync::OnceLock<Vec<(String, bool)>> = std::sync::OnceLock::new();
        let dirs = if self.root == Path::new("/") {
            ROOT_DIRS.get_or_init(|| self.cgroup_dirs()).clone()
        } else {
            self.cgroup_dirs()
        };
        if let Some(c) = self.cgroup_headroom(&dirs) {
            all.push(c);
        }
        all.into_iter()
            .min_by_key(|(b, _)| *b)
            .map(|(bytes, source)| MemLimit { bytes, source })
    }
}

/// Parses `BYTES` with an optional K/M/G/T suffix (powers of 1024; `B` and `iB` allowed).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mul) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size (BYTES with an optional K, M, G or T)"))?;
    let bytes = v * mul as f64;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(format!("'{s}' is not a size of at least one byte"));
    }
    Ok(bytes as u64)
}

/// A size for messages: `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// A session's limit: fixed (`--memory-limit`), or read from the environment at every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitKind {
    Fixed(u64),
    Environment,
}

/// The limit and each set of input shapes' peak, once walked.
pub(crate) struct Budget {
    kind: LimitKind,
    /// Per set of input shapes: the run's peak and its inputs' bytes.
    peaks: Mutex<HashMap<Vec<Vec<usize>>, (u64, u64)>>,
    /// The environment's limit as last read, and when: reading it costs about 90 us (a dozen
    /// files), longer than a small model's run.
    recent: Mutex<Option<(std::time::Instant, MemLimit)>>,
}

impl Budget {
    pub fn new(kind: LimitKind) -> Budget {
        Budget {
            kind,
            peaks: Mutex::new(HashMap::new()),
            recent: Mutex::new(None),
        }
    }

    /// The limit for a run needing `need` bytes: the environment's last reading while it is
    /// under a second old and `need` is under half of it (a run that small cannot be the one
    /// that crosses it); read anew otherwise.
    fn limit_for(&self, need: u64) -> Option<MemLimit> {
        if self.kind == LimitKind::Environment {
            if let Ok(r) = self.recent.lock() {
                if let Some((at, l)) = r.as_ref() {
                    if at.elapsed() < std::time::Duration::from_secs(1) && need <= l.bytes / 2 {
                        return Some(l.clone());
                    }
                }
            }
        }
        let l = self.current()?;
        if self.kind == LimitKind::Environment {
            if let Ok(mut r) = self.recent.lock() {
                *r = Some((std::time::Instant::now(), l.clone()));
            }
        }
        Some(l)
    }

    /// The limit a run starting now is held to.
    pub fn current(&self) -> Option<MemLimit> {
        match self.kind {
            LimitKind::Fixed(bytes) => Some(MemLimit {
                bytes,
                source: "--memory-limit".into(),
            }),
            LimitKind::Environment => usable_limit(),
        }
    }

    /// Checks a run on inputs of these shapes (by input value, in the session's input order;
    /// the flag says whether the input counts against the limit).
    pub fn check(
        &self,
        model: &Model,
        order: &[NodeId],
        fed: &[(ValueId, Vec<usize>, bool)],
    ) -> Result<(), String> {
        let key: Vec<Vec<usize>> = fed.iter().map(|(_, s, _)| s.clone()).collect();
        // A run on shapes no larger than ones already walked needs no more memory than they
        // did (a growing sequence against its max-length warm-up, `Budget::warm`): their peak
        // bounds it. Should that bound not fit, the walk below is exact.
        let cached = {
            let m = self.peaks.lock().map_err(|_| "memory check poisoned")?;
            m.get(&key).copied().or_else(|| {
                m.iter()
                    .filter(|(k, _)| dominates(k, &key))
                    .map(|(_, p)| *p)
                    .min()
            })
        };
        let (peak, inputs) = match cached {
            Some(p) => p,
            None => {
                let p = self.walk(model, order, fed, None).unwrap_or((u64::MAX, 0));
                if let Ok(mut m) = self.peaks.lock() {
                    // Shapes that change every run (a growing sequence) would fill the cache.
                    if m.len() >= 64 {
                        m.clear();
                    }
                    m.insert(key, p);
                }
                p
            }
        };
        // The environment's headroom is what is left with the fed inputs already held, so they
        // do not count against it a second time; a fixed limit covers the whole run.
        let held = if self.kind == LimitKind::Environment {
            inputs
        } else {
            0
        };
        let Some(limit) = self.limit_for(peak.saturating_sub(held)) else {
            return Ok(());
        };
        if peak <= limit.bytes.saturating_add(held) {
            return Ok(());
        }
        // Over the limit (rare): walk again, naming the node that crosses it.
        self.walk(model, order, fed, Some(&limit)).map(|_| ())
    }

    /// Walks these shapes now (if not yet walked), so that later runs on shapes they dominate
    /// are checked against their peak without a walk of their own.
    pub fn warm(&self, model: &Model, order: &[NodeId], fed: &[(ValueId, Vec<usize>, bool)]) {
        let key: Vec<Vec<usize>> = fed.iter().map(|(_, s, _)| s.clone()).collect();
        if self.peaks.lock().is_ok_and(|m| m.contains_key(&key)) {
            return;
        }
        let p = self.walk(model, order, fed, None).unwrap_or((u64::MAX, 0));
        if let Ok(mut m) = self.peaks.lock() {
            if m.len() >= 64 {
                m.clear();
            }
            m.insert(key, p);
        }
    }

    /// The run's peak bytes (outputs alive plus a kernel's scratch) and its fed inputs' bytes,
    /// or, given a limit, the error naming the first node whose output crosses it.
    fn walk(
        &self,
        model: &Model,
        order: &[NodeId],
        fed: &[(ValueId, Vec<usize>, bool)],
        limit: Option<&MemLimit>,
    ) -> Result<(u64, u64), String> {
        let mut m = model.clone();
        for (v, shape, _) in fed {
            let name = m.graph.value(*v).name.clone();
            let dims = shape.iter().map(|&d| Dim::Known(d as i64)).collect();
            // An input the declared shape cannot take is reported by the input check.
            if kiln_ops::infer::set_input_shape(&mut m.graph, &name, dims).is_err() {
                return Ok((0, 0));
            }
        }
        // A node that cannot be inferred fails in its kernel, with that kernel's message; the
        // nodes before it keep the sizes inferred so far and are still counted, so that a run
        // that would fail late does not exhaust memory first.
        let _ = kiln_ops::infer_shapes(&mut m);
        let g = &m.graph;
        let bytes = |v: ValueId| -> Option<u64> {
            let ty = g.value(v).ty.as_ref()?;
            let n = ty.shape()?.iter().try_fold(1u64, |a, d| {
                d.known()
                    .and_then(|k| u64::try_from(k).ok())
                    .and_then(|k| a.checked_mul(k))
            })?;
            let bits = ty.dtype()?.bits().unwrap_or(64) as u64;
            Some(n.saturating_mul(bits).div_ceil(8))
        };
        let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let last_use = |v: ValueId| -> usize {
            if g.is_graph_output(v) {
                return usize::MAX;
            }
            g.value(v)
                .consumers()
                .iter()
                .filter_map(|u| pos.get(&u.node).copied())
                .max()
                .unwrap_or(0)
        };
        // The fed inputs stay alive for the whole run.
        let inputs: u64 = fed
            .iter()
            .filter(|(_, _, counted)| *counted)
            .filter_map(|(v, _, _)| bytes(*v))
            .sum();
        let mut alive: Vec<(usize, u64)> = Vec::new();
        let mut total = inputs;
        let mut peak = inputs;
        let resident = self.kind == LimitKind::Environment;
        let cap = limit.map_or(u64::MAX, |l| {
            l.bytes.saturating_add(if resident { inputs } else { 0 })
        });
        for (i, &n) in order.iter().enumerate() {
            // Scratch the kernel needs while it runs, on top of what is alive.
            let scratch = workspace(g, n);
            for &v in g.node(n).outputs().iter().flatten() {
                let Some(b) = bytes(v) else { continue };
                total = total.saturating_add(b);
                peak = peak.max(total.saturating_add(scratch));
                if total.saturating_add(scratch) > cap {
                    let ty = g
                        .value(v)
                        .ty
                        .as_ref()
                        .map(|t| t.to_string())
                        .unwrap_or_default();
                    let shape = g
                        .value(v)
                        .ty
                        .as_ref()
                        .and_then(|t| t.shape())
                        .map(|s| {
                            s.iter()
                                .map(|d| d.to_string())
                                .collect::<Vec<_>>()
                                .join("x")
                        })
                        .unwrap_or_default();
                    let need = total.saturating_add(scratch);
                    let what = if resident {
                        format!(
                            "{} beyond the {} of inputs it holds (kernel scratch {})",
                            human(need.saturating_sub(inputs)),
                            human(inputs),
                            human(scratch)
                        )
                    } else {
                        format!(
                            "{} (inputs {}, kernel scratch {})",
                            human(need),
                            human(inputs),
                            human(scratch)
                        )
                    };
                    return Err(format!(
                        "{}: its output '{}' ({ty} [{shape}], {}) would bring this run to {what}, \
                         over the memory limit of {}",
                        g.describe(n),
                        g.value(v).name,
                        human(b),
                        limit.map_or_else(|| "?".into(), |l| l.to_string())
                    ));
                }
                alive.push((last_use(v).max(i), b));
            }
            alive.retain(|&(last, b)| {
                if last <= i {
                    total -= b;
                    false
                } else {
                    true
                }
            });
        }
        Ok((peak, inputs))
    }
}

/// The scratch memory a node's kernel allocates while it runs, roughly: a convolution copies
/// its input padded and split by stride phase, and packs im2col panels from that copy; measured
/// on YOLOv8n at 12800², a run's resident memory beyond its live tensors is about three times
/// the largest convolution input.
fn workspace(g: &kiln_ir::Graph, n: NodeId) -> u64 {
    let node = g.node(n);
    if !matches!(node.op_type.as_str(), "Conv" | "FusedConv" | "ConvInteger") {
        return 0;
    }
    let Some(Some(x)) = node.inputs().first() else {
        return 0;
    };
    let Some(shape) = g.value(*x).ty.as_ref().and_then(|t| t.shape()) else {
        return 0;
    };
    let n: Option<u64> = shape.iter().try_fold(1u64, |a, d| {
        d.known()
            .and_then(|k| u64::try_from(k).ok())
            .and_then(|k| a.checked_mul(k))
    });
    n.map_or(0, |n| n.saturating_mul(12))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `/proc` and `/sys/fs/cgroup` under a temporary root.
    fn fake(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    const MEMINFO: (&str, &str) = (
        "/proc/meminfo",
        "MemTotal:       32000000 kB\nMemFree:        1000 kB\nMemAvailable:   20971520 kB\n",
    );
    const STATUS: (&str, &str) = (
        "/proc/self/status",
        "Name:\tkiln\nVmPeak:\t  999 kB\nVmSize:\t  1048576 kB\nVmData:\t  524288 kB\n",
    );

    fn limits(as_soft: &str) -> String {
        format!(
            "Limit                     Soft Limit           Hard Limit           Units\n\
             Max data size             unlimited            unlimited            bytes\n\
             Max address space         {as_soft:<20} unlimited            bytes\n"
        )
    }

    #[test]
    fn the_environment_limit_is_the_smallest_headroom() {
        // Nothing but meminfo: the memory available.
        let d = fake(&[MEMINFO]);
        let l = EnvLimits::at(d.path()).limit().unwrap();
        assert_eq!(l.bytes, 20 << 30);
        assert_eq!(l.source, "the memory available");
        // RLIMIT_AS of 8 GiB with 1 GiB mapped: 7 GiB left.
        let lim = limits("8589934592");
        let d = fake(&[MEMINFO, STATUS, ("/proc/self/limits", &lim)]);
        let l = EnvLimits::at(d.path()).limit().unwrap();
        assert_eq!(l.bytes, 7 << 30);
        assert!(l.source.contains("RLIMIT_AS"), "{}", l.source);
        // Unlimited: back to the memory available.
        let lim = limits("unlimited");
        let d = fake(&[MEMINFO, STATUS, ("/proc/self/limits", &lim)]);
        assert_eq!(EnvLimits::at(d.path()).limit().unwrap().bytes, 20 << 30);
    }

    #[test]
    fn cgroup_limits_are_read_for_v2_and_v1_and_their_ancestors() {
        // v2: the pod's limit (3 GiB, 1 GiB used of which 256 MiB inactive page cache) sits on
        // the parent of the process's group, which has none of its own.
        let mountinfo = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
        let d = fake(&[
            MEMINFO,
            ("/proc/self/mountinfo", mountinfo),
            ("/proc/self/cgroup", "0::/kubepods/pod1/ctr\n"),
            ("/sys/fs/cgroup/kubepods/pod1/ctr/memory.max", "max\n"),
            (
                "/sys/fs/cgroup/kubepods/pod1/ctr/memory.current",
                "1073741824\n",
            ),
            ("/sys/fs/cgroup/kubepods/pod1/memory.max", "3221225472\n"),
            (
                "/sys/fs/cgroup/kubepods/pod1/memory.current",
                "1073741824\n",
            ),
            (
                "/sys/fs/cgroup/kubepods/pod1/memory.stat",
                "anon 1\ninactive_file 268435456\n",
            ),
        ]);
        let l = EnvLimits::at(d.path()).limit().unwrap();
        assert_eq!(l.bytes, (3 << 30) - (1 << 30) + (256 << 20));
        assert!(l.source.contains("memory.max of 3.0 GiB"), "{}", l.source);
        // A leaf whose parent does not delegate the memory controller has no memory files at
        // all: the walk still starts there and finds the limit above it.
        let d = fake(&[
            MEMINFO,
            ("/proc/self/mountinfo", mountinfo),
            ("/proc/self/cgroup", "0::/pod2/init\n"),
            ("/sys/fs/cgroup/pod2/init/cgroup.procs", "1\n"),
            ("/sys/fs/cgroup/pod2/memory.max", "1073741824\n"),
            ("/sys/fs/cgroup/pod2/memory.current", "0\n"),
            ("/sys/fs/cgroup/memory.max", "4294967296\n"),
        ]);
        assert_eq!(EnvLimits::at(d.path()).limit().unwrap().bytes, 1 << 30);
        // A malformed mountinfo line is skipped, not the end of the search; escaped spaces in
        // a mount point are decoded.
        let d = fake(&[
            MEMINFO,
            (
                "/proc/self/mountinfo",
                "garbage\n31 23 0:26 / /sys/fs/cgroup\\040x rw - cgroup2 cgroup2 rw\n",
            ),
            ("/proc/self/cgroup", "0::/\n"),
            ("/sys/fs/cgroup x/memory.max", "2147483648\n"),
        ]);
        assert_eq!(EnvLimits::at(d.path()).limit().unwrap().bytes, 2 << 30);
        // A container sees the host's path in /proc/self/cgroup but its own group mounted at
        // the root: the mount's own files are read.
        let d = fake(&[
            MEMINFO,
            ("/proc/self/mountinfo", mountinfo),
            ("/proc/self/cgroup", "0::/host/path/we/cannot/see\n"),
            ("/sys/fs/cgroup/memory.max", "2147483648\n"),
            ("/sys/fs/cgroup/memory.current", "536870912\n"),
        ]);
        assert_eq!(EnvLimits::at(d.path()).limit().unwrap().bytes, 3 << 29);
        // v1, with the no-limit value on the group and a limit on its parent.
        let d = fake(&[
            MEMINFO,
            (
                "/proc/self/mountinfo",
                "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                 36 31 0:33 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n",
            ),
            ("/proc/self/cgroup", "5:cpu:/\n4:memory:/svc/job\n"),
            (
                "/sys/fs/cgroup/memory/svc/job/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/svc/job/memory.usage_in_bytes",
                "100\n",
            ),
            (
                "/sys/fs/cgroup/memory/svc/memory.limit_in_bytes",
                "1073741824\n",
            ),
            (
                "/sys/fs/cgroup/memory/svc/memory.usage_in_bytes",
                "536870912\n",
            ),
            (
                "/sys/fs/cgroup/memory/svc/memory.stat",
                "total_inactive_file 0\n",
            ),
        ]);
        let l = EnvLimits::at(d.path()).limit().unwrap();
        assert_eq!(l.bytes, 1 << 29);
        assert!(l.source.contains("limit_in_bytes"), "{}", l.source);
        // Nothing readable at all: no limit.
        let d = fake(&[]);
        assert!(EnvLimits::at(d.path()).limit().is_none());
    }

    #[test]
    fn larger_shapes_bound_smaller_ones() {
        let big = vec![vec![1, 1], vec![1, 1024], vec![1, 2, 1024, 64]];
        assert!(dominates(
            &big,
            &[vec![1, 1], vec![1, 300], vec![1, 2, 1024, 64]]
        ));
        assert!(!dominates(
            &big,
            &[vec![1, 2], vec![1, 300], vec![1, 2, 1024, 64]]
        ));
        assert!(!dominates(
            &big,
            &[vec![1, 1], vec![1, 300, 1], vec![1, 2, 1024, 64]]
        ));
        assert!(!dominates(&big, &[vec![1, 1], vec![1, 300]]));
    }

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("2K").unwrap(), 2048);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("3MiB").unwrap(), 3 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1G").is_err());
        assert_eq!(human(3 << 29), "1.5 GiB");
    }
}

/// Whether every input shape of `big` is at least `small`'s, dim by dim (same ranks).
fn dominates(big: &[Vec<usize>], small: &[Vec<usize>]) -> bool {
    big.len() == small.len()
        && big
            .iter()
            .zip(small)
            .all(|(b, s)| b.len() == s.len() && b.iter().zip(s).all(|(x, y)| x >= y))
}
