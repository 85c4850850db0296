//! The shipped deployment files are read by the tools that will read them in production:
//! the Kubernetes manifests are rendered by kustomize and validated against the Kubernetes
//! schemas, the compose file against the compose specification, the alert rules (and the
//! dashboard's queries) by promtool; every `latchkey_*` name the alerts and the dashboard
//! query is exported by a live cloud; and the stop timeouts leave room for the drain.
//!
//! The tools are `kubectl` (or a standalone `kustomize`), `kubernetes-validate` and
//! `check-jsonschema` (PyPI) and `promtool` (Debian `prometheus`); `.ci/run` installs
//! them. Locally a missing tool skips its test with a message; under `CI` it fails.

use latchkey_e2e::{json, Backend, CloudProcess, SandboxOrg, TestDb};
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The oldest Kubernetes minor the manifests are meant for; the schemas of
/// `kubernetes-validate`'s newest are checked too.
const OLDEST_KUBERNETES: &str = "1.29";

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("deploy").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("reading deploy/{path}: {e}"))
}

/// Whether `program args…` runs; where it does not, fails under `CI` and otherwise tells
/// what to install.
fn have(program: &str, args: &[&str], install: &str) -> bool {
    if Command::new(program).args(args).output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "`{program}` is missing: {install} (`.ci/run` installs it)");
    eprintln!("skipping: `{program}` is missing; {install}");
    false
}

/// Runs a checker and fails the test with its output unless it exits 0.
fn check(what: &str, cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {what}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// The manifests of `deploy/k8s` as kustomize renders them, by `kubectl kustomize` or
/// a standalone `kustomize build`; `None` where neither is installed (never under `CI`).
fn render_kustomization() -> Option<String> {
    let dir = deploy("k8s");
    let mut cmd = if Command::new("kubectl").args(["version", "--client"]).output().is_ok_and(|o| o.status.success()) {
        let mut cmd = Command::new("kubectl");
        cmd.arg("kustomize").arg(&dir);
        cmd
    } else if have("kustomize", &["version"], "install kubectl (it embeds kustomize) or a standalone kustomize") {
        let mut cmd = Command::new("kustomize");
        cmd.arg("build").arg(&dir);
        cmd
    } else {
        return None;
    };
    let out = cmd.output().expect("run kustomize");
    assert!(out.status.success(), "kustomize could not render deploy/k8s:\n{}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).expect("utf-8 manifests"))
}

fn documents(text: &str) -> Vec<Yaml> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("YAML document"))
        .filter(|doc: &Yaml| !doc.is_null())
        .collect()
}

#[test]
fn kubernetes_manifests_render_and_match_the_kubernetes_schemas() {
    let Some(rendered) = render_kustomization() else { return };
    if !have("kubernetes-validate", &["--version"], "`python3 -m pip install kubernetes-validate`") {
        return;
    }
    let docs = documents(&rendered);
    for doc in &docs {
        assert_eq!(doc["metadata"]["labels"]["app.kubernetes.io/part-of"], "latchkey", "unlabelled: {doc:?}");
    }
    let kinds: BTreeSet<String> = docs
        .iter()
        .map(|d| format!("{}/{}", d["kind"].as_str().unwrap_or("?"), d["metadata"]["name"].as_str().unwrap_or("?")))
        .collect();
    for expected in [
        "ConfigMap/latchkey-env",
        "ConfigMap/latchkey-config",
        "Job/latchkey-migrate",
        "Deployment/latchkey-cloud",
        "Service/latchkey",
        "PodDisruptionBudget/latchkey-cloud",
    ] {
        assert!(kinds.contains(expected), "kustomize rendered no {expected}; got {kinds:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &rendered).unwrap();
    // The example Secret is kept out of the kustomization on purpose; it must still apply.
    let secret = deploy("k8s/secret.yaml");
    for version in [Some(OLDEST_KUBERNETES), None] {
        let mut cmd = Command::new("kubernetes-validate");
        cmd.args(["--strict", "--no-warn"]);
        if let Some(v) = version {
            cmd.args(["--kubernetes-version", v]);
        }
        let report = check("kubernetes-validate", cmd.arg(&file).arg(&secret));
        // One "passed" line per resource: none was left unchecked.
        assert_eq!(report.matches(" passed ").count(), kinds.len() + 1, "{report}");
    }
}

#[test]
fn compose_file_matches_the_compose_specification() {
    if !have("check-jsonschema", &["--version"], "`python3 -m pip install check-jsonschema`") {
        return;
    }
    check(
        "check-jsonschema (compose-spec)",
        Command::new("check-jsonschema").args(["--builtin-schema", "vendor.compose-spec"]).arg(deploy("compose.yaml")),
    );
}

/// Every query of the dashboard, with Grafana's variables replaced by what they expand to.
fn dashboard_queries(dashboard: &Json) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {title} has another datasource");
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("panel {title} has no queries"));
        assert!(!targets.is_empty(), "panel {title} has no queries");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("panel {title}: a target without expr"));
            queries.push((title.clone(), expr.replace("$__rate_interval", "5m")));
        }
    }
    queries
}

fn load_dashboard() -> Json {
    let dashboard: Json = serde_json::from_str(&read("grafana/latchkey.json")).expect("the dashboard is JSON");
    let input = &dashboard["__inputs"][0];
    assert_eq!((input["name"].as_str(), input["pluginId"].as_str()), (Some("DS_PROMETHEUS"), Some("prometheus")));
    assert!(
        dashboard["templating"]["list"].as_array().unwrap().iter().any(|v| v["name"] == "DS_PROMETHEUS"),
        "no DS_PROMETHEUS variable (a provisioned dashboard needs it)"
    );
    dashboard
}

fn alert_rules() -> Vec<Yaml> {
    let rules: Yaml = serde_yaml_ng::from_str(&read("prometheus/alerts.yaml")).expect("alerts.yaml is YAML");
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").clone())
        .collect()
}

#[test]
fn alert_rules_and_dashboard_queries_pass_promtool() {
    if !have("promtool", &["--version"], "`apt-get install prometheus` (it ships promtool)") {
        return;
    }
    check(
        "promtool check rules",
        Command::new("promtool").args(["check", "rules"]).arg(deploy("prometheus/alerts.yaml")),
    );
    check(
        "promtool test rules",
        Command::new("promtool").args(["test", "rules"]).arg(deploy("prometheus/alerts.test.yaml")),
    );
    // promtool parses PromQL only in rule files: the dashboard's queries go into one.
    let rules: Vec<Json> = dashboard_queries(&load_dashboard())
        .into_iter()
        .enumerate()
        .map(|(i, (_, expr))| json!({"record": format!("dashboard:query_{i}"), "expr": expr}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yaml");
    std::fs::write(&file, json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string()).unwrap();
    check(
        "promtool check rules (the dashboard's queries)",
        Command::new("promtool").args(["check", "rules"]).arg(&file),
    );
}

/// GitHub's anchor for a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_has_a_summary_and_a_runbook_section_that_exists() {
    let readme = read("README.md");
    let mut in_code = false;
    let mut anchors = BTreeSet::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if let Some(heading) = line.strip_prefix('#').filter(|_| !in_code) {
            anchors.insert(anchor(heading.trim_start_matches('#')));
        }
    }
    let rules = alert_rules();
    assert!(rules.len() >= 10, "only {} alert rules", rules.len());
    for rule in &rules {
        let name = rule["alert"].as_str().expect("every rule is an alert");
        assert!(rule["annotations"]["summary"].as_str().is_some_and(|s| !s.is_empty()), "{name} has no summary");
        let runbook = rule["annotations"]["runbook"].as_str().unwrap_or_else(|| panic!("{name} has no runbook"));
        let section = runbook
            .strip_prefix("deploy/README.md#")
            .unwrap_or_else(|| panic!("{name}: runbook {runbook} is not a section of deploy/README.md"));
        assert!(anchors.contains(section), "{name}: deploy/README.md has no section #{section}; it has {anchors:?}");
    }
}

/// Every `latchkey_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("latchkey_") {
        let preceded_by_word = rest[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        if !preceded_by_word {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// The series names a Prometheus exposition offers: each `# TYPE` family with the
/// suffixes of its type, so that a query of a gauge as `_total` fails like a renamed one.
fn exposition_names(text: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let (family, kind) = rest.split_once(' ').expect("# TYPE name kind");
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["", "_sum", "_count"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.insert(format!("{family}{suffix}"), family.to_owned());
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_and_the_dashboard_query_is_exported() {
    let dashboard = load_dashboard();
    let queried_by_dashboard: BTreeSet<String> =
        dashboard_queries(&dashboard).iter().flat_map(|(_, expr)| metric_names(expr)).collect();
    let queried_by_alerts: BTreeSet<String> =
        alert_rules().iter().flat_map(|r| metric_names(r["expr"].as_str().expect("expr"))).collect();
    assert!(queried_by_alerts.len() >= 8 && queried_by_dashboard.len() >= 15, "too few metrics found");

    let db = TestDb::new(Backend::Sqlite).await;
    let cloud = CloudProcess::spawn(&db, &[("LATCHKEY_SANDBOX", "1"), ("LATCHKEY_TOKEN_RATE_LIMIT", "0")]).await;
    let api = cloud.api();
    let org = SandboxOrg::with_member_connected(&api).await;
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    for _ in 0..2 {
        api.post("/oauth/connection-token", Some(&pat), json!({"org": "acme", "connector_key": "sandbox"}))
            .await
            .ok(200);
    }
    let scrape = api.get("/metrics", None).await;
    assert_eq!(scrape.status, 200, "{}", scrape.text);
    assert!(
        scrape.text.contains("latchkey_connection_token_answers_total{outcome=\"issued\"} 2"),
        "the two tokens are not counted:\n{}",
        scrape.text
    );
    let exported = exposition_names(&scrape.text);
    for (source, names) in
        [("deploy/prometheus/alerts.yaml", &queried_by_alerts), ("deploy/grafana/latchkey.json", &queried_by_dashboard)]
    {
        let unknown: Vec<_> = names.iter().filter(|n| !exported.contains_key(*n)).collect();
        assert!(unknown.is_empty(), "{source} queries {unknown:?}, which /metrics does not export:\n{}", scrape.text);
    }
    // And the other way: a family nobody looks at is one the dashboard forgot.
    let families: BTreeSet<&String> = exported.values().filter(|f| f.starts_with("latchkey_")).collect();
    let shown: BTreeSet<&String> = queried_by_dashboard.iter().filter_map(|n| exported.get(n)).collect();
    let missing: Vec<_> = families.difference(&shown).collect();
    assert!(missing.is_empty(), "the dashboard shows none of {missing:?}");
    cloud.terminate();
}

/// Seconds in a duration written as compose and systemd write them: `25s`, `1m30s`, `30`.
fn seconds(text: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for c in text.trim().chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' => {
                let n: u64 = number.parse().unwrap_or_else(|_| panic!("duration {text}"));
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                number.clear();
            }
            _ => panic!("duration {text}: unexpected {c:?}"),
        }
    }
    if !number.is_empty() {
        total += number.parse::<u64>().unwrap();
    }
    total
}

/// A compose value `${VAR:-default}` (or a literal) as the number it gives by default.
fn compose_default(value: &Yaml) -> u64 {
    let text = match value {
        Yaml::Number(n) => return n.as_u64().expect("whole seconds"),
        Yaml::String(s) => s.as_str(),
        other => panic!("not a number of seconds: {other:?}"),
    };
    let text = text
        .strip_prefix("${")
        .and_then(|t| t.strip_suffix('}'))
        .map_or(text, |inner| inner.split_once(":-").unwrap_or_else(|| panic!("{text} has no default")).1);
    text.parse().unwrap_or_else(|_| panic!("not a number of seconds: {text}"))
}

fn int(value: &Yaml, what: &str) -> u64 {
    match value {
        Yaml::Number(n) => n.as_u64(),
        Yaml::String(s) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or_else(|| panic!("{what} is not a whole number: {value:?}"))
}

#[test]
fn stop_timeouts_leave_room_for_the_drain() {
    // Kubernetes: the kubelet sends SIGTERM, runs no preStop, and SIGKILLs after the grace
    // period; a draining pod must also be seen unready before it stops accepting.
    let config = documents(&read("k8s/configmap.yaml"));
    let env = &config.iter().find(|d| d["metadata"]["name"] == "latchkey-env").expect("latchkey-env")["data"];
    let drain = int(&env["LATCHKEY_DRAIN_SECS"], "latchkey-env LATCHKEY_DRAIN_SECS");
    let shutdown = int(&env["LATCHKEY_SHUTDOWN_TIMEOUT_SECS"], "latchkey-env LATCHKEY_SHUTDOWN_TIMEOUT_SECS");
    let deployment: Yaml = serde_yaml_ng::from_str(&read("k8s/deployment.yaml")).unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = int(&pod["terminationGracePeriodSeconds"], "terminationGracePeriodSeconds");
    assert!(
        grace >= drain + shutdown + 5,
        "k8s: terminationGracePeriodSeconds {grace} < drain {drain} + shutdown {shutdown} + 5 s of margin"
    );
    let container = &pod["containers"][0];
    assert!(container["lifecycle"]["preStop"].is_null(), "a preStop hook would eat into the grace period");
    let probe = &container["readinessProbe"];
    assert_eq!(probe["httpGet"]["path"], "/readyz");
    let noticed = int(&probe["periodSeconds"], "readiness periodSeconds")
        * int(&probe["failureThreshold"], "failureThreshold")
        + int(&probe["timeoutSeconds"], "timeoutSeconds");
    assert!(
        noticed < drain,
        "k8s: the readiness probe notices a drain after up to {noticed} s, the drain lasts {drain} s"
    );

    // Compose: `docker compose stop` SIGKILLs after stop_grace_period.
    let mut compose: Yaml = serde_yaml_ng::from_str(&read("compose.yaml")).unwrap();
    compose.apply_merge().unwrap();
    let cloud = &compose["services"]["cloud"];
    for field in ["LATCHKEY_DRAIN_SECS", "LATCHKEY_SHUTDOWN_TIMEOUT_SECS"] {
        assert!(!cloud["environment"][field].is_null(), "compose: the cloud service does not set {field}");
    }
    let (drain, shutdown) = (
        compose_default(&cloud["environment"]["LATCHKEY_DRAIN_SECS"]),
        compose_default(&cloud["environment"]["LATCHKEY_SHUTDOWN_TIMEOUT_SECS"]),
    );
    let grace = seconds(cloud["stop_grace_period"].as_str().expect("compose: cloud has no stop_grace_period"));
    assert!(grace > drain + shutdown, "compose: stop_grace_period {grace} s <= drain {drain} + shutdown {shutdown}");

    // systemd: SIGKILL after TimeoutStopSec.
    let unit = read("systemd/latchkey-cloud.service");
    let setting = |prefix: &str| unit.lines().find_map(|l| l.strip_prefix(prefix)).map(str::to_owned);
    let timeout = seconds(&setting("TimeoutStopSec=").expect("TimeoutStopSec"));
    let drain = setting("Environment=LATCHKEY_DRAIN_SECS=").map_or(5, |v| v.parse().unwrap());
    let shutdown = setting("Environment=LATCHKEY_SHUTDOWN_TIMEOUT_SECS=").map_or(10, |v| v.parse().unwrap());
    assert!(timeout > drain + shutdown, "systemd: TimeoutStopSec {timeout} s <= drain {drain} + shutdown {shutdown}");
}
