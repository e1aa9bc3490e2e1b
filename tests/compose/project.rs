//! A docker-compose project of the repository's `docker-compose.yml`, driven through the
//! compose CLI (v1 `docker-compose` or v2 `docker compose`), torn down with `down -v` when
//! dropped — also when a test fails.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use anyhow::{Context, bail};

pub struct Project {
    pub name: String,
    root: PathBuf,
    files: Vec<String>,
    env: Vec<(String, String)>,
    compose: Vec<String>,
}

fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `docker-compose` when installed (v1), else the `docker compose` plugin (v2).
fn compose_command() -> Vec<String> {
    let v1 = Command::new("docker-compose").arg("version").output();
    if matches!(v1, Ok(o) if o.status.success()) {
        vec!["docker-compose".into()]
    } else {
        vec!["docker".into(), "compose".into()]
    }
}

pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    Ok(text(&run(Command::new("docker").args(args))?))
}

impl Project {
    pub fn new(root: &Path, name: &str, env: Vec<(String, String)>) -> Self {
        Self {
            name: name.to_owned(),
            root: root.to_owned(),
            files: vec!["docker-compose.yml".into()],
            env,
            compose: compose_command(),
        }
    }

    /// Adds a compose file (relative to the repository root) to every later command.
    pub fn with_file(&mut self, file: &str) {
        self.files.push(file.to_owned());
    }

    pub fn cmd(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut c = Command::new(&self.compose[0]);
        c.args(&self.compose[1..])
            .current_dir(&self.root)
            .arg("-p")
            .arg(&self.name);
        for f in &self.files {
            c.arg("-f").arg(f);
        }
        c.args(args).envs(self.env.iter().map(|(k, v)| (k, v)));
        Ok(text(&run(&mut c)?))
    }

    /// Container ids of a service (all replicas).
    pub fn containers(&self, service: &str) -> anyhow::Result<Vec<String>> {
        let ids = docker(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])?;
        Ok(ids.lines().map(str::to_owned).collect())
    }

    /// Every container of the project, running or not.
    pub fn all_containers(&self) -> anyhow::Result<Vec<String>> {
        let ids = docker(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
        ])?;
        Ok(ids.lines().map(str::to_owned).collect())
    }

    /// `<id> <started at>` of each container, to show a container was left alone.
    pub fn identity(&self, ids: &[String]) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for id in ids {
            out.push(docker(&[
                "inspect",
                "-f",
                "{{.Id}} {{.State.StartedAt}}",
                id,
            ])?);
        }
        out.sort();
        Ok(out)
    }

    /// Waits until every running container of the project reports healthy.
    pub async fn wait_healthy(&self, limit: Duration) -> anyhow::Result<()> {
        let mut last = String::new();
        let ok = hookyard_testkit::wait_for(limit, "all services healthy", || {
            let states = self.all_containers().and_then(|ids| {
                let mut states = Vec::new();
                for id in ids {
                    states.push(docker(&[
                        "inspect",
                        "-f",
                        "{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
                        &id,
                    ])?);
                }
                Ok(states)
            });
            let healthy = match &states {
                Ok(s) => !s.is_empty() && s.iter().all(|l| l.ends_with(" running healthy")),
                Err(_) => false,
            };
            last = format!("{states:?}");
            async move { healthy }
        })
        .await;
        if ok.is_err() {
            for id in self.all_containers().unwrap_or_default() {
                let state = docker(&["inspect", "-f", "{{.Name}} {{.State.Status}} exit={{.State.ExitCode}} restarts={{.RestartCount}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", &id]).unwrap_or_default();
                if !state.ends_with(" healthy") || state.contains(" exited ") {
                    let logs = self.logs(&id).unwrap_or_default();
                    let tail: Vec<&str> = logs.lines().rev().take(15).collect();
                    eprintln!(
                        "--- {state}\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
            }
        }
        ok.with_context(|| format!("last states: {last}"))
    }

    /// Each container of `service`: its state, restart count and last `lines` warnings, errors
    /// and panics, for an error that needs the service's side of the story.
    pub fn describe(&self, service: &str, lines: usize) -> String {
        let mut out = String::new();
        for id in self.containers(service).unwrap_or_default() {
            let state = docker(&["inspect", "-f", "{{.Name}} {{.State.Status}} restarts={{.RestartCount}} started={{.State.StartedAt}}", &id]).unwrap_or_default();
            let logs = self.logs(&id).unwrap_or_default();
            let tail: Vec<&str> = logs
                .lines()
                .rev()
                .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"))
                .take(lines)
                .collect();
            out.push_str(&format!("\n--- {state}\n"));
            out.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        out
    }

    /// The log lines of one container.
    pub fn logs(&self, id: &str) -> anyhow::Result<String> {
        let out = run(Command::new("docker").args(["logs", id]))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr))
    }

    /// What the project left behind: containers, networks, volumes.
    pub fn leftovers(&self) -> anyhow::Result<Vec<String>> {
        let label = format!("label=com.docker.compose.project={}", self.name);
        let mut left = Vec::new();
        for (kind, args) in [
            ("container", vec!["ps", "-aq", "--filter", label.as_str()]),
            (
                "network",
                vec!["network", "ls", "-q", "--filter", label.as_str()],
            ),
            (
                "volume",
                vec!["volume", "ls", "-q", "--filter", label.as_str()],
            ),
        ] {
            for id in docker(&args)?.lines() {
                left.push(format!("{kind} {id}"));
            }
        }
        Ok(left)
    }

    pub fn down(&self) -> anyhow::Result<()> {
        self.cmd(&["down", "-v", "--remove-orphans", "--timeout", "5"])
            .map(|_| ())
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if let Err(e) = self.down() {
            eprintln!("cleanup of compose project {} failed: {e:#}", self.name);
        }
    }
}
