//! The README's quickstart, run as written. The commands come from the README's marked
//! blocks (`<!-- quickstart:cloud|agent|sync -->`), not from this file, and run through
//! `sh` with the built binaries first on `PATH`, in a fresh `HOME`, as a newcomer's would.
//! Where the quickstart sends the reader to a browser, this test makes the same HTTP calls
//! the pages make: the login form, the device page's approve call, the cloud's confirm
//! page for a consent, the sandbox provider's consent form, the callback. Then it checks
//! what the README promises: the events are in the agent's local database, and the
//! cloud's database holds none of them.
//!
//! It leaves a transcript in `target/quickstart/transcript.txt` and a screenshot of the
//! org page after consent in `target/screenshots/quickstart-org-page.png`.

use fantoccini::Locator;
use latchkey_e2e::{binary, chrome, free_port, hidden_fields, Api, Browser, Reply};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const README: &str = include_str!("../../README.md");
/// The cloud URL the README uses; the test's demo listens on a free port instead.
const README_CLOUD: &str = "http://127.0.0.1:8080";
/// How long any one quickstart command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The commands of one marked block: one per line, comments and blank lines dropped.
fn quickstart_block(name: &str) -> Vec<String> {
    let marker = format!("<!-- quickstart:{name} -->");
    let (_, after) = README.split_once(&marker).unwrap_or_else(|| panic!("README.md has no {marker}"));
    let body = after
        .trim_start()
        .strip_prefix("```sh\n")
        .unwrap_or_else(|| panic!("README.md: a ```sh block must follow {marker}"));
    let (body, _) =
        body.split_once("```").unwrap_or_else(|| panic!("README.md: the block after {marker} is not closed"));
    body.lines()
        .map(|line| line.split_once(" #").map_or(line, |(command, _)| command).trim().to_owned())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

/// What a newcomer would see in their terminals, for the record.
#[derive(Default)]
struct Transcript(String);

impl Transcript {
    fn command(&mut self, terminal: &str, line: &str) {
        self.0.push_str(&format!("\n[{terminal}] $ {line}\n"));
    }

    fn output(&mut self, text: &str) {
        self.0.push_str(text);
        if !text.is_empty() && !text.ends_with('\n') {
            self.0.push('\n');
        }
    }

    fn note(&mut self, text: &str) {
        self.0.push_str(&format!("    ({text})\n"));
    }

    fn save(&self) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/quickstart");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("transcript.txt"), &self.0);
        println!("{}", self.0);
    }
}

/// The newcomer's machine: a fresh home, the built binaries on `PATH`.
struct Machine {
    root: tempfile::TempDir,
    path: String,
}

impl Machine {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        for dir in ["home", "tmp"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        let bin_dir = binary("latchkey").parent().unwrap().to_path_buf();
        assert!(bin_dir.join("latchkey-cloud").exists(), "latchkey-cloud is built next to latchkey");
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        Machine { root, path }
    }

    fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// `line` run by `sh`, as typed into a terminal.
    fn shell(&self, line: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("exec {line}"))
            .env_clear()
            .env("PATH", &self.path)
            .env("HOME", self.home())
            .env("TMPDIR", self.root.path().join("tmp"))
            .env("RUST_LOG", "warn")
            .current_dir(self.home())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// A running command whose stdout and stderr arrive line by line, in one stream.
struct Running {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: String,
}

impl Running {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("spawn sh");
        let (tx, lines) = mpsc::unbounded_channel();
        forward(child.stdout.take().unwrap(), tx.clone());
        forward(child.stderr.take().unwrap(), tx);
        Running { child, lines, seen: String::new() }
    }

    /// Reads lines until `pick` finds what it wants in everything printed so far.
    async fn wait_for<T>(&mut self, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
        let found = tokio::time::timeout(COMMAND_TIMEOUT, async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push_str(&line);
                self.seen.push('\n');
                if let Some(found) = pick(&self.seen) {
                    return Some(found);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(found)) => found,
            Ok(None) => panic!("the command ended before showing {what}; it printed:\n{}", self.seen),
            Err(_) => panic!("no {what} within {COMMAND_TIMEOUT:?}; the command printed:\n{}", self.seen),
        }
    }

    /// Waits for the end; returns whether it succeeded and everything it printed.
    async fn finish(mut self) -> (bool, String) {
        let status = tokio::time::timeout(COMMAND_TIMEOUT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the command did not finish in {COMMAND_TIMEOUT:?}; it printed:\n{}", self.seen))
            .unwrap();
        while let Some(line) = self.lines.recv().await {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        (status.success(), self.seen)
    }
}

fn forward(stream: impl AsyncRead + Unpin + Send + 'static, tx: mpsc::UnboundedSender<String>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

/// What the demo printed that the reader is told to use.
struct Demo {
    base: String,
    email: String,
    password: String,
    data_dir: PathBuf,
    printed: String,
}

/// `XXXX-XXXX`, as `latchkey login` shows the user code.
fn user_code(line: &str) -> Option<String> {
    line.split(|c: char| c.is_whitespace() || c == '=' || c == '/').find_map(|word| {
        let b = word.as_bytes();
        let ok = b.len() == 9
            && b[4] == b'-'
            && b.iter().enumerate().all(|(i, c)| i == 4 || c.is_ascii_uppercase() || c.is_ascii_digit());
        ok.then(|| word.to_owned())
    })
}

/// The first URL in `text` that contains `needle`.
fn url_with(text: &str, needle: &str) -> Option<String> {
    text.split_whitespace()
        .map(|w| w.trim_end_matches([',', '.', ')']))
        .find(|w| w.starts_with("http") && w.contains(needle))
        .map(str::to_owned)
}

/// Signs in through the cloud's login form, as the member would on the page it sent them to.
async fn sign_in(browser: &Browser, demo: &Demo, next: &str) {
    let reply = browser.login_as(&demo.base, &demo.email, &demo.password, next).await;
    assert!(reply.status.is_redirection(), "signing in as the demo member: {} {}", reply.status, reply.text);
}

/// `latchkey login`: read the code, then do what the device page does.
async fn login(mut run: Running, browser: &Browser, demo: &Demo) -> (bool, String, Option<String>) {
    let code = run.wait_for("a user code", |text| text.lines().find_map(user_code)).await;
    // The URL the agent opens in a browser: the one that fills the code in.
    let page = run.wait_for("the device page's URL", |l| url_with(l, "/device?user_code=")).await;
    assert!(page.starts_with(&format!("{}/device", demo.base)), "the device page is on the cloud: {page}");
    // The page sends a newcomer to the login form first, then back to itself, where it
    // shows what asked and waits for "Yes, this is my device", which does the call below.
    let (hops, reply) = browser.follow(&page).await;
    assert!(reply.text.contains("name=\"email\""), "an unsigned browser is asked to sign in: {hops:?}");
    sign_in(browser, demo, "/device").await;
    let (_, device_page) = browser.follow(&page).await;
    assert_eq!(device_page.status, 200, "{}", device_page.text);
    assert!(device_page.text.contains(&code), "the device page shows the code to compare: {}", device_page.text);
    assert!(device_page.text.contains("id=\"confirm\""), "the device page asks \"Yes, this is my device\"");
    let approved = Api::read(
        browser
            .client
            .post(format!("{}/v1/devices/approve", demo.base))
            .header("origin", &demo.base)
            .json(&serde_json::json!({ "user_code": code })),
    )
    .await;
    assert!(approved.status.is_success(), "approving {code}: {} {}", approved.status, approved.text);
    let (ok, output) = run.finish().await;
    (ok, output, Some(format!("in the browser: signed in as {} on the device page, approved {code}", demo.email)))
}

/// `latchkey connect`: open its URL, confirm on the cloud's page, approve on the provider's
/// page, land on the callback.
async fn connect(mut run: Running, browser: &Browser, demo: &Demo) -> (bool, String, Option<String>) {
    let start = run.wait_for("the consent URL", |l| url_with(l, "/connect/")).await;
    let confirm = browser.get(&start).await;
    assert_eq!(confirm.status, 200, "the cloud's confirm page: {}", confirm.text);
    assert!(confirm.text.contains(&demo.email), "the confirm page names the account that will own the grant");
    let path = start.strip_prefix(&demo.base).unwrap_or_else(|| panic!("the consent URL is on the cloud: {start}"));
    let confirmed = browser.post_form(&demo.base, path, &hidden_fields(&confirm.text)).await;
    let provider =
        confirmed.header("location").unwrap_or_else(|| panic!("confirming: {} {}", confirmed.status, confirmed.text));
    let (hops, consent_page) = browser.follow(provider).await;
    assert_eq!(consent_page.status, 200, "the provider's consent page after {hops:?}: {}", consent_page.text);
    assert!(consent_page.text.contains("id=\"approve\""), "the sandbox asks for consent: {}", consent_page.text);
    let mut form = hidden_fields(&consent_page.text);
    assert!(form.iter().any(|(k, _)| k == "state"), "the consent form carries the state: {form:?}");
    form.push(("decision".into(), "approve".into()));
    let decided: Reply = Api::read(browser.client.post(format!("{}/sandbox/authorize", demo.base)).form(&form)).await;
    let back = decided.header("location").unwrap_or_else(|| panic!("approving: {} {}", decided.status, decided.text));
    assert!(back.starts_with(&format!("{}/oauth/callback?", demo.base)), "the provider sends the browser back: {back}");
    let (_, callback) = browser.follow(back).await;
    assert_eq!(callback.status, 200, "{}", callback.text);
    assert!(!callback.text.contains("access_token"), "the callback page never carries a token");
    let (ok, output) = run.finish().await;
    (
        ok,
        output,
        Some(format!(
            "in the browser: opened {start}, confirmed on the cloud's page, approved on the sandbox's page, \
             landed on the callback page"
        )),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quickstart_works_as_written() {
    let cloud_block = quickstart_block("cloud");
    let agent_block = quickstart_block("agent");
    let sync_block = quickstart_block("sync");
    assert_eq!(cloud_block.len(), 1, "step 1 is one long-running command: {cloud_block:?}");
    let machine = Machine::new();
    let mut t = Transcript::default();

    // Step 1: the demo cloud, on a free port instead of 8080 (which may be taken here).
    let port = free_port();
    t.command("terminal 1", &cloud_block[0]);
    let mut cmd = machine.shell(&cloud_block[0]);
    cmd.env("LATCHKEY_LISTEN", format!("127.0.0.1:{port}"));
    let mut cloud = Running::spawn(cmd);
    cloud.wait_for("the demo's next steps", |l| l.contains("The org page:").then_some(())).await;
    let printed = cloud.seen.clone();
    t.output(&printed);
    let field = |label: &str| -> String {
        let line = printed.lines().find(|l| l.contains(label)).unwrap_or_else(|| panic!("no {label:?} in:\n{printed}"));
        line.split_once(label).map(|(_, rest)| rest.trim().to_owned()).unwrap_or_default()
    };
    let base = field("running at").split_whitespace().next().unwrap_or_default().to_owned();
    let (email, password) =
        field("member login:").split_once(" / ").map(|(e, p)| (e.to_owned(), p.to_owned())).unwrap();
    let demo = Demo {
        base,
        email,
        password,
        data_dir: PathBuf::from(field("data dir (SQLite, dev key):")),
        printed: printed.clone(),
    };
    assert_eq!(demo.base, format!("http://127.0.0.1:{port}"));
    assert!(demo.data_dir.starts_with(machine.root.path()), "a fresh data dir under TMPDIR: {:?}", demo.data_dir);
    assert!(
        README.contains(&demo.email) && README.contains(&demo.password),
        "the README names the member login the demo prints ({} / {})",
        demo.email,
        demo.password
    );

    // Steps 2 and 3, in the second terminal; each command also appears in the demo's own
    // list of next steps, so the two cannot drift apart.
    let browser = Browser::new();
    let mut outputs = Vec::new();
    for line in agent_block.iter().chain(&sync_block) {
        let line = line.replace(README_CLOUD, &demo.base);
        assert!(demo.printed.contains(&line), "the demo's next steps do not include `{line}`:\n{}", demo.printed);
        t.command("terminal 2", &line);
        let run = Running::spawn(machine.shell(&line));
        let words: Vec<&str> = line.split_whitespace().collect();
        let (ok, output, browsed) = match words.get(..2) {
            Some(["latchkey", "login"]) => login(run, &browser, &demo).await,
            Some(["latchkey", "connect"]) => connect(run, &browser, &demo).await,
            _ => {
                let (ok, output) = run.finish().await;
                (ok, output, None)
            }
        };
        t.output(&output);
        if let Some(browsed) = browsed {
            t.note(&browsed);
        }
        if !ok {
            t.save();
            panic!("`{line}` failed:\n{output}");
        }
        outputs.push((line, output));
    }
    let said = |prefix: &str| -> String {
        outputs.iter().filter(|(l, _)| l.starts_with(prefix)).map(|(_, o)| o.as_str()).collect::<Vec<_>>().join("\n")
    };
    // `latchkey connect` runs the first sync once connected; the sync after it finds nothing new.
    assert!(said("latchkey connect").contains("300 new events"), "the first sync reports what it stored");
    assert!(said("latchkey sync").contains("0 new events"), "a second sync adds nothing");
    assert!(said("latchkey events").lines().any(|l| l.contains("sandbox  trk_")), "events are listed");

    // What the README promises.
    let agent_db = machine.home().join(".local/share/latchkey/latchkey.db");
    let events = local_events(&agent_db).await;
    assert_eq!(events.len(), 300, "every item of the demo's sandbox is in the agent's local database");
    // Realistic items: a varied listening history, not `item 1`, `item 2`.
    let field = |e: &serde_json::Value, k: &str| e[k].as_str().unwrap_or_default().to_owned();
    let tracks: std::collections::BTreeSet<String> = events.iter().map(|e| field(e, "track")).collect();
    let artists: std::collections::BTreeSet<String> = events.iter().map(|e| field(e, "artist")).collect();
    assert!(tracks.len() >= 50 && artists.len() >= 20, "{} tracks by {} artists", tracks.len(), artists.len());
    assert!(events.iter().all(|e| !field(e, "album").is_empty() && !field(e, "played_at").is_empty()));
    assert!(!tracks.iter().any(|t| t.to_lowercase().starts_with("item")), "not `item 1`, `item 2`");
    let cloud_bytes = files_under(&demo.data_dir);
    assert!(cloud_bytes.len() > 1000, "the demo cloud's database is in {:?}", demo.data_dir);
    for event in &events {
        let id = event["id"].as_str().unwrap_or_default();
        assert!(!id.is_empty() && !contains(&cloud_bytes, id), "event {id} is in the cloud's database");
    }
    screenshot_org_page(&demo).await;

    // Ctrl-C ends the demo cleanly.
    let pid = cloud.child.id().unwrap().to_string();
    let _ = std::process::Command::new("kill").args(["-INT", &pid]).status();
    let (stopped, _) = cloud.finish().await;
    assert!(stopped, "the demo exits 0 on Ctrl-C");
    t.save();
}

/// The payloads of the agent's synced events.
async fn local_events(db: &Path) -> Vec<serde_json::Value> {
    assert!(db.exists(), "the agent's database is where the README says: {}", db.display());
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db).read_only(true);
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    let rows: Vec<(String,)> =
        sqlx::query_as("select payload from events where connector = 'sandbox'").fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows.into_iter().map(|(p,)| serde_json::from_str(&p).unwrap()).collect()
}

/// Every byte of every file under `dir` (the SQLite file, its WAL, the dev key).
fn files_under(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_file() {
            all.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The demo org page, signed in as the member, in headless Chromium.
async fn screenshot_org_page(demo: &Demo) {
    let driver = chrome::chromedriver().await;
    let browser = driver.browser().await;
    chrome::sign_in(&browser, &demo.base, &demo.email, &demo.password, "/orgs/demo", "status-sandbox").await;
    let status = browser.find(Locator::Id("status-sandbox")).await.unwrap();
    assert_eq!(status.text().await.unwrap(), "Active", "the org page shows the connection the agent made");
    let shot = browser.screenshot().await.unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(dir.join("quickstart-org-page.png"), shot).unwrap();
    let _ = browser.close().await;
}
