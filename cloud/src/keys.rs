//! The master key ring against the database: a check value per key version (so a wrong
//! key is refused at start-up), `keys rotate` (re-encrypt every sealed value under the
//! active key, online, in batches) and `keys verify` (open every sealed value).
//!
//! Sealed columns are listed once, in `SEALED`; a new encrypted column is added there.

use crate::crypto::{Aad, KeyRing};
use crate::store::{now, Store};
use anyhow::{bail, Context};
use std::collections::BTreeMap;

/// A table holding sealed values: its row id column, version column and sealed columns
/// as (column, associated-data name).
pub struct SealedTable {
    pub table: &'static str,
    pub columns: &'static [(&'static str, &'static str)],
}

/// Every sealed column in the schema.
pub const SEALED: &[SealedTable] = &[
    SealedTable {
        table: "managed_apps",
        columns: &[("client_id_ct", "client_id"), ("client_secret_ct", "client_secret")],
    },
    SealedTable {
        table: "connections",
        columns: &[("access_token_ct", "access_token"), ("refresh_token_ct", "refresh_token")],
    },
    SealedTable { table: "consent_states", columns: &[("pkce_verifier_ct", "pkce_verifier")] },
];

const CHECK_PLAINTEXT: &[u8] = b"latchkey master key check v1";
const BATCH: i64 = 100;

fn check_aad(version: &str) -> Aad<'_> {
    Aad { table: "key_checks", column: "check", row_id: version }
}

/// At start-up: every configured key must match the check value stored for its version
/// (stored on first use), and every sealed row must be under a configured version.
pub async fn verify_ring_against_store(store: &Store, keys: &KeyRing) -> anyhow::Result<()> {
    for version in keys.versions() {
        let v = version.to_string();
        let stored: Option<Vec<u8>> = sqlx::query_scalar("select check_ct from key_checks where version = $1")
            .bind(i64::from(version))
            .fetch_optional(store.pool())
            .await?;
        match stored {
            Some(ct) => {
                let ok = keys.open(check_aad(&v), &ct).map(|p| p.as_slice() == CHECK_PLAINTEXT).unwrap_or(false);
                if !ok {
                    bail!(
                        "master key version {version} is not the key this database was sealed with; \
                         check LATCHKEY_MASTER_KEY (a wrong key would make every secret unreadable)"
                    );
                }
            }
            None => {
                // Sealed with this very version, whichever key is active.
                let ct = keys.seal_with(version, check_aad(&v), CHECK_PLAINTEXT)?;
                let now = now();
                sqlx::query(
                    "insert into key_checks (version, check_ct, created_at, updated_at) values ($1, $2, $3, $3) \
                     on conflict (version) do nothing",
                )
                .bind(i64::from(version))
                .bind(ct)
                .bind(now)
                .execute(store.pool())
                .await?;
            }
        }
    }
    let configured: Vec<i64> = keys.versions().map(i64::from).collect();
    for (table, versions) in versions_in_use(store).await? {
        let missing: Vec<_> = versions.keys().filter(|v| !configured.contains(v)).collect();
        if !missing.is_empty() {
            bail!(
                "{table} has values sealed with master key version(s) {missing:?}, which are not configured; \
                 add them to the key ring (LATCHKEY_MASTER_KEY=\"new:…,old:…\" or [[master_keys]])"
            );
        }
    }
    Ok(())
}

/// Row counts per key version, per sealed table.
pub async fn versions_in_use(store: &Store) -> anyhow::Result<BTreeMap<&'static str, BTreeMap<i64, i64>>> {
    let mut out = BTreeMap::new();
    for t in SEALED {
        let rows: Vec<(i64, i64)> =
            sqlx::query_as(&format!("select key_version, count(*) from {} group by key_version", t.table))
                .fetch_all(store.pool())
                .await?;
        out.insert(t.table, rows.into_iter().collect());
    }
    Ok(out)
}

/// What a rotation or verification did.
#[derive(Debug, Default)]
pub struct Report {
    pub rewritten: u64,
    pub failures: Vec<String>,
    /// Rows left under versions other than the active one, per table.
    pub left: BTreeMap<&'static str, i64>,
}

/// Re-encrypts every sealed row not under the active key. Safe beside serving replicas:
/// each row is rewritten only if it still has the version it was read with.
pub async fn rotate(store: &Store, keys: &KeyRing) -> anyhow::Result<Report> {
    let active = i64::from(keys.active_version());
    let mut report = Report::default();
    for t in SEALED {
        let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
        let select = format!(
            "select id, key_version, {} from {} where key_version <> $1 and id > $2 order by id limit {BATCH}",
            cols.join(", "),
            t.table
        );
        let sets: Vec<String> = cols.iter().enumerate().map(|(i, c)| format!("{c} = ${}", i + 1)).collect();
        let n = cols.len();
        let update = format!(
            "update {} set {}, key_version = ${}, updated_at = ${} where id = ${} and key_version = ${}",
            t.table,
            sets.join(", "),
            n + 1,
            n + 2,
            n + 3,
            n + 4
        );
        let mut cursor = String::new();
        loop {
            let rows = sqlx::query(&select).bind(active).bind(&cursor).fetch_all(store.pool()).await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                use sqlx::Row;
                let id: String = row.try_get(0)?;
                let version: i64 = row.try_get(1)?;
                cursor.clone_from(&id);
                let mut resealed = Vec::with_capacity(n);
                let mut failed = None;
                for (i, (_, aad_col)) in t.columns.iter().enumerate() {
                    let ct: Option<Vec<u8>> = row.try_get(i + 2)?;
                    let Some(ct) = ct else {
                        resealed.push(None);
                        continue;
                    };
                    let aad = Aad { table: t.table, column: aad_col, row_id: &id };
                    match keys.open(aad, &ct).and_then(|plain| keys.seal(aad, &plain)) {
                        Ok(new_ct) => resealed.push(Some(new_ct)),
                        Err(e) => {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    report.failures.push(e);
                    continue;
                }
                let mut q = sqlx::query(&update);
                for ct in resealed {
                    q = q.bind(ct);
                }
                let done = q.bind(active).bind(now()).bind(&id).bind(version).execute(store.pool()).await?;
                report.rewritten += done.rows_affected();
            }
        }
    }
    for (table, versions) in versions_in_use(store).await? {
        report.left.insert(table, versions.iter().filter(|(v, _)| **v != active).map(|(_, c)| *c).sum());
    }
    Ok(report)
}

/// Opens every sealed value; lists the ones that fail.
pub async fn verify(store: &Store, keys: &KeyRing) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for t in SEALED {
        let cols: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
        let rows = sqlx::query(&format!("select id, {} from {}", cols.join(", "), t.table))
            .fetch_all(store.pool())
            .await
            .context("reading sealed rows")?;
        for row in &rows {
            use sqlx::Row;
            let id: String = row.try_get(0)?;
            for (i, (_, aad_col)) in t.columns.iter().enumerate() {
                let ct: Option<Vec<u8>> = row.try_get(i + 1)?;
                let Some(ct) = ct else { continue };
                if let Err(e) = keys.open(Aad { table: t.table, column: aad_col, row_id: &id }, &ct) {
                    report.failures.push(e.to_string());
                }
            }
        }
    }
    Ok(report)
}
