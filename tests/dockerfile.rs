//! The container files, exercised without a container engine.
//!
//! * The Dockerfile's build stage is replayed: a temporary folder standing
//!   for the stage's file system gets exactly what its `COPY` lines bring
//!   from the build context (less what `.dockerignore` leaves out), and its
//!   `RUN` lines run in its `WORKDIR` with `sh -c`, as the image's shell
//!   runs them, with the stage's `ARG` defaults in the environment (so
//!   `${FEATURES:+…}` expands to nothing) and cargo offline. A cache mount
//!   of `WORKDIR/target` is a link to this crate's `target/` for the length
//!   of its `RUN` (compiled dependencies are reused, and what is left in it
//!   is gone afterwards, as from a cache mount); one under the image's
//!   `CARGO_HOME` is this machine's cargo home.
//! * The runtime stage's `COPY --from=` lines take the result into a second
//!   folder standing for the image's file system. Its `ENTRYPOINT` and
//!   `HEALTHCHECK` commands are looked up on the image's `PATH` there and run
//!   as its `USER` (through `setpriv` when the test runs as root) with its
//!   `ENV` and nothing else; only `LISTEN_ADDR` is `127.0.0.1:0`. It is
//!   stopped with its `STOPSIGNAL`.
//! * The compose file's proxy service is run the same way, its settings over
//!   the image's, and its image name and ports are checked against the
//!   README's.
//!
//! What only a container engine shows is in docs/operations.md ("Container").

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `CARGO_HOME` in the official `rust` images.
const RUST_IMAGE_CARGO_HOME: &str = "/usr/local/cargo";
/// `PATH` in the official `debian` images.
const DEBIAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Shared libraries of `debian:*-slim`'s required packages (libc6,
/// libgcc-s1): all a binary may link to dynamically.
const SLIM_LIBRARIES: &[&str] = &[
    "linux-vdso.so.1",
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
];
/// Programs a replayed `RUN` may start on this machine: ones that, given no
/// absolute path and no `..`, act inside its folder only.
const REPLAYABLE: &[&str] = &[
    "cargo", "cp", "mv", "touch", "find", "mkdir", "rm", "ln", "echo", "test", "true", "ls",
];
/// How long `docker stop` waits after the stop signal before SIGKILL.
const DOCKER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(crate_dir().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// --- Dockerfile ------------------------------------------------------------

#[derive(Debug, Clone)]
struct Instruction {
    /// Line of the keyword, from 1.
    line: usize,
    keyword: String,
    /// The leading `--name=value` words.
    flags: Vec<String>,
    /// The rest, continuation lines joined.
    args: String,
}

impl Instruction {
    fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find_map(|f| f.strip_prefix("--")?.strip_prefix(name)?.strip_prefix('='))
    }
}

/// The instructions, with `\` continuations joined and comment lines (also
/// those inside a continued instruction, as Docker does) left out.
fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (body, continued) = match raw.trim_end().strip_suffix('\\') {
            Some(body) => (body, true),
            None => (raw.trim_end(), false),
        };
        let (_, joined) = current.get_or_insert_with(|| (i + 1, String::new()));
        joined.push_str(body.trim());
        joined.push(' ');
        if !continued {
            let (line, joined) = current.take().expect("an instruction");
            out.push(instruction(line, joined.trim()));
        }
    }
    assert!(current.is_none(), "the Dockerfile ends in a continued line");
    out
}

fn instruction(line: usize, text: &str) -> Instruction {
    let (keyword, mut rest) = text.split_once(' ').unwrap_or((text, ""));
    rest = rest.trim();
    let mut flags = Vec::new();
    while rest.starts_with("--") {
        let (flag, after) = rest.split_once(' ').unwrap_or((rest, ""));
        flags.push(flag.to_string());
        rest = after.trim();
    }
    Instruction {
        line,
        keyword: keyword.to_ascii_uppercase(),
        flags,
        args: rest.to_string(),
    }
}

#[derive(Debug)]
struct Stage {
    name: Option<String>,
    base: String,
    body: Vec<Instruction>,
}

fn stages(dockerfile: &str) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for ins in instructions(dockerfile) {
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins.args.split_whitespace().collect();
            let (base, name) = match words.as_slice() {
                [base] => (base.to_string(), None),
                [base, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    (base.to_string(), Some(name.to_string()))
                }
                _ => panic!("line {}: FROM {}", ins.line, ins.args),
            };
            stages.push(Stage {
                name,
                base,
                body: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .unwrap_or_else(|| panic!("line {}: {} before FROM", ins.line, ins.keyword))
                .body
                .push(ins);
        }
    }
    stages
}

/// A word without the one pair of quotes around it.
fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

/// `KEY=value` pairs of an `ENV` or `ARG` instruction.
fn assignments(ins: &Instruction) -> Vec<(String, Option<String>)> {
    ins.args
        .split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(unquote(v))),
            None if ins.keyword == "ARG" => (kv.to_string(), None),
            None => panic!("line {}: ENV in the `ENV KEY value` form", ins.line),
        })
        .collect()
}

/// An exec-form argument list: `["a", "b"]`.
fn exec_form(ins: &Instruction, args: &str) -> Vec<String> {
    let argv: Vec<String> = serde_json::from_str(args.trim()).unwrap_or_else(|e| {
        panic!(
            "line {}: {} {args}: not the exec form: {e}",
            ins.line, ins.keyword
        )
    });
    assert!(!argv.is_empty(), "line {}: an empty command", ins.line);
    argv
}

/// `30s`, `1m30s`, `500ms`.
fn docker_duration(s: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_digit() {
                break;
            }
            unit.push(c);
            chars.next();
        }
        let n: u64 = number.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
        number.clear();
        total += match unit.as_str() {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(60 * n),
            "h" => Duration::from_secs(3600 * n),
            _ => panic!("{s}: unit {unit}"),
        };
    }
    assert!(number.is_empty(), "{s}: a number without a unit");
    total
}

// --- .dockerignore ---------------------------------------------------------

/// `.dockerignore` rules: (excludes, pattern segments); the last matching
/// rule decides, and a rule matching a folder matches what is in it.
struct Ignore(Vec<(bool, Vec<String>)>);

impl Ignore {
    fn parse(text: &str) -> Ignore {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (excludes, pattern) = match l.strip_prefix('!') {
                    Some(p) => (false, p),
                    None => (true, l),
                };
                assert!(
                    !pattern.contains(['[', '\\']),
                    ".dockerignore {l}: character classes and escapes are not read here"
                );
                let segments = pattern
                    .split('/')
                    .filter(|s| !s.is_empty() && *s != ".")
                    .map(str::to_string)
                    .collect();
                (excludes, segments)
            })
            .collect();
        Ignore(rules)
    }

    fn ignores(&self, path: &[&str]) -> bool {
        let mut ignored = false;
        for (excludes, pattern) in &self.0 {
            if (1..=path.len()).any(|n| glob(pattern, &path[..n])) {
                ignored = *excludes;
            }
        }
        ignored
    }
}

fn glob(pattern: &[String], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(p), _) if p == "**" => {
            glob(&pattern[1..], path) || (!path.is_empty() && glob(pattern, &path[1..]))
        }
        (Some(p), Some(s)) => {
            glob_segment(p.as_bytes(), s.as_bytes()) && glob(&pattern[1..], &path[1..])
        }
        _ => false,
    }
}

fn glob_segment(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_segment(&p[1..], s) || (!s.is_empty() && glob_segment(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob_segment(&p[1..], &s[1..]),
        (Some(a), Some(b)) => a == b && glob_segment(&p[1..], &s[1..]),
        _ => false,
    }
}

// --- the replay --------------------------------------------------------------

/// A folder removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock")
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "ollama-translate-{what}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The folder standing for `path` (absolute, or relative to `workdir`) of a
/// stage's file system kept in `root`.
fn host_path(root: &Path, workdir: &str, path: &str) -> PathBuf {
    let full = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{workdir}/{path}")
    };
    let mut out = root.to_path_buf();
    for segment in full.split('/').filter(|s| !s.is_empty() && *s != ".") {
        assert_ne!(segment, "..", "{path}: `..` is not replayed");
        out.push(segment);
    }
    out
}

/// This crate's `target/`: the folder above the test binary holding
/// `CACHEDIR.TAG`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    exe.ancestors()
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .unwrap_or_else(|| panic!("no target directory above {}", exe.display()))
        .to_path_buf()
}

fn copy_tree(from: &Path, to: &Path, rel: &mut Vec<String>, ignore: &Ignore) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .unwrap_or_else(|e| panic!("{}: {e}", from.display()))
        .map(|e| e.expect("a folder entry"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().into_string().expect("a UTF-8 name");
        rel.push(name.clone());
        let segments: Vec<&str> = rel.iter().map(String::as_str).collect();
        if !ignore.ignores(&segments) {
            let kind = entry.file_type().expect("a file type");
            if kind.is_dir() {
                copy_tree(&entry.path(), &to.join(&name), rel, ignore);
            } else if kind.is_file() {
                std::fs::copy(entry.path(), to.join(&name))
                    .unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
            } else {
                panic!("{}: only files and folders are copied here", rel.join("/"));
            }
        }
        rel.pop();
    }
}

/// `COPY src… dest` from the build context (`--from=` is not for this).
fn copy_from_context(ins: &Instruction, root: &Path, workdir: &str, ignore: &Ignore) {
    assert!(
        ins.flags.is_empty(),
        "line {}: COPY {:?}: flags are not replayed",
        ins.line,
        ins.flags
    );
    assert!(
        !ins.args.contains(['$', '*', '?', '[']) && !ins.args.starts_with('['),
        "line {}: COPY {}: variables, wildcards and the JSON form are not replayed",
        ins.line,
        ins.args
    );
    let words: Vec<&str> = ins.args.split_whitespace().collect();
    let (dest, sources) = words.split_last().expect("COPY src dest");
    assert!(
        !sources.is_empty(),
        "line {}: COPY without a source",
        ins.line
    );
    let into_folder = sources.len() > 1 || dest.ends_with('/');
    let dest = host_path(root, workdir, dest);
    for src in sources {
        let segments: Vec<&str> = src
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        assert!(
            !segments.contains(&".."),
            "line {}: {src} is outside the build context",
            ins.line
        );
        assert!(
            !ignore.ignores(&segments),
            "line {}: COPY {src}: left out of the build context by .dockerignore",
            ins.line
        );
        let from = crate_dir().join(src);
        let meta = std::fs::metadata(&from)
            .unwrap_or_else(|e| panic!("line {}: COPY {src}: {e}", ins.line));
        if meta.is_dir() {
            let mut rel = segments.iter().map(|s| s.to_string()).collect();
            copy_tree(&from, &dest, &mut rel, ignore);
        } else {
            let to = if into_folder {
                dest.join(segments.last().expect("a file name"))
            } else {
                dest.clone()
            };
            std::fs::create_dir_all(to.parent().expect("a parent")).expect("a folder");
            std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("line {}: {src}: {e}", ins.line));
        }
    }
}

/// Whether a `RUN` keeps to its folder on this machine: only the
/// `REPLAYABLE` programs, no absolute path (but `/dev/null`), no `..`, no
/// command substitution; why not, otherwise.
fn replayable(ins: &Instruction) -> Result<(), String> {
    let script = &ins.args;
    let line = ins.line;
    if script.starts_with('[')
        || script.contains("<<")
        || script.contains('`')
        || script.contains("$(")
    {
        return Err(format!(
            "line {line}: RUN {script}: the exec form, heredocs and command substitution are not replayed"
        ));
    }
    let separated = script
        .replace("&&", "\n")
        .replace("||", "\n")
        .replace([';', '|'], "\n");
    for command in separated.lines() {
        let words: Vec<&str> = command
            .split_whitespace()
            .skip_while(|w| w.contains('=') && !w.starts_with('-'))
            .collect();
        let Some(program) = words.first() else {
            continue;
        };
        if !REPLAYABLE.contains(program) {
            return Err(format!(
                "line {line}: RUN starts `{program}`, which this test does not run on the host; \
                 teach tests/dockerfile.rs how to check it"
            ));
        }
        for w in words.windows(2) {
            if matches!(w[0], "-exec" | "-execdir" | "-ok" | "-okdir")
                && !REPLAYABLE.contains(&w[1])
            {
                return Err(format!(
                    "line {line}: find {} {}: not run on the host",
                    w[0], w[1]
                ));
            }
        }
        for word in &words {
            for part in word.split('=') {
                let part =
                    part.trim_start_matches(|c: char| c.is_ascii_digit() || "\"'<>(&{".contains(c));
                if part.starts_with('/') && part != "/dev/null" {
                    return Err(format!(
                        "line {line}: RUN names the absolute path {part}: the replay runs on the \
                         host, so a build stage's RUN keeps to its WORKDIR"
                    ));
                }
                if part.split('/').any(|s| s == "..") {
                    return Err(format!(
                        "line {line}: RUN names {part}: `..` is not replayed"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The environment of a replayed `RUN`: this machine's, less cargo's
/// settings for the test that runs it (`CARGO_HOME` stays: it plays the
/// image's), with the stage's ARG and ENV values, offline.
fn replay_env(stage_env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k == "CARGO_HOME" || !(k == "CARGO" || k.starts_with("CARGO_")))
        .collect();
    env.extend(stage_env.iter().cloned());
    env.push(("CARGO_NET_OFFLINE".into(), "true".into()));
    env
}

fn replay_run(ins: &Instruction, root: &Path, workdir: &str, stage_env: &[(String, String)]) {
    if let Err(why) = replayable(ins) {
        panic!("{why}");
    }
    // Cache mounts: links for the length of this RUN.
    let mut links = Vec::new();
    for flag in &ins.flags {
        let Some(spec) = flag.strip_prefix("--mount=") else {
            panic!("line {}: RUN {flag}: not replayed", ins.line);
        };
        let options: Vec<(&str, &str)> = spec
            .split(',')
            .map(|o| o.split_once('=').unwrap_or((o, "")))
            .collect();
        let option = |name: &str| options.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        assert_eq!(
            option("type"),
            Some("cache"),
            "line {}: {flag}: only cache mounts are replayed",
            ins.line
        );
        let target = option("target")
            .or(option("dst"))
            .or(option("destination"))
            .unwrap_or_else(|| panic!("line {}: {flag}: no target", ins.line));
        if target == format!("{workdir}/target") {
            let link = host_path(root, workdir, target);
            assert!(
                !link.exists(),
                "line {}: {target} exists before its cache mount",
                ins.line
            );
            std::os::unix::fs::symlink(target_dir(), &link).expect("link target/");
            links.push(link);
        } else {
            assert!(
                target.starts_with(&format!("{RUST_IMAGE_CARGO_HOME}/")),
                "line {}: a cache mount at {target}: the replay plays WORKDIR/target with \
                 this crate's target/ and the image's cargo home with this machine's, nothing else",
                ins.line
            );
        }
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(&ins.args)
        .current_dir(host_path(root, workdir, "."))
        .env_clear()
        .envs(replay_env(stage_env))
        .output()
        .expect("run sh");
    for link in links {
        std::fs::remove_file(&link).expect("remove the cache mount's link");
    }
    assert!(
        out.status.success(),
        "line {}: RUN {}\nfailed ({}) in the replayed build stage:\n{}{}",
        ins.line,
        ins.args,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Replays the stage: its file system ends in `root`; its WORKDIR.
fn replay_build_stage(stage: &Stage, root: &Path) -> String {
    let ignore = Ignore::parse(
        &std::fs::read_to_string(crate_dir().join(".dockerignore")).unwrap_or_default(),
    );
    let mut workdir = "/".to_string();
    let mut env: Vec<(String, String)> = Vec::new();
    for ins in &stage.body {
        match ins.keyword.as_str() {
            "WORKDIR" => {
                assert!(
                    ins.args.starts_with('/'),
                    "line {}: a relative WORKDIR",
                    ins.line
                );
                workdir = ins.args.trim_end_matches('/').to_string();
                std::fs::create_dir_all(host_path(root, &workdir, ".")).expect("WORKDIR");
            }
            "ARG" | "ENV" => {
                for (k, v) in assignments(ins) {
                    env.retain(|(name, _)| *name != k);
                    if let Some(v) = v {
                        env.push((k, v));
                    }
                }
            }
            "COPY" => copy_from_context(ins, root, &workdir, &ignore),
            "RUN" => replay_run(ins, root, &workdir, &env),
            "LABEL" => {}
            other => panic!(
                "line {}: {other} in the build stage is not replayed; teach tests/dockerfile.rs",
                ins.line
            ),
        }
    }
    workdir
}

/// The `(kind, name)` of every target cargo finds in the crate in `dir`.
fn cargo_targets(dir: &Path) -> Vec<(String, String)> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(dir)
        .env_clear()
        .envs(replay_env(&[]))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let mut targets: Vec<(String, String)> = meta["packages"][0]["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .flat_map(|t| {
            let name = t["name"].as_str().expect("a name").to_string();
            t["kind"]
                .as_array()
                .expect("kinds")
                .iter()
                .map(move |k| (k.as_str().expect("a kind").to_string(), name.clone()))
        })
        .collect();
    targets.sort();
    targets
}

// --- the runtime stage ---------------------------------------------------------

#[derive(Debug)]
struct Image {
    /// The image's file system as far as it matters: what its COPY lines put.
    root: PathBuf,
    base: String,
    user: u32,
    /// The uid its `useradd` creates.
    created_uid: Option<u32>,
    env: Vec<(String, String)>,
    expose: Vec<u16>,
    healthcheck: Vec<String>,
    healthcheck_timeout: Duration,
    healthcheck_start_period: Duration,
    stop_signal: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

/// A replayed build stage: its name, file system and WORKDIR.
struct Built {
    name: String,
    root: TempDir,
    workdir: String,
}

/// The runtime stage (the last) read, and with `layout` laid out in a
/// folder, its `COPY --from=` lines taking from the replayed stages.
fn runtime_stage(stage: &Stage, layout: Option<(&Path, &[Built])>) -> Image {
    let mut image = Image {
        root: layout
            .map(|(root, _)| root.to_path_buf())
            .unwrap_or_default(),
        base: stage.base.clone(),
        user: 0,
        created_uid: None,
        env: vec![("PATH".into(), DEBIAN_PATH.into())],
        expose: Vec::new(),
        healthcheck: Vec::new(),
        healthcheck_timeout: Duration::from_secs(30),
        healthcheck_start_period: Duration::ZERO,
        stop_signal: "SIGTERM".into(),
        entrypoint: Vec::new(),
        cmd: Vec::new(),
    };
    let mut workdir = "/".to_string();
    for ins in &stage.body {
        match ins.keyword.as_str() {
            "COPY" => {
                let from = ins.flag("from").unwrap_or_else(|| {
                    panic!(
                        "line {}: the runtime stage copies from the build context",
                        ins.line
                    )
                });
                let Some((root, built)) = layout else {
                    continue;
                };
                let stage = built
                    .iter()
                    .find(|b| b.name == from)
                    .unwrap_or_else(|| panic!("line {}: no replayed stage {from}", ins.line));
                let (from_root, from_workdir) = (&stage.root.0, &stage.workdir);
                let words: Vec<&str> = ins.args.split_whitespace().collect();
                let [src, dest] = words.as_slice() else {
                    panic!("line {}: COPY --from= with one source", ins.line);
                };
                let src_path = host_path(from_root, from_workdir, src);
                assert!(
                    src_path.is_file(),
                    "line {}: COPY --from={from} {src}: the replayed stage has no such file \
                     (a file left in a cache mount is not in the stage)",
                    ins.line
                );
                let to = if dest.ends_with('/') {
                    host_path(root, &workdir, dest).join(src_path.file_name().expect("a name"))
                } else {
                    host_path(root, &workdir, dest)
                };
                std::fs::create_dir_all(to.parent().expect("a parent")).expect("a folder");
                std::fs::copy(&src_path, &to).expect("copy into the image");
            }
            "RUN" => {
                // Runs the base image's programs as root: not replayed here.
                // What it must do for the rest of the stage is checked.
                let words: Vec<&str> = ins.args.split_whitespace().collect();
                assert_eq!(
                    words.first(),
                    Some(&"useradd"),
                    "line {}: RUN {} in the runtime stage is not checked here; teach \
                     tests/dockerfile.rs",
                    ins.line,
                    ins.args
                );
                let uid = words
                    .windows(2)
                    .find(|w| w[0] == "--uid" || w[0] == "-u")
                    .map(|w| w[1].parse::<u32>().expect("a numeric uid"));
                image.created_uid = uid;
            }
            "USER" => {
                let user = ins.args.split(':').next().expect("a user");
                image.user = user.parse().unwrap_or_else(|_| {
                    panic!(
                        "line {}: USER {user}: a uid is what a probe outside can see",
                        ins.line
                    )
                });
            }
            "ENV" => {
                for (k, v) in assignments(ins) {
                    image.env.retain(|(name, _)| *name != k);
                    image.env.push((k, v.expect("a value")));
                }
            }
            "EXPOSE" => image.expose.extend(
                ins.args
                    .split_whitespace()
                    .map(|p| p.trim_end_matches("/tcp").parse::<u16>().expect("a port")),
            ),
            "HEALTHCHECK" => {
                let cmd = ins
                    .args
                    .strip_prefix("CMD ")
                    .unwrap_or_else(|| panic!("line {}: HEALTHCHECK without CMD", ins.line));
                image.healthcheck = exec_form(ins, cmd);
                if let Some(t) = ins.flag("timeout") {
                    image.healthcheck_timeout = docker_duration(t);
                }
                if let Some(t) = ins.flag("start-period") {
                    image.healthcheck_start_period = docker_duration(t);
                }
            }
            "STOPSIGNAL" => image.stop_signal = ins.args.clone(),
            "ENTRYPOINT" => image.entrypoint = exec_form(ins, &ins.args),
            "CMD" => image.cmd = exec_form(ins, &ins.args),
            "WORKDIR" => workdir = ins.args.clone(),
            "LABEL" | "ARG" => {}
            other => panic!(
                "line {}: {other} in the runtime stage is not checked; teach tests/dockerfile.rs",
                ins.line
            ),
        }
    }
    image
}

/// The built image: the build stages replayed, the runtime stage laid out
/// in `root`.
fn build_image(root: &Path) -> (Image, Vec<Built>) {
    let stages = stages(&read("Dockerfile"));
    let (runtime, build) = stages.split_last().expect("a stage");
    let mut built = Vec::new();
    for stage in build {
        let name = stage.name.clone().expect("build stages are named");
        let dir = TempDir::new(&format!("stage-{name}"));
        let workdir = replay_build_stage(stage, &dir.0);
        built.push(Built {
            name,
            root: dir,
            workdir,
        });
    }
    let image = runtime_stage(runtime, Some((root, &built)));
    (image, built)
}

// --- running what the image runs ---------------------------------------------

fn whoami() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .expect("a uid")
}

fn process_uids(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|u| u.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// How a service runs: as whom, with what, and its commands.
#[derive(Debug, Clone)]
struct Service {
    user: u32,
    env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
    stop_signal: String,
}

impl Service {
    fn of_image(image: &Image) -> Service {
        Service {
            user: image.user,
            env: image.env.clone(),
            entrypoint: image.entrypoint.clone(),
            cmd: image.cmd.clone(),
            healthcheck: image.healthcheck.clone(),
            stop_signal: image.stop_signal.clone(),
        }
    }

    /// What the container runs: its entrypoint, then `args` (`docker run
    /// IMAGE args…`) or its command.
    fn argv(&self, args: Option<&[&str]>) -> Vec<String> {
        let args = match args {
            Some(args) => args.iter().map(|a| a.to_string()).collect(),
            None => self.cmd.clone(),
        };
        self.entrypoint.iter().cloned().chain(args).collect()
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn with(&self, key: &str, value: &str) -> Vec<(String, String)> {
        let mut env: Vec<_> = self.env.iter().filter(|(k, _)| k != key).cloned().collect();
        env.push((key.into(), value.into()));
        env
    }

    /// `name` looked up on the image's `PATH` in its file system.
    fn program(image: &Image, name: &str, env: &[(String, String)]) -> PathBuf {
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or(DEBIAN_PATH);
        if name.contains('/') {
            return host_path(&image.root, "/", name);
        }
        path.split(':')
            .map(|dir| host_path(&image.root, "/", dir).join(name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("`{name}` is not on the image's PATH {path}"))
    }

    /// `argv` as the image would run it: the program looked up on the
    /// image's `PATH` in its file system, as its user (when this test can
    /// switch to it), with exactly `env`.
    fn command(&self, image: &Image, argv: &[String], env: &[(String, String)]) -> Command {
        let program = Service::program(image, &argv[0], env);
        let mut cmd = if whoami() == 0 && self.user != 0 {
            assert!(
                Command::new("setpriv").arg("--version").output().is_ok(),
                "the test runs as root: it needs setpriv (util-linux) to run as USER {}",
                self.user
            );
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={}", self.user))
                .arg(format!("--regid={}", self.user))
                .arg("--clear-groups")
                .arg("--")
                .arg(&program);
            c
        } else {
            Command::new(&program)
        };
        cmd.args(&argv[1..])
            .env_clear()
            .envs(env.iter().cloned())
            .current_dir(&image.root);
        cmd
    }
}

/// Runs `cmd` to its end, within `limit`.
fn run_within(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let t = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    loop {
        if child.try_wait().expect("wait").is_some() {
            let elapsed = t.elapsed();
            return (child.wait_with_output().expect("output"), elapsed);
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The service's process; killed when dropped.
struct Running {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the service listening on `127.0.0.1:0`; waits for its address.
fn start(image: &Image, service: &Service, log: PathBuf) -> Running {
    let env = service.with("LISTEN_ADDR", "127.0.0.1:0");
    let mut cmd = service.command(image, &service.argv(None), &env);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let _ = tx.send(first);
        lines.for_each(drop); // the rest, so that writing never fails
    });
    let mut running = Running {
        child,
        port: 0,
        log,
    };
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no address announced within 10 s: {}", running.log()));
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}: {}", running.log()));
    running.port = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a port in {addr}"));
    running
}

/// What `docker run`, the health check and `docker stop` do with `service`,
/// checked.
fn run_like_the_engine(image: &Image, service: &Service, what: &str, folder: &Path) {
    let switched = whoami() == 0 && service.user != 0;
    if whoami() == 0 {
        assert_ne!(service.user, 0, "{what}: runs as root");
    }

    // `docker run IMAGE --help`, `--version`.
    let help = service.argv(Some(&["--help"]));
    let (out, _) = run_within(
        service.command(image, &help, &service.env),
        Duration::from_secs(10),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what}: --help: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("usage: ollama-translate"),
        "{what}: --help: {stdout}"
    );
    for (k, _) in &service.env {
        assert!(
            k == "PATH" || stdout.contains(&format!("[env: {k}")),
            "{what}: sets {k}, which --help does not list"
        );
    }
    let version = service.argv(Some(&["--version"]));
    let (out, _) = run_within(
        service.command(image, &version, &service.env),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{what}: --version");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ollama-translate {}", env!("CARGO_PKG_VERSION")),
        "{what}: the binary of this crate"
    );

    // Started as the image starts it, but on a port of the OS's choosing.
    let started = Instant::now();
    let mut proxy = start(image, service, folder.join(format!("{what}.log")));
    if switched {
        let uids = process_uids(proxy.child.id());
        assert!(
            !uids.is_empty() && uids.iter().all(|u| *u == service.user),
            "{what}: the proxy runs as {uids:?}, not {}",
            service.user
        );
    }

    // The health check, as the engine runs it: its LISTEN_ADDR (the wildcard
    // address) with the port the proxy got.
    let listen = service.get("LISTEN_ADDR").expect("LISTEN_ADDR is set");
    let (host, _) = listen.rsplit_once(':').expect("host:port");
    let env = service.with("LISTEN_ADDR", &format!("{host}:{}", proxy.port));
    let (out, took) = run_within(
        service.command(image, &service.healthcheck, &env),
        image.healthcheck_timeout + Duration::from_secs(5),
    );
    assert!(
        out.status.success(),
        "{what}: the health check {:?} failed: {}{}\nproxy log: {}",
        service.healthcheck,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    assert!(
        took < image.healthcheck_timeout,
        "{what}: the health check took {took:?}"
    );
    assert!(
        started.elapsed() < image.healthcheck_start_period.max(Duration::from_secs(5)),
        "{what}: healthy {:?} after the start",
        started.elapsed()
    );

    // `docker stop`: the stop signal, then SIGKILL after 10 s.
    let signal = service.stop_signal.trim_start_matches("SIG");
    let sent = Command::new("kill")
        .args(["-s", signal, &proxy.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "{what}: kill -s {signal}");
    let t = Instant::now();
    let status = loop {
        if let Some(status) = proxy.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            t.elapsed() < DOCKER_STOP_TIMEOUT,
            "{what}: still running {DOCKER_STOP_TIMEOUT:?} after SIG{signal}: {}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.success(),
        "{what}: exit after SIG{signal}: {status}: {}",
        proxy.log()
    );
}

/// The libraries `bin` links to dynamically.
fn shared_libraries(bin: &Path) -> Vec<String> {
    let out = Command::new("ldd").arg(bin).output().expect("run ldd");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|l| !l.contains("statically"))
        .map(|l| l.rsplit('/').next().unwrap_or(l).to_string())
        .collect()
}

// --- compose.yaml ------------------------------------------------------------

/// The YAML compose files here use: block maps and sequences, plain and
/// quoted scalars, flow sequences of scalars. Anything else is refused.
#[derive(Debug, Clone, PartialEq)]
enum Yaml {
    Null,
    Str(String),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Yaml::Str(s) => Some(s),
            _ => None,
        }
    }

    fn seq(&self) -> &[Yaml] {
        match self {
            Yaml::Seq(items) => items,
            Yaml::Null => &[],
            _ => panic!("not a sequence: {self:?}"),
        }
    }

    fn map(&self) -> &[(String, Yaml)] {
        match self {
            Yaml::Map(entries) => entries,
            Yaml::Null => &[],
            _ => panic!("not a map: {self:?}"),
        }
    }
}

struct YamlLine {
    number: usize,
    indent: usize,
    text: String,
}

fn parse_yaml(text: &str) -> Yaml {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        assert!(!raw.contains('\t'), "line {}: a tab", i + 1);
        let content = strip_comment(raw);
        if content.trim().is_empty() {
            continue;
        }
        assert!(
            !content.trim().starts_with("---") && !content.trim().starts_with("..."),
            "line {}: one document",
            i + 1
        );
        lines.push(YamlLine {
            number: i + 1,
            indent: content.len() - content.trim_start().len(),
            text: content.trim().to_string(),
        });
    }
    let mut i = 0;
    let doc = yaml_block(&lines, &mut i, 0);
    assert_eq!(
        i,
        lines.len(),
        "line {}: unexpected indentation",
        lines[i.min(lines.len() - 1)].number
    );
    doc
}

/// `raw` without a `#` comment (one at the start or after a space, outside
/// quotes).
fn strip_comment(raw: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in raw.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if previous == ' ' => return &raw[..i],
            _ => {}
        }
        previous = c;
    }
    raw.trim_end()
}

fn yaml_block(lines: &[YamlLine], i: &mut usize, indent: usize) -> Yaml {
    if lines[*i].text == "-" || lines[*i].text.starts_with("- ") {
        let mut items = Vec::new();
        while *i < lines.len() && lines[*i].indent == indent && lines[*i].text.starts_with('-') {
            let line = &lines[*i];
            let item = line.text[1..].trim();
            assert!(
                !item.is_empty() && !item.contains(": ") && !item.ends_with(':'),
                "line {}: only scalars in sequences are read here",
                line.number
            );
            items.push(yaml_scalar(item, line.number));
            *i += 1;
        }
        return Yaml::Seq(items);
    }
    let mut entries: Vec<(String, Yaml)> = Vec::new();
    while *i < lines.len() && lines[*i].indent == indent {
        let line = &lines[*i];
        let (key, rest) = match line.text.split_once(": ") {
            Some((k, v)) => (k, v.trim()),
            None => (
                line.text
                    .strip_suffix(':')
                    .unwrap_or_else(|| panic!("line {}: not `key: value`", line.number)),
                "",
            ),
        };
        let key = unquote(key);
        assert!(
            entries.iter().all(|(k, _)| *k != key),
            "line {}: {key} twice",
            line.number
        );
        *i += 1;
        let value = if !rest.is_empty() {
            yaml_scalar(rest, line.number)
        } else if *i < lines.len()
            && (lines[*i].indent > indent
                || (lines[*i].indent == indent && lines[*i].text.starts_with('-')))
        {
            let child = lines[*i].indent;
            yaml_block(lines, i, child)
        } else {
            Yaml::Null
        };
        entries.push((key, value));
    }
    if *i < lines.len() && lines[*i].indent > indent {
        panic!("line {}: unexpected indentation", lines[*i].number);
    }
    Yaml::Map(entries)
}

fn yaml_scalar(s: &str, line: usize) -> Yaml {
    match s.chars().next() {
        Some('"') => {
            Yaml::Str(serde_json::from_str(s).unwrap_or_else(|e| panic!("line {line}: {s}: {e}")))
        }
        Some('\'') => {
            let inner = s
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .unwrap_or_else(|| panic!("line {line}: {s}"));
            Yaml::Str(inner.replace("''", "'"))
        }
        Some('[') => {
            let inner = s
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or_else(|| panic!("line {line}: {s}"));
            Yaml::Seq(
                inner
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        assert!(
                            !s.contains(['[', '{']),
                            "line {line}: nested flow collections"
                        );
                        yaml_scalar(s, line)
                    })
                    .collect(),
            )
        }
        Some('{' | '|' | '>' | '&' | '*' | '!' | '%' | '@' | '`') => {
            panic!("line {line}: {s}: not read here")
        }
        _ => Yaml::Str(s.to_string()),
    }
}

/// A compose service's `environment`, either form.
fn compose_environment(service: &Yaml) -> Vec<(String, String)> {
    match service.get("environment") {
        None => Vec::new(),
        Some(Yaml::Map(entries)) => entries
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.str()
                        .unwrap_or_else(|| panic!("{k}: a string"))
                        .to_string(),
                )
            })
            .collect(),
        Some(Yaml::Seq(items)) => items
            .iter()
            .map(|i| {
                let kv = i.str().expect("KEY=value");
                let (k, v) = kv
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{kv}: KEY=value"));
                (k.to_string(), v.to_string())
            })
            .collect(),
        Some(other) => panic!("environment: {other:?}"),
    }
}

/// A command given as a string (split on spaces) or a list.
fn compose_command(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::Str(s) => s.split_whitespace().map(str::to_string).collect(),
        Yaml::Seq(items) => items
            .iter()
            .map(|i| i.str().expect("a word").to_string())
            .collect(),
        other => panic!("a command: {other:?}"),
    }
}

/// The compose file's `proxy` service run on `image`: its settings over the
/// image's.
fn compose_service(compose: &Yaml, image: &Image) -> Service {
    let proxy = compose
        .get("services")
        .and_then(|s| s.get("proxy"))
        .expect("a proxy service");
    let mut service = Service::of_image(image);
    for (k, v) in compose_environment(proxy) {
        service.env.retain(|(name, _)| *name != k);
        service.env.push((k, v));
    }
    if let Some(user) = proxy.get("user") {
        let user = user.str().expect("user: a string");
        service.user = user
            .split(':')
            .next()
            .and_then(|u| u.parse().ok())
            .expect("user: a uid");
    }
    if let Some(entrypoint) = proxy.get("entrypoint") {
        service.entrypoint = compose_command(entrypoint);
        service.cmd.clear();
    }
    if let Some(command) = proxy.get("command") {
        service.cmd = compose_command(command);
    }
    if let Some(check) = proxy.get("healthcheck") {
        assert_ne!(
            check.get("disable"),
            Some(&Yaml::Str("true".into())),
            "the health check is on"
        );
        let test = compose_command(check.get("test").expect("healthcheck: test"));
        assert_eq!(
            test.first().map(String::as_str),
            Some("CMD"),
            "healthcheck: test: [\"CMD\", …]"
        );
        service.healthcheck = test[1..].to_vec();
    }
    if let Some(signal) = proxy.get("stop_signal") {
        service.stop_signal = signal.str().expect("stop_signal").to_string();
    }
    service
}

// --- the tests -----------------------------------------------------------------

/// The build stage once wrote stub sources for the targets it knew of, and
/// failed on the first target added after it, unnoticed (issue 24).
#[test]
fn the_build_stage_replays_and_the_image_runs_its_binary_as_it_would() {
    let t = Instant::now();
    let image_root = TempDir::new("image");
    let (image, built) = build_image(&image_root.0);
    eprintln!("build stage replayed in {:.1} s", t.elapsed().as_secs_f64());

    // The image's crate is this crate: every target cargo finds here, it
    // finds in the build stage. A build script or a target outside the
    // folders the stage copies would be missing.
    let here = cargo_targets(crate_dir());
    for stage in &built {
        let there = cargo_targets(&host_path(&stage.root.0, &stage.workdir, "."));
        let missing: Vec<_> = here.iter().filter(|t| !there.contains(t)).collect();
        let extra: Vec<_> = there.iter().filter(|t| !here.contains(t)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "cargo finds other targets in the {} stage than here: missing {missing:?}, \
             extra {extra:?}; the Dockerfile does not copy what they need",
            stage.name
        );
    }

    // The runtime stage: a non-root user the image creates, and a binary
    // that needs nothing a slim Debian of the build stage's release lacks.
    assert_ne!(image.user, 0, "USER: not root");
    assert_eq!(
        image.created_uid,
        Some(image.user),
        "useradd creates the USER"
    );
    let stages = stages(&read("Dockerfile"));
    for stage in &stages {
        assert!(
            stage
                .base
                .rsplit(':')
                .next()
                .unwrap_or("")
                .contains("bookworm"),
            "{}: every stage on Debian bookworm, so the binary runs on the C library \
             it was linked against (and this machine's, which the replay links to, is \
             checked below)",
            stage.base
        );
    }
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if !os.contains("VERSION_CODENAME=bookworm") {
        eprintln!(
            "this machine is not Debian bookworm: the replayed binary links to its C library"
        );
    }
    let service = Service::of_image(&image);
    let bin = Service::program(&image, &service.argv(None)[0], &service.env);
    let libraries = shared_libraries(&bin);
    assert!(
        libraries.iter().any(|l| l == "libc.so.6"),
        "ldd {}: {libraries:?}",
        bin.display()
    );
    for lib in &libraries {
        assert!(
            SLIM_LIBRARIES.contains(&lib.as_str()) || lib.starts_with("ld-linux"),
            "{} links to {lib}, which {} does not have",
            bin.display(),
            image.base
        );
    }
    let listen = service
        .get("LISTEN_ADDR")
        .expect("the image sets LISTEN_ADDR");
    let port: u16 = listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    assert!(
        listen.starts_with("0.0.0.0:"),
        "LISTEN_ADDR {listen}: reachable from outside the container"
    );
    assert!(
        image.expose.contains(&port),
        "EXPOSE {port}, where it listens"
    );

    // Run as the engine would: the image, then the compose service.
    let logs = TempDir::new("logs");
    run_like_the_engine(&image, &service, "image", &logs.0);
    let compose = parse_yaml(&read("compose.yaml"));
    run_like_the_engine(
        &image,
        &compose_service(&compose, &image),
        "compose proxy",
        &logs.0,
    );
    if whoami() == 0 {
        eprintln!("ran as uid {} through setpriv", image.user);
    }
    eprintln!("all in {:.1} s", t.elapsed().as_secs_f64());
}

#[test]
fn the_compose_file_and_the_readme_agree_on_images_and_ports() {
    let compose = parse_yaml(&read("compose.yaml"));
    let services = compose.get("services").expect("services").map();
    let names: Vec<&str> = services.iter().map(|(k, _)| k.as_str()).collect();
    let proxy = compose
        .get("services")
        .and_then(|s| s.get("proxy"))
        .expect("a proxy service");

    // Built from this Dockerfile, tagged with the crate's version; the same
    // name everywhere an image of this crate is named.
    match proxy.get("build").expect("proxy: build") {
        Yaml::Str(context) => assert_eq!(context, ".", "the build context is this folder"),
        other => {
            assert_eq!(other.get("context").and_then(Yaml::str), Some("."));
            let dockerfile = other
                .get("dockerfile")
                .and_then(Yaml::str)
                .unwrap_or("Dockerfile");
            assert_eq!(dockerfile, "Dockerfile");
        }
    }
    let image_name = proxy
        .get("image")
        .and_then(Yaml::str)
        .expect("proxy: image");
    assert_eq!(
        image_name,
        format!("ollama-translate:{}", env!("CARGO_PKG_VERSION")),
        "the image is named and tagged as the crate"
    );
    for file in [
        "README.md",
        "Dockerfile",
        "compose.yaml",
        "deploy/kubernetes.yaml",
    ] {
        let text = read(file);
        let mut named = 0;
        for (i, _) in text.match_indices("ollama-translate:") {
            let tag: String = text[i + "ollama-translate:".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || ".-_".contains(*c))
                .collect();
            if tag.starts_with(|c: char| c.is_ascii_digit()) || tag == "latest" {
                assert_eq!(
                    format!("ollama-translate:{tag}"),
                    image_name,
                    "{file} names another image"
                );
                named += 1;
            }
        }
        assert!(named > 0, "{file} names the image {image_name}");
    }
    let readme = read("README.md");
    let container = readme
        .split("\n## Container\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Container section in the README");
    assert!(
        container.contains("docker compose up -d"),
        "the README starts the compose file"
    );
    assert!(
        container.contains(&format!("docker build -t {image_name} .")),
        "the README builds {image_name}"
    );

    // Published on loopback only, on the port the README's commands use, to
    // the port the proxy listens on and the image exposes.
    let stages = stages(&read("Dockerfile"));
    let image = runtime_stage(stages.last().expect("a runtime stage"), None);
    let service = compose_service(&compose, &image);
    let listen = service.get("LISTEN_ADDR").expect("LISTEN_ADDR");
    let listen_port: u16 = listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    let ports = proxy.get("ports").expect("proxy: ports").seq();
    assert!(!ports.is_empty(), "the proxy is published");
    for p in ports {
        let p = p.str().expect("ports as strings");
        let parts: Vec<&str> = p.split(':').collect();
        let [ip, host_port, container_port] = parts.as_slice() else {
            panic!("{p}: without an address it is published on every address of the host");
        };
        assert_eq!(*ip, "127.0.0.1", "{p}: published on loopback only");
        assert_eq!(
            container_port.parse(),
            Ok(listen_port),
            "{p}: to the port the proxy listens on"
        );
        assert!(
            image.expose.contains(&listen_port),
            "{p}: the image exposes it"
        );
        assert!(
            container.contains(&format!("127.0.0.1:{host_port}")),
            "the README's commands use 127.0.0.1:{host_port}"
        );
    }

    // The health check: the image's unless the service has its own (then
    // `["CMD", …]`, not turned off), asking the proxy the service runs.
    assert_eq!(
        service.healthcheck.first(),
        service.argv(None).first(),
        "the health check runs the proxy's binary"
    );
    assert_eq!(
        service.healthcheck.last().map(String::as_str),
        Some("--healthcheck")
    );

    // Ollama is a service of the file, on its port; what the proxy depends
    // on exists; named volumes are declared.
    let ollama = service.get("OLLAMA_BASE_URL").expect("OLLAMA_BASE_URL");
    for url in ollama.split(',') {
        let host = url
            .strip_prefix("http://")
            .and_then(|h| h.strip_suffix(":11434"))
            .unwrap_or_else(|| panic!("{url}: http://<service>:11434"));
        assert!(
            names.contains(&host) && host != "proxy",
            "{url}: a service of the file"
        );
    }
    for d in proxy.get("depends_on").map(Yaml::seq).unwrap_or(&[]) {
        let d = d.str().expect("a service name");
        assert!(names.contains(&d), "depends_on: {d}");
    }
    let volumes: Vec<&str> = compose
        .get("volumes")
        .map(Yaml::map)
        .unwrap_or(&[])
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    for (name, s) in services {
        for v in s.get("volumes").map(Yaml::seq).unwrap_or(&[]) {
            let v = v.str().expect("short volume syntax");
            let source = v.split(':').next().unwrap_or(v);
            if !source.starts_with(['.', '/', '~']) {
                assert!(
                    volumes.contains(&source),
                    "{name}: volume {source} is declared"
                );
            }
        }
    }
}

#[test]
fn the_dockerfile_reader_reads_what_docker_reads() {
    let ins = instructions(
        "# syntax=docker/dockerfile:1\nFROM a AS b\nRUN --mount=type=cache,target=/x \\\n  # a comment\n    cargo build \\\n && cp x y\nENV A=1 \\\n    B=\"\"\n",
    );
    assert_eq!(ins.len(), 3);
    assert_eq!(ins[1].keyword, "RUN");
    assert_eq!(ins[1].line, 3);
    assert_eq!(ins[1].flags, ["--mount=type=cache,target=/x"]);
    assert_eq!(ins[1].args, "cargo build && cp x y");
    assert_eq!(
        assignments(&ins[2]),
        [
            ("A".to_string(), Some("1".to_string())),
            ("B".to_string(), Some(String::new()))
        ]
    );
    assert_eq!(docker_duration("1m30s"), Duration::from_secs(90));

    let ignore = Ignore::parse("target\n**/node_modules\n*.md\n!README.md\n");
    assert!(ignore.ignores(&["target", "debug"]));
    assert!(!ignore.ignores(&["src", "target.rs"]));
    assert!(ignore.ignores(&["tests", "python", "node_modules", "x"]));
    assert!(ignore.ignores(&["CHANGELOG.md"]));
    assert!(!ignore.ignores(&["README.md"]));

    let doc = parse_yaml("a:\n  b: \"x\" # c\n  c:\n    - '1:2'\n  d: [\"CMD\", e]\n");
    assert_eq!(
        doc.get("a").and_then(|a| a.get("b")),
        Some(&Yaml::Str("x".into()))
    );
    assert_eq!(
        doc.get("a").and_then(|a| a.get("c")),
        Some(&Yaml::Seq(vec![Yaml::Str("1:2".into())]))
    );
    assert_eq!(
        doc.get("a").and_then(|a| a.get("d")).map(compose_command),
        Some(vec!["CMD".to_string(), "e".to_string()])
    );

    // A RUN that would act outside its folder is refused, not run.
    for script in [
        "apt-get install -y x",
        "cp x /usr/local/bin/x",
        "rm -rf ../x",
        "find . -exec sh -c x {} +",
        "echo $(id)",
    ] {
        let ins = instruction(1, &format!("RUN {script}"));
        assert!(replayable(&ins).is_err(), "{script} is refused");
    }
    let ins = instruction(
        1,
        "RUN find . -path ./target -prune -o -type f -exec touch {} + \
         && cargo build ${FEATURES:+--features \"$FEATURES\"} 2>/dev/null",
    );
    assert_eq!(replayable(&ins), Ok(()));
}
