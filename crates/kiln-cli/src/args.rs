//! Command-line arguments, as the CLI contract spells them.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "ONNX inference runtime and graph optimizer"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Opsets, inputs, outputs and op counts of a model (the built-in demo model if none).
    Inspect(InspectArgs),
    /// Optimize a model for the given providers and save it.
    Optimize(OptimizeArgs),
    /// Run a model once.
    Run(RunArgs),
    /// Time whole inference runs (several --level / --ep variants run interleaved).
    Bench(BenchArgs),
    /// Show the optimizer at work: passes, partitions, fused vs unfused outputs and timings.
    Demo(DemoArgs),
    /// Show how the graph is split across execution providers.
    Partition(RunArgs),
    /// Run ONNX backend node test cases from a folder.
    Conformance(ConformanceArgs),
    /// Serve models over the Open Inference Protocol (KServe v2) on HTTP and gRPC.
    Serve(ServeArgs),
    /// Generate text with a decoder model folder as onnxruntime-genai's builder writes it.
    Generate(GenerateArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    /// The model folder (genai_config.json, the model, tokenizer.json).
    pub model_dir: PathBuf,
    /// The prompt (default: empty, the tokenizer's start token alone); repeat the flag for a
    /// batch of prompts.
    #[arg(long)]
    pub prompt: Vec<String>,
    /// Most tokens per sequence, prompt included (default: the config's search.max_length).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Fewest tokens per sequence, prompt included: EOS does not end one sooner.
    #[arg(long)]
    pub min_length: Option<usize>,
    /// Sampling temperature; giving it, --top-k, --top-p or --seed samples instead of greedy.
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Greedy search even where the config samples.
    #[arg(long)]
    pub greedy: bool,
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the generated token ids (a line per sequence) instead of streaming text.
    #[arg(long)]
    pub ids: bool,
    /// Generate N times on the loaded model (a warm measurement): the text and speeds shown are
    /// the last run's; the earlier runs' speeds go to stderr first.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// One JSON object on stdout: {"tokens", "text", "prefill_tokens_per_s", "decode_tokens_per_s"}
    /// (tokens and text per sequence, as lists, for a batch).
    #[arg(long)]
    pub json: bool,
}

/// The arithmetic of matrix products (`--precision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    F32,
    /// Weights and activations rounded to bfloat16 at MatMul and Attention's projections, f32
    /// sums (needs AVX512-BF16).
    Bf16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Level {
    Disabled,
    Basic,
    Extended,
    All,
}

#[derive(Args)]
pub struct InspectArgs {
    /// The model file; the built-in demo model when omitted.
    pub model: Option<PathBuf>,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also infer and list the type and shape of every value.
    #[arg(long)]
    pub shapes: bool,
    /// Fix an input's dims for shape inference: NAME=D0,D1,... (numbers or names).
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    pub shape: Vec<String>,
}

#[derive(Args)]
pub struct OptimizeArgs {
    pub model: Option<PathBuf>,
    /// Where to write the optimized model.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    #[arg(long, value_enum, default_value = "all")]
    pub level: Level,
    /// Execution providers in priority order.
    #[arg(long, default_value = "cpu")]
    pub ep: String,
    /// Write only standard ONNX ops.
    #[arg(long)]
    pub portable: bool,
    /// Keep ops of ONNX's domains that kiln does not know as they are (refused otherwise).
    #[arg(long)]
    pub allow_unknown_ops: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RunArgs {
    pub model: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "all")]
    pub level: Level,
    #[arg(long, default_value = "cpu")]
    pub ep: String,
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub json: bool,
    #[arg(long = "input", value_name = "NAME=FILE.npy")]
    pub input: Vec<String>,
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    pub shape: Vec<String>,
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Most memory one run may use for inputs made here and intermediates (BYTES with K/M/G/T;
    /// default: the memory the machine has available).
    #[arg(long, value_name = "BYTES")]
    pub memory_limit: Option<String>,
    /// Matrix products in f32 (default) or bfloat16 with f32 sums.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
}

#[derive(Args)]
pub struct ConformanceArgs {
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub filter: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    pub model: Option<PathBuf>,
    /// Optimization levels to compare (repeat the flag for several variants).
    #[arg(long, value_enum)]
    pub level: Vec<Level>,
    /// Provider lists to compare (repeat the flag for several variants).
    #[arg(long)]
    pub ep: Vec<String>,
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long = "input", value_name = "NAME=FILE.npy")]
    pub input: Vec<String>,
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    pub shape: Vec<String>,
    /// Most memory one run may use (BYTES with K/M/G/T; default: the memory available).
    #[arg(long, value_name = "BYTES")]
    pub memory_limit: Option<String>,
    /// Precisions to compare (repeat the flag for several variants; default f32).
    #[arg(long, value_enum)]
    pub precision: Vec<Precision>,
    /// Untimed runs per variant first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed runs per variant in each round.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Rounds; each round runs every variant in turn (A B A B ...).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Afterwards, time each node over N more runs of the first variant and print where the
    /// time goes, by op type and by node (on stderr; the JSON on stdout is unchanged).
    #[arg(long, value_name = "N")]
    pub profile: Option<usize>,
    /// How many of the slowest nodes `--profile` lists.
    #[arg(long, value_name = "N", default_value_t = 15)]
    pub profile_top: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DemoArgs {
    /// The model file; the built-in demo model when omitted.
    pub model: Option<PathBuf>,
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    pub shape: Vec<String>,
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed runs per level.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
}

#[derive(Args)]
pub struct ServeArgs {
    /// A model to serve: NAME=PATH (repeat for several).
    #[arg(long = "model", value_name = "NAME=PATH")]
    pub model: Vec<String>,
    /// A decoder LLM folder (onnxruntime-genai's layout) to serve through OpenAI's API
    /// (/v1/completions, /v1/chat/completions, /v1/models): NAME=DIR (repeat for several).
    #[arg(long = "llm", value_name = "NAME=DIR")]
    pub llm: Vec<String>,
    /// A folder of NAME/model.onnx (or NAME/VERSION/model.onnx; the highest version is served).
    #[arg(long, value_name = "DIR")]
    pub model_repository: Option<PathBuf>,
    #[arg(long, default_value_t = 8000)]
    pub http_port: u16,
    #[arg(long, default_value_t = 8001)]
    pub grpc_port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, default_value = "cpu")]
    pub ep: String,
    #[arg(long, value_enum, default_value = "all")]
    pub level: Level,
    /// Batch requests of a model with a dynamic first dimension, up to N rows per run.
    #[arg(long, default_value_t = 0)]
    pub max_batch: usize,
    /// How long a request waits for others to batch with (with --max-batch).
    #[arg(long, default_value_t = 2.0)]
    pub batch_delay_ms: f64,
    /// Requests with longer bodies are refused (413).
    #[arg(long, default_value_t = 64 << 20)]
    pub max_request_bytes: usize,
    /// Most memory one run may use (BYTES with K/M/G/T).
    #[arg(long, value_name = "BYTES")]
    pub memory_limit: Option<String>,
    /// Matrix products in f32 (default) or bfloat16 with f32 sums.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
}
