//! The scale-out adapters in deploy/, driven as their engines would drive them: Ray on a local
//! cluster (with a worker killed mid-shard), the Kubernetes manifests through kubectl's
//! client-side dry run and the Kubernetes schemas, the Slurm scripts under a stand-in sbatch.
//! Each ends with a model byte-identical to a one-machine run.

mod common;

use common::*;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_retrain");

fn reference(t: &Path, data: &Path) -> Vec<u8> {
    let out = t.join("reference.onnx");
    succeeds(&mut train(t, data, &out, &["--no-cache"]));
    std::fs::read(out).unwrap()
}

/// Processes whose command line has all of `words`, with their parent.
fn processes_with(words: &[&str]) -> Vec<(i32, i32)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        if !words.iter().all(|w| args.contains(&w.as_bytes())) {
            continue;
        }
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|v| v.trim().parse().ok());
        if let Some(ppid) = ppid {
            found.push((pid, ppid));
        }
    }
    found
}

fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // A zombie ("Z") has exited; only its parent has yet to reap it.
    !stat.is_empty() && !stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z'))
}

#[test]
fn ray_runs_the_shards_survives_a_killed_worker_and_trains_the_same_model() {
    let Some(python) = deploy_python("ray") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // flowers: about 1,100 photos per shard, so that a shard is still running when it is killed.
    let data = shared("data/flowers");
    let (cache, out, summary) = (t.join("cache"), t.join("ray.onnx"), t.join("summary.json"));
    let log = std::fs::File::create(t.join("driver.log")).unwrap();
    let mut driver = Command::new(&python)
        .arg(root().join("deploy/ray/extract.py"))
        .arg(&data)
        .args(["--shards", "4", "--local-cpus", "2", "--retrain", BIN, "--cache"])
        .arg(&cache)
        .arg("--out")
        .arg(&out)
        .arg("--weights")
        .arg(mnv2())
        .arg("--summary")
        .arg(&summary)
        .args(["--", "--quiet", "--report"])
        .arg(t.join("report.json"))
        .env("XDG_CACHE_HOME", t)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();

    // Shard 1's worker is killed two seconds into its work (SIGKILL: a node lost, an OOM kill).
    // (Other tests run shards too: the data folder tells this one's apart.)
    let data_arg = data.to_str().unwrap();
    let shard1 = ["features", data_arg, "--shard", "1/4"];
    let started = Instant::now();
    let (mut first_seen, mut killed, mut retried) = (None::<(i32, Instant)>, None::<(i32, i32)>, None);
    let status = loop {
        if let Some(status) = driver.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "the Ray driver took over 10 minutes");
        for (pid, ppid) in processes_with(&shard1) {
            match (first_seen, killed) {
                (None, _) => first_seen = Some((pid, Instant::now())),
                (Some((p, since)), None) if p == pid && since.elapsed() > Duration::from_secs(2) => {
                    // SAFETY: kill(2) on a process of ours; no memory is involved.
                    assert_eq!(unsafe { libc::kill(ppid, libc::SIGKILL) }, 0);
                    killed = Some((pid, ppid));
                }
                (_, Some((p, _))) if p != pid => retried = Some(pid),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let driver_log = std::fs::read_to_string(t.join("driver.log")).unwrap();
    assert!(status.success(), "the driver failed:\n{driver_log}");
    let (victim, worker) = killed.expect("shard 1/4 was seen running and its worker killed");
    assert!(retried.is_some(), "Ray ran shard 1/4 again after its worker (pid {worker}) was killed:\n{driver_log}");
    assert!(!alive(victim), "the killed worker's retrain (pid {victim}) did not outlive it");

    let s = read_json(&summary);
    let shards = s["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 4);
    let total = shards[0]["dataset_files"].as_u64().unwrap();
    assert_eq!(shards.iter().map(|m| m["files"].as_u64().unwrap()).sum::<u64>(), total);
    // What the killed attempt had cached was kept: the retry computed only the rest.
    let retry = &shards[1];
    assert_eq!(retry["shard"], "1/4");
    assert!(retry["cached"].as_u64().unwrap() > 0, "the retry found the first attempt's features: {retry}");
    let report = read_json(&t.join("report.json"));
    assert_eq!(report["features_computed"].as_u64(), Some(0), "train found every feature cached");
    assert!(std::fs::read(&out).unwrap() == reference(t, &data), "the Ray model is the one-machine model");
}

/// Answers kubectl's discovery requests for the kinds the manifests use, nothing more: enough
/// for `kubectl apply --dry-run=client` without a cluster.
fn api_discovery_stub() -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").split('?').next().unwrap_or("").to_string();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let resource = |name: &str, kind: &str| {
                        serde_json::json!({"name": name, "singularName": kind.to_lowercase(), "namespaced": true,
                                           "kind": kind, "verbs": ["create", "get", "list", "patch"]})
                    };
                    let body = match path.as_str() {
                        "/api" => serde_json::json!({"kind": "APIVersions", "versions": ["v1"]}),
                        "/apis" => serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                            {"name": "batch", "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
                             "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}}]}),
                        "/api/v1" => serde_json::json!({"kind": "APIResourceList", "groupVersion": "v1",
                            "resources": [resource("persistentvolumeclaims", "PersistentVolumeClaim")]}),
                        "/apis/batch/v1" => serde_json::json!({"kind": "APIResourceList", "groupVersion": "batch/v1",
                            "resources": [resource("jobs", "Job")]}),
                        _ => Value::Null,
                    };
                    let (status, body) = if body.is_null() {
                        (
                            "404 Not Found",
                            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                        )
                    } else {
                        ("200 OK", body)
                    };
                    let body = body.to_string();
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(body.as_bytes())).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, handle)
}

/// The objects `kubectl apply --dry-run=client` makes of a manifest file.
fn kubectl_dry_run(port: u16, file: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args([
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "apply",
            "--dry-run=client",
            "--validate=false",
            "-o",
            "json",
            "-f",
        ])
        .arg(file)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl apply --dry-run=client {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    match v["kind"].as_str() {
        Some("List") => v["items"].as_array().unwrap().clone(),
        _ => vec![v],
    }
}

/// Runs a Job's container here as its pod would run, the volumes' mount paths mapped to
/// local folders and `$(VAR)` expanded as Kubernetes does.
fn run_container(job: &Value, env: &[(&str, String)], mounts: &[(String, PathBuf)]) {
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let local = |s: &str| -> String {
        let mut s = s.to_string();
        for (name, value) in env {
            s = s.replace(&format!("$({name})"), value);
        }
        for (mount, dir) in mounts {
            if let Some(rest) = s.strip_prefix(mount.as_str()) {
                return format!("{}{rest}", dir.display());
            }
        }
        s
    };
    let args: Vec<String> = c["args"].as_array().unwrap().iter().map(|a| local(a.as_str().unwrap())).collect();
    assert_eq!(args[0], "retrain", "the image's retrain binary");
    let mut cmd = Command::new(BIN);
    cmd.args(&args[1..]).stdout(Stdio::null());
    for e in c["env"].as_array().into_iter().flatten() {
        if let Some(v) = e["value"].as_str() {
            cmd.env(e["name"].as_str().unwrap(), local(v));
        }
    }
    succeeds(&mut cmd);
}

#[test]
fn the_kubernetes_indexed_job_validates_and_its_pods_make_the_same_model() {
    let Some(python) = deploy_python("kubernetes_validate") else { return };
    let k8s = root().join("deploy/k8s");
    let files = [k8s.join("extract-job.yaml"), k8s.join("train-job.yaml")];
    // Strict validation against Kubernetes 1.32's schemas: no unknown or misplaced field.
    let validate = python.with_file_name("kubernetes-validate");
    let out = Command::new(&validate).args(["--strict", "-k", "1.32.0"]).args(&files).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    let (port, _server) = api_discovery_stub();
    let extract = kubectl_dry_run(port, &files[0]);
    let train = kubectl_dry_run(port, &files[1]);
    let kinds: Vec<&str> = extract.iter().chain(&train).map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["PersistentVolumeClaim", "Job", "Job"]);
    let (pvc, job, train) = (&extract[0], &extract[1], &train[0]);
    assert_eq!(pvc["spec"]["accessModes"][0], "ReadWriteMany", "every pod writes the one cache");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let n = spec["completions"].as_u64().unwrap();
    assert_eq!(spec["parallelism"].as_u64(), Some(n));
    let container = &spec["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let shard = args[args.iter().position(|a| *a == "--shard").unwrap() + 1];
    assert_eq!(shard, format!("$(SHARD)/{n}"), "the shard count is the Job's completions");
    let index = &container["env"].as_array().unwrap().iter().find(|e| e["name"] == "SHARD").unwrap()["valueFrom"];
    assert_eq!(index["fieldRef"]["fieldPath"], "metadata.annotations['batch.kubernetes.io/job-completion-index']");
    for j in [job, train] {
        let vols = j["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
        let cache = vols.iter().find(|v| v["name"] == "cache").unwrap();
        assert_eq!(cache["persistentVolumeClaim"]["claimName"], pvc["metadata"]["name"], "one cache volume");
    }

    // Each pod of the Indexed Job, then the train Job, run here on the mini flowers set.
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = flowers_mini(&t.join("data"), 16);
    let volume = t.join("cache-volume");
    // The weights fetched once into the cache volume, as the manifest's comment says.
    std::fs::create_dir_all(volume.join("retrain/weights")).unwrap();
    std::fs::copy(mnv2(), volume.join("retrain/weights").join(mnv2().file_name().unwrap())).unwrap();
    let mounts = [("/data".to_string(), data.clone()), ("/cache".to_string(), volume.clone())];
    for k in 0..n {
        run_container(job, &[("SHARD", k.to_string())], &mounts);
    }
    let manifests: Vec<Value> = (0..n).map(|k| read_json(&volume.join(format!("manifests/shard-{k}.json")))).collect();
    assert_eq!(manifests.iter().map(|m| m["files"].as_u64().unwrap()).sum::<u64>(), 48);
    run_container(train, &[], &mounts);
    let report = read_json(&volume.join("report.json"));
    assert_eq!(report["features_computed"].as_u64(), Some(0));
    assert!(std::fs::read(volume.join("model.onnx")).unwrap() == reference(t, &data));
}

#[test]
fn the_slurm_array_job_and_its_dependent_train_step_make_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = flowers_mini(&t.join("data"), 16);
    // sbatch as Slurm runs a job: array tasks with SLURM_ARRAY_* set, --cpus-per-task from the
    // script's #SBATCH lines; here in turn, which also satisfies the dependency.
    let bin = t.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        bin.join("sbatch"),
        r#"#!/usr/bin/env bash
set -euo pipefail
array=""; dep=""
while [[ $1 == --* ]]; do
  case $1 in
    --parsable) ;;
    --array=*) array=${1#--array=} ;;
    --dependency=*) dep=${1#--dependency=} ;;
    *) echo "sbatch stand-in: unexpected $1" >&2; exit 2 ;;
  esac
  shift
done
script=$1; shift
id=$(( $(cat "$SBATCH_DIR/next" 2>/dev/null || echo 41) + 1 )); echo $id > "$SBATCH_DIR/next"
echo "$id array=$array dependency=$dep" >> "$SBATCH_DIR/submitted"
cpus=$(sed -n 's/^#SBATCH --cpus-per-task=//p' "$script")
if [ -n "$array" ]; then
  lo=${array%-*}; hi=${array#*-}
  for ((i = lo; i <= hi; i++)); do
    SLURM_ARRAY_JOB_ID=$id SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_MIN=$lo SLURM_ARRAY_TASK_MAX=$hi \
      SLURM_ARRAY_TASK_COUNT=$((hi - lo + 1)) SLURM_CPUS_PER_TASK=$cpus bash "$script" "$@" > /dev/null
  done
else
  SLURM_JOB_ID=$id SLURM_CPUS_PER_TASK=$cpus bash "$script" "$@" > /dev/null
fi
echo "$id"
"#,
    )
    .unwrap();
    let sbatch = bin.join("sbatch");
    std::fs::set_permissions(&sbatch, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (cache, out) = (t.join("cache"), t.join("slurm.onnx"));
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let said = succeeds(
        Command::new("bash")
            .arg(root().join("deploy/slurm/submit.sh"))
            .env_clear()
            .env("PATH", path)
            .env("XDG_CACHE_HOME", t)
            .env("SBATCH_DIR", t)
            .env("RETRAIN", BIN)
            .env("RETRAIN_ARGS", format!("--weights {}", mnv2().display()))
            .args(["3"])
            .arg(&data)
            .arg(&cache)
            .arg(&out),
    );
    assert_eq!(String::from_utf8_lossy(&said.stdout), "features: job 42 (array of 3); train: job 43, after it\n");
    let submitted = std::fs::read_to_string(t.join("submitted")).unwrap();
    assert_eq!(submitted, "42 array=0-2 dependency=\n43 array= dependency=afterok:42\n");
    let manifests: Vec<Value> = (0..3).map(|k| read_json(&cache.join(format!("manifests/shard-{k}.json")))).collect();
    assert_eq!(manifests.iter().map(|m| m["shard"].as_str().unwrap()).collect::<Vec<_>>(), ["0/3", "1/3", "2/3"]);
    assert_eq!(manifests.iter().map(|m| m["files"].as_u64().unwrap()).sum::<u64>(), 48);
    assert_eq!(manifests.iter().map(|m| m["computed"].as_u64().unwrap()).sum::<u64>(), 48);
    assert!(std::fs::read(&out).unwrap() == reference(t, &data), "the Slurm model is the one-machine model");
}
