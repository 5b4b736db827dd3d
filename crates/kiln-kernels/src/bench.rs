//! What the micro-benchmarks share (`benches/` of this crate and of kiln-ops): their command
//! line and the timing loop, which can interleave two variants of a switch in one process.
//! Not part of the kernels' API.
use std::time::Instant;

/// `[--threads N] [--ms MS] [--ab VAR] [FILTER]`.
pub struct Args {
    pub threads: usize,
    /// About how long each case runs, after one warm-up call.
    pub ms: f64,
    /// The environment variable [`time`] alternates, if any.
    pub ab: Option<String>,
    /// Only cases whose name contains it run.
    pub filter: String,
}

impl Args {
    /// The process's arguments (cargo's own `--bench` dropped).
    pub fn parse(default_threads: usize) -> Args {
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        let mut out = Args {
            threads: default_threads,
            ms: 300.0,
            ab: None,
            filter: String::new(),
        };
        let mut i = 0;
        while i < args.len() {
            let value = |i: usize, what: &str| {
                args.get(i + 1)
                    .unwrap_or_else(|| panic!("{what} needs a value"))
                    .clone()
            };
            match args[i].as_str() {
                "--threads" => {
                    out.threads = value(i, "--threads").parse().expect("--threads N");
                    i += 1;
                }
                "--ms" => {
                    out.ms = value(i, "--ms").parse().expect("--ms MS");
                    i += 1;
                }
                "--ab" => {
                    out.ab = Some(value(i, "--ab"));
                    i += 1;
                }
                other => out.filter = other.to_string(),
            }
            i += 1;
        }
        out
    }

    pub fn pool(&self) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .build()
            .expect("thread pool")
    }
}

/// Median seconds per call of `f`; with `ab`, calls alternate between that environment
/// variable unset and set (a switch the code under test reads), giving both medians, unset
/// first, from one interleaved run: on a shared machine whose speed drifts, separate runs
/// disagree by more than most changes are worth.
pub fn time(ms: f64, ab: Option<&str>, mut f: impl FnMut()) -> (f64, Option<f64>) {
    f();
    let start = Instant::now();
    // times[1]: the variable set (or no A/B at all); times[0]: unset.
    let mut times = [Vec::new(), Vec::new()];
    let mut turn = 1;
    while start.elapsed().as_secs_f64() * 1e3 < ms || times[1].len() < 5 {
        if let Some(var) = ab {
            turn = 1 - turn;
            if turn == 1 {
                std::env::set_var(var, "1");
            } else {
                std::env::remove_var(var);
            }
        }
        let t = Instant::now();
        f();
        times[turn].push(t.elapsed().as_secs_f64());
    }
    if let Some(var) = ab {
        std::env::remove_var(var);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let [mut unset, mut set] = times;
    match ab {
        None => (median(&mut set), None),
        Some(_) => (median(&mut unset), Some(median(&mut set))),
    }
}
