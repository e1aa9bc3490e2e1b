//! Processes the bench starts: NATS and the servers under test. Every one is killed by its pid
//! when its handle is dropped, and its CPU time and memory are read from `/proc/<pid>`.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::io::AsyncReadExt;

/// NATS version, the one the repository deploys.
const NATS_VERSION: &str = include_str!("../../../deploy/nats/VERSION");

/// A child process, killed by pid on drop.
pub struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    /// Starts `command` with its output in `<dir>/<name>.log`.
    pub fn spawn(name: &str, dir: &Path, command: &mut Command) -> anyhow::Result<Self> {
        let log = fs::File::create(dir.join(format!("{name}.log")))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("failed to start {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    /// Starts `command` and reads the address it prints as `listening <addr>` on stdout.
    pub fn spawn_listening(
        name: &str,
        command: &mut Command,
    ) -> anyhow::Result<(Self, SocketAddr)> {
        use std::io::BufRead;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("failed to start {name}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let proc = Self {
            name: name.to_owned(),
            child,
        };
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("{name} did not say where it listens: {line:?}"))?;
        Ok((proc, addr))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the process has ended (and how), without waiting.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User plus system CPU seconds so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid()).unwrap_or(0.0)
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmRSS:").unwrap_or(0)
    }

    /// Highest resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmHWM:").unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_seconds(&stat_fields(&pid.to_string())?, UTIME, STIME)
}

/// Indexes in [`stat_fields`]: fields 4, 14, 15, 16 and 17 of `/proc/<pid>/stat` (1-based).
const PPID: usize = 1;
const UTIME: usize = 11;
const STIME: usize = 12;
const CUTIME: usize = 13;
const CSTIME: usize = 14;

/// The fields of `/proc/<who>/stat` after the command name, which is in parentheses and may
/// hold spaces (index 0 is the state, field 3 of the whole line).
fn stat_fields(who: &str) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{who}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The sum of two tick counts of `fields`, in seconds.
fn stat_seconds(fields: &[String], a: usize, b: usize) -> Option<f64> {
    let ticks = fields.get(a)?.parse::<f64>().ok()? + fields.get(b)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks())
}

/// User plus system CPU seconds of the bench process itself so far.
pub fn self_cpu_seconds() -> f64 {
    stat_fields("self")
        .and_then(|f| stat_seconds(&f, UTIME, STIME))
        .unwrap_or(0.0)
}

/// CPU seconds of the bench's child processes: the reaped ones (`cutime + cstime` of
/// `/proc/self/stat`, which the kernel adds up when a child is waited for) plus the running
/// ones (their own `/proc/<pid>/stat`). Two readings differ by what the children used in
/// between, whether they exited meanwhile or not, so that a process per event and long-lived
/// processes are counted alike; a reading is exact when no child is reaped during it.
/// Grandchildren count once their parent (a child) has waited for them.
pub fn children_cpu_seconds() -> f64 {
    let reaped = stat_fields("self")
        .and_then(|f| stat_seconds(&f, CUTIME, CSTIME))
        .unwrap_or(0.0);
    reaped + running_children().iter().map(|(_, cpu)| cpu).sum::<f64>()
}

/// The bench's running child processes: pid and CPU seconds so far of each.
pub fn running_children() -> Vec<(u32, f64)> {
    let me = std::process::id().to_string();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let fields = stat_fields(&pid.to_string())?;
            (fields.get(PPID)? == &me).then_some(())?;
            Some((pid, stat_seconds(&fields, UTIME, STIME)?))
        })
        .collect()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// A free loopback port (racy, as every such helper).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Durability of JetStream writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Mode {
    /// `sync_interval: always`: every acknowledged write is on disk (hookyard's setting).
    #[serde(rename = "sync_always")]
    SyncAlways,
    /// The NATS default: writes are synced every two minutes.
    #[serde(rename = "nats_default")]
    Default,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Self::SyncAlways => "sync_interval: always",
            Self::Default => "NATS default sync",
        }
    }
}

/// A nats-server started from its binary, with its store in `dir`.
pub struct Nats {
    pub proc: Proc,
    pub url: String,
}

impl Nats {
    pub async fn start(binary: &Path, dir: &Path, mode: Mode) -> anyhow::Result<Self> {
        Self::start_node(
            binary,
            dir,
            &format!("nats-{mode:?}"),
            free_port()?,
            mode,
            "",
        )
        .await
    }

    /// Starts the server `name` on `port` in `mode`, its store in `<dir>/js-<name>` and `extra`
    /// appended to its configuration (a cluster block); returns once it greets clients.
    pub async fn start_node(
        binary: &Path,
        dir: &Path,
        name: &str,
        port: u16,
        mode: Mode,
        extra: &str,
    ) -> anyhow::Result<Self> {
        let store = dir.join(format!("js-{name}"));
        let _ = fs::remove_dir_all(&store);
        let sync = match mode {
            Mode::SyncAlways => "  sync_interval: always\n",
            Mode::Default => "",
        };
        let conf = dir.join(format!("{name}.conf"));
        fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\nmax_payload: 1MB\njetstream {{\n  store_dir: {store:?}\n{sync}  max_file_store: 20GB\n  max_memory_store: 256MB\n}}\n{extra}"
            ),
        )?;
        let proc = Proc::spawn(name, dir, Command::new(binary).arg("--config").arg(&conf))?;
        wait_for_greeting(port, dir).await?;
        Ok(Self {
            proc,
            url: format!("nats://127.0.0.1:{port}"),
        })
    }
}

/// Waits until the server on `port` sends its `INFO` greeting (at most 20 s).
async fn wait_for_greeting(port: u16, dir: &Path) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut buf = [0u8; 4];
            if matches!(tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut buf)).await, Ok(Ok(_)) if &buf == b"INFO")
            {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("nats did not start; see {}", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where JetStream runs: one server, or three forming a cluster on loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Topology {
    Single,
    /// Three nats-server processes in one JetStream cluster; every stream has three replicas,
    /// so a write is acknowledged once two of them have it.
    R3,
}

impl Topology {
    pub fn label(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::R3 => "r3",
        }
    }

    /// Stream replicas the services are told to create (`HOOKYARD_STREAM_REPLICAS`).
    pub fn replicas(self) -> u8 {
        match self {
            Self::Single => 1,
            Self::R3 => 3,
        }
    }
}

/// The NATS servers of one topology, killed on drop.
pub struct NatsSet {
    pub nodes: Vec<Nats>,
    /// Every node's URL, comma-separated (`HOOKYARD_NATS_URL`).
    pub url: String,
}

impl NatsSet {
    /// Starts `topology` in `mode`; returns once JetStream answers (a cluster has elected its
    /// meta leader), so services can create their streams at once.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        mode: Mode,
        topology: Topology,
    ) -> anyhow::Result<Self> {
        let nodes = match topology {
            Topology::Single => vec![Nats::start(binary, dir, mode).await?],
            Topology::R3 => start_cluster(binary, dir, mode).await?,
        };
        let url = nodes
            .iter()
            .map(|n| n.url.as_str())
            .collect::<Vec<_>>()
            .join(",");
        wait_for_jetstream(&nodes[0].url, dir).await?;
        Ok(Self { nodes, url })
    }
}

/// Three servers `r3-0`..`r3-2`, each routing to all three cluster ports.
async fn start_cluster(binary: &Path, dir: &Path, mode: Mode) -> anyhow::Result<Vec<Nats>> {
    let client: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let cluster: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let routes = cluster
        .iter()
        .map(|p| format!("nats-route://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut nodes = Vec::new();
    for (i, (port, cport)) in client.iter().zip(&cluster).enumerate() {
        let name = format!("r3-{i}-{mode:?}");
        let extra = format!(
            "server_name: {name}\ncluster {{\n  name: bench\n  listen: 127.0.0.1:{cport}\n  routes: [{routes}]\n}}\n"
        );
        nodes.push(Nats::start_node(binary, dir, &name, *port, mode, &extra).await?);
    }
    Ok(nodes)
}

/// Waits until JetStream answers an account query at `url` (at most 30 s).
async fn wait_for_jetstream(url: &str, dir: &Path) -> anyhow::Result<()> {
    let client = async_nats::connect(url).await?;
    let js = async_nats::jetstream::new(client);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while js.query_account().await.is_err() {
        if tokio::time::Instant::now() > deadline {
            bail!("JetStream not ready; see the logs in {}", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The nats-server binary: `given`, else copied out of the local image `nats:<version>` (made
/// by deploy/nats/build-local-image.sh). Never a `nats-server` from the PATH: Debian's is 2.9,
/// without batch publishing.
pub fn nats_binary(given: Option<PathBuf>, dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let target = dir.join("nats-server");
    if target.exists() {
        return Ok(target);
    }
    let image = format!("nats:{}", NATS_VERSION.trim());
    let created = Command::new("docker")
        .args(["create", &image])
        .output()
        .context("docker not found")?;
    if !created.status.success() {
        bail!(
            "no nats-server: pass --nats-server or build {image} with deploy/nats/build-local-image.sh"
        );
    }
    let id = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    let copied = Command::new("docker")
        .args(["cp", &format!("{id}:/nats-server")])
        .arg(&target)
        .status();
    let _ = Command::new("docker")
        .args(["rm", &id])
        .stdout(Stdio::null())
        .status();
    if !copied.map(|s| s.success()).unwrap_or(false) {
        bail!("failed to copy nats-server out of {image}");
    }
    Ok(target)
}
