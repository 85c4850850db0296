//! After a whole story — consent, PAT, token, refresh, the pages, every listing,
//! disconnect — each secret is found only where the contract allows it: the client
//! secret and refresh tokens nowhere; an access token only in the connection-token answer
//! that carried it; the PAT only in its creation answer; a login's JWTs and session cookie
//! only in the login answer. Searched: every line the cloud logged (at debug level), every
//! page and JSON answer of the story, and the stored data (SQLite: the raw database file,
//! WAL and shared memory; PostgreSQL: every row of every table, as text).

use latchkey_e2e::{backend_tests, consent, json, Api, Backend, Browser, CloudProcess, Reply, SandboxOrg, TestDb};

backend_tests!(secrets_appear_only_where_the_contract_allows);

/// Everything the story saw that must hold no secret, by where it came from.
#[derive(Default)]
struct Haystacks(Vec<(String, Vec<u8>)>);

impl Haystacks {
    fn add(&mut self, place: impl Into<String>, reply: &Reply) {
        let headers: String =
            reply.headers.iter().map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or(""))).collect();
        self.0.push((place.into(), format!("{headers}\n{}", reply.text).into_bytes()));
    }

    /// Each place where `needle` occurs.
    fn find(&self, needle: &str) -> Vec<&str> {
        let needle = needle.as_bytes();
        self.0
            .iter()
            .filter(|(_, hay)| hay.windows(needle.len()).any(|w| w == needle))
            .map(|(place, _)| place.as_str())
            .collect()
    }
}

async fn fetch(api: &Api, pat: &str) -> Reply {
    api.post("/oauth/connection-token", Some(pat), json!({"org": "acme", "connector_key": "sandbox"})).await
}

async fn expire_soon(db: &TestDb) {
    let raw = db.raw().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    sqlx::query("update connections set expires_at = $1").bind(now + 20).execute(&raw).await.unwrap();
    raw.close().await;
}

/// The stored data as bytes: the SQLite files whole, or every PostgreSQL row as text.
async fn stored(db: &TestDb, backend: Backend) -> Vec<(String, Vec<u8>)> {
    match backend {
        Backend::Sqlite => std::fs::read_dir(db.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("latchkey.db"))
            .map(|p| (format!("file {}", p.display()), std::fs::read(&p).unwrap()))
            .collect(),
        Backend::Postgres => {
            let raw = db.raw().await;
            let tables: Vec<String> = sqlx::query_scalar(
                "select table_name::text from information_schema.tables where table_schema = 'public'",
            )
            .fetch_all(&raw)
            .await
            .unwrap();
            let mut out = Vec::new();
            for table in tables {
                let rows: Vec<String> = sqlx::query_scalar(&format!("select row_to_json(t)::text from \"{table}\" t"))
                    .fetch_all(&raw)
                    .await
                    .unwrap();
                out.push((format!("table {table}"), rows.join("\n").into_bytes()));
            }
            raw.close().await;
            out
        }
    }
}

fn session_cookie(login: &Reply) -> String {
    let set_cookie = login.header("set-cookie").expect("the login sets the session cookie");
    let value = set_cookie.strip_prefix("latchkey_session=").expect("the session cookie first");
    value.split(';').next().unwrap().to_owned()
}

async fn secrets_appear_only_where_the_contract_allows(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = CloudProcess::spawn(&db, &[("LATCHKEY_SANDBOX", "1"), ("RUST_LOG", "debug")]).await;
    let api = cloud.api();
    let base = api.base.clone();
    let mut seen = Haystacks::default();

    // The story.
    let org = SandboxOrg::setup(&api).await;
    let (_, callback) = consent(&api, &org.member, "acme", "sandbox").await;
    seen.add("the consent callback page", &callback);
    let browser = Browser::new();
    let login = browser.login(&base, &org.member).await;
    let cookie = session_cookie(&login);
    for page in ["/", "/orgs/acme", "/device", "/login"] {
        seen.add(format!("page {page}"), &browser.get(&format!("{base}{page}")).await);
    }
    let (_, pat) = api.pat(&org.member, &["connections:token", "connections:read", "audit:read"]).await;
    let first = fetch(&api, &pat).await;
    let first_token = first.ok(200)["access_token"].as_str().unwrap().to_owned();
    expire_soon(&db).await;
    let second = fetch(&api, &pat).await;
    let second_token = second.ok(200)["access_token"].as_str().unwrap().to_owned();
    assert_ne!(first_token, second_token, "the story includes a refresh");
    let (member, admin) = (&org.member.access, &org.admin.access);
    for (path, token) in [
        ("/v1/me", member),
        ("/v1/sessions", member),
        ("/v1/tokens", member),
        ("/v1/devices", member),
        ("/v1/connections", member),
        ("/v1/orgs/acme/connections/sandbox", member),
        ("/v1/me/audit", member),
        ("/v1/connections", &pat),
        ("/v1/orgs/acme/apps", admin),
        ("/v1/orgs/acme/connectors", admin),
        ("/v1/orgs/acme/members", admin),
        ("/v1/orgs/acme/audit", admin),
        ("/v1/providers", admin),
        ("/metrics", admin),
    ] {
        seen.add(format!("GET {path}"), &api.get(path, Some(token)).await);
    }
    seen.add("DELETE the connection", &api.delete("/v1/orgs/acme/connections/sandbox", Some(member)).await);
    seen.add("a token request after disconnect", &fetch(&api, &pat).await);
    seen.add("the org audit after disconnect", &api.get("/v1/orgs/acme/audit", Some(admin)).await);

    // Where each may be found: nowhere but the answers that carried it, which are not
    // among the haystacks.
    let mut everywhere = Haystacks(stored(&db, backend).await);
    everywhere.0.push(("the cloud's log".to_owned(), cloud.log_text().into_bytes()));
    everywhere.0.extend(seen.0);
    assert!(cloud.log_text().lines().count() > 50, "the log has the story in it");
    let secrets = [
        ("the managed app's client secret", org.client_secret.as_str()),
        ("any refresh token the provider issued", "sbx_rt_"),
        ("any access token the provider issued", "sbx_at_"),
        ("the first access token", &first_token),
        ("the refreshed access token", &second_token),
        ("the PAT", &pat),
        ("the member's access JWT", member),
        ("the member's refresh token", &org.member.refresh),
        ("the session cookie", &cookie),
    ];
    let leaks: Vec<String> = secrets
        .iter()
        .flat_map(|(what, needle)| everywhere.find(needle).into_iter().map(move |place| format!("{what} in {place}")))
        .collect();
    assert!(leaks.is_empty(), "secrets found where they must not be:\n{}", leaks.join("\n"));
}
