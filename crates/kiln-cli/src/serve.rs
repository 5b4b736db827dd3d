//! `kiln serve`: the CLI's side of the model server (flags to `kiln_serve::ServeConfig`).
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::args::ServeArgs;
use crate::report;

/// A server's requests run on many threads over its life (tokio's blocking pool comes and
/// goes), and glibc gives threads malloc arenas of their own, up to eight per core; with the
/// freed memory the CLI keeps for reuse (`keep_freed_memory`), each arena holds its peak, and
/// the server's memory grew by 25 MiB every 400 fuzzed requests (238 to 417 MiB over 8 rounds).
/// A few arenas, shared, level off instead (131 to 174 MiB).
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // SAFETY: mallopt only changes an allocator limit; called before the server's threads.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores.clamp(2, 8) as libc::c_int);
        }
    }
}

pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    cap_malloc_arenas();
    let pairs = |flag: &str, list: &[String]| {
        list.iter()
            .map(|m| {
                let (name, path) = m
                    .split_once('=')
                    .with_context(|| format!("{flag} {m}: expected NAME=PATH"))?;
                anyhow::ensure!(!name.is_empty(), "{flag} {m}: the name is empty");
                Ok((name.to_string(), PathBuf::from(path)))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    };
    let models = pairs("--model", &a.model)?;
    let llms = pairs("--llm", &a.llm)?;
    let session = kiln_runtime::SessionOptions {
        threads: a.threads,
        level: report::level(a.level),
        providers: report::providers(&a.ep)?,
        memory_limit: report::memory_limit(a.memory_limit.as_deref())?,
        precision: report::precision(a.precision),
    };
    let cfg = kiln_serve::ServeConfig {
        models,
        repository: a.model_repository,
        host: a.host,
        http_port: a.http_port,
        grpc_port: a.grpc_port,
        session,
        max_batch: a.max_batch,
        batch_delay: Duration::try_from_secs_f64(a.batch_delay_ms / 1e3).map_err(|_| {
            anyhow::anyhow!(
                "--batch-delay-ms {}: not a duration in milliseconds",
                a.batch_delay_ms
            )
        })?,
        max_request_bytes: a.max_request_bytes,
        llms,
    };
    kiln_serve::run(cfg).map_err(|e| anyhow::anyhow!(e))
}
