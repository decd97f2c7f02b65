//! The command line: clap grammar (this file), environment resolution, one module per command.

mod bundle;
mod completion;
mod config;
mod delete;
mod deploy;
mod env_cmd;
mod environment;
mod failure;
mod get;
mod get_batch;
mod get_envs;
mod get_splitter;
mod get_tables;
mod identity;
mod local_server;
mod logs;
mod output;
mod predict;
mod project_files;
mod prompt;
mod render;
mod server_cmd;
pub mod style;
mod terminal_log;
mod version;
mod wait;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use failure::usage_document;
pub use output::OutputFormat;

/// How a command ended, for the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: everything worked.
    Success,
    /// 1: the server or the spec said no (the command already printed why).
    Failure,
}

#[derive(Debug, Parser)]
#[command(
    name = "cortex",
    version,
    about = "deploy machine learning models as realtime and batch apis",
    propagate_version = true,
    infer_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// create or update apis from a cortex.yaml
    Deploy(DeployArgs),
    /// get information about apis or jobs
    Get(GetArgs),
    /// stream logs from an api (on a terminal; piped, print them and exit unless -f)
    Logs(LogsArgs),
    /// delete an api or stop a job
    Delete(DeleteArgs),
    /// wait until an api is live or a job has ended (exit 1 if it fails or times out)
    Wait(WaitArgs),
    /// manage cli environments (which cortex server to talk to)
    #[command(subcommand)]
    Env(EnvCommand),
    /// run the cortex server in the foreground, or manage the local one
    Server(Box<ServerArgs>),
    /// manage the users of a server (admins)
    #[command(subcommand)]
    Users(identity::UsersCommand),
    /// manage teams and their members
    #[command(subcommand)]
    Teams(identity::TeamsCommand),
    /// create, list and revoke tokens
    #[command(subcommand)]
    Tokens(identity::TokensCommand),
    /// set who may use an api: private, protected (a team) or public
    Access(identity::AccessArgs),
    /// make a prediction: post a json file to an api and print its answer
    Predict(PredictArgs),
    /// restart every replica of an api with a rolling update (no downtime)
    Refresh(RefreshArgs),
    /// generate shell completion scripts
    Completion(CompletionArgs),
    /// print the cli and server versions
    Version(VersionArgs),
}

#[derive(Debug, Args)]
pub struct EnvFlag {
    /// environment to use (default: the configured default, usually "local")
    #[arg(short = 'e', long = "env", value_name = "ENV")]
    pub env: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// path to the api configuration file (or a directory holding a cortex.yaml)
    #[arg(value_name = "CONFIG_FILE", default_value = "cortex.yaml")]
    pub config_file: PathBuf,
    #[command(flatten)]
    pub env: EnvFlag,
    /// override the in-progress api update
    #[arg(short, long)]
    pub force: bool,
    /// skip prompts
    #[arg(short, long)]
    pub yes: bool,
    /// then wait until every api of the deploy is live (exit 1 as soon as one fails)
    #[arg(long)]
    pub wait: bool,
    /// with --wait: how long to wait, e.g. 90s, 10m, 1h
    #[arg(long, value_name = "DURATION", requires = "wait", default_value = wait::DEFAULT_TIMEOUT)]
    pub timeout: crate::spec::Duration,
    /// output format (with --wait: the `cortex get API -o json` documents, at the end)
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Pretty)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// the api to wait for (until it is live)
    #[arg(value_parser = api_name)]
    pub api: String,
    /// a batch job id (wait until the job ends)
    pub job_id: Option<String>,
    #[command(flatten)]
    pub env: EnvFlag,
    /// how long to wait, e.g. 90s, 10m, 1h
    #[arg(long, value_name = "DURATION", default_value = wait::DEFAULT_TIMEOUT)]
    pub timeout: crate::spec::Duration,
    /// output format (json, yaml: the `cortex get API [JOB_ID] -o json` document, at the end)
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Pretty)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// the api to describe (all apis when absent)
    #[arg(value_parser = api_name)]
    pub api: Option<String>,
    /// a batch job id
    pub job_id: Option<String>,
    #[command(flatten)]
    pub env: EnvFlag,
    /// re-run the command every 2 seconds
    #[arg(short, long)]
    pub watch: bool,
    /// with a job id: list every batch that failed for good, not only the first 10
    #[arg(long, requires = "job_id")]
    pub failed: bool,
    /// output format
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Pretty)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// the api whose logs to show
    #[arg(value_parser = api_name)]
    pub api: String,
    /// a batch job id
    pub job_id: Option<String>,
    #[command(flatten)]
    pub env: EnvFlag,
    /// keep streaming new lines (the default on a terminal)
    #[arg(short, long, conflicts_with = "no_follow")]
    pub follow: bool,
    /// print the lines there are and exit (the default when stdout is not a terminal)
    #[arg(long)]
    pub no_follow: bool,
    /// only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// output format (json: one `{"line": ...}` document per log line)
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Pretty)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// the RealtimeAPI (or TrafficSplitter) to call
    #[arg(value_parser = api_name)]
    pub api: String,
    /// a file holding the JSON payload
    pub json_file: std::path::PathBuf,
    #[command(flatten)]
    pub env: EnvFlag,
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// the RealtimeAPI whose replicas to restart
    #[arg(value_parser = api_name)]
    pub api: String,
    /// override the in-progress api update
    #[arg(short, long)]
    pub force: bool,
    #[command(flatten)]
    pub env: EnvFlag,
    /// output format
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Pretty)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// the api to delete (with a job id: the api whose job to stop)
    #[arg(value_parser = api_name)]
    pub api: String,
    /// a batch job id to stop
    pub job_id: Option<String>,
    #[command(flatten)]
    pub env: EnvFlag,
    /// delete without confirmation, even an api that a traffic splitter uses
    #[arg(short, long)]
    pub force: bool,
    /// skip prompts
    #[arg(short, long)]
    pub yes: bool,
    /// keep the api's uploaded project on the server for an hour, so deploying it again uploads nothing
    #[arg(short = 'c', long)]
    pub keep_cache: bool,
    /// output format
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Pretty)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// add or update an environment (a remote cortex server)
    Configure(EnvConfigureArgs),
    /// list the configured environments
    List {
        /// output format
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Pretty)]
        output: OutputFormat,
    },
    /// set (or print) the default environment
    Default {
        /// the environment to make the default
        name: Option<String>,
    },
    /// delete an environment's configuration
    Delete {
        /// the environment to delete
        name: String,
    },
    /// print an environment's token (for scripts and curl)
    Token {
        /// the environment (default: the default environment)
        name: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct EnvConfigureArgs {
    /// the environment's name
    pub name: String,
    /// the server's base url, e.g. https://cortex.example.com
    #[arg(long)]
    pub endpoint: Option<String>,
    /// the token to authenticate with
    #[arg(long)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    pub command: Option<ServerCommand>,
    /// address to listen on
    #[arg(long, default_value = "127.0.0.1:8888")]
    pub listen: std::net::SocketAddr,
    /// where the server keeps its database, bundles and logs (default: <config dir>/local, the
    /// local environment's server)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// if the port is taken, listen on a free one instead
    #[arg(long, hide = true)]
    pub port_fallback: bool,
    /// a token on every route, also when listening on loopback only (where predictions, jobs
    /// and /metrics otherwise take callers without one): for a server behind a reverse proxy,
    /// or on a machine other people use
    #[arg(long)]
    pub require_tokens: bool,
    /// refuse deploys (507) while the data directory's disk has less free space than this (MiB)
    #[arg(
        long,
        value_name = "MIB",
        env = "CORTEX_MIN_FREE_DISK_MB",
        default_value_t = 1024
    )]
    pub min_free_disk_mb: u64,
    /// lines of stdout and of stderr per replica that `GET /api/v2/deploy/{id}/logs` returns
    #[arg(long, value_name = "LINES", default_value_t = 200)]
    pub log_tail_lines: usize,
    /// let batch jobs read `delimited_files` from this directory (paths outside it are refused)
    #[arg(long, value_name = "DIR", env = "CORTEX_DATA_ROOT")]
    pub data_root: Option<PathBuf>,
    /// let batch jobs fetch `delimited_files` URLs from this network (CIDR) or host name too,
    /// although it is loopback, private or otherwise special (repeatable)
    #[arg(
        long,
        value_name = "CIDR|HOST",
        env = "CORTEX_ALLOW_FETCH",
        value_delimiter = ','
    )]
    pub allow_fetch: Vec<crate::server::fetch::Allowed>,
    /// open client connections at most; more wait to be accepted (default: half the open-file
    /// limit, which the server raises to its hard limit)
    #[arg(long, value_name = "N", env = "CORTEX_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// close a connection that has not sent a request's headers this long after it opened or
    /// after its previous answer (seconds)
    #[arg(
        long,
        value_name = "SECS",
        env = "CORTEX_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub header_read_timeout: u64,
    /// close a keep-alive connection that sends nothing this long after its last answer
    /// (seconds)
    #[arg(
        long,
        value_name = "SECS",
        env = "CORTEX_IDLE_TIMEOUT_SECS",
        default_value_t = 5
    )]
    pub idle_timeout: u64,
    /// close a pooled connection from the gateway to a replica after this long unused (seconds)
    #[arg(
        long,
        value_name = "SECS",
        env = "CORTEX_REPLICA_IDLE_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub replica_idle_timeout: u64,
    /// memory that prediction bodies sent without a Content-Length (read whole before they go
    /// to a replica) may use together; past it they are refused with 503 (MiB)
    #[arg(
        long,
        value_name = "MIB",
        env = "CORTEX_MAX_BUFFERED_BODIES_MB",
        default_value_t = 256
    )]
    pub max_buffered_bodies_mb: usize,
    /// cap each replica log file at this size (MiB); past it the file is rotated, and one
    /// rotated generation is kept
    #[arg(
        long,
        value_name = "MIB",
        env = "CORTEX_LOG_MAX_MB",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub log_max_mb: u64,
    /// refuse bundles (422) that unpack to more than this (MiB)
    #[arg(
        long,
        value_name = "MIB",
        env = "CORTEX_MAX_UNPACKED_MB",
        default_value_t = 2048
    )]
    pub max_unpacked_mb: u64,
    /// refuse bundles (422) that hold more files than this
    #[arg(
        long,
        value_name = "N",
        env = "CORTEX_MAX_BUNDLE_FILES",
        default_value_t = 100_000
    )]
    pub max_bundle_files: u64,
    /// batch workers that may run at once across all jobs; the others wait as pending
    #[arg(
        long,
        value_name = "N",
        env = "CORTEX_MAX_BATCH_WORKERS",
        default_value_t = 32,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_batch_workers: u32,
    /// python interpreters kept started, with the runtime imported, for python replicas to
    /// start from (each becomes one replica); 0 starts every replica anew
    #[arg(
        long,
        value_name = "N",
        env = "CORTEX_SPARE_INTERPRETERS",
        default_value_t = 1
    )]
    pub spare_interpreters: u32,
    #[command(flatten)]
    pub isolation: IsolationArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// What runs replicas and batch workers.
#[derive(Debug, clap::Args)]
pub struct EngineArgs {
    /// what runs replicas and batch workers: local (child processes of the server) or ray
    /// (actors of the Ray cluster at --ray-address)
    #[arg(
        long,
        value_name = "ENGINE",
        default_value = "local",
        env = "CORTEX_ENGINE"
    )]
    pub engine: EngineKind,
    /// the Ray cluster's dashboard address, e.g. http://HEAD:8265 (with --engine ray)
    #[arg(long, value_name = "URL", env = "CORTEX_RAY_ADDRESS")]
    pub ray_address: Option<String>,
    /// a file holding the Ray cluster's token (its nodes' RAY_AUTH_TOKEN)
    #[arg(long, value_name = "FILE", env = "CORTEX_RAY_TOKEN_FILE")]
    pub ray_token_file: Option<PathBuf>,
    /// where the server listens for the Ray drivers and the nodes' bundle downloads
    /// [default: the --listen address, any free port]
    #[arg(long, value_name = "ADDR", env = "CORTEX_RAY_LISTEN")]
    pub ray_listen: Option<std::net::SocketAddr>,
    /// the python on the Ray nodes that runs cortex's driver (it must import ray)
    #[arg(
        long,
        value_name = "PATH",
        default_value = "python3",
        env = "CORTEX_RAY_PYTHON"
    )]
    pub ray_python: String,
}

/// `--engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    Local,
    Ray,
}

/// How `cortex server` holds its tenants' replicas in.
#[derive(Debug, clap::Args)]
pub struct IsolationArgs {
    /// what replicas may reach: standard (everything but the server's files and other apis'),
    /// strict (system paths, their own files and --replica-path directories only), or off
    #[arg(long, value_name = "LEVEL", default_value = "standard")]
    pub sandbox: crate::engine::local::sandbox::SandboxMode,
    /// a directory every replica may read (or read and write, with :rw) in strict mode
    /// (repeatable)
    #[arg(long = "replica-path", value_name = "DIR[:rw]")]
    pub replica_paths: Vec<crate::engine::local::sandbox::Grant>,
    /// the unprivileged user replicas run as when the server runs as root [default: nobody]
    #[arg(long, value_name = "NAME")]
    pub replica_user: Option<String>,
    /// listen beyond loopback even when replicas cannot be sandboxed (no Landlock, or
    /// --sandbox off)
    #[arg(long)]
    pub allow_unsandboxed_replicas: bool,
    /// processes and threads each run of a replica, batch worker or preparation may have
    /// (a fork or thread start past it fails); 0: no limit. Needs the pids cgroup controller
    #[arg(
        long,
        value_name = "N",
        env = "CORTEX_MAX_REPLICA_PIDS",
        default_value_t = 2048
    )]
    pub max_replica_pids: u64,
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// show whether the local server is running
    Status,
    /// stop the local server
    Stop,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// the shell to generate completions for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(flatten)]
    pub env: EnvFlag,
}

/// Checks an API name argument: a name `cortex.yaml` may give, or a saved model's free-form
/// name (sent as one URL path segment).
fn api_name(s: &str) -> Result<String, String> {
    crate::spec::check_given_name(s).map(|()| s.to_string())
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    if let Command::Completion(args) = &cli.command {
        completion::run(args.shell);
        return Ok(ExitStatus::Success);
    }
    let format = output_format(&cli.command);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Deploy(args) => deploy::run(args).await,
            Command::Get(args) => get::run(args).await,
            Command::Logs(args) => logs::run(args).await,
            Command::Delete(args) => delete::run(args).await,
            Command::Wait(args) => wait::run(args).await,
            Command::Env(cmd) => env_cmd::run(cmd).await,
            Command::Users(cmd) => identity::users(cmd).await,
            Command::Teams(cmd) => identity::teams(cmd).await,
            Command::Tokens(cmd) => identity::tokens(cmd).await,
            Command::Access(args) => identity::access(args).await,
            Command::Predict(args) => predict::run(args).await,
            Command::Refresh(args) => predict::refresh(args).await,
            Command::Server(args) => server_cmd::run(*args).await,
            Command::Version(args) => version::run(args).await,
            Command::Completion(_) => Ok(ExitStatus::Success),
        }
    });
    if let Err(e) = &result {
        // The document on stdout for scripts; `main` still says why on stderr.
        if let Some(doc) = failure::document(format, e) {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(doc.as_bytes()).and_then(|()| out.flush());
        }
    }
    result
}

/// The `-o` a command was given (`pretty` for commands without one).
fn output_format(command: &Command) -> OutputFormat {
    match command {
        Command::Deploy(a) => a.output,
        Command::Get(a) => a.output,
        Command::Logs(a) => a.output,
        Command::Delete(a) => a.output,
        Command::Wait(a) => a.output,
        Command::Refresh(a) => a.output,
        Command::Env(EnvCommand::List { output }) => *output,
        Command::Users(c) => c.output(),
        Command::Teams(c) => c.output(),
        Command::Tokens(c) => c.output(),
        Command::Access(a) => a.common.output,
        _ => OutputFormat::Pretty,
    }
}

/// The clap command, for completions and docs.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
