//! The command line of `miroir-bench`, parsed by hand (no argument-parser dependency, to keep the build
//! short). Flags take their value as the next argument or after `=` (`--docs 1000`, `--docs=1000`).

use std::time::Duration;

/// What the timed phase sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Searches from the seeded query mix.
    Search,
    /// Batches of new generated documents.
    Ingest,
    /// Searches and ingest batches, `search_share` percent searches.
    Mixed,
}

impl Workload {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Search => "search",
            Workload::Ingest => "ingest",
            Workload::Mixed => "mixed",
        }
    }
}

/// Every setting of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Target A.
    pub url: String,
    /// Target A's API key.
    pub key: Option<String>,
    /// Target B (side-by-side mode).
    pub compare: Option<String>,
    /// Target B's API key (default: `key`).
    pub key2: Option<String>,
    /// The index uid.
    pub index: String,
    /// The workload.
    pub workload: Workload,
    /// Closed loop: the number of workers; open loop: the cap on requests in flight.
    pub concurrency: usize,
    /// The length of the timed phase.
    pub duration: Duration,
    /// Open loop: requests per second per target (`None`: closed loop).
    pub rate: Option<f64>,
    /// A cap on requests per target (`None`: only the duration bounds the run).
    pub requests: Option<u64>,
    /// Documents in the corpus loaded by `--setup`; ingest uses ids from here on.
    pub docs: u64,
    /// The seed of the corpus and the query mix.
    pub seed: u64,
    /// Create the index, apply settings and load the corpus before the timed phase.
    pub setup: bool,
    /// Documents per ingest request in the timed phase.
    pub batch: u64,
    /// Documents per request while loading the corpus.
    pub setup_batch: u64,
    /// Ingest requests wait for their task to succeed (the latency then includes indexing).
    pub wait_tasks: bool,
    /// Mixed workload: percentage of searches (0–100).
    pub search_share: u64,
    /// Per-request timeout.
    pub timeout: Duration,
    /// How long to wait for one task to finish.
    pub task_timeout: Duration,
    /// Print the report as JSON instead of a table.
    pub json: bool,
}

impl Options {
    /// The defaults for target `url`.
    pub fn new(url: &str) -> Options {
        Options {
            url: url.to_string(),
            key: None,
            compare: None,
            key2: None,
            index: "bench".to_string(),
            workload: Workload::Search,
            concurrency: 4,
            duration: Duration::from_secs(10),
            rate: None,
            requests: None,
            docs: 10_000,
            seed: 42,
            setup: false,
            batch: 100,
            setup_batch: 1000,
            wait_tasks: false,
            search_share: 90,
            timeout: Duration::from_secs(10),
            task_timeout: Duration::from_secs(120),
            json: false,
        }
    }
}

/// The usage text.
pub const USAGE: &str = "\
miroir-bench: load harness for Meilisearch-compatible URLs (Meilisearch, the Miroir proxy, node models)

usage: miroir-bench --url URL [options]

target:
  --url URL             target A, http://host:port (required)
  --key KEY             API key of A (Authorization: Bearer KEY)
  --compare URL2        side by side: same workload against URL2, requests alternate A, B, A, B ...
  --key2 KEY            API key of B (default: --key)
  --index UID           index uid (default bench)
load:
  --workload W          search | ingest | mixed (default search)
  --concurrency C       closed loop: workers; open loop: cap on requests in flight (default 4)
  --duration D          timed phase, e.g. 30s, 500ms, 2m (default 10s)
  --rate R              open loop: R requests/s per target (default: closed loop)
  --requests N          stop after N requests per target (default: only --duration)
  --timeout D           per-request timeout (default 10s)
data:
  --docs N              corpus size (default 10000)
  --seed S              seed of the corpus and the query mix (default 42)
  --setup               create the index, apply settings, load the corpus, wait for tasks
  --setup-batch N       documents per request while loading (default 1000)
  --batch N             documents per ingest request (default 100)
  --wait-tasks          ingest requests wait for their task (latency includes indexing)
  --search-share P      mixed: percent of searches (default 90)
  --task-timeout D      wait for one task at most D (default 120s)
output:
  --json                print the report as JSON
  -h, --help            this text";

/// Parses a duration: `30s`, `500ms`, `2m`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration `{s}` (examples: 30s, 500ms, 2m)"))?;
    if !v.is_finite() || v < 0.0 || v * unit > 1.0e7 {
        return Err(format!("invalid duration `{s}`"));
    }
    Ok(Duration::from_secs_f64(v * unit))
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("invalid value `{v}` for {flag}"))
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Print the usage.
    Help,
    /// Run.
    Run(Box<Options>),
}

/// Parses the arguments (without the program name).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut url: Option<String> = None;
    let mut o = Options::new("");
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--setup" | "--json" | "--wait-tasks" => {
                if inline.is_some() {
                    return Err(format!("{flag} takes no value"));
                }
                match flag.as_str() {
                    "--setup" => o.setup = true,
                    "--json" => o.json = true,
                    _ => o.wait_tasks = true,
                }
                continue;
            }
            _ => {}
        }
        if !flag.starts_with("--") {
            return Err(format!("unexpected argument `{arg}`"));
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .ok_or_else(|| format!("missing value for {flag}"))?,
        };
        let v = value.as_str();
        match flag.as_str() {
            "--url" => url = Some(v.to_string()),
            "--key" => o.key = Some(v.to_string()),
            "--compare" => o.compare = Some(v.to_string()),
            "--key2" => o.key2 = Some(v.to_string()),
            "--index" => {
                if v.is_empty()
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(format!(
                        "invalid index uid `{v}`: use letters, digits, - and _"
                    ));
                }
                o.index = v.to_string()
            }
            "--workload" => {
                o.workload = match v {
                    "search" => Workload::Search,
                    "ingest" => Workload::Ingest,
                    "mixed" => Workload::Mixed,
                    _ => return Err(format!("unknown workload `{v}` (search, ingest, mixed)")),
                }
            }
            "--concurrency" => o.concurrency = parse_num(&flag, v)?,
            "--duration" => o.duration = parse_duration(v)?,
            "--rate" => {
                let r: f64 = parse_num(&flag, v)?;
                if !r.is_finite() || r <= 0.0 {
                    return Err(format!("--rate must be a positive number, got `{v}`"));
                }
                o.rate = Some(r)
            }
            "--requests" => o.requests = Some(parse_num(&flag, v)?),
            "--timeout" => o.timeout = parse_duration(v)?,
            "--docs" => o.docs = parse_num(&flag, v)?,
            "--seed" => o.seed = parse_num(&flag, v)?,
            "--setup-batch" => o.setup_batch = parse_num(&flag, v)?,
            "--batch" => o.batch = parse_num(&flag, v)?,
            "--search-share" => o.search_share = parse_num(&flag, v)?,
            "--task-timeout" => o.task_timeout = parse_duration(v)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    o.url = url.ok_or("--url is required")?;
    validate(&o)?;
    Ok(Command::Run(Box::new(o)))
}

/// Checks the settings that would make a run meaningless.
pub fn validate(o: &Options) -> Result<(), String> {
    super::client::normalise_url(&o.url)?;
    if let Some(url2) = &o.compare {
        super::client::normalise_url(url2)?;
    }
    if o.concurrency == 0 || o.concurrency > 10_000 {
        return Err("--concurrency must be in 1..=10000".into());
    }
    if o.batch == 0 || o.setup_batch == 0 {
        return Err("--batch and --setup-batch must be at least 1".into());
    }
    if o.search_share > 100 {
        return Err("--search-share is a percentage (0..=100)".into());
    }
    if o.duration.is_zero() && o.requests.is_none() {
        return Err("--duration must be positive".into());
    }
    if o.timeout.is_zero() || o.task_timeout.is_zero() {
        return Err("--timeout and --task-timeout must be positive".into());
    }
    if o.requests == Some(0) {
        return Err("--requests must be at least 1".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run(s: &str) -> Options {
        match parse_args(args(s)).unwrap() {
            Command::Run(o) => *o,
            Command::Help => panic!("help"),
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("infs").is_err());
        assert!(parse_duration("1e300s").is_err());
    }

    #[test]
    fn full_command_line() {
        let o = run("--setup --docs 20000 --url http://127.0.0.1:7700 --compare http://127.0.0.1:7701 \
                     --duration 30s --concurrency 8 --key a --key2=b --index movies --workload mixed \
                     --rate 200 --requests 1000 --seed 7 --batch 10 --setup-batch 500 --wait-tasks \
                     --search-share 80 --timeout 2s --task-timeout 1m --json");
        assert_eq!(o.url, "http://127.0.0.1:7700");
        assert_eq!(o.compare.as_deref(), Some("http://127.0.0.1:7701"));
        assert_eq!(o.key.as_deref(), Some("a"));
        assert_eq!(o.key2.as_deref(), Some("b"));
        assert_eq!(o.index, "movies");
        assert_eq!(o.workload, Workload::Mixed);
        assert_eq!(o.concurrency, 8);
        assert_eq!(o.duration, Duration::from_secs(30));
        assert_eq!(o.rate, Some(200.0));
        assert_eq!(o.requests, Some(1000));
        assert_eq!(o.docs, 20000);
        assert_eq!(o.seed, 7);
        assert_eq!(o.batch, 10);
        assert_eq!(o.setup_batch, 500);
        assert_eq!(o.search_share, 80);
        assert_eq!(o.timeout, Duration::from_secs(2));
        assert_eq!(o.task_timeout, Duration::from_secs(60));
        assert!(o.setup && o.json && o.wait_tasks);
    }

    #[test]
    fn defaults_and_help() {
        let o = run("--url http://localhost:7700");
        assert_eq!(o, Options::new("http://localhost:7700"));
        assert_eq!(parse_args(args("--help")).unwrap(), Command::Help);
        assert_eq!(
            parse_args(args("--url http://x -h")).unwrap(),
            Command::Help
        );
    }

    #[test]
    fn errors() {
        let err = |s: &str| parse_args(args(s)).unwrap_err();
        assert!(err("").contains("--url is required"));
        assert!(err("--url").contains("missing value"));
        assert!(err("--url http://u --bogus 1").contains("unknown flag"));
        assert!(err("--url http://u stray").contains("unexpected argument"));
        assert!(err("--url http://u --setup=yes").contains("takes no value"));
        assert!(err("--url http://u --workload x").contains("unknown workload"));
        assert!(err("--url http://u --concurrency x").contains("invalid value"));
        assert!(err("--url http://u --concurrency 0").contains("concurrency"));
        assert!(err("--url http://u --rate 0").contains("positive"));
        assert!(err("--url http://u --rate nan").contains("positive"));
        assert!(err("--url http://u --batch 0").contains("batch"));
        assert!(err("--url http://u --search-share 101").contains("percentage"));
        assert!(err("--url http://u --duration 0s").contains("positive"));
        assert!(err("--url http://u --timeout 0").contains("positive"));
        assert!(err("--url http://u --requests 0").contains("at least 1"));
        assert!(err("--url http://u --index a/b").contains("invalid index uid"));
        assert!(err("--url http://u --index=").contains("invalid index uid"));
        assert!(err("--url https://h:1").contains("only http://"));
        assert!(err("--url http://h:1 --compare h:2").contains("only http://"));
        // A zero duration is fine when a request count bounds the run.
        assert!(parse_args(args("--url http://u --duration 0 --requests 5")).is_ok());
    }
}
