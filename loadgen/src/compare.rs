//! `loadgen compare`: the same scenario set against the engine, nats-server and Redis,
//! alternating servers within each repetition, each run against a freshly started server on
//! a free loopback port. Writes `results/<date>-compare.md` (medians, ratios ours/peer, exact
//! commands) and one latency-percentile SVG per scenario; each run's JSON goes into
//! `results/<date>-compare/`, the folder named after the summary's file stem, which the
//! summary links run by run.
//!
//! `engine-chat` is the engine measured with `loadgen run --chat` (rooms of its chat layer
//! instead of plain subjects). It runs when named in `--servers`, and always (with the plain
//! engine, and nothing else) in the `chat-*` scenarios, whose tables therefore put plain and
//! chat delivery of the same shape side by side.

use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{Config, Protocol};
use crate::report::{fmt_us, Report};
use crate::svg::{percentile_plot, Series};
use crate::{equivalent_command, Error};

/// The `loadgen compare` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Repetitions of the whole scenario set.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Warmup seconds per run.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Longest drain per run, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Load-generator threads [default: half the cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Engine worker threads (`engine serve --workers`) [default: the engine's own].
    #[arg(long)]
    pub engine_workers: Option<usize>,
    /// The engine binary.
    #[arg(long, default_value = "target/release/engine")]
    pub engine_bin: PathBuf,
    /// The nats-server binary.
    #[arg(long, default_value = "nats-server")]
    pub nats_bin: PathBuf,
    /// The redis-server binary.
    #[arg(long, default_value = "redis-server")]
    pub redis_bin: PathBuf,
    /// Servers to measure, comma-separated: engine, nats, redis, engine-chat (the engine
    /// with `--chat`). The `chat-*` scenarios run against engine and engine-chat only,
    /// whatever this says.
    #[arg(long, default_value = "engine,nats,redis", value_delimiter = ',')]
    pub servers: Vec<String>,
    /// Scenarios to run, comma-separated [default: all; see --list].
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Directory for the summary and plots; each run's JSON goes into a folder inside it
    /// named after the summary.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
}

/// One scenario of the comparison.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name (file names, tables).
    pub name: &'static str,
    /// What it shows.
    pub about: &'static str,
    /// Subscribing users.
    pub users: usize,
    /// Rooms.
    pub rooms: usize,
    /// Publishers.
    pub publishers: usize,
    /// Offered publishes/s; `None` for closed loop (`--max`).
    pub rate: Option<f64>,
    /// Payload bytes.
    pub payload: usize,
    /// Plain vs chat: run against the engine twice, on plain subjects and with `--chat`,
    /// and not against nats-server or Redis (which have no chat layer).
    pub chat: bool,
}

/// The scenario set from the issue.
pub fn scenarios() -> Vec<Scenario> {
    let s = |name, about, users, rooms, publishers, rate, payload| Scenario {
        name,
        about,
        users,
        rooms,
        publishers,
        rate,
        payload,
        chat: false,
    };
    let chat = |name, about, users, rooms, publishers, rate| Scenario {
        chat: true,
        ..s(name, about, users, rooms, publishers, rate, 128)
    };
    vec![
        s(
            "1to1-16B-max",
            "1 publisher -> 1 subscriber, max rate, 16 B",
            1,
            1,
            1,
            None,
            16,
        ),
        s(
            "1to1-128B-max",
            "1 publisher -> 1 subscriber, max rate, 128 B",
            1,
            1,
            1,
            None,
            128,
        ),
        s(
            "1k-10rooms-max",
            "1,000 users in 10 rooms, 10 publishers, max rate, 128 B",
            1000,
            10,
            10,
            None,
            128,
        ),
        s(
            "10k-100rooms-1k",
            "10,000 users in 100 rooms, 1,000 publishes/s (100k deliveries/s)",
            10_000,
            100,
            100,
            Some(1000.0),
            128,
        ),
        s(
            "10k-100rooms-10k",
            "10,000 users in 100 rooms, 10,000 publishes/s (1M deliveries/s)",
            10_000,
            100,
            100,
            Some(10_000.0),
            128,
        ),
        s(
            "broadcast-10k-10ps",
            "1 room of 10,000 members, 10 publishes/s",
            10_000,
            1,
            1,
            Some(10.0),
            128,
        ),
        s(
            "broadcast-10k-max",
            "1 room of 10,000 members, max rate",
            10_000,
            1,
            1,
            None,
            128,
        ),
        s(
            "low-load-1to1",
            "latency at low load: 1 -> 1 at 100 publishes/s",
            1,
            1,
            1,
            Some(100.0),
            128,
        ),
        chat(
            "chat-10k-100rooms-1k",
            "engine, plain subjects vs chat rooms: 10,000 users in 100 rooms, 1,000 publishes/s",
            10_000,
            100,
            100,
            Some(1000.0),
        ),
        chat(
            "chat-1k-10rooms-max",
            "engine, plain subjects vs chat rooms: 1,000 users in 10 rooms, 10 publishers, max rate",
            1000,
            10,
            10,
            None,
        ),
    ]
}

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Engine,
    /// The engine, measured through its chat layer (`loadgen run --chat`).
    EngineChat,
    Nats,
    Redis,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Engine => "engine",
            Kind::EngineChat => "engine-chat",
            Kind::Nats => "nats-server",
            Kind::Redis => "redis",
        }
    }

    fn color(self) -> &'static str {
        match self {
            Kind::Engine => "#d62728",
            Kind::EngineChat => "#ff7f0e",
            Kind::Nats => "#1f77b4",
            Kind::Redis => "#2ca02c",
        }
    }

    /// A peer the engine is compared with (not the engine in another mode).
    fn is_peer(self) -> bool {
        matches!(self, Kind::Nats | Kind::Redis)
    }

    fn protocol(self) -> Protocol {
        match self {
            Kind::Redis => Protocol::Redis,
            _ => Protocol::Nats,
        }
    }
}

/// One run's outcome.
struct RunRecord {
    rep: usize,
    server_cmd: String,
    loadgen_cmd: String,
    result: Result<Report, String>,
    /// Where the run's JSON was written.
    json: Option<PathBuf>,
}

/// Runs the comparison and returns the path of the markdown file.
pub fn compare(args: &CompareArgs, command_line: &str) -> Result<PathBuf, Error> {
    let all = scenarios();
    if args.list {
        for s in &all {
            println!("{:<20} {}", s.name, s.about);
        }
        return Ok(PathBuf::new());
    }
    let chosen: Vec<Scenario> = if args.scenarios.is_empty() {
        all
    } else {
        let picked: Vec<Scenario> = all
            .into_iter()
            .filter(|s| args.scenarios.iter().any(|n| n == s.name))
            .collect();
        if picked.len() != args.scenarios.len() {
            return Err(Error::Config(format!(
                "unknown scenario in {:?}; see `loadgen compare --list`",
                args.scenarios
            )));
        }
        picked
    };
    let mut asked = Vec::new();
    for s in &args.servers {
        let kind = match s.as_str() {
            "engine" => Kind::Engine,
            "engine-chat" | "chat" => Kind::EngineChat,
            "nats" | "nats-server" => Kind::Nats,
            "redis" | "redis-server" => Kind::Redis,
            other => return Err(Error::Config(format!("unknown server {other}"))),
        };
        if !asked.contains(&kind) {
            asked.push(kind);
        }
    }
    let kinds = table_kinds(&asked, &chosen);
    let (date, _) = crate::sysinfo::utc_stamp();
    // The summary's name is chosen before the first run, so that the runs can be written into
    // the folder of the same name; creating it now keeps a second comparison started later
    // today from choosing the same name.
    let stem = unique_stem(&args.out, &format!("{date}-compare"));
    let runs_dir = args.out.join(&stem);
    std::fs::create_dir_all(&runs_dir)?;
    let mut records: Vec<Vec<Vec<RunRecord>>> = chosen
        .iter()
        .map(|_| kinds.iter().map(|_| Vec::new()).collect())
        .collect();
    for rep in 1..=args.reps {
        for (si, sc) in chosen.iter().enumerate() {
            for (ki, &kind) in kinds.iter().enumerate() {
                if !runs_on(sc, kind, &asked) {
                    continue;
                }
                eprintln!(
                    "== rep {rep}/{}: {} against {}",
                    args.reps,
                    sc.name,
                    kind.name()
                );
                let record = run_one(args, sc, kind, rep, &runs_dir);
                match &record.result {
                    Ok(report) => eprint!("{}", report.summary()),
                    Err(e) => eprintln!("   failed: {e}"),
                }
                records[si][ki].push(record);
            }
        }
    }
    let md = render(args, command_line, &date, &stem, &chosen, &kinds, &records)?;
    eprintln!("wrote {}", md.display());
    Ok(md)
}

/// The servers of the tables: those asked for, then the engine and engine-chat if a chosen
/// `chat-*` scenario needs them.
fn table_kinds(asked: &[Kind], chosen: &[Scenario]) -> Vec<Kind> {
    let mut kinds = asked.to_vec();
    if chosen.iter().any(|s| s.chat) {
        for k in [Kind::Engine, Kind::EngineChat] {
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
    }
    kinds
}

/// Whether scenario `sc` runs against `kind`: a `chat-*` scenario against the engine plain
/// and chat only, any other against the servers asked for.
fn runs_on(sc: &Scenario, kind: Kind, asked: &[Kind]) -> bool {
    if sc.chat {
        matches!(kind, Kind::Engine | Kind::EngineChat)
    } else {
        asked.contains(&kind)
    }
}

fn run_one(
    args: &CompareArgs,
    sc: &Scenario,
    kind: Kind,
    rep: usize,
    runs_dir: &Path,
) -> RunRecord {
    let port = match free_port() {
        Ok(p) => p,
        Err(e) => {
            return RunRecord {
                rep,
                server_cmd: String::new(),
                loadgen_cmd: String::new(),
                result: Err(format!("no free port: {e}")),
                json: None,
            }
        }
    };
    let mut cmd = server_command(args, kind, port);
    let server_cmd = render_command(&cmd);
    let config = Config {
        url: Some(match kind {
            Kind::Redis => format!("redis://127.0.0.1:{port}"),
            _ => format!("nats://127.0.0.1:{port}"),
        }),
        protocol: kind.protocol(),
        chat: kind == Kind::EngineChat,
        users: sc.users,
        rooms: Some(sc.rooms),
        publishers: Some(sc.publishers),
        rate: sc.rate.unwrap_or(0.0),
        max: sc.rate.is_none(),
        payload: sc.payload,
        duration: args.duration,
        warmup: args.warmup,
        drain: args.drain,
        threads: args.threads,
        // Saved below rather than by `run`, which does not hand back the path the summary
        // links to.
        no_save: true,
        label: Some(format!("compare-{}-{}-r{rep}", sc.name, kind.name())),
        ..Config::default()
    };
    let mut record = RunRecord {
        rep,
        server_cmd,
        loadgen_cmd: String::new(),
        result: Err("not run".to_string()),
        json: None,
    };
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            record.result = Err(format!("cannot start {}: {e}", record.server_cmd));
            return record;
        }
    };
    let config = Config {
        server_pid: Some(child.id()),
        ..config
    };
    record.loadgen_cmd = equivalent_command(&config);
    record.result = match wait_listening(port, &mut child) {
        Ok(()) => crate::run(&config).map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let _ = child.kill();
    let _ = child.wait();
    if let Ok(report) = &record.result {
        match report.write_json(runs_dir) {
            Ok(path) => {
                eprintln!("  wrote        {}", path.display());
                record.json = Some(path);
            }
            Err(e) => record.result = Err(format!("cannot write the JSON: {e}")),
        }
    }
    record
}

fn server_command(args: &CompareArgs, kind: Kind, port: u16) -> Command {
    match kind {
        Kind::Engine | Kind::EngineChat => {
            let mut c = Command::new(&args.engine_bin);
            c.arg("serve")
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"));
            if let Some(w) = args.engine_workers {
                c.arg("--workers").arg(w.to_string());
            }
            c
        }
        Kind::Nats => {
            let mut c = Command::new(&args.nats_bin);
            c.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
            c
        }
        Kind::Redis => {
            let mut c = Command::new(&args.redis_bin);
            c.args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxclients",
                "19000",
            ]);
            c
        }
    }
}

fn render_command(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().to_string();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() {
            s += " ''";
        } else {
            s += " ";
            s += &a;
        }
    }
    s
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until the server accepts connections (or exits, or 10 s pass).
fn wait_listening(port: u16, child: &mut Child) -> Result<(), String> {
    let began = Instant::now();
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited at start: {status}"));
        }
        if began.elapsed() > Duration::from_secs(10) {
            return Err("the server did not listen within 10 s".to_string());
        }
        // Not synchronising on anything observable but the port itself: poll it.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Medians of one (scenario, server) cell.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    ok: usize,
    runs: usize,
    deliveries: f64,
    publishes: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    lost: f64,
    slow: f64,
    cpu: f64,
    loadgen_cpu: f64,
    /// Index of the run whose p99 is the median (plotted).
    median_run: Option<usize>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn cell(runs: &[RunRecord]) -> Cell {
    let ok: Vec<(usize, &Report)> = runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.result.as_ref().ok().map(|rep| (i, rep)))
        .collect();
    let m = |f: &dyn Fn(&Report) -> f64| median(ok.iter().map(|(_, r)| f(r)).collect());
    let p99 = m(&|r| r.latency.summary.p99_us);
    let median_run = ok
        .iter()
        .min_by(|a, b| {
            (a.1.latency.summary.p99_us - p99)
                .abs()
                .total_cmp(&(b.1.latency.summary.p99_us - p99).abs())
        })
        .map(|(i, _)| *i);
    Cell {
        ok: ok.len(),
        runs: runs.len(),
        deliveries: m(&|r| r.deliveries.per_sec),
        publishes: m(&|r| r.publish.achieved_per_sec),
        p50: m(&|r| r.latency.summary.p50_us),
        p99,
        p999: m(&|r| r.latency.summary.p99_9_us),
        max: m(&|r| r.latency.summary.max_us),
        lost: m(&|r| r.integrity.lost as f64),
        slow: m(&|r| r.disconnects.slow_consumer as f64),
        cpu: m(&|r| r.server.as_ref().map_or(f64::NAN, |s| s.cpu_percent)),
        loadgen_cpu: m(&|r| r.loadgen.as_ref().map_or(f64::NAN, |s| s.cpu_percent)),
        median_run,
    }
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "–".to_string()
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn pct(v: f64) -> String {
    if v.is_nan() {
        "–".to_string()
    } else {
        format!("{v:.0}")
    }
}

fn lat(v: f64) -> String {
    if v.is_nan() {
        "–".to_string()
    } else {
        fmt_us(v)
    }
}

fn ratio(ours: f64, peer: f64) -> String {
    if ours.is_nan() || peer.is_nan() || peer == 0.0 {
        "–".to_string()
    } else {
        format!("{:.2}×", ours / peer)
    }
}

/// `base`, or `base-2`, `base-3`, …: the first name free in `dir` both as `<name>.md` (the
/// summary) and as `<name>/` (the folder of its runs' JSON).
fn unique_stem(dir: &Path, base: &str) -> String {
    let taken = |stem: &str| dir.join(format!("{stem}.md")).exists() || dir.join(stem).exists();
    let mut stem = base.to_string();
    let mut n = 1;
    while taken(&stem) {
        n += 1;
        stem = format!("{base}-{n}");
    }
    stem
}

/// The link from the summary (in the results directory) to a run's JSON in the folder `stem`.
fn json_link(stem: &str, json: &Path) -> String {
    let file = json
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    format!("[JSON]({stem}/{file})")
}

fn render(
    args: &CompareArgs,
    command_line: &str,
    date: &str,
    stem: &str,
    scenarios: &[Scenario],
    kinds: &[Kind],
    records: &[Vec<Vec<RunRecord>>],
) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(&args.out)?;
    let md_path = args.out.join(format!("{stem}.md"));
    let machine = crate::sysinfo::machine();
    let git = crate::sysinfo::git();
    let mut md = String::new();
    let _ = writeln!(md, "# Comparison {date}: engine vs nats-server vs Redis\n");
    let _ = writeln!(
        md,
        "Machine: {} cores, {}, kernel {}; load average {:.1} at the end. Revision {}{}. Server and load generator share the machine. \
         {} repetitions, servers alternating within each; each run against a freshly started server; \
         {} s measured after {} s warmup. Every figure below is the median over the runs that completed.\n",
        machine.cores,
        machine.cpu_model,
        machine.kernel,
        machine.load_average[0],
        git.revision,
        if git.dirty { " (uncommitted changes)" } else { "" },
        args.reps,
        args.duration,
        args.warmup
    );
    let loads: Vec<f64> = records
        .iter()
        .flatten()
        .flatten()
        .filter_map(|r| r.result.as_ref().ok())
        .map(|r| r.machine.load_average[0])
        .collect();
    if !loads.is_empty() {
        let lo = loads.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = loads.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            md,
            "1-minute load average at the end of each run: {lo:.1} to {hi:.1} (on {} cores). \
             Anything above about 2 means other work competed with the server and the load \
             generator for the CPUs, and every figure below is pessimistic for all three \
             servers alike.\n",
            machine.cores
        );
    }
    let _ = writeln!(
        md,
        "Reproduce: `scripts/compare.sh` (options as for `loadgen compare`). This run: \
         `{command_line}`\n"
    );
    let _ = writeln!(
        md,
        "Raw figures: one `loadgen-run/1` JSON per run in [{stem}/]({stem}/), linked from \
         each run below.\n"
    );
    let _ = writeln!(
        md,
        "Latency is measured from each message's scheduled send time to each recipient for open-loop \
         scenarios, and from the actual send time for `max` (closed-loop) scenarios, where each \
         publisher keeps a window of messages its own subscription has not yet received (so \
         `max` latency mostly reflects that queue). `loadgen CPU %` near 100 × threads means \
         the load generator, not the server, was the limit. `lost` counts window messages a \
         subscriber never received (sequence numbers per publisher and subscriber).\n"
    );
    if kinds.contains(&Kind::EngineChat) {
        let _ = writeln!(
            md,
            "`engine-chat` is the same engine binary measured with `loadgen run --chat`: the \
             same users, rooms and publishers, but every room is a room of the engine's chat \
             layer (`$CHAT.MSG.lg<r>`, created and joined through `$CHAT.API` before the run, \
             users `u<id>`), so each message is checked against the room's membership, \
             sequenced, stamped and kept in history by the room's owner, and delivered as \
             HMSG with `Chat-*` headers. The `chat-*` scenarios run only the engine, plain \
             and chat.\n"
        );
    }
    let mut summary_rows = Vec::new();
    for (si, sc) in scenarios.iter().enumerate() {
        let cells: Vec<Cell> = records[si].iter().map(|r| cell(r)).collect();
        let _ = writeln!(md, "## {} — {}\n", sc.name, sc.about);
        let _ = writeln!(
            md,
            "| server | runs ok | deliveries/s | publishes/s | p50 | p99 | p99.9 | max | lost | slow consumers | server CPU % | loadgen CPU % |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (ki, kind) in kinds.iter().enumerate() {
            let c = cells[ki];
            if c.runs == 0 {
                continue;
            }
            let _ = writeln!(
                md,
                "| {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                kind.name(),
                c.ok,
                c.runs,
                num(c.deliveries),
                num(c.publishes),
                lat(c.p50),
                lat(c.p99),
                lat(c.p999),
                lat(c.max),
                num(c.lost),
                num(c.slow),
                pct(c.cpu),
                pct(c.loadgen_cpu)
            );
        }
        if let Some(ei) = kinds.iter().position(|k| *k == Kind::Engine) {
            let e = cells[ei];
            for (ki, kind) in kinds.iter().enumerate() {
                let p = cells[ki];
                if *kind == Kind::Engine || p.runs == 0 || e.runs == 0 {
                    continue;
                }
                if *kind == Kind::EngineChat {
                    let _ = writeln!(
                        md,
                        "\nchat/plain (engine-chat/engine, the chat layer's cost): deliveries/s {}, \
                         p50 {}, p99 {} (lower is better for latency).",
                        ratio(p.deliveries, e.deliveries),
                        ratio(p.p50, e.p50),
                        ratio(p.p99, e.p99)
                    );
                    continue;
                }
                let _ = writeln!(
                    md,
                    "\nours/{}: deliveries/s {}, p99 {} (lower is better for p99).",
                    kind.name(),
                    ratio(e.deliveries, p.deliveries),
                    ratio(e.p99, p.p99)
                );
            }
        }
        // Plot.
        let series: Vec<Series> = kinds
            .iter()
            .enumerate()
            .filter_map(|(ki, kind)| {
                let run = cells[ki].median_run?;
                let rep = records[si][ki][run].result.as_ref().ok()?;
                Some(Series {
                    name: format!("{} (p99 {})", kind.name(), lat(rep.latency.summary.p99_us)),
                    color: kind.color().to_string(),
                    points: rep
                        .latency
                        .percentiles
                        .iter()
                        .map(|r| (r.percentile, r.latency_us))
                        .collect(),
                })
            })
            .collect();
        let svg_path = args.out.join(format!("{stem}-{}.svg", sc.name));
        std::fs::write(
            &svg_path,
            percentile_plot(&format!("{} — latency by percentile", sc.name), &series),
        )?;
        let _ = writeln!(
            md,
            "\n![{} latency percentiles]({})\n",
            sc.name,
            svg_path
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default()
        );
        let _ = writeln!(
            md,
            "<details><summary>exact commands and per-run figures</summary>\n"
        );
        for (ki, kind) in kinds.iter().enumerate() {
            for r in &records[si][ki] {
                let _ = writeln!(
                    md,
                    "- {} rep {}: `{}`  \n  `{}`  ",
                    kind.name(),
                    r.rep,
                    r.server_cmd,
                    r.loadgen_cmd
                );
                match &r.result {
                    Ok(rep) => {
                        let _ = writeln!(
                            md,
                            "  → {} deliveries/s, p50 {}, p99 {}, max {}, lost {}, slow consumers {}{}",
                            num(rep.deliveries.per_sec),
                            lat(rep.latency.summary.p50_us),
                            lat(rep.latency.summary.p99_us),
                            lat(rep.latency.summary.max_us),
                            rep.integrity.lost,
                            rep.disconnects.slow_consumer,
                            r.json
                                .as_deref()
                                .map(|j| format!(" ({})", json_link(stem, j)))
                                .unwrap_or_default()
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(md, "  → failed: {e}");
                    }
                }
            }
        }
        let _ = writeln!(md, "\n</details>\n");
        summary_rows.push((sc.name, cells));
    }
    // Headline table.
    let mut head = String::new();
    let _ = writeln!(head, "## Summary (medians)\n");
    let _ = write!(head, "| scenario |");
    for k in kinds {
        let _ = write!(head, " {} deliveries/s | {} p99 |", k.name(), k.name());
    }
    let _ = writeln!(head);
    let _ = write!(head, "|---|");
    for _ in kinds {
        let _ = write!(head, "---|---|");
    }
    let _ = writeln!(head);
    for (name, cells) in &summary_rows {
        let _ = write!(head, "| {name} |");
        for c in cells {
            let _ = write!(head, " {} | {} |", num(c.deliveries), lat(c.p99));
        }
        let _ = writeln!(head);
    }
    let _ = writeln!(head);
    let _ = writeln!(head, "{}", goals(scenarios, kinds, &summary_rows));
    let insert_at = md.find("## ").unwrap_or(md.len());
    md.insert_str(insert_at, &head);
    std::fs::write(&md_path, md)?;
    Ok(md_path)
}

/// The goals, checked against the medians (recorded, not asserted).
fn goals(scenarios: &[Scenario], kinds: &[Kind], rows: &[(&str, Vec<Cell>)]) -> String {
    let find = |name: &str| rows.iter().find(|(n, _)| *n == name).map(|(_, c)| c);
    let idx = |k: Kind| kinds.iter().position(|x| *x == k);
    let mut s = String::from("### Goals\n\n");
    let Some(ei) = idx(Kind::Engine) else {
        s += "The engine was not measured.\n";
        return s;
    };
    for sc in scenarios.iter().filter(|s| s.rate.is_none() && !s.chat) {
        if let Some(cells) = find(sc.name) {
            let best_peer = kinds
                .iter()
                .enumerate()
                .filter(|(_, k)| k.is_peer())
                .map(|(i, _)| cells[i].deliveries)
                .filter(|v| !v.is_nan())
                .fold(f64::NAN, f64::max);
            let ours = cells[ei].deliveries;
            let r = ours / best_peer;
            let _ = writeln!(
                s,
                "- {}: ≥ 1.5× the better peer's deliveries/s — measured {} ({}): {}",
                sc.name,
                ratio(ours, best_peer),
                num(ours),
                verdict(r.is_finite().then_some(r >= 1.5))
            );
        }
    }
    let lat_goal = |name: &str, limit_us: f64, what: &str, s: &mut String| {
        if let Some(cells) = find(name) {
            let c = cells[ei];
            let _ = writeln!(
                s,
                "- {name}: {what} — measured p99 {}, {} deliveries/s: {}",
                lat(c.p99),
                num(c.deliveries),
                verdict((c.ok > 0).then_some(c.p99 <= limit_us))
            );
        }
    };
    lat_goal(
        "10k-100rooms-1k",
        5_000.0,
        "p99 ≤ 5 ms at 100k deliveries/s",
        &mut s,
    );
    lat_goal(
        "10k-100rooms-10k",
        50_000.0,
        "sustained, p99 ≤ 50 ms at 1M deliveries/s offered",
        &mut s,
    );
    lat_goal("broadcast-10k-10ps", 20_000.0, "p99 ≤ 20 ms", &mut s);
    s
}

fn verdict(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "no data",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn runs_go_into_the_folder_named_after_the_summary() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("loadgen-compare-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        assert_eq!(unique_stem(&dir, "d-compare"), "d-compare");
        // A summary of that name, or a folder of runs of that name, takes the name.
        std::fs::write(dir.join("d-compare.md"), "").expect("write");
        assert_eq!(unique_stem(&dir, "d-compare"), "d-compare-2");
        std::fs::create_dir(dir.join("d-compare-2")).expect("mkdir");
        assert_eq!(unique_stem(&dir, "d-compare"), "d-compare-3");
        let _ = std::fs::remove_dir_all(&dir);

        let json = Path::new("results/d-compare-3/d-compare-low-load-1to1-engine-r1-120000.json");
        assert_eq!(
            json_link("d-compare-3", json),
            "[JSON](d-compare-3/d-compare-low-load-1to1-engine-r1-120000.json)"
        );
    }

    #[test]
    fn scenario_names_are_unique() {
        let all = scenarios();
        let mut names: Vec<_> = all.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }

    #[test]
    fn chat_scenarios_run_plain_and_chat_on_the_engine_only() {
        let all = scenarios();
        let chat: Vec<&Scenario> = all.iter().filter(|s| s.chat).collect();
        assert!(!chat.is_empty());
        for sc in &chat {
            assert!(sc.name.starts_with("chat-"), "{}", sc.name);
            // The shape exists as a plain scenario too, or at least is a valid run.
            assert!(Config {
                chat: true,
                users: sc.users,
                rooms: Some(sc.rooms),
                publishers: Some(sc.publishers),
                payload: sc.payload,
                ..Config::default()
            }
            .resolve()
            .is_ok());
        }
        let asked = [Kind::Engine, Kind::Nats, Kind::Redis];
        let kinds = table_kinds(&asked, &all);
        assert_eq!(
            kinds,
            [Kind::Engine, Kind::Nats, Kind::Redis, Kind::EngineChat]
        );
        let ran = |sc: &Scenario| -> Vec<Kind> {
            kinds
                .iter()
                .copied()
                .filter(|k| runs_on(sc, *k, &asked))
                .collect()
        };
        assert_eq!(ran(chat[0]), [Kind::Engine, Kind::EngineChat]);
        let plain = all.iter().find(|s| !s.chat).unwrap();
        assert_eq!(ran(plain), asked);
        // Without chat scenarios, engine-chat runs only when asked for.
        let plain_only: Vec<Scenario> = all.iter().filter(|s| !s.chat).cloned().collect();
        assert_eq!(table_kinds(&asked, &plain_only), asked);
        let with_chat = [Kind::Engine, Kind::EngineChat];
        assert!(runs_on(plain, Kind::EngineChat, &with_chat));
    }
}
