//! The master key ring against the database: a check value per key version (so a wrong
//! key is refused at start-up), `keys rotate` (re-encrypt every sealed value under the
//! active key, online, in batches) and `keys verify` (open every sealed value).
//!
//! Sealed columns are listed once, in `crate::sealed::SEALED`; a new encrypted column is
//! added there.

use crate::crypto::{Aad, KeyRing};
use crate::sealed::{SealedTable, SEALED};
use crate::store::{now, Store};
use anyhow::{bail, Context};
use std::collections::BTreeMap;

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
/// each row is rewritten only if it still holds what was read (version and ciphertexts);
/// a row changed meanwhile is left for the next run, which the report's `left` shows.
pub async fn rotate(store: &Store, keys: &KeyRing) -> anyhow::Result<Report> {
    let active = i64::from(keys.active_version());
    let mut report = Report::default();
    for t in SEALED {
        let resealer = Resealer::new(t);
        let mut cursor = String::new();
        loop {
            let rows = resealer.next_batch(store, active, &cursor).await?;
            let Some(last) = rows.last() else { break };
            cursor.clone_from(&last.id);
            for row in rows {
                match resealer.reseal(store, keys, row).await? {
                    Ok(rewritten) => report.rewritten += rewritten,
                    Err(failure) => report.failures.push(failure),
                }
            }
        }
    }
    for (table, versions) in versions_in_use(store).await? {
        report.left.insert(table, versions.iter().filter(|(v, _)| **v != active).map(|(_, c)| *c).sum());
    }
    Ok(report)
}

/// One row's sealed values as read.
struct SealedRow {
    id: String,
    version: i64,
    cts: Vec<Option<Vec<u8>>>,
}

/// Re-encryption of one table, with its SQL built once.
struct Resealer {
    table: &'static SealedTable,
    select: String,
    update: String,
}

impl Resealer {
    fn new(table: &'static SealedTable) -> Self {
        let cols: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        let n = cols.len();
        let select = format!(
            "select id, key_version, {} from {} where key_version <> $1 and id > $2 order by id limit {BATCH}",
            cols.join(", "),
            table.table
        );
        let sets: Vec<String> = cols.iter().enumerate().map(|(i, c)| format!("{c} = ${}", i + 1)).collect();
        // Only over the very ciphertexts that were read: a replica that wrote the row
        // meanwhile (a refresh's rotated token, an admin's new secret) may still run the
        // old active key, so an unchanged key version alone does not prove an unchanged row.
        let unchanged: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| format!("({c} = ${k} or ({c} is null and ${k} is null))", k = n + 5 + i))
            .collect();
        let update = format!(
            "update {} set {}, key_version = ${}, updated_at = ${} where id = ${} and key_version = ${} and {}",
            table.table,
            sets.join(", "),
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            unchanged.join(" and ")
        );
        Resealer { table, select, update }
    }

    async fn next_batch(&self, store: &Store, active: i64, after: &str) -> anyhow::Result<Vec<SealedRow>> {
        use sqlx::Row;
        let rows = sqlx::query(&self.select).bind(active).bind(after).fetch_all(store.pool()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let cts = (0..self.table.columns.len()).map(|i| row.try_get(i + 2)).collect::<Result<_, _>>()?;
            out.push(SealedRow { id: row.try_get(0)?, version: row.try_get(1)?, cts });
        }
        Ok(out)
    }

    /// Rewrites `row` under the active key if it still holds what was read: `Ok(Ok(1))`
    /// when rewritten, `Ok(Ok(0))` when it changed meanwhile, `Ok(Err(why))` when a value
    /// does not decrypt.
    async fn reseal(
        &self,
        store: &Store,
        keys: &KeyRing,
        row: SealedRow,
    ) -> anyhow::Result<std::result::Result<u64, String>> {
        let mut resealed = Vec::with_capacity(row.cts.len());
        for ((_, aad_col), ct) in self.table.columns.iter().zip(&row.cts) {
            let Some(ct) = ct else {
                resealed.push(None);
                continue;
            };
            let aad = Aad { table: self.table.table, column: aad_col, row_id: &row.id };
            match keys.open(aad, ct).and_then(|plain| keys.seal(aad, &plain)) {
                Ok(new_ct) => resealed.push(Some(new_ct)),
                Err(e) => return Ok(Err(e.to_string())),
            }
        }
        let mut q = sqlx::query(&self.update);
        for ct in resealed {
            q = q.bind(ct);
        }
        q = q.bind(i64::from(keys.active_version())).bind(now()).bind(&row.id).bind(row.version);
        for ct in row.cts {
            q = q.bind(ct);
        }
        Ok(Ok(q.execute(store.pool()).await?.rows_affected()))
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::crypto::generate_master_key;
    use crate::sealed;
    use crate::test_db::{ring, TempSqlite};

    async fn refresh_token(db: &TempSqlite, keys: &KeyRing) -> (i64, String) {
        let (version, ct): (i64, Vec<u8>) =
            sqlx::query_as("select key_version, refresh_token_ct from connections where id = 'c1'")
                .fetch_one(db.store.pool())
                .await
                .unwrap();
        (version, keys.open_str(sealed::refresh_token("c1"), &ct).unwrap().expose().clone())
    }

    /// `keys rotate` reads a row; a replica still on the old key refreshes it (same key
    /// version, new rotated refresh token); the rotation's write must not put the old,
    /// spent refresh token back.
    #[tokio::test]
    async fn rotation_never_overwrites_a_row_written_since_it_was_read() {
        let (k1, k2) = (generate_master_key(), generate_master_key());
        let (old_ring, new_ring) = (ring(1, &[(1, &k1)]), ring(2, &[(1, &k1), (2, &k2)]));
        let seal = |aad, value: &[u8]| old_ring.seal(aad, value).unwrap();
        let db = TempSqlite::new().await;
        db.seed_connection(
            &seal(sealed::access_token("c1"), b"access-1"),
            &seal(sealed::refresh_token("c1"), b"refresh-1"),
            1,
        )
        .await;
        let connections = SEALED.iter().find(|t| t.table == "connections").unwrap();
        let resealer = Resealer::new(connections);

        let mut read = resealer.next_batch(&db.store, 2, "").await.unwrap();
        assert_eq!(read.len(), 1);
        sqlx::query("update connections set access_token_ct = $1, refresh_token_ct = $2 where id = 'c1'")
            .bind(seal(sealed::access_token("c1"), b"access-2"))
            .bind(seal(sealed::refresh_token("c1"), b"refresh-2"))
            .execute(db.store.pool())
            .await
            .unwrap();
        let rewritten = resealer.reseal(&db.store, &new_ring, read.remove(0)).await.unwrap().unwrap();
        assert_eq!(rewritten, 0, "the row changed after it was read");
        assert_eq!(refresh_token(&db, &new_ring).await, (1, "refresh-2".to_owned()));

        // The next pass picks the row up again and moves it to the new key.
        let again = resealer.next_batch(&db.store, 2, "").await.unwrap().remove(0);
        assert_eq!(resealer.reseal(&db.store, &new_ring, again).await.unwrap().unwrap(), 1);
        assert_eq!(refresh_token(&db, &new_ring).await, (2, "refresh-2".to_owned()));
    }
}
